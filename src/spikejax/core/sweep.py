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

from .errors import ConfigError

__all__ = ["sweep", "stack", "unstack", "batch_size_of", "shard_batch"]


def stack(items: Sequence[Any]) -> Any:
    """Stack a list of pytrees of identical structure (e.g. equinox modules) along a new leading axis."""
    if not items:
        raise ConfigError("stack needs at least one item")
    arrays = [eqx.filter(it, eqx.is_array) for it in items]
    static = eqx.filter(items[0], eqx.is_array, inverse=True)
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *arrays)
    return eqx.combine(stacked, static)


def unstack(batched: Any) -> list[Any]:
    """Inverse of :func:`stack`."""
    n = batch_size_of(batched)
    arrays, static = eqx.partition(batched, eqx.is_array)
    return [eqx.combine(jax.tree_util.tree_map(lambda a: a[i], arrays), static) for i in range(n)]


def batch_size_of(tree: Any) -> int:
    """Leading-axis length shared by all array leaves of ``tree``."""
    sizes = {int(x.shape[0]) for x in jax.tree_util.tree_leaves(tree) if eqx.is_array(x) and x.ndim > 0}
    if len(sizes) != 1:
        raise ConfigError(f"all array leaves of the sweep batch must share their leading axis, got sizes {sorted(sizes)}")
    return sizes.pop()


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
    n = batch_size_of(params)
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
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
