"""``spikejax lfads train | pbt | infer | evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._argparse import non_negative_float, positive_float, positive_int

__all__ = ["register"]

LAYOUTS = ["trials_time_neurons", "neurons_samples_trials"]
BUNDLED = "bundled"


def _data_path(text: str) -> str:
    """``bundled`` names the bundled Lorenz file (``spikejax/data/lfads/lfads_lorenz.h5``)."""
    if text == BUNDLED:
        from ..data import path

        return str(path("lfads/lfads_lorenz.h5"))
    return text


def _split(d):
    out = {"data": d["data"]}
    for k in ("recon", "ext"):
        if k in d:
            out[k] = d[k]
    return out


def _train(args) -> int:
    import jax

    from ..core.io import save_json
    from .config import load_config, save_lfads
    from .data import load_lfads_h5
    from .model import LFADS
    from .population import pbt
    from .training import train

    args.data = _data_path(args.data)
    probe = load_lfads_h5(args.data, layout=args.layout)
    cfg = load_config(args.config, data_shape=probe["train"]["data"].shape)
    if cfg["layout"] != args.layout:
        probe = load_lfads_h5(args.data, layout=cfg["layout"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.PRNGKey(cfg["seed"])
    tr, va = _split(probe["train"]), _split(probe["valid"])
    if args.command_lfads == "train":
        res = train(LFADS(cfg["model"], key=jax.random.fold_in(key, 0)), tr, va, hp=cfg["hp"], config=cfg["train"],
                    key=jax.random.fold_in(key, 1), sbtt=cfg["sbtt"], checkpoint_dir=out / "checkpoints",
                    progress=None)
        model, hp = res.model, res.hp
        summary = {"epochs": res.n_epochs, "best_epoch": res.best_epoch, "stop_reason": str(res.stop_reason),
                   "seconds": res.seconds, "valid_recon_smth": res.history["valid/recon_smth"].iloc[-1]}
    elif args.backend == "ray":
        from .ray_backend import pbt_ray

        res = pbt_ray(cfg["model"], tr, va, hp=cfg["hp"], train_config=cfg["train"], pbt_config=cfg["pbt"],
                      search_space=cfg["search_space"], key=key, sbtt=cfg["sbtt"], address=args.ray_address,
                      cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker)
    else:
        res = pbt(cfg["model"], tr, va, hp=cfg["hp"], train_config=cfg["train"], pbt_config=cfg["pbt"],
                  search_space=cfg["search_space"], key=key, sbtt=cfg["sbtt"], progress=True)
    if args.command_lfads == "pbt":
        model, hp = res.model, res.hp
        summary = {"generations": res.n_generations, "stop_reason": str(res.stop_reason),
                   "best_worker": res.best_worker, "learning_rate": res.learning_rate, "seconds": res.seconds,
                   "best_metric": res.history["best"].iloc[-1]}
    hist = {str(c): res.history[c].to_numpy() for c in res.history.columns}  # float32 columns stay float32 in JSON
    save_lfads(out / "model.eqx", model, hp)
    res.save(out / "result.h5")
    save_json(out / "history.json", hist)
    save_json(out / "summary.json", summary)
    from ..core.io import _finite_json

    print(json.dumps(_finite_json(summary), indent=1, default=str))
    return 0


def _infer(args) -> int:
    import jax

    from .config import load_lfads
    from .data import load_lfads_h5, save_lfads_h5
    from .inference import infer

    model, hp, _ = load_lfads(args.model)
    d = load_lfads_h5(_data_path(args.data), layout=args.layout)
    outs = {}
    for i, split in enumerate(("train", "valid")):
        o = infer(model, _split(d[split]), key=jax.random.PRNGKey(args.seed + i), n_samples=args.n_samples, hp=hp)
        outs[split] = o
    extra = {f"{s}_{k}": v for s in outs for k, v in outs[s].items() if k != "rates"}
    save_lfads_h5(args.out, {"data": outs["train"]["rates"]}, {"data": outs["valid"]["rates"]}, extra)
    print(f"wrote posterior-averaged rates ({args.n_samples} samples) to {args.out} as train_data/valid_data, "
          "plus factors, gen_states, con_inputs, ic_mean, ic_std")
    return 0


def _truth(d: dict, path: str) -> tuple[dict, str]:
    """Ground truth of an LFADS h5 file, in either layout: ``{split}_truth`` and ``{split}_lowd`` /
    ``{split}_latents`` per trial, or (the bundled Lorenz file) ``cond_truth`` / ``cond_lowd`` per
    initial condition with ``{split}_inds // n_trials_per_init_cond`` as each trial's condition.

    Returns ``({"truth": (train, valid) or None, "latents": (train, valid) or None}, latent_name)``.
    """
    ex = d["extra"]
    out: dict = {"truth": None, "latents": None}
    name = ""
    if "truth" in d["train"] and "truth" in d["valid"]:
        out["truth"] = (d["train"]["truth"], d["valid"]["truth"])
    name = next((k for k in ("lowd", "latents") if f"train_{k}" in ex and f"valid_{k}" in ex), "")
    if name:
        out["latents"] = (ex[f"train_{name}"], ex[f"valid_{name}"])
    if ("cond_truth" in ex or "cond_lowd" in ex) and "inds" in d["train"] and "inds" in d["valid"]:
        per = int(np.asarray(ex.get("n_trials_per_init_cond", [0])).ravel()[0])
        if per < 1:
            from ..core.errors import DataFormatError

            raise DataFormatError(f"{path}: cond_truth/cond_lowd need n_trials_per_init_cond (a positive count)")
        cond = [np.asarray(d[s]["inds"]).astype(int) // per for s in ("train", "valid")]
        if out["truth"] is None and "cond_truth" in ex:
            out["truth"] = tuple(np.asarray(ex["cond_truth"])[c] for c in cond)
        if out["latents"] is None and "cond_lowd" in ex:
            out["latents"] = tuple(np.asarray(ex["cond_lowd"])[c] for c in cond)
            name = "lowd"
    return out, name


def _conversion_factor(args, d: dict) -> tuple[float, str]:
    """truth / factor = expected counts per bin: the flag, else the file's ``conversion_factor``, else
    1000 / 10 for the bundled Lorenz file (spikes/s in 10-ms bins), else 1."""
    import h5py

    if args.conversion_factor is not None:
        return float(args.conversion_factor), "--conversion-factor"
    if "conversion_factor" in d["extra"]:
        return float(np.asarray(d["extra"]["conversion_factor"]).ravel()[0]), "the file's conversion_factor"
    with h5py.File(args.data, "r") as f:
        if str(f.attrs.get("layout", "")).startswith("spikejax-compact"):
            return 100.0, "the bundled Lorenz file's 10-ms bins (truth in spikes/s)"
    return 1.0, "default 1 (truth taken as expected counts per bin)"


def _evaluate(args) -> int:
    import sys

    from .data import load_lfads_h5
    from .evaluate import bits_per_spike, calibrated_rate_r2, rate_r2, ridge_r2

    args.data = _data_path(args.data)
    pred = load_lfads_h5(args.rates)
    d = load_lfads_h5(args.data, layout=args.layout)
    res = {}
    feats = {"rates": (pred["train"]["data"], pred["valid"]["data"])}
    if "train_factors" in pred["extra"]:
        feats["factors"] = (pred["extra"]["train_factors"], pred["extra"]["valid_factors"])
    res["valid_bits_per_spike"] = float(bits_per_spike(pred["valid"]["data"], d["valid"]["data"]))
    truth, lat_key = _truth(d, args.data)
    if truth["truth"] is not None:
        cf, source = _conversion_factor(args, d)
        t_tr, t_va = truth["truth"][0] / cf, truth["truth"][1] / cf
        res["conversion_factor"] = cf
        res["valid_rate_r2"] = rate_r2(pred["valid"]["data"], t_va)
        res["valid_rate_r2_calibrated"] = calibrated_rate_r2(pred["train"]["data"], t_tr, pred["valid"]["data"], t_va)
        print(f"rate R² against the true rates (truth / {cf:g}, from {source})", file=sys.stderr)
    else:
        print(f"no true rates in {args.data} (looked for train_truth/valid_truth, or cond_truth with "
              "train_inds/valid_inds): rate R² not computed", file=sys.stderr)
    if truth["latents"] is not None:
        for name, (a, b) in feats.items():
            r2 = ridge_r2(a, truth["latents"][0], b, truth["latents"][1], alpha=args.alpha)
            res[f"ridge_r2_{name}_to_{lat_key}"] = np.asarray(r2)
    else:
        print(f"no true latents in {args.data} (looked for train_lowd/valid_lowd, train_latents/valid_latents, "
              "or cond_lowd with train_inds/valid_inds): latent R² not computed", file=sys.stderr)
    from ..core.io import _finite_json

    print(json.dumps(_finite_json(res), indent=1))
    if args.out:
        from ..core.io import save_json

        save_json(args.out, res)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("lfads", help="LFADS / AutoLFADS / RADICaL: train, PBT, infer, evaluate")
    sub = p.add_subparsers(dest="command_lfads", metavar="ACTION", required=True)
    data_help = "LFADS h5 file (train_data, valid_data, ...), or 'bundled' for the bundled Lorenz file"
    layout_help = "axis order of the arrays in the file"
    for name, helptext in (("train", "train one LFADS model"), ("pbt", "population-based training (AutoLFADS)")):
        q = sub.add_parser(name, help=helptext, description="CONFIG.yaml holds hyperparameters by their LFADS names "
                           "(ic_enc_dim, gen_dim, co_dim, dropout_rate, cd_rate, kl_ic_scale, learning_rate, batch_size, "
                           "n_epochs, n_workers, epochs_per_generation, max_generations, explore_method, ...).")
        q.add_argument("config", help="YAML run configuration")
        q.add_argument("data", help=data_help)
        q.add_argument("--out", default=f"out/lfads_{name}", help="output folder (model.eqx, result.h5, history, summary)")
        q.add_argument("--layout", default=LAYOUTS[0], choices=LAYOUTS, help=layout_help)
        if name == "pbt":
            q.add_argument("--backend", default="vmap", choices=["vmap", "ray"],
                           help="vmap: the whole population in one program on this machine; ray: one Ray Tune "
                                "trial per worker (extra 'ray'), across the hosts of a Ray cluster")
            q.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local Ray)")
            q.add_argument("--cpus-per-worker", type=positive_float, default=1.0, help="CPUs per Ray worker")
            q.add_argument("--gpus-per-worker", type=non_negative_float, default=0.0, help="GPUs per Ray worker")
        q.set_defaults(func=_train)
    q = sub.add_parser("infer", help="posterior sample-and-average rates/factors for an h5 file")
    q.add_argument("model", help="model.eqx written by train/pbt")
    q.add_argument("data", help=data_help)
    q.add_argument("--out", default="out/lfads_rates.h5", help="output h5 file (train_data/valid_data = rates, factors, ...)")
    q.add_argument("--n-samples", type=positive_int, default=50, help="posterior samples averaged per trial")
    q.add_argument("--seed", type=int, default=0, help="seed of the sampling key")
    q.add_argument("--layout", default=LAYOUTS[0], choices=LAYOUTS, help=layout_help)
    q.set_defaults(func=_infer, out_kind="file")
    q = sub.add_parser("evaluate", help="bits/spike, rate R² vs the true rates, ridge R² to the true latents",
                       description="Prints valid bits/spike; where the data file holds the ground truth "
                                   "(train_truth/valid_truth and *_lowd/*_latents per trial, or cond_truth/cond_lowd "
                                   "per condition as in the bundled Lorenz file) also the rate R² (raw and "
                                   "per-neuron calibrated) and the held-out ridge R² of rates and factors to the "
                                   "latents; says so when the truth is absent.")
    q.add_argument("rates", help="h5 written by 'spikejax lfads infer'")
    q.add_argument("data", help=data_help + " (with truth and latents where known)")
    q.add_argument("--alpha", type=non_negative_float, default=0.01, help="ridge penalty of the latent map")
    q.add_argument("--conversion-factor", type=positive_float, default=None,
                   help="truth / factor = expected counts per bin (default: the file's conversion_factor; 100 for "
                        "the bundled Lorenz file's spikes/s in 10-ms bins; else 1)")
    q.add_argument("--layout", default=LAYOUTS[0], choices=LAYOUTS, help=layout_help)
    q.add_argument("--out", default=None, help="write the metrics as JSON here (default: print only)")
    q.set_defaults(func=_evaluate, out_kind="file")
