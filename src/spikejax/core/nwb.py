"""NWB 2 and pynapple: spike trains in, fitted results out (extras ``nwb`` and ``pynapple``).

Spike trains enter every spike-train family through one container, :class:`SpikeTrains`: the spike
times of each unit in seconds (as NWB and pynapple store them), the units' metadata (one row per
unit: ``population``, ``location``, …) and, where present, the trials (``start_time``,
``stop_time`` in s and the other columns of the NWB trials table, e.g. the Neural Latents
Benchmark's ``split`` = train/val/test). It is built from

* an NWB 2 file (:func:`read_units`: the ``/units`` table and the trials or another intervals table),
* a pynapple ``TsGroup`` (:meth:`SpikeTrains.from_pynapple`, with an optional ``IntervalSet`` of trials),
* a list of spike-time arrays (s),

and each family turns it into its own data: :func:`spikejax.lfads.dataset_from_spikes` (trials ×
bins × units with the train/valid split), :func:`spikejax.meso.data_from_spikes` (observed neurons
per population), :func:`spikejax.glm.trajectory_from_spikes` (a counts raster). Every one of them
also accepts an NWB path or a ``TsGroup`` directly (:func:`as_spike_trains`).

Results go back out as an NWB 2 processing module (:func:`write_processing`, default name
``spikejax``): time series (arrays with their bin width, trajectories, pynapple ``Tsd``/``TsdFrame``/
``TsdTensor``) become ``TimeSeries``, tables (``pandas.DataFrame``, fitted parameters, a result's
``to_pandas()``) become ``DynamicTable``\\ s; :func:`read_processing` reads them back. Trajectories and
results give pynapple objects with ``to_pynapple()`` (time in s, at the centre of each bin, as
pynapple's ``TsGroup.count`` puts it); :func:`rates_from_pynapple` takes a ``TsdFrame`` back to an
array and its bin width in ms.

pynwb and pynapple are imported only when used; without them an ``ImportError`` names the extra
(``pip install "spikejax[nwb]"``, ``pip install "spikejax[pynapple]"``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, DataFormatError, ShapeError, check_scalar

__all__ = [
    "SpikeTrains",
    "read_units",
    "write_units",
    "as_spike_trains",
    "bin_spikes",
    "write_processing",
    "read_processing",
    "rates_to_pynapple",
    "rates_from_pynapple",
]

#: Columns of an NWB Units table that are not per-unit scalars.
_SKIP_UNIT_COLUMNS = ("spike_times", "obs_intervals", "electrodes", "waveforms", "waveform_mean", "waveform_sd",
                      "spike_amplitudes")


# ---- optional dependencies -------------------------------------------------------------------------
def _pynwb():
    try:
        import pynwb
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"reading and writing NWB 2 files needs pynwb: pip install \"spikejax[nwb]\" ({exc})"
        ) from exc
    return pynwb


def _nap():
    try:
        import pynapple
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"pynapple objects need pynapple: pip install \"spikejax[pynapple]\" ({exc})"
        ) from exc
    return pynapple


def _is_pynapple(x: Any, *names: str) -> bool:
    mod = type(x).__module__ or ""
    return mod.startswith("pynapple") and (not names or type(x).__name__ in names)


# ---- the container ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class SpikeTrains:
    """Spike times of a set of units (s), their metadata and the trials.

    Attributes
    ----------
    times : tuple of float64 arrays
        Sorted spike times of each unit, in s.
    unit_ids : int array
        The units' ids (the NWB Units table's ids, or the ``TsGroup``'s keys).
    units : pandas.DataFrame
        One row per unit (index: ``unit_ids``); scalar metadata columns such as ``population``.
    trials : pandas.DataFrame or None
        One row per trial: ``start_time``, ``stop_time`` (s) and the table's other columns.
    source : str
        Where they came from (a file path, ``"pynapple"`` or ``"arrays"``), for messages.
    """

    times: tuple
    unit_ids: np.ndarray
    units: Any
    trials: Any = None
    source: str = "arrays"

    def __post_init__(self) -> None:
        import pandas as pd

        times = []
        for i, t in enumerate(self.times):
            t = np.asarray(t, dtype=np.float64).reshape(-1)
            if not np.all(np.isfinite(t)):
                raise DataFormatError(f"{self.source}: unit {i} has NaN/inf spike times")
            if t.size > 1 and np.any(np.diff(t) < 0):
                t = np.sort(t)
            times.append(t)
        object.__setattr__(self, "times", tuple(times))
        ids = np.arange(len(times)) if self.unit_ids is None else np.asarray(self.unit_ids).reshape(-1)
        if ids.size != len(times):
            raise ShapeError(f"unit_ids must give one id per unit ({len(times)}), got {ids.size}")
        object.__setattr__(self, "unit_ids", ids)
        units = None if self.units is None else pd.DataFrame(self.units).copy()
        if units is None or (len(units.columns) == 0 and len(units) == 0):
            units = pd.DataFrame(index=ids)
        if len(units) != len(times):
            raise ShapeError(f"units (metadata) must have one row per unit ({len(times)}), got {len(units)}")
        units.index = ids
        object.__setattr__(self, "units", units)
        if self.trials is not None:
            tr = pd.DataFrame(self.trials).reset_index(drop=True)
            for col in ("start_time", "stop_time"):
                if col not in tr.columns:
                    raise DataFormatError(f"{self.source}: the trials table has no {col!r} column (has {list(tr.columns)})")
            object.__setattr__(self, "trials", tr)

    @property
    def n_units(self) -> int:
        """Number of units."""
        return len(self.times)

    @property
    def t_start(self) -> float:
        """Earliest spike or trial start (s)."""
        firsts = [t[0] for t in self.times if t.size]
        if self.trials is not None and len(self.trials):
            firsts.append(float(np.min(self.trials["start_time"])))
        return float(min(firsts)) if firsts else 0.0

    @property
    def t_stop(self) -> float:
        """Latest spike or trial end (s)."""
        lasts = [t[-1] for t in self.times if t.size]
        if self.trials is not None and len(self.trials):
            lasts.append(float(np.max(self.trials["stop_time"])))
        return float(max(lasts)) if lasts else 0.0

    def __repr__(self) -> str:
        n_sp = sum(t.size for t in self.times)
        tr = "no trials" if self.trials is None else f"{len(self.trials)} trials"
        return f"SpikeTrains({self.n_units} units, {n_sp} spikes, {tr}, from {self.source})"

    def bin(self, dt: float, *, start: float | None = None, stop: float | None = None) -> np.ndarray:
        """Spike counts ``(n_bins, n_units)`` (int32) in bins of ``dt`` ms from ``start`` to ``stop`` (s).

        Bin ``k`` covers ``[start + k dt, start + (k + 1) dt)``; a partial last bin is dropped.
        ``start``/``stop`` default to the first and last spike or trial bound.
        """
        return bin_spikes(self, dt=dt, start=start, stop=stop)

    def select(self, mask) -> "SpikeTrains":
        """The units where the boolean ``mask`` (one entry per unit) is true."""
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if mask.size != self.n_units:
            raise ShapeError(f"mask must have one entry per unit ({self.n_units}), got {mask.size}")
        idx = np.flatnonzero(mask)
        return SpikeTrains(tuple(self.times[i] for i in idx), self.unit_ids[idx], self.units.iloc[idx],
                           self.trials, self.source)

    # ---- pynapple ------------------------------------------------------------------------------
    def to_pynapple(self):
        """A pynapple ``TsGroup`` (keys: the unit ids, metadata: the unit columns; times in s)."""
        nap = _nap()
        data = {int(k): nap.Ts(t=t, time_units="s") for k, t in zip(self.unit_ids, self.times)}
        meta = {c: self.units[c].to_numpy() for c in self.units.columns if c not in ("rate",)}
        ts = None
        if self.trials is not None and len(self.trials):
            t0 = min(self.t_start, float(np.min(self.trials["start_time"])))
            ts = nap.IntervalSet(start=t0, end=max(self.t_stop, float(np.max(self.trials["stop_time"]))))
        group = nap.TsGroup(data, time_support=ts, metadata=meta or None) if ts is not None else \
            nap.TsGroup(data, metadata=meta or None)
        return group

    def trials_to_pynapple(self):
        """The trials as a pynapple ``IntervalSet`` with their other columns as metadata (or None)."""
        if self.trials is None:
            return None
        nap = _nap()
        meta = {c: self.trials[c].to_numpy() for c in self.trials.columns if c not in ("start_time", "stop_time")}
        with warnings.catch_warnings():  # a column named like an IntervalSet attribute ("split") warns
            warnings.simplefilter("ignore", UserWarning)
            return nap.IntervalSet(start=self.trials["start_time"].to_numpy(),
                                   end=self.trials["stop_time"].to_numpy(), metadata=meta or None)

    @classmethod
    def from_pynapple(cls, group, trials=None) -> "SpikeTrains":
        """From a pynapple ``TsGroup`` (and optionally an ``IntervalSet`` of trials with its metadata)."""
        import pandas as pd

        if not _is_pynapple(group, "TsGroup"):
            raise TypeError(f"group must be a pynapple TsGroup, got {type(group).__name__}")
        keys = np.asarray(list(group.keys()))
        times = tuple(np.asarray(group[k].t, dtype=np.float64) for k in keys)
        meta = group.metadata if hasattr(group, "metadata") else group._metadata
        meta = pd.DataFrame(meta).drop(columns=["rate"], errors="ignore")
        tr = None
        if trials is not None:
            if not _is_pynapple(trials, "IntervalSet"):
                raise TypeError(f"trials must be a pynapple IntervalSet, got {type(trials).__name__}")
            tr = pd.DataFrame({"start_time": np.asarray(trials.start, np.float64),
                               "stop_time": np.asarray(trials.end, np.float64)})
            info = trials.metadata if hasattr(trials, "metadata") else None
            if info is not None:
                for c in info.columns:
                    tr[c] = np.asarray(info[c])
        return cls(times, keys, meta.reset_index(drop=True), tr, "pynapple TsGroup")


def as_spike_trains(spikes: Any, *, trials: Any = None, argument: str = "spikes") -> SpikeTrains:
    """Coerce ``spikes`` to :class:`SpikeTrains`.

    Accepts a :class:`SpikeTrains`, an NWB 2 file path (:func:`read_units`), a pynapple ``TsGroup``
    (with ``trials`` an optional ``IntervalSet``) or a sequence of spike-time arrays (s).
    """
    if isinstance(spikes, SpikeTrains):
        if trials is not None:
            raise ConfigError(f"{argument}: trials can only be given with a TsGroup (SpikeTrains carry their own)")
        return spikes
    if isinstance(spikes, (str, os.PathLike)):
        return read_units(spikes)
    if _is_pynapple(spikes, "TsGroup"):
        return SpikeTrains.from_pynapple(spikes, trials)
    if isinstance(spikes, Sequence) and not isinstance(spikes, (str, bytes)):
        try:
            times = tuple(np.asarray(t, dtype=np.float64).reshape(-1) for t in spikes)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{argument}: a sequence must hold one array of spike times (s) per unit ({exc})") from None
        tr = None
        if trials is not None:
            import pandas as pd

            tr = pd.DataFrame(trials)
        return SpikeTrains(times, None, None, tr, "arrays")
    raise TypeError(
        f"{argument} must be SpikeTrains, an NWB 2 file path, a pynapple TsGroup or a list of spike-time arrays (s); "
        f"got {type(spikes).__name__}"
    )


def bin_spikes(spikes: Any, *, dt: float, start: float | None = None, stop: float | None = None) -> np.ndarray:
    """Spike counts ``(n_bins, n_units)`` (int32) in bins of ``dt`` ms between ``start`` and ``stop`` (s).

    ``spikes``: anything :func:`as_spike_trains` takes. Bin ``k`` covers ``[start + k dt, start + (k+1) dt)``
    (``n_bins = floor((stop - start) / dt)``, a partial last bin is dropped).
    """
    st = as_spike_trains(spikes)
    dt = float(check_scalar(dt, "dt (ms)", low=0.0, low_inclusive=False))
    start = st.t_start if start is None else float(start)
    stop = (st.t_stop + dt / 1000.0) if stop is None else float(stop)
    width = dt / 1000.0
    n_bins = int(np.floor((stop - start) / width + 1e-9))
    if n_bins < 1:
        raise ConfigError(f"bin_spikes: [start, stop) = [{start}, {stop}) s holds no whole bin of {dt} ms")
    out = np.zeros((n_bins, st.n_units), np.int32)
    for j, t in enumerate(st.times):
        k = np.floor((t - start) / width + 1e-9).astype(np.int64)
        k = k[(k >= 0) & (k < n_bins) & (t >= start)]
        np.add.at(out[:, j], k, 1)
    return out


# ---- NWB 2: units in ---------------------------------------------------------------------------------
def _open_nwb(path: Path):
    pynwb = _pynwb()
    if not path.is_file():
        raise FileNotFoundError(f"no NWB file at {path}")
    try:
        io = pynwb.NWBHDF5IO(str(path), "r", load_namespaces=True)
        nwb = io.read()
    except Exception as exc:  # noqa: BLE001 - h5py, hdmf and pynwb raise many kinds
        raise DataFormatError(f"{path} could not be read as an NWB 2 file: {type(exc).__name__}: {exc}") from None
    return io, nwb


def _scalar_columns(table, skip=()) -> Any:
    import pandas as pd

    cols = {}
    for name in table.colnames:
        if name in skip or name in _SKIP_UNIT_COLUMNS:
            continue
        col = table[name]
        if type(col).__name__ in ("VectorIndex", "DynamicTableRegion"):
            continue
        try:
            values = np.asarray(col.data[:])
        except Exception:  # noqa: BLE001 - a column we cannot read as an array is left out
            continue
        if values.ndim != 1:
            continue
        if values.dtype.kind in "SO":
            values = np.asarray([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object)
        cols[name] = values
    return pd.DataFrame(cols)


def read_units(path: str | os.PathLike, *, trials: str | None = "trials") -> SpikeTrains:
    """Read the spike times of an NWB 2 file's Units table (and its trials) into :class:`SpikeTrains`.

    Parameters
    ----------
    path
        An NWB 2 file (``.nwb``) with a ``/units`` table holding ``spike_times`` (s), as written by
        pynwb, the Neural Latents Benchmark or DANDI data sets.
    trials
        The intervals table giving the trials: ``"trials"`` (the file's trials table, the default),
        the name of another table under ``/intervals``, or ``None`` to read none. A missing trials
        table gives ``trials=None``; a missing table named otherwise raises.

    Raises
    ------
    DataFormatError
        Not an NWB 2 file, no Units table, no spike times, or a named intervals table that is missing.
    """
    path = Path(path)
    io, nwb = _open_nwb(path)
    with io:
        units = nwb.units
        if units is None:
            raise DataFormatError(f"{path}: no Units table (/units): the file holds no sorted spike times")
        if "spike_times" not in units.colnames:
            raise DataFormatError(f"{path}: the Units table has no spike_times column (has {list(units.colnames)})")
        ids = np.asarray(units.id.data[:])
        flat = np.asarray(units["spike_times"].target.data[:], dtype=np.float64)
        ends = np.asarray(units["spike_times"].data[:], dtype=np.int64)
        starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        times = tuple(flat[a:b] for a, b in zip(starts, ends))
        meta = _scalar_columns(units)
        tr = None
        if trials is not None:
            table = nwb.trials if trials == "trials" else (nwb.intervals.get(trials) if nwb.intervals else None)
            if table is None and trials != "trials":
                have = sorted(nwb.intervals) if nwb.intervals else []
                raise DataFormatError(f"{path}: no intervals table {trials!r} (has {have})")
            if table is not None:
                tr = _scalar_columns(table)
    return SpikeTrains(times, ids, meta, tr, str(path))


def write_units(path: str | os.PathLike, spikes: Any, *, trials: Any = None, session_description: str = "spikejax",
                identifier: str | None = None) -> Path:
    """Write spike trains (anything :func:`as_spike_trains` takes) as a new NWB 2 file (atomically).

    The units go to ``/units`` (``spike_times`` in s, the unit ids and the scalar metadata columns),
    the trials to the trials table (``start_time``, ``stop_time`` and the other columns).
    :func:`read_units` reads the file back with the spike times unchanged.
    """
    pynwb = _pynwb()
    st = as_spike_trains(spikes, trials=trials)
    nwb = pynwb.NWBFile(session_description=session_description, identifier=identifier or str(uuid.uuid4()),
                        session_start_time=datetime.datetime.now(datetime.timezone.utc))
    extra = [c for c in st.units.columns if c not in _SKIP_UNIT_COLUMNS]
    for c in extra:
        nwb.add_unit_column(name=str(c), description=str(c))
    for i, (uid, t) in enumerate(zip(st.unit_ids, st.times)):
        nwb.add_unit(spike_times=t, id=int(uid), **{str(c): _py(st.units[c].iloc[i]) for c in extra})
    if st.trials is not None:
        others = [c for c in st.trials.columns if c not in ("start_time", "stop_time")]
        for c in others:
            nwb.add_trial_column(name=str(c), description=str(c))
        for _, row in st.trials.iterrows():
            nwb.add_trial(start_time=float(row["start_time"]), stop_time=float(row["stop_time"]),
                          **{str(c): _py(row[c]) for c in others})
    return _write_nwb(nwb, Path(path))


def _py(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


@contextlib.contextmanager
def _atomic_nwb(path: Path):
    """A temporary ``.nwb`` path beside ``path`` (pynwb wants the suffix), renamed into place on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp = folder / (path.stem + ".nwb")
        yield tmp
        os.replace(tmp, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write_nwb(nwb, path: Path) -> Path:
    pynwb = _pynwb()
    with _atomic_nwb(path) as tmp:
        with pynwb.NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
    return path


# ---- NWB 2: results out ------------------------------------------------------------------------------
def _series_of(value: Any, name: str) -> tuple[np.ndarray, dict] | None:
    """``(data, timing)`` for a time series entry, or None for a table."""
    from .results import Trajectory

    if isinstance(value, Trajectory):
        if not hasattr(value, "to_pynapple"):
            raise TypeError(f"write_processing: entry {name!r}: a {type(value).__name__} has no to_pynapple(); pass "
                            "(array, dt_ms[, unit]) or its to_pandas() table instead")
        value = value.to_pynapple()
    if _is_pynapple(value, "Tsd", "TsdFrame", "TsdTensor"):
        t = np.asarray(value.t, np.float64)
        data = np.asarray(value.values if hasattr(value, "values") else value.d)
        info = {"timestamps": t}
        cols = getattr(value, "columns", None)
        if cols is not None:
            info["columns"] = [str(c) for c in cols]
        return data, info
    if isinstance(value, tuple) and len(value) in (2, 3):
        data = np.asarray(value[0])
        dt = float(check_scalar(value[1], f"{name}: dt (ms)", low=0.0, low_inclusive=False))
        unit = str(value[2]) if len(value) == 3 else "a.u."
        if data.ndim < 1:
            raise ShapeError(f"{name}: a time series needs a time axis first, got shape {data.shape}")
        return data, {"rate": 1000.0 / dt, "unit": unit}
    return None


def _table_of(value: Any, name: str):
    import pandas as pd

    from .results import Record

    if isinstance(value, Record):
        value = value.to_pandas()
    if isinstance(value, Mapping):
        rows = []
        for k, v in value.items():
            arr = np.asarray(v, dtype=np.float64)
            rows.append({"parameter": str(k), "shape": str(list(arr.shape)), "values": arr.reshape(-1)})
        width = max((r["values"].size for r in rows), default=1)
        df = pd.DataFrame({
            "parameter": [r["parameter"] for r in rows],
            "shape": [r["shape"] for r in rows],
            **{f"value_{i}": [r["values"][i] if i < r["values"].size else np.nan for r in rows] for i in range(width)},
        })
        return df
    if isinstance(value, pd.DataFrame):
        return value
    raise TypeError(
        f"write_processing: entry {name!r} must be a Trajectory, a pynapple Tsd/TsdFrame/TsdTensor, "
        f"(array, dt_ms[, unit]), a DataFrame, a Record or a mapping of parameters; got {type(value).__name__}"
    )


def _nwb_name(col: Any) -> str:
    return str(col).replace("/", "__")


def write_processing(path: str | os.PathLike, entries: Mapping[str, Any], *, source: str | os.PathLike | None = None,
                     module: str = "spikejax", description: str = "spikejax results") -> Path:
    """Write results into an NWB 2 processing module (atomically).

    Parameters
    ----------
    path
        The NWB file to write.
    entries
        ``name -> value``. Time series: a spikejax ``Trajectory`` (through its ``to_pynapple()``), a
        pynapple ``Tsd``/``TsdFrame``/``TsdTensor`` (timestamps in s), or ``(array, dt_ms[, unit])``
        with time as the first axis (bins of ``dt_ms`` from 0 s) — each a ``TimeSeries``. Tables: a
        ``pandas.DataFrame``, a ``Record`` (its ``to_pandas()`` table, e.g. a fit result) or a mapping
        of fitted parameters ``name -> array`` (one row per parameter: ``parameter``, ``shape``,
        ``value_0…``) — each a ``DynamicTable``. Column names with ``/`` are written with ``__``.
    source
        An NWB 2 file to copy (e.g. the recording the data came from); the module is added to the copy.
        ``path`` may equal ``source`` (the file is replaced atomically). Default: a new file.
    module
        Name of the processing module (must not exist in ``source``).
    description
        The module's description.
    """
    pynwb = _pynwb()
    from hdmf.common import DynamicTable

    path = Path(path)
    if not isinstance(entries, Mapping) or not entries:
        raise TypeError(f"entries must be a non-empty mapping name -> series or table, got {type(entries).__name__}")
    built = []
    for name, value in entries.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigError(f"write_processing: entry names must be non-empty strings without '/', got {name!r}")
        series = _series_of(value, name)
        if series is not None:
            data, info = series
            desc = f"spikejax: {name}" + (f"; columns: {', '.join(info['columns'])}" if "columns" in info else "")
            kw = {"timestamps": info["timestamps"]} if "timestamps" in info else {"rate": info["rate"], "starting_time": 0.0}
            built.append(pynwb.TimeSeries(name=name, data=data, unit=info.get("unit", "a.u."), description=desc, **kw))
        else:
            df = _table_of(value, name)
            df = df.reset_index(drop=isinstance(df.index, __import__("pandas").RangeIndex))
            df.columns = [_nwb_name(c) for c in df.columns]
            for c in df.columns:
                if df[c].dtype == object or str(df[c].dtype).startswith(("string", "str", "category")):
                    df[c] = df[c].astype(str)
            built.append(DynamicTable.from_dataframe(df, name=name, table_description=f"spikejax: {name}"))

    with _atomic_nwb(path) as tmp:
        if source is not None:
            src = Path(source)
            if not src.is_file():
                raise FileNotFoundError(f"no NWB file at {src} (source)")
            shutil.copyfile(src, tmp)
            try:
                io = pynwb.NWBHDF5IO(str(tmp), "a", load_namespaces=True)
                nwb = io.read()
            except Exception as exc:  # noqa: BLE001
                raise DataFormatError(f"{src} could not be read as an NWB 2 file: {type(exc).__name__}: {exc}") from None
            with io:
                if module in nwb.processing:
                    raise ConfigError(f"{src} already has a processing module {module!r}: pass another module=")
                mod = nwb.create_processing_module(name=module, description=description)
                for obj in built:
                    mod.add(obj)
                io.write(nwb)
        else:
            nwb = pynwb.NWBFile(session_description=description, identifier=str(uuid.uuid4()),
                                session_start_time=datetime.datetime.now(datetime.timezone.utc))
            mod = nwb.create_processing_module(name=module, description=description)
            for obj in built:
                mod.add(obj)
            with pynwb.NWBHDF5IO(str(tmp), "w") as io:
                io.write(nwb)
    return path


def read_processing(path: str | os.PathLike, *, module: str = "spikejax") -> dict[str, Any]:
    """Read a processing module written by :func:`write_processing`.

    Returns ``name -> value``: a ``TimeSeries`` as ``{"data": array, "timestamps": array (s)}`` (the
    timestamps computed from the rate where the series has one), a ``DynamicTable`` as a DataFrame
    (``__`` in column names read back as ``/``).
    """
    path = Path(path)
    io, nwb = _open_nwb(path)
    out: dict[str, Any] = {}
    with io:
        if module not in nwb.processing:
            raise DataFormatError(f"{path}: no processing module {module!r} (has {sorted(nwb.processing)})")
        for name, obj in nwb.processing[module].data_interfaces.items():
            if hasattr(obj, "colnames"):
                df = obj.to_dataframe().reset_index(drop=True)
                df.columns = [str(c).replace("__", "/") for c in df.columns]
                out[name] = df
            else:
                data = np.asarray(obj.data[:])
                if obj.timestamps is not None:
                    t = np.asarray(obj.timestamps[:], np.float64)
                else:
                    t = float(obj.starting_time or 0.0) + np.arange(data.shape[0]) / float(obj.rate)
                out[name] = {"data": data, "timestamps": t, "unit": obj.unit}
    return out


# ---- pynapple time series -----------------------------------------------------------------------------
def rates_to_pynapple(values: Any, *, dt: float, start: float = 0.0, columns: Sequence[Any] | None = None):
    """A time-major array (bins of ``dt`` ms from ``start`` s) as a pynapple ``TsdFrame`` (2-D),
    ``Tsd`` (1-D) or ``TsdTensor`` (3-D and more); timestamps at the bin centres, in s."""
    nap = _nap()
    x = np.asarray(values)
    dt = float(check_scalar(dt, "dt (ms)", low=0.0, low_inclusive=False))
    if x.ndim < 1:
        raise ShapeError(f"values must have a time axis first, got shape {x.shape}")
    t = float(start) + (np.arange(x.shape[0]) + 0.5) * dt / 1000.0
    if x.ndim == 1:
        return nap.Tsd(t=t, d=x, time_units="s")
    if x.ndim == 2:
        return nap.TsdFrame(t=t, d=x, columns=list(columns) if columns is not None else None, time_units="s")
    return nap.TsdTensor(t=t, d=x, time_units="s")


def rates_from_pynapple(frame: Any) -> tuple[np.ndarray, float]:
    """``(values, dt)`` of a pynapple ``Tsd``/``TsdFrame``/``TsdTensor`` on a regular grid: the array
    (time first, the dtype kept) and the bin width in ms (from the timestamps).

    Raises
    ------
    DataFormatError
        Fewer than two timestamps or an irregular grid (bin widths differing by more than 0.1 %).
    """
    if not _is_pynapple(frame, "Tsd", "TsdFrame", "TsdTensor"):
        raise TypeError(f"frame must be a pynapple Tsd, TsdFrame or TsdTensor, got {type(frame).__name__}")
    t = np.asarray(frame.t, np.float64)
    if t.size < 2:
        raise DataFormatError(f"frame: a regular time grid needs at least 2 timestamps, got {t.size}")
    d = np.diff(t)
    width = float(np.median(d))
    if width <= 0 or np.max(np.abs(d - width)) > 1e-3 * width:
        raise DataFormatError(f"frame: timestamps are not on a regular grid (steps {d.min():.6g} to {d.max():.6g} s)")
    return np.asarray(frame.values), float(np.round(width * 1000.0, 9))
