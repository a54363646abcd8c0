"""The family's objective: :func:`loss`, what :func:`~spikejax.glm.tune` minimises, as a pure function.

``loss(model, data, *, key)`` with ``data`` a :class:`RateTarget` (a network and a target population
rate in Hz) is ``(firing_rate - r_hat)^2`` where ``r_hat = mean_{i,t} mu_i(t) / dt * 1000`` is the mean
conditional intensity (Hz) over ``n_steps`` simulated steps after ``equilibration_steps`` of burn-in,
started from a random window drawn from ``key``:

* ``estimator="spikeometric"``: the history is detached at every step (the gradient is the open-loop
  effect on each step's intensity), spikeometric's tuning objective;
* ``estimator="stationary"``: the burn-in is detached, then gradients flow through the recurrence with
  straight-through spikes (``x + mu - stop_gradient(mu)``). :func:`~spikejax.glm.tune` minimises the same
  per-epoch objective on a persistent chain (each epoch continues where the previous one stopped).

It is differentiable in the model's array parameters and usable inside ``jax.grad``, ``jit`` and
``vmap`` (over keys, say) by a user's own loop. The exact Poisson sampler is used throughout.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.errors import ConfigError, check_scalar
from ..core.random import check_key
from ..core.scan import step_keys
from .models import GLMModel
from .network import Network
from .simulation import _step, conditional_intensity, draw_step_noise, init_state, make_engine

__all__ = ["loss", "RateTarget", "log_likelihood"]


class RateTarget(eqx.Module):
    """The data of :func:`loss`: a network, a target population rate (Hz) and the simulation window.

    Attributes
    ----------
    network
        A :class:`~spikejax.glm.Network` (one network or a block-diagonal batch).
    firing_rate
        Target population rate in Hz (an array leaf: changing it never recompiles).
    stimulus
        ``None`` or a stimulus callable ``t -> input`` (on during the measured steps, clock from 0).
    n_steps
        Measured steps (static).
    equilibration_steps
        Burn-in steps before measuring, stimulus off (static).
    estimator
        ``"stationary"`` (gradients through the recurrence) or ``"spikeometric"`` (detached history) (static).
    """

    network: Network
    firing_rate: jax.Array
    stimulus: Any = None
    n_steps: int = eqx.field(static=True, default=200)
    equilibration_steps: int = eqx.field(static=True, default=100)
    estimator: str = eqx.field(static=True, default="stationary")

    def __init__(self, network: Network, firing_rate, *, stimulus=None, n_steps: int = 200, equilibration_steps: int = 100,
                 estimator: str = "stationary"):
        if not isinstance(network, Network):
            raise TypeError(f"network must be a spikejax.glm.Network, got {type(network).__name__}")
        if network.is_stacked:
            raise ConfigError("RateTarget takes one network or a block-diagonal batch (batch_networks), not a stacked one")
        check_scalar(firing_rate, "firing_rate", low=0.0)
        check_scalar(n_steps, "n_steps", low=1, integer=True)
        check_scalar(equilibration_steps, "equilibration_steps", low=0, integer=True)
        if estimator not in ("stationary", "spikeometric"):
            raise ConfigError(f"estimator must be 'stationary' or 'spikeometric', got {estimator!r}")
        if stimulus is not None and not callable(stimulus):
            raise TypeError(f"stimulus must be callable t -> input, got {type(stimulus).__name__}")
        self.network = network
        self.firing_rate = jnp.asarray(firing_rate, jnp.result_type(float))
        self.stimulus = stimulus
        self.n_steps = int(n_steps)
        self.equilibration_steps = int(equilibration_steps)
        self.estimator = estimator


def _burn_in(model: GLMModel, engine, key: jax.Array, n_eq: int):
    """A random initial window and ``n_eq`` steps without stimulus, without gradients: the chain's state."""
    m = jax.lax.stop_gradient(model)
    kernel = m.connectivity_filter().padded()
    dtype = jnp.result_type(float)
    k_init, k_run = jax.random.split(key, (2, len(engine.block_sizes)))
    state = init_state(m, kernel, engine, k_init, dtype)
    if n_eq == 0:
        return state
    ts = jnp.arange(n_eq, dtype=jnp.int32)
    keys = jax.vmap(lambda k: step_keys(k, ts), out_axes=1)(k_run)
    ik, ek, u = draw_step_noise(m, engine, keys)
    zero = jnp.zeros((), dtype)

    def body(st, inp):
        _, ikt, ekt, ut = inp
        st, _, _, _ = _step(m, kernel, engine, st, ikt, ekt, zero, ut)
        return st, None

    state, _ = jax.lax.scan(body, state, (ts, ik, ek, u))
    return jax.lax.stop_gradient(state)


def loss(model: GLMModel, data: RateTarget, *, key: jax.Array | None = None) -> jax.Array:
    """``(data.firing_rate - r_hat)^2`` (Hz²): the objective :func:`~spikejax.glm.tune` minimises.

    ``r_hat`` (Hz) is the mean conditional intensity of ``model`` on ``data.network`` over
    ``data.n_steps`` steps after a burn-in, simulated from ``key`` (required: the objective is random).
    Pure and differentiable in the model's array parameters (see the module docstring for the two
    estimators' gradients).
    """
    from .tuning import _Cfg, _default_checkpoint, _tune_backend, _tune_epoch

    key = check_key(key)
    if not isinstance(model, GLMModel):
        raise TypeError(f"model must be a spikejax.glm model, got {type(model).__name__}")
    if not isinstance(data, RateTarget):
        raise TypeError(f"data must be a spikejax.glm.RateTarget (network and target rate), got {type(data).__name__}")
    engine = make_engine(data.network, model, _tune_backend(data.network, "auto"))
    spk = data.estimator == "spikeometric"
    cfg = _Cfg(names=(), estimator=data.estimator, n_steps=data.n_steps, n_eq=data.equilibration_steps,
               checkpoint=_default_checkpoint(data.n_steps), stim_shift=0, sam_inverse=False, fast=False)
    args = {"p0": {}, "scale": {}, "target": data.firing_rate}
    if spk:
        carry = jnp.zeros((), jnp.result_type(float))
    else:
        k_burn, key = jax.random.split(key)
        carry = _burn_in(model, engine, k_burn, data.equilibration_steps)
    value, _, _ = _tune_epoch(cfg, model, data.stimulus, engine, {}, key, args, carry)
    return value


def log_likelihood(model: GLMModel, network: Network, spikes, *, stimulus=None, initial_window=None,
                   backend: str = "auto") -> jax.Array:
    """Log-likelihood (nats) of observed spikes under ``model``, with the history teacher-forced.

    ``sum_{t,i} log P(x_i(t) | mu_i(t))`` where ``mu_i(t)`` is the expected count of step ``t`` given the
    *observed* history (:func:`~spikejax.glm.conditional_intensity`) and ``P`` the model's emission
    (``type(model).emission``): Poisson ``x log mu - mu - log x!`` or Bernoulli
    ``x log mu + (1 - x) log(1 - mu)``. ``spikes``: a :class:`~spikejax.glm.GLMTrajectory` or a neuron-major
    ``(N, n_steps)`` count array. Deterministic in the data; differentiable in the model's parameters
    (compute it in float64 for gradients of long records). Models with a deterministic emission
    (ThresholdSAM) have no likelihood.
    """
    emission = getattr(type(model), "emission", "poisson")
    if emission not in ("poisson", "bernoulli"):
        raise ConfigError(f"{type(model).__name__} has a deterministic emission (emission={emission!r}): no likelihood")
    mu = conditional_intensity(model, network, spikes, stimulus=stimulus, initial_window=initial_window, backend=backend)
    raster = spikes.raster if hasattr(spikes, "raster") else spikes
    x = jnp.asarray(raster, mu.dtype).T  # (n_steps, N), as mu
    if emission == "poisson":
        terms = jax.scipy.special.xlogy(x, mu) - mu - jax.scipy.special.gammaln(x + 1.0)
    else:
        terms = jax.scipy.special.xlogy(x, mu) + jax.scipy.special.xlog1py(1.0 - x, -mu)
    return jnp.sum(terms)
