"""YAML run configurations with the LFADS / pbt_opt hyperparameter names, and model save/load.

A configuration is a flat mapping; each key is routed by name to :class:`LFADSConfig` (sizes,
observation model), :class:`HParams` (dropout, CD, KL/L2 scales, ramps, loss scale),
:class:`TrainConfig` (optimiser, batch, epochs, sample validation) or :class:`PBTConfig`
(``n_workers``, ``epochs_per_generation``, ``max_generations``, ``n_no_best_to_stop``,
``percent_change_to_stop``, ``explore_method``, ``explore_param``, ...), plus ``sbtt``, ``seed``,
``layout``, ``n_samples`` and ``search_space`` (a list of :class:`SearchParam` mappings).
``data_dim``/``encod_seq_len`` default to the data's shape. Aliases from the original code:
``keep_prob`` (1 − dropout_rate), ``keep_ratio`` (1 − cd_rate), ``cell_clip_value``,
``factors_dim``, ``learning_rate_init``, ``kl_ic_weight``/``kl_co_weight``. Renamed keys (``lr_init`` →
``learning_rate``, ``max_epochs`` → ``n_epochs``, ``bin_ms`` → ``dt``) raise a ConfigError naming the new key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ..core.errors import ConfigError
from ..core.io import load_json, load_model, save_model
from .model import LFADS, HParams, LFADSConfig
from .population import DEFAULT_SEARCH_SPACE, PBTConfig, SearchParam
from .training import TrainConfig

__all__ = ["parse_config", "load_config", "save_lfads", "load_lfads"]

_HP_FIELDS = tuple(HParams.__dataclass_fields__)
_ALIASES = {"cell_clip_value": "cell_clip", "factors_dim": "fac_dim", "learning_rate_init": "learning_rate",
            "kl_ic_weight": "kl_ic_scale", "kl_co_weight": "kl_co_scale", "ic_enc_seq_len": None}
_EXTRA = ("sbtt", "seed", "layout", "n_samples", "search_space")
_RENAMED = {"lr_init": "learning_rate", "max_epochs": "n_epochs", "bin_ms": "dt", "sv_seed": None}


def parse_config(raw: dict[str, Any], *, data_shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """Split a flat hyperparameter mapping into the config objects; unknown names raise ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"the run configuration must be a mapping of hyperparameter names, got {type(raw).__name__}")
    raw = dict(raw)
    for old, new in _RENAMED.items():
        if old in raw:
            raise ConfigError(f"{old!r} was renamed: use {new!r}" if new else
                              f"{old!r} was removed: the sample-validation mask is drawn from the run's key (seed)")
    for alias, target in (("keep_prob", "dropout_rate"), ("keep_ratio", "cd_rate")):
        if alias in raw:
            v = raw.pop(alias)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ConfigError(f"{alias} must be a number in (0, 1] (it sets {target} = 1 - {alias}), got "
                                  f"{type(v).__name__} {v!r}")
            raw[target] = 1.0 - float(v)
    for name, kind in (("seed", int), ("n_samples", int), ("sbtt", bool)):
        if name in raw:
            v = raw[name]
            ok = isinstance(v, bool) if kind is bool else (isinstance(v, int) and not isinstance(v, bool))
            if not ok or (name == "n_samples" and v < 1) or (name == "seed" and v < 0):
                want = {"seed": "an int >= 0", "n_samples": "an int >= 1", "sbtt": "true or false"}[name]
                raise ConfigError(f"{name} must be {want}, got {type(v).__name__} {v!r}")
    if "layout" in raw:
        from .data import LAYOUTS

        if raw["layout"] not in LAYOUTS:
            raise ConfigError(f"layout must be one of {LAYOUTS}, got {raw['layout']!r}")
    for a, b in _ALIASES.items():
        if a in raw:
            v = raw.pop(a)
            if b is None:
                raise ConfigError(f"{a} is not supported by spikejax (the IC encoder reads the whole input)")
            raw[b] = v
    model_f = {f.name for f in dataclasses.fields(LFADSConfig)}
    train_f = {f.name for f in dataclasses.fields(TrainConfig)}
    pbt_f = {f.name for f in dataclasses.fields(PBTConfig)}
    unknown = sorted(set(raw) - model_f - train_f - pbt_f - set(_HP_FIELDS) - set(_EXTRA))
    if unknown:
        import difflib

        known = sorted(model_f | train_f | pbt_f | set(_HP_FIELDS) | set(_EXTRA))
        close = difflib.get_close_matches(str(unknown[0]), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown hyperparameter name(s) {unknown}{hint}; known: model {sorted(model_f)}, "
                          f"hparams {sorted(_HP_FIELDS)}, train {sorted(train_f)}, pbt {sorted(pbt_f)}, {list(_EXTRA)}")
    m = {k: raw[k] for k in model_f if k in raw}
    if data_shape is not None:
        m.setdefault("encod_seq_len", int(data_shape[1]))
        m.setdefault("data_dim", int(data_shape[2]))
    if "data_dim" not in m or "encod_seq_len" not in m:
        raise ConfigError("the configuration needs data_dim and encod_seq_len (or data to infer them from)")
    space = raw.get("search_space")
    if space is None:
        space = DEFAULT_SEARCH_SPACE
    else:
        try:
            space = tuple(SearchParam.from_dict(s) for s in space)
        except TypeError as exc:
            raise ConfigError(f"search_space entries need name, low, high (+ sampling, init, explore_param, "
                              f"enforce_limits, explore_method): {exc}") from None
    return {
        "model": LFADSConfig.from_dict(m),
        "hp": HParams.create(**{k: raw[k] for k in _HP_FIELDS if k in raw}),
        "train": TrainConfig.from_dict({k: raw[k] for k in train_f if k in raw}),
        "pbt": PBTConfig.from_dict({k: raw[k] for k in pbt_f if k in raw}),
        "search_space": space,
        "sbtt": bool(raw.get("sbtt", False)),
        "seed": int(raw.get("seed", 0)),
        "layout": raw.get("layout", "trials_time_neurons"),
        "n_samples": int(raw.get("n_samples", 50)),
    }


def load_config(path: str | Path, **kw) -> dict[str, Any]:
    """Read a YAML (or JSON) run configuration and :func:`parse_config` it."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no configuration file at {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_config(raw, **kw)


def save_lfads(path: str | Path, model: LFADS, hp: HParams | None = None, extra: dict | None = None) -> Path:
    """Save a model (equinox leaves) with its config and hyperparameters as JSON metadata."""
    meta = {"config": model.config.to_dict(),
            "hp": {k: float(np.asarray(getattr(hp, k))) for k in _HP_FIELDS} if hp is not None else None,
            **(extra or {})}
    return save_model(path, model, metadata=meta)


def load_lfads(path: str | Path) -> tuple[LFADS, HParams | None, dict]:
    """Load a model saved by :func:`save_lfads`; returns (model, hp, metadata)."""
    path = Path(path)
    meta = load_json(path.with_suffix(path.suffix + ".json"))
    cfg = LFADSConfig.from_dict(meta["config"])
    model = load_model(path, LFADS(cfg, key=jax.random.PRNGKey(0)))
    hp = HParams.create(**meta["hp"]) if meta.get("hp") else None
    return model, hp, meta
