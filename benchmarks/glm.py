"""Benchmark: spikejax.glm vs spikeometric 1.0.3 (PyTorch Geometric, CPU) on the same connectivity.

Measures simulation throughput (steps/s) of RectifiedLNP (tutorial-text parameters) on random
inhibitory networks of 100, 1000 and 10 000 neurons at 10 % and 1 % density, for T = 20 and 200
lags, and the wall time of the tutorial ``tune`` (Mexican-hat rings, theta tuned towards 62.5 Hz).
Both libraries run in this one process on the same matrices. Compile time of spikejax is measured
separately (first call) and excluded from the throughput, as is spikeometric's first call.

Usage::

    python benchmarks/glm.py [--quick] [--out benchmarks/RESULTS_glm.md] [--budget 4]

Needs ``pip install spikeometric torch_geometric`` and a CPU torch (the ``bench`` extra). If
spikeometric is missing the spikejax numbers are still reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from spikejax import glm

TUT = dict(lambda_0=100.0, theta=1e-4, tau=10.0, dt=0.1, r=0.0025, b=0.001)


def random_inhibitory(n: int, density: float, seed: int) -> np.ndarray:
    """Random sparse inhibitory matrix (zero diagonal) with summed incoming weight about -0.075 per neuron."""
    rng = np.random.default_rng(seed)
    W = np.zeros((n, n), np.float32)
    nnz = int(round(density * n * n))
    flat = rng.choice(n * n, size=nnz, replace=False)
    i, j = np.divmod(flat, n)
    keep = i != j
    i, j = i[keep], j[keep]
    mean_w = 0.075 / max(density * n, 1)
    W[i, j] = -rng.uniform(0, 2 * mean_w, size=i.size).astype(np.float32)
    return W


def time_it(fn, budget: float, min_reps: int = 1):
    """Median wall time of ``fn()`` over repeats until ``budget`` seconds are spent."""
    ts = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        if len(ts) >= min_reps and time.perf_counter() - start > budget:
            break
        if len(ts) >= 5:
            break
    return float(np.median(ts))


def bench_spikejax(W: np.ndarray, T: int, budget: float, n_steps: int):
    net = glm.from_dense(W)
    model = glm.RectifiedLNP(T=T, **TUT)
    key = jax.random.key(0)
    t0 = time.perf_counter()
    glm.simulate(model, net, n_steps=n_steps, key=key, equilibration_steps=0).spikes.block_until_ready()
    first = time.perf_counter() - t0
    dt = time_it(lambda: glm.simulate(model, net, n_steps=n_steps, key=key, equilibration_steps=0).spikes.block_until_ready(), budget)
    x = glm.simulate(model, net, n_steps=n_steps, key=key, equilibration_steps=0)
    rate = glm.population_rate(x, 0.1)
    backend = glm.choose_backend(net)
    return {"steps_per_s": n_steps / dt, "compile_plus_first_s": first, "n_steps": n_steps, "rate_hz": rate, "backend": backend}


def bench_spikeometric(W: np.ndarray, T: int, budget: float, max_bytes: float):
    import torch
    from spikeometric.models import RectifiedLNP as SRectifiedLNP
    from torch_geometric.data import Data

    Wt = torch.from_numpy(W)
    ei = Wt.nonzero().T
    data = Data(edge_index=ei, W0=Wt[ei[0], ei[1]], num_nodes=W.shape[0])
    E = int(ei.shape[1])
    need = E * T * 4 * 3  # kernel [E, T] + gathered window [E, T] + product
    if need > max_bytes:
        return {"skipped": f"needs about {need / 2**30:.1f} GiB for its [E={E}, T={T}] tensors (limit {max_bytes / 2**30:.1f} GiB)"}
    model = SRectifiedLNP(T=T, rng=torch.Generator().manual_seed(0), **TUT)
    n = 2
    model.simulate(data, n, verbose=False, equilibration_steps=0)  # warm-up
    while True:
        t0 = time.perf_counter()
        x = model.simulate(data, n, verbose=False, equilibration_steps=0)
        dt = time.perf_counter() - t0
        if dt > budget or n >= 2000:
            break
        n = int(min(2000, max(2 * n, n * budget / max(dt, 1e-3))))
    return {"steps_per_s": n / dt, "n_steps": n, "rate_hz": float(x.float().mean()) / 0.1 * 1000}


def bench_tune(quick: bool, have_spikeometric: bool, budget_tune: bool = True):
    """Tutorial tune: RectifiedLNP (text parameters, T=20) on 5 Mexican-hat rings, theta -> 62.5 Hz."""
    n_epochs = 10 if quick else 100
    n_steps = 100
    mats = glm.MexicanHatGenerator(100).matrices(5)
    nets = [glm.from_dense(m) for m in mats]
    net = glm.batch_networks(nets)
    model = glm.RectifiedLNP(T=20, **TUT)
    out = {"n_epochs": n_epochs, "n_steps_per_epoch": n_steps, "networks": "5 x 100-neuron Mexican-hat rings (a=1.0015, s1=6.98, s2=7)"}
    mf_theta = float(glm.mean_field_theta(model, net, 62.5))
    out["mean_field_theta"] = mf_theta

    def indep_rate(m, seed=123, steps=20000):
        x = glm.simulate(m, net, n_steps=steps, key=jax.random.key(seed))
        return glm.population_rate(x, 0.1)

    # spikejax, spikeometric's estimator, same settings as spikeometric (lr=1e-5 absolute)
    res = glm.tune(model, net, 62.5, ["theta"], key=jax.random.key(1), estimator="spikeometric", learning_rate=1e-5, n_steps=n_steps, n_epochs=n_epochs)
    out["spikejax_compat"] = {"seconds_incl_compile": res.seconds, "theta": float(res.model.theta), "rate_after_hz": indep_rate(res.model)}
    res = glm.tune(model, net, 62.5, ["theta"], key=jax.random.key(1), estimator="spikeometric", learning_rate=1e-5, n_steps=n_steps, n_epochs=n_epochs)
    out["spikejax_compat"]["seconds_warm"] = res.seconds
    # spikejax default estimator (stationary chain, gradient through the recurrence)
    res = glm.tune(model, net, 62.5, ["theta"], key=jax.random.key(2), n_epochs=n_epochs)
    out["spikejax_default"] = {"seconds_incl_compile": res.seconds, "theta": float(res.model.theta), "rate_after_hz": indep_rate(res.model), "n_steps_per_epoch": 200}
    res = glm.tune(model, net, 62.5, ["theta"], key=jax.random.key(2), n_epochs=n_epochs)
    out["spikejax_default"]["seconds_warm"] = res.seconds
    if have_spikeometric:
        import torch
        from spikeometric.models import RectifiedLNP as SRectifiedLNP
        from torch_geometric.data import Data
        from torch_geometric.loader import DataLoader

        datas = []
        for m in mats:
            Wt = torch.from_numpy(m)
            ei = Wt.nonzero().T
            datas.append(Data(edge_index=ei, W0=Wt[ei[0], ei[1]], num_nodes=m.shape[0]))
        data = next(iter(DataLoader(datas, batch_size=5)))
        smodel = SRectifiedLNP(T=20, rng=torch.Generator().manual_seed(0), **TUT)
        t0 = time.perf_counter()
        smodel.tune(data, 62.5, tunable_parameters=["theta"], lr=1e-5, n_steps=n_steps, n_epochs=n_epochs, verbose=False)
        sec = time.perf_counter() - t0
        theta = float(smodel.theta)
        out["spikeometric"] = {"seconds": sec, "theta": theta, "rate_after_hz": indep_rate(model.replace(theta=theta))}
        x = smodel.simulate(data, 5000 if not quick else 1000, verbose=False)
        out["spikeometric"]["rate_after_own_sim_hz"] = float(x.float().mean()) / 0.1 * 1000
        # paired: spikejax again right after spikeometric (same load), both estimators
        res = glm.tune(model, net, 62.5, ["theta"], key=jax.random.key(1), estimator="spikeometric", learning_rate=1e-5, n_steps=n_steps, n_epochs=n_epochs)
        out["spikejax_compat"]["seconds_warm_after"] = res.seconds
        res = glm.tune(model, net, 62.5, ["theta"], key=jax.random.key(2), n_epochs=n_epochs)
        out["spikejax_default"]["seconds_warm_after"] = res.seconds
    out["load_avg"] = os.getloadavg()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only (smoke test)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS_glm.md")))
    ap.add_argument("--json", default=None, help="also write raw numbers as JSON")
    ap.add_argument("--summary", default=None, help="write the tune row for make bench-quick here (JSON)")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds per timed measurement")
    ap.add_argument("--max-gib", type=float, default=3.0, help="skip spikeometric runs needing more memory than this")
    ap.add_argument("--no-tune", action="store_true")
    ap.add_argument("--no-sim", action="store_true", help="skip the throughput table (tune only)")
    ap.add_argument("--no-spikeometric", action="store_true", help="spikejax only")
    ap.add_argument("--sizes", default=None, help="comma-separated network sizes (default 100,1000,10000)")
    ap.add_argument("--Ts", default=None, help="comma-separated kernel lengths (default 20,200)")
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a shared, oversubscribed machine torch's OpenMP spin-waits "
        "make 2 threads up to 100x slower for mid-size tensors; 1 thread is spikeometric's best case here)",
    )
    args = ap.parse_args(argv)
    try:
        import spikeometric.models  # noqa: F401
        import torch

        torch.set_num_threads(args.torch_threads)

        have = True
        torch_version = torch.__version__
        torch_threads = torch.get_num_threads()
        if args.no_spikeometric:
            raise ImportError("skipped by --no-spikeometric")
    except Exception as exc:  # report exactly why
        have = False
        torch_version = f"unavailable ({type(exc).__name__}: {exc})"
        torch_threads = 0
    sizes = [100, 1000] if args.quick else [100, 1000, 10000]
    densities = [0.1, 0.01]
    Ts = [20] if args.quick else [20, 200]
    if args.sizes:
        sizes = [int(v) for v in args.sizes.split(",")]
    if args.Ts:
        Ts = [int(v) for v in args.Ts.split(",")]
    rows = []
    for n in [] if args.no_sim else sizes:
        for density in densities:
            W = random_inhibitory(n, density, seed=n + int(density * 1000))
            for T in Ts:
                steps = 2000 if args.quick else (20000 if n <= 1000 else 5000)
                sj = bench_spikejax(W, T, args.budget, steps)
                sm = bench_spikeometric(W, T, args.budget, args.max_gib * 2**30) if have else {"skipped": "spikeometric not installed"}
                row = {"N": n, "density": density, "edges": int((W != 0).sum()), "T": T, "spikejax": sj, "spikeometric": sm}
                if "steps_per_s" in sm:
                    row["speedup"] = sj["steps_per_s"] / sm["steps_per_s"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    tune_res = None if args.no_tune else bench_tune(args.quick, have)
    if tune_res:
        print(json.dumps(tune_res), flush=True)
    write_report(args, rows, tune_res, torch_version, torch_threads)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "tune": tune_res}, indent=1))
    if args.summary and tune_res is not None:
        c = tune_res["spikejax_compat"]
        warm = max(c["seconds_warm"], c.get("seconds_warm_after", c["seconds_warm"]))
        s = tune_res.get("spikeometric")
        row = {"workload": f"GLM tutorial tune, 5 rings x 100 neurons, {tune_res['n_epochs']} epochs x "
                           f"{tune_res['n_steps_per_epoch']} steps, spikeometric's estimator (warm, slower of two runs)",
               "peer": "spikeometric tune" if s else "spikeometric not installed",
               "peer_figure": f"{s['seconds']:.1f} s, {s['rate_after_hz']:.2f} Hz" if s else None,
               "spikejax_figure": f"{warm:.2f} s, {c['rate_after_hz']:.2f} Hz",
               "ratio": s["seconds"] / warm if s else None,
               "compile_s": c["seconds_incl_compile"] - c["seconds_warm"]}
        Path(args.summary).write_text(json.dumps([row]))
    return 0


def write_report(args, rows, tune_res, torch_version, torch_threads):
    lines = [
        "# spikejax.glm vs spikeometric: benchmark results",
        "",
        f"- command: `python benchmarks/glm.py{' --quick' if args.quick else ''} --budget {args.budget}`",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}; "
        f"python {sys.version.split()[0]}, jax {jax.__version__} ({jax.default_backend()}), torch {torch_version} ({torch_threads} threads)",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "- model: RectifiedLNP, tutorial-text parameters (lambda_0=100, theta=1e-4, tau=10 ms, dt=0.1 ms, r=0.0025, b=0.001)",
        "- networks: random inhibitory matrices (summed incoming weight about -0.075), same matrix for both libraries",
        "- throughput excludes spikejax's compile (first call, reported separately) and spikeometric's warm-up call",
        "- NOTE: the machine was shared with other jobs while this ran (load average well above the core count), so absolute "
        "numbers are noisy; both libraries ran interleaved under the same load.",
        "",
        "## Simulation throughput (steps/s)",
        "",
        "| N | density | edges | T | spikejax steps/s | spikejax kernel | spikejax compile+first (s) | spikeometric steps/s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sj, sm = r["spikejax"], r["spikeometric"]
        sms = f"{sm['steps_per_s']:.1f}" if "steps_per_s" in sm else f"skipped: {sm['skipped']}"
        sp = f"{r['speedup']:.0f}x" if "speedup" in r else "-"
        lines.append(
            f"| {r['N']} | {r['density']:.0%} | {r['edges']} | {r['T']} | {sj['steps_per_s']:.0f} | {sj['backend']} | "
            f"{sj['compile_plus_first_s']:.1f} | {sms} | {sp} |"
        )
    if tune_res:
        lines += [
            "",
            "## Tutorial tune (theta -> 62.5 Hz; RectifiedLNP text parameters, T=20, 5 Mexican-hat rings of 100 neurons)",
            "",
            f"{tune_res['n_epochs']} epochs. Mean-field theta* = {tune_res['mean_field_theta']:.6g}. "
            "'rate after' is an independent 20 000-step spikejax simulation of the tuned model.",
            "",
            "| run | wall time (s) | tuned theta | rate after (Hz) |",
            "|---|---|---|---|",
        ]
        c = tune_res["spikejax_compat"]
        lines.append(f"| spikejax, spikeometric estimator (100 steps/epoch, lr=1e-5), incl. compile | {c['seconds_incl_compile']:.1f} | {c['theta']:.6g} | {c['rate_after_hz']:.2f} |")
        lines.append(f"| spikejax, spikeometric estimator, warm (compiled), before / after spikeometric | {c['seconds_warm']:.2f} / {c.get('seconds_warm_after', float('nan')):.2f} | | |")
        d = tune_res["spikejax_default"]
        lines.append(f"| spikejax default (stationary chain, BPTT, 200 steps/epoch), incl. compile | {d['seconds_incl_compile']:.1f} | {d['theta']:.6g} | {d['rate_after_hz']:.2f} |")
        lines.append(f"| spikejax default, warm, before / after spikeometric | {d['seconds_warm']:.2f} / {d.get('seconds_warm_after', float('nan')):.2f} | | |")
        if "spikeometric" in tune_res:
            s = tune_res["spikeometric"]
            lines.append(f"| spikeometric tune (100 steps/epoch, lr=1e-5) | {s['seconds']:.1f} | {s['theta']:.6g} | {s['rate_after_hz']:.2f} (spikeometric 5000-step sim: {s['rate_after_own_sim_hz']:.2f}) |")
            lines.append("")
            warm = max(c["seconds_warm"], c["seconds_warm_after"])
            lines.append(
                f"Speed-up on tune (same estimator and settings, warm, the slower of the two paired spikejax runs): "
                f"{s['seconds'] / warm:.1f}x; including spikejax's compile: {s['seconds'] / c['seconds_incl_compile']:.1f}x; "
                f"the stationary estimator (warm): {s['seconds'] / max(d['seconds_warm'], d['seconds_warm_after']):.1f}x. "
                f"Load average after the tune runs: {', '.join(f'{v:.1f}' for v in tune_res['load_avg'])}."
            )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
