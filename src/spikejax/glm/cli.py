"""``spikejax glm generate | simulate | tune`` over a connectivity folder (one square ``.npy``/``.pt`` matrix per file).

``generate`` writes such a folder from the generators of :mod:`spikejax.glm.generators`;
``simulate`` and ``tune`` read one (by default the bundled example folder
``spikejax/data/glm/normal_20``, see its README), so a user can go generate -> simulate -> tune
without Python.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .._argparse import non_negative_float, non_negative_int, positive_float, positive_int
from ..core.errors import ConfigError

MODEL_NAMES = ("BernoulliGLM", "PoissonGLM", "RectifiedLNP", "RectifiedSAM", "ThresholdSAM")


def _parse_sets(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set takes name=value, got {item!r}")
        name, value = item.split("=", 1)
        try:
            out[name.strip()] = float(value) if any(c in value for c in ".eE") or not value.strip().lstrip("-").isdigit() else int(value)
        except ValueError:
            raise ConfigError(f"--set {name}: value must be a number, got {value!r}") from None
    return out


def _model(args):
    from . import models

    params = _parse_sets(args.set)
    cls = models.MODELS[args.model]
    import difflib
    import inspect

    known = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    for name in params:
        if known and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"--set {name}: {args.model} has no parameter {name!r} (its parameters: {', '.join(known)}){hint}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad --set for {args.model}: {exc}") from None


def _bundled_networks() -> Path:
    from ..data import path as data_path

    return Path(data_path("glm/normal_20"))


def _networks(args):
    from .generators import load_connectivity
    from .network import batch_networks

    nets = load_connectivity(args.connectivity if args.connectivity is not None else _bundled_networks())
    if args.networks is not None:
        nets = nets[: args.networks]
    return batch_networks(nets), len(nets)


def _cmd_simulate(args) -> int:
    import jax

    from ..core.io import atomic_path, json_ready, save_json, short_float
    from .analysis import firing_rates, mean_isi
    from .simulation import simulate

    model = _model(args)
    net, k = _networks(args)
    from ..core.errors import check_allocation

    check_allocation(4.0 * net.n_nodes * args.steps, argument="--steps", what=f"a raster of {net.n_nodes} neurons x {args.steps} steps")
    traj = simulate(model, net, n_steps=args.steps, key=jax.random.key(args.seed), equilibration_steps=args.equilibration)
    x = traj.raster
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "raster.npy", suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(x), allow_pickle=False)
    rates = np.asarray(firing_rates(traj))
    summary = {
        "model": args.model,
        "networks": k,
        "neurons": int(net.n_nodes),
        "edges": int(net.n_edges),
        "steps": args.steps,
        "dt_ms": short_float(model.dt),
        "rate_hz": short_float(rates.mean()),
        "mean_isi_ms": mean_isi(traj),
    }
    save_json(out / "summary.json", summary)
    print(json.dumps(json_ready(summary)))
    return 0


def _cmd_tune(args) -> int:
    import jax

    from ..core.io import json_ready, save_json, short_float
    from .analysis import population_rate
    from .simulation import simulate
    from .tuning import TuneConfig, tune

    model = _model(args)
    net, k = _networks(args)
    from ..core.errors import check_allocation

    check_allocation(4.0 * net.n_nodes * args.check_steps, argument="--check-steps",
                     what=f"a check raster of {net.n_nodes} neurons x {args.check_steps} steps")
    names = args.params.split(",") if args.params not in ("all", "model") else args.params
    config = TuneConfig(n_epochs=args.epochs, n_steps=args.steps_per_epoch, learning_rate=args.lr, estimator=args.estimator,
                        progress=not args.quiet)
    res = tune(model, net, args.rate, names, key=jax.random.key(args.seed), config=config)
    x = simulate(res.model, net, n_steps=args.check_steps, key=jax.random.key(args.seed + 1))
    tuned = {n: short_float(getattr(res.model, n)) for n in type(res.model).tunable}
    summary = {
        "model": args.model,
        "networks": k,
        "target_hz": args.rate,
        "estimator": args.estimator,
        "tuned": tuned,
        "rate_after_hz": round(float(population_rate(x)), 3),
        "final_tune_rate_hz": round(res.final_rate_hz, 3),
        "target_met": res.target_met,
        "seconds": round(res.seconds, 2),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / "tuned.json", summary)
    res.save(out / "tune_result.h5")
    print(json.dumps(json_ready(summary)))
    return 0


GENERATORS = ("normal", "uniform", "mexican-hat")


def _cmd_generate(args) -> int:
    import jax

    from ..core.io import save_json
    from .generators import MexicanHatGenerator, NormalGenerator, UniformGenerator

    if args.generator == "normal":
        gen = NormalGenerator(args.neurons, mean=args.mean, std=args.std, sparsity=args.sparsity, glorot=args.glorot)
    elif args.generator == "uniform":
        gen = UniformGenerator(args.neurons, low=args.low, high=args.high, sparsity=args.sparsity)
    else:
        gen = MexicanHatGenerator(args.neurons, a=args.a, sigma_1=args.sigma_1, sigma_2=args.sigma_2)
    out = Path(args.out)
    paths = gen.save(args.networks, out, key=jax.random.key(args.seed), fmt=args.format)
    settings = {"generator": type(gen).__name__, **{k: v for k, v in vars(gen).items()}, "networks": args.networks,
                "seed": args.seed, "format": args.format}
    save_json(out / "generator.json", settings)
    print(f"wrote {len(paths)} connectivity matrices ({args.neurons} x {args.neurons}) to {out}; "
          f"next: spikejax glm simulate {out}")
    return 0


def register(subparsers) -> None:
    """Add ``spikejax glm ...``."""
    p = subparsers.add_parser("glm", help="spiking GLM/LNP/SA cascade networks on graphs (spikeometric)")
    sub = p.add_subparsers(dest="glm_command", metavar="{generate,simulate,tune}")

    g = sub.add_parser("generate", help="write a folder of random connectivity matrices (the input of simulate/tune)",
                       description="Write N square connectivity matrices W[pre, post] as OUT/0.npy, OUT/1.npy, ... "
                                   "(and OUT/generator.json with the settings), the folder layout that "
                                   "'spikejax glm simulate|tune' read.")
    g.add_argument("--out", default="out/glm/networks", help="output folder")
    g.add_argument("--generator", choices=GENERATORS, default="normal",
                   help="normal: Gaussian weights with Dale's law by source row; uniform: uniform weights in "
                        "[--low, --high); mexican-hat: deterministic ring")
    g.add_argument("--networks", type=positive_int, default=10, help="number of networks")
    g.add_argument("--neurons", type=positive_int, default=20, help="neurons per network (even for normal, and for "
                   "uniform with --low = -HIGH)")
    g.add_argument("--seed", type=int, default=0, help="seed of the key (network i uses fold_in(key, i))")
    g.add_argument("--mean", type=float, default=0.0, help="normal: mean weight")
    g.add_argument("--std", type=non_negative_float, default=0.5, help="normal: standard deviation of the weights")
    g.add_argument("--glorot", action=argparse.BooleanOptionalAction, default=True,
                   help="normal: divide the weights by sqrt(neurons)")
    g.add_argument("--sparsity", type=float, default=0.5,
                   help="normal/uniform: fraction of absent edges (in [0.5, 1] with Dale's law)")
    g.add_argument("--low", type=float, default=-1.0, help="uniform: lowest weight")
    g.add_argument("--high", type=float, default=1.0, help="uniform: highest weight")
    g.add_argument("--a", type=float, default=1.0015, help="mexican-hat: inhibition amplitude")
    g.add_argument("--sigma-1", type=positive_float, default=6.98, help="mexican-hat: excitatory width (neurons)")
    g.add_argument("--sigma-2", type=positive_float, default=7.0, help="mexican-hat: inhibitory width (neurons)")
    g.add_argument("--format", choices=("npy", "pt"), default="npy", help="file format (pt needs torch)")
    g.set_defaults(func=_cmd_generate)

    def common(q):
        q.add_argument("connectivity", nargs="?", default=None,
                       help="folder of square connectivity matrices (.npy, or .pt with torch), e.g. written by "
                            "'spikejax glm generate' (default: the bundled example spikejax/data/glm/normal_20)")
        q.add_argument("--model", choices=MODEL_NAMES, default="RectifiedLNP", help="model class")
        q.add_argument("--set", action="append", metavar="NAME=VALUE",
                       help="model parameter (repeatable), e.g. --set T=20 (default: the model's defaults)")
        q.add_argument("--networks", type=positive_int, default=None,
                       help="use only the first N networks (file-name order) (default: all)")
        q.add_argument("--seed", type=int, default=0, help="seed of the simulation's key")
        q.add_argument("--out", default="out/glm", help="output folder")

    s = sub.add_parser("simulate", help="simulate all networks of a folder (batched) and write raster.npy + summary.json")
    common(s)
    s.add_argument("--steps", type=positive_int, default=1000, help="time steps to record (of the model's dt)")
    s.add_argument("--equilibration", type=non_negative_int, default=100, help="time steps run and discarded first")
    s.set_defaults(func=_cmd_simulate)

    t = sub.add_parser("tune", help="tune parameters to a target rate (Hz) and write tuned.json + tune_result.h5")
    common(t)
    t.add_argument("--rate", type=positive_float, required=True, help="target firing rate (Hz)")
    t.add_argument("--params", default="model", help="comma-separated names, 'model' or 'all'")
    t.add_argument("--epochs", type=positive_int, default=100, help="optimiser steps")
    t.add_argument("--steps-per-epoch", "--steps_per_epoch", type=positive_int, default=None,
                   help="simulated steps per epoch (default: the estimator's own)")
    t.add_argument("--learning-rate", "--lr", dest="lr", type=positive_float, default=None,
                   help="absolute Adam step (default: relative steps)")
    t.add_argument("--estimator", choices=("stationary", "spikeometric"), default="stationary",
                   help="rate estimator of the loss")
    t.add_argument("--check-steps", type=positive_int, default=5000, help="steps of the independent check simulation")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_tune)

    def _no_sub(args):
        p.print_help()
        return 2

    p.set_defaults(func=_no_sub)


__all__ = ["register"]
