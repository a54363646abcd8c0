"""The original's plots: selectivity bars per type, weights vs target, activity and weight traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.io import save_figure
from .config import TYPES
from .params import w_compare

__all__ = ["plot_selectivity", "plot_weights_vs_target", "plot_activity", "plot_weight_traces", "plot_all"]

COLORS = ["#7f7fff", "#ffb6ae", "#8fd9d2", "#dba3e6"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_selectivity(sdf, title: str = "", condition: str = "after"):
    """Bars (mean over simulations, error bar = mean within-simulation s.d.) of activity, OS, DS, OS_p."""
    plt = _plt()
    t = sdf.loc[condition]
    fig, axes = plt.subplots(2, 2, figsize=(9, 8))
    panels = [("Mean_act", "Mean_std", "Mean activity"), ("Mean_of_OS", "Mean_std_OS", "Orientational selectivity (OS)"),
              ("Mean_of_DS", "Mean_std_DS", "Directional selectivity (DS)"), ("Mean_of_OS_p", "Mean_std_OS_p", "Orientational selectivity_p (OS_p)")]
    for ax, (m, s, name) in zip(axes.ravel(), panels):
        ax.bar(TYPES, t.loc[m].to_numpy(), yerr=t.loc[s].to_numpy(), color=COLORS, capsize=6)
        ax.plot(TYPES, t.loc[m].to_numpy(), "o-")
        ax.set_title(name)
        ax.grid(axis="y", alpha=0.5)
    fig.suptitle(title or f"Selectivity ({condition})")
    fig.tight_layout()
    return fig


def plot_weights_vs_target(wdf, title: str = "Final block-mean weights vs w_compare"):
    """Final block-mean weight per (post-pre) pair against the original's target ``w_compare``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(16)
    ax.bar(x - 0.2, wdf.loc["W_mean"].to_numpy(), 0.4, yerr=wdf.loc["W_mean_std"].to_numpy(), label="model", capsize=3)
    ax.bar(x + 0.2, w_compare().T.reshape(-1), 0.4, label="target (w_target*prob/2.959)")
    ax.set_xticks(x, wdf.columns, rotation=60)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("weight (post-pre)")
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_activity(rates, N, *, sim: int = 0, direction: int = 0, block_steps: int = 25, delta_t: float = 0.01):
    """Type-averaged block-mean rates over time for one simulation and direction."""
    plt = _plt()
    r = np.asarray(rates[sim, direction])
    off = np.concatenate([[0], np.cumsum(N)])
    t = (np.arange(r.shape[0]) + 1) * block_steps * delta_t
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, name in enumerate(TYPES):
        seg = r[:, off[k] : off[k + 1]]
        ax.plot(t, seg.mean(1), color=COLORS[k], label=name, lw=2)
        ax.fill_between(t, np.percentile(seg, 10, axis=1), np.percentile(seg, 90, axis=1), color=COLORS[k], alpha=0.2)
    ax.set_xlabel("time (model units)")
    ax.set_ylabel("rate (block mean)")
    ax.legend()
    ax.set_title(f"Activity, sim {sim}, direction {direction}")
    fig.tight_layout()
    return fig


def plot_weight_traces(w_trace, *, sim: int = 0, direction: int = 0, block_steps: int = 25, delta_t: float = 0.01):
    """Type-level mean weights (post-pre) at every block end."""
    plt = _plt()
    w = np.asarray(w_trace[sim, direction])  # (blocks, 4 post, 4 pre)
    t = (np.arange(w.shape[0]) + 1) * block_steps * delta_t
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.5), sharex=True)
    for i, post in enumerate(TYPES):
        for j, pre in enumerate(TYPES):
            axes[i].plot(t, w[:, i, j] - w[0, i, j], color=COLORS[j], label=f"{pre}")
        axes[i].set_title(f"onto {post} (change)")
        axes[i].set_xlabel("time")
    axes[0].legend(title="pre")
    fig.tight_layout()
    return fig


def plot_all(result, out_dir: str | Path, prefix: str = "") -> list[Path]:
    """Write the four figures of an :class:`~spikejax.l5.outputs.L5Result` into ``out_dir``."""
    out_dir = Path(out_dir)
    cfg = result.config
    paths = [
        save_figure(plot_selectivity(result.selectivity_df, f"Activity by {cfg.learning_rule} ({cfg.variant})"), out_dir / f"{prefix}selectivity.png"),
        save_figure(plot_weights_vs_target(result.weight_df), out_dir / f"{prefix}weights_vs_target.png"),
        save_figure(plot_activity(result.output.rates, cfg.N, block_steps=cfg.block, delta_t=cfg.delta_t), out_dir / f"{prefix}activity.png"),
    ]
    if result.output.w_trace is not None:
        paths.append(save_figure(plot_weight_traces(result.output.w_trace, block_steps=cfg.block, delta_t=cfg.delta_t), out_dir / f"{prefix}weight_traces.png"))
    return paths
