"""Data for the mesoscopic model: the fitting container, re-binning and loaders.

:class:`MesoData` holds one trial at Δ = 4 ms: the observed spikes of a few recorded neurons
per population (the history window and the fitted window) and, when known, the true population
activity Z (used for evaluation only, never for fitting).

Loaders read

* the surrogate files of the neuLVM example (``wta3pop_surrogate_T11s_seed1.npz`` with the keys
  of the original ``3pop_noinput_small`` at 0.2 ms, and ``wta3pop_surrogate_T200s_seed2.npz``
  with counts and recorded-spike index lists),
* the compact 4-ms excerpts bundled with spikejax (``spikejax/data/meso/``),
* ``wta3pop_params.json`` (the ground truth).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import (
    ConfigError,
    DataFormatError,
    ShapeError,
    SpikejaxError,
    check_array,
    check_binary,
    check_scalar,
    is_traced,
)
from ..core.io import load_json
from .micro import MICRO_DT_MS, MicroResult
from .model import DT_MS, HIST_BINS, initial_age

_DT_S = DT_MS / 1000.0
from .params import MesoParams

__all__ = [
    "MesoData",
    "rebin_counts",
    "rebin_spikes",
    "load_npz",
    "load_bundled",
    "load_params_json",
    "bundled_path",
    "dominance_durations",
    "winner_loser_rates",
    "data_from_spikes",
]


def _validate_N(N, M: int) -> tuple:
    if N is None:
        raise ConfigError("N (population sizes) is required")
    N = tuple(np.asarray(N).ravel().tolist())
    if len(N) != M:
        raise ShapeError(f"N must give one size per population ({M}), got {N!r}")
    for n in N:
        if not np.isfinite(n) or n != int(n) or n < 1:
            raise ConfigError(f"N must hold population sizes >= 1 (whole numbers), got {N!r}")
    return tuple(int(n) for n in N)


class MesoData(eqx.Module):
    """One trial for the mesoscopic model at bin size ``dt`` (4 ms); a pytree (passes through ``jit``/``vmap``).

    Attributes
    ----------
    y : (T, M, n) array
        Binary spikes of the n observed neurons per population in the fitted window.
    y_hist : (K, M, n) array
        Their spikes in the history window before it (1 s = 250 bins in neuLVM).
    Z : (T, M) array or None
        True fraction of each population firing per bin (evaluation only; :func:`~spikejax.meso.loss`
        scores it, :func:`~spikejax.meso.fit_em` never uses it).
    Z_hist : (K, M) array or None
        True fraction in the history window (plots only).
    N : tuple of int (static)
        Population sizes.
    dt : float (static)
        Bin size in ms.
    I_ext : (T, M) array or None
        External input in Δu/s during the fitted window.
    A0 : (M,) array
        Mean rate (Hz) of the observed neurons over the history window (stationary start).
    age0 : (M, n) int array
        Bins since each observed neuron's last history spike (0 when none, as neuLVM).
    """

    y: jax.Array
    y_hist: jax.Array
    Z: jax.Array | None
    Z_hist: jax.Array | None
    I_ext: jax.Array | None
    A0: jax.Array
    age0: jax.Array
    N: tuple = eqx.field(static=True)
    dt: float = eqx.field(static=True)

    def __init__(self, y, y_hist, *, N, Z=None, Z_hist=None, dt: float = DT_MS, I_ext=None):
        dims: dict[str, int] = {}
        y = check_array(y, "y (observed spikes)", ("T", "M", "n"), dims=dims, binary=True)
        y_hist = check_array(y_hist, "y_hist (history spikes)", (None, "M", "n"), dims=dims, binary=True)
        M = dims["M"]
        if dims["T"] < 2:
            raise ShapeError(f"y needs at least 2 bins, got shape {tuple(y.shape)}")
        self.N = _validate_N(N, M)
        self.dt = float(check_scalar(dt, "dt (ms)", low=0.0, low_inclusive=False))
        dtype = jnp.result_type(float)
        self.y = y.astype(dtype)
        self.y_hist = y_hist.astype(dtype)
        self.Z = None if Z is None else check_array(Z, "Z", (dims["T"], M), low=0.0, high=1.0).astype(dtype)
        self.Z_hist = (
            None if Z_hist is None else check_array(Z_hist, "Z_hist", (y_hist.shape[0], M), low=0.0, high=1.0)
        )
        self.I_ext = None if I_ext is None else check_array(I_ext, "I_ext", (dims["T"], M)).astype(dtype)
        if y_hist.shape[0] > 0:
            self.A0 = self.y_hist.mean(axis=(0, 2)) / (self.dt / 1000.0)
        else:
            self.A0 = jnp.zeros((M,), dtype)
        self.age0 = initial_age(self.y_hist)

    def with_Z(self, Z) -> "MesoData":
        """The same trial with the population activity ``Z`` (T, M) in [0, 1] (e.g. an inferred one),
        to score with :func:`~spikejax.meso.loss`; validated unless traced."""
        if is_traced(Z):
            return eqx.tree_at(lambda d: d.Z, self, jnp.asarray(Z, self.y.dtype), is_leaf=lambda x: x is None)
        Z = check_array(Z, "Z", (self.T, self.M), low=0.0, high=1.0).astype(self.y.dtype)
        return eqx.tree_at(lambda d: d.Z, self, Z, is_leaf=lambda x: x is None)

    @property
    def T(self) -> int:
        """Bins in the fitted window."""
        return int(self.y.shape[0])

    @property
    def M(self) -> int:
        """Number of populations."""
        return int(self.y.shape[1])

    @property
    def n_obs(self) -> int:
        """Observed neurons per population."""
        return int(self.y.shape[2])

    def __repr__(self) -> str:
        return (
            f"MesoData(T={self.T} bins of {self.dt:g} ms, M={self.M}, n_obs={self.n_obs}, "
            f"history={self.y_hist.shape[0]} bins, N={self.N}, Z={'known' if self.Z is not None else 'hidden'})"
        )

    @classmethod
    def from_full(
        cls, spikes, *, N, Z=None, hist_bins: int = HIST_BINS, n_obs: int | None = None, dt: float = DT_MS, I_ext=None
    ) -> "MesoData":
        """Split a whole recording (T_total, M, n) into history and fitted window.

        ``spikes`` are binarised per bin (count > 0); ``Z`` (T_total, M) optional; ``I_ext``
        (T_total − hist_bins, M) optional; ``n_obs`` keeps the first neurons per population.
        """
        spikes = check_array(spikes, "spikes", (None, None, None))
        check_binary(np.asarray(spikes) > 0, "spikes")
        hist_bins = int(check_scalar(hist_bins, "hist_bins", low=0, integer=True))
        if spikes.shape[0] <= hist_bins + 1:
            raise ShapeError(
                f"spikes must have more than hist_bins + 1 = {hist_bins + 1} bins, got shape {tuple(spikes.shape)}"
            )
        s = np.asarray(spikes)
        if np.any(s < 0):
            raise SpikejaxError("spikes must be non-negative spike counts or 0/1 indicators")
        s = (s > 0).astype(np.uint8)
        if n_obs is not None:
            n_obs = int(check_scalar(n_obs, "n_obs", low=1, high=s.shape[2], integer=True))
            s = s[:, :, :n_obs]
        Zf = Zh = None
        if Z is not None:
            Z = check_array(Z, "Z", (s.shape[0], s.shape[1]), low=0.0, high=1.0)
            Zh, Zf = Z[:hist_bins], Z[hist_bins:]
        return cls(s[hist_bins:], s[:hist_bins], N=N, Z=Zf, Z_hist=Zh, dt=dt, I_ext=I_ext)

    @classmethod
    def from_micro(
        cls, result: MicroResult, *, n_obs: int = 3, hist_bins: int = HIST_BINS, dt: float = DT_MS, I_ext=None
    ) -> "MesoData":
        """Re-bin a :class:`MicroResult` to ``dt`` and split it (first ``n_obs`` recorded neurons)."""
        f = int(round(dt / result.dt))
        if f < 1 or not np.isclose(f * result.dt, dt):
            raise ConfigError(f"dt ({dt}) must be a multiple of the micro result's bin ({result.dt})")
        counts = rebin_counts(np.asarray(result.counts), f)
        spikes = rebin_spikes(np.asarray(result.spikes), f)
        Z = counts / np.asarray(result.N, dtype=float)[None, :]
        return cls.from_full(spikes, N=result.N, Z=Z, hist_bins=hist_bins, n_obs=n_obs, dt=dt, I_ext=I_ext)

    def window(self, start: int, stop: int) -> "MesoData":
        """Sub-window ``[start, stop)`` of the fitted bins; the bins before ``start`` (up to the
        history length) become the new history."""
        K = self.y_hist.shape[0]
        y_all = jnp.concatenate([self.y_hist, self.y], 0)
        Z_all = None
        if self.Z is not None and self.Z_hist is not None:
            Z_all = jnp.concatenate([jnp.asarray(self.Z_hist, self.Z.dtype), self.Z], 0)
        if not 0 <= start < stop <= self.T or stop - start < 2:
            raise ConfigError(f"window must satisfy 0 <= start < stop <= {self.T} (>= 2 bins), got {start}, {stop}")
        s0 = K + start
        h0 = max(0, s0 - K)
        return MesoData(
            y_all[s0 : K + stop],
            y_all[h0:s0],
            N=self.N,
            Z=None if self.Z is None else self.Z[start:stop],
            Z_hist=None if Z_all is None else Z_all[h0:s0],
            dt=self.dt,
            I_ext=None if self.I_ext is None else self.I_ext[start:stop],
        )


def data_from_spikes(
    spikes: Any,
    *,
    N,
    population_column: str = "population",
    populations=None,
    n_obs: int | None = None,
    hist_bins: int = HIST_BINS,
    start: float | None = None,
    stop: float | None = None,
    dt: float = DT_MS,
    I_ext=None,
) -> MesoData:
    """A :class:`MesoData` from recorded spike trains (an NWB 2 file, a pynapple ``TsGroup``, …).

    The spikes are binned at ``dt`` ms from ``start`` to ``stop`` (s; default the first and last
    spike), binarised per bin (a neuron spikes at most once per 4-ms bin in the model), and the
    units grouped by their ``population_column`` (the NWB Units table's column, or the ``TsGroup``'s
    metadata): population ``m`` is ``populations[m]`` (default: the labels in order of first
    appearance), and each keeps its first ``n_obs`` units (default: as many as the smallest group
    has). The first ``hist_bins`` bins become the history window (:meth:`MesoData.from_full`).

    Parameters
    ----------
    spikes
        What :func:`spikejax.core.as_spike_trains` takes.
    N
        Population sizes (the whole populations, not the observed neurons), one per population.
    population_column, populations, n_obs
        The grouping above.
    hist_bins, dt, I_ext
        As in :meth:`MesoData.from_full`.
    start, stop
        The recording window in s.

    Raises
    ------
    DataFormatError
        No ``population_column`` in the units' metadata, or a population with no unit.
    """
    from ..core.nwb import as_spike_trains, bin_spikes

    st = as_spike_trains(spikes)
    if population_column not in st.units.columns:
        raise DataFormatError(
            f"{st.source}: the units have no {population_column!r} column to group them into populations "
            f"(columns: {list(st.units.columns)}); pass population_column="
        )
    labels = np.asarray([str(v) for v in st.units[population_column]])
    if populations is None:
        populations = list(dict.fromkeys(labels.tolist()))
    populations = [str(p) for p in populations]
    groups = [np.flatnonzero(labels == p) for p in populations]
    empty = [p for p, g in zip(populations, groups) if g.size == 0]
    if empty:
        raise DataFormatError(f"{st.source}: no unit has {population_column} = {empty[0]!r} (labels: {sorted(set(labels))})")
    n_min = min(g.size for g in groups)
    if n_obs is None:
        n_obs = n_min
    n_obs = int(check_scalar(n_obs, "n_obs", low=1, high=n_min, integer=True))
    counts = bin_spikes(st, dt=dt, start=start, stop=stop)
    spikes_ = np.stack([counts[:, g[:n_obs]] for g in groups], axis=1)  # (T, M, n_obs)
    return MesoData.from_full(spikes_, N=N, hist_bins=hist_bins, dt=dt, I_ext=I_ext)


def check_params_data(params, data) -> None:
    """Raise ``TypeError``/:class:`ConfigError` unless ``params`` is a valid :class:`MesoParams` and
    ``data`` a :class:`MesoData` with the same population sizes."""
    if not isinstance(params, MesoParams):
        raise TypeError(f"params must be a MesoParams, got {type(params).__name__}")
    params.validate()
    if not isinstance(data, MesoData):
        raise TypeError(f"data must be a MesoData, got {type(data).__name__}")
    if tuple(params.N) != tuple(data.N):
        raise ConfigError(f"params.N {params.N} must equal data.N {data.N}")


def rebin_counts(counts: np.ndarray, factor: int) -> np.ndarray:
    """Sum counts (T, ...) over consecutive groups of ``factor`` bins (trailing partial bin dropped)."""
    counts = np.asarray(counts)
    T = (counts.shape[0] // factor) * factor
    return counts[:T].reshape((T // factor, factor) + counts.shape[1:]).sum(1)


def rebin_spikes(spikes: np.ndarray, factor: int) -> np.ndarray:
    """Binarise spikes (T, ...) per group of ``factor`` bins (any spike in the group → 1)."""
    return (rebin_counts(np.asarray(spikes).astype(np.int32), factor) > 0).astype(np.uint8)


def _open_npz(path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    import zipfile

    try:
        d = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataFormatError(f"{path} could not be read as a .npz archive (truncated?): {exc}") from None
    if not hasattr(d, "files"):  # a plain .npy array under a .npz name
        raise DataFormatError(f"{path} is a single .npy array, not a .npz archive of named arrays")
    return d


GENERIC_KEYS = ("A_4ms", "sampled_spikes_4ms", "sampled_ids")


def _generic_4ms(d, path, N):
    """Counts (T, M) and spikes (T, M, n) from the 4-ms keys any LIF simulator can write.

    ``A_4ms`` (T, M) population activity in Hz, ``sampled_spikes_4ms`` (M, T, n) spikes (0/1 or
    counts) of n recorded neurons per population, ``sampled_ids`` (M, n) their indices in their
    population. Counts are ``A_4ms · N · 4 ms``, which must be whole numbers in ``[0, N]``.
    """
    missing = [k for k in GENERIC_KEYS if k not in d.files]
    if missing:
        raise DataFormatError(f"{path}: a 4-ms file needs the keys {list(GENERIC_KEYS)}; missing {missing}")
    A = np.asarray(d["A_4ms"])
    sp = np.asarray(d["sampled_spikes_4ms"])
    ids = np.asarray(d["sampled_ids"])
    Nv = np.asarray(N, dtype=float).ravel()
    M = Nv.size
    if A.ndim != 2 or A.shape[1] != M:
        raise DataFormatError(f"{path}: A_4ms must have shape (T, {M}) (one column per population of N={tuple(N)}), "
                              f"got {A.shape}")
    if not np.issubdtype(A.dtype, np.number) or not np.all(np.isfinite(A)) or np.any(A < 0):
        raise DataFormatError(f"{path}: A_4ms must hold finite rates >= 0 (Hz)")
    if sp.ndim != 3 or sp.shape[:2] != (M, A.shape[0]):
        raise DataFormatError(f"{path}: sampled_spikes_4ms must have shape ({M}, {A.shape[0]}, n) "
                              f"(population, 4-ms bin, recorded neuron), got {sp.shape}")
    if not np.issubdtype(sp.dtype, np.number) or not np.all(np.isfinite(sp)) or np.any(sp < 0):
        raise DataFormatError(f"{path}: sampled_spikes_4ms must hold spike counts or 0/1 indicators >= 0")
    if ids.shape != (M, sp.shape[2]):
        raise DataFormatError(f"{path}: sampled_ids must have shape ({M}, {sp.shape[2]}) (population, recorded "
                              f"neuron), got {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer) or np.any(ids < 0) or np.any(ids >= Nv[:, None]):
        raise DataFormatError(f"{path}: sampled_ids must be neuron indices in [0, N) per population, N={tuple(N)}")
    c = A * Nv[None, :] * _DT_S
    counts = np.rint(c)
    bad = np.abs(c - counts) > 1e-3 * np.maximum(1.0, counts)
    if np.any(bad):
        t, m = np.argwhere(bad)[0]
        raise DataFormatError(
            f"{path}: A_4ms · N · 4 ms must be whole spike counts (is A in Hz at 4-ms bins, and N={tuple(N)} "
            f"right?); bin {t}, population {m} gives {c[t, m]:.4g}")
    if np.any(counts > Nv[None, :]):
        raise DataFormatError(f"{path}: A_4ms implies more spikes per bin than neurons (N={tuple(N)})")
    return counts.astype(np.int64), (sp.transpose(1, 0, 2) > 0).astype(np.uint8)


def _arrays_from_npz(path, N) -> dict:
    """Counts (T, M) and recorded spikes (T, M, n) at 4 ms from any of the supported files."""
    f = int(round(DT_MS / MICRO_DT_MS))
    with _open_npz(path) as d:
        keys = set(d.files)
        try:
            if "counts_4ms" in keys:  # bundled excerpts / 'spikejax meso generate': the bin is stored in s or ms
                bin_ms = (1000.0 * float(d["dt"]) if "dt" in keys else float(d["dt_ms"]) if "dt_ms" in keys
                          else DT_MS)
                if not np.isclose(bin_ms, DT_MS):
                    raise DataFormatError(f"{path}: counts_4ms must be in bins of {DT_MS:g} ms, the file says "
                                          f"{bin_ms:g} ms")
            if {"counts_4ms", "spikes_4ms"} <= keys:  # bundled excerpt
                counts = d["counts_4ms"].astype(np.int64)
                spikes = d["spikes_4ms"]
            elif "counts_4ms" in keys:  # bundled 200-s excerpt, no spikes
                counts = d["counts_4ms"].astype(np.int64)
                spikes = None
            elif "sampled_spikes_4ms" in keys and not ({"counts", "A_t_pop"} & keys):  # any LIF simulator
                counts, spikes = _generic_4ms(d, path, N)
            elif "sampled_spikes_4ms" in keys or "sampled_spikes" in keys:  # original-style 11-s file
                if "counts" in keys:
                    counts = rebin_counts(d["counts"].astype(np.int64), f)
                else:
                    A = d["A_t_pop"]
                    counts = rebin_counts(np.rint(A * np.asarray(N)[None, :] * (MICRO_DT_MS / 1000.0)).astype(np.int64), f)
                if "sampled_spikes_4ms" in keys:
                    spikes = d["sampled_spikes_4ms"].transpose(1, 0, 2)
                else:
                    spikes = rebin_spikes(d["sampled_spikes"].transpose(1, 0, 2), f)
            elif {"counts", "spike_pop", "spike_neuron", "spike_step"} <= keys:  # 200-s index lists
                counts = rebin_counts(d["counts"].astype(np.int64), f)
                T = counts.shape[0]
                n_rec = int(d["spike_neuron"].max()) + 1 if d["spike_neuron"].size else 1
                spikes = np.zeros((T, counts.shape[1], n_rec), np.uint8)
                b = d["spike_step"].astype(np.int64) // f
                keep = b < T
                spikes[b[keep], d["spike_pop"][keep].astype(int), d["spike_neuron"][keep].astype(int)] = 1
            else:
                raise DataFormatError(
                    f"{path} has none of the expected key sets (A_4ms/sampled_spikes_4ms/sampled_ids from any LIF "
                    f"simulator, counts_4ms/spikes_4ms, sampled_spikes[_4ms] with counts or A_t_pop, or "
                    f"counts/spike_pop/spike_neuron/spike_step); it has {sorted(keys)}"
                )
        except KeyError as exc:
            raise DataFormatError(f"{path} misses key {exc}") from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # a member cut short
            raise DataFormatError(f"{path}: a member of the .npz archive could not be read (truncated?): {exc}") from None
    return {"counts": counts, "spikes": spikes}


def load_npz(
    path: str | os.PathLike,
    *,
    N=(400, 400, 200),
    n_obs: int = 3,
    hist_bins: int = HIST_BINS,
    start_bin: int = 0,
    n_bins: int | None = None,
) -> MesoData:
    """Load a surrogate/original-style ``.npz`` file (or a bundled excerpt) as :class:`MesoData` at 4 ms.

    Parameters
    ----------
    path
        ``wta3pop_surrogate_T11s_seed1.npz`` (0.2-ms keys of the original file),
        ``wta3pop_surrogate_T200s_seed2.npz`` (counts + spike index lists), a bundled excerpt, or
        the output of any LIF simulator at 4 ms: ``A_4ms`` (T, M) population activity in Hz,
        ``sampled_spikes_4ms`` (M, T, n) recorded spikes and ``sampled_ids`` (M, n) their indices
        (counts = ``A_4ms · N · 4 ms``, whole numbers). Anything else raises
        :class:`~spikejax.core.errors.DataFormatError` naming the key.
    N
        Population sizes (the files store counts, Z = counts/N).
    n_obs
        Observed neurons per population (the first ``n_obs`` recorded ones; neuLVM uses 3).
    hist_bins
        Bins of history before the fitted window (neuLVM: 250 = 1 s).
    start_bin, n_bins
        Select ``[start_bin, start_bin + hist_bins + n_bins)`` of the 4-ms bins (default: all).
    """
    arrays = _arrays_from_npz(path, N)
    if arrays["spikes"] is None:
        raise DataFormatError(f"{path} holds no recorded spikes; use load_activity() for population counts only")
    counts, spikes = arrays["counts"], arrays["spikes"]
    stop = counts.shape[0] if n_bins is None else start_bin + hist_bins + int(n_bins)
    if stop > counts.shape[0] or start_bin < 0:
        raise ConfigError(f"requested bins [{start_bin}, {stop}) exceed the file's {counts.shape[0]} bins")
    counts, spikes = counts[start_bin:stop], spikes[start_bin:stop]
    Z = counts / np.asarray(N, dtype=float)[None, :]
    return MesoData.from_full(spikes, N=N, Z=Z, hist_bins=hist_bins, n_obs=n_obs)


def load_activity(path: str | os.PathLike, *, N=(400, 400, 200)) -> np.ndarray:
    """Population activity in Hz at 4 ms (T, M) from any supported file (e.g. the 200-s surrogate)."""
    counts = _arrays_from_npz(path, N)["counts"]
    return counts / (np.asarray(N, dtype=float)[None, :] * _DT_S)


__all__.append("load_activity")


def bundled_path(name: str = "T11s") -> Path:
    """Path of a bundled excerpt: ``"T11s"`` (11 s, 30 recorded neurons) or ``"T200s"`` (activity only)."""
    from ..data import path as data_path

    files = {"T11s": "meso/wta3pop_T11s_4ms.npz", "T200s": "meso/wta3pop_T200s_4ms.npz"}
    if name not in files:
        raise ConfigError(f"name must be one of {sorted(files)}, got {name!r}")
    return data_path(files[name])


def load_bundled(name: str = "T11s", **kwargs) -> MesoData:
    """The bundled 11-s surrogate excerpt as :class:`MesoData` (keywords as :func:`load_npz`)."""
    return load_npz(bundled_path(name), **kwargs)


def load_params_json(path: str | os.PathLike | None = None, *, dtype=None) -> MesoParams:
    """Ground-truth parameters from ``wta3pop_params.json`` (default: the bundled copy)."""
    from ..data import path as data_path

    path = data_path("meso/wta3pop_params.json") if path is None else Path(path)
    d = load_json(path)
    required = ["N", "alpha_mem_per_s", "alpha_syn_per_s_presynaptic", "u_rest_over_Delta_u",
                "ft_effective_threshold", "J_per_population", "conmat_pre_by_post", "t_ref_s", "eps_input_gain"]
    missing = [k for k in required if k not in d]
    if missing:
        raise DataFormatError(f"{path} is missing required key(s) {missing}")
    dtype = dtype or jnp.result_type(float)
    M = len(d["N"])
    f = lambda v: jnp.asarray(v, dtype=dtype)  # noqa: E731
    mu = d["u_rest_over_Delta_u"]
    th = d["ft_effective_threshold"]
    return MesoParams(
        amem=f(d["alpha_mem_per_s"]),
        J=f(d["J_per_population"]),
        mu=f([mu] * M if np.ndim(mu) == 0 else mu),
        theta=f([th] * M if np.ndim(th) == 0 else th),
        asyn=f(d["alpha_syn_per_s_presynaptic"]),
        conmat=f(d["conmat_pre_by_post"]),
        eps=f(d["eps_input_gain"]),
        N=tuple(int(n) for n in d["N"]),
        t_ref=1000.0 * float(d["t_ref_s"]),
        names=("E1", "E2", "I") if M == 3 else None,
    ).validate()


# ----------------------------------------------------------------------------------------------
# statistics of the winner-take-all dynamics
# ----------------------------------------------------------------------------------------------


def _smooth(A: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return np.asarray(A, float)
    k = np.ones(width) / width
    return np.stack([np.convolve(A[:, i], k, mode="same") for i in range(A.shape[1])], 1)


def dominance_durations(
    A: np.ndarray, *, dt: float = DT_MS, smooth: float = 200.0, min_duration: float = 200.0, pops=(0, 1)
) -> np.ndarray:
    """Durations (ms) of the periods in which one excitatory population dominates the other.

    ``A`` (T, M) in Hz at bins of ``dt`` ms is smoothed with a ``smooth``-ms boxcar; the winner is
    the larger of the two populations ``pops``; runs shorter than ``min_duration`` ms are merged into
    their neighbours. The first and last (censored) periods are dropped when there are more than two.
    """
    A = np.asarray(A, float)
    As = _smooth(A, int(round(smooth / dt)))
    w = (As[:, pops[1]] > As[:, pops[0]]).astype(int)
    # run-length encode, merging short runs
    changes = np.flatnonzero(np.diff(w)) + 1
    bounds = np.concatenate([[0], changes, [len(w)]])
    runs = [(bounds[i], bounds[i + 1], w[bounds[i]]) for i in range(len(bounds) - 1)]
    min_bins = int(round(min_duration / dt))
    merged: list[list[int]] = []
    for s, e, lab in runs:
        if merged and (e - s < min_bins or merged[-1][2] == lab):
            merged[-1][1] = e
        else:
            merged.append([s, e, lab])
    dur = np.array([(e - s) * dt for s, e, _ in merged])
    if len(dur) > 2:
        dur = dur[1:-1]
    return dur


def winner_loser_rates(A: np.ndarray, *, dt: float = DT_MS, smooth: float = 200.0, pops=(0, 1), inh: int = 2):
    """Mean (winner, loser, inhibitory) rates in Hz, the winner chosen per bin on activity smoothed
    with a ``smooth``-ms boxcar (``A`` (T, M) in Hz at bins of ``dt`` ms)."""
    A = np.asarray(A, float)
    As = _smooth(A, int(round(smooth / dt)))
    first = As[:, pops[0]] >= As[:, pops[1]]
    win = np.where(first, A[:, pops[0]], A[:, pops[1]])
    lose = np.where(first, A[:, pops[1]], A[:, pops[0]])
    return float(win.mean()), float(lose.mean()), float(A[:, inh].mean())
