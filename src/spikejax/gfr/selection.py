"""Scoring fitted GFR models and choosing among them: the Noise-1 (val) / Noise-2 (test) explained
variance ratio (EVR) and per-bin Poisson NLL of each model's response to the trial current, and
GRNN's release selection (``val_evr > 0.5`` and ``train_loss < 0.45``).

The EVR here works on padded arrays (:func:`masked_evr`) so that a whole grid of models (cells x
learning rates) is scored in one compiled call (:func:`evaluate_grid`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core.likelihoods import poisson_nll
from .cells import prepare_cell, stack_cells
from .config import FitConfig
from .model import GFR, simulate_rates
from .preprocess import CellData

__all__ = ["masked_evr", "eval_member", "evaluate_grid", "evaluate", "selection_criteria"]


def masked_evr(model_trace: jax.Array, trials: jax.Array, trial_mask: jax.Array, n_bins: jax.Array) -> jax.Array:
    """EVR over the first ``n_bins`` bins and the trials with ``trial_mask`` (equals
    :func:`spikejax.core.evr` on the unpadded arrays). ``model_trace`` (T,), ``trials`` (K, T)."""
    t = trials.shape[-1]
    tm = (jnp.arange(t) < n_bins).astype(trials.dtype)
    nt = jnp.maximum(jnp.sum(tm), 1.0)

    def var(x):
        mu = jnp.sum(x * tm, -1, keepdims=True) / nt
        return jnp.sum(((x - mu) * tm) ** 2, -1) / nt

    def ev(x, y):
        vx, vy, vd = var(x), var(y), var(x - y)
        den = vx + vy
        return jnp.where(den > 0, (den - vd) / jnp.where(den > 0, den, 1.0), jnp.nan)

    km = trial_mask.astype(trials.dtype)
    nk = jnp.maximum(jnp.sum(km), 1.0)
    psth = jnp.sum(trials * km[:, None], 0) / nk
    ev_d = jnp.sum(jnp.where(km > 0, ev(trials, psth[None, :]), 0.0)) / nk
    ev_m = jnp.sum(jnp.where(km > 0, ev(trials, model_trace[None, :]), 0.0)) / nk
    return ev_m / ev_d


def eval_member(model: GFR, ev: dict[str, jax.Array], eps: float) -> dict[str, jax.Array]:
    """Noise-1 (val) and Noise-2 (test) EVR and per-bin NLL of the response to the first trial's current."""
    out = {}
    for name in ("val", "test"):
        d = ev[name]
        m = simulate_rates(model, d["current"])
        scored = jnp.where(d["round"], jnp.round(m * d["dt"]) / d["dt"], m) if "round" in d else m
        out[f"{name}_evr"] = masked_evr(scored, d["trials"], d["trial_mask"], d["n_bins"])
        k, t = d["trials"].shape
        mask = d["trial_mask"][:, None] & (jnp.arange(t)[None, :] < d["n_bins"])
        nll = poisson_nll(jnp.broadcast_to(m, (k, t)) * d["dt"], d["trials"] * d["dt"], mask=mask, convention="torch", eps=eps, reduction="sum")
        out[f"{name}_loss"] = nll / jnp.maximum(jnp.sum(d["trial_mask"]), 1) / jnp.maximum(d["n_bins"], 1)
    return out


@jax.jit
def evaluate_grid(models: GFR, ev: dict[str, Any], eps: jax.Array) -> dict[str, jax.Array]:
    """:func:`eval_member` for a (cells, members) grid of models against each cell's trials (cells,)."""
    return jax.vmap(jax.vmap(lambda mdl, e: eval_member(mdl, e, eps), in_axes=(0, None)))(models, ev)


def evaluate(model: GFR, cell: CellData, config: FitConfig | None = None) -> dict[str, float]:
    """Noise-1 / Noise-2 EVR and per-bin Poisson NLL of a model on one cell."""
    config = config or FitConfig(dt=model.dt, activation_dt=model.g.dt)
    data = stack_cells([prepare_cell(cell, config)], config)
    ev = eval_member(model, jax.tree_util.tree_map(lambda a: a[0], data["ev"]), config.eps)
    return {k: float(v) for k, v in ev.items()}


def selection_criteria(val_evr: Any, train_loss: Any, *, min_val_evr: float = 0.5, max_train_loss: float = 0.45) -> np.ndarray:
    """GRNN's release selection: ``val_evr > 0.5`` and ``train_loss < 0.45`` (NaN fails)."""
    v = np.asarray(val_evr, dtype=float)
    lo = np.asarray(train_loss, dtype=float)
    return (v > min_val_evr) & (lo < max_train_loss)

