"""Time stepping on ``jax.lax.scan``, with optional gradient checkpointing for long BPTT.

All families step their dynamics through :func:`scan`. For long sequences under
reverse-mode differentiation, ``checkpoint=k`` splits the time axis into blocks of ``k``
steps and rematerialises each block on the backward pass: memory drops from O(T) carries
to O(T/k + k) at the cost of one extra forward pass. ``checkpoint=True`` rematerialises
every step (cheapest memory for the per-step intermediates, carries are still stored).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .errors import ConfigError

__all__ = ["scan", "chunked_scan", "step_keys"]

Carry = TypeVar("Carry")


def _tree_len(xs: Any) -> int | None:
    leaves = jax.tree_util.tree_leaves(xs)
    return None if not leaves else int(leaves[0].shape[0])


def scan(
    step: Callable[[Carry, Any], tuple[Carry, Any]],
    init: Carry,
    xs: Any = None,
    length: int | None = None,
    *,
    checkpoint: bool | int = False,
    unroll: int = 1,
    reverse: bool = False,
) -> tuple[Carry, Any]:
    """``lax.scan`` with gradient checkpointing.

    Parameters
    ----------
    step
        ``(carry, x) -> (carry, y)``, pure.
    init
        Initial carry (a pytree).
    xs
        Per-step inputs with a leading time axis, or ``None`` (then ``length`` is required).
    length
        Number of steps when ``xs`` is ``None``.
    checkpoint
        ``False`` (plain scan), ``True`` (``jax.checkpoint`` every step) or an int ``k``: scan over
        blocks of ``k`` steps, each block rematerialised on the backward pass. When ``k`` does not
        divide the number of steps the remainder is scanned in a final, separately checkpointed block.
    unroll
        Passed to ``lax.scan``.
    reverse
        Scan from the last step to the first.

    Returns
    -------
    (final carry, stacked outputs) exactly as ``lax.scan``.
    """
    n = _tree_len(xs) if xs is not None else length
    if n is None:
        raise ConfigError("scan needs xs with a leading time axis or an explicit length")
    if checkpoint is False or checkpoint == 0:
        return jax.lax.scan(step, init, xs, length=n, unroll=unroll, reverse=reverse)
    if checkpoint is True:
        return jax.lax.scan(jax.checkpoint(step), init, xs, length=n, unroll=unroll, reverse=reverse)
    k = int(checkpoint)
    if k < 1:
        raise ConfigError(f"checkpoint must be True, False or a block length >= 1, got {checkpoint!r}")
    if reverse:
        raise ConfigError("checkpoint blocks are not supported with reverse=True")
    if k >= n:
        return jax.lax.scan(jax.checkpoint(step), init, xs, length=n, unroll=unroll)
    n_blocks, rem = divmod(n, k)

    def run_block(carry, block_xs, block_len):
        return jax.lax.scan(step, carry, block_xs, length=block_len, unroll=unroll)

    @jax.checkpoint
    def block(carry, block_xs):
        return run_block(carry, block_xs, k)

    if xs is None:
        head_xs, tail_xs = None, None
    else:
        head_xs = jax.tree_util.tree_map(lambda a: a[: n_blocks * k].reshape((n_blocks, k) + a.shape[1:]), xs)
        tail_xs = jax.tree_util.tree_map(lambda a: a[n_blocks * k :], xs)
    carry, ys = jax.lax.scan(block, init, head_xs, length=n_blocks)
    ys = jax.tree_util.tree_map(lambda a: a.reshape((n_blocks * k,) + a.shape[2:]), ys)
    if rem:
        carry, ys_tail = jax.checkpoint(lambda c, x: run_block(c, x, rem))(carry, tail_xs)
        ys = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b], axis=0), ys, ys_tail)
    return carry, ys


def chunked_scan(
    step: Callable[[Carry, Any], tuple[Carry, Any]],
    init: Carry,
    n_steps: int,
    chunk_size: int,
    *,
    xs_fn: Callable[[jax.Array], Any] | None = None,
    reduce_fn: Callable[[Any], Any] | None = None,
) -> tuple[Carry, list[Any]]:
    """Run a long simulation in chunks of ``chunk_size`` steps so memory stays bounded.

    ``xs_fn(t)`` maps a vector of absolute step indices to that chunk's inputs (so a
    stimulus written as a function of the step index is the same in chunked and one-shot
    runs); ``reduce_fn`` maps each chunk's outputs to what is kept (e.g. a spike count, or a
    move to host memory). Only one chunk of outputs is alive on the device at a time and the
    chunk function compiles once (the last, shorter chunk compiles a second time).
    Returns the final carry and the list of per-chunk (reduced) outputs.
    """
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")

    outs = []
    carry = init
    t = 0
    while t < n_steps:
        m = min(chunk_size, n_steps - t)
        carry, ys = _run_chunk(step, xs_fn, carry, jnp.asarray(t), jnp.arange(m))
        outs.append(ys if reduce_fn is None else reduce_fn(ys))
        t += m
    return carry, outs


@eqx.filter_jit
def _run_chunk(step, xs_fn, carry, t0, ts_template):
    """One chunk of :func:`chunked_scan`; module-level, so repeated calls with the same ``step`` and
    ``xs_fn`` reuse the compilation instead of re-jitting a fresh closure per call."""
    ts = t0 + ts_template
    xs = ts if xs_fn is None else xs_fn(ts)
    return jax.lax.scan(step, carry, xs)


def step_keys(key: jax.Array, steps: jax.Array) -> jax.Array:
    """Per-step keys ``fold_in(key, t)``: chunked and one-shot simulations draw the same numbers."""
    return jax.vmap(lambda t: jax.random.fold_in(key, t))(steps)
