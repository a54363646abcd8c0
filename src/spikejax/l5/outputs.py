"""The original's output tables (``weight_df``, ``selectivity_df``, ``summary_info``, ``meta_data``),
its HEAD loss (the TPE score of :func:`~spikejax.l5.tpe_search`; the differentiable tuning
objective is :func:`spikejax.l5.loss`), and :func:`run` which does it all for one config.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from ..core.io import atomic_open, save_json
from ..core.random import check_key
from . import metrics as M
from .config import TYPES, L5Config
from .engine import simulate
from .model import L5Model, L5Params, build_model
from ..core.precision import cpu_tuned_jit
from .network import FAST_COMPILE, L5Network, type_index
from .params import w_compare
from .trajectory import L5Trajectory

__all__ = [
    "PAIR_COLUMNS",
    "SELECTIVITY_ROWS",
    "L5RunResult",
    "weight_df",
    "selectivity_df",
    "summary_info",
    "meta_data",
    "head_loss",
    "run",
    "evaluate",
]

PAIR_COLUMNS = [f"{post}-{pre}" for post in TYPES for pre in TYPES]  # "post-pre", W[post, pre]
SELECTIVITY_ROWS = [
    "Mean_act", "Std_of_mean", "Mean_std",
    "Mean_of_OS", "Std_mean_OS", "Mean_std_OS",
    "Mean_of_DS", "Std_mean_DS", "Mean_std_DS",
    "Mean_of_OS_p", "Std_mean_OS_p", "Mean_std_OS_p",
]


def _block_stats(W, N):
    """Per-type (post, pre) block mean and within-block s.d. of (..., N, N) matrices -> (..., 4, 4)."""
    tid = type_index(N)
    oh = np.eye(4)[tid]
    cnt = oh.sum(0)
    W = np.asarray(W, dtype=float)
    mean = (oh.T @ W @ oh) / np.outer(cnt, cnt)
    sq = (oh.T @ (W * W) @ oh) / np.outer(cnt, cnt)
    return mean, np.sqrt(np.maximum(sq - mean**2, 0.0))


def weight_df(out: L5Trajectory, N) -> pd.DataFrame:
    """9 rows x 16 "post-pre" columns: final weight (mean over the last 25 blocks), its change from
    the initial W, and the initial W; each as the mean over sims x directions of the per-type block
    mean (``W_mean``), the across-run s.d. (``W_mean_std``) and the mean within-block s.d. (``W_std_mean``)."""
    S, D = out.rates.shape[:2]
    W_fin = np.asarray(out.W_final).reshape((S * D,) + out.W_final.shape[2:])
    W_ini = np.repeat(np.asarray(out.W_init), D, axis=0)
    rows = {}
    for label, mats in (("", W_fin), ("d", W_fin - W_ini), ("init_", W_ini)):
        mean, std = _block_stats(mats, N)
        rows[f"W_{label}mean"] = mean.mean(0).reshape(-1)
        rows[f"W_{label}mean_std"] = mean.std(0).reshape(-1)
        rows[f"W_{label}std_mean"] = std.mean(0).reshape(-1)
    return pd.DataFrame(rows, index=PAIR_COLUMNS).T


def _sel_table(agg) -> pd.DataFrame:
    data = []
    for k in ("act", "OS", "DS", "OS_p"):
        data += [np.asarray(agg[f"{k}_mean"]), np.asarray(agg[f"{k}_std_mean"]), np.asarray(agg[f"{k}_mean_std"])]
    return pd.DataFrame(np.stack(data), index=SELECTIVITY_ROWS, columns=list(TYPES))


def selectivity_df(after, before) -> pd.DataFrame:
    """12 rows x 4 types for the 'after' and 'before' (learning) windows, index (condition, row)."""
    return pd.concat({"after": _sel_table(after), "before": _sel_table(before)}, names=["condition", "row"])


def _none_if_nan(x):
    from ..core.io import short_float

    return short_float(x)  # float32 values as their shortest decimal, NaN/inf as None


def summary_info(agg, cnt) -> dict[str, Any]:
    """Relative indices (HEAD keys ``Real_OS``, ``Real_DS``, ``Real_OS_paper``; None when the CC
    means are <= 1e-5) and the counters."""
    return {
        "Real_OS": _none_if_nan(agg["os_rel"]),
        "Real_DS": _none_if_nan(agg["ds_rel"]),
        "Real_OS_paper": _none_if_nan(agg["os_p_rel"]),
        "nan_counter": int(cnt["nan_counter"]),
        "not_eq_counter": int(cnt["not_eq_counter"]),
        "activity_off": [int(x) for x in np.asarray(cnt["activity_off"])],
    }


def meta_data(config: L5Config, params: L5Params | None = None) -> pd.DataFrame:
    """Input amplitudes, tau, tau_learn, tau_threshold, rule, neurons mode and phase key (one row)."""
    cfg = config
    amp = np.asarray(cfg.amplitude if params is None else params.amplitude, dtype=float)
    tau = np.asarray(cfg.tau if params is None else params.tau, dtype=float).reshape(-1)
    row = {f"{t.lower()}_amplitude": float(a) for t, a in zip(TYPES, amp)}
    row.update(
        tau=float(tau[0]) if np.all(tau == tau[0]) else tau.tolist(),
        tau_learn=float(cfg.tau_learn if params is None else params.tau_learn),
        tau_threshold=float(cfg.tau_threshold if params is None else params.tau_threshold),
        learning_rule=cfg.learning_rule,
        variant=cfg.variant,
        neurons=cfg.neurons,
        phase_key=cfg.phase_key,
    )
    return pd.DataFrame([row])


def head_loss(wdf: pd.DataFrame, sdf: pd.DataFrame, target=None) -> float:
    """The original HEAD loss  | 10 (RMSE_w + dOS) - dDS + 0.1 (S_between + S_within) |, on the output tables.

    The score the original's TPE search (:func:`~spikejax.l5.tpe_search`) minimises; computed on
    DataFrames, so not differentiable (the gradient tuning's objective is :func:`spikejax.l5.loss`).

    RMSE_w: over the 16 pairs of the final block-mean weight against ``w_compare`` (transposed to
    post x pre); dOS = |sum_types (OS_after - OS_before)|; dDS = sum_types (DS_after - DS_before);
    S_between: type-averaged across-simulation s.d. of OS, DS, OS_p; S_within: type-averaged
    within-simulation s.d. of OS, DS, OS_p *and activity* (rows whose name starts with Mean_std).
    """
    target = w_compare() if target is None else np.asarray(target)
    W = wdf.loc["W_mean"].to_numpy().reshape(4, 4)  # post x pre
    rmse = float(np.sqrt(np.mean((W - target.T) ** 2)))
    after, before = sdf.loc["after"], sdf.loc["before"]
    d_os = abs(float((after.loc["Mean_of_OS"] - before.loc["Mean_of_OS"]).sum()))
    d_ds = float((after.loc["Mean_of_DS"] - before.loc["Mean_of_DS"]).sum())
    s_between = float(sum(after.loc[f"Std_mean_{k}"].mean() for k in ("OS", "DS", "OS_p")))
    s_within = float(sum(after.loc[r].mean() for r in after.index if r.startswith("Mean_std")))
    return abs(10 * (rmse + d_os) - d_ds + 0.1 * (s_between + s_within))


@functools.partial(cpu_tuned_jit, static_argnums=(1, 2, 3, 4, 5, 6), cpu_compiler_options=FAST_COMPILE)
def _evaluate_arrays(rates, N, eval_blocks, win_start, win_stop, variant, soft_beta):
    # one compiled program for all statistics (op-by-op, their first call compiled dozens of
    # small programs: ~5 s)
    win = slice(win_start, win_stop)
    st_after = M.summarize(rates, N, eval_blocks=eval_blocks, soft_beta=soft_beta)
    st_before = M.summarize(rates, N, eval_blocks=eval_blocks, window=win, soft_beta=soft_beta)
    cnt = M.counters(rates, N, variant=variant, eval_blocks=eval_blocks)
    return M.aggregate(st_after), M.aggregate(st_before), cnt, st_after


def evaluate(out: L5Trajectory, config: L5Config, *, soft_beta: float | None = None):
    """Selectivity statistics after and before learning plus counters: ``(after, before, counters, stats)``."""
    cfg = config
    eval_blocks = cfg.eval_steps // cfg.block
    tau0 = float(np.asarray(cfg.tau, dtype=float).reshape(-1)[0])
    win = M.before_blocks(cfg.number_steps_before_learning, cfg.dt, tau0, cfg.block, eval_blocks, cfg.variant)
    M._check4(out.rates[..., 0, :])
    return _evaluate_arrays(out.rates, tuple(int(n) for n in cfg.N), int(eval_blocks), win.start, win.stop,
                            cfg.variant, None if soft_beta is None else float(soft_beta))


@dataclass
class L5RunResult:
    """Everything :func:`run` produces (the original's four outputs plus the model and its trajectory)."""

    config: L5Config
    model: L5Model
    trajectory: L5Trajectory
    weight_df: pd.DataFrame
    selectivity_df: pd.DataFrame
    summary_info: dict
    meta_data: pd.DataFrame
    head_loss: float
    stats: dict

    def save(self, out_dir: str | Path) -> Path:
        """Write the tables (CSV/JSON, atomically) into ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, df in (("weight_df", self.weight_df), ("selectivity_df", self.selectivity_df), ("meta_data", self.meta_data)):
            with atomic_open(out_dir / f"{name}.csv") as fh:
                df.to_csv(fh)
        save_json(out_dir / "summary_info.json", {**self.summary_info, "loss": self.head_loss})
        save_json(out_dir / "config.json", self.config.to_dict())
        return out_dir


def run(config: L5Config, *, key: jax.Array | None = None, params: L5Params | None = None,
        net: L5Network | None = None) -> L5RunResult:
    """Build the networks (from ``key``; required unless ``net`` is given), simulate every direction and
    compute the original's outputs."""
    cfg = config
    if net is None:
        check_key(key)
    model = build_model(cfg, key=key, net=net, params=params, record_weights=True)
    out = simulate(model)
    after, before, cnt, st = evaluate(out, cfg)
    wdf = weight_df(out, cfg.N)
    sdf = selectivity_df(after, before)
    info = summary_info(after, cnt)
    return L5RunResult(cfg, model, out, wdf, sdf, info, meta_data(cfg, model.params), head_loss(wdf, sdf),
                       {k: np.asarray(v) for k, v in after.items()})
