"""L5 benchmark: (1) a sweep of >= 1000 settings in one compiled call, (2) the JAX simulation
against the float64 NumPy reference of the tests (same model, same run), (3) the debug config.

Usage: python benchmarks/l5.py [--quick] [--n 1000] [--out benchmarks/RESULTS_l5.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from spikejax.l5 import L5Params, build_network, debug_config, make_spec, random_settings, simulate, sweep_settings  # noqa: E402
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
    return {"n_settings": n, "neurons": sum(cfg.N), "steps": cfg.steps, "directions": 4,
            "seconds_sweep_settings_call_incl_compile": round(t_call, 2), "seconds_compile": round(t_compile, 2),
            "seconds_run_compiled": round(t_run, 2), "settings_per_s": round(n / t_run, 1),
            "neuron_steps_per_s": round(n * 4 * sum(cfg.N) * cfg.steps / t_run, 0),
            "fraction_os_rel<0_and_ds_rel>0": float(ok.mean())}


def bench_vs_numpy(quick: bool) -> dict:
    cfg = debug_config(sim_number=1, degree=[0.0], Ttau=60 if quick else 100, number_steps_before_learning=100,
                       **({"N": [9, 55, 9, 7]} if quick else {}))
    net = build_network(cfg, key=jax.random.PRNGKey(0))
    p = L5Params.from_config(cfg)
    spec = make_spec(cfg, record_weights=False)
    _, t_compile = timed(lambda: simulate(p, net, spec).rates)
    out, t_jax = timed(lambda: simulate(p, net, spec).rates)
    t0 = time.perf_counter()
    r_ref, _ = reference_run(W0=np.asarray(net.W[0], float), r0=np.asarray(net.r0[0], float), a=np.asarray(net.pos_a[0], float),
                             b=np.asarray(net.pos_b[0], float), theta=0.0, N=cfg.N, amplitude=cfg.amplitude,
                             steady=cfg.steady_input, tau=cfg.tau, dt=cfg.delta_t, steps=cfg.steps,
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
    timed(lambda: simulate(p20, net20, spec20).rates)
    _, t_jax20 = timed(lambda: simulate(p20, net20, spec20).rates)
    return {"rule": cfg.learning_rule, "neurons": sum(cfg.N), "steps": cfg.steps,
            "numpy_float64_seconds_1_run": round(t_np, 3), "jax_float32_seconds_1_run": round(t_jax, 3),
            "jax_compile_seconds": round(t_compile, 2), "speedup_1_run": round(t_np / t_jax, 1),
            "jax_seconds_20_runs_one_call": round(t_jax20, 3), "speedup_20_runs_vs_20x_numpy": round(20 * t_np / t_jax20, 1),
            "max_rel_diff_block_rates_f32_vs_f64": err}


def bench_debug(quick: bool) -> dict:
    from spikejax.l5 import run

    cfg = debug_config(**({"N": [9, 55, 9, 7], "sim_number": 2} if quick else {}))
    res, t_first = timed(lambda: run(cfg).loss)
    t0 = time.perf_counter()
    res = run(cfg)
    t = time.perf_counter() - t0
    return {"debug_config_seconds_first_incl_compile": round(t_first, 2), "debug_config_seconds": round(t, 2),
            "summary_info": res.summary_info}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    n = 16 if args.quick and args.n == 1000 else args.n
    res = {"machine": f"{platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} jax={jax.__version__} "
                      f"backend={jax.default_backend()}",
           "load_average_at_start": os.getloadavg(),
           "sweep": bench_sweep(n, args.quick), "jax_vs_numpy": bench_vs_numpy(args.quick), "debug": bench_debug(args.quick)}
    print(json.dumps(res, indent=1, default=str))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    return res


if __name__ == "__main__":
    main()
