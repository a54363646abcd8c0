"""``spikejax gfr network``: train a GFR-RNN on line-by-line MNIST (GRNN's network pipeline).

Mirrors the original positional arguments ``[lr] [epochs] [batch_size] [n_nodes]
[freeze_neurons] [freeze_activations]`` (each also accepted as a ``--flag``); the defaults are the
paper setting ``1e-3 300 128 64 False True``. MNIST comes from the bundled offline subset (or
``--mnist-path``); nothing is downloaded. Writes, under ``--save-path``:

* ``network_results.json``: settings, per-model accuracies (step 1, vote, every readout step),
  parameter counts, epochs, training time and the training history;
* ``network_results.csv``: one row per model;
* ``gfr_network.eqx`` (+ ``.json`` sidecar) and, with ``--baseline``, ``rnn_baseline.eqx``:
  the trained models (:func:`spikejax.gfr.network.load_network` reads them back).
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

from .._argparse import non_negative_int, positive_float, positive_int
from ..core.errors import ConfigError

__all__ = ["add_parser", "run_network", "parse_bool"]

PAPER_SETTING = {
    "lr": 1e-3,
    "epochs": 300,
    "batch_size": 128,
    "n_nodes": 64,
    "freeze_neurons": False,
    "freeze_activations": True,
}
_POSITIONAL = tuple(PAPER_SETTING)


def parse_bool(value: Any) -> bool:
    """``True/False``, ``1/0``, ``yes/no``, ``on/off`` (case-insensitive) -> bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "on", "t"):
        return True
    if text in ("false", "0", "no", "n", "off", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def add_parser(gfr_subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``network`` sub-command to the ``spikejax gfr`` sub-parsers; returns its parser."""
    p = gfr_subparsers.add_parser(
        "network",
        help="train a GFR-RNN on line-by-line MNIST (offline), report step-1 and vote accuracy",
        description=(
            "Train a GFR-RNN on L-MNIST (28 rows of 28 pixels, then zero-input readout steps) as GRNN's "
            "network pipeline does. Positional arguments (all optional, paper setting by default): "
            "lr epochs batch_size n_nodes freeze_neurons freeze_activations, each also accepted as --lr, --epochs, "
            "--batch-size, --n-nodes, --freeze-neurons, --freeze-activations (listed below)."
        ),
    )
    types = {"lr": positive_float, "epochs": non_negative_int, "batch_size": positive_int, "n_nodes": positive_int,
             "freeze_neurons": parse_bool, "freeze_activations": parse_bool}
    helps = {
        "lr": "Adam learning rate",
        "epochs": "training epochs",
        "batch_size": "minibatch size",
        "n_nodes": "number of hidden GFR neurons",
        "freeze_neurons": "freeze alpha, beta and g; train only the linear weights (true/false)",
        "freeze_activations": "freeze g's coefficients and threshold (true/false)",
    }
    # GRNN's positional form (lr epochs batch_size ...) is accepted but listed once, as its --flag
    for name in _POSITIONAL:
        p.add_argument(f"{name}_pos", nargs="?", type=types[name], default=None, metavar=name, help=argparse.SUPPRESS)
    for name in _POSITIONAL:
        flag = "--" + name.replace("_", "-")
        flags = (flag, f"--{name}") if "_" in name else (flag,)
        p.add_argument(*flags, dest=name, type=types[name], default=None, metavar=name.upper(),
                       help=f"{helps[name]} (default: {PAPER_SETTING[name]}, the paper setting)")
    p.add_argument("--neurons", choices=("default", "bio"), default="default", help="default (random) or biological neurons")
    p.add_argument(
        "--input-mode", "--input_mode",
        choices=("scaled", "centered"),
        default="scaled",
        help="biological neurons only: input scaled by sigma (variant 1) or centred on the threshold (variant 2)",
    )
    p.add_argument("--records", default=None, help="GFR records JSON for biological neurons (default: bundled excerpt)")
    p.add_argument("--min-test-evr", "--min_test_evr", type=float, default=0.7, help="biological neurons: keep cells with Noise-2 EVR above this")
    p.add_argument("--mnist-path", "--mnist_path", default=None, help="full MNIST (folder of IDX files or .npz) (default: the bundled 5k subset)")
    p.add_argument("--n-train", "--n_train", type=positive_int, default=None, help="use only the first n training images (default: all)")
    p.add_argument("--n-test", "--n_test", type=positive_int, default=None, help="use only the first n test images (default: all)")
    p.add_argument("--baseline", action="store_true", help="also train a vanilla RNN with the same number of parameters")
    p.add_argument("--rnn-activation", "--rnn_activation", choices=("relu_tanh", "tanh"), default="relu_tanh", help="baseline RNN nonlinearity")
    p.add_argument("--init-from", "--init_from", default=None, help="start from a saved GFR network (.eqx written by this command) (default: a new network)")
    p.add_argument("--resample-neurons", "--resample_neurons", action="store_true", help="with --init-from: redraw its neurons with replacement")
    p.add_argument("--track-test", "--track_test", action="store_true", help="record the test step-1 accuracy after every epoch")
    p.add_argument("--seed", type=int, default=0, help="seed of the model's and the training's keys")
    p.add_argument("--save-path", "--save_path", default="out/gfr_network", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_network)
    return p


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for name in _POSITIONAL:
        pos, flag = getattr(args, f"{name}_pos"), getattr(args, name)
        if pos is not None and flag is not None and pos != flag:
            raise ConfigError(f"{name} given twice with different values: positional {pos!r} and --{name.replace('_', '-')} {flag!r}")
        value = pos if pos is not None else flag
        out[name] = PAPER_SETTING[name] if value is None else value
    if out["lr"] <= 0:
        raise ConfigError(f"lr must be > 0, got {out['lr']}")
    for name in ("epochs", "batch_size", "n_nodes"):
        if out[name] < (0 if name == "epochs" else 1):
            raise ConfigError(f"{name} must be {'>= 0' if name == 'epochs' else '>= 1'}, got {out[name]}")
    return out


def run_network(args: argparse.Namespace) -> int:
    """Entry point of ``spikejax gfr network`` (see the module docstring)."""
    import jax
    import numpy as np

    from ..core.io import atomic_open, save_json
    from .mnist import load_mnist
    from .network import (
        GFRNetwork,
        VanillaRNN,
        load_network,
        matching_rnn_size,
        resample_neurons,
        save_network,
        train_network,
    )

    s = _settings(args)
    out = Path(args.save_path)
    x, y = load_mnist("train", path=args.mnist_path, n=args.n_train)
    xt, yt = load_mnist("test", path=args.mnist_path, n=args.n_test)
    key = jax.random.PRNGKey(args.seed)
    k_model, k_train, k_resample, k_rnn, k_rnn_train = jax.random.split(key, 5)

    if args.init_from is not None:
        model = load_network(args.init_from)
        if not isinstance(model, GFRNetwork):
            raise ConfigError(f"--init-from must be a saved GFRNetwork, got a {type(model).__name__}")
        if args.resample_neurons:
            model = resample_neurons(model, key=k_resample)
        s["n_nodes"] = model.n_nodes
    else:
        if args.resample_neurons:
            raise ConfigError("--resample-neurons needs --init-from (a trained network whose neurons are redrawn)")
        if args.neurons == "bio":
            model = GFRNetwork.biological(
                s["n_nodes"], key=k_model, records=args.records, input_mode=args.input_mode, min_test_evr=args.min_test_evr
            )
        else:
            model = GFRNetwork(s["n_nodes"], key=k_model)

    common = dict(learning_rate=s["lr"], n_epochs=s["epochs"], batch_size=s["batch_size"], test_data=(xt, yt), track_test=args.track_test, progress=False if args.quiet else None)
    print(
        f"[gfr network] {type(model).__name__}: {model.n_nodes} nodes ({args.neurons} neurons), "
        f"{x.shape[0]} training / {xt.shape[0]} test images, settings {s}",
        flush=True,
    )
    res = train_network(
        model,
        (x, y),
        key=k_train,
        freeze_neurons=s["freeze_neurons"],
        freeze_activations=s["freeze_activations"],
        **common,
    )
    runs = {"gfr": res}
    save_network(out / "gfr_network.eqx", res.model, settings=s, seed=args.seed, neurons=args.neurons)
    if args.baseline:
        h = matching_rnn_size(res.n_params)
        rnn = VanillaRNN(h, key=k_rnn, activation=args.rnn_activation)
        print(f"[gfr network] baseline VanillaRNN: H = {h} ({args.rnn_activation})", flush=True)
        rres = train_network(rnn, (x, y), key=k_rnn_train, **common)
        runs["rnn"] = rres
        save_network(out / "rnn_baseline.eqx", rres.model, settings=s, seed=args.seed)

    summary = {
        "settings": {**s, "neurons": args.neurons, "input_mode": args.input_mode if args.neurons == "bio" else "plain", "seed": args.seed,
                     "n_train": int(x.shape[0]), "n_test": int(xt.shape[0]), "mnist": args.mnist_path or "bundled mnist_5k subset",
                     "init_from": args.init_from, "resample_neurons": bool(args.resample_neurons)},
        "models": {},
    }
    rows = []
    for name, r in runs.items():
        info = r.summary()
        info["n_hidden"] = r.model.n_nodes if name == "gfr" else r.model.n_hidden
        info["history"] = {k: np.asarray(v).tolist() for k, v in r.history.items()}
        summary["models"][name] = info
        rows.append(
            {
                "model": name,
                "n_hidden": info["n_hidden"],
                "n_params": info["n_params"],
                "epochs": info["epochs"],
                "train_seconds": info["train_seconds"],
                "train_step1": info["train_step1"],
                "train_vote": info["train_vote"],
                "test_step1": info["test_step1"],
                "test_vote": info["test_vote"],
                **{f"test_step{i + 1}": a for i, a in enumerate(info["test_step_accuracy"])},
            }
        )
        print(
            f"[gfr network] {name}: {info['n_params']} params, test step-1 {100 * info['test_step1']:.1f} %, "
            f"vote {100 * info['test_vote']:.1f} %, {info['train_seconds']:.1f} s",
            flush=True,
        )
    save_json(out / "network_results.json", summary)
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_open(out / "network_results.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
    print(f"[gfr network] wrote {out}", flush=True)
    return 0
