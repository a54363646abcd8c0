"""Gradient-based tuning of input amplitudes, time constants and type-level weights toward
os_rel < 0 and ds_rel > 0, checked on fresh seeds with the exact metrics.

python examples/l5_tune.py [--quick] [--epochs 40] [--check-sims 20] [--out out/examples/l5_tune]
"""

import argparse
import json
from pathlib import Path

import jax

from spikejax.core.io import save_json
from spikejax.l5 import L5Params, check_tuned, debug_config, tune

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
ap.add_argument("--quick", action="store_true", help="small network, 3 steps (smoke test)")
ap.add_argument("--epochs", type=int, default=40, help="gradient steps (without --quick)")
ap.add_argument("--train-sims", type=int, default=3, help="networks per gradient step (without --quick)")
ap.add_argument("--check-sims", type=int, default=20, help="fresh networks of the check (without --quick)")
ap.add_argument("--seed", type=int, default=1, help="seed of the tuning key")
ap.add_argument("--out", default="out/examples/l5_tune", help="output folder (tuned.json)")
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
summary = {"tuned": res.summary(), "initial_fresh": {k: before.get(k) for k in keys},
           "tuned_fresh": {k: after.get(k) for k in keys}}
save_json(Path(args.out) / "tuned.json", summary)
print(json.dumps(summary, indent=1, default=float))
