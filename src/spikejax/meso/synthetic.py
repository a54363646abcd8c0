"""Trials drawn from the mesoscopic model itself: population activity and observed neurons.

The bundled data come from the microscopic LIF network, which the mesoscopic model only
approximates (docs/meso.md, "where the approximation departs"): fitted to them, even an exact
maximum-likelihood estimator converges to the parameters that make the *model* match the
network, not to the network's parameters. :func:`simulate_observed` draws a trial from the model
the fit assumes — ``Z(t) ~ N(Z̄(t), Z̄(t)/N + 0.1Δ/N)`` clipped to ``[1e-5, 1]`` (the particle
filter's transition) and observed neurons that fire with ``P = 1 − e^{−λΔ}`` given their potential
driven by the same population input (the filter's emission) — so that an estimator can be
checked without that mismatch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import check_allocation, check_array, check_scalar
from ..core.random import check_key
from .data import MesoData
from .model import HIST_BINS, MesoConfig, advance, init_state, step_parts
from .params import MesoParams
from .smc import observed_potential, observed_reset, transition_draw

__all__ = ["simulate_observed"]


def simulate_observed(params: MesoParams, n_steps: int, *, key: jax.Array, n_obs: int = 3,
                      hist_bins: int = HIST_BINS, burn_bins: int = HIST_BINS, A0=None,
                      config: MesoConfig = MesoConfig()) -> MesoData:
    """A trial of ``hist_bins`` history and ``n_steps`` fitted bins drawn from the mesoscopic model.

    Parameters
    ----------
    params
        Model parameters (validated).
    n_steps
        Bins of Δ (``config.dt``, 4 ms) in the fitted window (at least 2).
    key
        PRNG key (the trial is a pure function of it).
    n_obs
        Observed neurons per population.
    hist_bins
        Bins of history before the window (neuLVM: 250 = 1 s).
    burn_bins
        Bins simulated and discarded first, from the stationary start at ``A0``.
    A0
        (M,) rates in Hz of the stationary start (default 1 Hz, as :func:`~spikejax.meso.simulate`).
    config
        Model options (``config.dt`` in ms).

    Returns
    -------
    MesoData
        With the true ``Z`` and ``Z_hist`` (fractions per bin) and the population sizes of ``params``.
    """
    if not isinstance(params, MesoParams):
        raise TypeError(f"params must be a MesoParams, got {type(params).__name__}")
    params.validate()
    key = check_key(key)
    n_steps = int(check_scalar(n_steps, "n_steps", low=2, integer=True))
    n_obs = int(check_scalar(n_obs, "n_obs", low=1, integer=True))
    hist_bins = int(check_scalar(hist_bins, "hist_bins", low=0, integer=True))
    burn_bins = int(check_scalar(burn_bins, "burn_bins", low=0, integer=True))
    M = params.M
    dtype = params.amem.dtype
    A0 = jnp.ones((M,), dtype) if A0 is None else check_array(A0, "A0", (M,), low=0.0).astype(dtype)
    total = burn_bins + hist_bins + n_steps
    if not isinstance(config, MesoConfig):
        raise TypeError(f"config must be a MesoConfig, got {type(config).__name__}")
    # Z (T, M) and the observed spikes (T, M, n_obs) of all bins, on the device and on the host
    check_allocation(2.0 * total * M * (1 + n_obs) * jnp.dtype(dtype).itemsize, argument="n_steps",
                     what=f"a trial of {total} bins (burn_bins + hist_bins + n_steps)")
    Z, y = _draw(params, key, A0, n_total=total, n_obs=n_obs, cfg=config)
    Z, y = np.asarray(Z)[burn_bins:], np.asarray(y)[burn_bins:]
    return MesoData.from_full(y, N=params.N, Z=Z, hist_bins=hist_bins, dt=config.dt)


@functools.partial(jax.jit, static_argnames=("n_total", "n_obs", "cfg"))
def _draw(params, key, A0, *, n_total, n_obs, cfg):
    dt = cfg.dt_s
    N = params.N_array.astype(A0.dtype)
    M = A0.shape[0]
    V0 = jnp.zeros((M, n_obs), A0.dtype)
    k0 = jnp.full((M, n_obs), 10_000, jnp.int32)  # old enough to be out of refractoriness

    def body(carry, t):
        st, V, k = carry
        k_y, k_z = jax.random.split(jax.random.fold_in(key, t))
        zbar, parts = step_parts(params, st, None, cfg)
        c = params.mu + (parts.syn @ params.J_eff) / params.amem
        V, lp1, _ = observed_potential(params, V, k, c, dt, cfg.integrator)
        y_t = jax.random.uniform(k_y, V.shape, V.dtype) < jnp.exp(lp1)
        V, k = observed_reset(V, k, y_t)
        Z_t = transition_draw(k_z, zbar, N, dt)
        return (advance(st, parts, Z_t, cfg), V, k), (Z_t, y_t.astype(jnp.uint8))

    _, (Z, y) = jax.lax.scan(body, (init_state(params, A0, cfg), V0, k0), jnp.arange(n_total))
    return Z, y
