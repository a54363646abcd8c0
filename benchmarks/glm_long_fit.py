"""Bounded memory on a long recording: fit_connectivity(solver="trainer") on 10^6 and 10^7 spikes.

A PoissonGLM of N = 100 neurons (exponential link, 20-step exponential coupling, 10 % connectivity, about
0.05 spikes per neuron and step) is simulated once per size (stored as uint8 counts in a ``.npy``) and
then fitted in a *fresh process* by the core trainer (Adam on minibatches of 16 windows of 4096 steps,
``--epochs`` passes), followed by the exact streamed log-likelihood of the whole recording. The fitting
process reports its peak resident memory (``resource.getrusage``: ``ru_maxrss``) and wall time. Memory
grows with the recording only through the uint8 raster and its windows (about 2 N bytes per step); the
filtered history (4 N bytes per step per lag profile) is never held for more than one minibatch.

Usage::

    python benchmarks/glm_long_fit.py [--spikes 1e6,1e7] [--epochs 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N = 100
RATE = 0.05


def _model():
    from spikejax import glm

    return glm.PoissonGLM(alpha=1.0, beta=1.0, T=20, tau=5.0, dt=1.0, r=1.0, b=-3.0)


def _weights():
    import numpy as np

    rng = np.random.default_rng(0)
    W = np.zeros((N, N), np.float32)
    m = rng.random((N, N)) < 0.1
    np.fill_diagonal(m, False)
    W[m] = rng.normal(0, 0.2, m.sum()).astype(np.float32)
    return W


def simulate(n_steps: int, path: Path) -> dict:
    import jax
    import numpy as np

    from spikejax import glm

    t0 = time.perf_counter()
    traj = glm.simulate(_model(), glm.from_dense(_weights()), n_steps=n_steps, key=jax.random.key(0), store_as_dtype="uint8",
                        chunk_size=100_000)
    x = np.asarray(traj.spikes)
    np.save(path, x)
    return {"steps": n_steps, "spikes": int(x.sum(dtype=np.int64)), "sim_s": time.perf_counter() - t0}


def fit(path: Path, epochs: int) -> dict:
    import jax
    import numpy as np

    from spikejax import glm

    x = np.load(path, mmap_mode="r")
    t0 = time.perf_counter()
    res = glm.fit_connectivity(_model(), np.asarray(x).T, solver="trainer", key=jax.random.key(0), window=4096, batch_size=16,
                               n_epochs=epochs, learning_rate=0.02, true_weights=_weights())
    wall = time.perf_counter() - t0
    rec = res.recovery()
    return {"fit_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "r_edges": rec["r_edges"], "mean_absent": rec["mean_absent"], "log_lik_nats": res.log_likelihood,
            "raster_mb": x.nbytes / 2**20}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spikes", default="1e6,1e7")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--path", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.stage == "fit":
        print(json.dumps(fit(Path(a.path), a.epochs)))
        return None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in [float(s) for s in a.spikes.split(",")]:
            n_steps = int(target / (N * RATE))
            path = Path(tmp) / f"raster_{n_steps}.npy"
            row = simulate(n_steps, path)
            out = subprocess.run([sys.executable, __file__, "--stage", "fit", "--path", str(path), "--epochs", str(a.epochs)],
                                 capture_output=True, text=True, check=True)
            row.update(json.loads(out.stdout.strip().splitlines()[-1]))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| spikes | steps | raster (uint8) MB | fit wall s | peak RSS MB | r on true edges |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['spikes']:.3g} | {r['steps']} | {r['raster_mb']:.0f} | {r['fit_s']:.0f} | {r['peak_rss_mb']:.0f} | {r['r_edges']:.3f} |")
    print(f"load average {os.getloadavg()}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
