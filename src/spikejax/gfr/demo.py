"""The GFR part of ``spikejax demo``.

1. Load the bundled excerpt of the released dataset (8 cells at (20, 20)), simulate 1 s current
   steps, and plot step responses and f-I curves (onset and steady-state rate).
2. Build a small synthetic Allen-like cell bank (NWB files), preprocess it through the NWB path,
   fit all cells at once (:func:`spikejax.gfr.fit_cells`, stage 1 + stage 2 with GRNN's default
   schedule), and write the per-cell summary (EVRs, losses, selection), the fitted records and
   figures of fitted vs recorded rates.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run"]


def _excerpt_part(out: Path) -> dict[str, Any]:
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import pandas as pd

    from ..core import stack
    from ..core.io import atomic_open, save_figure
    from .model import simulate_rates
    from .records import load_dataset, model_from_dataset

    ds = load_dataset()
    frame = ds[(20, 20)]
    cells = list(frame["cell_id"])
    models = [model_from_dataset(ds, c) for c in cells]
    stacked = stack(models)
    amps = np.arange(0.0, 501.0, 25.0)
    n_pre, n_on, n_post = 10, 50, 20  # bins of 20 ms: 200 ms, 1 s step, 400 ms
    cur = np.zeros((len(amps), n_pre + n_on + n_post))
    cur[:, n_pre : n_pre + n_on] = amps[:, None]
    import jax

    rates = np.asarray(jax.vmap(lambda m: simulate_rates(m, jnp.asarray(cur)))(stacked)) * 1000.0  # Hz, (cells, amps, T)
    onset = rates[:, :, n_pre]
    steady = rates[:, :, n_pre + n_on - 5 : n_pre + n_on].mean(-1)
    rows = []
    for i, c in enumerate(cells):
        for j, a in enumerate(amps):
            rows.append({"cell_id": c, "current_pA": a, "onset_Hz": onset[i, j], "steady_Hz": steady[i, j]})
    with atomic_open(out / "excerpt_fi_curves.csv", "w", newline="") as fh:
        pd.DataFrame(rows).to_csv(fh, index=False)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, c in enumerate(cells):
        (line,) = axes[0].plot(amps, onset[i], "-", label=str(c))
        axes[0].plot(amps, steady[i], "--", color=line.get_color())
    axes[0].set(xlabel="step current (pA)", ylabel="rate (Hz)", title="f-I: onset (solid), last 100 ms (dashed)")
    axes[0].legend(fontsize=6)
    t = (np.arange(cur.shape[1]) - n_pre) * 20.0
    k = list(cells).index(566517779)
    for j in range(0, len(amps), 4):
        axes[1].plot(t, rates[k, j], label=f"{amps[j]:.0f} pA")
    axes[1].set(xlabel="time from step onset (ms)", ylabel="rate (Hz)", title="cell 566517779: step responses")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "excerpt_fi_and_steps.png", dpi=110)

    fig, axes = plt.subplots(2, 4, figsize=(12, 5), sharex=True)
    for i, ax in enumerate(axes.ravel()):
        for j in (4, 8, 12, 16):
            ax.plot(t, rates[i, j], lw=1)
        ax.set_title(f"{cells[i]} ({frame['species'].iloc[i]})", fontsize=8)
    fig.supxlabel("time from step onset (ms)")
    fig.supylabel("rate (Hz) at 100/200/300/400 pA")
    fig.tight_layout()
    save_figure(fig, out / "excerpt_step_responses.png", dpi=110)
    j200 = int(np.argmin(np.abs(amps - 200.0)))
    return {
        "excerpt_cells": len(cells),
        "cell_566517779_200pA_onset_Hz": round(float(onset[k, j200]), 2),
        "cell_566517779_200pA_steady_Hz": round(float(steady[k, j200]), 2),
    }


def _bank_part(out: Path, *, quick: bool, seed: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt

    from ..core.io import atomic_open, save_figure
    from .fit import FitConfig, fit_cells
    from .model import simulate
    from .preprocess import load_cells, preprocess_files
    from .records import save_records
    from .synthetic import make_cell_bank

    t0 = time.perf_counter()
    if quick:
        n_cells, config = 2, FitConfig(activation_n_epochs=60, learning_rates=(1e-2, 1e-3), n_epochs=(10, 10))
        bank = make_cell_bank(out / "bank_nwb", n_cells, key=jax.random.key(seed), sampling_rate=5000.0, short=True)
    else:
        n_cells, config = 8, FitConfig()
        bank = make_cell_bank(out / "bank_nwb", n_cells, key=jax.random.key(seed), sampling_rate=10_000.0)
    t_bank = time.perf_counter() - t0
    preprocess_files(bank, out / "bank_h5", bin_sizes=(20, 100))
    cells = load_cells(out / "bank_h5")
    t1 = time.perf_counter()
    res = fit_cells(cells, config, key=jax.random.key(seed))
    t_fit = time.perf_counter() - t1
    table = res.table
    with atomic_open(out / "summary.csv", "w", newline="") as fh:
        table.to_csv(fh, index=False)
    save_records(out / "fitted_records.json", res.records)

    # fitted vs recorded: Noise 2 trials (PSTH) against the model, and the onset f-I data against g
    n_show = min(4, len(cells))
    fig, axes = plt.subplots(n_show, 2, figsize=(11, 2.4 * n_show), squeeze=False)
    for i in range(n_show):
        cell, model = cells[i], res.models[i]
        trials = [s.binned[20] for s in cell.by_stimulus("Noise 2")]
        cur = trials[0][0]
        psth = np.mean([r for _, r in trials], axis=0) * 1000
        pred = np.asarray(simulate(model, jnp.asarray(cur)).rate) * 1000
        tt = np.arange(cur.size) * 20.0
        axes[i, 0].plot(tt, psth, color="k", lw=1, label="recorded PSTH (Noise 2)")
        axes[i, 0].plot(tt, pred, color="C3", lw=1, label="GFR")
        axes[i, 0].set_title(f"cell {cell.cell_id}: test EVR {table['test_evr'].iloc[i]:.2f}", fontsize=9)
        axes[i, 0].set_ylabel("rate (Hz)")
        ls = [s.binned[20] for s in cell.by_stimulus("Long Square")]
        i_on = np.array([c[0] for c, _ in ls])
        f_on = np.array([r[0] for _, r in ls]) * 1000
        grid = np.linspace(0, i_on.max() * 1.1, 100)
        axes[i, 1].plot(i_on, f_on, "ko", ms=4, label="onset bin (data)")
        axes[i, 1].plot(grid, np.asarray(model.g(jnp.asarray(grid))) * 1000, "C0", label="fitted g")
        axes[i, 1].set_ylabel("rate (Hz)")
    axes[0, 0].legend(fontsize=7)
    axes[0, 1].legend(fontsize=7)
    axes[-1, 0].set_xlabel("time (ms)")
    axes[-1, 1].set_xlabel("current (pA)")
    fig.tight_layout()
    save_figure(fig, out / "bank_fitted_vs_recorded.png", dpi=110)

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(table["val_evr"], table["test_evr"], c=np.where(table["selected"], "C2", "C1"))
    ax.axvline(0.5, color="grey", lw=0.5)
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set(xlabel="Noise-1 EVR (validation)", ylabel="Noise-2 EVR (test)", title="synthetic bank (green: selected)")
    fig.tight_layout()
    save_figure(fig, out / "bank_evr.png", dpi=110)
    return {
        "bank_cells": len(cells),
        "bank_seconds": round(t_bank, 1),
        "fit_seconds": round(t_fit, 1),
        "median_test_evr": round(float(np.nanmedian(table["test_evr"])), 3),
        "cells_test_evr_gt_0.5": int((table["test_evr"] > 0.5).sum()),
        "cells_selected": int(table["selected"].sum()),
    }


def run(out_dir: Path, *, quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Write the GFR demo into ``out_dir`` and return its key numbers (see the module docstring)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = _excerpt_part(out)
    summary.update(_bank_part(out, quick=quick, seed=seed))
    return summary
