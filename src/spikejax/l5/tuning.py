"""Gradient-based tuning through the whole simulation toward target relative indices.

The original searched input amplitudes with TPE for a weight/selectivity loss and never reached
the experimental sign pattern os_rel < 0 (CC more orientation selective than CS; Lur et al. 2016)
and ds_rel > 0 (CS more direction selective; Kim et al. 2015). Here the simulation is
differentiated end to end (``lax.scan`` with per-block checkpointing) with respect to
log input amplitudes, log time constants per type and log type-level weight gains, minimising :func:`spikejax.l5.loss` (the smooth (soft-argmax) relative indices against an
:class:`~spikejax.l5.L5Target`) plus ``c_reg * |theta - theta_0|^2``:

    loss = relu(os_rel + margin)^2 + relu(margin - ds_rel)^2
           + c_act * mean_types(relu(act - Max_act)^2 + (10 relu(min_act - act))^2)

(``act`` = mean rate of each type; the ``min_act`` term keeps every type active, so the indices
cannot be won by silencing a type onto the 0.01 floor of phi).

The result is then checked with the exact (argmax) metrics on networks with fresh seeds.
"""

from __future__ import annotations

import difflib
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from ..core.errors import ConfigError, ShapeError, check_scalar, warn_target_missed
from ..core.random import check_key
from ..core.results import Result, StopReason
from ..core.training import fit
from . import metrics as M
from .config import L5Config
from .engine import _run
from .model import L5Model, L5Params, make_spec, replace_params
from .network import L5Network, build_network, check_network
from .objective import L5Target, _terms, soft_relative_indices

__all__ = ["TuneParams", "L5TuneResult", "tune", "check_tuned", "soft_relative_indices"]


class TuneParams(eqx.Module):
    """Trainable, unconstrained parameters: log amplitudes (4), log tau per type (4), log gains (4x4)."""

    log_amplitude: jax.Array
    log_tau: jax.Array
    log_gain: jax.Array

    @classmethod
    def from_params(cls, p: L5Params) -> TuneParams:
        amp = jnp.maximum(jnp.abs(p.amplitude), 1e-3)
        return cls(jnp.log(amp), jnp.log(p.tau), jnp.log(p.w_gain))

    def apply(self, p: L5Params, dt: float) -> L5Params:
        """L5Params with these values (tau kept above 2 dt for stable Euler steps)."""
        tau = jnp.maximum(jnp.exp(self.log_tau), 2.0 * dt)
        return eqx.tree_at(
            lambda q: (q.amplitude, q.tau, q.w_gain), p, (jnp.exp(self.log_amplitude), tau, jnp.exp(self.log_gain))
        )


def _params_template(config: L5Config):
    return eqx.filter_eval_shape(L5Params.from_config, config)


class L5TuneResult(Result):
    """What :func:`tune` returns.

    Attributes
    ----------
    model : L5Params
        The tuned parameters (also :attr:`params`).
    history : DataFrame
        One row per optimiser step: ``step``, ``loss`` (the objective with its L2 term, of the
        parameters before the step), ``os_rel_soft``, ``ds_rel_soft``.
    stop_reason, seconds
        As every :class:`spikejax.core.Result`.
    tune_params : TuneParams
        The trained log parameters.
    config : L5Config
        The simulated configuration.
    """

    tune_params: Any
    config: L5Config

    @property
    def params(self) -> L5Params:
        """The tuned parameters (the old name of :attr:`model`)."""
        return self.model

    @property
    def target_met(self) -> bool:
        """Whether the last step's smooth indices on the training networks have the target's sign
        pattern (``os_rel_soft < 0`` and ``ds_rel_soft > 0``); :func:`check_tuned` checks the exact
        indices on fresh networks (its ``"target_met"``)."""
        h = self.history
        if len(h) == 0:
            return False
        return bool(h["os_rel_soft"].iloc[-1] < 0 and h["ds_rel_soft"].iloc[-1] > 0)

    @classmethod
    def _template(cls, field: str, header):
        config = header["config"]
        if field == "model":
            return _params_template(config)
        if field == "tune_params":
            return eqx.filter_eval_shape(lambda c: TuneParams.from_params(L5Params.from_config(c)), config)
        return super()._template(field, header)

    def summary(self) -> dict:
        p = self.model
        from ..core.io import json_ready

        # json_ready: float32 values as their shortest decimals (8.4441, not 8.444100379943848)
        return {
            "amplitude": json_ready(np.asarray(p.amplitude).round(4)),
            "tau": json_ready(np.asarray(p.tau).round(5)),
            "w_gain": json_ready(np.asarray(p.w_gain).round(4)),
        }


TRAIN_GROUPS = ("amplitude", "tau", "w_gain")


def check_train(train: Any) -> None:
    """``train`` must be a non-empty tuple/list of group names from :data:`TRAIN_GROUPS`."""
    if isinstance(train, str):
        raise ConfigError(f"train must be a tuple of group names such as ({train!r},), got the string {train!r}")
    if not isinstance(train, (tuple, list)) or not train:
        raise ConfigError(f"train must name some of {TRAIN_GROUPS}, got {train!r}")
    bad = [t for t in train if t not in TRAIN_GROUPS]
    if bad:
        close = difflib.get_close_matches(str(bad[0]), TRAIN_GROUPS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"train must name some of {TRAIN_GROUPS}; got unknown group(s) {bad}{hint}")


def check_tune_args(config: Any, *, n_epochs: Any = 0, train: Any = TRAIN_GROUPS, **positive: Any) -> None:
    """The checks shared by :func:`tune` and :func:`~spikejax.l5.tune_constrained` (before anything is built)."""
    if not isinstance(config, L5Config):
        raise TypeError(f"config must be an L5Config, got {type(config).__name__}")
    if isinstance(n_epochs, bool) or not isinstance(n_epochs, (int, np.integer)) or n_epochs < 0:
        raise ConfigError(f"n_epochs must be an int >= 0, got {type(n_epochs).__name__} {n_epochs!r}")
    check_train(train)
    for name, value in positive.items():
        if name == "margin":  # any finite number (a negative margin switches the selectivity terms off)
            check_scalar(value, name)
        else:
            check_scalar(value, name, low=0.0, low_inclusive=name in ("c_reg", "c_act", "c_con", "min_act"))


def _frozen_spec(tp0: TuneParams, train) -> Any:
    names = {"amplitude": "log_amplitude", "tau": "log_tau", "w_gain": "log_gain"}
    check_train(train)
    filter_spec = jax.tree_util.tree_map(lambda _: True, tp0)
    for group, attr in names.items():
        if group not in train:
            filter_spec = eqx.tree_at(lambda t, a=attr: getattr(t, a), filter_spec, False)
    return filter_spec


def tune(
    config: L5Config,
    *,
    key: jax.Array,
    n_epochs: int = 30,
    learning_rate: float = 0.05,
    margin: float = 0.3,
    soft_beta: float = 20.0,
    c_act: float = 1.0,
    min_act: float = 0.05,
    c_reg: float = 1e-3,
    train: tuple[str, ...] = ("amplitude", "tau", "w_gain"),
    net: L5Network | None = None,
    params: L5Params | None = None,
    checkpoint: bool = True,
    progress: bool | None = False,
) -> L5TuneResult:
    """Adam on :func:`spikejax.l5.loss` (+ an L2 term), differentiating through every step of the simulation.

    Parameters
    ----------
    config
        Config of the simulation that is differentiated (its ``sim_number`` networks are the
        training networks). The faithful BCM/Slide_BCM rules with Euler use the low-rank weight
        carry (O(N) per step in the backward pass); the other rules carry W densely, which makes
        the backward pass memory-hungry (O(blocks * N^2) per run). See also
        :func:`spikejax.l5.tune_constrained` (activity bounds, learning on).
    key
        Samples the training networks (unless ``net`` is given).
    n_epochs, learning_rate
        Optimiser steps (full batch: one step per epoch) and Adam step size (on log parameters).
    margin, soft_beta, c_act, min_act
        The :class:`~spikejax.l5.L5Target` (``max_act`` is ``config.Max_act``).
    c_reg
        Weight of ``|theta - theta_0|^2`` on the log parameters.
    train
        Which groups are trained: any of "amplitude", "tau", "w_gain".

    Warns
    -----
    TargetMissedWarning
        When the last step's smooth indices miss the sign pattern (:attr:`L5TuneResult.target_met`).
    """
    check_tune_args(config, n_epochs=n_epochs, train=train, learning_rate=learning_rate, soft_beta=soft_beta,
                    c_reg=c_reg, c_act=c_act, min_act=min_act, margin=margin)
    t0 = time.perf_counter()
    key = check_key(key)
    net = build_network(config, key=key) if net is None else net
    p0 = L5Params.from_config(config) if params is None else params
    spec = make_spec(config, record_weights=False, remat=checkpoint)
    target = L5Target(margin=margin, c_act=c_act, min_act=min_act, max_act=config.Max_act, soft_beta=soft_beta)
    tp0 = TuneParams.from_params(p0)
    filter_spec = _frozen_spec(tp0, train)

    def loss_fn(tp, batch, k):
        del batch, k
        value, aux = _terms(L5Model(tp.apply(p0, spec.dt), net, spec), target)
        reg = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree_util.tree_leaves(tp), jax.tree_util.tree_leaves(tp0)))
        return value + c_reg * reg, aux

    history = {"loss": [], "os_rel_soft": [], "ds_rel_soft": []}

    def cb(step, model, logs):
        for k in history:
            if k in logs:
                history[k].append(float(logs[k]))
        return None

    res = fit(
        tp0, loss_fn, None, optimizer=optax.adam(learning_rate), key=key, n_steps=n_epochs, has_aux=True,
        filter_spec=filter_spec, steps_per_call=1, callback=cb, progress=progress, desc="l5 tune",
    )
    hist = pd.DataFrame({"step": np.arange(1, len(history["loss"]) + 1), **history})
    result = L5TuneResult(model=res.model.apply(p0, spec.dt), history=hist, stop_reason=StopReason.of(res.stop_reason),
                          seconds=time.perf_counter() - t0, tune_params=res.model, config=config)
    if n_epochs > 0 and not result.target_met:
        last = hist.iloc[-1] if len(hist) else None
        got = (f"os_rel {last['os_rel_soft']:.3g}, ds_rel {last['ds_rel_soft']:.3g}" if last is not None
               else "no step logged")
        warn_target_missed(f"l5 tune missed its target os_rel < 0 and ds_rel > 0 on the training networks ({got}) "
                           f"after {n_epochs} steps; run more epochs or a larger learning rate")
    return result


def check_tuned(config: L5Config, params: L5Params, *, key: jax.Array, sim_number: int | None = None,
                group: int = 5, net: L5Network | None = None) -> dict:
    """Re-simulate ``params`` on fresh networks and return the exact relative indices.

    Returns os_rel/ds_rel/os_p_rel (on the means over simulations, as the original), the
    per-network values with their s.d. across networks (``*_sd``), and the same for
    "experiments" of ``group`` networks each (the original's unit: ``sim_number`` = 5 networks
    give one os_rel; ``*_exp``, ``*_exp_sd``), ``target_met`` (``os_rel < 0`` and ``ds_rel > 0``),
    plus the counters.

    ``net`` gives the fresh networks (e.g. ``build_network(config.replace(sim_number=n), key=key)``,
    to check several parameter sets on the same networks without sampling and normalising them again);
    by default they are sampled from ``key``.
    """
    key = check_key(key)
    if net is not None:
        if not isinstance(net, L5Network):
            raise TypeError(f"net must be an L5Network (from build_network), got {type(net).__name__}")
        check_network(net, config.N)
        if sim_number is None:
            sim_number = net.W.shape[0]
        elif int(sim_number) != net.W.shape[0]:
            raise ShapeError(f"net holds {net.W.shape[0]} networks but sim_number is {sim_number}: "
                             f"build it with sim_number={sim_number} or leave sim_number out")
    c = config.replace(sim_number=int(sim_number or config.sim_number))
    if net is None:
        net = build_network(c, key=key)
    spec = make_spec(c, record_weights=False)
    p = replace_params(L5Params.from_config(c), amplitude=params.amplitude, tau=params.tau, w_gain=params.w_gain)
    out = _run(p, net, spec)
    st = M.summarize(out.rates, c.N, eval_blocks=c.eval_steps // c.block)
    agg = M.aggregate(st)
    cnt = M.counters(out.rates, c.N, variant=c.variant, eval_blocks=c.eval_steps // c.block)
    res = {k: float(agg[k]) for k in ("os_rel", "ds_rel", "os_p_rel")}
    for k in ("os_rel", "ds_rel"):
        sims = np.asarray(agg[k + "_sims"])
        res[k + "_sims"] = sims.tolist()
        res[k + "_sd"] = float(np.std(sims, ddof=1)) if sims.size > 1 else float("nan")
    n_exp = c.sim_number // group
    if n_exp >= 2:
        for k, key_ in (("os_rel", "OS_mean"), ("ds_rel", "DS_mean")):
            m = np.asarray(st[key_])[: n_exp * group].reshape(n_exp, group, 4).mean(1)
            vals = (m[:, 0] - m[:, 1]) / (m[:, 0] + m[:, 1])
            res[k + "_exp"] = vals.tolist()
            res[k + "_exp_sd"] = float(np.std(vals, ddof=1))
    res["target_met"] = bool(res["os_rel"] < 0 and res["ds_rel"] > 0)
    res["act_mean"] = np.asarray(agg["act_mean"]).tolist()
    res["OS_mean"] = np.asarray(agg["OS_mean"]).tolist()
    res["DS_mean"] = np.asarray(agg["DS_mean"]).tolist()
    res.update({k: np.asarray(v).tolist() for k, v in cnt.items()})
    return res
