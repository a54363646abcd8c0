"""Train a GFR-RNN on line-by-line MNIST (offline) and compare it with a vanilla RNN of equal size.

Each 28x28 image is fed as 28 rows of 28 pixels; one zero-input step then gives the logits that
are trained (cross-entropy), and 5 zero-input readout steps are used at test time: "step 1" is
the first readout step, the "vote" sums the softmax over the 5 steps (GRNN's protocol).

    python examples/gfr_lmnist.py               # 64 default GFR neurons, 30 epochs (a few minutes)
    python examples/gfr_lmnist.py --quick       # smoke test (seconds)
"""

import argparse
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from spikejax.core.io import save_figure, save_json
from spikejax.gfr import GFRNetwork, VanillaRNN, load_mnist, matching_rnn_size, save_network, train_network


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=_Formatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--epochs", type=int, default=30, help="training epochs (without --quick)")
    ap.add_argument("--n-nodes", "--n_nodes", dest="n_nodes", type=int, default=64, help="hidden GFR neurons (without --quick)")
    ap.add_argument("--out", default="out/examples/gfr_lmnist", help="output folder")
    args = ap.parse_args()
    n_train, n_test, epochs, n_nodes, batch = None, None, args.epochs, args.n_nodes, 128
    if args.quick:
        n_train, n_test, epochs, n_nodes, batch = 64, 32, 2, 8, 32

    x, y = load_mnist("train", n=n_train)  # bundled 4,000 / 1,000 subset, pixels in [0, 1]
    xt, yt = load_mnist("test", n=n_test)
    k_gfr, k_rnn, k_fit = jax.random.split(jax.random.PRNGKey(0), 3)

    # Paper setting: default GFR neurons (kappa = 1), trainable alpha/beta, frozen activation g.
    gfr = GFRNetwork(n_nodes, key=k_gfr)
    res_gfr = train_network(gfr, (x, y), key=k_fit, learning_rate=1e-3, n_epochs=epochs, batch_size=batch,
                            freeze_activations=True, test_data=(xt, yt), progress=False)
    # Vanilla RNN with the same number of trainable parameters, trained the same way.
    h = matching_rnn_size(res_gfr.n_params)
    res_rnn = train_network(VanillaRNN(h, key=k_rnn), (x, y), key=k_fit, learning_rate=1e-3,
                            n_epochs=epochs, batch_size=batch, test_data=(xt, yt), progress=False)

    out = Path(args.out)
    summary = {"GFR-RNN": res_gfr.summary(), f"vanilla RNN (H={h})": res_rnn.summary()}
    for name, s in summary.items():
        print(f"{name:>20}: {s['n_params']} params, test step-1 {100 * s['test_step1']:.1f} %, "
              f"vote {100 * s['test_vote']:.1f} %, {s['train_seconds']:.0f} s")
    save_json(out / "summary.json", summary)
    save_network(out / "gfr_network.eqx", res_gfr.model)

    fig, ax = plt.subplots(figsize=(4.5, 3))
    for name, s in summary.items():
        ax.plot(range(1, 6), [100 * a for a in s["test_step_accuracy"]], "o-", label=name)
    ax.set_xlabel("zero-input readout step")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(range(1, 6))
    ax.legend(frameon=False)
    fig.tight_layout()
    save_figure(fig, out / "readout_steps.png", dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
