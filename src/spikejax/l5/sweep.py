"""Vectorised parameter sweeps: thousands of settings in one compiled call (``spikejax.core.sweep``).

Every setting is simulated on the same sampled networks (common random numbers) with the exact
metrics computed inside the compiled program, so the call returns only small summaries.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError, ShapeError
from ..core.random import check_key
from ..core.sweep import sweep
from . import metrics as M
from .config import L5Config
from .engine import _run
from .model import L5Params, make_spec, replace_params
from .network import L5Network, build_network

__all__ = ["SWEEPABLE", "sweep_settings", "random_settings", "make_setting_fn"]

#: Leaves of :class:`~spikejax.l5.L5Params` that can vary across a sweep, with their shapes.
SWEEPABLE = {"amplitude": (4,), "steady": (4,), "tau": (4,), "tau_learn": (), "tau_threshold": (), "spatialF": (),
             "temporalF": (), "spatialPhase": (), "phi_lo": (), "phi_hi": (), "w_gain": (4, 4)}


def random_settings(n: int, *, key: jax.Array, low: float = 0.0, high: float = 20.0) -> dict:
    """``n`` amplitude settings drawn uniformly from the original's search box U(low, high)^4."""
    return {"amplitude": jax.random.uniform(key, (n, 4), minval=low, maxval=high)}


def make_setting_fn(config: L5Config, spec):
    """``one(setting, p_base, net) -> summaries`` for a single setting (what :func:`sweep_settings` vmaps)."""
    cfg = config
    eval_blocks = cfg.eval_steps // cfg.block
    n_dir = int(np.asarray(cfg.degree).size)

    def one(setting, p_base, network):
        p = replace_params(p_base, **setting)
        out = _run(p, network, spec, jit=False)
        res = {}
        if n_dir == 4:
            agg = M.aggregate(M.summarize(out.rates, cfg.N, eval_blocks=eval_blocks))
            res = {k: agg[k] for k in ("os_rel", "ds_rel", "os_p_rel", "act_mean", "OS_mean", "DS_mean", "OS_p_mean")}
        else:
            res["act_mean"] = jnp.mean(out.rates[..., -eval_blocks:, :], axis=(0, 1, 2))
        cnt = M.counters(out.rates, cfg.N, variant=cfg.variant, eval_blocks=eval_blocks)
        res["nan_counter"] = cnt["nan_counter"]
        res["not_eq_counter"] = cnt["not_eq_counter"]
        return res

    return one


@functools.lru_cache(maxsize=16)
def _cached_setting_fn(config: L5Config, spec):
    return make_setting_fn(config, spec)


def _setting_fn(config: L5Config, spec):
    """The same function for equal (config, spec): repeated sweeps reuse one compilation."""
    try:
        return _cached_setting_fn(config, spec)
    except TypeError:  # unhashable
        return make_setting_fn(config, spec)


def sweep_settings(
    config: L5Config,
    settings: dict,
    *,
    key: jax.Array | None = None,
    net: L5Network | None = None,
    chunk_size: int | None = None,
    memory_budget: float | str | None = "auto",
) -> dict:
    """Simulate every setting and return exact summaries, one row per setting.

    Parameters
    ----------
    config
        Base configuration (structure, step count, networks).
    key
        Samples the networks (required unless ``net`` is given; all settings share them).
    settings
        Mapping from a name in :data:`SWEEPABLE` to an array with a leading axis of n settings
        (e.g. ``{"amplitude": (n, 4)}``).
    chunk_size
        Vmap at most this many settings at once per device (bounds memory; still one compiled call).
    memory_budget
        Bytes per device for the compiled sweep (see :func:`spikejax.core.sweep`): the largest
        chunk of settings whose program fits, by XLA's memory analysis. ``"auto"`` (default): half
        of :func:`spikejax.core.memory_limit_bytes`; ``None``: all settings at once.

    Returns
    -------
    dict of arrays with leading axis n: ``os_rel``, ``ds_rel``, ``os_p_rel``, ``act_mean`` (n, 4),
    ``OS_mean``, ``DS_mean``, ``OS_p_mean`` (n, 4), ``nan_counter``, ``not_eq_counter``.
    """
    if not isinstance(settings, dict) or not settings:
        raise ConfigError("settings must be a non-empty dict of name -> array with a leading settings axis")
    batched = {}
    n = None
    for k, v in settings.items():
        if k not in SWEEPABLE:
            raise ConfigError(f"cannot sweep {k!r}; sweepable leaves are {sorted(SWEEPABLE)}")
        a = jnp.asarray(v, dtype=jnp.result_type(float))
        if a.shape[1:] != SWEEPABLE[k] or a.ndim < 1:
            raise ShapeError(f"settings[{k!r}] must have shape (n,) + {SWEEPABLE[k]}, got {tuple(a.shape)}")
        if not bool(jnp.all(jnp.isfinite(a))):
            raise ConfigError(f"settings[{k!r}] holds NaN or inf")
        if n is not None and a.shape[0] != n:
            raise ShapeError(f"all settings must share the leading axis, got {n} and {a.shape[0]} for {k!r}")
        n = a.shape[0]
        batched[k] = a
    cfg = config
    if "tau" in batched and bool(jnp.any(batched["tau"] <= cfg.dt)):
        raise ConfigError(f"settings['tau'] must be > dt={cfg.dt} everywhere")
    net = build_network(cfg, key=check_key(key)) if net is None else net
    spec = make_spec(cfg, record_weights=False, capacity=cfg.n_steps + 1 if "tau_threshold" in batched else None)
    p0 = L5Params.from_config(cfg)

    one = _setting_fn(cfg, spec)
    return sweep(one, batched, p0, net, chunk_size=chunk_size, memory_budget=memory_budget)
