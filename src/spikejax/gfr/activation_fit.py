"""Stage 1 of GFR fitting: the activation ``g`` of every cell, from its Long Square onset pairs.

The pairs ``(I_k, f_k)`` are the first bin after step onset of every Long Square sweep at
``activation_bin_size``; ``sigma = max |I_k|`` and ``gamma`` (the cell's max 1/ISI) are fixed.
GRNN's data-driven initialisation (:func:`init_activation`): ``b`` = the current just below the
first point whose rate exceeds 0.01/ms, ``a_1 = |slope * sigma|`` with the slope between that
point and the point of maximum rate, the other coefficients ~ N(0, 0.1^2). Loss: the sum over the
pairs of the torch-convention Poisson NLL of ``g(I_k) dt'`` against ``f_k dt'``
(:func:`activation_loss`); full-batch Adam (lr 0.05, 1000 epochs); ``activation_repeats``
restarts, the lowest final loss kept.

:func:`fit_activations` trains every (cell, restart) pair as one member of a
:func:`spikejax.core.fit_population` run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import NonFiniteError
from ..core.likelihoods import poisson_nll
from ..core.population import fit_population
from ..core.random import check_key
from ..core.training import trainable
from .cells import PreparedCell
from .config import ADAM, NO_KEY, FitConfig
from .model import PolynomialActivation

__all__ = ["init_activation", "activation_loss", "activation_spec", "fit_activations"]

G_FIELDS = ("poly_coeff", "b", "max_current", "max_firing_rate")


def _init_noise(key: jax.Array, cell_ids: np.ndarray, restarts: np.ndarray, size: int) -> np.ndarray:
    """The random part of the initial coefficients, ``0.1 N(0, 1)``, one row per (cell, restart) pair,
    drawn with the key ``fold_in(fold_in(key, cell_id), restart)``. Drawn pair by pair with
    eager calls: each small op compiles once and is reused, far less compilation than one vmapped,
    jitted draw (threefry under vmap compiles slowly on CPU)."""
    base = key
    rows = [0.1 * jax.random.normal(jax.random.fold_in(jax.random.fold_in(base, int(c)), int(r)), (size,))
            for c, r in zip(cell_ids, restarts)]
    return np.asarray(jnp.stack(rows), dtype=np.float64)


def _init_fields(prep: PreparedCell, noise: np.ndarray) -> dict[str, np.ndarray]:
    """GRNN's data-driven initial ``g`` of one cell as numpy fields (``noise``: the random coefficients)."""
    order = np.argsort(prep.act_current, kind="stable")
    cur, rate = prep.act_current[order], prep.act_rate[order]
    above = np.flatnonzero(rate > 0.01)
    if above.size:
        first = int(above[0])
        b = cur[first - 1] if first > 0 else cur[first]
        top = int(np.argmax(rate))
        di = cur[top] - cur[first]
        slope = (rate[top] - rate[first]) / di if di != 0 else rate[first] / max(cur[first] - b, 1.0)
    else:
        first, b = len(cur) - 1, cur[-1]
        slope = 0.0
    coeff = np.array(noise, dtype=np.float64)
    coeff[1] = abs(slope * prep.sigma)
    return {"poly_coeff": coeff, "b": np.float64(b), "max_current": np.float64(prep.sigma), "max_firing_rate": np.float64(prep.gamma)}


def _init_stack(preps: Sequence[PreparedCell], config: FitConfig, restarts: Sequence[int], key: jax.Array) -> PolynomialActivation:
    """Initial activations of every (cell, restart) pair, member = cell * len(restarts) + restart."""
    pairs = [(p, r) for p in preps for r in restarts]
    ids = np.asarray([p.cell_id % (2**31 - 1) for p, _ in pairs], np.uint32)
    noise = _init_noise(key, ids, np.asarray([r for _, r in pairs], np.uint32), config.degree + 1)
    fields = [_init_fields(p, row) for (p, _), row in zip(pairs, noise)]
    dt = np.dtype(jnp.result_type(float))
    leaf = lambda k: np.asarray([f[k] for f in fields]).astype(dt)  # noqa: E731
    return PolynomialActivation(*(leaf(k) for k in G_FIELDS), config.activation_dt)


def init_activation(prep: PreparedCell, config: FitConfig, restart: int, *, key: jax.Array) -> PolynomialActivation:
    """GRNN's data-driven initialisation of ``g`` (see the module docstring); the random coefficients are
    drawn with ``fold_in(fold_in(key, cell_id), restart)``."""
    stacked = _init_stack([prep], config, [restart], check_key(key))
    return jax.tree_util.tree_map(lambda a: a[0], stacked)


def activation_loss(g: PolynomialActivation, batch: dict[str, jax.Array], eps: float = 1e-8) -> jax.Array:
    """Stage-1 loss: sum over the (masked) Long Square pairs of the torch Poisson NLL of counts."""
    dt = batch["dt"]
    return poisson_nll(g(batch["current"]) * dt, batch["rate"] * dt, mask=batch["mask"], convention="torch", eps=eps, reduction="sum")


def activation_spec(g: PolynomialActivation) -> Any:
    return trainable(g, frozen=lambda m: (m.max_current, m.max_firing_rate))



def _member_loss(g, batch, key, *, args):
    """One (cell, restart) member's loss; ``eps`` is a traced per-member argument."""
    return activation_loss(g, batch, args["eps"])


@jax.jit
def _final_losses(g: PolynomialActivation, act: dict[str, jax.Array], rows: jax.Array, eps: jax.Array) -> jax.Array:
    return jax.vmap(lambda gg, r: activation_loss(gg, jax.tree_util.tree_map(lambda a: a[r], act), eps))(g, rows)


def fit_activations(
    preps: Sequence[PreparedCell],
    config: FitConfig,
    act: dict[str, jax.Array],
    *,
    key: jax.Array,
    epochs_per_chunk: int,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
) -> dict[str, Any]:
    """Fit ``g`` for every cell (``activation_repeats`` restarts each) in one program.

    ``act`` is the stacked activation data of :func:`spikejax.gfr.cells.stack_cells` (leaves (cells,
    ...)). Returns ``g`` (numpy leaves of the best restart per cell, :data:`G_FIELDS`), ``loss``
    (cells, restarts) final losses (inf for a diverged restart), ``best`` (cells,) restart indices
    and ``history`` (epochs, cells, restarts) of the loss.
    """
    n_cells, r = len(preps), config.activation_repeats
    dt = jnp.result_type(float)
    g_stack = _init_stack(preps, config, range(r), key)
    rows = np.repeat(np.arange(n_cells, dtype=np.int32), r)
    m = n_cells * r
    res = fit_population(
        g_stack, _member_loss, act, optimizer=ADAM, key=NO_KEY, n_epochs=config.activation_n_epochs,
        member_data=True, data_index=rows, filter_spec=activation_spec(g_stack), args={"eps": np.full(m, config.eps, np.dtype(dt))},
        hyperparams={"learning_rate": config.activation_learning_rate}, epochs_per_chunk=epochs_per_chunk,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume, progress=False,
    )
    final = np.asarray(_final_losses(res.population, act, jnp.asarray(rows), jnp.asarray(config.eps, dt)), dtype=float)
    final = np.where(np.isfinite(final) & (res.status != "diverged"), final, np.inf).reshape(n_cells, r)
    bad = ~np.isfinite(final).any(axis=1)
    if bad.any():
        ids = [preps[i].cell_id for i in np.flatnonzero(bad)]
        raise NonFiniteError(f"cells {ids}: every activation restart diverged; lower activation_lr or enable float64")
    best = np.argmin(final, axis=1)
    pick = np.arange(n_cells) * r + best
    g_host = {k: np.asarray(getattr(res.population, k))[pick] for k in G_FIELDS}
    history = res.curves["loss"][: res.n_epochs].reshape(res.n_epochs, n_cells, r)
    return {"g": g_host, "loss": final, "best": best, "history": history}
