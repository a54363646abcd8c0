"""spikeometric's "Parameter tuning" tutorial with spikejax.glm.

RectifiedLNP on Mexican-hat rings: simulate, compare with the mean-field rate, tune theta so the
network fires at 62.5 Hz (mean ISI 16 ms), and check with an independent simulation.

    python examples/glm_tutorial_tuning.py [--quick] [--out out/glm_example]
"""

import argparse
from pathlib import Path

import jax

from spikejax import glm


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small smoke-test sizes")
    ap.add_argument("--out", default="out/glm_example", help="output folder")
    args = ap.parse_args(argv)
    n_rings, steps, epochs = (1, 2000, 10) if args.quick else (5, 20_000, 100)

    net = glm.batch_networks(glm.MexicanHatGenerator(100).generate(n_rings))
    model = glm.RectifiedLNP(lambda_0=100.0, theta=1e-4, T=20, tau=10.0, dt=0.1, r=0.0025, b=0.001)
    traj = glm.simulate(model, net, n_steps=steps, key=jax.random.key(0))
    print(f"before: {glm.population_rate(traj):.2f} Hz (mean field {float(glm.mean_field_rate(model, net)):.2f} Hz)")

    res = glm.tune(model, net, 62.5, ["theta"], key=jax.random.key(1), n_epochs=epochs)
    traj = glm.simulate(res.model, net, n_steps=steps, key=jax.random.key(2))
    print(f"after tuning theta = {float(res.model.theta):.6g}: {glm.population_rate(traj):.2f} Hz, "
          f"mean ISI {glm.mean_isi(traj):.2f} ms (mean-field theta* = {float(glm.mean_field_theta(model, net, 62.5)):.6g})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spikejax.core import save_figure

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4))
    glm.plot_raster(traj.raster[:100, :2000], model.dt, ax=a, title="tuned network")
    glm.plot_isi_histogram(traj, ax=b)
    res.plot(ax=c)
    save_figure(fig, out / "glm_tuned_raster_isi.png")
    res.save(out / "glm_tune_result.h5")
    back = glm.GLMTuneResult.load(out / "glm_tune_result.h5")
    print(f"saved and reloaded the tune result: theta = {float(back.model.theta):.6g}")
    print(f"figure: {out / 'glm_tuned_raster_isi.png'}")


if __name__ == "__main__":
    main()
