"""L5 benchmark: (1) a sweep of >= 1000 settings in one compiled call, (2) the JAX simulation
against the float64 NumPy reference of the tests (same model, same run), (3) the debug config
(5 networks x 4 directions x 2500 steps, Slide_BCM) warm, against the NumPy cost anchor
(``shared/anchors/l5_numpy_anchor.py``, one (network, direction) run, 1 BLAS thread) run in the same
benchmark run, with the ratio, (4) cold compile times in fresh processes (``SPIKEJAX_CACHE_DIR=off``).

Usage: python benchmarks/l5.py [--quick] [--n 1000] [--skip-sweep] [--dense] [--out benchmarks/RESULTS_l5.json]

``--dense`` also times the debug configuration with the dense N x N weight carry (the code path
before the low-rank form), in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

# benchmarks measure compilation too: no persistent compilation cache unless asked for
os.environ.setdefault("SPIKEJAX_CACHE_DIR", "off")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from spikejax.l5 import L5Model, L5Params, build_network, debug_config, make_spec, random_settings, simulate, sweep_settings  # noqa: E402
from spikejax.l5.sweep import make_setting_fn  # noqa: E402
from tests.l5.reference import reference_run  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return out, time.perf_counter() - t0


def bench_sweep(n: int, quick: bool) -> dict:
    cfg = debug_config(learning_rule="None", sim_number=1, Ttau=60, threshold_filter="ema",
                       **({"N": [9, 55, 9, 7]} if quick else {}))
    net = build_network(cfg, key=jax.random.PRNGKey(0))
    settings = random_settings(n, key=jax.random.PRNGKey(1))
    # the library call: one compiled program (compile + run)
    res, t_call = timed(lambda: sweep_settings(cfg, settings, net=net))
    # the same program compiled ahead of time, to separate compile and run time
    spec = make_spec(cfg, record_weights=False)
    f = jax.jit(jax.vmap(make_setting_fn(cfg, spec), in_axes=(0, None, None)))
    p0 = L5Params.from_config(cfg)
    t0 = time.perf_counter()
    compiled = f.lower({"amplitude": settings["amplitude"]}, p0, net).compile()
    t_compile = time.perf_counter() - t0
    _, t_run = timed(lambda: compiled({"amplitude": random_settings(n, key=jax.random.PRNGKey(2))["amplitude"]}, p0, net))
    ok = np.asarray((res["os_rel"] < 0) & (res["ds_rel"] > 0))
    return {"n_settings": n, "neurons": sum(cfg.N), "steps": cfg.n_steps, "directions": 4,
            "seconds_sweep_settings_call_incl_compile": round(t_call, 2), "seconds_compile": round(t_compile, 2),
            "seconds_run_compiled": round(t_run, 2), "settings_per_s": round(n / t_run, 1),
            "neuron_steps_per_s": round(n * 4 * sum(cfg.N) * cfg.n_steps / t_run, 0),
            "fraction_os_rel<0_and_ds_rel>0": float(ok.mean())}


def bench_vs_numpy(quick: bool) -> dict:
    cfg = debug_config(sim_number=1, degree=[0.0], Ttau=60 if quick else 100, number_steps_before_learning=100,
                       **({"N": [9, 55, 9, 7]} if quick else {}))
    net = build_network(cfg, key=jax.random.PRNGKey(0))
    p = L5Params.from_config(cfg)
    spec = make_spec(cfg, record_weights=False)
    _, t_compile = timed(lambda: simulate(L5Model(p, net, spec)).rates)
    out, t_jax = timed(lambda: simulate(L5Model(p, net, spec)).rates)
    t0 = time.perf_counter()
    r_ref, _ = reference_run(W0=np.asarray(net.W[0], float), r0=np.asarray(net.r0[0], float), a=np.asarray(net.pos_a[0], float),
                             b=np.asarray(net.pos_b[0], float), theta=0.0, N=cfg.N, amplitude=cfg.amplitude,
                             steady=cfg.steady_input, tau=cfg.tau, dt=cfg.dt, steps=cfg.n_steps,
                             n_before=cfg.number_steps_before_learning, tau_learn=cfg.tau_learn,
                             tau_threshold=cfg.tau_threshold, rule=cfg.learning_rule, integrator=cfg.integrator)
    t_np = time.perf_counter() - t0
    blocks_ref = r_ref.reshape(-1, cfg.block, r_ref.shape[1]).mean(1)
    err = float(np.max(np.abs(np.asarray(out[0, 0]) - blocks_ref)) / np.max(np.abs(blocks_ref)))
    # batched: the debug protocol's 5 sims x 4 directions in one JAX call
    cfg20 = cfg.replace(sim_number=5, degree=[0.0, 90.0, 180.0, 270.0])
    net20 = build_network(cfg20, key=jax.random.PRNGKey(0))
    spec20 = make_spec(cfg20, record_weights=False)
    p20 = L5Params.from_config(cfg20)
    timed(lambda: simulate(L5Model(p20, net20, spec20)).rates)
    _, t_jax20 = timed(lambda: simulate(L5Model(p20, net20, spec20)).rates)
    return {"rule": cfg.learning_rule, "neurons": sum(cfg.N), "steps": cfg.n_steps,
            "numpy_float64_seconds_1_run": round(t_np, 3), "jax_float32_seconds_1_run": round(t_jax, 3),
            "jax_compile_seconds": round(t_compile, 2), "speedup_1_run": round(t_np / t_jax, 1),
            "jax_seconds_20_runs_one_call": round(t_jax20, 3), "speedup_20_runs_vs_20x_numpy": round(20 * t_np / t_jax20, 1),
            "max_rel_diff_block_rates_f32_vs_f64": err}


def bench_debug(quick: bool, dense: bool = False) -> dict:
    from spikejax.l5 import run

    cfg = debug_config(**({"N": [9, 55, 9, 7], "sim_number": 2} if quick else {}))
    load0 = os.getloadavg()[0]
    key = jax.random.PRNGKey(cfg.seed)
    res, t_first = timed(lambda: run(cfg, key=key).head_loss)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        res = run(cfg, key=key)
        times.append(time.perf_counter() - t0)
    out = {"config": "quick (N=[9,55,9,7], 2 networks)" if quick else "debug (5 networks x 4 directions x 2500 steps)",
           "debug_config_seconds_first_incl_compile": round(t_first, 2),
           "debug_config_seconds": round(min(times), 2), "debug_config_seconds_all": [round(t, 2) for t in times],
           "load_average_1min": [round(load0, 2), round(os.getloadavg()[0], 2)], "summary_info": res.summary_info,
           "head_loss": res.head_loss}
    if dense:
        from spikejax.l5 import L5Model, L5Params, make_spec, simulate
        from spikejax.l5.network import build_network as bn

        net = bn(cfg, key=jax.random.PRNGKey(cfg.seed))
        p = L5Params.from_config(cfg)
        sp_d = make_spec(cfg, dense_weights=True)
        sp_l = make_spec(cfg)
        timed(lambda: simulate(L5Model(p, net, sp_d)).rates)
        o_d, t_d = timed(lambda: simulate(L5Model(p, net, sp_d)))
        o_l, t_l = timed(lambda: simulate(L5Model(p, net, sp_l)))
        rd, rl = np.asarray(o_d.rates), np.asarray(o_l.rates)
        wd, wl = np.asarray(o_d.W_final), np.asarray(o_l.W_final)
        out["simulate_seconds_dense_weights"] = round(t_d, 2)
        out["simulate_seconds_low_rank"] = round(t_l, 3)
        out["speedup_low_rank_vs_dense"] = round(t_d / t_l, 1)
        out["max_rel_diff_rates_low_rank_vs_dense_f32"] = float(np.max(np.abs(rd - rl)) / np.max(np.abs(rd)))
        out["max_rel_diff_W_final_low_rank_vs_dense_f32"] = float(np.max(np.abs(wd - wl)) / np.max(np.abs(wd)))
    return out


ANCHOR = ROOT.parent / "shared" / "anchors" / "l5_numpy_anchor.py"


def bench_anchor() -> dict:
    """One (network, direction) run of the NumPy anchor, 1 BLAS thread, in a subprocess of this run."""
    if not ANCHOR.exists():
        return {"skipped": f"anchor not found at {ANCHOR}"}
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(ANCHOR)], capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - t0
    m = re.search(r"Slide_BCM\): ([0-9.]+) s", p.stdout)
    per_run = float(m.group(1)) if m else wall
    return {"anchor": str(ANCHOR.name), "anchor_seconds_per_run": round(per_run, 2),
            "anchor_seconds_per_configuration_20_runs": round(20 * per_run, 1),
            "load_average_1min": [round(load0, 2), round(os.getloadavg()[0], 2)], "stdout": p.stdout.strip()}


COLD_SNIPPET = """
import os, time, json
def clock():
    return time.perf_counter(), time.process_time()
def since(c):
    return time.perf_counter() - c[0], time.process_time() - c[1]
c = clock()
import jax
from spikejax.l5 import L5Model, L5Params, build_network, debug_config, make_spec, run, simulate
res = dict(import_s=since(c))
cfg = debug_config(sim_number=1, degree=[0.0]{extra})
c = clock(); net = build_network(cfg, key=jax.random.PRNGKey(0)); jax.block_until_ready(net.W)
res["build_network_first_s"] = since(c)
p = L5Params.from_config(cfg); spec = make_spec(cfg)
c = clock(); jax.block_until_ready(simulate(L5Model(p, net, spec)).rates); res["simulate_1x1_first_s"] = since(c)
c = clock(); jax.block_until_ready(simulate(L5Model(p, net, spec)).rates); res["simulate_1x1_warm_s"] = since(c)
cfg4 = debug_config(sim_number=1{extra})
k4 = jax.random.PRNGKey(0)
c = clock(); run(cfg4, key=k4); res["run_1x4_first_s"] = since(c)
c = clock(); run(cfg4, key=k4); res["run_1x4_warm_s"] = since(c)
print(json.dumps(res))
"""


def bench_cold(quick: bool) -> dict:
    """Cold first calls in a fresh process with the persistent compilation cache off."""
    extra = ", N=[9, 55, 9, 7]" if quick else ""
    env = {**os.environ, "SPIKEJAX_CACHE_DIR": "off"}
    load0 = os.getloadavg()[0]
    p = subprocess.run([sys.executable, "-c", COLD_SNIPPET.format(extra=extra)], capture_output=True, text=True,
                       env=env, cwd=str(ROOT), check=True)
    raw = json.loads(p.stdout.strip().splitlines()[-1])
    # wall seconds, and process CPU seconds (all threads): on a loaded machine the wall time of a
    # single-threaded compile is inflated by the wait for a core, its CPU time much less
    res = {k: round(v[0], 2) for k, v in raw.items()}
    res.update({k[:-2] + "_cpu_s": round(v[1], 2) for k, v in raw.items()})
    res["first_result_1x1_s"] = round(res["build_network_first_s"] + res["simulate_1x1_first_s"], 2)
    res["first_result_1x1_cpu_s"] = round(res["build_network_first_cpu_s"] + res["simulate_1x1_first_cpu_s"], 2)
    res["load_average_1min"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    return res


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--skip-sweep", action="store_true", help="skip (1) and (2), the long sweep and reference runs")
    ap.add_argument("--dense", action="store_true", help="also time the dense weight carry (the previous code path)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--summary", default=None, help="write the debug-configuration row for make bench-quick here (JSON)")
    args = ap.parse_args(argv)
    n = 16 if args.quick and args.n == 1000 else args.n
    res = {"machine": f"{platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} jax={jax.__version__} "
                      f"backend={jax.default_backend()}",
           "load_average_at_start": os.getloadavg()}
    if not args.skip_sweep:
        res["sweep"] = bench_sweep(n, args.quick)
        res["jax_vs_numpy"] = bench_vs_numpy(args.quick)
    res["cold"] = bench_cold(args.quick)
    res["anchor"] = bench_anchor()
    res["debug"] = bench_debug(args.quick, dense=args.dense)
    res["anchor_after"] = bench_anchor()
    if "anchor_seconds_per_run" in res["anchor"]:
        a = 0.5 * (res["anchor"]["anchor_seconds_per_run"] + res["anchor_after"]["anchor_seconds_per_run"])
        runs = 20 if not args.quick else None
        if runs:
            res["ratio_anchor_configuration_vs_spikejax_debug_warm"] = round(20 * a / res["debug"]["debug_config_seconds"], 1)
    res["load_average_at_end"] = os.getloadavg()
    print(json.dumps(res, indent=1, default=str))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    if args.summary:
        a = res["anchor"].get("anchor_seconds_per_run")
        ratio = res.get("ratio_anchor_configuration_vs_spikejax_debug_warm")
        row = {"workload": f"L5 run(debug_config()): {res['debug']['config']}, Slide_BCM, warm",
               "peer": "l5_numpy_anchor.py (NumPy, 1 BLAS thread), 20 runs" if a else res["anchor"].get("skipped"),
               "peer_figure": f"{20 * a:.1f} s ({a:.2f} s per run)" if a else None,
               "spikejax_figure": f"{res['debug']['debug_config_seconds']:.2f} s",
               "ratio": ratio, "compile_s": res["cold"].get("first_result_1x1_s")}
        Path(args.summary).write_text(json.dumps([row], default=str))
    return res


if __name__ == "__main__":
    main()
