"""``spikejax glm simulate | tune`` over a connectivity folder (one square ``.npy``/``.pt`` matrix per file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad --set for {args.model}: {exc}") from None


def _networks(args):
    from .generators import load_connectivity
    from .network import batch_networks

    nets = load_connectivity(args.connectivity)
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


def register(subparsers) -> None:
    """Add ``spikejax glm ...``."""
    p = subparsers.add_parser("glm", help="spiking GLM/LNP/SA cascade networks on graphs (spikeometric)")
    sub = p.add_subparsers(dest="glm_command", metavar="{simulate,tune}")

    def common(q):
        q.add_argument("connectivity", help="folder of square connectivity matrices (.npy, or .pt with torch)")
        q.add_argument("--model", choices=MODEL_NAMES, default="RectifiedLNP")
        q.add_argument("--set", action="append", metavar="NAME=VALUE", help="model parameter (repeatable), e.g. --set T=20")
        q.add_argument("--networks", type=int, default=None, help="use only the first N networks (file-name order)")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--out", default="out/glm")

    s = sub.add_parser("simulate", help="simulate all networks of a folder (batched) and write raster.npy + summary.json")
    common(s)
    s.add_argument("--steps", type=int, default=1000)
    s.add_argument("--equilibration", type=int, default=100)
    s.set_defaults(func=_cmd_simulate)

    t = sub.add_parser("tune", help="tune parameters to a target rate (Hz) and write tuned.json + tune_result.h5")
    common(t)
    t.add_argument("--rate", type=float, required=True, help="target firing rate (Hz)")
    t.add_argument("--params", default="model", help="comma-separated names, 'model' or 'all' (default: model)")
    t.add_argument("--epochs", type=int, default=100)
    t.add_argument("--steps-per-epoch", type=int, default=None)
    t.add_argument("--learning-rate", "--lr", dest="lr", type=float, default=None,
                   help="absolute Adam step (default: relative steps)")
    t.add_argument("--estimator", choices=("stationary", "spikeometric"), default="stationary")
    t.add_argument("--check-steps", type=int, default=5000, help="steps of the independent check simulation")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_tune)

    def _no_sub(args):
        p.print_help()
        return 2

    p.set_defaults(func=_no_sub)


__all__ = ["register"]
