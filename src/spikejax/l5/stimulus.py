"""Stimuli: the HEAD counter-phase grating, the drifting and semicircle variants, thalamic gains.

All generators are closed forms of the *integer step index* ``t`` (the original modulates with
``cos(temporalF * step)``, so ``temporalF`` is in radians per step and 50 rad/step aliases to a
period of about 23.7 steps). Angles ``theta`` are in radians.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["spatial_projection", "counterphase", "drifting", "semicircle", "thalamic_gain", "stimulus_at"]

_TWO_PI = 2.0 * jnp.pi


def spatial_projection(pos_a, pos_b, theta):
    """s_i(theta) = a_i cos(theta) + b_i sin(theta): the position projected on the motion axis."""
    return pos_a * jnp.cos(theta) + pos_b * jnp.sin(theta)


def _cos_step(omega, t):
    # reduce omega and omega*t modulo 2 pi first (keeps float32 accurate for t ~ 1e3-1e4)
    w = jnp.mod(omega, _TWO_PI)
    return jnp.cos(jnp.mod(w * t, _TWO_PI))


def counterphase(amp_n, steady_n, s, t, spatialF, temporalF, spatialPhase):
    """HEAD grating: A cos(K s - phi) cos(omega t); steady types get A cos(K s - phi) cos(omega)."""
    spatial = amp_n * jnp.cos(spatialF * s - spatialPhase)
    temporal = jnp.where(steady_n > 0.5, jnp.cos(temporalF), _cos_step(temporalF, t))
    return spatial * temporal


def drifting(amp_n, steady_n, s, t, spatialF, temporalF, spatialPhase):
    """Parent's drifting grating A cos(K s - phi t) + A (steady: A cos(K s - phi) + A); drive >= 0."""
    del temporalF
    phase = jnp.where(steady_n > 0.5, spatialPhase, jnp.mod(spatialPhase * t, _TWO_PI))
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
