"""Sweep 1000 random input-amplitude settings (the original's search box) in one compiled call.

python examples/l5_sweep.py [--quick] [--n 1000] [--out out/examples/l5_sweep]
"""

import argparse
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from spikejax.core.io import atomic_open
from spikejax.l5 import debug_config, random_settings, sweep_settings

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
ap.add_argument("--quick", action="store_true", help="8 settings on a small network (smoke test)")
ap.add_argument("--n", type=int, default=1000, help="random amplitude settings (without --quick)")
ap.add_argument("--out", default="out/examples/l5_sweep", help="output folder (sweep.csv)")
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
amp = np.asarray(settings["amplitude"])
table = pd.DataFrame({"cs": amp[:, 0], "cc": amp[:, 1], "pv": amp[:, 2], "sst": amp[:, 3],
                      "os_rel": np.asarray(res["os_rel"]), "ds_rel": np.asarray(res["ds_rel"])})
with atomic_open(Path(args.out) / "sweep.csv") as fh:
    table.to_csv(fh, index=False)
print(f"os_rel < 0 and ds_rel > 0 in {ok.mean():.1%} of the settings")
best = int(np.nanargmax(np.where(ok, np.asarray(res["ds_rel"]) - np.asarray(res["os_rel"]), -np.inf))) if ok.any() else None
if best is not None:
    print("best amplitude [CS, CC, PV, SST]:", np.asarray(settings["amplitude"][best]).round(2),
          "os_rel", float(res["os_rel"][best]), "ds_rel", float(res["ds_rel"][best]))
