"""Gradient-based tuning of input amplitudes, time constants and type-level weights toward
os_rel < 0 and ds_rel > 0, checked on fresh seeds with the exact metrics.

python examples/l5_tune.py [--quick] [--epochs 40] [--check-sims 20]
"""

import argparse
import json

import jax

from spikejax.l5 import L5Params, check_tuned, debug_config, tune

ap = argparse.ArgumentParser()
ap.add_argument("--quick", action="store_true")
ap.add_argument("--epochs", type=int, default=40)
ap.add_argument("--train-sims", type=int, default=3)
ap.add_argument("--check-sims", type=int, default=20)
ap.add_argument("--seed", type=int, default=1)
args = ap.parse_args()
if args.quick:
    cfg = debug_config(N=[9, 55, 9, 7], learning_rule="None", threshold_filter="ema", sim_number=1, Ttau=60)
    n_epochs, check_sims = 3, 2
else:
    cfg = debug_config(learning_rule="None", threshold_filter="ema", sim_number=args.train_sims, Ttau=80)
    n_epochs, check_sims = args.epochs, args.check_sims
res = tune(cfg, key=jax.random.PRNGKey(args.seed), n_epochs=n_epochs, learning_rate=0.05, margin=0.35)
fresh = jax.random.PRNGKey(10_000 + args.seed)
before = check_tuned(cfg, L5Params.from_config(cfg), key=fresh, sim_number=check_sims)
after = check_tuned(cfg, res.model, key=fresh, sim_number=check_sims)
keys = ("os_rel", "os_rel_sd", "os_rel_exp_sd", "ds_rel", "ds_rel_sd", "ds_rel_exp_sd", "act_mean", "OS_mean", "DS_mean")
print(json.dumps({"tuned": res.summary(),
                  "initial_fresh": {k: before.get(k) for k in keys},
                  "tuned_fresh": {k: after.get(k) for k in keys}}, indent=1))
