"""PRNG keys at the public boundary: required, keyword-only, new-style or legacy.

Every public function through which randomness reaches a result takes ``key`` keyword-only and
without a default; it passes the key through :func:`check_key` first, which accepts both
``jax.random.key(seed)`` (typed key arrays) and legacy ``jax.random.PRNGKey(seed)`` (uint32[2]),
and refuses anything else with a message that says what to pass.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .errors import ConfigError

__all__ = ["check_key", "is_key"]


def is_key(x: Any) -> bool:
    """True for a single typed key array or a legacy uint32[2] key (concrete or traced)."""
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return x.ndim == 0
    shape, dtype = np.shape(x), getattr(x, "dtype", None)
    return shape == (2,) and dtype is not None and np.dtype(dtype) == np.uint32


def check_key(key: Any, name: str = "key", *, batched: bool = False) -> jax.Array:
    """Return ``key`` if it is a PRNG key, else raise a :class:`ConfigError` naming ``name``.

    ``batched=True`` accepts a stack of keys (leading axes), e.g. one per network or trial.
    """
    if key is None:
        raise ConfigError(
            f"{name} is required: pass {name}=jax.random.key(0) (or jax.random.PRNGKey(0)); spikejax never "
            "chooses a random seed for you"
        )
    if isinstance(key, (bool, int, np.integer)):
        raise ConfigError(f"{name} must be a PRNG key, not the integer {key!r}: pass {name}=jax.random.key({key!r})")
    typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if typed:
        if batched or key.ndim == 0:
            return key
        raise ConfigError(f"{name} must be a single PRNG key, got a key array of shape {key.shape}")
    shape, dtype = np.shape(key), getattr(key, "dtype", None)
    if dtype is not None and np.dtype(dtype) == np.uint32 and shape[-1:] == (2,) and (batched or len(shape) == 1):
        return key
    raise ConfigError(
        f"{name} must be a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got "
        f"{type(key).__name__}{'' if dtype is None else f' of dtype {dtype} and shape {shape}'}"
    )
