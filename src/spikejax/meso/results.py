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
    seconds : float
        Wall time of the compiled EM program (including compilation).
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

    def to_pandas(self):
        """Parameter table: truth, estimate (best restart), relative error and box bounds."""
        import pandas as pd

        M = self.data.M
        est = self.runs["x"][self.best]
        df = pd.DataFrame({"parameter": param_names(M), "estimate": est, "low": self.lo, "high": self.hi})
        if self.truth is not None:
            tv = np.asarray(to_vector(self.truth))
            df.insert(1, "truth", tv)
            df["rel_error"] = np.abs(est - tv) / np.abs(tv)
        return df.set_index("parameter")

    def restarts_table(self):
        """One row per restart: final objective, L_y, L_Z, EM iterations and median relative error."""
        import pandas as pd

        rows = {"loss": self.runs["loss"], "L_y": self.runs["L_y"], "L_Z": self.runs["L_Z"],
                "n_em": self.runs["n_em"]}
        if self.truth is not None:
            tv = np.asarray(to_vector(self.truth))
            rows["median_rel_error"] = np.median(np.abs(self.runs["x"] - tv) / np.abs(tv), axis=1)
        return pd.DataFrame(rows)

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
            return self.hard_em.objective_history(self.best if run is None else run)
        o = self.runs["objective"][self.best if run is None else run]
        return o[np.isfinite(o)]

    def simulate(self, n_bins: int, *, key, A0=None, I_ext=None, noise: str = "gaussian"):
        """Free simulation of the fitted model (see :func:`spikejax.meso.simulate`); returns (Z, zbar)."""
        return simulate(self.params, n_bins, key=key, A0=A0, I_ext=I_ext, noise=noise, cfg=self.cfg)

    def summary(self) -> dict:
        """Small JSON-able summary."""
        out = {"best_restart": self.best, "loss": float(self.runs["loss"][self.best]),
               "n_em": int(self.runs["n_em"][self.best]), "seconds": round(self.seconds, 1),
               "losses": [float(v) for v in self.runs["loss"]]}
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


def plot_loss_curves(results: FitResults, *, path=None):
    """E-step loss curves (total objective) of every restart, EM iterations concatenated; for a fit
    refined by stochastic EM, a second panel with the particle estimate of ``−log p(y | Θ)`` per bin
    at each stochastic-EM iteration."""
    plt = _pyplot()
    hard = results.hard_em if results.hard_em is not None else results
    refined = results.hard_em is not None
    fig, axes = plt.subplots(1, 2 if refined else 1, figsize=(9 if refined else 5, 3), squeeze=False)
    ax = axes[0, 0]
    for r in range(hard.runs["loss"].shape[0]):
        c = hard.runs["e_curves"][r][..., 0].ravel()
        c = c[np.isfinite(c)]
        ax.plot(c, lw=0.8, label=f"restart {r}" + (" (best)" if r == results.best else ""))
    ax.set_xlabel("E-step Adam step (all EM iterations)")
    ax.set_ylabel("objective")
    ax.legend(fontsize=7)
    if refined:
        ax = axes[0, 1]
        T, M = results.Z.shape
        for r in range(results.runs["loss"].shape[0]):
            ax.plot(-results.runs["log_lik_trace"][r] / (M * T), lw=0.8, marker=".", label=f"restart {r}")
        ax.set_xlabel("stochastic-EM iteration")
        ax.set_ylabel("−log p(y | Θ) per bin (particle est.)")
    return _finish(fig, path)


__all__ += ["dominance_durations"]
