"""Vectorised parameter sweeps: thousands of settings in one compiled call (``spikejax.core.sweep``).

Every setting is simulated on the same sampled networks (common random numbers) with the exact
metrics computed inside the compiled program, so the call returns only small summaries.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError, ShapeError, check_allocation, check_array, check_finite, check_scalar
from ..core.random import check_key
from ..core.sweep import sweep
from . import metrics as M
from .config import L5Config
from .engine import _run, simulation_bytes
from .model import L5Params, make_spec, replace_params
from .network import L5Network, build_network

__all__ = ["SWEEPABLE", "sweep_settings", "random_settings", "make_setting_fn"]

#: Leaves of :class:`~spikejax.l5.L5Params` that can vary across a sweep, with their shapes.
SWEEPABLE = {"amplitude": (4,), "steady": (4,), "tau": (4,), "tau_learn": (), "tau_threshold": (), "spatialF": (),
             "temporalF": (), "spatialPhase": (), "phi_lo": (), "phi_hi": (), "w_gain": (4, 4)}


def random_settings(n: int, *, key: jax.Array, low: float = 0.0, high: float = 20.0) -> dict:
    """``n`` amplitude settings drawn uniformly from the original's search box U(low, high)^4."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n (number of settings) must be an int >= 1, got {type(n).__name__} {n!r}")
    check_scalar(low, "low")
    check_scalar(high, "high")
    if not low < high:
        raise ConfigError(f"low must be < high, got low={low} and high={high}")
    return {"amplitude": jax.random.uniform(check_key(key), (int(n), 4), minval=low, maxval=high)}


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


def _check_settings(cfg: L5Config, settings: Any) -> tuple[dict, int]:
    """Validate a settings mapping: known names (closest match for a typo), shapes, one shared number of
    settings (>= 1), finite values and the domains of the swept parameters."""
    if not isinstance(settings, dict) or not settings:
        raise ConfigError("settings must be a non-empty dict of name -> array with a leading settings axis, got "
                          f"{type(settings).__name__} {settings!r}"[:300])
    batched: dict[str, jax.Array] = {}
    n = first = None
    for k, v in settings.items():
        if k not in SWEEPABLE:
            close = difflib.get_close_matches(str(k), list(SWEEPABLE), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"cannot sweep {k!r}; {hint}sweepable leaves are {sorted(SWEEPABLE)}")
        a = check_array(v, f"settings[{k!r}]", finite=False)
        a = jnp.asarray(a, dtype=jnp.result_type(float))
        if a.ndim < 1 or a.shape[1:] != SWEEPABLE[k]:
            raise ShapeError(f"settings[{k!r}] must have shape (n,) + {SWEEPABLE[k]}, got {tuple(a.shape)}")
        if a.shape[0] == 0:
            raise ConfigError(f"settings[{k!r}] holds no settings (leading axis 0): nothing to sweep")
        check_finite(a, f"settings[{k!r}]")
        if n is not None and a.shape[0] != n:
            raise ShapeError(f"all settings must share the leading axis: settings[{first!r}] has {n} rows, "
                             f"settings[{k!r}] has {a.shape[0]}")
        n, first = int(a.shape[0]), first or k
        batched[k] = a
    if "tau" in batched and bool(jnp.any(batched["tau"] <= cfg.dt)):
        raise ConfigError(f"settings['tau'] must be > dt={cfg.dt} everywhere, got minimum {float(jnp.min(batched['tau']))}")
    for k in ("tau_learn", "tau_threshold"):
        if k in batched and bool(jnp.any(batched[k] <= 0)):
            raise ConfigError(f"settings[{k!r}] must be > 0 everywhere, got minimum {float(jnp.min(batched[k]))}")
    if "phi_lo" in batched or "phi_hi" in batched:
        lo = np.broadcast_to(np.asarray(batched.get("phi_lo", cfg.phi_lo)), (n,))
        hi = np.broadcast_to(np.asarray(batched.get("phi_hi", cfg.phi_hi)), (n,))
        bad = np.flatnonzero(~(lo < hi))
        if bad.size:
            i = int(bad[0])
            raise ConfigError(f"settings['phi_lo'] must be < settings['phi_hi'] (or the config's phi_lo/phi_hi) in every "
                              f"setting; setting {i} has phi_lo={lo[i]} and phi_hi={hi[i]} ({bad.size} such setting(s))")
    return batched, n


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
    if not isinstance(config, L5Config):
        raise TypeError(f"config must be an L5Config, got {type(config).__name__}")
    batched, n = _check_settings(config, settings)
    cfg = config
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
                                   or chunk_size < 1):
        raise ConfigError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")
    # with chunk_size=None the memory budget picks the chunk (core.sweep), so one setting must fit
    n_eff = min(n, int(chunk_size)) if chunk_size is not None else 1
    spec = make_spec(cfg, record_weights=False, capacity=cfg.n_steps + 1 if "tau_threshold" in batched else None)
    S = cfg.sim_number if net is None else int(net.W.shape[0])
    check_allocation(n_eff * simulation_bytes(spec, S, len(cfg.degree)), argument="settings (their number n)",
                     what=f"{n_eff} settings at once, each simulating {S} network(s) of {cfg.n_total} neurons "
                          f"(pass a smaller chunk_size=, or none: the memory budget then picks it)")
    net = build_network(cfg, key=check_key(key)) if net is None else net
    p0 = L5Params.from_config(cfg)

    one = _setting_fn(cfg, spec)
    return sweep(one, batched, p0, net, chunk_size=chunk_size, memory_budget=memory_budget)
