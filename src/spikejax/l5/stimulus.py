"""Stimuli: the HEAD counter-phase grating, the drifting and semicircle variants, thalamic gains.

All generators are closed forms of the *integer step index* ``t`` (the original modulates with
``cos(temporalF * step)``, so ``temporalF`` is in radians per step and 50 rad/step aliases to a
period of about 23.7 steps). Angles ``theta`` are in radians.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["spatial_projection", "counterphase", "drifting", "semicircle", "thalamic_gain", "stimulus_at", "stimulus_basis"]

_TWO_PI = 2.0 * jnp.pi


def spatial_projection(pos_a, pos_b, theta):
    """s_i(theta) = a_i cos(theta) + b_i sin(theta): the position projected on the motion axis."""
    return pos_a * jnp.cos(theta) + pos_b * jnp.sin(theta)


_C1 = 6.28125  # 2 pi = _C1 + _C2 with _C1 exact in a few bits (Cody-Waite reduction)
_C2 = 0.0019353071795864769


def _mod2pi(x):
    k = jnp.round(x / _TWO_PI)
    return (x - k * _C1) - k * _C2


def _step_phase(omega, t):
    """(omega * t) mod 2 pi for an integer step t, accurate to ~1e-5 rad in float32.

    t is split into base-16 digits, so every product is small before it is reduced.
    """
    t = jnp.asarray(t)
    ti = t.astype(jnp.int32) if jnp.issubdtype(t.dtype, jnp.floating) else t
    w = _mod2pi(omega)
    phase = jnp.zeros(jnp.broadcast_shapes(jnp.shape(w), jnp.shape(ti)), dtype=jnp.result_type(w, float))
    for _ in range(6):  # up to 16**6 steps
        digit = jnp.mod(ti, 16).astype(phase.dtype)
        phase = _mod2pi(phase + w * digit)
        ti = ti // 16
        w = _mod2pi(w * 16.0)
    return phase


def _cos_step(omega, t):
    return jnp.cos(_step_phase(omega, t))


def counterphase(amp_n, steady_n, s, t, spatialF, temporalF, spatialPhase):
    """HEAD grating: A cos(K s - phi) cos(omega t); steady types get A cos(K s - phi) cos(omega)."""
    spatial = amp_n * jnp.cos(spatialF * s - spatialPhase)
    temporal = jnp.where(steady_n > 0.5, jnp.cos(temporalF), _cos_step(temporalF, t))
    return spatial * temporal


def drifting(amp_n, steady_n, s, t, spatialF, temporalF, spatialPhase):
    """Parent's drifting grating A cos(K s - phi t) + A (steady: A cos(K s - phi) + A); drive >= 0."""
    del temporalF
    phase = jnp.where(steady_n > 0.5, spatialPhase, _step_phase(spatialPhase, t))
    return amp_n * jnp.cos(spatialF * s - phase) + amp_n


def semicircle(amp_n, steady_n, s, t, spatialF, temporalF, spatialPhase):
    """First upload: |A cos(K s - phi) cos(omega t)| (steady: |A cos(K s - phi) cos(omega)|)."""
    return jnp.abs(counterphase(amp_n, steady_n, s, t, spatialF, temporalF, spatialPhase))


def thalamic_gain(type_ids, N, theta, theta_pref, fraction, g_orth, g_pref):
    """Direction-dependent gains of the parent's thalamic variant.

    The first floor(f_k N_k) neurons of CS (k=0) and CC (k=1) get ``g_pref`` when ``theta`` is the
    thalamic preferred direction, ``g_orth`` for the two orthogonal directions and 1 otherwise.
    """
    import numpy as np

    N = np.asarray(N, dtype=int)
    off = np.concatenate([[0], np.cumsum(N)])
    sel = np.zeros(int(off[-1]), bool)
    for k in (0, 1):
        n_sel = int(np.floor(float(fraction[k]) * N[k]))
        sel[off[k] : off[k] + n_sel] = True
    d = jnp.mod(jnp.round(jnp.degrees(theta - theta_pref)), 360.0)
    g = jnp.where(d == 0, g_pref, jnp.where((d == 90) | (d == 270), g_orth, 1.0))
    return jnp.where(jnp.asarray(sel), g, 1.0)


_KINDS = {"counterphase": counterphase, "drifting": drifting, "semicircle": semicircle, "thalamic": drifting}


def stimulus_at(kind, amp_n, steady_n, s, t, spatialF, temporalF, spatialPhase, gain=None):
    """External drive u(t) of every neuron for stimulus ``kind`` at integer step ``t``."""
    if kind == "thalamic":
        base = jnp.where(steady_n > 0.5, amp_n, drifting(amp_n, steady_n, s, t, spatialF, temporalF, spatialPhase))
        return base * gain
    return _KINDS[kind](amp_n, steady_n, s, t, spatialF, temporalF, spatialPhase)


def stimulus_basis(kind, amp_n, steady_n, s, spatialF, temporalF, spatialPhase, gain=None):
    """The drive as a sum of a few fixed spatial patterns times scalar functions of the step.

    Returns ``(B, c)`` with ``B`` of shape (K, N) and ``c(t)`` of shape (K,) such that
    ``u(t) = c(t) @ B`` equals :func:`stimulus_at` (K = 2 for the counter-phase and semicircle
    gratings, 3 for the drifting and thalamic ones). For the counter-phase grating the split is
    exact (one of the two patterns is zero for every neuron); for the drifting ones it uses
    cos(K s - phi t) = cos(K s) cos(phi t) + sin(K s) sin(phi t) (equal up to rounding).
    The faithful BCM rules use u as the presynaptic factor, so their weight change stays in the
    span of these K patterns (see ``simulate``).
    """
    steady = steady_n > 0.5
    zero = jnp.zeros_like(amp_n * s)
    if kind in ("counterphase", "semicircle"):
        spatial = amp_n * jnp.cos(spatialF * s - spatialPhase)
        if kind == "semicircle":
            spatial = jnp.abs(spatial)
            c_steady = jnp.abs(jnp.cos(temporalF))
        else:
            c_steady = jnp.cos(temporalF)
        B = jnp.stack([jnp.where(steady, spatial, zero), jnp.where(steady, zero, spatial)])

        def c(t):
            ct = _cos_step(temporalF, t)
            ct = jnp.abs(ct) if kind == "semicircle" else ct
            return jnp.stack([jnp.broadcast_to(c_steady, ct.shape), ct])

        return B, c
    if kind in ("drifting", "thalamic"):
        g = 1.0 if gain is None or kind == "drifting" else gain
        if kind == "drifting":
            const = jnp.where(steady, amp_n * jnp.cos(spatialF * s - spatialPhase) + amp_n, amp_n)
        else:
            const = amp_n
        B = jnp.stack([
            const * g,
            jnp.where(steady, zero, amp_n * jnp.cos(spatialF * s)) * g,
            jnp.where(steady, zero, amp_n * jnp.sin(spatialF * s)) * g,
        ])

        def c(t):
            ph = _step_phase(spatialPhase, t)
            return jnp.stack([jnp.ones_like(ph), jnp.cos(ph), jnp.sin(ph)])

        return B, c
    raise ValueError(f"unknown stimulus {kind!r}")
