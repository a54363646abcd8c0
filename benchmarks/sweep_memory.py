"""Memory-bounded sweeps: ``l5.sweep_settings`` with 1000 settings of the debug configuration.

For 1000 ``amplitude`` settings and 1000 ``tau_threshold`` settings, prints XLA's memory analysis
(bytes per device) of the unbounded program and of the chunked program that ``memory_budget``
picks (default 4 GB), and the chosen chunk. ``--run`` also runs the bounded sweep (slow on a small
CPU) and ``--check N`` compares the first N settings' numbers with an unbounded run.

    python benchmarks/sweep_memory.py [--budget 4e9] [--n 1000] [--run] [--check 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import numpy as np

import spikejax.core  # noqa: F401
from spikejax import l5
from spikejax.l5.model import L5Params, make_spec
from spikejax.l5.sweep import _setting_fn

S = sys.modules["spikejax.core.sweep"]
GB = 1e9


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=4e9)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--run", action="store_true", help="also run the bounded amplitude sweep")
    ap.add_argument("--check", type=int, default=0, help="compare N settings bounded vs unbounded")
    args = ap.parse_args(argv)
    cfg = l5.debug_config()
    net = l5.build_network(cfg, key=jax.random.PRNGKey(cfg.seed))
    p0 = L5Params.from_config(cfg)
    rows = []
    cases = {
        "amplitude": {"amplitude": l5.random_settings(args.n, key=jax.random.PRNGKey(1))["amplitude"]},
        "tau_threshold": {"tau_threshold": np.linspace(0.5, 3.0, args.n, dtype=np.float32)},
    }
    for name, settings in cases.items():
        spec = make_spec(cfg, record_weights=False, capacity=cfg.n_steps + 1 if name == "tau_threshold" else None)
        one = _setting_fn(cfg, spec)
        t0 = time.perf_counter()
        plan = S.plan_chunks(one, settings, p0, net, memory_budget=args.budget)
        dt = time.perf_counter() - t0
        u, m = plan["unbounded_memory"], plan["memory"]
        row = {"sweep": name, "n": args.n, "devices": plan["n_devices"], "budget_GB": args.budget / GB,
               "unbounded_temp_GB": u["temp"] / GB, "unbounded_peak_GB": u["peak"] / GB, "chunk": plan["chunk_size"],
               "steps": None if plan["chunk_size"] is None else -(-plan["per_device"] // plan["chunk_size"]),
               "bounded_temp_GB": m["temp"] / GB, "bounded_peak_GB": m["peak"] / GB, "plan_s": dt}
        rows.append(row)
        print(json.dumps(row), flush=True)
        assert m["peak"] <= args.budget
    if args.check:
        # the first N settings: unbounded (all N vmapped at once), under a budget of a third of that
        # (chunks), and one setting at a time; per setting the largest difference over the summaries
        k = args.check
        small = {"amplitude": cases["amplitude"]["amplitude"][:k]}
        spec = make_spec(cfg, record_weights=False)
        one = _setting_fn(cfg, spec)
        free = S.sweep(one, small, p0, net, memory_budget=None)
        full = S.plan_chunks(one, small, p0, net, memory_budget=None)["memory"]["peak"]
        plan = S.plan_chunks(one, small, p0, net, memory_budget=full / 3)
        bounded = S.sweep(one, small, p0, net, memory_budget=full / 3)
        single = S.sweep(one, small, p0, net, chunk_size=1)

        def per_setting(a, b):
            d = np.zeros(k)
            for key in a:
                x, y = np.asarray(a[key], np.float64).reshape(k, -1), np.asarray(b[key], np.float64).reshape(k, -1)
                diff = np.where(np.isnan(x) & np.isnan(y), 0.0, np.abs(x - y))
                d = np.maximum(d, np.nan_to_num(diff, nan=np.inf).max(axis=1))
            return d.tolist()

        print(json.dumps({"check_settings": k, "check_chunk": plan["chunk_size"],
                          "bounded_vs_unbounded": per_setting(bounded, free),
                          "bounded_vs_one_at_a_time": per_setting(bounded, single),
                          "unbounded_vs_one_at_a_time": per_setting(free, single),
                          "not_eq_counter": np.asarray(free["not_eq_counter"]).tolist()}), flush=True)
    if args.run:
        t0 = time.perf_counter()
        res = l5.sweep_settings(cfg, cases["amplitude"], net=net, memory_budget=args.budget)
        jax.block_until_ready(res)
        print(json.dumps({"run_s": time.perf_counter() - t0, "nan_settings": int(np.sum(np.asarray(res["nan_counter"]) > 0))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
