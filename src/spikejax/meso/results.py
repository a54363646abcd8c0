"""The result of a fit (:class:`MesoFitResult`): parameter table, history, restarts, free runs, save/load.

Tables that need the data or random numbers (the posterior of Z) are explicit functions:
:func:`posterior_table` (a particle smoother at the fitted parameters).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError
from ..core.io import short_float
from ..core.metrics import pearson_r
from ..core.random import check_key
from ..core.results import Result, StopReason
from .params import MesoParams, from_vector, param_names

__all__ = ["MesoFitResult", "posterior_table"]

#: Units of the fitted parameters (Δu: the escape-noise softness, 2.5 mV).
PARAM_UNITS = {"amem": "1/s", "J": "Δu·s", "mu": "Δu", "theta": "Δu"}


def _template_params(N: tuple, t_ref: float, names, dtype) -> MesoParams:
    M = len(N)
    z = lambda *shape: jnp.zeros(shape, dtype)  # noqa: E731
    return MesoParams(amem=z(M), J=z(M), mu=z(M), theta=z(M), asyn=z(M), conmat=z(M, M), eps=z(), N=tuple(N),
                      t_ref=float(t_ref), names=None if names is None else tuple(names))


class MesoFitResult(Result):
    """What :func:`spikejax.meso.fit_em` (and :func:`~spikejax.meso.fit_params_given_Z`) return.

    Attributes
    ----------
    model : MesoParams
        Fitted parameters of the best restart.
    history : DataFrame
        One row per iteration of the last stage (``iteration`` first): the particle estimate
        ``log_lik_nats`` of ``log p(y | Θ)`` for the marginal and SEM methods, the hard-EM
        ``objective`` after the start and after each M and E step for hard EM.
    stop_reason : StopReason
        ``converged`` when hard EM stopped before ``n_iter`` iterations, else ``completed``.
    seconds : float
        Wall time of the compiled programs (including compilation), s.
    runs : dict of numpy arrays
        Per restart (leading axis): ``x`` (fitted 12-vector), ``Z`` (inferred activity, T × M;
        posterior mean for the marginal and SEM methods, the joint mode for hard EM), ``loss``
        (``−log p̂(y | Θ)/(M·T)`` for the marginal and SEM methods, the hard-EM objective otherwise),
        ``log_lik``, ``n_em`` and the traces (``objective``, ``e_curves``, ``x_trace``,
        ``log_lik_trace``, …); for the marginal method ``restart`` (the hard-EM restart each run continues).
    x0, Z0
        Starting points and the data-driven Z start.
    lo, hi
        The fitting box.
    method : str
        ``"marginal"``, ``"hard"``, ``"sem"`` (or ``"given_Z"`` for :func:`fit_params_given_Z`).
    config : MesoFitConfig
        The settings of the fit.
    N, t_ref, populations, dtype
        The model's structure (sizes, refractory period in ms, names, float dtype), for loading.
    truth_x : array or None
        The ground truth's 12-vector (for the relative errors).
    hard_em : MesoFitResult or None
        The hard-EM stage of a marginal or SEM fit.
    stage_seconds : dict
        Wall time per stage, s.
    """

    runs: dict
    x0: np.ndarray
    Z0: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    method: str
    config: Any
    N: tuple
    t_ref: float
    populations: Any
    dtype: str
    truth_x: Any = None
    hard_em: Any = None
    stage_seconds: dict = eqx.field(default_factory=dict)

    @classmethod
    def _template(cls, field: str, header):
        if field != "model":
            return super()._template(field, header)
        names = header.get("populations")
        return eqx.filter_eval_shape(_template_params, tuple(int(n) for n in header["N"]), float(header["t_ref"]),
                                     None if names is None else tuple(names), jnp.dtype(header["dtype"]))

    # ---- the best restart ----------------------------------------------------------------------
    @property
    def best(self) -> int:
        """Restart with the lowest final objective (the highest ``log p̂`` for the marginal/SEM methods)."""
        return int(np.argmin(self.runs["loss"]))

    @property
    def params(self) -> MesoParams:
        """Fitted parameters of the best restart (= ``model``)."""
        return self.model

    @property
    def Z(self) -> np.ndarray:
        """Inferred activity of the best restart (T, M), fraction per bin."""
        return self.runs["Z"][self.best]

    def restart_params(self, run: int) -> MesoParams:
        """Fitted parameters of restart ``run``."""
        return from_vector(self.model, jnp.asarray(self.runs["x"][int(run)], self.model.amem.dtype))

    def to_pynapple(self, *, start: float = 0.0):
        """The inferred activity of the best restart in Hz (``Z / dt``) as a pynapple ``TsdFrame``, one
        column per population, timestamps at the bin centres in s from ``start`` (s: the time of the
        fitted window's first bin in the recording)."""
        from ..core.nwb import rates_to_pynapple

        dt = float(self.config.model.dt)
        names = list(self.populations) if self.populations is not None and len(self.populations) == len(self.N) else None
        return rates_to_pynapple(np.asarray(self.Z) / (dt / 1000.0), dt=dt, start=start, columns=names)

    # ---- tables ----------------------------------------------------------------------------------
    def to_pandas(self):
        """The parameter table: per fitted parameter (index ``parameter``) its ``unit``, the ``truth``
        (when known), the ``estimate`` (best restart), the box ``low``/``high`` and the ``rel_error``."""
        import pandas as pd

        M = len(self.N)
        names = param_names(M)
        est = np.asarray(self.runs["x"][self.best])
        df = pd.DataFrame({"parameter": names, "unit": [PARAM_UNITS[n.split("[")[0]] for n in names],
                           "estimate": est, "low": np.asarray(self.lo), "high": np.asarray(self.hi)})
        if self.truth_x is not None:
            tv = np.asarray(self.truth_x)
            df.insert(2, "truth", tv)
            df["rel_error"] = np.abs(est - tv) / np.abs(tv)
        return df.set_index("parameter")

    def convergence(self, run: int | None = None):
        """Traces of the marginal-likelihood (or SEM) stage for restart ``run`` (default the best), one
        row per iteration: ``log_lik`` (nats), the median relative error of the iterate and of the
        running average (when the truth is known), the step and the fitted parameters."""
        import pandas as pd

        if "log_lik_trace" not in self.runs:
            raise ConfigError("convergence traces exist only for method='marginal' or 'sem' fits")
        r = self.best if run is None else int(run)
        x = self.runs["x_trace"][r]
        rows = {"log_lik": self.runs["log_lik_trace"][r]}
        if self.truth_x is not None:
            tv = np.asarray(self.truth_x)
            rows["median_rel_error"] = np.median(np.abs(x - tv) / np.abs(tv), axis=1)
            if "x_avg_trace" in self.runs:
                rows["median_rel_error_avg"] = np.median(np.abs(self.runs["x_avg_trace"][r] - tv) / np.abs(tv), axis=1)
        if "step_trace" in self.runs:
            rows["step"] = self.runs["step_trace"][r]
            rows["info_fraction"] = self.runs["info_fraction"][r]
        df = pd.DataFrame(rows)
        for j, nm in enumerate(param_names(len(self.N))):
            df[nm] = x[:, j]
        df.index.name = "iteration"
        return df

    def restarts_table(self):
        """One row per restart: final objective, L_y, L_Z, EM iterations and median relative error."""
        import pandas as pd

        rows = {"loss": self.runs["loss"]}
        for k in ("n_em", "L_y", "L_Z", "log_lik"):
            if k in self.runs:
                rows[k] = self.runs[k]
        if self.truth_x is not None:
            tv = np.asarray(self.truth_x)
            rows["median_rel_error"] = np.median(np.abs(self.runs["x"] - tv) / np.abs(tv), axis=1)
        return pd.DataFrame(rows, index=pd.Index(_restart_ids(self), name="restart"))

    def median_rel_error(self) -> float:
        """Median relative error of the fitted parameters of the best restart."""
        if self.truth_x is None:
            raise ConfigError("the fit has no ground truth (pass truth= to fit_em)")
        rel = np.asarray(self.to_pandas()["rel_error"].to_numpy())
        return short_float(np.median(rel).astype(rel.dtype))

    def z_correlation(self, Z_true) -> np.ndarray:
        """Pearson r per population between the inferred Z and ``Z_true`` (T, M) (e.g. ``data.Z``)."""
        if Z_true is None:
            raise ConfigError("Z_true is None: the data hold no true activity")
        return np.asarray(pearson_r(jnp.asarray(self.Z), jnp.asarray(Z_true), axis=0))

    def objective_history(self, run: int | None = None) -> np.ndarray:
        """Hard-EM objective after the start and after each M and E step (NaN entries dropped)."""
        if self.hard_em is not None:
            r = self.best if run is None else int(run)
            return self.hard_em.objective_history(int(self.runs["restart"][r]) if "restart" in self.runs else r)
        if "objective" not in self.runs:
            raise ConfigError(f"a method={self.method!r} fit has no hard-EM objective history")
        o = self.runs["objective"][self.best if run is None else run]
        return o[np.isfinite(o)]

    # ---- using the fit -----------------------------------------------------------------------------
    def simulate(self, n_steps: int, *, key, A0=None, I_ext=None, noise: str = "gaussian"):
        """Free run of the fitted model (:func:`spikejax.meso.simulate`); returns a :class:`MesoTrajectory`."""
        from .simulation import simulate

        return simulate(self.model, I_ext, n_steps=n_steps, key=key, A0=A0, noise=noise, config=self.config.model)

    def summary(self) -> dict:
        """Small JSON-able summary."""
        out = {"method": self.method, "best_restart": self.best, "loss": short_float(self.runs["loss"][self.best]),
               "seconds": round(float(self.seconds), 1), "stop_reason": str(self.stop_reason),
               "losses": [short_float(v) for v in np.asarray(self.runs["loss"])],
               "stage_seconds": {k: round(float(v), 1) for k, v in self.stage_seconds.items()}}
        if "n_em" in self.runs:
            out["n_em"] = int(self.runs["n_em"][self.best])
        if "log_lik" in self.runs:
            out["log_lik"] = [short_float(v) for v in np.asarray(self.runs["log_lik"])]
        if self.truth_x is not None:
            out["median_rel_error"] = self.median_rel_error()
        return out

    def plot(self, *, ax: Any = None) -> Any:
        """The convergence of ``log p̂(y | Θ)`` (marginal/SEM) or the hard-EM loss curves."""
        from .plots import plot_convergence, plot_loss_curves

        if "log_lik_trace" in self.runs:
            return plot_convergence(self, ax=ax)
        if "e_curves" in self.runs:
            return plot_loss_curves(self, ax=ax)
        return super().plot(ax=ax)


def _restart_ids(results: MesoFitResult) -> np.ndarray:
    """Hard-EM restart index of each run (the marginal stage may continue a screened subset)."""
    return np.asarray(results.runs.get("restart", np.arange(results.runs["loss"].shape[0])))


def _history(method: str, runs: dict, best: int):
    import pandas as pd

    if "log_lik_trace" in runs:
        ll = np.asarray(runs["log_lik_trace"][best], float)
        cols = {"iteration": np.arange(ll.shape[0]), "log_lik_nats": ll}
        if "step_trace" in runs:
            cols["step"] = np.asarray(runs["step_trace"][best], float)
        return pd.DataFrame(cols)
    if "objective" in runs:
        o = np.asarray(runs["objective"][best], float)
        o = o[np.isfinite(o)]
        return pd.DataFrame({"iteration": np.arange(o.shape[0]), "objective": o})
    return pd.DataFrame({"iteration": np.arange(1), "objective": np.asarray([runs["loss"][best]], float)})


def _make_result(method: str, runs: dict, *, seconds: float, x0, Z0, base: MesoParams, lo, hi, config, truth_x,
                 hard_em=None, stage_seconds=None) -> MesoFitResult:
    """Assemble a :class:`MesoFitResult` from a stage's per-restart arrays."""
    runs = {k: np.asarray(v) for k, v in runs.items()}
    best = int(np.argmin(runs["loss"]))
    model = from_vector(base, jnp.asarray(runs["x"][best], base.amem.dtype))
    stop = StopReason.COMPLETED
    if method == "hard" and "n_em" in runs and int(runs["n_em"][best]) < config.em_settings.n_iter:
        stop = StopReason.CONVERGED
    return MesoFitResult(
        model=model, history=_history(method, runs, best), stop_reason=stop, seconds=max(float(seconds), 1e-9),
        runs=runs, x0=np.asarray(x0), Z0=np.asarray(Z0), lo=np.asarray(lo), hi=np.asarray(hi), method=method,
        config=config, N=tuple(int(n) for n in base.N), t_ref=float(base.t_ref),
        populations=None if base.names is None else tuple(base.names), dtype=str(np.dtype(base.amem.dtype)),
        truth_x=None if truth_x is None else np.asarray(truth_x), hard_em=hard_em,
        stage_seconds=dict(stage_seconds or {}))


def posterior_table(result: MesoFitResult, data, *, key, n_particles: int = 256, n_runs: int = 8,
                    level: float = 0.9, posterior=None):
    """The smoothed posterior of the population activity at the fitted parameters, as a long table.

    Runs :func:`spikejax.meso.posterior_Z` (``n_runs`` particle-filter runs of ``n_particles``) at
    ``result.model`` on ``data`` and returns one row per bin and population: ``time_ms``,
    ``population``, the posterior mean ``rate_hz`` and the bounds ``lower_rate_hz`` /
    ``upper_rate_hz`` of the central credible band of ``level`` (and ``true_rate_hz`` when
    ``data.Z`` is known), all in Hz. ``posterior``: a :class:`~spikejax.meso.PosteriorZ` already
    computed by :func:`~spikejax.meso.posterior_Z` at ``result.model`` on ``data`` (the filter runs
    are then skipped, and ``key``, ``n_particles``, ``n_runs`` and ``level`` unused).
    """
    from ..core.results import tidy
    from .smc import posterior_Z

    key = check_key(key)
    if posterior is None:
        posterior = posterior_Z(result.model, data, key=key, n_particles=n_particles, n_runs=n_runs, level=level,
                                config=result.config.model)
    post = jax.device_get(posterior)
    dt_s = float(data.dt) / 1000.0
    values = {"rate_hz": np.asarray(post.mean) / dt_s, "lower_rate_hz": np.asarray(post.lower) / dt_s,
              "upper_rate_hz": np.asarray(post.upper) / dt_s}
    if data.Z is not None:
        values["true_rate_hz"] = np.asarray(data.Z) / dt_s
    T, M = values["rate_hz"].shape
    names = result.populations if result.populations is not None and len(result.populations) == M else None
    return tidy(np.arange(T) * float(data.dt), values, axes=("population",),
                labels={"population": list(names)} if names else None)
