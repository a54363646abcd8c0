"""Fit the mesoscopic model to 9 observed neurons of the bundled 11-s surrogate and free-run the fit.

    python examples/meso_fit.py [--quick] [--out out/meso_example]
"""

import argparse
from pathlib import Path

import jax
import numpy as np

from spikejax import meso


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short excerpt, 2 restarts, few iterations")
    ap.add_argument("--out", default="out/meso_example")
    ap.add_argument("--method", choices=("marginal", "hard", "sem"), default="marginal",
                    help="maximum marginal likelihood (default), hard EM alone, or stochastic EM")
    args = ap.parse_args()
    data = meso.load_bundled()
    kw = {}
    if args.quick:
        data = data.window(0, 250)
        kw["em"] = meso.EMConfig(n_restarts=2, max_em=2, m_maxiter=8, e_maxiter=8)
        kw["marginal"] = meso.MarginalConfig(n_iter=2, n_burn=1, info_every=1, n_particles=16, n_final=1,
                                             final_particles=16)
        if args.method == "sem":
            kw["sem"] = meso.SEMConfig(n_iter=2, m_maxiter=5, n_particles=32)
    res = meso.fit_em(data, key=jax.random.PRNGKey(0), method=args.method, **kw)
    print(res.to_pandas().round(3).to_string())
    print("Pearson r of Z:", np.round(res.z_correlation(), 3))
    Z, _ = res.simulate(2500 if args.quick else 25000, key=jax.random.PRNGKey(1))
    out = Path(args.out)
    meso.plot_activity(res.Z, data.Z, Z_init=res.Z0, path=out / "inferred_Z.png", smooth=5)
    meso.plot_free_run(Z, path=out / "free_run.png")
    if args.method == "marginal":
        meso.plot_convergence(res, path=out / "convergence.png")
        meso.plot_posterior_Z(res, path=out / "posterior_Z.png", smooth=5)
        print(res.to_pandas("convergence").iloc[:, :4].round(3).to_string())
    print("dominance durations (s):", np.round(meso.dominance_durations(np.asarray(Z) / meso.DT), 2))


if __name__ == "__main__":
    main()
