"""Threefry random numbers as plain elementwise code: the same bits as ``jax.random``, cheaper to compile.

On CPU, JAX lowers every ``threefry2x32`` call (each ``split``, ``fold_in``, ``uniform``,
``normal``) to its own rolled ``while`` loop of five iterations, whose body XLA compiles into
several kernels, and whose output is written to memory before any use. An LFADS training step
draws its dropout, coordinated-dropout and posterior noise through five such calls. Here the
Threefry-2x32 hash (20 rounds, the public algorithm) is written out as ``jax.numpy`` integer
operations on an index ``iota``: no loops; XLA fuses the hash into the kernels that use the
numbers.

The functions reproduce ``jax.random`` bit for bit for threefry keys with
``jax_threefry_partitionable`` on (JAX's default): ``split(key)``, ``fold_in(key, i)``,
``uniform(key, shape, dtype)`` and ``normal(key, shape, dtype)`` in float32 and float64
(``tests/lfads/test_rng.py`` checks each against ``jax.random``). Keys may be raw ``uint32[2]``
arrays or typed threefry keys; new keys are returned raw. For other PRNG implementations or the
non-partitionable layout, the functions call ``jax.random`` itself.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["key_words", "split", "fold_in", "uniform", "normal", "init_normal", "is_exact", "numpy_seed"]

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
    return _uniform_from_bits(_bits(key, shape, dtype.itemsize * 8), dtype, 0.0, 1.0)


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
    return np.array(np.sqrt(2), dtype) * jax.lax.erf_inv(u)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def _normal_jit(key, *, shape, dtype):
    return normal(key, shape, dtype)


def init_normal(key, shape, *, mul=None, div=None) -> jax.Array:
    """``mul * jax.random.normal(key, shape)`` or ``jax.random.normal(key, shape) / div`` (default float
    dtype): the same numbers, the draw as one small compiled program per shape.

    For building models eagerly: ``jax.random.normal`` compiles its rolled threefry loop once per
    shape (0.3-0.4 s each on a 2-core machine, most of an LFADS model's build time). The scaling
    stays an eager operation: inside the program XLA reassociates ``mul * (sqrt(2) * erf_inv(u))``,
    which changes the last bit of a third of the entries.
    """
    if (mul is None) == (div is None):
        raise TypeError("init_normal needs exactly one of mul= and div=")
    z = _normal_jit(key, shape=tuple(shape), dtype=jnp.zeros(()).dtype)
    return mul * z if div is None else z / div


def numpy_seed(key) -> int:
    """A NumPy seed from a JAX key: its two words as one 64-bit integer.

    ``jax.random.key(s)`` and ``jax.random.PRNGKey(s)`` (``0 <= s < 2**32``) give ``s`` itself, so a
    function that took ``seed=s`` before and takes ``key`` now draws the same NumPy numbers.
    """
    import numpy as _np

    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    words = _np.asarray(key, dtype=_np.uint64).ravel()
    return int((int(words[0]) << 32) | int(words[1]))
