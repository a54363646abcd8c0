"""Preprocessing of Allen cell-types sweeps for GFR fitting (h5py only, no AllenSDK).

Supported input layout (Allen Cell Types NWB v1 electrophysiology files, as written by the Allen
Institute and read by AllenSDK's ``NwbDataSet``; the synthetic cell bank writes the same)::

    /stimulus/presentation/Sweep_<n>/data                 injected current (attr ``conversion``: to A)
    /stimulus/presentation/Sweep_<n>/starting_time        attr ``rate``: sampling rate (Hz)
    /stimulus/presentation/Sweep_<n>/aibs_stimulus_name   e.g. "Long Square", "Ramp", "Noise 1"
    /acquisition/timeseries/Sweep_<n>/data                membrane voltage (attr ``conversion``: to V)
    /epochs/Sweep_<n>/stimulus/idx_start, count           the whole sweep's sample range
    /epochs/Experiment_<n>/stimulus/idx_start, count      the experiment epoch (test pulse excluded)
    /analysis/spike_times/Sweep_<n>                       spike times, s from the sweep's first sample
    /general/specimen_id (optional)                       the cell id (else taken from the file name)

``idx_start``/``count`` of the Experiment epoch give the sweep's ``index_range`` (the Sweep epoch
is used when there is no Experiment epoch); as in Allen's files (and AllenSDK's ``NwbDataSet``) the
indices count from the sweep's own first sample (the Sweep epoch's ``idx_start``, normally 0, is
subtracted). ``aibs_stimulus_name`` may also sit in the
acquisition group. Only the datasets named above are read.

Processing per sweep (see the spec, section 5): window = ``index_range``; for "Ramp" sweeps cut
at the peak current or at the last non-zero voltage sample, whichever comes first; except for
"Test" sweeps start at the stimulus onset (first sample where the current changes). Bin at
``bin_size`` ms in whole bins (partial last bin dropped): current = bin mean (pA), rate = spike
count / bin_size (spikes/ms). gamma = max 1/ISI over all sweeps (spikes/ms).

The result (:class:`CellData`) is saved as an h5 file (atomically) with :func:`save_cell` and read
with :func:`load_cell`::

    cell_id, gamma, sampling_rate            (scalars)
    sweeps/Sweep_<n>/  attrs stimulus_name; current_<dt>, rate_<dt> for every bin size dt
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ConfigError, DataFormatError, NonFiniteError
from ..core.io import load_h5, save_h5
from .model import BIN_SIZES

__all__ = [
    "STIMULI",
    "RawSweep",
    "BinnedSweep",
    "CellData",
    "read_nwb",
    "sweep_window",
    "bin_sweep",
    "max_firing_rate",
    "preprocess_nwb",
    "preprocess_files",
    "save_cell",
    "load_cell",
    "load_cells",
]

#: Stimulus names used downstream (Long Square: activation and training; Ramp, Noise 1: training;
#: Noise 1: validation; Noise 2: test).
STIMULI = ("Long Square", "Ramp", "Noise 1", "Noise 2")


@dataclasses.dataclass
class RawSweep:
    """One sweep at sample resolution (current in pA, voltage in mV, spike times in s from the sweep start)."""

    number: int
    stimulus_name: str
    current: np.ndarray
    voltage: np.ndarray | None
    sampling_rate: float
    index_range: tuple[int, int]
    spike_times: np.ndarray


@dataclasses.dataclass
class BinnedSweep:
    """One sweep binned at several bin sizes: ``binned[dt] = (current (T,) pA, rate (T,) spikes/ms)``."""

    number: int
    stimulus_name: str
    binned: dict[int, tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass
class CellData:
    """A preprocessed cell: its id, gamma (max 1/ISI, spikes/ms) and binned sweeps."""

    cell_id: int
    gamma: float
    sweeps: list[BinnedSweep]
    sampling_rate: float = float("nan")

    def by_stimulus(self, name: str) -> list[BinnedSweep]:
        return [s for s in self.sweeps if s.stimulus_name == name]

    @property
    def bin_sizes(self) -> tuple[int, ...]:
        sizes = set()
        for s in self.sweeps:
            sizes |= set(s.binned)
        return tuple(sorted(sizes))


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else ""
        return _text(value)
    return str(value)


def _scalar(ds: Any) -> Any:
    v = ds[()]
    return v.reshape(-1)[0] if isinstance(v, np.ndarray) else v


def read_nwb(path: str | os.PathLike, stimulus_names: Iterable[str] | None = STIMULI) -> tuple[int, list[RawSweep]]:
    """Read the sweeps of an Allen cell-types NWB file: v1 with h5py, NWB 2 with pynwb (extra ``nwb``).

    An NWB 2 file (root attribute ``nwb_version`` 2.x) is read as the Allen Institute and ipfx write
    intracellular recordings: per sweep a ``CurrentClampSeries`` in ``/acquisition`` (voltage) and a
    ``CurrentClampStimulusSeries`` in ``/stimulus/presentation`` (current) with the same
    ``sweep_number``; the stimulus name from the series' ``stimulus_description`` (a name such as
    ``"Long Square"``, or an Allen stimulus code: ``C1LS…`` Long Square, ``C1RP…`` Ramp,
    ``C1NSSEED_1``/``_2`` Noise 1/2, ``C1SS…`` Short Square, ``…Test…`` Test); spike times (s from
    the sweep start; session times at or after the series' ``starting_time`` are shifted) from
    ``/processing/spikes/Sweep_<n>`` (timestamps) when present; the analysis
    window the whole sweep after the test pulse (a pulse shorter than 50 ms that ends within the
    sweep's first 10 %). Amplitudes come through the series' ``conversion`` (to A and V).

    Parameters
    ----------
    path
        The ``.nwb`` file (layout in the module docstring).
    stimulus_names
        Keep only sweeps whose ``aibs_stimulus_name`` is in this set (``None``: all).

    Returns
    -------
    ``(cell_id, sweeps)``.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such NWB file: {path}")
    wanted = None if stimulus_names is None else set(stimulus_names)
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise DataFormatError(f"{path} could not be opened as HDF5/NWB (truncated or not an NWB file?): {exc}") from None
    version = _text(fh.attrs.get("nwb_version", b""))
    if version.startswith("2"):
        fh.close()
        return _read_nwb2(path, wanted)
    sweeps = []
    try:
        with fh:
            if "stimulus/presentation" not in fh:
                raise DataFormatError(f"{path} has no /stimulus/presentation group: not an Allen cell-types NWB file")
            if "general/specimen_id" in fh:
                cell_id = int(_scalar(fh["general/specimen_id"]))
            else:
                digits = re.findall(r"\d+", path.stem)
                if not digits:
                    raise DataFormatError(f"{path}: no /general/specimen_id and no cell id in the file name")
                cell_id = int(digits[0])
            names = sorted(fh["stimulus/presentation"].keys(), key=lambda s: int(re.sub(r"\D", "", s) or -1))
            for name in names:
                m = re.fullmatch(r"Sweep_(\d+)", name)
                if not m:
                    continue
                number = int(m.group(1))
                stim = fh[f"stimulus/presentation/{name}"]
                acq_name = f"acquisition/timeseries/{name}"
                if "aibs_stimulus_name" in stim:
                    stim_name = _text(stim["aibs_stimulus_name"][()])
                elif acq_name in fh and "aibs_stimulus_name" in fh[acq_name]:
                    stim_name = _text(fh[acq_name]["aibs_stimulus_name"][()])
                else:
                    raise DataFormatError(f"{path}: {name} has no aibs_stimulus_name")
                if wanted is not None and stim_name not in wanted:
                    continue
                for key in ("data", "starting_time"):
                    if key not in stim:
                        raise DataFormatError(f"{path}: /stimulus/presentation/{name} is missing '{key}'")
                current = np.asarray(stim["data"][()], dtype=np.float64) * float(stim["data"].attrs.get("conversion", 1.0)) * 1e12
                rate = float(stim["starting_time"].attrs["rate"])
                voltage = None
                if acq_name in fh and "data" in fh[acq_name]:
                    v = fh[acq_name]["data"]
                    voltage = np.asarray(v[()], dtype=np.float64) * float(v.attrs.get("conversion", 1.0)) * 1e3
                ep = f"epochs/Experiment_{number}/stimulus"
                if ep not in fh:
                    ep = f"epochs/Sweep_{number}/stimulus"
                if ep in fh:
                    start = int(_scalar(fh[ep]["idx_start"]))
                    count = int(_scalar(fh[ep]["count"]))
                    sweep_ep = f"epochs/Sweep_{number}/stimulus"
                    offset = int(_scalar(fh[sweep_ep]["idx_start"])) if sweep_ep in fh else 0
                    index_range = (start - offset, start - offset + count - 1)
                else:
                    index_range = (0, current.size - 1)
                st = f"analysis/spike_times/{name}"
                spikes = np.asarray(fh[st][()], dtype=np.float64).reshape(-1) if st in fh else np.zeros(0)
                sweeps.append(RawSweep(number, stim_name, current, voltage, rate, index_range, spikes))
    except DataFormatError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise DataFormatError(f"{path} could not be read as an Allen NWB file (truncated?): {type(exc).__name__}: {exc}") from None
    return cell_id, sweeps


_ALLEN_CODES = (("C1LS", "Long Square"), ("C1RP", "Ramp"), ("C1NSSEED_1", "Noise 1"), ("C1NSSEED_2", "Noise 2"),
                 ("C1SS", "Short Square"), ("C1SQ", "Short Square"))


def _allen_stimulus_name(description: str) -> str:
    d = str(description).strip()
    if d in STIMULI or d in ("Test", "Short Square"):
        return d
    up = d.upper()
    for code, name in _ALLEN_CODES:
        if up.startswith(code):
            return name
    if "TEST" in up:
        return "Test"
    return d


def _after_test_pulse(current: np.ndarray, rate: float) -> int:
    """Index of the first sample after a leading test pulse (< 50 ms, ending in the first 10 %), else 0."""
    if current.size < 3:
        return 0
    base = current[0]
    off = np.flatnonzero(current != base)
    if off.size == 0:
        return 0
    on = int(off[0])
    back = np.flatnonzero(current[on:] == base)
    if back.size == 0:
        return 0
    end = on + int(back[0])
    if (end - on) / rate < 0.05 and end < 0.1 * current.size:
        return end
    return 0


def _read_nwb2(path: Path, wanted: set | None) -> tuple[int, list[RawSweep]]:
    from ..core.nwb import _open_nwb

    io, nwb = _open_nwb(path)
    sweeps = []
    with io:
        acq = {int(o.sweep_number): o for o in nwb.acquisition.values()
               if type(o).__name__ == "CurrentClampSeries" and getattr(o, "sweep_number", None) is not None}
        stim = {int(o.sweep_number): o for o in nwb.stimulus.values()
                if type(o).__name__ == "CurrentClampStimulusSeries" and getattr(o, "sweep_number", None) is not None}
        if not stim:
            raise DataFormatError(f"{path}: no CurrentClampStimulusSeries with a sweep_number in /stimulus/presentation: "
                                  "not an intracellular (current clamp) NWB 2 file")
        try:
            sid = getattr(nwb.subject, "subject_id", None) if nwb.subject is not None else None
            spec = getattr(nwb, "specimen_id", None) or sid
            cell_id = int(spec) if spec is not None and str(spec).strip().isdigit() else None
        except (TypeError, ValueError):
            cell_id = None
        if cell_id is None:
            digits = re.findall(r"\d+", path.stem)
            if not digits:
                raise DataFormatError(f"{path}: no numeric subject_id and no cell id in the file name")
            cell_id = int(digits[0])
        spikes_mod = nwb.processing.get("spikes") if nwb.processing else None
        for number in sorted(stim):
            st = stim[number]
            desc = st.stimulus_description or (acq[number].stimulus_description if number in acq else "")
            name = _allen_stimulus_name(desc)
            if wanted is not None and name not in wanted:
                continue
            if st.rate is None:
                raise DataFormatError(f"{path}: sweep {number}'s stimulus has timestamps but no sampling rate")
            current = np.asarray(st.data[:], np.float64) * float(st.conversion) * 1e12
            rate = float(st.rate)
            voltage = None
            if number in acq:
                a = acq[number]
                voltage = np.asarray(a.data[:], np.float64) * float(a.conversion) * 1e3
            spk = np.zeros(0)
            if spikes_mod is not None and f"Sweep_{number}" in spikes_mod.data_interfaces:
                obj = spikes_mod.data_interfaces[f"Sweep_{number}"]
                ts = getattr(obj, "timestamps", None)
                spk = np.asarray(ts[:] if ts is not None else obj.data[:], np.float64).reshape(-1)
                t0 = float(st.starting_time or 0.0)
                if t0 > 0 and spk.size and spk.min() >= t0:  # session times: from the sweep's first sample
                    spk = spk - t0
            start = _after_test_pulse(current, rate) if name != "Test" else 0
            sweeps.append(RawSweep(number, name, current, voltage, rate, (start, current.size - 1), spk))
    return cell_id, sweeps


def sweep_window(sweep: RawSweep) -> tuple[int, int]:
    """The analysis window ``[start, stop)`` (sample indices) of a sweep, as in the spec (section 5)."""
    start, stop = sweep.index_range
    n = sweep.current.size
    if not (0 <= start <= stop < n):
        raise DataFormatError(
            f"sweep {sweep.number}: index_range {sweep.index_range} does not fit in its {n} samples"
        )
    stop += 1  # exclusive
    if sweep.stimulus_name.startswith("Ramp"):
        seg = sweep.current[start:stop]
        cut = start + int(np.argmax(seg))
        if sweep.voltage is not None:
            nz = np.flatnonzero(sweep.voltage[start:stop] != 0)
            if nz.size:
                cut = min(cut, start + int(nz[-1]))
        stop = max(start + 1, min(stop, cut))
    if sweep.stimulus_name != "Test":
        seg = sweep.current[start:stop]
        changed = np.flatnonzero(seg != seg[0])
        if changed.size:
            start = start + int(changed[0])
    return start, stop


def bin_sweep(sweep: RawSweep, dt: float, window: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bin one sweep at ``dt`` ms: (mean current per bin (pA), spike count / dt (spikes/ms))."""
    if dt not in BIN_SIZES:
        raise ConfigError(f"dt must be one of {BIN_SIZES} ms, got {dt!r}")
    start, stop = window if window is not None else sweep_window(sweep)
    per_bin = int(round(dt * sweep.sampling_rate / 1000.0))
    if per_bin < 1:
        raise ConfigError(f"sampling rate {sweep.sampling_rate} Hz is too low for {dt} ms bins")
    n_bins = (stop - start) // per_bin
    end = start + n_bins * per_bin
    cur = sweep.current[start:end].reshape(n_bins, per_bin).mean(axis=1)
    idx = np.round(sweep.spike_times * sweep.sampling_rate).astype(np.int64)
    ind = np.zeros(sweep.current.size, dtype=np.int64)
    idx = idx[(idx >= 0) & (idx < ind.size)]
    np.add.at(ind, idx, 1)
    ind = np.minimum(ind, 1)  # 0/1 indicator at sample resolution
    counts = ind[start:end].reshape(n_bins, per_bin).sum(axis=1)
    return cur, counts / float(dt)


def max_firing_rate(sweeps: Sequence[RawSweep]) -> float:
    """gamma = max over sweeps of 1/ISI, in spikes/ms (NaN if no sweep has two spikes)."""
    best = 0.0
    for s in sweeps:
        t = np.sort(s.spike_times)
        if t.size > 1:
            isi_ms = np.diff(t) * 1000.0
            isi_ms = isi_ms[isi_ms > 0]
            if isi_ms.size:
                best = max(best, float(1.0 / isi_ms.min()))
    return best if best > 0 else float("nan")


def preprocess_nwb(
    path: str | os.PathLike,
    bin_sizes: Sequence[int] = BIN_SIZES,
    stimulus_names: Iterable[str] | None = STIMULI,
) -> CellData:
    """Read, window and bin one NWB file (see the module docstring)."""
    for b in bin_sizes:
        if b not in BIN_SIZES:
            raise ConfigError(f"bin_sizes must be among {BIN_SIZES} ms, got {b!r}")
    cell_id, raw = read_nwb(path, stimulus_names)
    if not raw:
        raise DataFormatError(f"{path}: no sweeps with stimulus names {sorted(stimulus_names or [])}")
    sweeps = []
    for s in raw:
        if not np.all(np.isfinite(s.current)):
            raise NonFiniteError(f"{path}: sweep {s.number} ({s.stimulus_name}) has NaN/inf current samples")
        win = sweep_window(s)
        binned = {int(b): bin_sweep(s, b, win) for b in bin_sizes}
        sweeps.append(BinnedSweep(s.number, s.stimulus_name, binned))
    return CellData(cell_id, max_firing_rate(raw), sweeps, raw[0].sampling_rate)


def save_cell(path: str | os.PathLike, cell: CellData) -> Path:
    """Write a :class:`CellData` as h5 (atomically; layout in the module docstring)."""
    sweeps = {}
    for s in cell.sweeps:
        entry: dict[str, Any] = {"stimulus_name": s.stimulus_name, "number": np.int64(s.number)}
        for b, (cur, rate) in s.binned.items():
            entry[f"current_{b}"] = np.asarray(cur, dtype=np.float64)
            entry[f"rate_{b}"] = np.asarray(rate, dtype=np.float64)
        sweeps[f"Sweep_{s.number}"] = entry
    data = {
        "cell_id": np.int64(cell.cell_id),
        "gamma": np.float64(cell.gamma),
        "sampling_rate": np.float64(cell.sampling_rate),
        "sweeps": sweeps,
    }
    return save_h5(path, data, attrs={"format": "spikejax.gfr.cell/1"})


def _file_scalar(raw: dict[str, Any], key: str, path: Any, kind: type, *, low: float | None = None, nan_ok: bool = False) -> Any:
    """A scalar dataset of a cell file as ``kind``; anything else raises DataFormatError naming the file and the key."""
    value = raw[key]
    arr = np.asarray(value)
    if isinstance(value, dict) or arr.ndim != 0 or arr.dtype.kind not in "biuf":
        what = "a group" if isinstance(value, dict) else f"{arr.dtype} data of shape {arr.shape}"
        raise DataFormatError(f"{path}: '{key}' must be a scalar number, got {what}")
    v = arr.item()
    if kind is int:
        if not (np.isfinite(v) and float(v) == int(v)):
            raise DataFormatError(f"{path}: '{key}' must be a whole number, got {v!r}")
        return int(v)
    v = float(v)
    if np.isnan(v) and nan_ok:
        return v
    if not np.isfinite(v) or (low is not None and v < low):
        bound = f" >= {low}" if low is not None else ""
        raise DataFormatError(f"{path}: '{key}' must be a finite number{bound}{' (or NaN)' if nan_ok else ''}, got {v!r}")
    return v


def load_cell(path: str | os.PathLike) -> CellData:
    """Read a cell written by :func:`save_cell`; truncated, malformed or incomplete files (a missing key,
    ``sweeps`` not a group, NaN/inf or negative samples) raise DataFormatError naming the file and the key."""
    raw = load_h5(path, required=("cell_id", "gamma", "sweeps"))
    if not isinstance(raw["sweeps"], dict):
        got = np.asarray(raw["sweeps"])
        raise DataFormatError(
            f"{path}: 'sweeps' must be a group of Sweep_<n> groups (as save_cell writes it), got a dataset of "
            f"shape {got.shape} and dtype {got.dtype}"
        )
    cell_id = _file_scalar(raw, "cell_id", path, int)
    gamma = _file_scalar(raw, "gamma", path, float, low=0.0, nan_ok=True)  # NaN: no sweep had two spikes
    sampling_rate = _file_scalar(raw, "sampling_rate", path, float, low=0.0, nan_ok=True) if "sampling_rate" in raw else float("nan")
    sweeps = []
    for name, entry in raw["sweeps"].items():
        if not isinstance(entry, dict):
            raise DataFormatError(f"{path}: sweeps/{name} must be a group (stimulus_name, current_<dt>, rate_<dt>), got a dataset")
        if "stimulus_name" not in entry:
            raise DataFormatError(f"{path}: sweeps/{name} has no stimulus_name")
        binned = {}
        for key in entry:
            m = re.fullmatch(r"current_(\d+)", key)
            if m:
                b = int(m.group(1))
                if f"rate_{b}" not in entry:
                    raise DataFormatError(f"{path}: sweeps/{name} has current_{b} but no rate_{b}")
                try:
                    cur = np.asarray(entry[key], dtype=np.float64)
                    rate = np.asarray(entry[f"rate_{b}"], dtype=np.float64)
                except (TypeError, ValueError):
                    raise DataFormatError(f"{path}: sweeps/{name} current_{b} and rate_{b} must hold numbers") from None
                if cur.ndim != 1 or cur.shape != rate.shape:
                    raise DataFormatError(
                        f"{path}: sweeps/{name} current_{b} and rate_{b} must be 1-D of one shape, got {cur.shape} and {rate.shape}"
                    )
                for label, arr in ((f"current_{b}", cur), (f"rate_{b}", rate)):
                    if not np.all(np.isfinite(arr)):
                        raise DataFormatError(f"{path}: sweeps/{name}/{label} must be finite, got {int((~np.isfinite(arr)).sum())} NaN/inf value(s)")
                if np.any(rate < 0):
                    raise DataFormatError(f"{path}: sweeps/{name}/rate_{b} must be >= 0 (spikes/ms), got minimum {rate.min()!r}")
                binned[b] = (cur, rate)
        try:
            number = int(entry.get("number", int(re.sub(r"\D", "", name) or 0)))
        except (TypeError, ValueError):
            raise DataFormatError(f"{path}: sweeps/{name}/number must be a whole number, got {entry.get('number')!r}") from None
        stim = entry["stimulus_name"]
        stim = stim.decode() if isinstance(stim, bytes) else stim
        sweeps.append(BinnedSweep(number, str(stim), binned))
    sweeps.sort(key=lambda s: s.number)
    return CellData(cell_id, gamma, sweeps, sampling_rate)


def preprocess_files(
    paths: Sequence[str | os.PathLike],
    save_path: str | os.PathLike,
    bin_sizes: Sequence[int] = BIN_SIZES,
) -> list[Path]:
    """Preprocess NWB files into ``save_path/<cell_id>.h5``; returns the written paths."""
    out = []
    for p in paths:
        cell = preprocess_nwb(p, bin_sizes)
        out.append(save_cell(Path(save_path) / f"{cell.cell_id}.h5", cell))
    return out


def load_cells(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> list[CellData]:
    """Load preprocessed cells from h5 files or from every ``*.h5`` in a folder (sorted by name)."""
    if isinstance(paths, (str, os.PathLike)) and Path(paths).is_dir():
        paths = sorted(Path(paths).glob("*.h5"))
    elif isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise FileNotFoundError("no preprocessed cell files (*.h5) given")
    return [load_cell(p) for p in paths]
