"""Run the original L5 model's debug configuration and print the table of means per type.

python examples/l5_debug_run.py [--quick] [--out out/l5_debug]
"""

import argparse

import jax

from spikejax.l5 import debug_config, save_figures, run

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
ap.add_argument("--quick", action="store_true", help="small network, short run")
ap.add_argument("--out", default="out/l5_debug", help="output folder")
args = ap.parse_args()
cfg = debug_config(N=[9, 55, 9, 7], sim_number=2, Ttau=80, number_steps_before_learning=200) if args.quick else debug_config()
res = run(cfg, key=jax.random.PRNGKey(42))
res.save(args.out)
save_figures(res, args.out)
print(res.selectivity_df.loc["after"].round(3).to_string())
print(res.summary_info, "HEAD loss", round(res.head_loss, 4))
