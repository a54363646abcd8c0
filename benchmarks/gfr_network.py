"""GFR-RNN vs a vanilla RNN of the same parameter count on offline L-MNIST (issue 2, acceptance 8).

Paper setting of GRNN's network pipeline: 64 default GFR neurons, Adam lr 1e-3, batch 128,
gradient-norm clip 5, trainable alpha/beta, frozen activations (7,178 trainable parameters); the
baseline is a vanilla RNN with H chosen to match (H = 67, 7,179 parameters), trained the same way
(same data, optimiser, clip, epochs, readout protocol). Data: the bundled 5,000-image MNIST subset
(4,000 train / 1,000 test), no download. Reports step-1 and vote test accuracy per seed and
mean +- std, training time and epochs; optionally biological-neuron networks (both input variants).

    python benchmarks/gfr_network.py --models gfr,rnn,rnn_tanh          # 100 epochs, 3 seeds
    python benchmarks/gfr_network.py --models bio_scaled,bio_centered --seeds 1
    python benchmarks/gfr_network.py --epochs 300 --seeds 1
    python benchmarks/gfr_network.py --quick              # smoke test
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from spikejax.core.io import save_json
from spikejax.gfr.mnist import load_mnist
from spikejax.gfr import GFRNetwork, VanillaRNN, gfr_network_size, matching_rnn_size, train_network


def _row(name, seed, res, hidden):
    s = res.summary()
    return {
        "model": name,
        "seed": seed,
        "n_hidden": hidden,
        "n_params": s["n_params"],
        "epochs": s["epochs"],
        "train_seconds": s["train_seconds"],
        "final_train_loss": s["final_train_loss"],
        "train_step1": s["train_step1"],
        "test_step1": s["test_step1"],
        "test_vote": s["test_vote"],
        "test_step_accuracy": s["test_step_accuracy"],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch_size", type=int, default=128)
    ap.add_argument("--n_nodes", type=int, default=64)
    ap.add_argument(
        "--models",
        default="gfr,rnn",
        help="comma-separated among gfr (default neurons), rnn (relu_tanh RNN), rnn_tanh, bio_scaled, bio_centered",
    )
    ap.add_argument("--mnist_path", default=None, help="full MNIST instead of the bundled subset")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--out", default="out/bench/gfr_network.json")
    args = ap.parse_args(argv)
    n_train = n_test = None
    if args.quick:
        args.epochs, args.seeds, args.n_nodes, args.batch_size = 1, 1, 8, 32
        n_train, n_test = 128, 64
    x, y = load_mnist("train", path=args.mnist_path, n=n_train)
    xt, yt = load_mnist("test", path=args.mnist_path, n=n_test)
    common = dict(learning_rate=args.lr, n_epochs=args.epochs, batch_size=args.batch_size, test_data=(xt, yt), progress=False)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - {"gfr", "rnn", "rnn_tanh", "bio_scaled", "bio_centered"}
    if unknown:
        ap.error(f"unknown --models {sorted(unknown)}")
    rows = []
    t_start = time.perf_counter()
    # The baseline's size matches the paper-setting GFR-RNN (trainable alpha/beta, frozen g).
    h = matching_rnn_size(gfr_network_size(args.n_nodes))
    for seed in range(args.seeds):
        k_net, k_fit, k_rnn, k_rnn_fit, k_bio = jax.random.split(jax.random.PRNGKey(seed), 5)
        first = len(rows)
        for name in models:
            if name == "gfr":
                res = train_network(GFRNetwork(args.n_nodes, key=k_net), (x, y), key=k_fit, freeze_activations=True, **common)
                rows.append(_row("GFR-RNN (default neurons)", seed, res, args.n_nodes))
            elif name.startswith("rnn"):
                act = "tanh" if name == "rnn_tanh" else "relu_tanh"
                res = train_network(VanillaRNN(h, key=k_rnn, activation=act), (x, y), key=k_rnn_fit, **common)
                rows.append(_row(f"vanilla RNN ({act})", seed, res, h))
            else:
                mode = name.split("_")[1]
                net = GFRNetwork.biological(args.n_nodes, key=k_bio, input_mode=mode)
                res = train_network(net, (x, y), key=k_fit, freeze_activations=True, **common)
                rows.append(_row(f"GFR-RNN (bio, {mode})", seed, res, args.n_nodes))
        for r in rows[first:]:
            print(
                f"seed {seed} {r['model']:<28} H={r['n_hidden']:<3} params={r['n_params']:<5} "
                f"test step-1 {100 * r['test_step1']:5.1f} %  vote {100 * r['test_vote']:5.1f} %  "
                f"{r['train_seconds']:7.1f} s",
                flush=True,
            )
    summary = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        sel = [r for r in rows if r["model"] == name]
        s1 = np.array([r["test_step1"] for r in sel])
        vo = np.array([r["test_vote"] for r in sel])
        summary[name] = {
            "n_hidden": sel[0]["n_hidden"],
            "n_params": sel[0]["n_params"],
            "runs": len(sel),
            "test_step1_mean": float(s1.mean()),
            "test_step1_std": float(s1.std()),
            "test_vote_mean": float(vo.mean()),
            "test_vote_std": float(vo.std()),
            "test_step_accuracy_mean": np.mean([r["test_step_accuracy"] for r in sel], axis=0).tolist(),
            "train_seconds_mean": float(np.mean([r["train_seconds"] for r in sel])),
            "epochs": sel[0]["epochs"],
        }
    print("\n| model | H | params | runs | test step 1 (%) | test vote (%) | per-step (%) | train s/run | epochs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        steps = " / ".join(f"{100 * a:.1f}" for a in s["test_step_accuracy_mean"])
        print(
            f"| {name} | {s['n_hidden']} | {s['n_params']} | {s['runs']} | {100 * s['test_step1_mean']:.1f} ± {100 * s['test_step1_std']:.1f} "
            f"| {100 * s['test_vote_mean']:.1f} ± {100 * s['test_vote_std']:.1f} | {steps} | {s['train_seconds_mean']:.0f} | {s['epochs']} |"
        )
    result = {
        "settings": {**vars(args), "n_train": int(x.shape[0]), "n_test": int(xt.shape[0])},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
            "load_average_at_end": os.getloadavg(),
        },
        "total_seconds": time.perf_counter() - t_start,
        "runs": rows,
        "summary": summary,
    }
    save_json(Path(args.out), result)
    print(f"\nwrote {args.out} ({result['total_seconds']:.0f} s in total)")
    return result


if __name__ == "__main__":
    main()
