"""Constrained tuning toward os_rel < 0, ds_rel > 0 with every cell type active, its validation
protocol, and a TPE search on the same objective for comparison.

Constraints a modeller states (:class:`Constraints`), per type k and per training network s:

* mean activity ``act_sk`` (mean rate over the evaluation window, all cells and directions)
  within ``[act_min_k, act_max_k]``;
* fraction of silent cells ``f_sk <= silent_max``, a cell being *silent* when its mean rate is
  below ``silent_rate`` for every direction (the original's reliability filter, with a threshold
  that is not vacuous under phi's 0.01 floor).

They enter the tuning loss as exterior quadratic penalties, relative to the bound and aimed at a
safety margin inside it (fresh networks vary):

    P = mean_{s,k} [ (relu(a_lo_k - act_sk)/act_min_k)^2 + (relu(act_sk - a_hi_k)/act_max_k)^2
                     + (relu(f~_sk - f_hi)/silent_max)^2 ],
    a_lo = act_min (1 + act_margin),  a_hi = act_max (1 - act_margin),  f_hi = silent_max (1 - silent_margin)

with a smooth silent fraction f~ (sigmoid of the distance of a soft max over directions to
``silent_rate``). The tuning loss is

    L = relu(os_rel~ + m)^2 + w_ds relu(m - ds_rel~)^2 + c_con P + c_reg |theta - theta_0|^2

(soft-argmax relative indices ~, margin m), differentiated end to end through the simulation with
its learning rule on (Slide_BCM in the debug configuration; the low-rank weight carry keeps the
backward pass O(N) per step) and two-level checkpointing of the 25-step blocks.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from ..core.config import Config, option
from ..core.errors import ConfigError, check_scalar
from ..core.random import check_key
from ..core.results import Result, StopReason, history_frame
from ..core.training import fit
from . import metrics as M
from .config import TYPES, L5Config
from .engine import _run
from .model import L5Params, make_spec, replace_params
from .network import L5Network, build_network, type_index
from .objective import soft_relative_indices
from .tuning import TuneParams, _frozen_spec, _params_template, check_tune_args

__all__ = [
    "Constraints",
    "constraint_terms",
    "L5ConstrainedResult",
    "make_objective",
    "tune_constrained",
    "tpe_constrained",
    "validate_tuned",
    "plot_validation",
]


@dataclasses.dataclass(frozen=True)
class Constraints(Config):
    """Bounds on each type's activity and silent-cell fraction (order CS, CC, PV, SST).

    A frozen :class:`spikejax.core.Config`, validated at construction.

    Attributes
    ----------
    act_min : 4 floats
        Lowest allowed mean activity per type (dimensionless rate).
    act_max : 4 floats or None
        Highest allowed mean activity per type (None: no upper bound).
    silent_max : float
        Highest allowed fraction of silent cells in any type.
    silent_rate : float
        A cell is silent when its mean rate is below this for every direction.
    act_margin, silent_margin : float
        Relative safety margins the penalties aim at inside the bounds.
    temperature : float
        Width of the smooth silent indicator, relative to ``silent_rate``.
    """

    act_min: tuple[float, ...] = option((0.1, 0.1, 0.1, 0.1), ge=0, help="lowest mean activity per type")
    act_max: tuple[float, ...] | None = option(None, help="highest mean activity per type (None: unbounded)")
    silent_max: float = option(0.2, gt=0, le=1, help="highest fraction of silent cells per type")
    silent_rate: float = option(0.05, gt=0, help="a cell is silent below this rate in every direction")
    act_margin: float = option(0.5, ge=0, lt=10, help="relative safety margin of the activity bounds")
    silent_margin: float = option(0.5, ge=0, lt=1, help="relative safety margin of the silent fraction")
    temperature: float = option(0.2, gt=0, help="width of the smooth silent indicator (relative)")

    def validate(self) -> None:
        lo = np.asarray(self.act_min, dtype=float)
        if lo.shape != (4,):
            raise self.error("act_min", f"must be 4 finite values >= 0 (one per type {TYPES}), got {self.act_min!r}")
        if self.act_max is not None:
            hi = np.asarray(self.act_max, dtype=float)
            if hi.shape != (4,) or np.any(hi <= lo):
                raise self.error("act_max", f"must be 4 finite values > act_min, got {self.act_max!r}")


def _type_onehot(N, dtype):
    tid = type_index(N)
    oh = np.eye(4)[tid]
    return jnp.asarray(oh / oh.sum(0), dtype)  # (N, 4), columns average over a type


def constraint_terms(rates, N, eval_blocks: int, cons: Constraints) -> dict:
    """Activity and silent-cell terms of the constraints (differentiable in ``rates``).

    Parameters
    ----------
    rates : (S, D, n_blocks, N)
        Block-mean rates.

    Returns
    -------
    dict with ``act`` (S, 4) mean activity per network and type, ``silent`` (S, 4) exact silent
    fraction, ``silent_soft`` (S, 4) its smooth version, ``penalty`` (scalar P above) and its
    parts ``pen_act_lo``, ``pen_act_hi``, ``pen_silent``.
    """
    dtype = rates.dtype
    rbar = jnp.mean(rates[..., -eval_blocks:, :], axis=-2)  # (S, D, N)
    oh = _type_onehot(N, dtype)
    act = jnp.mean(rbar, axis=1) @ oh  # (S, 4)
    c = jnp.asarray(cons.silent_rate, dtype)
    kappa = 10.0
    rmax_soft = (c / kappa) * jax.nn.logsumexp(kappa * rbar / c, axis=1)  # (S, N) >= max_d rbar
    soft = jax.nn.sigmoid((c - rmax_soft) / (cons.temperature * c))
    silent_soft = soft @ oh
    silent = (jnp.max(rbar, axis=1) < c).astype(dtype) @ oh
    lo = jnp.asarray(cons.act_min, dtype)
    lo_t = lo * (1.0 + cons.act_margin)
    pen_lo = jnp.mean((jax.nn.relu(lo_t - act) / jnp.maximum(lo, 1e-6)) ** 2)
    if cons.act_max is not None:
        hi = jnp.asarray(cons.act_max, dtype)
        pen_hi = jnp.mean((jax.nn.relu(act - hi * (1.0 - min(cons.act_margin, 0.5))) / hi) ** 2)
    else:
        pen_hi = jnp.zeros((), dtype)
    f_hi = cons.silent_max * (1.0 - cons.silent_margin)
    pen_sil = jnp.mean((jax.nn.relu(silent_soft - f_hi) / cons.silent_max) ** 2)
    return {"act": act, "silent": silent, "silent_soft": silent_soft, "penalty": pen_lo + pen_hi + pen_sil,
            "pen_act_lo": pen_lo, "pen_act_hi": pen_hi, "pen_silent": pen_sil}


def make_objective(config: L5Config, spec, p0: L5Params, cons: Constraints, *, margin: float = 0.3,
                   soft_beta: float = 20.0, c_con: float = 10.0, c_reg: float = 1e-3, w_ds: float = 1.0):
    """``objective(tp, net) -> (loss, aux)`` of the module docstring (pure; jit or grad it)."""
    cfg = config
    eval_blocks = cfg.eval_steps // cfg.block
    tp0 = TuneParams.from_params(p0)

    def objective(tp: TuneParams, net: L5Network):
        p = tp.apply(p0, spec.dt)
        out = _run(p, net, spec, jit=False)
        os_rel, ds_rel, _ = soft_relative_indices(out.rates, cfg.N, eval_blocks, soft_beta)
        ct = constraint_terms(out.rates, cfg.N, eval_blocks, cons)
        sel = jax.nn.relu(os_rel + margin) ** 2 + w_ds * jax.nn.relu(margin - ds_rel) ** 2
        reg = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree_util.tree_leaves(tp), jax.tree_util.tree_leaves(tp0)))
        loss = sel + c_con * ct["penalty"] + c_reg * reg
        aux = {"sel": sel, "penalty": ct["penalty"], "os_rel_soft": os_rel, "ds_rel_soft": ds_rel,
               "act": jnp.mean(ct["act"], axis=0), "silent": jnp.max(ct["silent"], axis=0)}
        return loss, aux

    return objective


class L5ConstrainedResult(Result):
    """Outcome of :func:`tune_constrained` or :func:`tpe_constrained`.

    Attributes
    ----------
    model : L5Params
        The parameters with the lowest objective seen (also :attr:`params`).
    history : DataFrame
        One row per simulation: ``iteration``, ``loss``, ``sel``, ``penalty``, ``os_rel_soft``,
        ``ds_rel_soft``, ``act[k]`` and ``silent[k]`` per type k, ``time_s`` since the start.
    stop_reason, seconds
        As every :class:`spikejax.core.Result` (``seconds``: wall time, compile included).
    best_loss : float
    n_simulations : int
        Objective evaluations (a gradient step counts one, with its backward pass).
    method : str
        ``gradient`` or ``tpe``.
    config : L5Config
    """

    best_loss: float
    n_simulations: int
    method: str
    config: L5Config

    @property
    def params(self) -> L5Params:
        """The best parameters (the old name of :attr:`model`)."""
        return self.model

    @property
    def wall_s(self) -> float:
        """The old name of :attr:`seconds`."""
        return self.seconds

    @classmethod
    def _template(cls, field: str, header):
        if field == "model":
            return _params_template(header["config"])
        return super()._template(field, header)

    def summary(self) -> dict:
        p = self.model
        return {"method": self.method, "best_loss": self.best_loss, "n_simulations": self.n_simulations,
                "seconds": round(self.seconds, 1), "amplitude": np.asarray(p.amplitude).round(4).tolist(),
                "tau": np.asarray(p.tau).round(5).tolist(), "w_gain": np.asarray(p.w_gain).round(4).tolist()}


def _frozen_mask(tp0, train):
    return _frozen_spec(tp0, train)


def _record(hist, loss, aux, t0):
    hist["loss"].append(float(loss))
    for k in ("sel", "penalty", "os_rel_soft", "ds_rel_soft"):
        hist[k].append(float(aux[k]))
    hist["act"].append(np.asarray(aux["act"]).tolist())
    hist["silent"].append(np.asarray(aux["silent"]).tolist())
    hist["time_s"].append(time.perf_counter() - t0)


def _new_history():
    return {k: [] for k in ("loss", "sel", "penalty", "os_rel_soft", "ds_rel_soft", "act", "silent", "time_s")}


def _history_table(hist) -> Any:
    n = len(hist["loss"])
    cols = {"iteration": np.arange(n)}
    for k, v in hist.items():
        cols[k] = np.asarray(v, dtype=float).reshape((n, 4) if k in ("act", "silent") else (n,))
    return history_frame(cols, index="iteration")


def _result(state_params, best, hist, t0, method, config, stop_reason) -> L5ConstrainedResult:
    return L5ConstrainedResult(model=state_params, history=_history_table(hist), stop_reason=stop_reason,
                               seconds=time.perf_counter() - t0, best_loss=float(best),
                               n_simulations=len(hist["loss"]), method=method, config=config)


def tune_constrained(
    config: L5Config,
    *,
    key: jax.Array,
    constraints: Constraints = Constraints(),
    n_epochs: int = 40,
    time_budget: float | None = None,
    learning_rate: float = 0.05,
    margin: float = 0.3,
    soft_beta: float = 20.0,
    c_con: float = 10.0,
    c_reg: float = 1e-3,
    w_ds: float = 1.0,
    train: tuple[str, ...] = ("amplitude", "tau", "w_gain"),
    net: L5Network | None = None,
    params: L5Params | None = None,
    checkpoint: bool = True,
    verbose: bool = False,
) -> L5ConstrainedResult:
    """Adam (with global-norm clipping at 1) on the constrained loss, BPTT through the whole run.

    Parameters
    ----------
    config
        Simulated configuration, learning rule included (its ``sim_number`` networks are the
        training networks, sampled from ``key`` unless ``net`` is given).
    constraints
        Bounds on activity and silent fraction (:class:`Constraints`).
    n_epochs, time_budget
        Stop after ``n_epochs`` optimiser steps (full batch: one per epoch) or when ``time_budget`` seconds (wall, compile
        included) have passed, whichever comes first.
    margin, soft_beta, c_con, c_reg, w_ds
        Margin of the soft relative indices, soft-argmax sharpness, penalty and L2 weights, and
        the weight of the ds_rel term relative to the os_rel term.
    checkpoint
        Checkpoint the blocks (two levels) so 2500-step runs fit in memory.
    """
    check_tune_args(config, n_epochs=n_epochs, train=train, learning_rate=learning_rate, soft_beta=soft_beta,
                    c_con=c_con, c_reg=c_reg, margin=margin)
    if time_budget is not None:
        check_scalar(time_budget, "time_budget", low=0.0, low_inclusive=False)
    cfg = config
    t0 = time.perf_counter()
    key = check_key(key)
    net = build_network(cfg, key=key) if net is None else net
    p0 = L5Params.from_config(cfg) if params is None else params
    spec = make_spec(cfg, record_weights=False, remat=checkpoint, capacity=cfg.n_steps + 1)
    objective = make_objective(cfg, spec, p0, constraints, margin=margin, soft_beta=soft_beta, c_con=c_con, c_reg=c_reg,
                               w_ds=w_ds)
    tp0 = TuneParams.from_params(p0)
    hist = _new_history()
    track = {"stop": StopReason.COMPLETED}

    def loss_fn(tp, batch, k):
        del batch, k
        return objective(tp, net)

    def on_step(step, model, logs):
        loss = logs["loss"]
        _record(hist, loss, logs, t0)
        if verbose:
            print(f"step {step - 1}: loss {loss:.4f} sel {logs['sel']:.4f} pen {logs['penalty']:.4f} "
                  f"os~ {logs['os_rel_soft']:+.3f} ds~ {logs['ds_rel_soft']:+.3f} "
                  f"act {np.round(np.asarray(logs['act']), 3).tolist()} ({hist['time_s'][-1]:.0f} s)", flush=True)
        if not np.isfinite(loss):
            track["stop"] = StopReason.DIVERGED
            return True
        if time_budget is not None and time.perf_counter() - t0 >= time_budget:
            track["stop"] = StopReason.CALLBACK
            return True
        return False

    best, best_tp = np.inf, tp0
    if n_epochs > 0:
        # core's training loop: Adam with global-norm clipping at 1, frozen groups by filter spec, one
        # optimiser step per host call (the time budget is checked between steps), and core's
        # restore-best: the parameters at which the lowest training loss was measured
        res = fit(tp0, loss_fn, None, optimizer=optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate)),
                  key=key, n_steps=n_epochs, has_aux=True, filter_spec=_frozen_mask(tp0, train), steps_per_call=1,
                  nan_guard=False, callback=on_step, progress=False, restore_best=True, desc="l5 constrained tune")
        losses = np.asarray(hist["loss"], dtype=float)
        if res.best_step is not None and np.isfinite(losses).any():
            best, best_tp = float(np.nanmin(np.where(np.isfinite(losses), losses, np.nan))), res.model
    return _result(best_tp.apply(p0, spec.dt), best, hist, t0, "gradient", cfg, track["stop"])


#: TPE box of :func:`tpe_constrained`: amplitudes U(0, 20) (the original's), tau per type and the
#: 16 type-level gains log-uniform.
TPE_BOX = {"amplitude": (0.0, 20.0), "tau": (0.05, 0.4), "w_gain": (0.25, 4.0)}


def tpe_constrained(
    config: L5Config,
    *,
    key: jax.Array,
    constraints: Constraints = Constraints(),
    time_budget: float = 300.0,
    n_trials: int | None = None,
    margin: float = 0.3,
    soft_beta: float = 20.0,
    c_con: float = 10.0,
    c_reg: float = 1e-3,
    w_ds: float = 1.0,
    train: tuple[str, ...] = ("amplitude", "tau", "w_gain"),
    net: L5Network | None = None,
    params: L5Params | None = None,
) -> L5ConstrainedResult:
    """Optuna TPE on the same objective as :func:`tune_constrained` (forward runs only), for
    ``time_budget`` seconds (wall, compile included) or ``n_trials``. ``key`` samples the networks
    (unless ``net`` is given) and seeds the TPE sampler. Needs the ``l5`` extra."""
    from .search import _optuna, _sampler_seed

    optuna = _optuna()
    cfg = config
    t0 = time.perf_counter()
    key = check_key(key)
    net = build_network(cfg, key=key) if net is None else net
    p0 = L5Params.from_config(cfg) if params is None else params
    spec = make_spec(cfg, record_weights=False, capacity=cfg.n_steps + 1)
    objective = eqx.filter_jit(make_objective(cfg, spec, p0, constraints, margin=margin, soft_beta=soft_beta,
                                              c_con=c_con, c_reg=c_reg, w_ds=w_ds))
    tp0 = TuneParams.from_params(p0)
    _frozen_mask(tp0, train)
    hist = _new_history()
    state = {"best": np.inf, "tp": tp0}

    def suggest(trial):
        la, lt, lg = tp0.log_amplitude, tp0.log_tau, tp0.log_gain
        if "amplitude" in train:
            la = jnp.log(jnp.maximum(jnp.asarray([trial.suggest_float(f"amp_{t}", *TPE_BOX["amplitude"]) for t in TYPES],
                                                 la.dtype), 1e-3))
        if "tau" in train:
            lt = jnp.log(jnp.asarray([trial.suggest_float(f"tau_{t}", *TPE_BOX["tau"], log=True) for t in TYPES], lt.dtype))
        if "w_gain" in train:
            g = [[trial.suggest_float(f"gain_{a}_{b}", *TPE_BOX["w_gain"], log=True) for b in TYPES] for a in TYPES]
            lg = jnp.log(jnp.asarray(g, lg.dtype))
        return TuneParams(la, lt, lg)

    def obj(trial):
        tp = suggest(trial)
        loss, aux = objective(tp, net)
        loss = float(loss)
        _record(hist, loss, aux, t0)
        if np.isfinite(loss) and loss < state["best"]:
            state["best"], state["tp"] = loss, tp
        return loss if np.isfinite(loss) else 1e6

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=_sampler_seed(key)))
    # the initial parameters as the first trial (the gradient run starts there too)
    first = {}
    if "amplitude" in train:
        first.update({f"amp_{t}": float(a) for t, a in zip(TYPES, np.asarray(p0.amplitude))})
    if "tau" in train:
        first.update({f"tau_{t}": float(np.clip(a, *TPE_BOX["tau"])) for t, a in zip(TYPES, np.asarray(p0.tau))})
    if "w_gain" in train:
        first.update({f"gain_{a}_{b}": float(np.clip(np.asarray(p0.w_gain)[i, j], *TPE_BOX["w_gain"]))
                      for i, a in enumerate(TYPES) for j, b in enumerate(TYPES)})
    study.enqueue_trial(first)
    remaining = None if time_budget is None else max(0.0, time_budget - (time.perf_counter() - t0))
    study.optimize(obj, n_trials=n_trials, timeout=remaining)
    stop = StopReason.CALLBACK if n_trials is None or len(hist["loss"]) < n_trials else StopReason.COMPLETED
    return _result(state["tp"].apply(p0, spec.dt), state["best"], hist, t0, "tpe", cfg, stop)


def validate_tuned(config: L5Config, params: L5Params, *, key: jax.Array, n_experiments: int = 4, group: int = 5,
                   constraints: Constraints = Constraints()) -> dict:
    """The original's protocol on fresh networks: ``n_experiments`` experiments of ``group``
    networks x 4 directions, exact metrics.

    Per experiment, the original's statistics over its networks (``Mean_of_X``; ``Std_mean_X``
    across networks; ``Mean_std_X`` within networks) and X_rel on the means over its networks;
    then the mean and s.d. (ddof 1) over experiments. Also each type's mean activity and silent
    fraction (worst network) against ``constraints``.

    Returns a dict with ``table`` (DataFrame: rows = types, columns = statistics),
    ``relative`` (os_rel, ds_rel, os_p_rel per experiment, mean, sd, z = mean/sd),
    ``constraints_met`` and ``signs_met`` (os_rel < 0, ds_rel > 0, each >= 2 s.d. from 0).
    """
    S = n_experiments * group
    c = config.replace(sim_number=S)
    net = build_network(c, key=check_key(key))
    spec = make_spec(c, record_weights=False)
    p = replace_params(L5Params.from_config(c), amplitude=params.amplitude, tau=params.tau, w_gain=params.w_gain)
    out = _run(p, net, spec)
    eb = c.eval_steps // c.block
    st = M.summarize(out.rates, c.N, eval_blocks=eb)
    ct = constraint_terms(out.rates, c.N, eb, constraints)
    cnt = M.counters(out.rates, c.N, variant=c.variant, eval_blocks=eb)
    per_exp = {}
    rel = {"os_rel": [], "ds_rel": [], "os_p_rel": []}
    for e in range(n_experiments):
        sl = slice(e * group, (e + 1) * group)
        agg = M.aggregate({k: v[sl] for k, v in st.items()})
        for k in rel:
            rel[k].append(float(agg[k]))
        for k in ("act", "OS", "DS", "OS_p"):
            for suf in ("mean", "std_mean", "mean_std"):
                per_exp.setdefault(f"{k}_{suf}", []).append(np.asarray(agg[f"{k}_{suf}"]))
    act = np.asarray(ct["act"])
    silent = np.asarray(ct["silent"])
    rows = {}
    for k in ("act", "OS", "DS", "OS_p"):
        m = np.stack(per_exp[f"{k}_mean"])
        rows[f"{k}_mean"] = m.mean(0)
        rows[f"{k}_sd_over_experiments"] = m.std(0, ddof=1) if n_experiments > 1 else np.full(4, np.nan)
        rows[f"{k}_Std_mean"] = np.stack(per_exp[f"{k}_std_mean"]).mean(0)
        rows[f"{k}_Mean_std"] = np.stack(per_exp[f"{k}_mean_std"]).mean(0)
    rows["act_min_over_networks"] = act.min(0)
    rows["silent_fraction_mean"] = silent.mean(0)
    rows["silent_fraction_max_over_networks"] = silent.max(0)
    table = pd.DataFrame(rows, index=list(TYPES))
    relative = {}
    for k, v in rel.items():
        v = np.asarray(v)
        sd = float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
        relative[k] = {"experiments": v.tolist(), "mean": float(v.mean()), "sd": sd,
                       "z": float(v.mean() / sd) if sd > 0 else float("nan")}
    lo = np.asarray(constraints.act_min, float)
    met = bool(np.all(table["act_mean"].to_numpy() >= lo) and np.all(table["silent_fraction_mean"].to_numpy()
                                                                        <= constraints.silent_max))
    if constraints.act_max is not None:
        met = met and bool(np.all(table["act_mean"].to_numpy() <= np.asarray(constraints.act_max, float)))
    signs = bool(relative["os_rel"]["z"] <= -2 and relative["ds_rel"]["z"] >= 2)
    return {"table": table, "relative": relative, "constraints_met": met, "signs_met": signs,
            "counters": {k: np.asarray(v).tolist() for k, v in cnt.items()}, "n_networks": S}


def plot_validation(val: dict, title: str = "", original_png: str | Path | None = None, *, ax: Any = None):
    """Bars per type (mean over experiments, error bar = the original's within-network s.d.
    ``Mean_std``; black ticks = s.d. over experiments) of activity, OS, DS, OS_p, beside the
    original's figure when ``original_png`` is given.

    ``ax``: 4 Axes (5 with ``original_png``) or None (a new figure). Returns the Axes (an array).
    """
    from .plots import COLORS

    t = val["table"]
    show_png = original_png is not None and Path(original_png).exists()
    if ax is None:
        import matplotlib.pyplot as plt

        ncol = 3 if show_png else 2
        fig = plt.figure(figsize=(5 * ncol, 8))
        axes = [fig.add_subplot(2, ncol, (i // 2) * ncol + (i % 2) + 1) for i in range(4)]
        if show_png:
            axes.append(fig.add_subplot(1, ncol, ncol))
        axes = np.asarray(axes, dtype=object)
    else:
        axes = np.ravel(np.asarray(ax, dtype=object))
        if axes.size != 4 + show_png:
            raise ValueError(f"plot_validation draws {4 + show_png} panels: pass that many Axes, got {axes.size}")
    panels = [("act", "Mean activity"), ("OS", "Orientational selectivity (OS)"),
              ("DS", "Directional selectivity (DS)"), ("OS_p", "Orientational selectivity_p (OS_p)")]
    for a, (k, name) in zip(axes, panels):
        m = t[f"{k}_mean"].to_numpy()
        a.bar(TYPES, m, yerr=t[f"{k}_Mean_std"].to_numpy(), color=COLORS, capsize=6)
        a.errorbar(TYPES, m, yerr=t[f"{k}_sd_over_experiments"].to_numpy(), fmt="o-", color="k", capsize=3, lw=1)
        a.set_title(name)
        a.grid(axis="y", alpha=0.5)
    if show_png:
        import matplotlib.image as mpimg

        axes[4].imshow(mpimg.imread(str(original_png)))
        axes[4].set_axis_off()
        axes[4].set_title("original (repository notebook, 2022-12-15)")
    r = val["relative"]
    fig = axes[0].figure
    fig.suptitle((title + "\n" if title else "") + f"{val['n_networks']} fresh networks: os_rel {r['os_rel']['mean']:+.3f} "
                 f"(sd {r['os_rel']['sd']:.3f}), ds_rel {r['ds_rel']['mean']:+.3f} (sd {r['ds_rel']['sd']:.3f}) over experiments")
    if ax is None:
        fig.tight_layout()
    return axes
