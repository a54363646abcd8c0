"""Sampling the LFADS generative model: :func:`simulate`.

Per trial: ``z0 ~ N(ic_prior_mean, ic_prior_var)``; ``g_0 = W_g0 z0 + b``; inferred inputs from
their prior (AR(1): ``u_1 ~ N(0, σ²/(1-α²))``, ``u_t = α u_{t-1} + σ ε_t`` with
``α = exp(-1/τ)``, ``σ² = exp(log_nvar)``; or i.i.d. ``N(0, co_prior_var)``); the generator GRU
``g_t = GRU([u_t, ext_t], g_{t-1})``; factors ``f_t`` (kernel-normalised readout of ``g_t``);
readout parameters, the expected observation per bin (the rate) and one draw of the observation
model (Poisson counts, or zero-inflated gamma events ``s_min + Gamma(k, θ)`` with probability ``q``).
No dropout. Rates are reported in Hz (expected observation per bin / ``dt``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError, ShapeError, check_allocation
from ..core.random import check_key
from .model import LFADS
from .observation import PoissonReadout
from .records import LFADSTrajectory

__all__ = ["simulate"]


def _sample_observation(readout, params: jax.Array, key: jax.Array) -> jax.Array:
    if isinstance(readout, PoissonReadout):
        return jax.random.poisson(key, jnp.exp(params)).astype(params.dtype)
    k, theta, q_logit = readout.split(params)
    k_event, k_size = jax.random.split(key)
    event = jax.random.bernoulli(k_event, jax.nn.sigmoid(q_logit))
    size = readout.s_min + theta * jax.random.gamma(k_size, k, dtype=params.dtype)
    return jnp.where(event, size, jnp.zeros((), params.dtype))


def simulate(model: LFADS, *, n_trials: int, key: jax.Array, n_steps: int | None = None,
             ext: Any = None) -> LFADSTrajectory:
    """Draw ``n_trials`` trials from the LFADS generative model (priors → generator → observations).

    Parameters
    ----------
    model : LFADS (``model.config.dt`` is the bin width in ms).
    n_trials : trials to draw (static).
    key : PRNG key (initial conditions, inferred inputs, observations).
    n_steps : bins per trial (default ``recon_seq_len``).
    ext : external inputs, time-major ``(n_steps, n_trials, ext_input_dim)`` (default zeros).

    Returns
    -------
    :class:`~spikejax.lfads.LFADSTrajectory` (time-major; ``rates`` in Hz, ``observations``
    counts per bin for Poisson, events for ZIG). ``jit``/``vmap`` of ``simulate`` return one too.
    """
    key = check_key(key)
    if not isinstance(model, LFADS):
        raise TypeError(f"model must be an LFADS model, got {type(model).__name__}")
    c = model.config
    for name, v in (("n_trials", n_trials), ("n_steps", n_steps)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
            raise ConfigError(f"{name} must be an int >= 1, got {type(v).__name__} {v!r}")
    T = int(c.recon_seq_len if n_steps is None else n_steps)
    n = int(n_trials)
    if n < 1 or T < 1:
        raise ShapeError(f"simulate needs n_trials >= 1 and n_steps >= 1, got n_trials={n}, n_steps={T}")
    dtype = model.ic_prior_mean.dtype
    # outputs (time-major): rates, observations, factors, generator states, inferred inputs (+ the noise)
    per_bin = 2 * c.recon_dim + c.fac_dim + c.gen_dim + 2 * c.co_dim + c.ext_input_dim
    check_allocation(float(n) * T * per_bin * jnp.dtype(dtype).itemsize, argument="n_trials and n_steps",
                     what=f"simulating {n} trials of {T} bins")
    if ext is None:
        ext = jnp.zeros((T, n, c.ext_input_dim), dtype)
    else:
        ext = jnp.asarray(ext, dtype)
        if ext.shape != (T, n, c.ext_input_dim):
            raise ShapeError(f"ext must have shape (n_steps, n_trials, ext_input_dim) = {(T, n, c.ext_input_dim)}, "
                             f"got {ext.shape}")
    k_z0, k_u, k_obs = jax.random.split(key, 3)
    z0 = model.ic_prior_mean + jnp.sqrt(jnp.asarray(c.ic_prior_var, dtype)) * jax.random.normal(k_z0, (n, c.ic_dim),
                                                                                                dtype)
    eps = jax.random.normal(k_u, (T, n, c.co_dim), dtype)
    if not c.use_con:
        us = eps
    elif c.co_prior == "ar1":
        alpha = jnp.exp(-1.0 / jnp.exp(model.co_prior_log_tau))
        sd = jnp.sqrt(jnp.exp(model.co_prior_log_nvar))
        u1 = eps[0] * sd / jnp.sqrt(1.0 - alpha**2)

        def ar1(u, e):
            u = alpha * u + sd * e
            return u, u

        _, rest = jax.lax.scan(ar1, u1, eps[1:])
        us = jnp.concatenate([u1[None], rest])
    else:
        us = eps * jnp.sqrt(jnp.asarray(c.co_prior_var, dtype))
    w_fac = model.factors.normalized()
    g0 = jax.vmap(model.ic_to_g0)(z0)

    def step(g, inp):
        u_t, ext_t = inp
        g = jax.vmap(model.gen_cell)(jnp.concatenate([u_t, ext_t], axis=-1), g)
        return g, (g, g @ w_fac.T)

    _, (gs, fs) = jax.lax.scan(step, g0, (us, ext))
    params = model.readout.params(fs)
    rates = model.readout.mean(params)
    obs = _sample_observation(model.readout, params, k_obs)
    return LFADSTrajectory(rates=rates * (1000.0 / c.dt), observations=obs, factors=fs, gen_states=gs,
                           con_inputs=us, z0=z0, dt=float(c.dt),
                           reconstruction="poisson" if c.reconstruction == "poisson" else "zig")
