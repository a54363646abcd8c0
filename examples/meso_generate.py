"""Simulate the microscopic WTA network, with and without an input pulse, and compare with the meso model.

    python examples/meso_generate.py [--quick] [--out out/examples/meso_generate]
"""

import argparse
from pathlib import Path

import jax
import numpy as np

from spikejax import meso
from spikejax.core.io import save_json


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 s instead of 30 s (smoke test)")
    ap.add_argument("--out", default="out/examples/meso_generate", help="output folder (rates.json)")
    args = ap.parse_args()
    seconds = 2.0 if args.quick else 30.0
    n = int(round(1000.0 * seconds / meso.MICRO_DT_MS))
    gt = meso.ground_truth()
    pulse = meso.pulse_input(n, meso.MICRO_DT_MS, 3, [(0, 500.0 * seconds, 500.0, 300.0)])  # start, duration in ms
    summary = {"seconds": seconds}
    for label, I in (("no input", None), ("pulse to E1", pulse)):
        r = meso.simulate_micro(gt, n, key=jax.random.PRNGKey(0), I_ext=I, record_every=20)
        summary[f"mean_rates_hz ({label})"] = np.asarray(r.A.mean(0))
        print(f"micro, {label}: mean rates {np.round(r.A.mean(0), 2)} Hz")
        if I is None:
            d = meso.MesoData.from_micro(r, n_obs=3)
            zbar = meso.predict(gt, d.Z, d.A0)
            print("meso prediction / observed (exact):", np.round(np.asarray(zbar.mean(0) / d.Z.mean(0)), 3))
            summary["meso_over_observed"] = np.asarray(zbar.mean(0) / d.Z.mean(0))
    save_json(Path(args.out) / "rates.json", summary)


if __name__ == "__main__":
    main()
