"""Benchmark: GFR cells fitted per second, ``fit_cells`` (all cells in one compiled program)
against a per-cell loop (GRNN's one-cell-at-a-time approach) in the same run.

Cells come from the synthetic Allen-like bank (short protocol, 5 kHz): ``--distinct`` cells are
simulated and preprocessed once and replicated (with new cell ids) up to 10, 100 and 1000 cells;
every replicated cell is fitted as an independent model, so the work per cell is the real one.

Per-cell loops (timed on ``--loop_cells`` cells and extrapolated linearly to N, as stated in the
output):
* ``fit_cell``: one :func:`spikejax.core.fit` per restart and learning rate (the reference loop);
* ``fit_cells([cell])``: the batched trainer on one cell at a time (compiled once, reused).

Usage::

    python benchmarks/gfr_fit.py                # 10, 100, 1000 cells; writes benchmarks/RESULTS_gfr.md
    python benchmarks/gfr_fit.py --quick        # 4 and 8 cells, tiny schedule (smoke test)
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np


def _bank(n_distinct: int, seed: int):
    from spikejax.gfr import make_cell_bank, preprocess_nwb

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_cell_bank(Path(tmp), n_distinct, seed=seed, sampling_rate=5000.0, short=True)
        return [preprocess_nwb(p, bin_sizes=(20,)) for p in paths]


def _replicate(cells, n):
    out = []
    for i in range(n):
        c = copy.copy(cells[i % len(cells)])
        c.cell_id = 10_000_000 + i
        out.append(c)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[10, 100, 1000])
    ap.add_argument("--distinct", type=int, default=16, help="distinct simulated cells (replicated up to each size)")
    ap.add_argument("--loop_cells", type=int, default=3, help="cells timed in the per-cell loops (then extrapolated)")
    ap.add_argument("--activation_epochs", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=50, help="stage-2 epochs per learning rate (3 learning rates)")
    ap.add_argument("--warm_max", type=int, default=100, help="sizes above this are timed once (compile included)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS_gfr.md")))
    ap.add_argument("--shared_padding", action="store_true", help="fit_cells(shared_padding=True): one common batch shape")
    ap.add_argument("--chunk_size", type=int, default=100, help="fit_cells(chunk_size=...): cells per compiled call")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.distinct, args.loop_cells, args.activation_epochs, args.epochs = [4, 8], 4, 1, 20, 4

    from spikejax.gfr import FitConfig, fit_cell, fit_cells

    config = FitConfig(activation_epochs=args.activation_epochs, hparams=tuple((lr, args.epochs) for lr in (1e-2, 1e-3, 1e-4)))
    t0 = time.perf_counter()
    base = _bank(args.distinct, args.seed)
    t_bank = time.perf_counter() - t0
    print(f"bank: {len(base)} distinct cells in {t_bank:.1f} s", flush=True)

    # per-cell loops (compile excluded by a warm-up on another cell, then timed)
    loop_cells = _replicate(base, args.loop_cells + 1)
    fit_cell(loop_cells[0], config)
    t = time.perf_counter()
    for c in loop_cells[1:]:
        fit_cell(c, config)
    per_cell_core = (time.perf_counter() - t) / args.loop_cells
    fit_cells([loop_cells[0]], config, shared_padding=args.shared_padding)
    t = time.perf_counter()
    for c in loop_cells[1:]:
        fit_cells([c], config, shared_padding=args.shared_padding)
    per_cell_batched = (time.perf_counter() - t) / args.loop_cells
    print(f"per-cell loop: fit_cell {per_cell_core:.2f} s/cell, fit_cells([cell]) {per_cell_batched:.2f} s/cell", flush=True)

    rows = []
    for n in args.sizes:
        cells = _replicate(base, n)
        t = time.perf_counter()
        res = fit_cells(cells, config, shared_padding=args.shared_padding, chunk_size=args.chunk_size)  # includes compilation
        first = time.perf_counter() - t
        if n <= args.warm_max:
            t = time.perf_counter()
            res = fit_cells(cells, config, shared_padding=args.shared_padding, chunk_size=args.chunk_size)  # compiled
            warm = time.perf_counter() - t
        else:  # one call only: compilation (independent of n) is included in the time
            warm = first
        rate = n / warm
        rows.append({
            "cells": n,
            "fit_cells_s": warm,
            "fit_cells_first_s": first,
            "fit_cells_per_s": rate,
            "loop_core_per_s": 1.0 / per_cell_core,
            "loop_batched_per_s": 1.0 / per_cell_batched,
            "speedup_vs_core_loop": rate * per_cell_core,
            "speedup_vs_batched_loop": rate * per_cell_batched,
            "median_test_evr": float(np.nanmedian(res.table["test_evr"])),
        })
        r = rows[-1]
        print(f"{n:5d} cells: fit_cells {warm:.1f} s ({first:.1f} s with compile) = {rate:.2f} cells/s; "
              f"x{r['speedup_vs_core_loop']:.1f} vs fit_cell loop, x{r['speedup_vs_batched_loop']:.1f} vs fit_cells([cell]) loop", flush=True)

    dev = jax.devices()[0]
    lines = [
        "# GFR fitting benchmark (`benchmarks/gfr_fit.py`)",
        "",
        f"- Command: `python benchmarks/gfr_fit.py{' --quick' if args.quick else ''}{' --shared_padding' if args.shared_padding else ''}` (sizes {args.sizes})",
        f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, JAX {jax.__version__} on {dev.platform} ({dev.device_kind}); "
        "shared with other jobs while measured, so absolute times are inflated, ratios within the run are comparable",
        f"- Schedule per cell: stage 1 {config.activation_epochs} epochs x {config.activation_repeats} restarts; stage 2: "
        f"{len(config.hparams)} learning rates x {args.epochs} epochs (3 type-batches per epoch), 20 ms bins",
        f"- `fit_cells(shared_padding={args.shared_padding}, chunk_size={args.chunk_size})`: "
        + ("all type-batches padded to one shape and scanned" if args.shared_padding else "each type-batch padded only to its own largest shape (unrolled)")
        + f"; at most {args.chunk_size} cells per compiled call (one program reused for every chunk)",
        f"- Cells: {len(base)} distinct synthetic cells (short protocol: 9 Long Square, 1 Ramp, 3+3 noise sweeps) replicated with new ids",
        f"- Per-cell loops timed on {args.loop_cells} cells after a warm-up and **extrapolated linearly** to each size; "
        "`fit_cell` runs one `spikejax.core.fit` per restart and learning rate and each of those compiles its own step "
        "(so its per-cell time is mostly compilation), `fit_cells([cell])` reuses one compiled program",
        f"- `fit_cells` times: a second, compiled call for sizes <= {args.warm_max}; larger sizes are timed once, compilation included",
        "",
        "| cells | fit_cells (s) | first call incl. compile (s) | fit_cells cells/s | fit_cell loop cells/s | fit_cells([cell]) loop cells/s | speed-up vs fit_cell loop | speed-up vs one-cell fit_cells loop |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cells']} | {r['fit_cells_s']:.1f} | {r['fit_cells_first_s']:.1f} | {r['fit_cells_per_s']:.2f} | "
            f"{r['loop_core_per_s']:.3f} | {r['loop_batched_per_s']:.3f} | {r['speedup_vs_core_loop']:.1f}x | {r['speedup_vs_batched_loop']:.1f}x |"
        )
    lines.append("")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
