"""Results of an EM fit: parameter table, inferred activity, loss curves, free runs and plots."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ..core.io import save_figure, save_json
from ..core.metrics import pearson_r
from .data import MesoData, dominance_durations
from .model import MesoConfig, simulate
from .params import MesoParams, from_vector, param_names, to_vector

__all__ = ["FitResults", "plot_activity", "plot_free_run", "plot_dominance", "plot_loss_curves"]


@dataclasses.dataclass
class FitResults:
    """Everything :func:`spikejax.meso.fit_em` produces.

    Attributes
    ----------
    runs : dict of numpy arrays
        Per restart (leading axis): ``x`` (fitted 12-vector), ``Z`` (inferred activity, T × M),
        ``loss`` (final objective), ``L_y``, ``L_Z``, ``n_em``, ``objective`` (after the start and
        after each M and E step; NaN where unused), ``m_steps``, ``e_steps``, ``e_curves``
        (E-step loss curves: total, L_y, L_Z per Adam step).
    x0, Z0
        Starting points and the data-driven Z start.
    best : int
        Index of the restart with the lowest final objective (with stochastic-EM refinement:
        the highest estimated ``log p(y | Θ)``).
    sem, hard_em
        The :class:`~spikejax.meso.SEMConfig` of a refined fit and the hard-EM stage it started
        from (``None`` for plain hard EM).
    method : str
        ``"marginal"`` (default of :func:`~spikejax.meso.fit_em`), ``"hard"`` or ``"sem"``.
    marginal : MarginalConfig or None
        Settings of the marginal-likelihood stage.
    seconds : float
        Wall time of the compiled programs (including compilation); ``stage_seconds`` per stage.
    """

    runs: dict
    x0: np.ndarray
    Z0: np.ndarray
    base: MesoParams
    data: MesoData
    truth: MesoParams | None
    cfg: MesoConfig
    em: Any
    seconds: float
    lo: np.ndarray
    hi: np.ndarray
    sem: Any = None
    hard_em: "FitResults | None" = None
    method: str = "hard"
    marginal: Any = None
    stage_seconds: dict = dataclasses.field(default_factory=dict)
    key: Any = None
    _posterior: Any = dataclasses.field(default=None, repr=False)

    @property
    def best(self) -> int:
        """Restart with the lowest final objective."""
        return int(np.argmin(self.runs["loss"]))

    @property
    def params(self) -> MesoParams:
        """Fitted parameters of the best restart."""
        return from_vector(self.base, jax.numpy.asarray(self.runs["x"][self.best]))

    @property
    def Z(self) -> np.ndarray:
        """Inferred activity of the best restart (T, M), fraction per bin."""
        return self.runs["Z"][self.best]

    def to_pandas(self, table: str = "params"):
        """A table of the fit.

        * ``"params"`` (default): truth, estimate (best restart), relative error and box bounds;
        * ``"Z"``: per bin (index ``t_s`` in s) and population, the smoothed posterior mean of the
          activity and its 90 % credible band in Hz (columns ``mean_E1``, ``lower_E1``,
          ``upper_E1``, …, and ``true_E1`` when known; :meth:`posterior`);
        * ``"convergence"``: per iteration of the marginal stage (best restart), the particle
          estimate of ``log p(y | Θ)``, the median relative error of the iterate and of the running
          average (when the truth is known), the step size and the fitted parameters.
        """
        import pandas as pd

        if table == "Z":
            return self._z_table()
        if table == "convergence":
            return self.convergence()
        if table != "params":
            from ..core.errors import ConfigError

            raise ConfigError(f"table must be 'params', 'Z' or 'convergence', got {table!r}")

        M = self.data.M
        est = self.runs["x"][self.best]
        df = pd.DataFrame({"parameter": param_names(M), "estimate": est, "low": self.lo, "high": self.hi})
        if self.truth is not None:
            tv = np.asarray(to_vector(self.truth))
            df.insert(1, "truth", tv)
            df["rel_error"] = np.abs(est - tv) / np.abs(tv)
        return df.set_index("parameter")

    def posterior(self, *, key=None, n_particles: int = 256, n_runs: int = 8, level: float = 0.9):
        """Smoothed posterior of Z at the fitted parameters (:func:`spikejax.meso.posterior_Z`), cached.

        The default key derives from the fit's key, so the result is reproducible.
        """
        from .smc import posterior_Z

        if key is None and self._posterior is not None:
            return self._posterior
        k = key if key is not None else jax.random.fold_in(
            self.key if self.key is not None else jax.random.PRNGKey(0), 7)
        post = jax.device_get(posterior_Z(self.params, self.data, key=k, n_particles=n_particles, n_runs=n_runs,
                                          level=level, cfg=self.cfg))
        if key is None:
            self._posterior = post
        return post

    def _z_table(self):
        import pandas as pd

        post = self.posterior()
        dt = self.data.dt
        T, M = np.asarray(post.mean).shape
        cols = {}
        for i in range(M):
            nm = NAMES[i] if i < len(NAMES) and M == 3 else str(i)
            cols[f"mean_{nm}"] = np.asarray(post.mean)[:, i] / dt
            cols[f"lower_{nm}"] = np.asarray(post.lower)[:, i] / dt
            cols[f"upper_{nm}"] = np.asarray(post.upper)[:, i] / dt
            if self.data.Z is not None:
                cols[f"true_{nm}"] = np.asarray(self.data.Z)[:, i] / dt
        df = pd.DataFrame(cols)
        df.index = pd.Index(np.arange(T) * dt, name="t_s")
        return df

    def convergence(self, run: int | None = None):
        """Traces of the marginal-likelihood stage for restart ``run`` (default the best) as a DataFrame."""
        import pandas as pd

        if "log_lik_trace" not in self.runs:
            from ..core.errors import ConfigError

            raise ConfigError("convergence traces exist only for method='marginal' or 'sem' fits")
        r = self.best if run is None else int(run)
        ll = self.runs["log_lik_trace"][r]
        x = self.runs["x_trace"][r]
        rows = {"log_lik": ll}
        if self.truth is not None:
            tv = np.asarray(to_vector(self.truth))
            rows["median_rel_error"] = np.median(np.abs(x - tv) / np.abs(tv), axis=1)
            if "x_avg_trace" in self.runs:
                rows["median_rel_error_avg"] = np.median(np.abs(self.runs["x_avg_trace"][r] - tv) / np.abs(tv), axis=1)
        if "step_trace" in self.runs:
            rows["step"] = self.runs["step_trace"][r]
            rows["info_fraction"] = self.runs["info_fraction"][r]
        df = pd.DataFrame(rows)
        for j, nm in enumerate(param_names(self.data.M)):
            df[nm] = x[:, j]
        df.index.name = "iteration"
        return df

    def restarts_table(self):
        """One row per restart: final objective, L_y, L_Z, EM iterations and median relative error."""
        import pandas as pd

        rows = {"loss": self.runs["loss"], "n_em": self.runs["n_em"]}
        for k in ("L_y", "L_Z", "log_lik"):
            if k in self.runs:
                rows[k] = self.runs[k]
        if self.truth is not None:
            tv = np.asarray(to_vector(self.truth))
            rows["median_rel_error"] = np.median(np.abs(self.runs["x"] - tv) / np.abs(tv), axis=1)
        return pd.DataFrame(rows, index=pd.Index(_restart_ids(self), name="restart"))

    def median_rel_error(self) -> float:
        """Median relative error of the fitted parameters of the best restart."""
        return float(self.to_pandas()["rel_error"].median())

    def z_correlation(self) -> np.ndarray:
        """Pearson r per population between inferred and true Z (4-ms bins)."""
        if self.data.Z is None:
            raise ValueError("the data hold no true Z")
        return np.asarray(pearson_r(jax.numpy.asarray(self.Z), self.data.Z, axis=0))

    def objective_history(self, run: int | None = None) -> np.ndarray:
        """Hard-EM objective after the start and after each M and E step (NaN entries dropped)."""
        if self.hard_em is not None:
            r = self.best if run is None else int(run)
            return self.hard_em.objective_history(int(self.runs["restart"][r]) if "restart" in self.runs else r)
        o = self.runs["objective"][self.best if run is None else run]
        return o[np.isfinite(o)]

    def simulate(self, n_bins: int, *, key, A0=None, I_ext=None, noise: str = "gaussian"):
        """Free simulation of the fitted model (see :func:`spikejax.meso.simulate`); returns (Z, zbar)."""
        return simulate(self.params, n_bins, key=key, A0=A0, I_ext=I_ext, noise=noise, cfg=self.cfg)

    def summary(self) -> dict:
        """Small JSON-able summary."""
        out = {"method": self.method, "best_restart": self.best, "loss": float(self.runs["loss"][self.best]),
               "n_em": int(self.runs["n_em"][self.best]), "seconds": round(self.seconds, 1),
               "losses": [float(v) for v in self.runs["loss"]],
               "stage_seconds": {k: round(float(v), 1) for k, v in self.stage_seconds.items()}}
        if "log_lik" in self.runs:
            out["log_lik"] = [float(v) for v in self.runs["log_lik"]]
        if self.truth is not None:
            out["median_rel_error"] = self.median_rel_error()
        if self.data.Z is not None:
            out["pearson_r"] = [float(v) for v in self.z_correlation()]
        return out

    def save(self, out_dir: str | Path) -> Path:
        """Write the parameter table (CSV), summary (JSON) and inferred Z (CSV) into ``out_dir``."""
        from ..core.io import atomic_open

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(out_dir / "params.csv") as fh:
            self.to_pandas().to_csv(fh)
        with atomic_open(out_dir / "inferred_Z.csv") as fh:
            np.savetxt(fh, self.Z, delimiter=",", header="Z_" + ",Z_".join(map(str, range(self.data.M))))
        save_json(out_dir / "fit_summary.json", {**self.summary(), "x": self.runs["x"][self.best]})
        return out_dir


def _smooth(x, w):
    if w <= 1:
        return x
    k = np.ones(w) / w
    return np.stack([np.convolve(x[:, i], k, mode="same") for i in range(x.shape[1])], 1)


NAMES = ("E1", "E2", "I")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path):
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, dpi=110)
    return fig


def plot_activity(Z_inferred, Z_true=None, *, dt: float = 0.004, Z_init=None, path=None, smooth: int = 1):
    """Inferred vs true activity (Hz) per population."""
    plt = _pyplot()
    Zi = np.asarray(Z_inferred)
    M = Zi.shape[1]
    t = np.arange(Zi.shape[0]) * dt
    fig, axes = plt.subplots(M, 1, figsize=(8, 1.8 * M), sharex=True)
    axes = np.atleast_1d(axes)
    for i in range(M):
        ax = axes[i]
        if Z_true is not None:
            ax.plot(t, _smooth(np.asarray(Z_true), smooth)[:, i] / dt, color="0.6", lw=0.6, label="true")
        if Z_init is not None:
            ax.plot(t, np.asarray(Z_init)[:, i] / dt, color="C2", lw=1, ls="--", label="init")
        ax.plot(t, _smooth(Zi, smooth)[:, i] / dt, color="C0", lw=1, label="inferred")
        ax.set_ylabel(f"{NAMES[i] if i < len(NAMES) else i} (Hz)")
    axes[0].legend(loc="upper right", fontsize=7, ncol=3)
    axes[-1].set_xlabel("time (s)")
    return _finish(fig, path)


def plot_free_run(Z, *, dt: float = 0.004, smooth_s: float = 0.08, path=None, title="free run"):
    """Free-run activity (Hz), smoothed with a ``smooth_s`` moving average."""
    plt = _pyplot()
    Z = np.asarray(Z)
    t = np.arange(Z.shape[0]) * dt
    fig, ax = plt.subplots(figsize=(8, 2.5))
    Zs = _smooth(Z, int(round(smooth_s / dt)))
    for i in range(Z.shape[1]):
        ax.plot(t, Zs[:, i] / dt, lw=0.8, label=NAMES[i] if i < len(NAMES) else str(i))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("rate (Hz)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _finish(fig, path)


def plot_dominance(durations: dict, *, path=None):
    """Histograms of dominance durations (s), one per labelled set (e.g. model vs surrogate)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    allv = np.concatenate([np.asarray(v) for v in durations.values()] + [np.array([1.0])])
    bins = np.logspace(np.log10(max(allv.min(), 0.1)), np.log10(allv.max() + 1e-9), 15)
    for label, d in durations.items():
        d = np.asarray(d)
        ax.hist(d, bins=bins, alpha=0.5, density=True, label=f"{label} (n={len(d)}, median {np.median(d) if len(d) else np.nan:.1f} s)")
    ax.set_xscale("log")
    ax.set_xlabel("dominance duration (s)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return _finish(fig, path)


def _restart_ids(results: FitResults) -> np.ndarray:
    """Hard-EM restart index of each run (the marginal stage may continue a screened subset)."""
    return np.asarray(results.runs.get("restart", np.arange(results.runs["loss"].shape[0])))


def plot_loss_curves(results: FitResults, *, path=None):
    """E-step loss curves (total objective) of every restart, EM iterations concatenated; for a fit
    refined by stochastic EM, a second panel with the particle estimate of ``−log p(y | Θ)`` per bin
    at each stochastic-EM iteration."""
    plt = _pyplot()
    hard = results.hard_em if results.hard_em is not None else results
    refined = results.hard_em is not None
    fig, axes = plt.subplots(1, 2 if refined else 1, figsize=(9 if refined else 5, 3), squeeze=False)
    ax = axes[0, 0]
    ids = _restart_ids(results)
    best_hard = int(ids[results.best]) if refined else results.best
    for r in range(hard.runs["loss"].shape[0]):
        c = hard.runs["e_curves"][r][..., 0].ravel()
        c = c[np.isfinite(c)]
        ax.plot(c, lw=0.8, label=f"restart {r}" + (" (best)" if r == best_hard else ""))
    ax.set_xlabel("E-step Adam step (all EM iterations)")
    ax.set_ylabel("objective")
    ax.legend(fontsize=7)
    if refined:
        ax = axes[0, 1]
        T, M = results.Z.shape
        for r in range(results.runs["loss"].shape[0]):
            ax.plot(-results.runs["log_lik_trace"][r] / (M * T), lw=0.8, marker=".", label=f"restart {ids[r]}")
        ax.set_xlabel("stochastic-EM iteration")
        ax.set_ylabel("−log p(y | Θ) per bin (particle est.)")
    return _finish(fig, path)


__all__ += ["dominance_durations"]


def plot_convergence(results: FitResults, *, path=None):
    """Convergence of the marginal-likelihood fit: the particle estimate of ``log p(y | Θ)`` per
    iteration for every restart (left; restarts stopped at the cut in grey) and the parameter trace
    of the best restart (right; relative to the truth when known, else in box coordinates), with the
    cut (dashed; the filter grows there, so log p̂ jumps up) and the end of the burn-in (dotted) marked."""
    plt = _pyplot()
    if "log_lik_trace" not in results.runs:
        from ..core.errors import ConfigError

        raise ConfigError("plot_convergence needs a method='marginal' (or 'sem') fit")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    ax = axes[0]
    ids = _restart_ids(results)
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
    ax.set_xlabel("iteration")
    ax.set_ylabel("log p̂(y | Θ) (nats)")
    ax.legend(fontsize=7)
    ax = axes[1]
    b = results.best
    x = results.runs["x_trace"][b]
    names = param_names(results.data.M)
    if results.truth is not None:
        tv = np.asarray(to_vector(results.truth))
        vals, ylab = x / tv, "estimate / truth"
        ax.axhline(1.0, color="0.5", lw=0.6)
    else:
        vals, ylab = (x - results.lo) / (results.hi - results.lo), "box coordinate"
    cmap = plt.get_cmap("tab20")
    for j in range(vals.shape[1]):
        ax.plot(vals[:, j], lw=0.8, color=cmap(j % 20), label=names[j])
    if results.marginal is not None:
        for a in axes:
            a.axvline(results.marginal.n_burn - 0.5, color="0.7", ls=":", lw=0.8)
            if results.marginal.switches:
                a.axvline(results.marginal.cut_at - 0.5, color="0.4", ls="--", lw=0.8)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylab)
    ax.legend(fontsize=6, ncol=3)
    return _finish(fig, path)


def plot_posterior_Z(posterior, Z_true=None, *, dt: float = 0.004, path=None, smooth: int = 1):
    """Posterior mean of Z (Hz) with its credible band per population, and the true activity when given.

    ``posterior`` is a :class:`~spikejax.meso.PosteriorZ` (or a :class:`FitResults`, whose
    :meth:`FitResults.posterior` is used; then ``Z_true`` defaults to the data's).
    """
    plt = _pyplot()
    if isinstance(posterior, FitResults):
        if Z_true is None:
            Z_true = posterior.data.Z
        dt = posterior.data.dt
        posterior = posterior.posterior()
    mean, lo_, hi_ = (np.asarray(a) for a in (posterior.mean, posterior.lower, posterior.upper))
    T, M = mean.shape
    t = np.arange(T) * dt
    fig, axes = plt.subplots(M, 1, figsize=(8, 1.8 * M), sharex=True)
    axes = np.atleast_1d(axes)
    for i in range(M):
        ax = axes[i]
        if Z_true is not None:
            ax.plot(t, _smooth(np.asarray(Z_true), smooth)[:, i] / dt, color="0.6", lw=0.5, label="true")
        ax.fill_between(t, _smooth(lo_, smooth)[:, i] / dt, _smooth(hi_, smooth)[:, i] / dt, color="C0", alpha=0.25,
                        lw=0, label="credible band")
        ax.plot(t, _smooth(mean, smooth)[:, i] / dt, color="C0", lw=0.9, label="posterior mean")
        ax.set_ylabel(f"{NAMES[i] if i < len(NAMES) else i} (Hz)")
    axes[0].legend(loc="upper right", fontsize=7, ncol=3)
    axes[-1].set_xlabel("time (s)")
    return _finish(fig, path)


__all__ += ["plot_convergence", "plot_posterior_Z"]
