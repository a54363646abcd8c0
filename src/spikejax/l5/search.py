"""The original's TPE hyper-parameter search (hyperopt there, optuna here) over input amplitudes,
``tau_learn`` and the threshold factor, minimising the HEAD loss; writes the original's CSV of
attempts ``<name>_<time>_<rule>_TuningResults.csv``.

Requires the optional extra ``l5`` (``pip install spikejax[l5]``, i.e. optuna).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from ..core.errors import ConfigError
from ..core.io import atomic_open
from ..core.random import check_key
from .config import L5Config
from .engine import _run
from .model import L5Params, make_spec, replace_params
from .network import build_network
from .outputs import evaluate, head_loss, selectivity_df, weight_df

__all__ = ["SPACE", "tpe_search", "trial_loss"]

#: The HEAD search space: amplitudes U(0, 20), tau_learn U(1000, 2000), tau_threshold_fac U(0.001, 1).
SPACE = {"cs": (0.0, 20.0), "cc": (0.0, 20.0), "pv": (0.0, 20.0), "sst": (0.0, 20.0),
         "tau_learn": (1000.0, 2000.0), "tau_threshold_fac": (0.001, 1.0)}


def _optuna():
    try:
        import optuna
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the TPE search needs optuna: install the optional extra with `pip install spikejax[l5]` "
            "(or `pip install optuna`)"
        ) from None
    return optuna


def _sampler_seed(key) -> int:
    """A seed for optuna's sampler drawn from ``key`` (so the caller's key decides the whole search)."""
    return int(jax.random.randint(jax.random.fold_in(key, 0x7E5), (), 0, 2**31 - 1))


def trial_loss(config: L5Config, net, spec, p0: L5Params, amplitude, tau_learn: float, tau_threshold: float) -> float:
    """HEAD loss of one setting (fixed networks, parameters as traced leaves: no recompilation)."""
    p = replace_params(p0, amplitude=np.asarray(amplitude, float), tau_learn=tau_learn, tau_threshold=tau_threshold)
    out = _run(p, net, spec)
    after, before, _, _ = evaluate(out, config)
    loss = head_loss(weight_df(out, config.N), selectivity_df(after, before))
    return float(loss) if np.isfinite(loss) else 1e6


def tpe_search(
    config: L5Config,
    *,
    key: jax.Array,
    n_trials: int = 300,
    out_dir: str | Path = ".",
    faithful_order: bool = True,
    space: dict | None = None,
) -> tuple[dict, pd.DataFrame, Path]:
    """Run the original's TPE search.

    Parameters
    ----------
    config
        Base configuration (the networks are sampled once, from ``key``).
    key
        Samples the networks and seeds the TPE sampler.
    n_trials
        Number of evaluations (``max_evals`` = 300 in the original).
    faithful_order
        Reproduce bug 10: the objective passes amplitudes in the order [cc, cs, pv, sst], so the
        parameter called "cc" drives CS. ``False`` uses [cs, cc, pv, sst].
    out_dir
        Folder of the CSV ``<name_sim>_<time>_<rule>_TuningResults.csv`` (columns loss, iteration,
        cs, cc, pv, sst, tau_learn, tau_threshold (the factor); forward-filled).

    Returns
    -------
    (best parameters, attempts table, CSV path)
    """
    optuna = _optuna()
    if n_trials < 1:
        raise ConfigError(f"n_trials must be >= 1, got {n_trials}")
    space = dict(SPACE if space is None else space)
    missing = [k for k in SPACE if k not in space]
    if missing:
        raise ConfigError(f"space misses {missing}")
    cfg = config
    key = check_key(key)
    net = build_network(cfg, key=key)
    spec = make_spec(cfg, record_weights=True, capacity=cfg.n_steps + 1)
    p0 = L5Params.from_config(cfg)
    rows = []

    def objective(trial):
        v = {k: trial.suggest_float(k, *space[k]) for k in SPACE}
        amp = [v["cc"], v["cs"], v["pv"], v["sst"]] if faithful_order else [v["cs"], v["cc"], v["pv"], v["sst"]]
        loss = trial_loss(cfg, net, spec, p0, amp, v["tau_learn"], v["tau_threshold_fac"] * v["tau_learn"])
        rows.append({"loss": loss, "iteration": trial.number, "cs": v["cs"], "cc": v["cc"], "pv": v["pv"],
                     "sst": v["sst"], "tau_learn": v["tau_learn"], "tau_threshold": v["tau_threshold_fac"]})
        return loss

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=_sampler_seed(key)))
    study.optimize(objective, n_trials=n_trials)
    df = pd.DataFrame(rows, columns=["loss", "iteration", "cs", "cc", "pv", "sst", "tau_learn", "tau_threshold"]).ffill()
    stamp = _dt.datetime.now().strftime("%m%d_%H-%M-%S")
    path = Path(out_dir) / f"{cfg.name_sim}_{stamp}_{cfg.learning_rule}_TuningResults.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        df.to_csv(fh, float_format="%.3f")
    best = dict(study.best_params)
    best["loss"] = float(study.best_value)
    # the final re-run of the original uses [cs, cc, pv, sst]
    best["amplitude"] = [best["cs"], best["cc"], best["pv"], best["sst"]]
    best["tau_threshold"] = best["tau_threshold_fac"] * best["tau_learn"]
    return best, df, path
