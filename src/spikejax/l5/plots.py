"""The original's plots: selectivity bars per type, weights vs target, activity and weight traces.

Every ``plot_*`` draws on ``ax`` (a new figure by default) and returns the Axes (an array of Axes for
the multi-panel figures); none selects a matplotlib backend and none writes a file, except
:func:`save_figures`, which writes into the folder its caller names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.io import save_figure
from ..core.results import get_ax
from .config import TYPES
from .params import w_compare

__all__ = ["plot_selectivity", "plot_weights_vs_target", "plot_activity", "plot_weight_traces", "save_figures", "COLORS"]

#: Colours of the types CS, CC, PV, SST (the original's).
COLORS = ["#7f7fff", "#ffb6ae", "#8fd9d2", "#dba3e6"]


def _axes(ax: Any, n: int, **subplots_kw: Any):
    """``n`` Axes: those given (an array-like of ``n``), or a new figure's."""
    if ax is not None:
        axes = np.ravel(np.asarray(ax, dtype=object))
        if axes.size != n:
            raise ValueError(f"this plot draws {n} panels: pass ax as {n} Axes (or None), got {axes.size}")
        return ax, axes
    import matplotlib.pyplot as plt

    _, grid = plt.subplots(**subplots_kw)
    return grid, np.ravel(grid)


def plot_selectivity(sdf, title: str = "", condition: str = "after", *, ax: Any = None):
    """Bars (mean over simulations, error bar = mean within-simulation s.d.) of activity, OS, DS, OS_p.

    Draws 4 panels: ``ax`` is 4 Axes or None (a new 2 x 2 figure); returns the (2, 2) Axes.
    """
    t = sdf.loc[condition]
    grid, axes = _axes(ax, 4, nrows=2, ncols=2, figsize=(9, 8))
    panels = [("Mean_act", "Mean_std", "Mean activity"), ("Mean_of_OS", "Mean_std_OS", "Orientational selectivity (OS)"),
              ("Mean_of_DS", "Mean_std_DS", "Directional selectivity (DS)"), ("Mean_of_OS_p", "Mean_std_OS_p", "Orientational selectivity_p (OS_p)")]
    for a, (m, s, name) in zip(axes, panels):
        a.bar(TYPES, t.loc[m].to_numpy(), yerr=t.loc[s].to_numpy(), color=COLORS, capsize=6)
        a.plot(TYPES, t.loc[m].to_numpy(), "o-")
        a.set_title(name)
        a.grid(axis="y", alpha=0.5)
    fig = axes[0].figure
    fig.suptitle(title or f"Selectivity ({condition})")
    if ax is None:
        fig.tight_layout()
    return grid


def plot_weights_vs_target(wdf, title: str = "Final block-mean weights vs w_compare", *, ax: Any = None):
    """Final block-mean weight per (post-pre) pair against the original's target ``w_compare``."""
    ax = get_ax(ax, figsize=(10, 4))
    x = np.arange(16)
    ax.bar(x - 0.2, wdf.loc["W_mean"].to_numpy(), 0.4, yerr=wdf.loc["W_mean_std"].to_numpy(), label="model", capsize=3)
    ax.bar(x + 0.2, w_compare().T.reshape(-1), 0.4, label="target (w_target*prob/2.959)")
    ax.set_xticks(x, wdf.columns, rotation=60)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("weight (post-pre)")
    ax.legend()
    ax.set_title(title)
    return ax


def plot_activity(rates, N, *, sim: int = 0, direction: int = 0, block_steps: int = 25, dt: float = 0.01,
                  ax: Any = None):
    """Type-averaged block-mean rates (10-90 % band over cells) against time (ms) for one network and direction.

    ``rates``: (S, D, n_blocks, N), e.g. :attr:`L5Trajectory.rates`.
    """
    ax = get_ax(ax, figsize=(7, 4))
    r = np.asarray(rates[sim, direction])
    off = np.concatenate([[0], np.cumsum(N)])
    t = (np.arange(r.shape[0]) + 1) * block_steps * dt
    for k, name in enumerate(TYPES):
        seg = r[:, off[k] : off[k + 1]]
        ax.plot(t, seg.mean(1), color=COLORS[k], label=name, lw=2)
        ax.fill_between(t, np.percentile(seg, 10, axis=1), np.percentile(seg, 90, axis=1), color=COLORS[k], alpha=0.2)
    ax.set_xlabel("time (ms, model units)")
    ax.set_ylabel("rate (a.u., block mean)")
    ax.legend()
    ax.set_title(f"Activity, network {sim}, direction {direction}")
    return ax


def plot_weight_traces(w_trace, *, sim: int = 0, direction: int = 0, block_steps: int = 25, dt: float = 0.01,
                       ax: Any = None):
    """Change of the type-level mean weights (post-pre) at every block end: 4 panels (one per post type).

    ``ax`` is 4 Axes or None (a new 1 x 4 figure); returns the Axes.
    """
    grid, axes = _axes(ax, 4, nrows=1, ncols=4, figsize=(14, 3.5), sharex=True)
    w = np.asarray(w_trace[sim, direction])  # (blocks, 4 post, 4 pre)
    t = (np.arange(w.shape[0]) + 1) * block_steps * dt
    for i, post in enumerate(TYPES):
        for j, pre in enumerate(TYPES):
            axes[i].plot(t, w[:, i, j] - w[0, i, j], color=COLORS[j], label=f"{pre}")
        axes[i].set_title(f"onto {post} (change)")
        axes[i].set_xlabel("time (ms)")
    axes[0].legend(title="pre")
    if ax is None:
        axes[0].figure.tight_layout()
    return grid


def save_figures(result, out_dir: str | Path, prefix: str = "") -> list[Path]:
    """Write the four figures of an :class:`~spikejax.l5.L5RunResult` into ``out_dir`` (PNG files)."""
    out_dir = Path(out_dir)
    cfg = result.config
    traj = result.trajectory

    def fig_of(ax):
        return np.ravel(np.asarray(ax, dtype=object))[0].figure

    paths = [
        save_figure(fig_of(plot_selectivity(result.selectivity_df, f"Activity by {cfg.learning_rule} ({cfg.variant})")),
                    out_dir / f"{prefix}selectivity.png"),
        save_figure(fig_of(plot_weights_vs_target(result.weight_df)), out_dir / f"{prefix}weights_vs_target.png"),
        save_figure(fig_of(plot_activity(traj.rates, cfg.N, block_steps=cfg.block, dt=cfg.dt)), out_dir / f"{prefix}activity.png"),
    ]
    if traj.w_trace is not None:
        paths.append(save_figure(fig_of(plot_weight_traces(traj.w_trace, block_steps=cfg.block, dt=cfg.dt)),
                                 out_dir / f"{prefix}weight_traces.png"))
    return paths
