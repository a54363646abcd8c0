"""``spikejax lfads train | pbt | infer | evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["register"]


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
                   "seconds": res.seconds, "valid_recon_smth": float(res.history["valid/recon_smth"].iloc[-1])}
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
                   "best_metric": float(res.history["best"].iloc[-1])}
    hist = res.history.to_dict(orient="list")
    save_lfads(out / "model.eqx", model, hp)
    res.save(out / "result.h5")
    save_json(out / "history.json", hist)
    save_json(out / "summary.json", summary)
    print(json.dumps(summary, indent=1, default=str))
    return 0


def _infer(args) -> int:
    import jax

    from .config import load_lfads
    from .data import load_lfads_h5, save_lfads_h5
    from .inference import infer

    model, hp, _ = load_lfads(args.model)
    d = load_lfads_h5(args.data, layout=args.layout)
    outs = {}
    for i, split in enumerate(("train", "valid")):
        o = infer(model, _split(d[split]), key=jax.random.PRNGKey(args.seed + i), n_samples=args.n_samples, hp=hp)
        outs[split] = o
    extra = {f"{s}_{k}": v for s in outs for k, v in outs[s].items() if k != "rates"}
    save_lfads_h5(args.out, {"data": outs["train"]["rates"]}, {"data": outs["valid"]["rates"]}, extra)
    print(f"wrote posterior-averaged rates ({args.n_samples} samples) to {args.out} as train_data/valid_data, "
          "plus factors, gen_states, con_inputs, ic_mean, ic_std")
    return 0


def _evaluate(args) -> int:
    from .data import load_lfads_h5
    from .evaluate import bits_per_spike, calibrated_rate_r2, rate_r2, ridge_r2

    pred = load_lfads_h5(args.rates)
    d = load_lfads_h5(args.data, layout=args.layout)
    res = {}
    feats = {"rates": (pred["train"]["data"], pred["valid"]["data"])}
    if "train_factors" in pred["extra"]:
        feats["factors"] = (pred["extra"]["train_factors"], pred["extra"]["valid_factors"])
    res["valid_bits_per_spike"] = float(bits_per_spike(pred["valid"]["data"], d["valid"]["data"]))
    if "truth" in d["train"]:
        cf = float(np.asarray(d["extra"].get("conversion_factor", args.conversion_factor)))
        t_tr, t_va = d["train"]["truth"] / cf, d["valid"]["truth"] / cf
        res["valid_rate_r2"] = rate_r2(pred["valid"]["data"], t_va)
        res["valid_rate_r2_calibrated"] = calibrated_rate_r2(pred["train"]["data"], t_tr, pred["valid"]["data"], t_va)
    lat_key = next((k for k in ("lowd", "latents") if f"train_{k}" in d["extra"]), None)
    if lat_key:
        for name, (a, b) in feats.items():
            r2 = ridge_r2(a, d["extra"][f"train_{lat_key}"], b, d["extra"][f"valid_{lat_key}"], alpha=args.alpha)
            res[f"ridge_r2_{name}_to_{lat_key}"] = [float(v) for v in r2]
    print(json.dumps(res, indent=1))
    if args.out:
        from ..core.io import save_json

        save_json(args.out, res)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("lfads", help="LFADS / AutoLFADS / RADICaL: train, PBT, infer, evaluate")
    sub = p.add_subparsers(dest="command_lfads", metavar="ACTION", required=True)
    for name, helptext in (("train", "train one LFADS model"), ("pbt", "population-based training (AutoLFADS)")):
        q = sub.add_parser(name, help=helptext, description="CONFIG.yaml holds hyperparameters by their LFADS names "
                           "(ic_enc_dim, gen_dim, co_dim, dropout_rate, cd_rate, kl_ic_scale, learning_rate, batch_size, "
                           "n_epochs, n_workers, epochs_per_generation, max_generations, explore_method, ...).")
        q.add_argument("config", help="YAML run configuration")
        q.add_argument("data", help="LFADS h5 file (train_data, valid_data, ...)")
        q.add_argument("--out", default=f"out/lfads_{name}", help="output folder (model.eqx, result.h5, history, summary)")
        q.add_argument("--layout", default="trials_time_neurons", choices=["trials_time_neurons", "neurons_samples_trials"])
        if name == "pbt":
            q.add_argument("--backend", default="vmap", choices=["vmap", "ray"],
                           help="vmap: the whole population in one program on this machine; ray: one Ray Tune "
                                "trial per worker (extra 'ray'), across the hosts of a Ray cluster")
            q.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local Ray)")
            q.add_argument("--cpus-per-worker", type=float, default=1.0)
            q.add_argument("--gpus-per-worker", type=float, default=0.0)
        q.set_defaults(func=_train)
    q = sub.add_parser("infer", help="posterior sample-and-average rates/factors for an h5 file")
    q.add_argument("model", help="model.eqx written by train/pbt")
    q.add_argument("data", help="LFADS h5 file")
    q.add_argument("--out", default="out/lfads_rates.h5")
    q.add_argument("--n-samples", type=int, default=50)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--layout", default="trials_time_neurons", choices=["trials_time_neurons", "neurons_samples_trials"])
    q.set_defaults(func=_infer)
    q = sub.add_parser("evaluate", help="bits/spike, rate R² vs truth, ridge R² to latents")
    q.add_argument("rates", help="h5 written by 'spikejax lfads infer'")
    q.add_argument("data", help="the LFADS h5 file with train/valid data (and truth, *_lowd/*_latents)")
    q.add_argument("--alpha", type=float, default=0.01, help="ridge penalty of the latent map")
    q.add_argument("--conversion-factor", type=float, default=1.0, help="truth / factor = expected counts per bin")
    q.add_argument("--layout", default="trials_time_neurons", choices=["trials_time_neurons", "neurons_samples_trials"])
    q.add_argument("--out", default=None, help="write the metrics as JSON here")
    q.set_defaults(func=_evaluate)
