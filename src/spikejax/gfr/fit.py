"""Fitting GFR neurons to preprocessed cells, as the GRNN training pipeline does, many cells at once.

:func:`fit_cells` runs the whole pipeline for many cells in **one compiled program per stage**:

1. :mod:`~spikejax.gfr.cells` selects, checks and pads every cell's sweeps and stacks the cells
   (masks keep each cell's loss equal to its own unpadded loss);
2. :mod:`~spikejax.gfr.activation_fit` (stage 1) fits the activation ``g`` of every (cell,
   restart) pair and keeps each cell's best restart;
3. :mod:`~spikejax.gfr.stage2` fits ``alpha`` and ``beta`` of every (cell, learning rate) pair from
   the same initialisation (``g`` frozen), with GRNN's early stopping;
4. :mod:`~spikejax.gfr.selection` scores every (cell, learning rate) model on Noise 1 / Noise 2 and
   keeps the learning rate with the best Noise-1 EVR; the release criteria mark the selected cells.

Both training stages are :func:`spikejax.core.fit_population` runs (per-member learning rates,
epoch budgets, early stopping and NaN guard as masks, checkpoint/resume). :func:`fit_cell` is the
one-cell reference built on :func:`spikejax.core.fit` (one fit per restart and learning rate,
GRNN's loop); both give the same parameters. The configuration is :class:`FitConfig`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from ..core.errors import ConfigError, NonFiniteError
from ..core.io import load_json, save_json
from ..core.random import check_key
from ..core.results import StopReason
from ..core.sweep import stack
from ..core.training import EarlyStopping, fit as core_fit
from .activation_fit import G_FIELDS, activation_loss, activation_spec, fit_activations, init_activation
from .cells import PreparedCell, group_order, padded_shapes, prepare_cell, stack_cells
from .config import NO_KEY, FitConfig
from .model import GFR, PolynomialActivation
from .preprocess import CellData
from .results import GFRFitResult, stop_reason_of
from .selection import eval_member, evaluate, evaluate_grid, masked_evr, selection_criteria
from .stage2 import _Interrupted, fit_alpha_beta, fit_weights, gfr_spec, loss, loss_data, stage2_loss

__all__ = [
    "FitConfig",
    "PreparedCell",
    "GFRFitResult",
    "prepare_cell",
    "init_activation",
    "loss",
    "loss_data",
    "masked_evr",
    "evaluate",
    "fit_cells",
    "fit_cell",
    "fit_alpha_beta",
    "selection_criteria",
]


def _check_cells(cells: Any, config: Any, name: str = "cells") -> None:
    """Types of the arguments of :func:`fit_cells` / :func:`fit_cell` (before any work)."""
    if not isinstance(config, FitConfig):
        raise TypeError(f"config must be a spikejax.gfr.FitConfig, got {type(config).__name__}")
    if isinstance(cells, (str, bytes, os.PathLike, CellData)) or not isinstance(cells, Sequence):
        raise TypeError(f"cells must be a list of CellData (see load_cells), got {type(cells).__name__}")
    for i, cell in enumerate(cells):
        if not isinstance(cell, CellData):
            where = name if name == "cell" else f"cells[{i}]"
            raise TypeError(f"{where} must be a CellData (preprocessed with load_cell/load_cells), got {type(cell).__name__} {cell!r:.80}")


def _ckpt(root: Path | None, sub: str) -> Path | None:
    return None if root is None else Path(root) / sub


def fit_cells(
    cells: Sequence[CellData],
    config: FitConfig | None = None,
    *,
    key: jax.Array,
    epochs_per_call: int = 50,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    cre_lines: dict[int, str] | None = None,
    shared_padding: bool | None = None,
    chunk_size: int | None = None,
    _stop_after: int | None = None,
) -> GFRFitResult:
    """Fit GFR models to many cells in one compiled program (stage 1 then stage 2).

    Parameters
    ----------
    cells
        Preprocessed cells (:func:`spikejax.gfr.preprocess.load_cells`), binned at
        ``config.dt`` and ``config.activation_dt``.
    config
        :class:`FitConfig` (defaults as GRNN's ``configs/default.json``).
    key
        PRNG key of the initial activation coefficients (``fold_in(fold_in(key, cell_id), restart)``,
        so a cell gets the same draws in any batch) and of the type-batch order.
    epochs_per_call
        Epochs per compiled call (checkpoints happen between calls).
    checkpoint_dir, checkpoint_every, resume
        Save the training state every ``checkpoint_every`` epochs (a multiple of
        ``epochs_per_call``; default every call) under ``checkpoint_dir/stage1`` and ``.../stage2``;
        a later call with ``resume=True`` continues from there and gives the same result.
    cre_lines
        Optional ``{cell_id: cre line}`` for the records.
    shared_padding
        ``True``: pad all type-batches to one common (sweeps, bins) shape and scan over them (one
        compiled step, fastest to compile; best for small fits). ``False``: pad each type-batch
        only to its own largest shape and unroll the steps (about 2-3x longer compilation, much
        less padded work when sweep lengths differ; best for many cells). ``None`` (default):
        ``True`` below 32 cells. Results are identical.
    chunk_size
        Fit at most this many cells per compiled call (host loop over chunks, all padded to the
        same shapes so the program compiles once; checkpoints under ``checkpoint_dir/chunk_<k>``).
        Bounds memory and keeps the arrays cache-sized on CPU for thousands of cells.

    Returns
    -------
    :class:`GFRFitResult`: the stacked models (``.models`` lists them), ``to_pandas()`` one row per
    cell, the stage-2 history (``epoch``, ``cell_id``, ``learning_rate``, ``loss``), ``records``.
    """
    t0 = time.perf_counter()
    key = check_key(key)
    config = config or FitConfig()
    if not cells:
        raise ConfigError("fit_cells needs at least one cell")
    _check_cells(cells, config)
    if checkpoint_every is not None and checkpoint_every % epochs_per_call:
        raise ConfigError(f"checkpoint_every ({checkpoint_every}) must be a multiple of epochs_per_call ({epochs_per_call})")
    ids = [c.cell_id for c in cells]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"cell ids must be unique, got duplicates in {ids}")
    preps = [prepare_cell(c, config) for c in cells]
    n_all = len(preps)
    ckpt_root = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_root is not None:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        cfg_file = ckpt_root / "config.json"
        cfg = {"config": config.to_dict(), "cells": ids, "chunk_size": chunk_size, "key": _key_list(key)}
        if resume and cfg_file.is_file():
            if json.loads(json.dumps(cfg)) != load_json(cfg_file):
                raise ConfigError(f"{cfg_file} was written for another configuration, key or cell list; use a fresh checkpoint_dir")
        else:
            save_json(cfg_file, cfg)
    if shared_padding is None:
        shared_padding = min(n_all, chunk_size or n_all) < 32
    shapes = padded_shapes(preps, config, group_order(config, key=key))
    size = n_all if not chunk_size or chunk_size >= n_all else int(chunk_size)
    parts = []
    for k, start in enumerate(range(0, n_all, size)):
        chunk = preps[start : start + size]
        n_real = len(chunk)
        chunk = chunk + [chunk[-1]] * (size - n_real)  # pad the last chunk: one compiled program for all
        sub = ckpt_root if (ckpt_root is None or size == n_all) else ckpt_root / f"chunk_{k:05d}"
        parts.append((n_real, _fit_block(
            chunk, config, shapes, key=key, ckpt_root=sub, epochs_per_call=epochs_per_call, checkpoint_every=checkpoint_every,
            resume=resume, shared_padding=shared_padding, _stop_after=_stop_after,
        )))
    models = [m for n, part in parts for m in part["models"][:n]]
    table = pd.concat([part["table"].iloc[:n] for n, part in parts], ignore_index=True)
    table.insert(0, "cell_id", ids)
    if cre_lines:
        table["cre_line"] = [str(cre_lines.get(c, "")) for c in ids]
    history = np.concatenate([part["history"][:, :n] for n, part in parts], axis=1)
    act_history = np.concatenate([part["activation_history"][:, :n] for n, part in parts], axis=1)
    status = np.concatenate([part["status"][:n] for n, part in parts], axis=0)
    return GFRFitResult(
        model=stack(models), history=_history_frame(history, ids, config.learning_rates), stop_reason=stop_reason_of(status),
        seconds=time.perf_counter() - t0, table=table, activation_history=act_history, config=config,
    )


def _key_list(key: jax.Array) -> list[int]:
    """The key's raw bits as a JSON list (written beside checkpoints: a resume must use the same key)."""
    if jnp.issubdtype(getattr(key, "dtype", np.uint32), jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return [int(v) for v in np.ravel(np.asarray(key))]


def _history_frame(history: np.ndarray, ids: Sequence[int], learning_rates: Sequence[float]) -> pd.DataFrame:
    """Long table of a stage-2 history (epochs, cells, learning rates); NaN rows (stopped members) left out."""
    e, c, l_ = history.shape
    grid = np.meshgrid(np.arange(e), np.arange(c), np.arange(l_), indexing="ij")
    frame = pd.DataFrame({
        "epoch": grid[0].ravel() + 1,
        "cell_id": np.asarray(ids, dtype=np.int64)[grid[1].ravel()],
        "learning_rate": np.asarray(learning_rates, dtype=float)[grid[2].ravel()],
        "loss": history.ravel().astype(float),
    })
    frame = frame[np.isfinite(frame["loss"].to_numpy())]
    return frame.sort_values(["cell_id", "learning_rate", "epoch"], ascending=[True, False, True], kind="stable").reset_index(drop=True)


def _fit_block(
    preps: Sequence[PreparedCell],
    config: FitConfig,
    shapes: dict[str, Any],
    *,
    key: jax.Array,
    ckpt_root: Path | None,
    epochs_per_call: int,
    checkpoint_every: int | None,
    resume: bool,
    shared_padding: bool,
    _stop_after: int | None,
) -> dict[str, Any]:
    """Stage 1 + stage 2 + evaluation and selection of one block of cells."""
    data = stack_cells(preps, config, shapes)
    n_cells = len(preps)
    rows = np.arange(n_cells)
    chunk1 = min(max(epochs_per_call, 100), max(config.activation_n_epochs, 1)) if ckpt_root is None else epochs_per_call
    s1 = fit_activations(preps, config, data["act"], key=key, epochs_per_chunk=chunk1, checkpoint_dir=_ckpt(ckpt_root, "stage1"),
                         checkpoint_every=checkpoint_every, resume=resume)
    g_host = s1["g"]
    s2 = fit_weights(g_host, config, data, shared_padding=shared_padding, epochs_per_chunk=epochs_per_call,
                     checkpoint_dir=_ckpt(ckpt_root, "stage2"), checkpoint_every=checkpoint_every, resume=resume,
                     stop_after=_stop_after)
    fitted = s2["models"]
    ev = {k: np.asarray(v) for k, v in evaluate_grid(fitted, data["ev"], jnp.asarray(config.eps, jnp.result_type(float))).items()}
    val = np.where(np.isfinite(ev["val_evr"]) & (s2["status"] != "diverged"), ev["val_evr"], -np.inf)
    best = np.argmax(val, axis=1)
    host = {k: np.asarray(getattr(fitted, k))[rows, best] for k in ("alpha", "beta", "decay")}
    models = [
        GFR(host["alpha"][i], host["beta"][i], host["decay"][i],
            PolynomialActivation(*(g_host[k][i] for k in G_FIELDS), config.activation_dt), config.dt, config.kappa)
        for i in range(n_cells)
    ]
    table = pd.DataFrame(
        {
            "val_evr": ev["val_evr"][rows, best],
            "test_evr": ev["test_evr"][rows, best],
            "train_loss": s2["last_loss"][rows, best],
            "test_loss": ev["test_loss"][rows, best],
            "best_lr": np.asarray(config.learning_rates, dtype=float)[best],
            "epochs": s2["epochs"][rows, best],
            "activation_loss": s1["loss"][rows, s1["best"]],
        }
    )
    table["selected"] = selection_criteria(table["val_evr"], table["train_loss"])
    for j, lr in enumerate(config.learning_rates):
        table[f"val_evr@{lr:g}"] = ev["val_evr"][:, j]
        table[f"test_evr@{lr:g}"] = ev["test_evr"][:, j]
    status = np.asarray(s2["status"])[rows, best]
    return {"models": models, "table": table, "history": s2["history"], "activation_history": s1["history"], "status": status}


# --------------------------------------------------------------------------------------------
# one cell with core.fit (the reference per-cell loop, with checkpoint / resume)
# --------------------------------------------------------------------------------------------


def fit_cell(
    cell: CellData,
    config: FitConfig | None = None,
    *,
    key: jax.Array,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = False,
    _stop_after: int | None = None,
) -> GFRFitResult:
    """Fit one cell with :func:`spikejax.core.fit` (stage 1 restarts, then one fit per learning rate).

    The same computation as :func:`fit_cells` for one cell (same ``key``, same numbers), one fit at a
    time (GRNN's loop). ``checkpoint_dir`` enables core.fit's checkpointing and exact resume (stage
    1 every 100 steps, stage 2 every ``checkpoint_every`` epochs, default every epoch). Returns a
    :class:`GFRFitResult` of one cell (``res.models[0]``, ``res.to_pandas().iloc[0]``).
    """
    t0 = time.perf_counter()
    key = check_key(key)
    config = config or FitConfig()
    _check_cells([cell], config, name="cell")
    prep = prepare_cell(cell, config)
    data = stack_cells([prep], config, padded_shapes([prep], config, group_order(config, key=key)))
    act = jax.tree_util.tree_map(lambda a: a[0], data["act"])
    ev_data = jax.tree_util.tree_map(lambda a: a[0], data["ev"])
    stacked = jax.tree_util.tree_map(lambda a: a[:, 0], data["groups"])  # (G, S, T): one type-batch per step
    eps = config.eps
    root = Path(checkpoint_dir) if checkpoint_dir is not None else None

    def act_loss(g, batch, key):
        return activation_loss(g, act, eps)

    best_g, best_loss, act_hist = None, np.inf, []
    for k in range(config.activation_repeats):
        g0 = init_activation(prep, config, k, key=key)
        res = core_fit(
            g0, act_loss, None, optimizer=optax.adam(config.activation_learning_rate), key=NO_KEY,
            n_steps=config.activation_n_epochs, filter_spec=activation_spec(g0), progress=progress,
            checkpoint_dir=_ckpt(root, f"stage1_{k}"), resume=resume,
            desc=f"cell {prep.cell_id} activation {k}",
        )
        act_hist.append(np.asarray(res.curves.get("loss", np.zeros(0)), dtype=float))
        final = float(act_loss(res.model, None, None))
        if np.isfinite(final) and final < best_loss:
            best_g, best_loss = res.model, final
    if best_g is None:
        raise NonFiniteError(f"cell {prep.cell_id}: every activation restart ended with a non-finite loss")

    n_groups = int(stacked["current"].shape[0])
    model0 = GFR.init(best_g, config.dt, kappa=config.kappa)
    spec = gfr_spec(model0)

    def loss2(model, batch, key):
        b = jax.tree_util.tree_map(lambda a: a[0], batch)
        return stage2_loss(model, b, eps=eps, C=config.C, checkpoint=config.bptt_checkpoint)

    runs = []
    stop = EarlyStopping(patience=config.patience, monitor="train/per_bin", rule="unchanged")
    for j, (lr, epochs) in enumerate(zip(config.learning_rates, config.n_epochs)):

        def interrupt(step, model, logs, j=j):
            if j == 0 and step > _stop_after * n_groups:
                raise _Interrupted(f"interrupted at step {step} (test hook)")

        res = core_fit(
            model0, loss2, stacked, optimizer=optax.adam(lr), key=NO_KEY, n_epochs=epochs,
            batch_size=1, shuffle=False, filter_spec=spec, has_aux=True, steps_per_call=n_groups, early_stopping=stop,
            callback=interrupt if _stop_after is not None else None, checkpoint_dir=_ckpt(root, f"stage2_{j}"),
            checkpoint_every=None if checkpoint_every is None else checkpoint_every * n_groups,
            resume=resume, progress=progress, desc=f"cell {prep.cell_id} lr {lr:g}",
        )
        ev = {k: float(v) for k, v in eval_member(res.model, ev_data, eps).items()}
        losses = np.asarray(res.curves.get("per_bin", np.zeros(0)), dtype=float)
        runs.append((res.model, ev, float(losses[-1]) if len(losses) else float("nan"), len(losses), losses, res.stop_reason))
    vals = [r[1]["val_evr"] if np.isfinite(r[1]["val_evr"]) else -np.inf for r in runs]
    j = int(np.argmax(vals))
    model, ev, train_loss, n_ep = runs[j][:4]
    row = {"cell_id": prep.cell_id, "val_evr": ev["val_evr"], "test_evr": ev["test_evr"], "train_loss": train_loss,
           "test_loss": ev["test_loss"], "best_lr": float(config.learning_rates[j]), "epochs": n_ep,
           "activation_loss": best_loss, "selected": bool(selection_criteria(ev["val_evr"], train_loss))}
    for jj, lr in enumerate(config.learning_rates):
        row[f"val_evr@{lr:g}"] = runs[jj][1]["val_evr"]
        row[f"test_evr@{lr:g}"] = runs[jj][1]["test_evr"]
    n_e = max([len(r[4]) for r in runs] + [0])
    hist = np.full((n_e, 1, len(runs)), np.nan)
    for jj, r in enumerate(runs):
        hist[: len(r[4]), 0, jj] = r[4]
    n_a = max([len(h) for h in act_hist] + [0])
    act_history = np.full((n_a, 1, len(act_hist)), np.nan)
    for k, h in enumerate(act_hist):
        act_history[: len(h), 0, k] = h
    return GFRFitResult(
        model=stack([model]), history=_history_frame(hist, [prep.cell_id], config.learning_rates),
        stop_reason=StopReason.of(runs[j][5]), seconds=time.perf_counter() - t0, table=pd.DataFrame([row]),
        activation_history=act_history, config=config,
    )
