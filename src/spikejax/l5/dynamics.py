"""Rate nonlinearities and plasticity rules of the L5 model (faithful and corrected variants).

Rates r (dimensionless, the original's "activity"), weights ``W[post, pre]``, external input u.
Every rule returns G (post x pre); the weight change is ``dW/dt = M * G / tau_learn`` with the
training mask M.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..core.precision import matmul

__all__ = ["phi", "rule_gradient", "neuron_mask", "phase_row_masks", "PHASE_MODES"]

PHASE_MODES = ("all", "CS", "CC", "PV", "SST", "Rest")


def phi(x, *, kind: str, lo, hi, gamma: float = 1.0, beta: float = 10.0, variant: str = "faithful", n_linear: int = 8):
    """Rate nonlinearity.

    ``supralinear`` with ``gamma == 1``: the clipped ReLU min(max(x, lo), hi) (original defaults
    lo = 0.01, hi = 500). With ``gamma != 1`` the faithful variant reproduces the original's
    leftover: the first ``n_linear`` units are plain ReLU and the others max(x, 0)**gamma; the
    corrected variant applies clip(max(x, 0)**gamma, lo, hi) to every unit. ``softplus`` is a
    smooth clipped ReLU (sharpness ``beta``); ``sigmoid`` and ``tanh`` are the corrected
    implementations of the options that crash in the original.
    """
    if kind == "supralinear":
        if gamma == 1:
            return jnp.clip(x, lo, hi)
        powered = jnp.maximum(x, 0.0) ** gamma
        if variant == "faithful":
            idx = jnp.arange(x.shape[-1])
            return jnp.where(idx < n_linear, jnp.maximum(x, 0.0), powered)
        return jnp.clip(powered, lo, hi)
    if kind == "softplus":
        y = lo + jax.nn.softplus(beta * (x - lo)) / beta
        return hi - jax.nn.softplus(beta * (hi - y)) / beta
    if kind == "sigmoid":
        return jax.nn.sigmoid(x)
    if kind == "tanh":
        return jnp.tanh(x)
    raise ValueError(f"unknown nonlinearity {kind!r}")


def neuron_mask(N, neurons: str, variant: str, inhibit_rows: int = 80) -> np.ndarray:
    """Training mask of the ``neurons`` mode (post x pre, 0/1).

    ``excit_only`` keeps E->E; ``inhibit_only`` is, faithfully, the original's mis-sliced mask
    (E columns zeroed and only the first 80 rows zeroed, so I -> (CC neurons 80.., PV, SST) learn);
    corrected it keeps I->I.
    """
    N = np.asarray(N, dtype=int)
    n = int(N.sum())
    ne = int(N[0] + N[1])
    exc = np.arange(n) < ne
    if neurons == "all":
        return np.ones((n, n))
    if neurons == "excit_only":
        return (exc[:, None] & exc[None, :]).astype(float)
    if neurons == "inhibit_only":
        if variant == "faithful":
            rows = np.arange(n) >= min(inhibit_rows, n)
            return (rows[:, None] & ~exc[None, :]).astype(float)
        return (~exc[:, None] & ~exc[None, :]).astype(float)
    raise ValueError(f"unknown neurons mode {neurons!r}")


def phase_row_masks(N, variant: str) -> np.ndarray:
    """Row (postsynaptic) masks of the phase modes, shape (6, n) in the order of PHASE_MODES.

    'CS'/'CC' keep only those rows; 'Rest' blocks all updates; 'PV' and 'SST' behave like 'all' in
    the faithful variant (not implemented in the original) and keep their rows when corrected.
    """
    N = np.asarray(N, dtype=int)
    off = np.concatenate([[0], np.cumsum(N)])
    n = int(off[-1])
    out = np.zeros((len(PHASE_MODES), n))
    out[0] = 1.0
    for m, k in (("CS", 0), ("CC", 1), ("PV", 2), ("SST", 3)):
        i = PHASE_MODES.index(m)
        if variant == "faithful" and m in ("PV", "SST"):
            out[i] = 1.0
        else:
            out[i, off[k] : off[k + 1]] = 1.0
    return out


def rule_gradient(rule: str, variant: str, W, r, u, sgn, *, theta_bcm, theta_slide, r_mean):
    """G (post x pre) of a plasticity rule, before the mask and the 1/tau_learn factor.

    Faithful (original): BCM ``r_i(r_i-th_i) u_j / th_i`` (no sign flip), Slide_BCM the same with the
    exponential threshold and inhibitory columns negated, "Oja" ``r_i (r_j + u_j - (W r)_j)`` with
    the flip, Cov ``(r_i - rbar_i)(r_j - rbar_j)`` with the flip. Corrected: presynaptic rate r_j
    instead of u_j, the sign of the presynaptic type on every rule (magnitudes follow the rule),
    textbook Oja ``s_j r_i r_j - r_i^2 W_ij``.
    """
    if rule == "None":
        return jnp.zeros_like(W)
    if rule in ("BCM", "Slide_BCM"):
        th = theta_bcm if rule == "BCM" else theta_slide
        post = r * (r - th) / th
        pre = u if variant == "faithful" else r
        G = post[:, None] * pre[None, :]
        if rule == "Slide_BCM" or variant == "corrected":
            G = G * sgn[None, :]
        return G
    if rule == "Oja":
        if variant == "faithful":
            return r[:, None] * (r + u - matmul(W, r))[None, :] * sgn[None, :]
        return sgn[None, :] * r[:, None] * r[None, :] - (r**2)[:, None] * W
    if rule == "Cov":
        d = r - r_mean
        return d[:, None] * d[None, :] * sgn[None, :]
    raise ValueError(f"unknown learning rule {rule!r}")
