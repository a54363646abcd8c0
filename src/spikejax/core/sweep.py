"""Parameter sweeps: ``vmap`` over a batch of settings, sharded over every device (all processes').

:func:`sweep` evaluates (or fits) ``fn(params, *args)`` for every setting along the leading axis of
``params`` in one compiled program. The batch is padded to a multiple of the number of devices and
laid out with a ``NamedSharding`` over a 1-D mesh (axis ``"sweep"``); the program is a ``shard_map``
over that mesh, so each device works on its own share and nothing is exchanged between devices
(results are identical to the unsharded run). On a multi-GPU host (or CPU with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``) the mesh holds the local devices; after
``jax.distributed.initialize()`` (``jax.process_count() > 1``) it holds every process's devices:
each process builds only its own shards of the batch, the shared arguments are replicated, and the
results are gathered so every process returns the whole batch.

Memory: every device maps (``lax.map``) over chunks of its own shard, each chunk vmapped. The chunk
is either given (``chunk_size``) or chosen so that the compiled program fits ``memory_budget``
bytes per device, as measured by XLA's memory analysis of the compiled program
(:func:`plan_chunks`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .errors import ConfigError, ShapeError, SizeError, _fmt_bytes, memory_limit_bytes

__all__ = ["sweep", "stack", "unstack", "batch_size_of", "shard_batch", "replicate", "gather", "sweep_devices",
           "is_multiprocess", "plan_chunks", "program_memory", "DEFAULT_MEMORY_FRACTION"]

#: The default ``memory_budget`` of :func:`sweep`: this fraction of :func:`spikejax.core.memory_limit_bytes`.
DEFAULT_MEMORY_FRACTION = 0.5


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


# ------------------------------------------------------------------------------------------------
# devices, processes, placement
# ------------------------------------------------------------------------------------------------


def is_multiprocess() -> bool:
    """``True`` after ``jax.distributed.initialize()`` with more than one process."""
    return jax.process_count() > 1


def sweep_devices(devices: Sequence[Any] | None = None) -> list[Any]:
    """The devices a sweep or population spans by default: every process's devices (``jax.devices()``)
    when ``jax.process_count() > 1``, else the local ones."""
    if devices is not None:
        return list(devices)
    return list(jax.devices()) if is_multiprocess() else list(jax.local_devices())


def _mesh(devices: Sequence[Any]) -> Mesh:
    return Mesh(np.asarray(list(devices)), ("sweep",))


def _spans_processes(mesh: Mesh | None) -> bool:
    return mesh is not None and any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def _to_global(x: Any, sharding: NamedSharding) -> jax.Array:
    """A global array laid out by ``sharding`` from the full value ``x`` that every process holds:
    each process builds only the shards of its own devices (no ``device_put`` of a global value)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return x
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _pad_rows(x: Any, padded: int) -> Any:
    n = int(x.shape[0])
    if padded == n:
        return x
    if isinstance(x, np.ndarray):
        return np.concatenate([x, np.repeat(x[-1:], padded - n, axis=0)], axis=0)
    return jnp.concatenate([x, jnp.repeat(x[-1:], padded - n, axis=0)], axis=0)


def shard_batch(tree: Any, devices: Sequence[Any] | None = None, *, multiple: int = 1) -> tuple[Any, int]:
    """Pad the leading axis of every array leaf to a multiple of ``multiple`` x the device count and shard it.

    Returns ``(sharded_tree, n_original)``. Padding repeats the last setting (so padded entries
    compute valid numbers that are then dropped). ``devices`` defaults to :func:`sweep_devices`;
    when they span several processes, every process passes the same full ``tree`` and builds only
    its own shards (``jax.make_array_from_callback``).
    """
    devices = sweep_devices(devices)
    n = batch_size_of(tree)
    step = len(devices) * max(int(multiple), 1)
    padded = -(-n // step) * step
    mesh = _mesh(devices)
    multi = _spans_processes(mesh)

    def place(x):
        if not eqx.is_array(x):
            return x
        if x.ndim == 0:
            return _to_global(x, NamedSharding(mesh, PartitionSpec())) if multi else x
        if multi and not isinstance(x, np.ndarray):
            x = np.asarray(x)
        x = _pad_rows(x, padded)
        sharding = NamedSharding(mesh, PartitionSpec("sweep", *([None] * (x.ndim - 1))))
        return _to_global(x, sharding) if multi else jax.device_put(x, sharding)

    return jax.tree_util.tree_map(place, tree), n


def replicate(tree: Any, devices: Sequence[Any] | Mesh | None = None) -> Any:
    """Shared inputs for a program spanning several processes: every array leaf becomes a global array
    replicated on all ``devices`` (each process places its own copies, once). Unchanged when the
    devices belong to this process alone."""
    mesh = devices if isinstance(devices, Mesh) else _mesh(sweep_devices(devices))
    if not _spans_processes(mesh):
        return tree
    rep = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda x: _to_global(x, rep) if eqx.is_array(x) else x, tree)


def gather(tree: Any) -> Any:
    """Bring every array leaf that lives partly on other processes' devices to this host (numpy):
    fully replicated arrays are read from a local copy, sharded ones are gathered from all processes
    (``multihost_utils.process_allgather``; every process must call this in the same order).
    Leaves that are fully addressable stay as they are."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    out = []
    for x in leaves:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.is_fully_replicated:
                x = np.asarray(x.addressable_data(0))
            else:
                from jax.experimental import multihost_utils

                x = np.asarray(multihost_utils.process_allgather(x, tiled=True))
        out.append(x)
    return jax.tree_util.tree_unflatten(treedef, out)


# ------------------------------------------------------------------------------------------------
# the compiled sweep
# ------------------------------------------------------------------------------------------------


@eqx.filter_jit
def _run_sweep(fn, static, dyn, arg_dyn, arg_static, chunk, mesh):
    """Module-level compiled sweep: the shared arguments are traced (not baked-in constants), and
    repeated sweeps of the same function and shapes reuse one compilation. With a mesh, a
    ``shard_map``: every device vmaps (or maps over chunks of) its own shard, nothing is exchanged."""
    out_static: list[Any] = []

    def local(d, a):
        args = eqx.combine(a, arg_static)

        def one(p):
            arrays, st = eqx.partition(fn(eqx.combine(p, static), *args), eqx.is_array)
            if not out_static:
                out_static.append(st)
            return arrays

        if chunk is None:
            return jax.vmap(one)(d)
        k = batch_size_of(d) // chunk
        split = jax.tree_util.tree_map(lambda x: x.reshape((k, chunk) + x.shape[1:]), d)
        out = jax.lax.map(jax.vmap(one), split)
        return jax.tree_util.tree_map(lambda y: y.reshape((k * chunk,) + y.shape[2:]), out)

    if mesh is None:
        arrays = local(dyn, arg_dyn)
    else:
        spec = PartitionSpec("sweep")
        arrays = jax.shard_map(local, mesh=mesh, in_specs=(spec, PartitionSpec()), out_specs=spec,
                               check_vma=False)(dyn, arg_dyn)
    return eqx.combine(arrays, out_static[0])


def program_memory(compiled: Any) -> dict[str, int] | None:
    """Bytes per device of a compiled program by XLA's memory analysis: ``temp``, ``argument``,
    ``output``, ``alias`` and ``peak`` (= argument + output + temp - alias, what one device must hold
    at once); ``None`` where the backend gives no analysis."""
    compiled = getattr(compiled, "compiled", compiled)
    try:
        ma = compiled.memory_analysis()
    except Exception:  # pragma: no cover - backends without an analysis
        return None
    if ma is None:
        return None
    get = lambda name: int(getattr(ma, f"{name}_size_in_bytes", 0) or 0)  # noqa: E731
    out = {k: get(k) for k in ("temp", "argument", "output", "alias")}
    out["peak"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
    return out


def _budget_bytes(memory_budget: Any, device: Any) -> float | None:
    if memory_budget is None:
        return None
    if isinstance(memory_budget, str):
        if memory_budget != "auto":
            raise ConfigError(f"memory_budget must be a number of bytes, 'auto' or None, got {memory_budget!r}")
        limit = memory_limit_bytes(device)
        return None if limit is None else DEFAULT_MEMORY_FRACTION * limit
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float, np.integer, np.floating)) \
            or not np.isfinite(memory_budget) or memory_budget <= 0:
        raise ConfigError(f"memory_budget must be a positive number of bytes, 'auto' or None, got {memory_budget!r}")
    return float(memory_budget)


def _balanced(n_local: int, chunk: int) -> int | None:
    """The chunk actually used for at most ``chunk`` settings per step over ``n_local`` settings:
    as many steps as needed, the settings spread evenly (``None``: one step, plain vmap)."""
    chunk = max(1, min(int(chunk), n_local))
    if chunk >= n_local:
        return None
    k = -(-n_local // chunk)
    return -(-n_local // k)


class _Sweep:
    """One sweep's layout: the mesh, the placed shared arguments, and compiled programs per chunk."""

    def __init__(self, fn, params, args, shard, devices):
        self.fn = fn
        self.n = batch_size_of(params)
        self.dyn, self.static = eqx.partition(params, eqx.is_array)
        devs = sweep_devices(devices)
        self.device = devs[0]
        self.devices = devs
        self.mesh = _mesh(devs) if (shard and len(devs) > 1) else None
        self.multi = _spans_processes(self.mesh)
        self.n_dev = len(devs) if self.mesh is not None else 1
        self.n_local = -(-self.n // self.n_dev)
        arg_dyn, self.arg_static = eqx.partition(args, eqx.is_array)
        self.arg_dyn = replicate(arg_dyn, self.mesh) if self.multi else arg_dyn
        self._compiled: dict[Any, tuple[Any, Any]] = {}

    def placed(self, chunk):
        """The batch padded (repeating the last setting) to ``k * chunk`` rows per device and sharded."""
        per_dev = 1 if chunk is None else chunk * (-(-self.n_local // chunk))
        if self.mesh is None:
            return jax.tree_util.tree_map(lambda x: _pad_rows(x, per_dev) if eqx.is_array(x) and x.ndim else x,
                                          self.dyn) if chunk is not None else self.dyn
        return shard_batch(self.dyn, self.devices, multiple=per_dev)[0]

    def compile(self, chunk):
        if chunk not in self._compiled:
            placed = self.placed(chunk)
            comp = _run_sweep.lower(self.fn, self.static, placed, self.arg_dyn, self.arg_static, chunk, self.mesh).compile()
            self._compiled[chunk] = (comp, placed)
        return self._compiled[chunk]

    def memory(self, chunk):
        return program_memory(self.compile(chunk)[0])

    def run(self, chunk):
        comp, placed = self.compile(chunk)
        out = comp(self.fn, self.static, placed, self.arg_dyn, self.arg_static, chunk, self.mesh)
        if self.multi:
            out = gather(out)
        n = self.n
        return jax.tree_util.tree_map(lambda x: x[:n] if eqx.is_array(x) and x.ndim > 0 else x, out)

    def plan(self, budget, strict=True):
        """The largest chunk whose compiled program fits ``budget`` bytes per device. Not ``strict``
        (the default budget): where even one setting per step does not fit, run one setting per step
        (or unchunked with one setting per device) instead of refusing."""
        full = self.memory(None)
        if budget is None or full is None or full["peak"] <= budget:
            return None, full
        if self.n_local == 1:
            if not strict:
                return None, full
            raise SizeError(f"memory_budget: one setting per device needs {_fmt_bytes(full['peak'])} per device, more "
                            f"than the budget of {_fmt_bytes(budget)} (raise memory_budget, or use more devices)")
        one = self.memory(1)
        if one["peak"] > budget and not strict:
            warnings.warn(f"sweep: one setting per step needs {_fmt_bytes(one['peak'])} per device, more than the default "
                          f"memory_budget ({_fmt_bytes(budget)}); running one setting per step", stacklevel=3)
            return 1, one
        if one["peak"] > budget:
            raise SizeError(f"memory_budget: even one setting at a time needs {_fmt_bytes(one['peak'])} per device, "
                            f"more than the budget of {_fmt_bytes(budget)}")
        # temporary memory grows about linearly with the chunk: interpolate, then check the compiled program
        slope = max((full["peak"] - one["peak"]) / max(self.n_local - 1, 1), 1.0)
        guess = 1 + int((budget - one["peak"]) // slope)
        best, best_mem = 1, one
        tried = {1}
        while True:
            chunk = _balanced(self.n_local, max(1, min(guess, self.n_local - 1)))
            if chunk is None or chunk in tried:
                break
            tried.add(chunk)
            mem = self.memory(chunk)
            if mem["peak"] <= budget:
                if chunk > best:
                    best, best_mem = chunk, mem
                break
            guess = max(1, int(chunk * min(0.9, budget / mem["peak"])))
        for c in list(self._compiled):  # free the executables not used
            if c not in (best,):
                self._compiled.pop(c)
        return best, best_mem


def plan_chunks(
    fn: Callable[..., Any],
    params: Any,
    *args: Any,
    memory_budget: float | str | None = "auto",
    shard: bool = True,
    devices: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """What :func:`sweep` would run under ``memory_budget``, without running it.

    Returns a dict: ``chunk_size`` (settings vmapped at once per device; ``None`` = the whole shard
    at once), ``n_devices``, ``per_device`` (settings per device before padding), ``budget``
    (bytes), ``memory`` (:func:`program_memory` of the chosen program, bytes per device) and
    ``unbounded_memory`` (the same for the program without chunks).
    """
    sw = _Sweep(fn, params, args, shard, devices)
    budget = _budget_bytes(memory_budget, sw.device)
    unbounded = sw.memory(None)
    chunk, mem = sw.plan(budget, strict=memory_budget != "auto")
    return {"chunk_size": chunk, "n_devices": sw.n_dev, "per_device": sw.n_local, "budget": budget, "memory": mem,
            "unbounded_memory": unbounded}


def sweep(
    fn: Callable[..., Any],
    params: Any,
    *args: Any,
    shard: bool = True,
    chunk_size: int | None = None,
    memory_budget: float | str | None = "auto",
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
        Shard the batch over the devices (no effect with one device). Each device computes only its
        own shard (a ``shard_map``); across processes each process places only its own shards.
    chunk_size
        Vmap at most this many settings at once on each device (each device maps over chunks of
        its own shard); overrides ``memory_budget``.
    memory_budget
        Bytes one device may use for the compiled program (arguments, outputs and XLA's temporary
        buffers, by ``compiled.memory_analysis()``). If the unchunked program needs more, the sweep
        compiles a one-setting chunk, interpolates, and runs the largest chunk that fits (checked on
        the compiled program). ``"auto"`` (default): :data:`DEFAULT_MEMORY_FRACTION` of
        :func:`spikejax.core.memory_limit_bytes` (where even one setting per step does not fit it,
        one setting per step runs, with a warning); ``None``: no bound. An explicit budget that even
        one setting per device does not fit raises :class:`~spikejax.core.SizeError`.
    devices
        Devices to span (default :func:`sweep_devices`: all processes' devices after
        ``jax.distributed.initialize()``, else the local ones).

    Returns
    -------
    The stacked outputs, with the leading axis of length equal to the batch size. Across processes
    every process receives the whole (gathered) result.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable (fn(params, *args)), got {type(fn).__name__}")
    if batch_size_of(params, "params") == 0:
        raise ConfigError("params holds no settings (its leading axis has length 0): nothing to sweep")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
                                   or chunk_size < 1):
        raise ConfigError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")
    sw = _Sweep(fn, params, args, shard, devices)
    if chunk_size is not None:
        return sw.run(_balanced(sw.n_local, int(chunk_size)))
    budget = _budget_bytes(memory_budget, sw.device)
    chunk, _ = sw.plan(budget, strict=memory_budget != "auto")
    return sw.run(chunk)
