"""What the GFR fitting verbs return (subclasses of :class:`spikejax.core.Result`).

* :class:`GFRFitResult` — :func:`~spikejax.gfr.fit_cells` and :func:`~spikejax.gfr.fit_cell`: the
  fitted models stacked along a leading cell axis, the stage-2 loss history (long table), one row
  per cell in :attr:`GFRFitResult.table` (``to_pandas()``), the stage-1 history and the config.
* :class:`GFRFitAlphaBetaResult` — :func:`~spikejax.gfr.fit_alpha_beta` (one model, its history).
* :class:`GFRNetworkResult` — :func:`~spikejax.gfr.train_network`.

Each saves to one HDF5 file (``save``) and loads back (``Class.load``); the model is rebuilt from a
structure template made from the stored config / architecture (``eqx.filter_eval_shape``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..core.results import Result, StopReason, get_ax

__all__ = ["GFRFitResult", "GFRFitAlphaBetaResult", "GFRNetworkResult", "stop_reason_of"]


def stop_reason_of(statuses: Any) -> StopReason:
    """One :class:`StopReason` for member statuses (:data:`spikejax.core.STATUS_NAMES`): the common one, else ``mixed``."""
    names = {str(s) for s in np.ravel(np.asarray(statuses))} - {"active"}
    if not names:
        return StopReason.COMPLETED
    if len(names) > 1:
        return StopReason.MIXED
    return StopReason.of(names.pop())


def _gfr_template(n_traces: int, degree: int, dt_ms: Any, activation_dt_ms: Any, kappa: float, lead: tuple[int, ...]):
    from .model import GFR, PolynomialActivation

    def build():
        dt = jnp.result_type(float)
        g = PolynomialActivation(jnp.zeros((*lead, degree + 1), dt), jnp.zeros(lead, dt), jnp.ones(lead, dt),
                                 jnp.ones(lead, dt), activation_dt_ms)
        return GFR(jnp.zeros((*lead, n_traces), dt), jnp.zeros((*lead, n_traces), dt),
                   jnp.full((*lead, n_traces), 0.5, dt), g, dt_ms, kappa)

    return eqx.filter_eval_shape(build)


def _plot_history(history: Any, ax: Any, max_lines: int = 20) -> Any:
    """Loss against epoch, one line per (cell, learning rate) of a long history table."""
    if len(history) == 0:
        return ax
    keys = [c for c in ("cell_id", "learning_rate") if c in history.columns]
    groups = history.groupby(keys, sort=False) if keys else [((), history)]
    for i, (label, part) in enumerate(groups):
        if i >= max_lines:
            break
        ax.plot(part["epoch"].to_numpy(), part["loss"].to_numpy(), lw=1,
                label=" ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in zip(keys, np.atleast_1d(label))))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per bin (nats)")
    ax.set_yscale("log") if bool((history["loss"] > 0).all()) else None
    return ax


class GFRFitResult(Result):
    """What :func:`~spikejax.gfr.fit_cells` (and :func:`~spikejax.gfr.fit_cell`) return.

    Attributes
    ----------
    model : GFR
        The fitted models stacked along a leading cell axis (leaves ``(cells, n)``); one per cell
        (the learning rate with the best Noise-1 EVR). :attr:`models` lists them.
    history : DataFrame
        Stage 2, one row per (epoch, cell, learning rate) evaluation: ``epoch``, ``cell_id``,
        ``learning_rate``, ``loss`` (per-bin Poisson NLL of the epoch; rows after a member stopped
        are left out).
    stop_reason : StopReason
        Of stage 2 (``completed``, ``early_stopping``, ``mixed`` when the members differ, …).
    seconds : float
        Wall time of the fit, s.
    table : DataFrame
        One row per cell (``to_pandas()``): ``cell_id``, ``val_evr``, ``test_evr``, ``train_loss``,
        ``test_loss``, ``best_lr``, ``epochs``, ``activation_loss``, ``selected`` (release criteria)
        and ``val_evr@lr`` / ``test_evr@lr`` for every learning rate (``cre_line`` when given).
    activation_history : array (epochs, cells, restarts)
        Stage-1 loss history.
    config : FitConfig
        The configuration of the fit (rebuilds the model's structure on :meth:`load`).
    """

    table: Any
    activation_history: np.ndarray
    config: Any

    def to_pandas(self):
        """One row per cell (a copy of :attr:`table`)."""
        return self.table.copy()

    def plot(self, *, ax: Any = None) -> Any:
        """Stage-2 loss per bin against epoch, one line per (cell, learning rate) (at most 20)."""
        ax = get_ax(ax)
        return _plot_history(self.history, ax)

    @property
    def models(self) -> list[Any]:
        """One fitted :class:`~spikejax.gfr.GFR` per cell."""
        from ..core.sweep import unstack

        return unstack(self.model)

    @property
    def records(self) -> list[dict[str, Any]]:
        """The fitted models in the ``gfr_dataset.json`` record layout (one dict per cell)."""
        from .records import make_record

        t = self.table
        out = []
        for i, mdl in enumerate(self.models):
            cre = t.at[i, "cre_line"] if "cre_line" in t.columns else None
            out.append(make_record(
                mdl, cell_id=int(t.at[i, "cell_id"]), cre_line=None if cre in (None, "", "None") else str(cre),
                val_evr=_scalar(t.at[i, "val_evr"]), test_evr=_scalar(t.at[i, "test_evr"]),
                train_loss=_scalar(t.at[i, "train_loss"]), test_loss=_scalar(t.at[i, "test_loss"])))
        return out

    @classmethod
    def _template(cls, field: str, header: Mapping[str, Any]) -> Any:
        if field != "model":
            return super()._template(field, header)
        from .model import decay_rates

        cfg = header["config"]
        n_cells = len(header["table"])
        return _gfr_template(len(decay_rates(cfg.dt)), cfg.degree, cfg.dt, cfg.activation_dt, cfg.kappa, (n_cells,))


class GFRFitAlphaBetaResult(Result):
    """What :func:`~spikejax.gfr.fit_alpha_beta` returns.

    Attributes
    ----------
    model : GFR
        The fitted model (``alpha``, ``beta`` trained; ``g`` and ``decay`` as given).
    history : DataFrame
        ``step`` then ``loss`` and ``per_bin`` (per-bin Poisson NLL).
    stop_reason, seconds : see :class:`spikejax.core.Result`.
    structure : dict
        ``n_traces``, ``degree``, ``dt``, ``activation_dt``, ``kappa`` (rebuilds the model on load).
    """

    structure: dict

    @classmethod
    def _template(cls, field: str, header: Mapping[str, Any]) -> Any:
        if field != "model":
            return super()._template(field, header)
        s = header["structure"]
        return _gfr_template(int(s["n_traces"]), int(s["degree"]), s["dt"], s["activation_dt"], float(s["kappa"]), ())

    def plot(self, *, ax: Any = None) -> Any:
        """Per-bin loss against the optimiser step."""
        ax = get_ax(ax)
        df = self.history
        ax.plot(df["step"].to_numpy(), df["per_bin"].to_numpy())
        ax.set_xlabel("step")
        ax.set_ylabel("loss per bin (nats)")
        return ax


def gfr_structure(model: Any) -> dict[str, Any]:
    """The structure of a single :class:`~spikejax.gfr.GFR` (what :class:`GFRFitAlphaBetaResult` stores)."""
    return {"n_traces": int(model.n_traces), "degree": int(model.g.degree), "dt": model.dt,
            "activation_dt": model.g.dt, "kappa": float(model.kappa)}


class GFRNetworkResult(Result):
    """What :func:`~spikejax.gfr.train_network` returns.

    Attributes
    ----------
    model : GFRNetwork or VanillaRNN
        The trained network.
    history : DataFrame
        Of :func:`spikejax.core.fit`, one row per epoch: ``step``, ``loss``, ``accuracy`` (train,
        step 1, on the minibatches) and ``val`` (test step-1 accuracy) with ``track_test``.
    stop_reason : StopReason
    seconds : float
        Wall time of the fit (including compilation), s.
    train, test : dict
        :func:`~spikejax.gfr.evaluate_network` scores on the training and test sets (``test`` may be None).
    n_params : int
        Trainable parameters.
    n_epochs : int
        Epochs run.
    architecture : dict
        What rebuilds the network on :meth:`load` (as ``save_network``'s sidecar).
    freeze_neurons, freeze_activations : bool
        The freezing used (see :attr:`filter_spec`).
    """

    train: dict
    test: Any
    n_params: int
    n_epochs: int
    architecture: dict
    freeze_neurons: bool = False
    freeze_activations: bool = True

    @property
    def filter_spec(self) -> Any:
        """The filter spec of the training (:func:`~spikejax.gfr.network_filter_spec`)."""
        from .network_model import network_filter_spec

        return network_filter_spec(self.model, freeze_neurons=self.freeze_neurons, freeze_activations=self.freeze_activations)

    @property
    def epochs(self) -> int:
        """Alias of :attr:`n_epochs` (the old field name)."""
        return self.n_epochs

    @property
    def train_seconds(self) -> float:
        """Alias of :attr:`seconds` (the old field name)."""
        return self.seconds

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (accuracies, parameter count, epochs, time)."""
        loss = self.history["loss"].to_numpy() if "loss" in self.history.columns else np.zeros(0)
        out = {
            "n_params": self.n_params,
            "epochs": self.n_epochs,
            "train_seconds": round(float(self.seconds), 2),
            "final_train_loss": float(loss[-1]) if len(loss) else None,
            "train_step1": self.train["step1"],
            "train_vote": self.train["vote"],
        }
        if self.test is not None:
            out.update(test_step1=self.test["step1"], test_vote=self.test["vote"],
                       test_step_accuracy=list(self.test["step_accuracy"]), test_loss=self.test["loss"])
        return out

    @classmethod
    def _template(cls, field: str, header: Mapping[str, Any]) -> Any:
        if field != "model":
            return super()._template(field, header)
        from .network_train import _network_like

        return eqx.filter_eval_shape(_network_like, dict(header["architecture"]))


def _scalar(value: Any) -> Any:
    """A table cell as a numpy float scalar of its own precision (the record writer shortens float32)."""
    v = np.asarray(value)
    return v.ravel()[0] if v.dtype.kind == "f" else np.float64(value)
