"""Threefry random numbers as plain elementwise code: the same bits as ``jax.random``, cheaper to compile.

On CPU, JAX lowers every ``threefry2x32`` call (each ``split``, ``fold_in``, ``uniform``,
``normal``) to its own rolled ``while`` loop of five iterations, whose body XLA compiles into
several kernels, and whose output is written to memory before any use. An LFADS training step
draws its dropout, coordinated-dropout and posterior noise through five such calls. Here the
Threefry-2x32 hash (20 rounds, the public algorithm) is written out as ``jax.numpy`` integer
operations on an index ``iota``: one loop-free kernel per draw (an optimization barrier keeps
XLA from copying the hash into each consumer).

The functions reproduce ``jax.random`` bit for bit for threefry keys with
``jax_threefry_partitionable`` on (JAX's default): ``split(key)``, ``fold_in(key, i)``,
``uniform(key, shape, dtype)`` and ``normal(key, shape, dtype)`` in float32 and float64
(``tests/lfads/test_rng.py`` checks each against ``jax.random``). Keys may be raw ``uint32[2]``
arrays or typed threefry keys; new keys are returned raw. For other PRNG implementations or the
non-partitionable layout, the functions call ``jax.random`` itself.
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

__all__ = ["key_words", "split", "fold_in", "uniform", "normal", "is_exact"]

_ROT = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotl(x, d):
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def _threefry2x32(k1, k2, x1, x2):
    """The Threefry-2x32 block function (20 rounds) on uint32 arrays (keys broadcast)."""
    ks = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
    x1 = x1 + ks[0]
    x2 = x2 + ks[1]
    for i in range(5):
        for r in _ROT[i % 2]:
            x1 = x1 + x2
            x2 = _rotl(x2, r) ^ x1
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def is_exact(key) -> bool:
    """True when the elementwise path reproduces ``jax.random`` for ``key`` (threefry, partitionable)."""
    if not jax.config.jax_threefry_partitionable:
        return False
    key = jnp.asarray(key) if not hasattr(key, "dtype") else key
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return "threefry" in str(jax.random.key_impl(key))
    return key.dtype == jnp.uint32 and key.shape[-1:] == (2,)


def key_words(key) -> tuple[jax.Array, jax.Array]:
    """The two uint32 words of a threefry key (raw ``uint32[2]`` or typed)."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return key[..., 0], key[..., 1]


def _counts(shape):
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    if n >= 2**32:
        raise ValueError(f"spikejax.lfads.rng draws fewer than 2**32 numbers per call, got shape {shape}")
    lo = jax.lax.iota(jnp.uint32, n).reshape(shape)
    return jnp.zeros((), jnp.uint32), lo


def _bits(key, shape, nbits: int):
    k1, k2 = key_words(key)
    hi, lo = _counts(tuple(shape))
    b1, b2 = _threefry2x32(k1, k2, hi, lo)
    if nbits == 32:
        return b1 ^ b2
    return (b1.astype(jnp.uint64) << np.uint64(32)) | b2.astype(jnp.uint64)


def split(key) -> tuple[jax.Array, jax.Array]:
    """``jax.random.split(key)`` as two raw keys."""
    if not is_exact(key):
        a, b = jax.random.split(key)
        return a, b
    k1, k2 = key_words(key)
    b1, b2 = _threefry2x32(k1, k2, jnp.zeros(2, jnp.uint32), jnp.arange(2, dtype=jnp.uint32))
    return jnp.stack([b1[0], b2[0]]), jnp.stack([b1[1], b2[1]])


def fold_in(key, data) -> jax.Array:
    """``jax.random.fold_in(key, data)`` (``data`` a non-negative integer below 2**32) as a raw key."""
    if not is_exact(key):
        return jax.random.fold_in(key, data)
    k1, k2 = key_words(key)
    d = jnp.asarray(data).astype(jnp.uint32)
    y1, y2 = _threefry2x32(k1, k2, jnp.zeros((), jnp.uint32), d)
    return jnp.stack([y1, y2])


def uniform(key, shape, dtype=None) -> jax.Array:
    """``jax.random.uniform(key, shape, dtype)`` on [0, 1)."""
    dtype = jnp.dtype(dtype or jnp.zeros(()).dtype)
    if not is_exact(key):
        return jax.random.uniform(key, shape, dtype)
    return _barrier(_uniform_from_bits(_bits(key, shape, dtype.itemsize * 8), dtype, 0.0, 1.0))


def _uniform_from_bits(bits, dtype, lo, hi):
    finfo = jnp.finfo(dtype)
    udt = bits.dtype
    fb = (bits >> np.array(finfo.bits - finfo.nmant, udt)) | np.array(1.0, dtype).view(udt)
    floats = jax.lax.bitcast_convert_type(fb, dtype) - np.array(1.0, dtype)
    lo, hi = np.array(lo, dtype), np.array(hi, dtype)
    return jnp.maximum(lo, floats * (hi - lo) + lo)


def normal(key, shape, dtype=None) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)`` (real dtypes)."""
    dtype = jnp.dtype(dtype or jnp.zeros(()).dtype)
    if not is_exact(key):
        return jax.random.normal(key, shape, dtype)
    lo = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype)
    u = _uniform_from_bits(_bits(key, shape, dtype.itemsize * 8), dtype, lo, 1.0)
    return _barrier(np.array(np.sqrt(2), dtype) * jax.lax.erf_inv(u))


def _barrier(x):
    # computed once into memory: left fusable, XLA copies the 20-round hash into every consumer
    # (forward and backward masks alike), which costs compile time and run time
    return jax.lax.optimization_barrier(x)
