"""Sweep 1000 random input-amplitude settings (the original's search box) in one compiled call.

python examples/l5_sweep.py [--quick] [--n 1000]
"""

import argparse
import time

import jax
import numpy as np

from spikejax.l5 import debug_config, random_settings, sweep_settings

ap = argparse.ArgumentParser()
ap.add_argument("--quick", action="store_true")
ap.add_argument("--n", type=int, default=1000)
args = ap.parse_args()
n = 8 if args.quick else args.n
cfg = debug_config(learning_rule="None", threshold_filter="ema", sim_number=1, Ttau=60,
                   **({"N": [9, 55, 9, 7]} if args.quick else {}))
key_settings, key_networks = jax.random.split(jax.random.PRNGKey(0))
settings = random_settings(n, key=key_settings)
t0 = time.perf_counter()
res = sweep_settings(cfg, settings, key=key_networks)
jax.block_until_ready(res)
print(f"{n} settings in {time.perf_counter() - t0:.1f} s (one compiled call, compile included)")
ok = np.asarray((res["os_rel"] < 0) & (res["ds_rel"] > 0))
print(f"os_rel < 0 and ds_rel > 0 in {ok.mean():.1%} of the settings")
best = int(np.nanargmax(np.where(ok, np.asarray(res["ds_rel"]) - np.asarray(res["os_rel"]), -np.inf))) if ok.any() else None
if best is not None:
    print("best amplitude [CS, CC, PV, SST]:", np.asarray(settings["amplitude"][best]).round(2),
          "os_rel", float(res["os_rel"][best]), "ds_rel", float(res["ds_rel"][best]))
