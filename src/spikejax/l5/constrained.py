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

import time
from dataclasses import dataclass, field
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from ..core.errors import ConfigError
from ..core.training import fit
from . import metrics as M
from .config import TYPES, L5Config
from .network import Network, build_network, type_index
from .simulate import L5Params, make_spec, replace_params, simulate
from .tune import TuneParams, soft_relative_indices

__all__ = [
    "Constraints",
    "constraint_terms",
    "ConstrainedResult",
    "make_objective",
    "tune_constrained",
    "tpe_constrained",
    "validate_tuned",
    "plot_validation",
]


@dataclass(frozen=True)
class Constraints:
    """Bounds on each type's activity and silent-cell fraction (order CS, CC, PV, SST).

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

    act_min: tuple = (0.1, 0.1, 0.1, 0.1)
    act_max: tuple | None = None
    silent_max: float = 0.2
    silent_rate: float = 0.05
    act_margin: float = 0.5
    silent_margin: float = 0.5
    temperature: float = 0.2

    def validate(self) -> Constraints:
        lo = np.asarray(self.act_min, dtype=float)
        if lo.shape != (4,) or not np.all(np.isfinite(lo)) or np.any(lo < 0):
            raise ConfigError(f"constraints.act_min must be 4 finite values >= 0 (one per type {TYPES}), got {self.act_min!r}")
        if self.act_max is not None:
            hi = np.asarray(self.act_max, dtype=float)
            if hi.shape != (4,) or not np.all(np.isfinite(hi)) or np.any(hi <= lo):
                raise ConfigError(f"constraints.act_max must be 4 finite values > act_min, got {self.act_max!r}")
        if not 0.0 < float(self.silent_max) <= 1.0:
            raise ConfigError(f"constraints.silent_max must be in (0, 1], got {self.silent_max!r}")
        for name in ("silent_rate", "temperature"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"constraints.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("act_margin", "silent_margin"):
            if not 0.0 <= float(getattr(self, name)) < 1.0 + (name == "act_margin") * 9:
                raise ConfigError(f"constraints.{name} must be >= 0 (and < 1 for silent_margin), got {getattr(self, name)!r}")
        return self


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
    cons.validate()
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


def make_objective(cfg: L5Config, spec, p0: L5Params, cons: Constraints, *, margin: float = 0.3,
                   soft_beta: float = 20.0, c_con: float = 10.0, c_reg: float = 1e-3, w_ds: float = 1.0):
    """``objective(tp, net) -> (loss, aux)`` of the module docstring (pure; jit or grad it)."""
    eval_blocks = cfg.eval_steps // cfg.block
    tp0 = TuneParams.from_params(p0)

    def objective(tp: TuneParams, net: Network):
        p = tp.apply(p0)
        out = simulate(p, net, spec, jit=False)
        os_rel, ds_rel, _ = soft_relative_indices(out.rates, cfg.N, eval_blocks, soft_beta)
        ct = constraint_terms(out.rates, cfg.N, eval_blocks, cons)
        sel = jax.nn.relu(os_rel + margin) ** 2 + w_ds * jax.nn.relu(margin - ds_rel) ** 2
        reg = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree_util.tree_leaves(tp), jax.tree_util.tree_leaves(tp0)))
        loss = sel + c_con * ct["penalty"] + c_reg * reg
        aux = {"sel": sel, "penalty": ct["penalty"], "os_rel_soft": os_rel, "ds_rel_soft": ds_rel,
               "act": jnp.mean(ct["act"], axis=0), "silent": jnp.max(ct["silent"], axis=0)}
        return loss, aux

    return objective


@dataclass
class ConstrainedResult:
    """Outcome of :func:`tune_constrained` or :func:`tpe_constrained`.

    ``params``: the parameters with the lowest objective seen; ``history``: one entry per
    simulation (loss, soft indices, activity, wall time since the start); ``n_simulations``:
    objective evaluations (a gradient step counts one, with its backward pass); ``wall_s``.
    """

    params: L5Params
    best_loss: float
    history: dict = field(default_factory=dict)
    n_simulations: int = 0
    wall_s: float = 0.0
    method: str = ""
    config: L5Config | None = None

    def summary(self) -> dict:
        p = self.params
        return {"method": self.method, "best_loss": self.best_loss, "n_simulations": self.n_simulations,
                "wall_s": round(self.wall_s, 1), "amplitude": np.asarray(p.amplitude).round(4).tolist(),
                "tau": np.asarray(p.tau).round(5).tolist(), "w_gain": np.asarray(p.w_gain).round(4).tolist()}


def _frozen_mask(tp0, train):
    names = {"amplitude": "log_amplitude", "tau": "log_tau", "w_gain": "log_gain"}
    bad = [t for t in train if t not in names]
    if bad or not train:
        raise ConfigError(f"train must name some of 'amplitude', 'tau', 'w_gain'; got {train!r}")
    spec = jax.tree_util.tree_map(lambda _: True, tp0)
    for group, attr in names.items():
        if group not in train:
            spec = eqx.tree_at(lambda t, a=attr: getattr(t, a), spec, False)
    return spec


def _record(hist, loss, aux, t0):
    hist["loss"].append(float(loss))
    for k in ("sel", "penalty", "os_rel_soft", "ds_rel_soft"):
        hist[k].append(float(aux[k]))
    hist["act"].append(np.asarray(aux["act"]).tolist())
    hist["silent"].append(np.asarray(aux["silent"]).tolist())
    hist["wall_s"].append(time.perf_counter() - t0)


def _new_history():
    return {k: [] for k in ("loss", "sel", "penalty", "os_rel_soft", "ds_rel_soft", "act", "silent", "wall_s")}


def tune_constrained(
    cfg: L5Config,
    *,
    key: jax.Array,
    constraints: Constraints = Constraints(),
    n_steps: int = 40,
    time_budget: float | None = None,
    learning_rate: float = 0.05,
    margin: float = 0.3,
    soft_beta: float = 20.0,
    c_con: float = 10.0,
    c_reg: float = 1e-3,
    w_ds: float = 1.0,
    train: tuple[str, ...] = ("amplitude", "tau", "w_gain"),
    net: Network | None = None,
    params: L5Params | None = None,
    checkpoint: bool = True,
    verbose: bool = False,
) -> ConstrainedResult:
    """Adam (with global-norm clipping at 1) on the constrained loss, BPTT through the whole run.

    Parameters
    ----------
    cfg
        Simulated configuration, learning rule included (its ``sim_number`` networks are the
        training networks, sampled from ``key`` unless ``net`` is given).
    constraints
        Bounds on activity and silent fraction (:class:`Constraints`).
    n_steps, time_budget
        Stop after ``n_steps`` optimiser steps or when ``time_budget`` seconds (wall, compile
        included) have passed, whichever comes first.
    margin, soft_beta, c_con, c_reg, w_ds
        Margin of the soft relative indices, soft-argmax sharpness, penalty and L2 weights, and
        the weight of the ds_rel term relative to the os_rel term.
    checkpoint
        Checkpoint the blocks (two levels) so 2500-step runs fit in memory.
    """
    if n_steps < 0:
        raise ConfigError(f"n_steps must be >= 0, got {n_steps}")
    constraints.validate()
    cfg.validate()
    t0 = time.perf_counter()
    net = build_network(cfg, key=key) if net is None else net
    p0 = L5Params.from_config(cfg) if params is None else params
    spec = make_spec(cfg, record_weights=False, remat=checkpoint, capacity=cfg.steps + 1)
    objective = make_objective(cfg, spec, p0, constraints, margin=margin, soft_beta=soft_beta, c_con=c_con, c_reg=c_reg,
                               w_ds=w_ds)
    tp0 = TuneParams.from_params(p0)
    hist = _new_history()
    # the loss logged at step i is that of the parameters *before* update i: keep them to return the best
    track = {"best": np.inf, "best_tp": tp0, "prev": tp0}

    def loss_fn(tp, batch, k):
        del batch, k
        return objective(tp, net)

    def on_step(step, model, logs):
        loss = logs["loss"]
        _record(hist, loss, logs, t0)
        if verbose:
            print(f"step {step - 1}: loss {loss:.4f} sel {logs['sel']:.4f} pen {logs['penalty']:.4f} "
                  f"os~ {logs['os_rel_soft']:+.3f} ds~ {logs['ds_rel_soft']:+.3f} "
                  f"act {np.round(np.asarray(logs['act']), 3).tolist()} ({hist['wall_s'][-1]:.0f} s)", flush=True)
        if not np.isfinite(loss):
            return True
        if loss < track["best"]:
            track["best"], track["best_tp"] = loss, track["prev"]
        track["prev"] = model
        return time_budget is not None and time.perf_counter() - t0 >= time_budget

    if n_steps > 0:
        # core's training loop: Adam with global-norm clipping at 1, frozen groups by filter spec, one
        # optimiser step per host call (the time budget and the best-so-far are checked between steps)
        fit(tp0, loss_fn, None, optimizer=optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate)),
            key=key, n_steps=n_steps, has_aux=True, filter_spec=_frozen_mask(tp0, train), steps_per_call=1,
            nan_guard=False, callback=on_step, progress=False, desc="l5 constrained tune")
    best, best_tp = track["best"], track["best_tp"]
    return ConstrainedResult(params=best_tp.apply(p0), best_loss=float(best), history=hist,
                             n_simulations=len(hist["loss"]), wall_s=time.perf_counter() - t0, method="gradient", config=cfg)


#: TPE box of :func:`tpe_constrained`: amplitudes U(0, 20) (the original's), tau per type and the
#: 16 type-level gains log-uniform.
TPE_BOX = {"amplitude": (0.0, 20.0), "tau": (0.05, 0.4), "w_gain": (0.25, 4.0)}


def tpe_constrained(
    cfg: L5Config,
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
    net: Network | None = None,
    params: L5Params | None = None,
    seed: int = 0,
) -> ConstrainedResult:
    """Optuna TPE on the same objective as :func:`tune_constrained` (forward runs only), for
    ``time_budget`` seconds (wall, compile included) or ``n_trials``. Needs the ``l5`` extra."""
    from .search import _optuna

    optuna = _optuna()
    constraints.validate()
    cfg.validate()
    t0 = time.perf_counter()
    net = build_network(cfg, key=key) if net is None else net
    p0 = L5Params.from_config(cfg) if params is None else params
    spec = make_spec(cfg, record_weights=False, capacity=cfg.steps + 1)
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
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
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
    return ConstrainedResult(params=state["tp"].apply(p0), best_loss=float(state["best"]), history=hist,
                             n_simulations=len(hist["loss"]), wall_s=time.perf_counter() - t0, method="tpe", config=cfg)


def validate_tuned(cfg: L5Config, params: L5Params, *, key: jax.Array, n_experiments: int = 4, group: int = 5,
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
    constraints.validate()
    S = n_experiments * group
    c = cfg.replace(sim_number=S)
    net = build_network(c, key=key)
    spec = make_spec(c, record_weights=False)
    p = replace_params(L5Params.from_config(c), amplitude=params.amplitude, tau=params.tau, w_gain=params.w_gain)
    out = simulate(p, net, spec)
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


def plot_validation(val: dict, title: str = "", original_png: str | Path | None = None):
    """Bars per type (mean over experiments, error bar = the original's within-network s.d.
    ``Mean_std``; black ticks = s.d. over experiments) of activity, OS, DS, OS_p, beside the
    original's figure when ``original_png`` is given."""
    from .plots import COLORS, _plt

    plt = _plt()
    t = val["table"]
    ncol = 3 if original_png is not None else 2
    fig = plt.figure(figsize=(5 * ncol, 8))
    panels = [("act", "Mean activity"), ("OS", "Orientational selectivity (OS)"),
              ("DS", "Directional selectivity (DS)"), ("OS_p", "Orientational selectivity_p (OS_p)")]
    for i, (k, name) in enumerate(panels):
        ax = fig.add_subplot(2, ncol, (i // 2) * ncol + (i % 2) + 1)
        m = t[f"{k}_mean"].to_numpy()
        ax.bar(TYPES, m, yerr=t[f"{k}_Mean_std"].to_numpy(), color=COLORS, capsize=6)
        ax.errorbar(TYPES, m, yerr=t[f"{k}_sd_over_experiments"].to_numpy(), fmt="o-", color="k", capsize=3, lw=1)
        ax.set_title(name)
        ax.grid(axis="y", alpha=0.5)
    if original_png is not None and Path(original_png).exists():
        ax = fig.add_subplot(1, ncol, ncol)
        ax.imshow(plt.imread(str(original_png)))
        ax.set_axis_off()
        ax.set_title("original (repository notebook, 2022-12-15)")
    r = val["relative"]
    fig.suptitle((title + "\n" if title else "") + f"{val['n_networks']} fresh networks: os_rel {r['os_rel']['mean']:+.3f} "
                 f"(sd {r['os_rel']['sd']:.3f}), ds_rel {r['ds_rel']['mean']:+.3f} (sd {r['ds_rel']['sd']:.3f}) over experiments")
    fig.tight_layout()
    return fig
