"""``spikejax l5 run|tune|sweep|search CONFIG``."""

from __future__ import annotations

import json
from pathlib import Path

from .._argparse import non_negative_float, positive_float, positive_int

__all__ = ["register"]


def _cfg(args):
    import dataclasses
    import difflib

    from ..core.errors import ConfigError
    from .config import L5Config, load_config

    overrides = {}
    names = [f.name for f in dataclasses.fields(L5Config)]
    for item in args.set or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip()
        # the same check, and the same message, as a key of a JSON/YAML config file
        k = L5Config.ALIASES.get(k, k)
        if k not in names:
            close = difflib.get_close_matches(k, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys are {sorted(names)}"
            raise ConfigError(f"unknown L5 config key {k!r} in --set {item!r} (L5Config has no field {k!r}){hint}")
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    if getattr(args, "seed", None) is not None:
        overrides["seed"] = args.seed
    return load_config(args.config, **overrides)


def _run(args) -> int:
    import jax

    from .outputs import run
    from .plots import save_figures

    cfg = _cfg(args)
    res = run(cfg, key=jax.random.PRNGKey(cfg.seed))
    out = Path(args.out)
    res.save(out)
    if not args.no_plots:
        save_figures(res, out)
    print(res.selectivity_df.loc["after"].round(4).to_string())
    print(json.dumps({**res.summary_info, "loss": res.head_loss}))
    return 0


def _tune(args) -> int:
    import jax

    from ..core.errors import warn_target_missed
    from ..core.io import json_ready, save_json
    from .tuning import check_tuned, tune

    cfg = _cfg(args)
    # --seed (the config's seed) becomes the key here, explicitly: the library never reads cfg.seed
    res = tune(cfg, key=jax.random.PRNGKey(cfg.seed), n_epochs=args.epochs, learning_rate=args.learning_rate,
               margin=args.margin)
    check = check_tuned(cfg, res.model, key=jax.random.PRNGKey(cfg.seed + 1000), sim_number=args.check_sims)
    out = Path(args.out)
    if not check["target_met"]:
        warn_target_missed(f"l5 tune: the exact indices on fresh networks miss os_rel < 0 and ds_rel > 0 "
                           f"(os_rel {check['os_rel']:.3g}, ds_rel {check['ds_rel']:.3g})", stacklevel=2)
    save_json(out / "tuned.json", {"params": res.summary(), "history": {str(c): res.history[c].to_numpy() for c in res.history.columns},
                                   "check_fresh_seeds": check, "target_met": check["target_met"]})
    print(json.dumps(json_ready({"params": res.summary(), "os_rel": check["os_rel"], "ds_rel": check["ds_rel"],
                                 "os_rel_sd": check["os_rel_sd"], "ds_rel_sd": check["ds_rel_sd"],
                                 "target_met": check["target_met"]})))
    return 0


def _sweep(args) -> int:
    import time

    import jax
    import numpy as np
    import pandas as pd

    from ..core.io import atomic_open
    from .sweep import random_settings, sweep_settings

    cfg = _cfg(args)
    settings = random_settings(args.n, key=jax.random.PRNGKey(cfg.seed + 1))
    t0 = time.perf_counter()
    res = sweep_settings(cfg, settings, key=jax.random.PRNGKey(cfg.seed), chunk_size=args.chunk,
                         memory_budget=args.memory_budget if args.memory_budget is not None else "auto")
    jax.block_until_ready(res)
    dt = time.perf_counter() - t0
    amp = np.asarray(settings["amplitude"])
    df = pd.DataFrame({"cs": amp[:, 0], "cc": amp[:, 1], "pv": amp[:, 2], "sst": amp[:, 3]})
    for k in ("os_rel", "ds_rel", "os_p_rel", "nan_counter", "not_eq_counter"):
        if k in res:
            df[k] = np.asarray(res[k])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "sweep.csv") as fh:
        df.to_csv(fh, index=False)
    ok = int(((df.get("os_rel", 0) < 0) & (df.get("ds_rel", 0) > 0)).sum()) if "os_rel" in df else 0
    print(json.dumps({"n_settings": args.n, "seconds": round(dt, 2), "os_rel<0 & ds_rel>0": ok}))
    return 0


def _search(args) -> int:
    import jax

    from .search import _optuna, tpe_search

    _optuna()  # a missing extra is reported before any work
    cfg = _cfg(args)
    best, _, path = tpe_search(cfg, key=jax.random.PRNGKey(cfg.seed), n_trials=args.trials, out_dir=args.out)
    print(json.dumps({"best": best, "csv": str(path)}, default=str))
    return 0


def register(subparsers) -> None:
    """Add ``spikejax l5 ...`` to the main parser."""
    p = subparsers.add_parser("l5", help="V1 layer-5 rate network (CS/CC/PV/SST): run, tune, sweep, search")
    sub = p.add_subparsers(dest="l5_command", metavar="ACTION")

    def common(sp, out_default):
        sp.add_argument("config", nargs="?", default=None, help="config file (.py/.json/.yaml) (default: the debug config)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key (JSON value), repeatable (default: none)")
        sp.add_argument("--seed", type=int, default=None, help="seed of the key (default: the config's seed)")
        sp.add_argument("--out", default=out_default, help="output folder")

    r = sub.add_parser("run", help="simulate a config; write weight_df, selectivity_df, summary_info, meta_data and plots")
    common(r, "out/l5_run")
    r.add_argument("--no-plots", action="store_true", help="write the tables only, no figures")
    r.set_defaults(func=_run)

    t = sub.add_parser("tune", help="gradient-based tuning toward os_rel < 0, ds_rel > 0, checked on fresh seeds")
    common(t, "out/l5_tune")
    t.add_argument("--epochs", "--steps", dest="epochs", type=positive_int, default=30, help="optimiser steps (n_epochs)")
    t.add_argument("--learning-rate", "--lr", dest="learning_rate", type=positive_float, default=0.03, help="Adam learning rate")
    t.add_argument("--margin", type=non_negative_float, default=0.2, help="hinge margin of the selectivity targets")
    t.add_argument("--check-sims", "--check_sims", type=positive_int, default=10,
                   help="simulations with fresh seeds that check the tuned parameters")
    t.set_defaults(func=_tune)

    s = sub.add_parser("sweep", help="vmapped sweep of random input amplitudes in one compiled call")
    common(s, "out/l5_sweep")
    s.add_argument("--n", type=positive_int, default=1000, help="number of random amplitude settings")
    s.add_argument("--chunk", type=positive_int, default=None, help="settings per compiled call (default: all at once)")
    s.add_argument("--memory-budget", dest="memory_budget", type=positive_float, default=None,
                   help="bytes per device for the compiled sweep (default: half the device memory)")
    s.set_defaults(func=_sweep)

    q = sub.add_parser("search", help="the original's TPE search (needs optuna: pip install spikejax[l5])")
    common(q, "out/l5_search")
    q.add_argument("--trials", type=positive_int, default=300, help="TPE trials")
    q.set_defaults(func=_search)

    def _help(_args, _p=p):
        _p.print_help()
        return 2

    p.set_defaults(func=_help)
