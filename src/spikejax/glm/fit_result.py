"""What :func:`~spikejax.glm.fit_connectivity` returns: :class:`GLMFitResult` (a :class:`spikejax.core.Result`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.results import Result, get_ax

__all__ = ["GLMFitResult"]


class GLMFitResult(Result):
    """Result of :func:`~spikejax.glm.fit_connectivity`: the inferred weights of a GLM network.

    Attributes
    ----------
    model
        The (fixed) inference model whose nonlinearity and coupling profile the weights refer to.
    history
        DataFrame: ``iteration`` (the most quasi-Newton / proximal steps any neuron took), ``loss``
        (negative log-likelihood per step, nats), ``log_lik_nats``, ``converged_pct``, ``seconds``; for
        the trainer one row per round (``step``, ``loss``).
    stop_reason
        ``converged`` (every neuron met the tolerance), ``epoch_limit`` (some reached ``n_iter``) or the
        trainer's reason.
    seconds
        Wall time in s (compilation included).
    weights
        ``(N, N)`` estimate of ``W[pre, post]`` (zeros outside the candidate edges).
    bias
        ``(N,)`` per-neuron offset of the input ``g``.
    gains
        ``(N, C)`` gains of the shared inputs (``C = 0`` without inputs).
    edges
        ``(N, N)`` boolean mask of the candidate edges.
    true_weights
        The generating ``(N, N)`` matrix where known, else ``None``.
    log_likelihood
        Log-likelihood (nats) of the recording at the estimate (without penalties).
    observation, solver, l1, l2
        The settings used.
    model_spec
        The model's class and constructor arguments (for loading).
    """

    weights: Any
    bias: Any
    gains: Any
    edges: Any
    true_weights: Any
    log_likelihood: float
    observation: str
    solver: str
    l1: float
    l2: float
    model_spec: dict

    @property
    def n_neurons(self) -> int:
        return int(np.shape(self.weights)[0])

    def network(self):
        """The estimate as a :class:`~spikejax.glm.Network` (exact zeros dropped)."""
        from .network import from_dense

        return from_dense(np.asarray(self.weights))

    def to_pandas(self):
        """One row per candidate edge: ``pre``, ``post``, ``true_weight`` (NaN where unknown), ``estimate``."""
        import pandas as pd

        mask = np.asarray(self.edges, bool)
        pre, post = np.nonzero(mask)
        est = np.asarray(self.weights)[pre, post]
        true = np.asarray(self.true_weights)[pre, post] if self.true_weights is not None else np.full(pre.shape, np.nan)
        return pd.DataFrame({"pre": pre, "post": post, "true_weight": true, "estimate": est})

    def recovery(self) -> dict[str, float]:
        """Correlations of estimate with truth: on true edges, on absent pairs (off-diagonal), over all pairs."""
        if self.true_weights is None:
            return {}
        w = np.asarray(self.weights, float)
        t = np.asarray(self.true_weights, float)
        off = ~np.eye(w.shape[0], dtype=bool) & np.asarray(self.edges, bool)
        edge = off & (t != 0)
        absent = off & (t == 0)

        def corr(a, b):
            return float(np.corrcoef(a, b)[0, 1]) if a.size > 2 and np.std(a) > 0 and np.std(b) > 0 else float("nan")

        return {"r_edges": corr(w[edge], t[edge]), "r_all": corr(w[off], t[off]),
                "mean_absent": float(w[absent].mean()) if absent.any() else float("nan"),
                "sd_absent": float(w[absent].std()) if absent.any() else float("nan")}

    def plot(self, *, ax: Any = None) -> Any:
        """Estimated against true weights (where known), else the estimated matrix; returns the Axes."""
        ax = get_ax(ax)
        w = np.asarray(self.weights)
        if self.true_weights is None:
            im = ax.imshow(w.T, cmap="RdBu_r", vmin=-np.abs(w).max(), vmax=np.abs(w).max())
            ax.set_xlabel("pre")
            ax.set_ylabel("post")
            ax.figure.colorbar(im, ax=ax, label="weight")
            return ax
        t = np.asarray(self.true_weights)
        off = ~np.eye(w.shape[0], dtype=bool)
        present = off & (t != 0)
        absent = off & (t == 0)
        ax.scatter(t[absent], w[absent], s=4, alpha=0.3, color="0.5", label="absent pairs")
        ax.scatter(t[present], w[present], s=6, alpha=0.7, color="C0", label="true edges")
        lo, hi = float(min(t.min(), w.min())), float(max(t.max(), w.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("true weight")
        ax.set_ylabel("estimate")
        ax.legend()
        return ax

    @classmethod
    def _template(cls, field: str, header: Mapping[str, Any]) -> Any:
        if field == "model":
            from .results import _build

            return _build(header["model_spec"])
        return super()._template(field, header)
