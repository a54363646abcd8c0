"""Selectivity metrics of the L5 model: the original's exact OS / DS / OS_paper and X_rel, plus
smooth versions (soft-argmax and circular variance) for gradients.

Directions are the original's four, in the order [0, 90, 180, 270] degrees, on axis -2 of the
mean-rate array ``rbar`` (..., 4, N). For a neuron with preferred direction p = argmax r(theta):
R_pref = r(p), R_opp = r(p+180), R_orth = (r(p+90) + r(p+270))/2, R_prefOri = (R_pref + R_opp)/2,

    OS = (R_prefOri - R_orth)/(R_prefOri + R_orth)   (signed, as at HEAD)
    DS = (R_pref - R_opp)/(R_pref + R_opp)
    OS_paper = (R_pref - R_orth)/(R_pref + R_orth)

and X_rel = (X_CS - X_CC)/(X_CS + X_CC) on the means over simulations (> 0: CS more selective).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ShapeError
from .network import type_index

__all__ = [
    "mean_rates",
    "selectivity",
    "soft_selectivity",
    "circular_selectivity",
    "reliable_mask",
    "type_mean_std",
    "relative_index",
    "summarize",
    "counters",
    "before_blocks",
    "METRICS",
]

METRICS = ("OS", "DS", "OS_p")
RELIABLE_MIN = 1e-4


def mean_rates(rates, eval_blocks: int):
    """Time-averaged rate over the last ``eval_blocks`` blocks: (..., n_blocks, N) -> (..., N)."""
    return jnp.mean(rates[..., -eval_blocks:, :], axis=-2)


def _check4(rbar):
    if rbar.shape[-2] != 4:
        raise ShapeError(
            f"selectivity needs exactly 4 directions [0, 90, 180, 270] deg on axis -2, got shape {tuple(rbar.shape)}"
        )


def _indices_for_pref(rbar, p):
    """OS, DS, OS_p given preferred direction index p (broadcast over neurons)."""
    take = lambda k: jnp.take_along_axis(rbar, jnp.mod(p + k, 4)[..., None, :], axis=-2)[..., 0, :]  # noqa: E731
    r_pref, r_orth1, r_opp, r_orth2 = take(0), take(1), take(2), take(3)
    r_orth = 0.5 * (r_orth1 + r_orth2)
    r_pori = 0.5 * (r_pref + r_opp)
    os_ = (r_pori - r_orth) / (r_pori + r_orth)
    ds = (r_pref - r_opp) / (r_pref + r_opp)
    osp = (r_pref - r_orth) / (r_pref + r_orth)
    return os_, ds, osp


def selectivity(rbar):
    """Exact OS, DS, OS_paper per neuron (the original's argmax definitions).

    Parameters
    ----------
    rbar : (..., 4, N)
        Mean rates per direction (0, 90, 180, 270 deg).

    Returns
    -------
    dict with "OS", "DS", "OS_p" of shape (..., N).
    """
    _check4(rbar)
    p = jnp.argmax(rbar, axis=-2)
    os_, ds, osp = _indices_for_pref(rbar, p)
    return {"OS": os_, "DS": ds, "OS_p": osp}


def soft_selectivity(rbar, beta: float = 20.0):
    """Soft-argmax OS/DS/OS_p: the exact indices averaged with weights softmax(beta * r / mean r).

    Tends to :func:`selectivity` as beta -> inf; smooth in the rates for gradient-based tuning.
    """
    _check4(rbar)
    scale = jnp.mean(rbar, axis=-2, keepdims=True) + 1e-6
    w = jax.nn.softmax(beta * rbar / scale, axis=-2)  # (..., 4, N)
    outs = [_indices_for_pref(rbar, jnp.full(rbar.shape[:-2] + rbar.shape[-1:], k)) for k in range(4)]
    res = {}
    for i, name in enumerate(METRICS):
        stack = jnp.stack([o[i] for o in outs], axis=-2)
        res[name] = jnp.sum(w * stack, axis=-2)
    return res


def circular_selectivity(rbar, degree=(0.0, 90.0, 180.0, 270.0)):
    """Circular-variance selectivities: OS_cv = |sum r e^{2i theta}|/sum r, DS_cv = |sum r e^{i theta}|/sum r.

    (1 minus the circular variance: 0 = untuned, 1 = responds to one direction only.)
    """
    th = jnp.deg2rad(jnp.asarray(degree, dtype=rbar.dtype))[:, None]
    tot = jnp.sum(rbar, axis=-2)

    def res(k):
        c = jnp.sum(rbar * jnp.cos(k * th), axis=-2)
        s = jnp.sum(rbar * jnp.sin(k * th), axis=-2)
        return jnp.sqrt(c**2 + s**2 + 1e-12) / tot

    return {"OS": res(2), "DS": res(1)}


def reliable_mask(rbar, thresh: float = RELIABLE_MIN):
    """A neuron is reliable unless its mean rate is below ``thresh`` for every direction: (..., N)."""
    return jnp.any(rbar >= thresh, axis=-2)


def type_mean_std(x, mask, N):
    """Mean and s.d. (ddof 0) over the masked neurons of each type: (..., N) -> two (..., 4) arrays.

    Types without any masked neuron give NaN.
    """
    tid = type_index(N)
    onehot = jnp.asarray(np.eye(4)[tid], dtype=x.dtype)  # (N, 4)
    m = mask.astype(x.dtype)[..., :, None] * onehot  # (..., N, 4)
    cnt = jnp.sum(m, axis=-2)
    xs = jnp.where(mask, x, 0.0)[..., :, None]
    mean = jnp.sum(m * xs, axis=-2) / cnt
    var = jnp.sum(m * (xs - mean[..., None, :]) ** 2, axis=-2) / cnt
    return mean, jnp.sqrt(var)


def relative_index(x_cs, x_cc):
    """(X_CS - X_CC)/(X_CS + X_CC)."""
    return (x_cs - x_cc) / (x_cs + x_cc)


def before_blocks(n_before: int, dt: float, tau: float, block: int, eval_blocks: int, variant: str):
    """Block slice of the 'before learning' window.

    Faithful: the original's units bug (the onset step converted to tau units, then divided by the
    block size), i.e. the first int(n_before*dt/tau/block) blocks (at least one): the initial
    transient. Corrected: the last ``eval_blocks`` blocks before the learning onset.
    """
    if variant == "faithful":
        nb = max(1, int(int(n_before * dt / tau) / block))
        return slice(0, nb)
    end = max(1, n_before // block)
    return slice(max(0, end - eval_blocks), end)


def _rates_stats(rates_win, mask, N):
    """Mean and within-sim s.d. of activity over (directions, blocks, reliable neurons) per type.

    rates_win: (S, D, B, N); mask: (S, N). Returns two (S, 4) arrays.
    """
    S, D, B, n = rates_win.shape
    flat = jnp.moveaxis(rates_win, -1, 1).reshape(S, n, D * B)  # (S, N, D*B)
    tid = type_index(N)
    onehot = jnp.asarray(np.eye(4)[tid], dtype=rates_win.dtype)
    m = mask.astype(rates_win.dtype)[:, :, None] * onehot[None]  # (S, N, 4)
    cnt = jnp.sum(m, axis=1) * (D * B)
    s1 = jnp.einsum("snk,snt->sk", m, flat)
    mean = s1 / cnt
    dev = (flat[:, :, None, :] - mean[:, None, :, None]) ** 2  # (S, N, 4, T)
    var = jnp.einsum("snk,snkt->sk", m, dev) / cnt
    return mean, jnp.sqrt(var)


def summarize(rates, N, *, eval_blocks: int, window: slice | None = None, soft_beta: float | None = None):
    """Per-simulation, per-type statistics of activity and selectivity.

    Parameters
    ----------
    rates : (S, 4, n_blocks, N)
        Block-mean rates for the 4 directions.
    window : slice of blocks to evaluate (default: the last ``eval_blocks``).
    soft_beta : use :func:`soft_selectivity` with this sharpness instead of the exact indices.

    Returns
    -------
    dict of (S, 4) arrays: ``act_mean``, ``act_std``, ``OS_mean``, ``OS_std``, ... and the neuron
    level ``rbar`` (S, 4, N), ``reliable`` (S, N), ``OS``/``DS``/``OS_p`` (S, N).
    """
    win = rates[..., -eval_blocks:, :] if window is None else rates[..., window, :]
    rbar = jnp.mean(win, axis=-2)
    rel = reliable_mask(rbar)
    sel = selectivity(rbar) if soft_beta is None else soft_selectivity(rbar, soft_beta)
    out = {"rbar": rbar, "reliable": rel, **sel}
    out["act_mean"], out["act_std"] = _rates_stats(win, rel, N)
    for k in METRICS:
        out[f"{k}_mean"], out[f"{k}_std"] = type_mean_std(sel[k], rel, N)
    return out


def aggregate(stats):
    """Across-simulation aggregates (the original's Mean_of_X, Std_mean_X, Mean_std_X) and X_rel.

    Returns a dict of (4,) arrays and scalars ``os_rel``, ``ds_rel``, ``os_p_rel`` (NaN when the CC
    means of OS or DS are <= 1e-5, the original's None), and per-simulation relative indices
    ``os_rel_sims`` etc. (S,).
    """
    agg = {}
    for k in ("act",) + METRICS:
        m = stats[f"{k}_mean"]
        agg[f"{k}_mean"] = jnp.nanmean(m, axis=0)
        agg[f"{k}_std_mean"] = jnp.nanstd(m, axis=0)
        agg[f"{k}_mean_std"] = jnp.nanmean(stats[f"{k}_std"], axis=0)
    ok = (agg["OS_mean"][1] > 1e-5) & (agg["DS_mean"][1] > 1e-5)
    for k, name in (("OS", "os_rel"), ("DS", "ds_rel"), ("OS_p", "os_p_rel")):
        x = agg[f"{k}_mean"]
        agg[name] = jnp.where(ok, relative_index(x[0], x[1]), jnp.nan)
        xs = stats[f"{k}_mean"]
        agg[name + "_sims"] = relative_index(xs[:, 0], xs[:, 1])
    return agg


def counters(rates, N, *, variant: str = "faithful", eq_tol: float = 0.05, eval_blocks: int = 20):
    """``nan_counter`` (runs whose last block is all NaN), ``not_eq_counter`` and ``activity_off``.

    Not in equilibrium: for some neuron, mean(blocks[-10:-5]) - mean(blocks[-5:]) >= 0.05 (one-sided
    in the faithful variant, as the original; absolute difference when corrected).
    rates: (S, D, n_blocks, N).
    """
    nan_counter = jnp.sum(jnp.all(jnp.isnan(rates[..., -1, :]), axis=-1))
    if rates.shape[-2] >= 10:
        d = jnp.mean(rates[..., -10:-5, :], axis=-2) - jnp.mean(rates[..., -5:, :], axis=-2)
        if variant == "corrected":
            d = jnp.abs(d)
        not_eq = jnp.sum(jnp.any(d >= eq_tol, axis=-1))
    else:
        not_eq = jnp.asarray(0)
    rbar = jnp.mean(rates[..., -min(eval_blocks, rates.shape[-2]) :, :], axis=-2)
    rel = reliable_mask(rbar)  # (S, N)
    tid = type_index(N)
    onehot = jnp.asarray(np.eye(4)[tid], dtype=rates.dtype)
    n_rel = rel.astype(rates.dtype) @ onehot
    activity_off = jnp.sum(n_rel == 0, axis=0)
    return {"nan_counter": nan_counter, "not_eq_counter": not_eq, "activity_off": activity_off}


__all__ += ["aggregate"]
