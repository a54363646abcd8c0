"""Benchmark: GFR cells fitted per second, ``fit_cells`` (all cells in one compiled program)
against a per-cell loop (GRNN's one-cell-at-a-time approach) in the same run.

Cells come from the synthetic Allen-like bank (short protocol, 5 kHz): ``--distinct`` cells are
simulated and preprocessed once and replicated (with new cell ids) up to 10, 100 and 1000 cells;
every replicated cell is fitted as an independent model, so the work per cell is the real one.

Per-cell loops (timed on ``--loop_cells`` cells and extrapolated linearly to N, as stated in the
output):
* ``fit_cell``: one :func:`spikejax.core.fit` per restart and learning rate (the reference loop);
* ``fit_cells([cell])``: the batched trainer on one cell at a time (compiled once, reused).

Stage 2 per cell against the PyTorch anchor (``shared/anchors/gfr_torch_anchor.py``, GRNN's
stage-2 procedure as a per-cell PyTorch loop, 1 thread), run as a peer in the same run: spikejax's
stage 2 (:func:`spikejax.gfr.stage2.fit_weights`) on ``--stage2_cells`` cells with the anchor's batch
sizes (Long Square 20 x 150 bins, Ramp 3 x 500, Noise 1 12 x 1000; 20 ms bins; 3 learning rates),
timed compiled; the ratio is the anchor's seconds per (cell, learning rate, epoch) over spikejax's.
The 1000-cell figure with the original's schedule (3 lr x 200 epochs) is extrapolated linearly from
that per-cell cost (stated in the output), and with ``--full_cells 1000`` also run: ten chunks of
``--stage2_cells`` cells through the same compiled program, timed from the first call. Skipped with a message when torch is not installed
(``pip install torch==2.13.0``).

Usage::

    python benchmarks/gfr_fit.py                # 10, 100, 1000 cells; writes benchmarks/RESULTS_gfr.md
    python benchmarks/gfr_fit.py --quick        # 4 and 8 cells, tiny schedule (smoke test)
    python benchmarks/gfr_fit.py --sizes        # only the stage-2 comparison with the torch anchor
    python benchmarks/gfr_fit.py --sizes --full_cells 1000 --out benchmarks/results/gfr_stage2_full.md
                                                # ... and 1000 cells x 3 lr x 200 epochs, run (~6 min)
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np


def _bank(n_distinct: int, seed: int):
    from spikejax.gfr import make_cell_bank, preprocess_nwb

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_cell_bank(Path(tmp), n_distinct, key=jax.random.key(seed), sampling_rate=5000.0, short=True)
        return [preprocess_nwb(p, bin_sizes=(20,)) for p in paths]


def _replicate(cells, n):
    out = []
    for i in range(n):
        c = copy.copy(cells[i % len(cells)])
        c.cell_id = 10_000_000 + i
        out.append(c)
    return out


ANCHOR = Path(os.environ.get("SPIKEJAX_ANCHORS", Path(__file__).resolve().parents[2] / "shared" / "anchors")) / "gfr_torch_anchor.py"


def _anchor_cells(n_cells: int, seed: int = 0):
    """Prepared cells with the torch anchor's stage-2 batch sizes (rates from a GFR with the anchor's g)."""
    import jax.numpy as jnp

    from spikejax.gfr import GFR, PolynomialActivation, decay_rates, simulate_rates
    from spikejax.gfr.cells import PreparedCell

    rng = np.random.default_rng(seed)
    lam = decay_rates(20)
    n = lam.size
    g = PolynomialActivation(jnp.asarray([0.0, 2.7]), jnp.asarray(110.0), jnp.asarray(190.0), jnp.asarray(0.05), 20)
    cells = []
    for i in range(n_cells):
        alpha = np.zeros(n)
        alpha[0] = n
        true = GFR(alpha, -0.1 * rng.random(n), lam, g, 20)
        ls = np.zeros((20, 150))
        ls[:, 25:75] = np.linspace(20, 250, 20)[:, None]
        ramp = np.broadcast_to(np.linspace(0, 300, 500), (3, 500)).copy()
        noise = 120 + 60 * rng.standard_normal((12, 1000))
        rates = {k: np.asarray(simulate_rates(true, jnp.asarray(v, jnp.float32)), float) for k, v in (("ls", ls), ("ramp", ramp), ("noise", noise))}
        groups = {"Long Square": (ls, rates["ls"]), "Ramp": (ramp, rates["ramp"]), "Noise 1": (noise, rates["noise"])}
        trials = (noise[0], rates["noise"])
        cells.append(PreparedCell(10_000_000 + i, 0.05, 250.0, ls[:, 25], rates["ls"][:, 25], groups, trials, trials))
    return cells


def _stage2_vs_anchor(args) -> dict:
    """spikejax stage 2 per (cell, lr, epoch) at the anchor's sizes, and the anchor itself (same run)."""
    from spikejax.gfr import FitConfig
    from spikejax.gfr.cells import stack_cells
    from spikejax.gfr.stage2 import fit_weights

    out = {"cells": args.stage2_cells, "epochs": args.stage2_epochs}
    config = FitConfig(learning_rates=(1e-2, 1e-3, 1e-4), n_epochs=(args.stage2_epochs,) * 3)
    preps = _anchor_cells(args.stage2_cells, args.seed)
    data = stack_cells(preps, config)
    g_host = {"poly_coeff": np.tile([0.0, 2.7], (len(preps), 1)), "b": np.full(len(preps), 110.0),
              "max_current": np.full(len(preps), 190.0), "max_firing_rate": np.full(len(preps), 0.05)}
    kw = dict(shared_padding=False, epochs_per_chunk=args.stage2_epochs)
    t = time.perf_counter()
    res = fit_weights(g_host, config, data, **kw)
    out["first_s"] = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    res = fit_weights(g_host, config, data, **kw)
    out["warm_s"], out["warm_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    member_epochs = float(np.sum(res["epochs"]))
    out["per_member_epoch_s"] = out["warm_s"] / member_epochs
    out["full_1000_min"] = out["per_member_epoch_s"] * 1000 * 3 * 200 / 60
    out["per_member_epoch_cpu_s"] = out["warm_cpu_s"] / member_epochs
    print(f"stage 2 at the anchor's sizes: {args.stage2_cells} cells x 3 lr x {args.stage2_epochs} epochs in {out['warm_s']:.1f} s "
          f"compiled ({out['warm_cpu_s']:.1f} s CPU; {out['first_s']:.1f} s first call) = {1e3 * out['per_member_epoch_s']:.2f} ms "
          f"per (cell, lr, epoch) ({1e3 * out['per_member_epoch_cpu_s']:.2f} ms CPU), load {os.getloadavg()[0]:.1f}; "
          f"1000 cells x 3 lr x 200 epochs extrapolated: {out['full_1000_min']:.1f} min", flush=True)
    if args.full_cells:
        out.update(_full_schedule(args, g_host, data))
    if importlib.util.find_spec("torch") is None:
        out["anchor"] = "skipped: torch is not installed (pip install torch==2.13.0)"
    elif not ANCHOR.is_file():
        out["anchor"] = f"skipped: {ANCHOR} not found (set SPIKEJAX_ANCHORS)"
    else:
        proc = subprocess.run([sys.executable, str(ANCHOR), str(args.anchor_epochs)], capture_output=True, text=True, timeout=3600)
        m = re.search(r"([0-9.]+) s per epoch", proc.stdout)
        if proc.returncode or not m:
            out["anchor"] = f"failed: {proc.stderr[-300:] or proc.stdout[-300:]}"
        else:
            out["anchor_per_epoch_s"] = float(m.group(1))
            out["ratio"] = out["anchor_per_epoch_s"] / out["per_member_epoch_s"]
            out["anchor"] = proc.stdout.strip()
    print(f"torch anchor: {out['anchor']}" + (f" -> spikejax {out['ratio']:.0f}x faster per (cell, lr, epoch)" if "ratio" in out else ""), flush=True)
    return out


def _full_schedule(args, g_host_chunk, data_chunk) -> dict:
    """Stage 2 with the original's schedule (3 lr x 200 epochs) on ``args.full_cells`` cells, run (not
    extrapolated): chunks of ``args.stage2_cells`` cells through one compiled program (the first
    chunk's call compiles it; its time is included)."""
    from spikejax.gfr import FitConfig
    from spikejax.gfr.stage2 import fit_weights

    config = FitConfig(learning_rates=(1e-2, 1e-3, 1e-4), n_epochs=(200,) * 3)
    n_chunks = -(-args.full_cells // args.stage2_cells)
    t, c = time.perf_counter(), time.process_time()
    member_epochs = 0.0
    for i in range(n_chunks):
        res = fit_weights(g_host_chunk, config, data_chunk, shared_padding=False, epochs_per_chunk=200)
        member_epochs += float(np.sum(res["epochs"]))
        print(f"  full schedule: chunk {i + 1}/{n_chunks} done at {time.perf_counter() - t:.1f} s", flush=True)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    cells = n_chunks * args.stage2_cells
    print(f"stage 2, {cells} cells x 3 lr x 200 epochs (run, compile included): {wall:.1f} s = {wall / 60:.1f} min "
          f"({cpu:.1f} s CPU; {member_epochs:.0f} member-epochs), load {os.getloadavg()[0]:.1f}", flush=True)
    return {"full_cells": cells, "full_wall_s": wall, "full_cpu_s": cpu, "full_member_epochs": member_epochs,
            "full_load": os.getloadavg()[0]}


def _stage2_lines(args, stage2: dict) -> list[str]:
    full = []
    if "full_wall_s" in stage2:
        full = [f"- **{stage2['full_cells']} cells x 3 lr x 200 epochs, run** (chunks of {stage2['cells']} cells, the first "
                f"call's compilation included): {stage2['full_wall_s']:.1f} s = {stage2['full_wall_s'] / 60:.1f} min wall "
                f"({stage2['full_cpu_s']:.1f} s CPU, {stage2['full_member_epochs']:.0f} member-epochs; load "
                f"{stage2['full_load']:.1f} at its end)"]
    return [
        "## Stage 2 per cell vs the PyTorch anchor (same run)",
        "",
        f"- spikejax `stage2.fit_weights`: {stage2['cells']} cells at the anchor's sizes (Long Square 20 x 150, Ramp 3 x 500, "
        f"Noise 1 12 x 1000 bins of 20 ms) x 3 learning rates x {stage2['epochs']} epochs in one compiled program, "
        f"{stage2['warm_s']:.1f} s compiled ({stage2['warm_cpu_s']:.1f} s CPU; {stage2['first_s']:.1f} s first call), "
        f"{1e3 * stage2['per_member_epoch_s']:.2f} ms per (cell, lr, epoch) ({1e3 * stage2['per_member_epoch_cpu_s']:.2f} ms of "
        "CPU time); XLA uses all cores",
        f"- torch anchor (1 thread, {args.anchor_epochs} epochs per lr): {stage2['anchor']}",
        f"- ratio: {stage2['ratio']:.0f}x" if "ratio" in stage2 else "- ratio: n/a",
        f"- 1000 cells x 3 lr x 200 epochs (the original's schedule), extrapolated linearly from the per-cell cost: "
        f"{stage2['full_1000_min']:.1f} min (load {os.getloadavg()[0]:.1f} at the end)",
        *full,
        "",
    ]


def _summary_rows(rows: list[dict], stage2: dict | None) -> list[dict]:
    """The bench-quick rows: stage 2 against the torch anchor, and fit_cells against the fit_cell loop."""
    out = []
    if stage2 is not None:
        out.append({
            "family": "gfr", "workload": f"stage 2, {stage2['cells']} cells at the anchor's sizes, per (cell, lr, epoch)",
            "peer": "gfr_torch_anchor.py (PyTorch, 1 thread)",
            "peer_figure": f"{stage2['anchor_per_epoch_s']:.3f} s" if "anchor_per_epoch_s" in stage2 else stage2["anchor"],
            "spikejax_figure": f"{1e3 * stage2['per_member_epoch_s']:.2f} ms", "ratio": stage2.get("ratio"),
            "compile_s": stage2["first_s"] - stage2["warm_s"],
        })
    for r in rows[-1:]:
        out.append({
            "family": "gfr", "workload": f"fit_cells, {r['cells']} cells", "peer": "fit_cell loop (core.fit per restart and lr)",
            "peer_figure": f"{r['loop_core_per_s']:.3f} cells/s", "spikejax_figure": f"{r['fit_cells_per_s']:.2f} cells/s",
            "ratio": r["speedup_vs_core_loop"], "compile_s": r["fit_cells_first_s"] - r["fit_cells_s"],
        })
    return out


def _write_report(args, rows: list[dict], stage2: dict | None, config, n_distinct: int) -> None:
    """The markdown report (``--out``) and the bench-quick summary rows (``--summary``)."""
    import json

    lines = ["# GFR fitting benchmark (`benchmarks/gfr_fit.py`)", ""]
    if rows:
        dev = jax.devices()[0]
        lines = [
            "# GFR fitting benchmark (`benchmarks/gfr_fit.py`)",
            "",
            f"- Command: `python benchmarks/gfr_fit.py{' --quick' if args.quick else ''}{' --shared_padding' if args.shared_padding else ''}` (sizes {args.sizes})",
            f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, JAX {jax.__version__} on {dev.platform} ({dev.device_kind}); "
            "shared with other jobs while measured, so absolute times are inflated, ratios within the run are comparable",
            f"- Schedule per cell: stage 1 {config.activation_n_epochs} epochs x {config.activation_repeats} restarts; stage 2: "
            f"{len(config.learning_rates)} learning rates x {args.epochs} epochs (3 type-batches per epoch), 20 ms bins",
            f"- `fit_cells(shared_padding={args.shared_padding}, chunk_size={args.chunk_size})`: "
            + ("all type-batches padded to one shape and scanned" if args.shared_padding else "each type-batch padded only to its own largest shape (unrolled)")
            + f"; at most {args.chunk_size} cells per compiled call (one program reused for every chunk)",
            f"- Cells: {n_distinct} distinct synthetic cells (short protocol: 9 Long Square, 1 Ramp, 3+3 noise sweeps) replicated with new ids",
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
    if stage2 is not None:
        lines += _stage2_lines(args, stage2)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    if args.summary:
        Path(args.summary).write_text(json.dumps(_summary_rows(rows, stage2)))


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
    ap.add_argument("--stage2_cells", type=int, default=100, help="cells (anchor sizes) in the stage-2 comparison; 0 skips it")
    ap.add_argument("--stage2_epochs", type=int, default=10, help="epochs per learning rate in the stage-2 comparison")
    ap.add_argument("--anchor_epochs", type=int, default=3, help="epochs per learning rate of the torch anchor")
    ap.add_argument("--full_cells", type=int, default=0,
                    help="also run stage 2 with the original's schedule (3 lr x 200 epochs) on this many cells (chunks of --stage2_cells)")
    ap.add_argument("--summary", default=None, help="write the summary rows as JSON here (make bench-quick)")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.distinct, args.loop_cells, args.activation_epochs, args.epochs = [4, 8], 4, 1, 20, 4
        args.stage2_cells, args.stage2_epochs, args.anchor_epochs = 8, 10, 1
    stage2 = _stage2_vs_anchor(args) if args.stage2_cells > 0 else None
    if not args.sizes:
        _write_report(args, [], stage2, None, 0)
        return 0

    from spikejax.gfr import FitConfig, fit_cell, fit_cells

    config = FitConfig(activation_n_epochs=args.activation_epochs, learning_rates=(1e-2, 1e-3, 1e-4), n_epochs=(args.epochs,) * 3)
    key = jax.random.key(args.seed)
    t0 = time.perf_counter()
    base = _bank(args.distinct, args.seed)
    t_bank = time.perf_counter() - t0
    print(f"bank: {len(base)} distinct cells in {t_bank:.1f} s", flush=True)

    # per-cell loops (compile excluded by a warm-up on another cell, then timed)
    loop_cells = _replicate(base, args.loop_cells + 1)
    fit_cell(loop_cells[0], config, key=key)
    t = time.perf_counter()
    for c in loop_cells[1:]:
        fit_cell(c, config, key=key)
    per_cell_core = (time.perf_counter() - t) / args.loop_cells
    fit_cells([loop_cells[0]], config, key=key, shared_padding=args.shared_padding)
    t = time.perf_counter()
    for c in loop_cells[1:]:
        fit_cells([c], config, key=key, shared_padding=args.shared_padding)
    per_cell_batched = (time.perf_counter() - t) / args.loop_cells
    print(f"per-cell loop: fit_cell {per_cell_core:.2f} s/cell, fit_cells([cell]) {per_cell_batched:.2f} s/cell", flush=True)

    rows = []
    for n in args.sizes:
        cells = _replicate(base, n)
        t = time.perf_counter()
        res = fit_cells(cells, config, key=key, shared_padding=args.shared_padding, chunk_size=args.chunk_size)  # includes compilation
        first = time.perf_counter() - t
        if n <= args.warm_max:
            t = time.perf_counter()
            res = fit_cells(cells, config, key=key, shared_padding=args.shared_padding, chunk_size=args.chunk_size)  # compiled
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

    _write_report(args, rows, stage2, config, len(base))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
