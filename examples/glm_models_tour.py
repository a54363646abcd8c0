"""A tour of the five spikeometric models on generated networks, with batching and stimuli.

    python examples/glm_models_tour.py [--quick] [--out out/examples/glm_models_tour]
"""

import argparse
from pathlib import Path

import jax
import numpy as np

from spikejax import glm
from spikejax.core.io import save_json


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="500 steps instead of 5000 (smoke test)")
    ap.add_argument("--out", default="out/examples/glm_models_tour", help="output folder (rates.json)")
    args = ap.parse_args(argv)
    steps = 500 if args.quick else 5000
    key = jax.random.key(0)

    glorot = glm.batch_networks(glm.NormalGenerator(20, 0.0, 5.0, glorot=True).generate(10, key=key))
    uniform = glm.batch_networks(glm.UniformGenerator(20, -0.00229, 0.0, 0.9).generate(10, key=key))
    ring = glm.from_dense(glm.mexican_hat(100))
    runs = [
        ("BernoulliGLM (standard parameters)", glm.BernoulliGLM(), glorot),
        ("PoissonGLM (test parameters)", glm.PoissonGLM(), glorot),
        ("RectifiedLNP (test parameters)", glm.RectifiedLNP(), ring),
        ("RectifiedSAM (test parameters)", glm.RectifiedSAM(), uniform),
        ("ThresholdSAM (test parameters)", glm.ThresholdSAM(), uniform),
    ]
    rates = {}
    for name, model, net in runs:
        traj = glm.simulate(model, net, n_steps=steps, key=key)
        rates[name] = glm.population_rate(traj)
        print(f"{name:38s} N={net.n_nodes:4d}  rate {glm.population_rate(traj):7.2f} Hz")

    # a regular stimulus on neurons 0, 2, 4, 6, 8 of each 20-neuron network, batched 10 at a time
    masks = np.zeros((10, 20), bool)
    masks[:, [0, 2, 4, 6, 8]] = True
    stim = glm.RegularStimulus(5.0, period=100, tau=10, stop=steps, stimulus_masks=masks, batch_size=10)
    x = glm.simulate(glm.BernoulliGLM(), glorot, n_steps=steps, key=key, stimulus=stim).raster
    on = np.asarray(x)[masks.reshape(-1)]
    rates["stimulated neurons"] = glm.population_rate(on, 1.0)
    rates["other neurons"] = glm.population_rate(np.asarray(x)[~masks.reshape(-1)], 1.0)
    save_json(Path(args.out) / "rates.json", {"steps": steps, "rate_hz": rates})
    print(f"stimulated neurons: {glm.population_rate(on, 1.0):.1f} Hz, others {glm.population_rate(np.asarray(x)[~masks.reshape(-1)], 1.0):.1f} Hz")


if __name__ == "__main__":
    main()
