"""Preparing cells for fitting: selecting, checking and padding each cell's sweeps, and stacking many
cells (padded, with masks) so that one compiled program fits them all.

* :func:`prepare_cell`: one cell's Long Square onset pairs (stage 1), its training sweeps grouped
  by stimulus type (stage 2: one zero-padded type-batch per stimulus), and its Noise-1 (val) and
  Noise-2 (test) trials, as numpy arrays.
* :func:`stack_cells`: many prepared cells padded to common sizes (:func:`padded_shapes`) and
  stacked; each cell keeps its own batch shape in ``n_sweeps``/``n_bins`` so that its padded loss
  equals its unpadded loss. The type-batches come in the order of ``shapes`` (shuffled once with
  the fit's key by :func:`group_order`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..core.errors import DataFormatError, NonFiniteError
from .config import FitConfig
from .preprocess import CellData

__all__ = ["PreparedCell", "prepare_cell", "group_order", "padded_shapes", "stack_cells"]


@dataclasses.dataclass
class PreparedCell:
    """Numpy arrays of one cell ready for fitting (see :func:`prepare_cell`)."""

    cell_id: int
    gamma: float
    sigma: float
    act_current: np.ndarray
    act_rate: np.ndarray
    groups: dict[str, tuple[np.ndarray, np.ndarray]]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def _pad_stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    t = max(a.size for a in arrays)
    out = np.zeros((len(arrays), t))
    for i, a in enumerate(arrays):
        out[i, : a.size] = a
    return out


def _check_sweep(cell_id, sw, b, cur, rate):
    where = f"cell {cell_id}, sweep {sw.number} ({sw.stimulus_name}), bin size {b} ms"
    if not (np.all(np.isfinite(cur)) and np.all(np.isfinite(rate))):
        raise NonFiniteError(f"{where}: current and rate must be finite")
    if np.any(rate < 0):
        raise DataFormatError(f"{where}: rates must be >= 0 spikes/ms, got minimum {rate.min()!r}")


def prepare_cell(cell: CellData, config: FitConfig) -> PreparedCell:
    """Select and pad one cell's sweeps for fitting (raises DataFormatError when something is missing)."""
    b, ab = config.dt, config.activation_dt

    def binned(sw, size):
        if size not in sw.binned:
            raise DataFormatError(f"cell {cell.cell_id}: sweep {sw.number} has no {size} ms binning (have {sorted(sw.binned)})")
        cur, rate = (np.asarray(x, dtype=np.float64) for x in sw.binned[size])
        _check_sweep(cell.cell_id, sw, size, cur, rate)
        return cur, rate

    ls = [binned(sw, ab) for sw in cell.by_stimulus(config.activation_stimulus)]
    ls = [(c, r) for c, r in ls if c.size > 0]
    if len(ls) < 2:
        raise DataFormatError(
            f"cell {cell.cell_id}: stage 1 needs at least 2 '{config.activation_stimulus}' sweeps, got {len(ls)}"
        )
    act_i = np.asarray([c[0] for c, _ in ls])
    act_f = np.asarray([r[0] for _, r in ls])
    if not np.isfinite(cell.gamma) or cell.gamma <= 0:
        raise DataFormatError(f"cell {cell.cell_id}: gamma (max 1/ISI) must be > 0 spikes/ms, got {cell.gamma!r}")
    groups = {}
    for name in config.train_stimuli:
        sws = [binned(sw, b) for sw in cell.by_stimulus(name)]
        sws = [(c, r) for c, r in sws if c.size > 0]
        if sws:
            groups[name] = (_pad_stack([c for c, _ in sws]), _pad_stack([r for _, r in sws]))
    if not groups:
        raise DataFormatError(f"cell {cell.cell_id}: no training sweeps among {config.train_stimuli}")

    def trials(name):
        sws = [binned(sw, b) for sw in cell.by_stimulus(name)]
        sws = [(c, r) for c, r in sws if c.size > 0]
        if not sws:
            raise DataFormatError(
                f"cell {cell.cell_id}: no '{name}' sweeps; models exist only for cells with both Noise 1 and Noise 2"
            )
        cur = _pad_stack([c for c, _ in sws])
        return cur[0], _pad_stack([r for _, r in sws])

    sigma = float(np.max(np.abs(act_i)))
    if sigma <= 0:
        raise DataFormatError(f"cell {cell.cell_id}: the activation currents are all zero (sigma = 0)")
    return PreparedCell(int(cell.cell_id), float(cell.gamma), sigma, act_i, act_f, groups, trials(config.val_stimulus), trials(config.test_stimulus))



def group_order(config: FitConfig, *, key: Any) -> list[str]:
    """The training stimuli in the order shuffled once with ``fold_in(key, 2**31 - 1)`` (a fold no cell
    id reaches: the initial coefficients fold in ``cell_id % (2**31 - 1)``)."""
    import jax

    perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 2**31 - 1), len(config.train_stimuli)))
    return [config.train_stimuli[int(i)] for i in perm]


def padded_shapes(preps: Sequence[PreparedCell], config: FitConfig, order: Sequence[str] | None = None) -> dict[str, Any]:
    """Padded sizes covering all ``preps`` (so chunks of cells share one compiled program); ``order``
    is the type-batch order (:func:`group_order`; default ``config.train_stimuli``)."""
    names = [n for n in (order or config.train_stimuli) if any(n in p.groups for p in preps)]
    group = {n: (max(p.groups[n][0].shape[0] for p in preps if n in p.groups), max(p.groups[n][0].shape[1] for p in preps if n in p.groups)) for n in names}
    out = {"k_act": max(p.act_current.size for p in preps), "names": names, "group": group,
           "s": max(v[0] for v in group.values()), "t": max(v[1] for v in group.values())}
    for name in ("val", "test"):
        out[name] = (max(getattr(p, name)[1].shape[0] for p in preps), max(getattr(p, name)[1].shape[1] for p in preps))
    return out


def stack_cells(preps: Sequence[PreparedCell], config: FitConfig, shapes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pad and stack cells (numpy, then one transfer): activation pairs (C, K); the type-batches in
    the shuffled order, padded to one common shape (G, C, S, T) with each cell's own batch shape in
    ``n_sweeps``/``n_bins`` (G, C); val/test trials (C, K, T). ``shapes`` (:func:`padded_shapes`) fixes
    the padded sizes."""
    shapes = shapes or padded_shapes(preps, config)
    dtype = jnp.result_type(float)
    c = len(preps)
    k = shapes["k_act"]
    act = {"current": np.zeros((c, k)), "rate": np.zeros((c, k)), "mask": np.zeros((c, k), bool)}
    for i, p in enumerate(preps):
        n = p.act_current.size
        act["current"][i, :n], act["rate"][i, :n], act["mask"][i, :n] = p.act_current, p.act_rate, True
    act["dt"] = np.full(c, float(config.activation_dt))
    names = shapes["names"]
    s_max, t_max = shapes["s"], shapes["t"]
    g_ = len(names)
    groups = {"current": np.zeros((g_, c, s_max, t_max)), "rate": np.zeros((g_, c, s_max, t_max)),
              "n_sweeps": np.zeros((g_, c), np.int32), "n_bins": np.zeros((g_, c), np.int32),
              "dt": np.full((g_, c), float(config.dt))}
    for j, name in enumerate(names):
        for i, p in enumerate(preps):
            if name in p.groups:
                cur, rate = p.groups[name]
                groups["current"][j, i, : cur.shape[0], : cur.shape[1]] = cur
                groups["rate"][j, i, : cur.shape[0], : cur.shape[1]] = rate
                groups["n_sweeps"][j, i], groups["n_bins"][j, i] = cur.shape
    ev = {}
    for name in ("val", "test"):
        k_max, tm = shapes[name]
        e = {"current": np.zeros((c, tm)), "trials": np.zeros((c, k_max, tm)), "trial_mask": np.zeros((c, k_max), bool),
             "n_bins": np.zeros(c, np.int32), "dt": np.full(c, float(config.dt)), "round": np.full(c, bool(config.round_counts))}
        for i, p in enumerate(preps):
            cur, tr = getattr(p, name)
            e["current"][i, : cur.size] = cur
            e["trials"][i, : tr.shape[0], : tr.shape[1]] = tr
            e["trial_mask"][i, : tr.shape[0]] = True
            e["n_bins"][i] = tr.shape[1]
        ev[name] = e
    # cast on the host, then one transfer per array (a device-side cast would compile a program per shape)
    conv = lambda d: {k: jnp.asarray(v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in d.items()}  # noqa: E731
    return {"act": conv(act), "group_names": names, "group_shapes": [shapes["group"][n] for n in names], "groups": conv(groups),
            "ev": {k: conv(v) for k, v in ev.items()}}

