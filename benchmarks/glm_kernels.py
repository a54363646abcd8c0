"""Benchmark: glm.simulate's synaptic kernels (dense / sparse / event) over network size and density.

RectifiedLNP at the tutorial-text parameters (T = 20 lags) on random inhibitory networks (zero diagonal,
summed incoming weight about -0.075) of N neurons at a given density. For each (N, density) every
backend runs the same simulation (same key, identical rasters) once to compile, then the three
backends run in turn ``--reps`` times (interleaved); the table gives the best warm time per step and which backend ``"auto"`` picks
(:func:`spikejax.glm.choose_backend`). Runs are interleaved per point, so a busy machine slows the
three kernels of a point alike; compare within a row.

Usage::

    python benchmarks/glm_kernels.py [--sizes 100,300,1000,3000] [--densities 0.01,0.1,0.5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import numpy as np

from spikejax import glm

TUT = dict(lambda_0=100.0, theta=1e-4, T=20, tau=10.0, dt=0.1, r=0.0025, b=0.001)


def random_inhibitory(n: int, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    W = np.zeros((n, n), np.float32)
    nnz = int(round(density * n * n))
    flat = rng.choice(n * n, size=nnz, replace=False)
    i, j = np.divmod(flat, n)
    keep = i != j
    W[i[keep], j[keep]] = -rng.uniform(0, 2 * 0.075 / max(density * n, 1), size=int(keep.sum())).astype(np.float32)
    return W


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,300,1000,3000")
    ap.add_argument("--densities", default="0.01,0.1,0.5")
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--max-edges", type=float, default=1e6, help="skip (N, density) points with more edges")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    model = glm.RectifiedLNP(**TUT)
    rows = []
    for n in [int(s) for s in a.sizes.split(",")]:
        for dens in [float(s) for s in a.densities.split(",")]:
            if n * n * dens > a.max_edges:
                continue
            net = glm.from_dense(random_inhibitory(n, dens, seed=n))
            # about 5e8 synapse-steps per run (at least 2000 steps, at most 20 000): long enough to time on a busy machine
            steps = int(np.clip(5e8 / max(net.n_edges, 1), 2000, 20_000))
            row = {"n": n, "density": dens, "edges": net.n_edges, "steps": steps, "auto": glm.choose_backend(net)}
            rasters = {}
            runs = {}
            for backend in ("dense", "sparse", "event"):
                def run(backend=backend):
                    return glm.simulate(model, net, n_steps=steps, key=jax.random.key(0), backend=backend,
                                        equilibration_steps=0).spikes.block_until_ready()

                runs[backend] = run
                t0 = time.perf_counter()
                rasters[backend] = np.asarray(run())
                row[f"{backend}_first_s"] = time.perf_counter() - t0
            # interleaved repeats (dense, sparse, event, dense, ...): the best of each
            best = {b: np.inf for b in runs}
            for _ in range(a.reps):
                for backend, run in runs.items():
                    t0 = time.perf_counter()
                    run()
                    best[backend] = min(best[backend], time.perf_counter() - t0)
            for backend in runs:
                row[f"{backend}_ms_per_step"] = 1e3 * best[backend] / steps
            row["same_raster"] = bool(all(np.array_equal(rasters["dense"], r) for r in rasters.values()))
            times = {b: row[f"{b}_ms_per_step"] for b in ("dense", "sparse", "event")}
            row["fastest"] = min(times, key=times.get)
            row["auto_over_fastest"] = times[row["auto"]] / times[row["fastest"]]
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| N | density | edges | dense ms/step | sparse ms/step | event ms/step | fastest | auto | auto / fastest |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['density']:.0%} | {r['edges']} | {r['dense_ms_per_step']:.4f} | {r['sparse_ms_per_step']:.4f} | "
              f"{r['event_ms_per_step']:.4f} | {r['fastest']} | {r['auto']} | {r['auto_over_fastest']:.2f} |")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, jax {jax.__version__}"
    print(f"{machine}; load average {os.getloadavg()}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"rows": rows, "machine": machine, "load": os.getloadavg()}, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
