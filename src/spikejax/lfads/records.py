"""What the LFADS verbs return: :class:`LFADSTrajectory` (:func:`~spikejax.lfads.simulate`),
:class:`LFADSTrainResult` (:func:`~spikejax.lfads.train`), :class:`LFADSPBTResult`
(:func:`~spikejax.lfads.pbt`, :func:`~spikejax.lfads.pbt_ray`), and the plot helpers
:func:`plot_rates` and :func:`plot_factors`.

Trajectory arrays are time-major ``(n_steps, n_trials, …)``; rates are in Hz (the model's
expected observation per bin divided by the bin width ``dt``).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import numpy as np

from ..core.results import Result, StopReason, Trajectory, get_ax, tidy
from .model import LFADS, HParams, LFADSConfig

__all__ = ["LFADSTrajectory", "LFADSTrainResult", "LFADSPBTResult", "plot_rates", "plot_factors"]


def plot_rates(rates_hz: Any, *, dt: float, trial: int = 0, neurons: Any = None, ax: Any = None) -> Any:
    """Rates (Hz) of one trial against time (ms), one line per neuron.

    ``rates_hz``: time-major ``(n_steps, n_trials, n_neurons)`` (or ``(n_steps, n_neurons)``);
    ``dt``: bin width in ms; ``neurons``: indices to draw (default the first 10).
    """
    ax = get_ax(ax)
    r = np.asarray(rates_hz)
    r = r[:, trial] if r.ndim == 3 else r
    idx = np.arange(min(r.shape[1], 10)) if neurons is None else np.asarray(neurons)
    t = np.arange(r.shape[0]) * float(dt)
    for n in idx:
        ax.plot(t, r[:, n], lw=1, label=f"neuron {int(n)}")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("rate (Hz)")
    return ax


def plot_factors(factors: Any, *, dt: float, trial: int = 0, ax: Any = None) -> Any:
    """Factors of one trial against time (ms), one line per factor (offset for legibility).

    ``factors``: time-major ``(n_steps, n_trials, fac_dim)`` (or ``(n_steps, fac_dim)``); ``dt`` in ms.
    """
    ax = get_ax(ax)
    f = np.asarray(factors)
    f = f[:, trial] if f.ndim == 3 else f
    t = np.arange(f.shape[0]) * float(dt)
    step = 2.0 * float(np.nanmax(np.abs(f))) if f.size else 1.0
    for j in range(f.shape[1]):
        ax.plot(t, f[:, j] + j * step, lw=1)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("factor (offset per factor)")
    return ax


class LFADSTrajectory(Trajectory):
    """Samples of the LFADS generative model (what :func:`spikejax.lfads.simulate` returns).

    Arrays are time-major: ``rates`` (n_steps, n_trials, n_neurons) in Hz (expected observation
    per bin / ``dt``: spikes/s for Poisson, event amount/s for ZIG); ``observations`` the same
    shape, drawn from the observation model (Poisson counts per bin, or ZIG events);
    ``factors`` (n_steps, n_trials, fac_dim); ``gen_states`` (n_steps, n_trials, gen_dim);
    ``con_inputs`` (n_steps, n_trials, co_dim), drawn from their prior; ``z0`` (n_trials, ic_dim),
    the initial conditions drawn from their prior. ``dt`` is the bin width in ms;
    ``reconstruction`` names the observation model.
    """

    rates: jax.Array
    observations: jax.Array
    factors: jax.Array
    gen_states: jax.Array
    con_inputs: jax.Array
    z0: jax.Array
    reconstruction: str = eqx.field(static=True, default="poisson", kw_only=True)

    def to_pandas(self):
        """Long table ``time_ms``, ``trial``, ``neuron``, ``rate_hz``, ``spikes_count`` (Poisson) or
        ``events_au`` (ZIG)."""
        obs = "spikes_count" if self.reconstruction == "poisson" else "events_au"
        rates = np.asarray(self.rates)
        return tidy(self.times_ms(rates.shape[0]), {"rate_hz": rates, obs: np.asarray(self.observations)},
                    axes=("trial", "neuron"))

    def to_pynapple(self, *, start: float = 0.0):
        """The rates (Hz) as a pynapple ``TsdTensor`` (time × trials × neurons), timestamps at the bin
        centres in s from ``start`` (s)."""
        from ..core.nwb import rates_to_pynapple

        return rates_to_pynapple(np.asarray(self.rates), dt=self.dt, start=start)

    def plot(self, *, ax: Any = None, trial: int = 0) -> Any:
        """Rates (Hz) of one trial (:func:`plot_rates`)."""
        return plot_rates(self.rates, dt=self.dt, trial=trial, ax=ax)


def _model_template(config: LFADSConfig) -> LFADS:
    return eqx.filter_eval_shape(lambda: LFADS(config, key=jax.random.PRNGKey(0)))


def _hp_template() -> HParams:
    return eqx.filter_eval_shape(HParams.create)


class LFADSTrainResult(Result):
    """What :func:`spikejax.lfads.train` returns.

    Beyond :class:`spikejax.core.Result` (``model``: the model of the best smoothed validation
    recon, or the last; ``history``: one row per epoch with ``epoch``, ``loss``,
    ``learning_rate``, ``train/<term>``, ``valid/<term>``, ``valid/recon_smth``; ``stop_reason``;
    ``seconds``): ``hp`` (the hyperparameters), ``opt_state`` (the optimiser state after the last
    step), ``n_epochs`` (epochs run), ``best_epoch`` (or None), ``model_config`` and ``config``
    (the :class:`~spikejax.lfads.TrainConfig`).
    """

    hp: HParams
    opt_state: Any
    n_epochs: int
    best_epoch: int | None
    model_config: LFADSConfig
    config: Any

    @classmethod
    def _template(cls, field: str, header):
        if field == "model":
            return _model_template(header["model_config"])
        if field == "hp":
            return _hp_template()
        if field == "opt_state":
            from .training import make_optimizer

            model = _model_template(header["model_config"])
            opt = make_optimizer(header["config"])
            return eqx.filter_eval_shape(lambda m: opt.init(eqx.filter(m, eqx.is_inexact_array)), model)
        return super()._template(field, header)

    def plot(self, *, ax: Any = None) -> Any:
        """Training loss (left axis) and the training / smoothed validation recon (right axis) per epoch."""
        ax = get_ax(ax)
        h = self.history
        if len(h) == 0:
            return ax
        ax.plot(h["epoch"], h["loss"], color="k", lw=1, label="loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax2 = ax.twinx()
        for col, c in (("train/recon", "C0"), ("valid/recon_smth", "C1")):
            if col in h:
                ax2.plot(h["epoch"], h[col], color=c, lw=1, label=col)
        ax2.set_ylabel("recon")
        ax2.legend(fontsize=7, loc="upper right")
        return ax


class LFADSPBTResult(Result):
    """What :func:`spikejax.lfads.pbt` (and :func:`~spikejax.lfads.pbt_ray`) return.

    Beyond :class:`spikejax.core.Result` (``model``: the best worker's model; ``history``: one row
    per generation with ``generation``, ``epoch``, ``best`` (population best metric); ``stop_reason``;
    ``seconds``): ``workers`` (DataFrame, one row per generation and worker: ``metric``,
    ``train_loss``, ``source`` (the worker it copied at the exploit), ``hp/<name>``; for
    :func:`pbt_ray` one row per trial at the end), ``hp`` and ``learning_rate`` of the best worker,
    ``best_worker``, ``n_generations``, ``population`` (the final stacked models, worker axis first;
    None for :func:`pbt_ray`), ``model_config``, ``pbt_config``. :meth:`to_pandas` is ``workers``.
    """

    workers: Any
    hp: HParams
    learning_rate: float
    best_worker: int
    n_generations: int
    population: Any
    model_config: LFADSConfig
    pbt_config: Any

    @property
    def lr(self) -> float:
        """Old name of :attr:`learning_rate`."""
        return self.learning_rate

    @classmethod
    def _template(cls, field: str, header):
        if field == "model":
            return _model_template(header["model_config"])
        if field == "hp":
            return _hp_template()
        if field == "population":
            from ..core.sweep import stack

            n = header["pbt_config"].n_workers
            cfg = header["model_config"]
            return eqx.filter_eval_shape(
                lambda: stack([LFADS(cfg, key=k) for k in jax.random.split(jax.random.PRNGKey(0), n)]))
        return super()._template(field, header)

    def to_pandas(self):
        """One row per generation and worker (metric, train loss, exploit source, hyperparameters)."""
        return self.workers.copy()

    def plot(self, *, ax: Any = None) -> Any:
        """Every worker's metric per generation (grey) and the population best (black)."""
        ax = get_ax(ax)
        w = self.workers
        if "generation" in w and "worker" in w:
            for _, g in w.groupby("worker"):
                ax.plot(g["generation"], g["metric"], color="0.7", lw=0.8)
        if len(self.history):
            ax.plot(self.history["generation"], self.history["best"], color="k", lw=1.5, label="best")
            ax.legend(fontsize=7)
        ax.set_xlabel("generation")
        ax.set_ylabel("metric")
        return ax


def _stop(reason: str) -> StopReason:
    """The core :class:`StopReason` of an LFADS stop ("max_generations" → completed,
    "improvement_ratio" → converged)."""
    return StopReason.of({"max_generations": "completed", "improvement_ratio": "converged"}.get(reason, reason))
