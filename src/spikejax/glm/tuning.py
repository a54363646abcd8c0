"""Tuning model (and stimulus) parameters to a target firing rate.

Two estimators of the rate ``r_hat = mean_{i,t} mu_i(t) / dt * 1000`` (the mean conditional intensity
in Hz) and its gradient:

``estimator="spikeometric"`` (compatibility baseline)
    Every epoch starts from a random window (each neuron spiked with probability 1/2), runs 10
    equilibration steps without gradient, then ``n_steps`` steps whose history is detached
    (``stop_gradient`` on the sampled counts): the gradient is the open-loop effect on the current
    step's intensity only. Adam on ``(target - r_hat)^2``; the last iterate is returned. Its fixed point
    is biased when ``n_steps`` is not much larger than ``T`` (the initial burst stays in the window).

``estimator="stationary"`` (default)
    A persistent chain: one burn-in of ``equilibration_steps`` (default ``max(10 T, 500)``) steps, then
    each epoch continues from where the previous one stopped, so every measured step is drawn from the
    stationary regime and ``E[r_hat]`` is the true rate: the fixed point of the loss is the target rate.
    Gradients flow through the recurrence (backprop through time with a straight-through spike:
    ``x + mu - stop_gradient(mu)``, i.e. ``dx/dmu = 1``, exact in expectation for Poisson counts), with
    gradient checkpointing. The returned parameters are the average of the last quarter of the epochs
    (Polyak averaging) which removes the epoch-to-epoch noise.

Learning rate: ``learning_rate`` is Adam's (absolute) step size. ``learning_rate=None`` (default) scales
steps per parameter: ``rel_learning_rate * max(|p0|, 1e-6)`` — convenient because rate parameters span many orders of magnitude
(``theta ~ 1e-4`` next to ``lambda_0 ~ 100``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from ..core.config import Config, option
from ..core.errors import ConfigError, NonFiniteError, TrainingDivergedError, check_scalar, warn_target_missed
from ..core.population import fit_population
from ..core.random import check_key
from ..core.results import StopReason
from ..core.scan import scan as core_scan
from ..core.scan import step_keys
from .models import GLMModel, SAModel, fast_poisson
from .network import Network, batch_networks
from .results import GLMTuneResult, model_spec
from .simulation import _batch_keys, _run_equilibrate, _step, draw_step_noise, init_state, make_engine

__all__ = ["tune", "TuneConfig", "resolve_tunable", "rate_estimate"]


@dataclasses.dataclass(frozen=True)
class TuneConfig(Config):
    """Settings of :func:`tune` (validated once, at construction; ``replace`` gives a new one)."""

    n_epochs: int = option(100, ge=1, help="Adam steps, one per epoch (all run inside one compiled program)")
    learning_rate: float | None = option(None, gt=0, help="absolute Adam step size; None: per-parameter steps "
                                         "rel_learning_rate * max(|p0|, 1e-6)")
    rel_learning_rate: float = option(0.05, gt=0, help="relative Adam step (used when learning_rate is None)")
    n_steps: int | None = option(None, ge=1, help="measured steps per epoch (default: 100 for 'spikeometric', "
                                 "max(200, 5 T) for 'stationary')")
    estimator: str = option("stationary", choices=("stationary", "spikeometric"),
                            help="'stationary' (persistent chain, gradient through the recurrence) or 'spikeometric'")
    equilibration_steps: int | None = option(None, ge=0, help="burn-in steps: 'stationary' once (default max(10 T, 500)), "
                                             "'spikeometric' every epoch (default 10)")
    backend: str = option("auto", choices=("auto", "dense", "sparse", "event"),
                          help="synaptic kernel ('event' is replaced by 'sparse': gradients need it)")
    checkpoint: int | None = option(None, ge=1, help="block length of gradient checkpointing (default ~sqrt(n_steps))")
    average_last: float = option(0.25, ge=0.0, le=1.0, help="'stationary': fraction of final epochs whose parameters "
                                 "are averaged (0: last iterate)")
    stimulus_offset: bool = option(False, help="compatibility: evaluate the stimulus at t + T (spikeometric's clock)")
    sam_inverse_rate: bool = option(False, help="compatibility (SA models, 'spikeometric'): spikeometric's dt / mean(mu) rate")
    progress: bool = option(False, help="tqdm bar over the epochs (the program then runs in 10 chunks of epochs)")
    rate_tolerance: float = option(0.1, ge=0.0, help="relative miss of the final rate (mean of the last epochs' "
                                   "estimates) above which tune warns (TargetMissedWarning); at least 0.5 Hz")


def resolve_tunable(model: GLMModel, stimulus, tunable_parameters) -> list[str]:
    """Names to tune: ``"all"``, ``"model"``, ``"stimulus"`` or a list (``"stimulus.<name>"`` for stimulus parameters)."""
    model_names = list(type(model).tunable)
    stim_names = [f"stimulus.{n}" for n in getattr(type(stimulus), "tunable", ())] if stimulus is not None else []
    valid = model_names + stim_names
    if tunable_parameters is None or (not isinstance(tunable_parameters, str) and len(tunable_parameters) == 0):
        raise ConfigError("No parameters to tune: tunable_parameters is empty")
    if not valid:
        raise ConfigError(f"{type(model).__name__} has no tunable parameters (and no tunable stimulus is attached)")
    if isinstance(tunable_parameters, str):
        if tunable_parameters == "all":
            names = valid
        elif tunable_parameters == "model":
            names = model_names
        elif tunable_parameters == "stimulus":
            names = stim_names
        else:
            names = [tunable_parameters]
    else:
        names = list(tunable_parameters)
    bad = [n for n in names if n not in valid]
    if bad:
        raise ConfigError(f"unknown or fixed parameter(s) {bad}; valid parameter names are {valid}")
    if not names:
        raise ConfigError(f"No parameters to tune in group {tunable_parameters!r} (valid names: {valid})")
    return names


def _get(pair, name):
    model, stim = pair
    if name.startswith("stimulus."):
        return getattr(stim, name[len("stimulus.") :])
    return getattr(model, name)


def _set(pair, values: dict):
    model, stim = pair
    m_names = [n for n in values if not n.startswith("stimulus.")]
    s_names = [n for n in values if n.startswith("stimulus.")]
    if m_names:
        model = eqx.tree_at(lambda m: [getattr(m, n) for n in m_names], model, [values[n] for n in m_names])
    if s_names:
        stim = eqx.tree_at(lambda s: [getattr(s, n[9:]) for n in s_names], stim, [values[n] for n in s_names])
    return model, stim


def rate_estimate(mu: jax.Array, dt) -> jax.Array:
    """Mean conditional intensity in Hz: ``mean(mu) / dt * 1000``."""
    return jnp.mean(mu) / dt * 1000.0


def tune(
    model: GLMModel,
    network: Network | Sequence[Network],
    firing_rate: float,
    tunable_parameters="all",
    *,
    key: jax.Array,
    stimulus=None,
    config: TuneConfig | None = None,
    **settings: Any,
) -> GLMTuneResult:
    """Tune parameters so that the network fires at ``firing_rate`` Hz.

    The objective of every epoch is :func:`~spikejax.glm.loss`'s (``(firing_rate - r_hat)^2`` through the
    simulation); the ``"stationary"`` estimator continues one persistent chain across epochs.

    Parameters
    ----------
    model, network
        The model and a network (or list of networks, batched block-diagonally).
    firing_rate
        Target population rate in Hz.
    tunable_parameters
        ``"all"``, ``"model"``, ``"stimulus"`` or a list of names (``"theta"``, ``"stimulus.strength"``, ...).
    key
        PRNG key (required).
    stimulus
        Optional stimulus whose tunable parameters may be tuned too.
    config
        A :class:`TuneConfig` (default ``TuneConfig()``).
    settings
        (keyword arguments) Fields of :class:`TuneConfig` given directly (``n_epochs=50, learning_rate=1e-5``); they replace
        those of ``config``. Unknown names are refused with the closest valid one.

    Returns
    -------
    :class:`GLMTuneResult`: the tuned ``model`` and ``stimulus``, ``params`` (tuned values), the per-epoch
    ``history`` (``epoch``, ``loss``, ``rate_hz`` and the parameter values after each update), ``stop_reason``
    and the wall time ``seconds``.

    Warns
    -----
    TargetMissedWarning
        When the final rate (:attr:`GLMTuneResult.final_rate_hz`) misses ``firing_rate`` by more than
        ``config.rate_tolerance`` (relative; :attr:`GLMTuneResult.target_met` is then ``False``).
    """
    key = check_key(key)
    config = TuneConfig() if config is None else config
    if not isinstance(config, TuneConfig):
        raise ConfigError(f"config must be a spikejax.glm.TuneConfig, got {type(config).__name__}")
    if settings:
        config = config.replace(**settings)
    if not isinstance(model, GLMModel):
        raise TypeError(f"model must be a spikejax.glm model, got {type(model).__name__}")
    if stimulus is not None and not callable(stimulus):
        raise TypeError(f"stimulus must be callable t -> input, got {type(stimulus).__name__}")
    if not isinstance(network, Network):
        network = batch_networks(list(network))
    check_scalar(firing_rate, "firing_rate", low=0.0)
    names = resolve_tunable(model, stimulus, tunable_parameters)
    T = model.connectivity_filter().T
    estimator = config.estimator
    n_steps, n_epochs, equilibration_steps = _epoch_sizes(config, T)
    lr, rel_lr = config.learning_rate, config.rel_learning_rate

    engine = make_engine(network, model, _tune_backend(network, config.backend))
    batched = network.block_sizes is not None
    pair = (model, stimulus)
    params0 = {n: jnp.asarray(_get(pair, n)) for n in names}
    if lr is None:
        scales = {n: rel_lr * jnp.maximum(jnp.abs(v), 1e-6) for n, v in params0.items()}
    else:
        scales = {n: jnp.asarray(lr, v.dtype) for n, v in params0.items()}
    cfg = _Cfg(
        names=tuple(names),
        estimator=estimator,
        n_steps=n_steps,
        n_eq=equilibration_steps,
        checkpoint=config.checkpoint if config.checkpoint is not None else _default_checkpoint(n_steps),
        stim_shift=T if config.stimulus_offset else 0,
        sam_inverse=config.sam_inverse_rate and isinstance(model, SAModel),
    )
    progress = config.progress
    t0 = time.perf_counter()
    k_fit, k_burn = jax.random.split(key)
    if estimator == "stationary":
        # one burn-in of the persistent chain (the simulator's compiled equilibration), then every epoch continues it
        burn_keys = _block_keys(k_burn, engine, batched)
        carry = jax.lax.stop_gradient(_run_equilibrate(model, engine, burn_keys, equilibration_steps))
    else:
        carry = jnp.zeros((), jnp.result_type(float))  # fresh state every epoch: nothing carried
    # a population of one member: the scaled coordinates z = (p - p0) / scale (one Adam unit moves p by
    # `scale`) are trained; the model, stimulus, synaptic kernel and settings ride along frozen (traced
    # arrays, or static structure), so a second tune of the same structure reuses the compiled program
    z0 = {n: jnp.zeros_like(v) for n, v in params0.items()}
    member = {"z": z0, "fixed": (cfg, model, stimulus, engine)}
    spec = jax.tree_util.tree_map(lambda _: False, member)
    spec["z"] = jax.tree_util.tree_map(lambda _: True, z0)
    target = jnp.asarray(firing_rate, jnp.result_type(float))
    res = _fit(member, spec, params0, scales, target, carry, k_fit, n_epochs, progress)
    if float(np.nanmax(res.curves["mu_max"])) > 1.0:  # some expected count exceeded 1: redo with exact sampling
        member = {"z": z0, "fixed": (cfg._replace(fast=False), model, stimulus, engine)}
        res = _fit(member, spec, params0, scales, target, carry, k_fit, n_epochs, progress)
    h = res.curves
    status = str(res.status[0])
    if status == "diverged":
        ep = int(res.epochs[0]) - 1
        raise TrainingDivergedError(
            f"tune diverged at epoch {ep}: the loss or a parameter became non-finite (last finite rate "
            f"{_last_finite(h['rate'][:, 0])} Hz); lower learning_rate/rel_learning_rate or try jax_enable_x64"
        )
    z_last = {n: res.population["z"][n][0] for n in names}
    p_last = _params_of(names, params0, scales, z_last)
    # history: the loss and rate of each epoch (measured before its update) and the parameters after it
    hist = {"epoch": np.arange(1, n_epochs + 1), "loss": np.asarray(h["loss"][:, 0], float),
            "rate_hz": np.asarray(h["rate"][:, 0], float)}
    for n in names:
        before = np.asarray(h[f"param/{n}"][:, 0], dtype=float)
        hist[n] = np.append(before[1:], float(p_last[n]))
    n_avg = int(round(config.average_last * n_epochs)) if estimator == "stationary" else 0
    if n_avg:  # Polyak averaging of the parameters after the last n_avg updates (p is affine in z)
        final = {n: jnp.mean(jnp.asarray(hist[n][-n_avg:], params0[n].dtype)) for n in names}
    else:
        final = p_last
    for n, v in final.items():
        if not bool(jnp.all(jnp.isfinite(v))):
            raise NonFiniteError(f"tuned parameter {n} is not finite ({v})")
    final = {n: jnp.asarray(v).astype(params0[n].dtype) for n, v in final.items()}
    model_t, stim_t = _set(pair, final)
    result = GLMTuneResult(
        model=model_t,
        history=pd.DataFrame(hist),
        stop_reason=StopReason.COMPLETED,
        seconds=time.perf_counter() - t0,
        stimulus=stim_t,
        params={n: float(v) for n, v in final.items()},
        target_rate_hz=float(firing_rate),
        config=config,
        model_spec=model_spec(model_t),
    )
    if not result.target_met:
        warn_target_missed(
            f"glm tune missed its target: final rate {result.final_rate_hz:.3g} Hz against {firing_rate:g} Hz "
            f"(tolerance {config.rate_tolerance:g} relative); run more epochs (n_epochs={n_epochs}) or a larger "
            f"learning rate")
    return result


def _epoch_sizes(config: TuneConfig, T: int) -> tuple[int, int, int]:
    """``(n_steps, n_epochs, equilibration_steps)`` with the estimator's defaults filled in."""
    spk = config.estimator == "spikeometric"
    n_steps = config.n_steps if config.n_steps is not None else (100 if spk else max(200, 5 * T))
    n_eq = config.equilibration_steps if config.equilibration_steps is not None else (10 if spk else max(10 * T, 500))
    return int(n_steps), int(config.n_epochs), int(n_eq)


def _default_checkpoint(n_steps: int) -> int:
    return max(1, int(round(np.sqrt(n_steps))))


def _fit(member, spec, params0, scales, target, carry, key, n_epochs, progress):
    return fit_population(
        _one(member), _tune_loss, optimizer=_OPT, key=key, n_epochs=n_epochs, filter_spec=_one(spec),
        args=_one({"p0": params0, "scale": scales, "target": target}), carry=_one(carry), has_aux=True,
        epochs_per_chunk=max(1, n_epochs // 10) if progress else None, progress=bool(progress), desc="glm tune",
        shard=False,
    )


def _tune_backend(network: Network, backend: str) -> str:
    """The synaptic kernel of a tune: gradients need ``"dense"`` or ``"sparse"`` (not the event gather).

    ``"auto"``: dense while an ``N x N`` matrix-vector product costs at most ~16 edge updates per edge
    (e.g. a block-diagonal batch of small dense networks: 5 rings of 100 neurons run ~5x faster dense
    than with the edge segment sum), else sparse.
    """
    if backend == "event":
        return "sparse"
    if backend != "auto":
        return backend
    n, e = network.n_nodes, int(network.src.shape[0])
    return "dense" if (n <= 256 or n * n <= 16 * e) and n <= 8192 else "sparse"


def _last_finite(values) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v[-1]) if v.size else float("nan")


def _one(tree):
    """``tree`` as a population of one member (a leading axis of length 1 on every array leaf)."""
    return jax.tree_util.tree_map(lambda a: a[None] if eqx.is_array(a) else a, tree)


def _block_keys(key, engine, batched: bool):
    return jnp.asarray(key)[None] if not batched else _batch_keys(key, len(engine.block_sizes))


class _Cfg(NamedTuple):
    names: tuple
    estimator: str
    n_steps: int
    n_eq: int
    checkpoint: int
    stim_shift: int
    sam_inverse: bool
    fast: bool = True  # one-pass Poisson sampling (exact while every mean is <= 1; checked, else re-run exactly)


_OPT = optax.chain(optax.scale_by_adam(), optax.scale(-1.0))


def _params_of(names, params0, scales, z):
    return {n: params0[n] + scales[n] * z[n] for n in names}


def _tune_loss(member, _data, key, *, args, carry):
    """One tuning epoch of one member, as :func:`spikejax.core.fit_population` calls it.

    ``member``: ``{"z": scaled parameter coordinates, "fixed": (config, model, stimulus, engine)}``;
    ``args``: the member's initial values, scales and target rate (Hz); ``carry``: the persistent chain's
    state (``"stationary"``) or a placeholder (``"spikeometric"``). Returns ``(loss, aux, carry)``.
    """
    cfg, model, stim, engine = member["fixed"]
    with fast_poisson(cfg.fast):
        return _tune_epoch(cfg, model, stim, engine, member["z"], key, args, carry)


def _tune_epoch(cfg, model, stim, engine, z, key, args, carry):
    """The epoch's simulation window and loss. ``"spikeometric"``: a fresh random window, ``n_eq``
    equilibration steps (stimulus off, not measured) and ``n_steps`` measured steps in one scan, the
    history detached at every step; ``"stationary"``: ``n_steps`` steps continuing the carried chain,
    gradients through the recurrence (straight-through spikes, checkpointed scan). One key split per
    epoch feeds every draw (per network block of a batch), so the program holds few PRNG calls."""
    params = _params_of(cfg.names, args["p0"], args["scale"], z)
    m, s = _set((model, stim), params)
    kernel = m.connectivity_filter().padded()
    dtype = jnp.result_type(float)
    k_init, k_run = jax.random.split(key, (2, len(engine.block_sizes)))
    stim_fn = s if s is not None else (lambda t: jnp.zeros((), dtype))
    spk = cfg.estimator == "spikeometric"
    n_eq = cfg.n_eq if spk else 0
    ts = jnp.arange(n_eq + cfg.n_steps, dtype=jnp.int32)
    keys = jax.vmap(lambda k: step_keys(k, ts), out_axes=1)(k_run)
    ik, ek, u = draw_step_noise(m, engine, keys)
    xs = (ts, ik, ek, u)
    shift = cfg.stim_shift

    def stim_at(t):  # off during the equilibration; the measured clock starts at 0 (+ T with stimulus_offset)
        return jnp.where(t >= n_eq, stim_fn(jnp.maximum(t - n_eq, 0) + shift), 0.0)

    if spk:

        def body(st, inp):
            t, ikt, ekt, ut = inp
            st, x, mu, g = _step(m, kernel, engine, jax.lax.stop_gradient(st), ikt, ekt, stim_at(t), ut)
            return jax.lax.stop_gradient(st), mu

        state0 = init_state(jax.lax.stop_gradient(m), kernel, engine, k_init, dtype)
        _, mus = jax.lax.scan(body, state0, xs)
        new_carry = carry
    else:

        def body(st, inp):
            t, ikt, ekt, ut = inp
            st, x, mu, g = _step(m, kernel, engine, st, ikt, ekt, stim_at(t), ut, straight_through=True)
            return st, mu

        state, mus = core_scan(body, carry, xs, checkpoint=cfg.checkpoint)
        new_carry = jax.lax.stop_gradient(state)
    mu_max = jnp.max(mus)
    mus = mus[n_eq:]
    rate = m.dt / jnp.mean(mus) if cfg.sam_inverse else rate_estimate(mus, m.dt)
    loss = (args["target"] - rate) ** 2
    aux = {"rate": jax.lax.stop_gradient(rate), "mu_max": jax.lax.stop_gradient(mu_max),
           **{f"param/{n}": jax.lax.stop_gradient(params[n]) for n in cfg.names}}
    return loss, aux, new_carry
