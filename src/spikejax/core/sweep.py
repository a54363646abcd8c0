"""Parameter sweeps: ``vmap`` over a batch of settings, sharded over all local devices.

:func:`sweep` evaluates (or fits) ``fn(params, *args)`` for every setting along the leading
axis of ``params`` in one compiled program. The batch is padded to a multiple of the number
of local devices and laid out with a ``NamedSharding`` over a 1-D mesh, so on a multi-GPU
host (or CPU with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``) each device works on
its share; results are identical to the unsharded run. ``chunk_size`` bounds memory for very
large sweeps by running ``lax.map`` over chunks of vmapped settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .errors import ConfigError, ShapeError

__all__ = ["sweep", "stack", "unstack", "batch_size_of", "shard_batch"]


def stack(items: Sequence[Any]) -> Any:
    """Stack a list of pytrees of identical structure (e.g. equinox modules) along a new leading axis."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ConfigError(f"stack needs a list of pytrees (e.g. equinox modules), got {type(items).__name__}")
    if not items:
        raise ConfigError("stack needs at least one item")
    arrays = [eqx.filter(it, eqx.is_array) for it in items]
    first = jax.tree_util.tree_flatten_with_path(arrays[0])
    for i, tree in enumerate(arrays[1:], start=1):
        leaves = jax.tree_util.tree_flatten_with_path(tree)
        if leaves[1] != first[1]:
            raise ShapeError(f"stack: item {i} has a different structure from item 0 ({leaves[1]} vs {first[1]})"[:600])
        for (path, a), (_, a0) in zip(leaves[0], first[0]):
            if np.shape(a) != np.shape(a0) or jnp.result_type(a) != jnp.result_type(a0):
                raise ShapeError(f"stack: leaf {jax.tree_util.keystr(path)} of item {i} has shape {np.shape(a)} "
                                 f"and dtype {jnp.result_type(a)}, item 0 has shape {np.shape(a0)} and dtype "
                                 f"{jnp.result_type(a0)}")
    static = eqx.filter(items[0], eqx.is_array, inverse=True)
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *arrays)
    return eqx.combine(stacked, static)


def unstack(batched: Any) -> list[Any]:
    """Inverse of :func:`stack`."""
    n = batch_size_of(batched)
    arrays, static = eqx.partition(batched, eqx.is_array)
    return [eqx.combine(jax.tree_util.tree_map(lambda a: a[i], arrays), static) for i in range(n)]


def batch_size_of(tree: Any, name: str = "the sweep batch") -> int:
    """Leading-axis length shared by all array leaves of ``tree`` (a :class:`ConfigError` naming the leaves if not)."""
    by_size: dict[int, list[str]] = {}
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if eqx.is_array(x) and x.ndim > 0:
            by_size.setdefault(int(x.shape[0]), []).append(jax.tree_util.keystr(path) or "(root)")
    if not by_size:
        raise ConfigError(f"{name} has no array leaf with a leading (settings) axis, got {type(tree).__name__}")
    if len(by_size) != 1:
        listed = "; ".join(f"{', '.join(paths[:4])}{' ...' if len(paths) > 4 else ''} {'have' if len(paths) > 1 else 'has'} "
                           f"{n}" for n, paths in sorted(by_size.items(), key=lambda kv: kv[1][0]))
        raise ConfigError(f"all array leaves of {name} must share their leading axis: {listed}")
    return next(iter(by_size))


def shard_batch(tree: Any, devices: Sequence[Any] | None = None) -> tuple[Any, int]:
    """Pad the leading axis of every array leaf to a multiple of the device count and shard it.

    Returns ``(sharded_tree, n_original)``. Padding repeats the last setting (so padded entries
    compute valid numbers that are then dropped).
    """
    devices = list(devices) if devices is not None else jax.local_devices()
    n = batch_size_of(tree)
    n_dev = len(devices)
    padded = -(-n // n_dev) * n_dev
    mesh = Mesh(np.asarray(devices), ("sweep",))

    def place(x):
        if not eqx.is_array(x) or x.ndim == 0:
            return x
        if padded != n:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], padded - n, axis=0)], axis=0)
        spec = PartitionSpec("sweep", *([None] * (x.ndim - 1)))
        return jax.device_put(x, NamedSharding(mesh, spec))

    return jax.tree_util.tree_map(place, tree), n


def sweep(
    fn: Callable[..., Any],
    params: Any,
    *args: Any,
    shard: bool = True,
    chunk_size: int | None = None,
    devices: Sequence[Any] | None = None,
) -> Any:
    """Evaluate ``fn(p, *args)`` for every setting ``p`` along the leading axis of ``params``.

    Parameters
    ----------
    fn
        Pure function of one setting (a pytree without the batch axis) and the shared ``args``.
        It may itself run a whole fit (``lax.scan`` over optimiser steps).
    params
        Pytree (e.g. a stacked equinox module, see :func:`stack`) with a leading batch axis.
    args
        Shared, un-batched arguments (data, keys, ...). Pass per-setting keys inside ``params``.
    shard
        Shard the batch over all local devices (no effect with one device).
    chunk_size
        Vmap at most this many settings at once (``lax.map`` over chunks) to bound memory.

    Returns
    -------
    The stacked outputs, with the leading axis of length equal to the batch size.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable (fn(params, *args)), got {type(fn).__name__}")
    n = batch_size_of(params, "params")
    if n == 0:
        raise ConfigError("params holds no settings (its leading axis has length 0): nothing to sweep")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
                                   or chunk_size < 1):
        raise ConfigError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")
    if chunk_size is not None and chunk_size >= n:
        chunk_size = None
    dyn, static = eqx.partition(params, eqx.is_array)
    n_dev = len(devices) if devices is not None else jax.local_device_count()
    if shard and n_dev > 1:
        dyn, n = shard_batch(dyn, devices)
    out = _run_sweep(fn, static, dyn, args, chunk_size)
    return jax.tree_util.tree_map(lambda x: x[:n] if eqx.is_array(x) and x.ndim > 0 else x, out)


@eqx.filter_jit
def _run_sweep(fn, static, dyn, args, chunk_size):
    """Module-level compiled sweep: the shared ``args`` are traced arguments (not baked-in constants),
    and repeated sweeps of the same function and shapes reuse one compilation."""

    def one(p):
        return fn(eqx.combine(p, static), *args)

    if chunk_size is None:
        return jax.vmap(one)(dyn)
    return jax.lax.map(one, dyn, batch_size=chunk_size)
