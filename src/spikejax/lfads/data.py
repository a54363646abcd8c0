"""Data for LFADS: the LFADS/lfads-torch h5 layout, validation, and synthetic Lorenz / 2-photon data.

h5 layout (lfads-torch, autolfads-tf2, RADICaL): ``train_data``, ``valid_data`` (trials × time ×
neurons), optional ``train_recon_data``/``valid_recon_data`` (lfads-torch's ``*_encod_data`` names
are accepted too), ``train_ext_input``/``valid_ext_input``, ``*_truth``, ``*_inds`` and scalars
such as ``conversion_factor``. Arrays written as MATLAB ``[neurons × samples × trials]`` by the
RADICaL/GCP tools appear to Python as trials × time × neurons already (column-major); an array
written from Python in ``(neurons, samples, trials)`` order is read with
``layout="neurons_samples_trials"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..core.errors import ConfigError, DataFormatError, NonFiniteError, ShapeError
from ..core.io import atomic_path
from ..core.random import check_key
from .rng import numpy_seed

__all__ = [
    "LAYOUTS",
    "load_lfads_h5",
    "save_lfads_h5",
    "check_dataset",
    "make_sv_mask",
    "load_lorenz_tutorial",
    "lorenz_trajectories",
    "generate_lorenz_dataset",
    "generate_calcium_dataset",
    "dataset_from_spikes",
]

LAYOUTS = ("trials_time_neurons", "neurons_samples_trials")


def _read(f, key, layout):
    arr = np.asarray(f[key][()])
    if arr.ndim == 3 and layout == "neurons_samples_trials":
        arr = np.transpose(arr, (2, 1, 0))
    return arr


def load_lfads_h5(path: str | Path, *, layout: str = "trials_time_neurons") -> dict[str, Any]:
    """Read an LFADS-style h5 file.

    Returns ``{"train": {...}, "valid": {...}, "extra": {...}}`` where each split holds ``data``
    (trials × time × neurons, float), and where present ``recon``, ``ext``, ``truth``, ``inds``
    (0-based as stored). Other datasets go to ``extra``.

    Raises
    ------
    DataFormatError
        Missing ``train_data``/``valid_data``, non-3-D arrays, or train/valid arrays that disagree
        on time or neuron counts (often a sign of the wrong ``layout``).
    """
    if layout not in LAYOUTS:
        raise DataFormatError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no LFADS h5 file at {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataFormatError(f"{path} is not a readable HDF5 file ({exc})") from exc
    out: dict[str, Any] = {"train": {}, "valid": {}, "extra": {}}
    with f:
        keys = set(f.keys())
        names = {"data": ("{s}_data", "{s}_encod_data"), "recon": ("{s}_recon_data",),
                 "ext": ("{s}_ext_input",), "truth": ("{s}_truth",), "inds": ("{s}_inds",)}
        used = set()
        for split in ("train", "valid"):
            for field, pats in names.items():
                for pat in pats:
                    k = pat.format(s=split)
                    if k in keys:
                        out[split][field] = _read(f, k, layout) if field != "inds" else np.asarray(f[k][()])
                        used.add(k)
                        break
            if "data" not in out[split]:
                raise DataFormatError(
                    f"{path}: no '{split}_data' (or '{split}_encod_data') dataset; found keys {sorted(keys)}. "
                    "LFADS h5 files need train_data and valid_data (trials x time x neurons).")
        for k in sorted(keys - used):
            if isinstance(f[k], h5py.Dataset):
                out["extra"][k] = np.asarray(f[k][()])
    for split in ("train", "valid"):
        for field in ("data", "recon", "ext", "truth"):
            if field in out[split] and out[split][field].ndim != 3:
                raise DataFormatError(
                    f"{path}: {split}_{field} must be 3-D (trials x time x neurons), got shape "
                    f"{out[split][field].shape}")
        out[split]["data"] = out[split]["data"].astype(np.float32)
    tr, va = out["train"]["data"], out["valid"]["data"]
    if tr.shape[1:] != va.shape[1:]:
        raise DataFormatError(
            f"{path}: train_data {tr.shape} and valid_data {va.shape} disagree on (time, neurons); expected "
            f"layout {layout!r} (trials x time x neurons after reading). If the file stores "
            "[neurons x samples x trials] from Python, pass layout='neurons_samples_trials'.")
    return out


def save_lfads_h5(path: str | Path, train: dict[str, Any], valid: dict[str, Any], extra: dict[str, Any] | None = None,
                  *, compression: str | None = "gzip") -> Path:
    """Write an LFADS-style h5 file atomically (float32 data; the int8 cast of the MATLAB tools is avoided)."""
    names = {"data": "{s}_data", "recon": "{s}_recon_data", "ext": "{s}_ext_input", "truth": "{s}_truth",
             "inds": "{s}_inds"}
    path = Path(path)
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            for split, d in (("train", train), ("valid", valid)):
                if "data" not in d:
                    raise DataFormatError(f"save_lfads_h5: the {split} split needs a 'data' array")
                for field, v in d.items():
                    if field not in names:
                        raise DataFormatError(f"save_lfads_h5: unknown field {field!r} in {split}; use {sorted(names)}")
                    v = np.asarray(v)
                    if field != "inds":
                        v = v.astype(np.float32)
                    f.create_dataset(names[field].format(s=split), data=v,
                                     compression=compression if v.ndim >= 2 else None)
            for k, v in (extra or {}).items():
                f.create_dataset(k, data=np.asarray(v))
    return path


_VALID_NAMES = ("val", "valid", "validation")


def dataset_from_spikes(spikes: Any, *, dt: float, trials: Any = None, n_bins: int | None = None,
                        align: str = "start_time", offset: float = 0.0, split_column: str = "split",
                        valid_fraction: float = 0.2) -> dict[str, Any]:
    """An LFADS dataset from spike trains with trials (an NWB 2 file, a pynapple ``TsGroup``, …).

    Each trial is binned at ``dt`` ms from its ``align`` time plus ``offset`` ms (default: its
    ``start_time``; the NLB files align to e.g. ``move_onset_time`` with ``offset=-250``) for ``n_bins``
    bins (default: as many whole bins as the shortest trial holds before its ``stop_time``), giving
    spike counts trials × time × neurons. Trials go to
    the ``train`` and ``valid`` splits by the trials table's ``split_column`` (the Neural Latents
    Benchmark's ``split``: ``train`` → train, ``val``/``valid`` → valid, other values such as ``test``
    are left out); without that column every ``round(1 / valid_fraction)``-th trial is a validation
    trial (no random numbers).

    Parameters
    ----------
    spikes
        What :func:`spikejax.core.as_spike_trains` takes: an NWB 2 file path (Units and trials tables),
        :class:`~spikejax.core.SpikeTrains`, or a pynapple ``TsGroup`` with ``trials`` an ``IntervalSet``
        (its metadata may hold the split column).
    dt
        Bin width in ms (the model's ``LFADSConfig.dt``).
    trials
        The trials as a pynapple ``IntervalSet`` when ``spikes`` is a ``TsGroup``.
    n_bins
        Bins per trial (``encod_seq_len``); every trial must be at least this long.
    align, offset
        The trials column (s) each trial's first bin starts from, and a shift in ms.
    split_column, valid_fraction
        The split rule above.

    Returns
    -------
    dict
        The layout of :func:`load_lfads_h5`: ``{"train": {"data", "inds"}, "valid": {"data", "inds"},
        "extra": {...}}``, ``data`` float32 counts, ``inds`` the 0-based trial rows; ``extra`` holds
        ``dt``, ``unit_ids``, ``trial_start_s`` (each trial row's first bin, s) and ``test_inds`` (rows left out).

    Raises
    ------
    DataFormatError
        No trials table, or a trial shorter than ``n_bins`` bins; a split column with no train or no
        valid trial.
    """
    from ..core.errors import check_scalar
    from ..core.nwb import as_spike_trains, bin_spikes

    st = as_spike_trains(spikes, trials=trials)
    dt = float(check_scalar(dt, "dt (ms)", low=0.0, low_inclusive=False))
    if st.trials is None or len(st.trials) == 0:
        raise DataFormatError(f"{st.source}: no trials (a trials table with start_time/stop_time) to cut LFADS "
                              "trials from; pass trials= (a pynapple IntervalSet) or add a trials table")
    width = dt / 1000.0
    if align not in st.trials.columns:
        raise DataFormatError(f"{st.source}: the trials have no {align!r} column to align to (columns: "
                              f"{list(st.trials.columns)})")
    offset = float(check_scalar(offset, "offset (ms)"))
    start = st.trials[align].to_numpy(np.float64) + offset / 1000.0
    if not np.all(np.isfinite(start)):
        raise DataFormatError(f"{st.source}: the trials' {align!r} column has NaN entries")
    stop = st.trials["stop_time"].to_numpy(np.float64)
    whole = np.floor((stop - start) / width + 1e-9).astype(np.int64)
    if n_bins is None:
        n_bins = int(whole.min())
        if n_bins < 1:
            raise DataFormatError(f"{st.source}: trial {int(np.argmin(whole))} holds no whole bin of {dt} ms between "
                                  f"its {align!r} time (+ offset) and its stop_time")
    n_bins = int(check_scalar(n_bins, "n_bins", low=1, integer=True))
    short = np.flatnonzero(whole < n_bins)
    if short.size:
        raise DataFormatError(f"{st.source}: trial {int(short[0])} holds {int(whole[short[0]])} whole bins of {dt} ms, "
                              f"fewer than n_bins={n_bins} ({short.size} such trials)")
    n_tr, n_units = start.size, st.n_units
    counts = np.zeros((n_tr, n_bins, n_units), np.float32)
    order = np.argsort(start, kind="stable")
    s_sorted = start[order]
    ends = s_sorted + n_bins * width
    if np.all(s_sorted[1:] >= ends[:-1] - 1e-12):  # non-overlapping windows: one pass per unit
        for u, t in enumerate(st.times):
            j = np.searchsorted(s_sorted, t, side="right") - 1
            ok = j >= 0
            j, tt = j[ok], t[ok]
            k = np.floor((tt - s_sorted[j]) / width + 1e-9).astype(np.int64)
            keep = (k >= 0) & (k < n_bins)
            np.add.at(counts, (order[j[keep]], k[keep], np.full(int(keep.sum()), u)), 1.0)
    else:
        for i in range(n_tr):
            counts[i] = bin_spikes(st, dt=dt, start=start[i], stop=start[i] + n_bins * width)
    if split_column in st.trials.columns:
        lab = np.asarray([str(v).strip().lower() for v in st.trials[split_column]])
        tr_idx = np.flatnonzero(lab == "train")
        va_idx = np.flatnonzero(np.isin(lab, _VALID_NAMES))
        if tr_idx.size == 0 or va_idx.size == 0:
            raise DataFormatError(f"{st.source}: the trials' {split_column!r} column needs 'train' and 'val' trials, "
                                  f"has {sorted(set(lab.tolist()))}")
    else:
        frac = float(check_scalar(valid_fraction, "valid_fraction", low=0.0, high=1.0, low_inclusive=False,
                                  high_inclusive=False))
        every = max(2, int(round(1.0 / frac)))
        is_val = (np.arange(n_tr) % every) == every - 1
        if not is_val.any():
            is_val[-1] = True
        tr_idx, va_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        if tr_idx.size == 0:
            raise DataFormatError(f"{st.source}: {n_tr} trial(s) cannot give both a train and a valid split")
    rest = np.setdiff1d(np.arange(n_tr), np.concatenate([tr_idx, va_idx]))
    return {
        "train": {"data": counts[tr_idx], "inds": tr_idx},
        "valid": {"data": counts[va_idx], "inds": va_idx},
        "extra": {"dt": dt, "unit_ids": np.asarray(st.unit_ids), "trial_start_s": start, "test_inds": rest},
    }


class NonFiniteDataError(NonFiniteError, DataFormatError):
    """Data holding inf (or NaN where no entry may be missing): a non-finite input and a malformed data set."""


def check_dataset(data: dict[str, Any], config, *, sbtt: bool = False, name: str = "data", array_ok: bool = False) -> None:
    """Validate a split dict against a model config; raise a clear error on bad input.

    ``array_ok=True`` also accepts a bare (trials, time, neurons) array (as :func:`~spikejax.lfads.infer` does).

    Checks the shapes ``(trials, encod_seq_len, data_dim)`` / ``(trials, recon_seq_len,
    recon_dim)``, NaN only with ``sbtt=True``, no inf, non-negative counts for Poisson, and for
    ZIG that every non-zero event exceeds ``s_min``.
    """
    bare = not isinstance(data, dict)
    if bare and not array_ok:
        raise DataFormatError(f"{name} must be a dict with a 'data' array (trials x time x neurons), got "
                              f"{type(data).__name__}")
    if bare:
        data = {"data": data}
    if "data" not in data:
        raise DataFormatError(f"{name} must be a dict with a 'data' array (trials x time x neurons); it has keys "
                              f"{sorted(data)}")
    label = name if bare else f"{name}['data']"
    raw = data["data"]
    if isinstance(raw, (str, bytes)) or raw is None:
        raise TypeError(f"{label} must be an array of counts (trials x time x neurons), got {type(raw).__name__} {raw!r}")
    try:
        x = np.asarray(raw, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{label} must be an array of numbers (trials x time x neurons): {exc}") from None
    if x.ndim != 3 or x.shape[1:] != (config.encod_seq_len, config.data_dim):
        raise ShapeError(f"{label} must have shape (trials, {config.encod_seq_len}, {config.data_dim}) (trials x "
                         f"encod_seq_len x data_dim: the model has data_dim={config.data_dim} neurons and "
                         f"encod_seq_len={config.encod_seq_len} bins), got {x.shape}")
    if x.shape[0] == 0:
        raise ShapeError(f"{label} holds no trials (shape {x.shape}); at least one trial is needed")
    y = np.asarray(data.get("recon", data["data"]), dtype=float)
    if y.shape[1:] != (config.recon_seq_len, config.recon_dim) or y.shape[0] != x.shape[0]:
        raise ShapeError(f"{name}['recon'] must have shape ({x.shape[0]}, {config.recon_seq_len}, "
                         f"{config.recon_dim}), got {y.shape}")
    if "ext" in data:
        e = np.asarray(data["ext"])
        if e.shape != (x.shape[0], config.recon_seq_len, config.ext_input_dim):
            raise ShapeError(f"{name}['ext'] must have shape ({x.shape[0]}, {config.recon_seq_len}, "
                             f"{config.ext_input_dim}), got {e.shape}")
        if not np.all(np.isfinite(e)):
            raise NonFiniteDataError(f"{name}['ext'] contains NaN/inf")
    elif config.ext_input_dim > 0:
        raise DataFormatError(f"{name} needs an 'ext' array: the model has ext_input_dim={config.ext_input_dim}")
    for arr, which in ((x, "data"), (y, "recon")):
        where = label if which == "data" else f"{name}['{which}']"
        if np.any(np.isinf(arr)):
            raise NonFiniteDataError(f"{where} contains {int(np.isinf(arr).sum())} inf value(s); counts must be finite "
                                     "(NaN marks a missing entry)")
        n_nan = int(np.isnan(arr).sum())
        if n_nan and not sbtt:
            raise NonFiniteDataError(
                f"{name}['{which}'] contains {n_nan} NaN entries (missing samples) but SBTT is off; pass "
                "sbtt=True to train on the observed entries only, or fill the missing values")
        v = arr[~np.isnan(arr)]
        if config.reconstruction == "poisson":
            if v.size and v.min() < 0:
                raise DataFormatError(f"{where} has negative counts (min {v.min()}); the Poisson "
                                      "observation model needs counts >= 0")
        else:
            if v.size and v.min() < 0:
                raise DataFormatError(f"{where} has negative events (min {v.min()}); ZIG needs y >= 0")
            bad = (v > 0) & (v <= config.s_min)
            if bad.any():
                raise DataFormatError(
                    f"{where} has {int(bad.sum())} non-zero events <= s_min={config.s_min} (smallest "
                    f"{v[v > 0].min():.4g}); the ZIG needs every event > s_min: threshold the events (set y <= s_min "
                    "to 0) or lower s_min below the smallest event")


def make_sv_mask(shape, sv_rate: float, seed: int) -> np.ndarray:
    """Fixed sample-validation mask: True = held in (probability 1 - sv_rate), seeded."""
    rng = np.random.default_rng(seed)
    return rng.random(shape) >= sv_rate


def load_lorenz_tutorial() -> dict[str, Any]:
    """The bundled LFADS-tutorial Lorenz dataset (MIT; see ``spikejax/data/lfads/README.md``).

    Returns ``{"train": {...}, "valid": {...}, "dt": 10.0}`` with ``data`` (counts per 10-ms bin,
    trials × 100 × 60), ``truth`` (spikes/s), ``lowd`` (standardised Lorenz x, y, z), ``inds`` and
    ``cond``; ``dt`` is the bin width in ms.
    """
    from ..data import path as data_path

    p = data_path("lfads/lfads_lorenz.h5")
    with h5py.File(p, "r") as f:
        per = int(f["n_trials_per_init_cond"][0])
        ct, cl = f["cond_truth"][()], f["cond_lowd"][()]
        out = {}
        for s in ("train", "valid"):
            inds = f[f"{s}_inds"][()]
            cond = inds // per
            out[s] = {"data": f[f"{s}_data"][()].astype(np.float32), "truth": ct[cond], "lowd": cl[cond],
                      "inds": inds, "cond": cond}
    out["dt"] = 10.0
    return out


def lorenz_trajectories(n: int, n_steps: int, *, lorenz_dt: float, rng: np.random.Generator, burn_in: int = 500,
                        sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0,
                        standard: bool = True) -> np.ndarray:
    """Forward-Euler Lorenz trajectories (n, n_steps, 3) from ``N(0, I) + (0, 0, 25)`` after ``burn_in`` steps.

    ``standard=False`` reproduces the published lfads-run-manager variant without the ``-y`` term.
    """
    s = rng.normal(size=(n, 3)) + np.array([0.0, 0.0, 25.0])
    out = np.empty((n, n_steps, 3))

    def deriv(s):
        x, y, z = s[:, 0], s[:, 1], s[:, 2]
        dy = x * (rho - z) - (y if standard else 0.0)
        return np.stack([sigma * (y - x), dy, x * y - beta * z], axis=1)

    for _ in range(burn_in):
        s = s + lorenz_dt * deriv(s)
    for t in range(n_steps):
        s = s + lorenz_dt * deriv(s)
        out[:, t] = s
    return out


def generate_lorenz_dataset(*, key: Any, n_conditions: int = 65, trials_per_condition: int = 24,
                            n_neurons: int = 29, n_steps: int = 1000, lorenz_dt: float = 0.006, dt: int = 20,
                            base_rate_hz: float = 5.0, valid_fraction: float = 0.2,
                            standard: bool = True) -> dict[str, Any]:
    """The LFADS "lorenz" demo-data recipe (spec §5.1): 1-ms Poisson spikes thresholded to 0/1, binned.

    Latents are centred per condition and divided by their max; rates ``exp(clip(W x + b, -20, 20))``
    spikes/ms with ``|W| ∈ [1, 2]`` and ``b = log(base_rate_hz/1000)``. Returns train/valid splits
    with ``data`` (counts per bin), ``truth`` (spikes/s, binned mean) and ``latents``, and ``dt``.

    ``key``: a JAX PRNG key; the recipe draws with NumPy, seeded from the key
    (``jax.random.key(s)`` gives the numbers the former ``seed=s`` gave). ``n_steps`` 1-ms steps are
    binned into ``dt``-ms bins; ``lorenz_dt`` is the Euler step of the Lorenz equations (dimensionless).
    """
    rng = np.random.default_rng(numpy_seed(check_key(key)))
    bin_ms = int(dt)
    lat = lorenz_trajectories(n_conditions, n_steps, lorenz_dt=lorenz_dt, rng=rng, standard=standard)
    lat = lat - lat.mean(axis=1, keepdims=True)
    lat = lat / np.abs(lat).max(axis=1, keepdims=True)
    w = (rng.random((n_neurons, 3)) + 1.0) * np.sign(rng.normal(size=(n_neurons, 3)))
    b = np.log(base_rate_hz / 1000.0)
    rates = np.exp(np.clip(lat @ w.T + b, -20, 20))  # spikes/ms, (cond, steps, neurons)
    cond = np.repeat(np.arange(n_conditions), trials_per_condition)
    spikes = (rng.poisson(rates[cond]) > 0).astype(np.float32)
    nb = n_steps // bin_ms
    counts = spikes[:, : nb * bin_ms].reshape(len(cond), nb, bin_ms, n_neurons).sum(2)
    truth = rates[cond][:, : nb * bin_ms].reshape(len(cond), nb, bin_ms, n_neurons).mean(2) * 1000.0
    latb = lat[cond][:, : nb * bin_ms].reshape(len(cond), nb, bin_ms, 3).mean(2)
    return _split(rng, {"data": counts, "truth": truth.astype(np.float32), "latents": latb.astype(np.float32),
                        "cond": cond}, valid_fraction, bin_ms)


def _split(rng, arrays, valid_fraction, dt):
    n = len(arrays["cond"])
    valid = np.zeros(n, bool)
    valid[np.arange(n) % max(int(round(1 / valid_fraction)), 2) == 0] = True
    out = {"train": {}, "valid": {}, "dt": float(dt)}
    for k, v in arrays.items():
        out["train"][k] = v[~valid]
        out["valid"][k] = v[valid]
    out["train"]["inds"] = np.flatnonzero(~valid)
    out["valid"]["inds"] = np.flatnonzero(valid)
    return out


def generate_calcium_dataset(*, n_conditions: int = 16, trials_per_condition: int = 20, n_neurons: int = 60,
                             n_bins: int = 60, dt: float = 10.0, frame_bins: int = 3, speed: float = 1.0,
                             base_rate_hz: float = 8.0, gain: tuple[float, float] = (1.0, 2.0),
                             tau_rise_ms: float = 30.0, tau_decay_ms: float = 400.0, amplitude: float = 1.0,
                             noise_sd: float = 0.1, s_min: float = 0.1, threshold: float | None = None,
                             deconvolution: str = "nnls", tail_frames: int = 3, valid_fraction: float = 0.2,
                             key: Any) -> dict[str, Any]:
    """Synthetic RADICaL-style 2-photon data with staggered sampling (a spikejax recipe, spec §5.3).

    Pipeline: Lorenz latents (standard equations; ``speed`` scales time) → rates
    ``base·exp(W x)`` (spikes/s, ``|W|`` in ``gain``) → Poisson spike counts per ``dt``-ms bin →
    calcium ``Σ spikes ⋆ amplitude·(e^{-t/τ_d} − e^{-t/τ_r})`` (peak-normalised, GCaMP6f-like; a
    spike in bin b first shows in bin b + 1 and peaks ≈ 80 ms later for τ_r = 30, τ_d = 400 ms) → ΔF/F
    with Gaussian noise ``noise_sd`` → sampled once per frame of ``frame_bins`` bins at the neuron's
    sub-frame offset ``n mod frame_bins`` (staggered) → deconvolution at the frame rate → events
    ``<= threshold`` set to 0 (``threshold`` defaults to ``max(s_min, 3·noise_sd)``) → NaN at every
    unsampled bin.

    Deconvolution (the sampled frames of one neuron, the true kernel known, as OASIS with fitted
    AR(2) parameters would use it):

    * ``"nnls"`` (default): non-negative least squares ``min_s ‖F − H s‖², s ≥ 0`` with
      ``H[k, j] = h(t_k − t_j)``, the double-exponential kernel (rise *and* decay) evaluated
      between the neuron's sampling times; event ``s_j`` estimates the spikes at the j-th
      sampling time, so events are not delayed with respect to the spikes. The simulation runs
      ``tail_frames`` frames past the trial end (cropped afterwards) so the last frames'
      spikes are visible to the deconvolution, as in a trial cut from a continuous recording.
    * ``"ar1"``: the decay-only inversion ``s_k = max(F_k − γ F_{k−1}, 0)``, ``γ = exp(−frame/τ_d)``.
      It ignores the rise time, so its events lag the spikes by 1–2 frames (kept to show that
      effect; the rate R² against the true rates drops accordingly).

    Returns train/valid splits with ``data`` (events, NaN where not sampled), ``rates`` (true
    spikes/s per bin), ``spikes``, ``latents``, ``cond``; plus ``s_min``, ``dt`` (the bin width in ms),
    ``frame_bins``. ``key``: a JAX PRNG key seeding the NumPy draws (``jax.random.key(s)`` gives the
    numbers the former ``seed=s`` gave).
    """
    bin_ms = float(dt)
    if deconvolution not in ("nnls", "ar1"):
        raise ConfigError(f"deconvolution must be 'nnls' or 'ar1', got {deconvolution!r}")
    if tail_frames < 0:
        raise ConfigError(f"tail_frames must be >= 0, got {tail_frames}")
    thr = max(s_min, 3 * noise_sd) if threshold is None else threshold
    if thr < s_min:
        raise ConfigError(f"threshold ({thr}) must be >= s_min ({s_min})")
    rng = np.random.default_rng(numpy_seed(check_key(key)))
    dt_lorenz = 0.01 * speed * bin_ms / 10.0
    sub = 5
    n_sim = n_bins + frame_bins * tail_frames if deconvolution == "nnls" else n_bins
    lat = lorenz_trajectories(n_conditions, n_sim * sub, lorenz_dt=dt_lorenz / sub, rng=rng)[:, ::sub]
    mu, sd = lat[:, :n_bins].mean(axis=(0, 1)), lat[:, :n_bins].std(axis=(0, 1))
    lat = (lat - mu) / sd
    w = rng.uniform(*gain, size=(n_neurons, 3)) * np.sign(rng.normal(size=(n_neurons, 3))) / np.sqrt(3)
    rates = base_rate_hz * np.exp(lat @ w.T)  # spikes/s
    cond = np.repeat(np.arange(n_conditions), trials_per_condition)
    r = rates[cond]
    spikes = rng.poisson(r * bin_ms / 1000.0).astype(np.float32)
    t = np.arange(n_sim) * bin_ms
    kern = np.exp(-t / tau_decay_ms) - np.exp(-t / tau_rise_ms)
    kern = amplitude * kern / kern.max()
    calcium = np.zeros_like(spikes)
    for lag in range(1, n_sim):
        calcium[:, lag:] += kern[lag] * spikes[:, : n_sim - lag]
    fluor = calcium + noise_sd * rng.normal(size=calcium.shape)
    events = np.full((len(cond), n_bins, n_neurons), np.nan, np.float32)
    for n in range(n_neurons):
        idx = np.arange(n % frame_bins, n_sim, frame_bins)
        f = fluor[:, idx, n]
        if deconvolution == "nnls":
            s = _nnls_deconvolve(f, kern, idx)
        else:
            gamma = np.exp(-frame_bins * bin_ms / tau_decay_ms)
            prev = np.concatenate([f[:, :1], f[:, :-1]], axis=1)
            s = np.maximum(f - gamma * prev, 0.0)
            s[:, 0] = 0.0
        s[s <= thr] = 0.0
        keep = idx < n_bins
        events[:, idx[keep], n] = s[:, keep]
    arrays = {"data": events, "rates": r[:, :n_bins].astype(np.float32), "spikes": spikes[:, :n_bins],
              "latents": lat[cond][:, :n_bins].astype(np.float32), "cond": cond}
    out = _split(rng, arrays, valid_fraction, bin_ms)
    out.update({"s_min": float(s_min), "frame_bins": int(frame_bins), "threshold": float(thr)})
    return out


def _nnls_deconvolve(f: np.ndarray, kern: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Non-negative deconvolution of sampled traces ``f`` (traces × frames) with kernel ``kern`` (per bin).

    ``H[k, j] = kern[idx_k − idx_j]`` (0 for negative lags): the event at frame j stands for the
    spikes at the sampling bin ``idx_j``.
    """
    from scipy.optimize import nnls

    lags = idx[:, None] - idx[None, :]
    h = np.where(lags >= 0, kern[np.clip(lags, 0, len(kern) - 1)], 0.0)
    out = np.empty_like(f, dtype=np.float64)
    for i in range(f.shape[0]):
        out[i] = nnls(h, f[i])[0]
    return out
