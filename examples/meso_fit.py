"""Fit the mesoscopic model to 9 observed neurons of the bundled 11-s surrogate and free-run the fit.

    python examples/meso_fit.py [--quick] [--out out/meso_example]
"""

import argparse
from pathlib import Path

import jax
import numpy as np

from spikejax import meso
from spikejax.core import save_figure


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short excerpt, 2 restarts, few iterations")
    ap.add_argument("--out", default="out/meso_example", help="output folder")
    ap.add_argument("--method", choices=("marginal", "hard", "sem"), default="marginal",
                    help="maximum marginal likelihood, hard EM alone, or stochastic EM")
    args = ap.parse_args()
    data = meso.load_bundled()
    config = meso.MesoFitConfig(method=args.method)
    if args.quick:
        data = data.window(0, 250)
        config = config.replace(
            em=meso.EMConfig(n_restarts=2, n_iter=2, m_maxiter=8, e_maxiter=8),
            marginal=meso.MarginalConfig(n_iter=2, n_burn=1, info_every=1, n_particles=16, n_final=1,
                                         final_particles=16),
            sem=meso.SEMConfig(n_iter=2, m_maxiter=5, n_particles=32))
    res = meso.fit_em(data, key=jax.random.PRNGKey(0), config=config)
    print(res.to_pandas().round(3).to_string())
    print("Pearson r of Z:", np.round(res.z_correlation(data.Z), 3))
    traj = res.simulate(2500 if args.quick else 25000, key=jax.random.PRNGKey(1))
    out = Path(args.out)
    save_figure(meso.plot_activity(res.Z, data.Z, Z_init=res.Z0, smooth=5).figure, out / "inferred_Z.png")
    save_figure(traj.plot().figure, out / "free_run.png")
    if args.method == "marginal":
        save_figure(res.plot().figure, out / "convergence.png")
        post = meso.posterior_Z(res.model, data, key=jax.random.PRNGKey(2))
        save_figure(meso.plot_posterior_Z(post, data.Z, smooth=5).figure, out / "posterior_Z.png")
        print(res.convergence().iloc[:, :4].round(3).to_string())
    print("dominance durations (ms):", np.round(meso.dominance_durations(np.asarray(traj.rate_hz))))


if __name__ == "__main__":
    main()
