"""Gradient-based tuning through the whole simulation toward target relative indices.

The original searched input amplitudes with TPE for a weight/selectivity loss and never reached
the experimental sign pattern os_rel < 0 (CC more orientation selective than CS; Lur et al. 2016)
and ds_rel > 0 (CS more direction selective; Kim et al. 2015). Here the simulation is
differentiated end to end (``lax.scan`` with per-block checkpointing) with respect to
log input amplitudes, log time constants per type and log type-level weight gains, with a loss
on the smooth (soft-argmax) relative indices:

    loss = relu(os_rel + margin)^2 + relu(margin - ds_rel)^2
           + c_act * mean_types(relu(act - Max_act)^2 + (10 relu(min_act - act))^2)
           + c_reg * |theta - theta_0|^2

(``act`` = mean rate of each type; the ``min_act`` term keeps every type active, so the indices
cannot be won by silencing a type onto the 0.01 floor of phi).

The result is then checked with the exact (argmax) metrics on networks with fresh seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core.errors import ConfigError
from ..core.training import fit
from . import metrics as M
from .config import L5Config
from .network import Network, build_network
from .simulate import L5Params, make_spec, replace_params, simulate

__all__ = ["TuneParams", "TuneResult", "tune", "check_tuned", "soft_relative_indices"]


class TuneParams(eqx.Module):
    """Trainable, unconstrained parameters: log amplitudes (4), log tau per type (4), log gains (4x4)."""

    log_amplitude: jax.Array
    log_tau: jax.Array
    log_gain: jax.Array

    @classmethod
    def from_params(cls, p: L5Params) -> TuneParams:
        amp = jnp.maximum(jnp.abs(p.amplitude), 1e-3)
        return cls(jnp.log(amp), jnp.log(p.tau), jnp.log(p.w_gain))

    def apply(self, p: L5Params) -> L5Params:
        """L5Params with these values (tau kept above 2 delta_t for stable Euler steps)."""
        tau = jnp.maximum(jnp.exp(self.log_tau), 2.0 * p.delta_t)
        return eqx.tree_at(
            lambda q: (q.amplitude, q.tau, q.w_gain), p, (jnp.exp(self.log_amplitude), tau, jnp.exp(self.log_gain))
        )


def soft_relative_indices(rates, N, eval_blocks: int, beta: float):
    """Smooth os_rel, ds_rel (soft-argmax selectivity, means over simulations) and type activity means."""
    st = M.summarize(rates, N, eval_blocks=eval_blocks, soft_beta=beta)
    os_m = jnp.mean(st["OS_mean"], axis=0)
    ds_m = jnp.mean(st["DS_mean"], axis=0)
    return M.relative_index(os_m[0], os_m[1]), M.relative_index(ds_m[0], ds_m[1]), jnp.mean(st["act_mean"], axis=0)


@dataclass
class TuneResult:
    """Tuned parameters and the loss / soft-index history (one entry per optimiser step call)."""

    params: L5Params
    tune_params: TuneParams
    history: dict = field(default_factory=dict)
    config: L5Config | None = None

    def summary(self) -> dict:
        p = self.params
        return {
            "amplitude": np.asarray(p.amplitude).round(4).tolist(),
            "tau": np.asarray(p.tau).round(5).tolist(),
            "w_gain": np.asarray(p.w_gain).round(4).tolist(),
        }


def tune(
    cfg: L5Config,
    *,
    key: jax.Array,
    n_steps: int = 30,
    learning_rate: float = 0.05,
    margin: float = 0.3,
    soft_beta: float = 20.0,
    c_act: float = 1.0,
    min_act: float = 0.05,
    c_reg: float = 1e-3,
    train: tuple[str, ...] = ("amplitude", "tau", "w_gain"),
    net: Network | None = None,
    params: L5Params | None = None,
    checkpoint: bool = True,
    progress: bool | None = False,
) -> TuneResult:
    """Adam on the smooth loss above, differentiating through every step of the simulation.

    Parameters
    ----------
    cfg
        Config of the simulation that is differentiated (its ``sim_number`` networks are the
        training seeds). The faithful BCM/Slide_BCM rules with Euler use the low-rank weight
        carry (O(N) per step in the backward pass); the other rules carry W densely, which makes
        the backward pass memory-hungry (O(blocks * N^2) per run). See also
        :func:`spikejax.l5.constrained.tune_constrained` (activity bounds, learning on).
    key
        Seeds the training networks (unless ``net`` is given).
    n_steps, learning_rate
        Optimiser steps and Adam step size (on log parameters).
    margin
        Required margin of the soft indices: os_rel <= -margin, ds_rel >= margin.
    c_act, min_act
        Weight of the activity penalty and the lowest allowed mean rate of each type.
    train
        Which groups are trained: any of "amplitude", "tau", "w_gain".
    """
    bad = [t for t in train if t not in ("amplitude", "tau", "w_gain")]
    if bad or not train:
        raise ConfigError(f"train must name some of 'amplitude', 'tau', 'w_gain'; got {train!r}")
    if n_steps < 0:
        raise ConfigError(f"n_steps must be >= 0, got {n_steps}")
    cfg.validate()
    net = build_network(cfg, key=key) if net is None else net
    p0 = L5Params.from_config(cfg) if params is None else params
    spec = make_spec(cfg, record_weights=False, remat=checkpoint)
    eval_blocks = cfg.eval_steps // cfg.block
    tp0 = TuneParams.from_params(p0)

    def loss_fn(tp, batch, k):
        del batch, k
        p = tp.apply(p0)
        out = simulate(p, net, spec, jit=False)
        os_rel, ds_rel, act = soft_relative_indices(out.rates, cfg.N, eval_blocks, soft_beta)
        reg = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree_util.tree_leaves(tp), jax.tree_util.tree_leaves(tp0)))
        loss = (
            jax.nn.relu(os_rel + margin) ** 2
            + jax.nn.relu(margin - ds_rel) ** 2
            + c_act * jnp.mean(jax.nn.relu(act - cfg.Max_act) ** 2 + (10 * jax.nn.relu(min_act - act)) ** 2)
            + c_reg * reg
        )
        return loss, {"os_rel_soft": os_rel, "ds_rel_soft": ds_rel}

    frozen = []
    names = {"amplitude": "log_amplitude", "tau": "log_tau", "w_gain": "log_gain"}
    for group, attr in names.items():
        if group not in train:
            frozen.append(attr)
    filter_spec = jax.tree_util.tree_map(lambda _: True, tp0)
    for attr in frozen:
        filter_spec = eqx.tree_at(lambda t, a=attr: getattr(t, a), filter_spec, False)
    history = {"loss": [], "os_rel_soft": [], "ds_rel_soft": []}

    def cb(step, model, logs):
        for k in history:
            if k in logs:
                history[k].append(float(logs[k]))
        return None

    res = fit(
        tp0, loss_fn, None, optimizer=optax.adam(learning_rate), key=key, n_steps=n_steps, has_aux=True,
        filter_spec=filter_spec, steps_per_call=1, callback=cb, progress=progress, desc="l5 tune",
    )
    return TuneResult(params=res.model.apply(p0), tune_params=res.model, history=history, config=cfg)


def check_tuned(cfg: L5Config, params: L5Params, *, key: jax.Array, sim_number: int | None = None,
                group: int = 5) -> dict:
    """Re-simulate ``params`` on fresh networks and return the exact relative indices.

    Returns os_rel/ds_rel/os_p_rel (on the means over simulations, as the original), the
    per-network values with their s.d. across networks (``*_sd``), and the same for
    "experiments" of ``group`` networks each (the original's unit: ``sim_number`` = 5 networks
    give one os_rel; ``*_exp``, ``*_exp_sd``), plus the counters.
    """
    c = cfg.replace(sim_number=int(sim_number or cfg.sim_number))
    net = build_network(c, key=key)
    spec = make_spec(c, record_weights=False)
    p = replace_params(L5Params.from_config(c), amplitude=params.amplitude, tau=params.tau, w_gain=params.w_gain)
    out = simulate(p, net, spec)
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
    res["act_mean"] = np.asarray(agg["act_mean"]).tolist()
    res["OS_mean"] = np.asarray(agg["OS_mean"]).tolist()
    res["DS_mean"] = np.asarray(agg["DS_mean"]).tolist()
    res.update({k: np.asarray(v).tolist() for k, v in cnt.items()})
    return res
