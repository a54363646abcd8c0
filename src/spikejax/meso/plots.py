"""Plots of the mesoscopic family: ``plot_<what>(…, *, ax=None) -> Axes`` (never selecting a backend or saving)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import ConfigError
from ..core.results import get_ax
from .model import DT_MS
from .params import param_names

__all__ = ["plot_activity", "plot_free_run", "plot_dominance", "plot_loss_curves", "plot_convergence",
           "plot_parameter_trace", "plot_posterior_Z"]

NAMES = ("E1", "E2", "I")


def _smooth(x, w):
    if w <= 1:
        return x
    k = np.ones(w) / w
    return np.stack([np.convolve(x[:, i], k, mode="same") for i in range(x.shape[1])], 1)


def _name(i: int, M: int, names=None) -> str:
    if names is not None and len(names) == M:
        return str(names[i])
    return NAMES[i] if M == 3 else str(i)


def plot_activity(Z_inferred, Z_true=None, *, dt: float = DT_MS, Z_init=None, smooth: int = 1, names=None,
                  ax: Any = None) -> Any:
    """Inferred (solid) vs true (thin) activity in Hz of every population against time (ms).

    ``Z_inferred``, ``Z_true`` and ``Z_init`` are (T, M) fractions per bin of ``dt`` ms; ``smooth``
    is a moving average in bins.
    """
    ax = get_ax(ax, figsize=(8, 3))
    Zi = np.asarray(Z_inferred)
    T, M = Zi.shape
    dt_s = float(dt) / 1000.0
    t = np.arange(T) * float(dt)
    for i in range(M):
        c = f"C{i}"
        if Z_true is not None:
            ax.plot(t, _smooth(np.asarray(Z_true), smooth)[:, i] / dt_s, color=c, lw=0.5, alpha=0.5)
        if Z_init is not None:
            ax.plot(t, np.asarray(Z_init)[:, i] / dt_s, color=c, lw=1, ls="--")
        ax.plot(t, _smooth(Zi, smooth)[:, i] / dt_s, color=c, lw=1, label=_name(i, M, names))
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("rate (Hz)")
    ax.set_title("inferred (solid)" + (", true (thin)" if Z_true is not None else "")
                 + (", start (dashed)" if Z_init is not None else ""), fontsize=8)
    ax.legend(loc="upper right", fontsize=7, ncol=M)
    return ax


def plot_free_run(Z, *, dt: float = DT_MS, smooth: float = 80.0, title: str = "free run", names=None,
                  ax: Any = None) -> Any:
    """Free-run activity (Hz) against time (ms), smoothed with a ``smooth``-ms moving average.

    ``Z`` is a (T, M) array of fractions per bin of ``dt`` ms, or a :class:`~spikejax.meso.MesoTrajectory`.
    """
    if hasattr(Z, "zbar") and hasattr(Z, "dt"):  # a MesoTrajectory
        names = names if names is not None else (Z.populations or None)
        Z, dt = np.asarray(Z.Z), float(Z.dt)
    ax = get_ax(ax, figsize=(8, 2.5))
    Z = np.asarray(Z)
    dt_s = float(dt) / 1000.0
    t = np.arange(Z.shape[0]) * float(dt)
    Zs = _smooth(Z, int(round(smooth / dt)))
    for i in range(Z.shape[1]):
        ax.plot(t, Zs[:, i] / dt_s, lw=0.8, label=_name(i, Z.shape[1], names))
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("rate (Hz)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return ax


def plot_dominance(durations: dict, *, ax: Any = None) -> Any:
    """Histograms of dominance durations (ms), one per labelled set (e.g. model vs surrogate)."""
    ax = get_ax(ax, figsize=(5, 3))
    allv = np.concatenate([np.asarray(v, float) for v in durations.values()] + [np.array([1000.0])])
    bins = np.logspace(np.log10(max(allv.min(), 100.0)), np.log10(allv.max() + 1e-9), 15)
    for label, d in durations.items():
        d = np.asarray(d, float)
        med = np.median(d) if len(d) else np.nan
        ax.hist(d, bins=bins, alpha=0.5, density=True, label=f"{label} (n={len(d)}, median {med:.0f} ms)")
    ax.set_xscale("log")
    ax.set_xlabel("dominance duration (ms)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return ax


def _ids(results) -> np.ndarray:
    return np.asarray(results.runs.get("restart", np.arange(results.runs["loss"].shape[0])))


def plot_loss_curves(results, *, ax: Any = None) -> Any:
    """E-step loss curves (total objective) of every hard-EM restart, EM iterations concatenated
    (for a marginal or SEM fit: those of its hard-EM stage)."""
    ax = get_ax(ax, figsize=(5, 3))
    hard = results.hard_em if results.hard_em is not None else results
    if "e_curves" not in hard.runs:
        raise ConfigError("plot_loss_curves needs a fit with a hard-EM stage")
    refined = results.hard_em is not None
    ids = _ids(results)
    best_hard = int(ids[results.best]) if refined else results.best
    for r in range(hard.runs["loss"].shape[0]):
        c = np.asarray(hard.runs["e_curves"][r])[..., 0].ravel()
        c = c[np.isfinite(c)]
        ax.plot(c, lw=0.8, label=f"restart {r}" + (" (best)" if r == best_hard else ""))
    ax.set_xlabel("E-step Adam step (all EM iterations)")
    ax.set_ylabel("objective")
    ax.legend(fontsize=7)
    return ax


def plot_convergence(results, *, ax: Any = None) -> Any:
    """The particle estimate of ``log p(y | Θ)`` per iteration of the marginal-likelihood (or SEM) stage for
    every restart (restarts stopped at the cut in grey), with the cut (dashed; the filter grows there, so
    log p̂ jumps up) and the end of the burn-in (dotted) marked."""
    if "log_lik_trace" not in results.runs:
        raise ConfigError("plot_convergence needs a method='marginal' (or 'sem') fit")
    ax = get_ax(ax, figsize=(5, 3.2))
    ids = _ids(results)
    dropped = None if results.hard_em is None else results.hard_em.runs.get("cut_log_lik_trace")
    if dropped is not None:  # restarts that stopped at the cut (marginal.cut_at), first phase only
        for i in np.flatnonzero(np.isfinite(dropped).any(1)):
            if i not in ids:
                ax.plot(dropped[i], lw=0.6, color="0.6", label=f"restart {i} (stopped)")
    for r in range(results.runs["log_lik_trace"].shape[0]):
        ax.plot(results.runs["log_lik_trace"][r], lw=0.9, marker=".",
                label=f"restart {ids[r]}" + (" (best)" if r == results.best else ""))
    ll = np.asarray(results.runs["log_lik_trace"], float)
    ll = ll[np.isfinite(ll)]
    if ll.size:  # rejected iterates (a collapsed filter) would flatten the traces: keep them off the axis
        lo_, hi_ = np.percentile(ll, 5), ll.max()
        pad = max(hi_ - lo_, 1.0)
        ax.set_ylim(lo_ - 0.3 * pad, hi_ + 0.1 * pad)
        if ll.min() < lo_ - 0.3 * pad:
            ax.set_title("rejected iterates below the axis", fontsize=7)
    _mark_phases(results, ax)
    ax.set_xlabel("iteration")
    ax.set_ylabel("log p̂(y | Θ) (nats)")
    ax.legend(fontsize=7)
    return ax


def _mark_phases(results, ax) -> None:
    if results.method != "marginal":
        return
    mc = results.config.marginal
    ax.axvline(mc.n_burn - 0.5, color="0.7", ls=":", lw=0.8)
    if mc.switches:
        ax.axvline(mc.cut_at - 0.5, color="0.4", ls="--", lw=0.8)


def plot_parameter_trace(results, *, ax: Any = None) -> Any:
    """The parameter trace of the best restart of the marginal-likelihood (or SEM) stage: relative to the
    truth when known, else in box coordinates."""
    import matplotlib.pyplot as plt

    if "x_trace" not in results.runs:
        raise ConfigError("plot_parameter_trace needs a method='marginal' (or 'sem') fit")
    ax = get_ax(ax, figsize=(5, 3.2))
    x = np.asarray(results.runs["x_trace"][results.best])
    names = param_names(len(results.N))
    if results.truth_x is not None:
        vals, ylab = x / np.asarray(results.truth_x), "estimate / truth"
        ax.axhline(1.0, color="0.5", lw=0.6)
    else:
        lo, hi = np.asarray(results.lo), np.asarray(results.hi)
        vals, ylab = (x - lo) / (hi - lo), "box coordinate"
    cmap = plt.get_cmap("tab20")
    for j in range(vals.shape[1]):
        ax.plot(vals[:, j], lw=0.8, color=cmap(j % 20), label=names[j])
    _mark_phases(results, ax)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylab)
    ax.legend(fontsize=6, ncol=3)
    return ax


def plot_posterior_Z(posterior, Z_true=None, *, dt: float = DT_MS, smooth: int = 1, names=None,
                     ax: Any = None) -> Any:
    """Posterior mean of Z (Hz) with its credible band per population against time (ms), and the true
    activity (thin) when given. ``posterior`` is a :class:`~spikejax.meso.PosteriorZ`."""
    ax = get_ax(ax, figsize=(8, 3))
    mean, lo_, hi_ = (np.asarray(a) for a in (posterior.mean, posterior.lower, posterior.upper))
    T, M = mean.shape
    dt_s = float(dt) / 1000.0
    t = np.arange(T) * float(dt)
    for i in range(M):
        c = f"C{i}"
        if Z_true is not None:
            ax.plot(t, _smooth(np.asarray(Z_true), smooth)[:, i] / dt_s, color=c, lw=0.5, alpha=0.5)
        ax.fill_between(t, _smooth(lo_, smooth)[:, i] / dt_s, _smooth(hi_, smooth)[:, i] / dt_s, color=c, alpha=0.2,
                        lw=0)
        ax.plot(t, _smooth(mean, smooth)[:, i] / dt_s, color=c, lw=0.9, label=_name(i, M, names))
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("rate (Hz)")
    ax.set_title("posterior mean and credible band" + (", true (thin)" if Z_true is not None else ""), fontsize=8)
    ax.legend(loc="upper right", fontsize=7, ncol=M)
    return ax
