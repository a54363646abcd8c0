"""Errors and input validation shared by every family.

Every check names the argument, what was expected and what was received, and raises a
subclass of :class:`SpikejaxError` (itself a :class:`ValueError`) or a :class:`TypeError`.
Value checks (finiteness, ranges, binary values) only run on concrete arrays; inside
``jax.jit`` they are skipped, so validate at the public entry points, outside the
compiled function.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np

__all__ = [
    "SpikejaxError",
    "ShapeError",
    "NonFiniteError",
    "ConfigError",
    "DataFormatError",
    "TrainingDivergedError",
    "is_traced",
    "check_array",
    "check_shape",
    "check_finite",
    "check_range",
    "check_binary",
    "check_positive",
    "check_scalar",
    "check_choice",
    "check_keys",
]


class SpikejaxError(ValueError):
    """Base class of spikejax's errors about bad input (a ``ValueError``)."""


class ShapeError(SpikejaxError):
    """An array has the wrong number of dimensions or the wrong shape."""


class NonFiniteError(SpikejaxError):
    """An array holds NaN or inf where finite values are required."""


class ConfigError(SpikejaxError):
    """A configuration value is missing, of the wrong kind or out of range."""


class DataFormatError(SpikejaxError):
    """A file or record is malformed, truncated or misses a required key."""


class TrainingDivergedError(SpikejaxError, FloatingPointError):
    """The loss or the parameters became NaN/inf during training."""


def is_traced(x: Any) -> bool:
    """True when ``x`` (or any leaf of it) is a JAX tracer, i.e. we are inside jit/vmap/grad."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def _describe(x: Any) -> str:
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"an array of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}"[:200]


def _shape_str(shape: Sequence[int | str | None]) -> str:
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_shape(
    x: Any,
    name: str,
    shape: Sequence[int | str | None] | None = None,
    *,
    ndim: int | Iterable[int] | None = None,
    dims: dict[str, int] | None = None,
) -> dict[str, int]:
    """Check the shape of ``x``.

    ``shape`` may hold ints (exact), ``None`` (any) or strings (named sizes that must agree
    across calls sharing ``dims``: pass the same dict to tie shapes of several arguments).
    Returns the dict of named sizes.
    """
    dims = {} if dims is None else dims
    if not hasattr(x, "shape"):
        raise TypeError(f"{name} must be an array, got {_describe(x)}")
    got = tuple(x.shape)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if len(got) not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ShapeError(f"{name} must have {want} dimensions, got shape {got}")
    if shape is not None:
        if len(got) != len(shape):
            raise ShapeError(f"{name} must have shape {_shape_str(shape)}, got {got}")
        for axis, (want, have) in enumerate(zip(shape, got)):
            if want is None:
                continue
            if isinstance(want, str):
                if want in dims and dims[want] != have:
                    raise ShapeError(
                        f"{name} must have shape {_shape_str(shape)} with {want}={dims[want]}, "
                        f"got {got} (axis {axis} is {have})"
                    )
                dims[want] = have
            elif want != have:
                raise ShapeError(f"{name} must have shape {_shape_str(shape)}, got {got}")
    return dims


def check_finite(x: Any, name: str) -> None:
    """Raise :class:`NonFiniteError` if the concrete array ``x`` holds NaN or inf."""
    if is_traced(x):
        return
    arr = np.asarray(x)
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise NonFiniteError(
            f"{name} must be finite, got {n_nan} NaN and {n_inf} inf value(s) in an array of shape {arr.shape}"
        )


def check_range(
    x: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise :class:`SpikejaxError` if any value of ``x`` lies outside [low, high]."""
    if is_traced(x):
        return
    arr = np.asarray(x)
    if arr.size == 0:
        return
    if low is not None:
        bad = arr < low if low_inclusive else arr <= low
        if np.any(bad):
            op = ">=" if low_inclusive else ">"
            raise SpikejaxError(f"{name} must be {op} {low}, got minimum {np.min(arr)!r}")
    if high is not None:
        bad = arr > high if high_inclusive else arr >= high
        if np.any(bad):
            op = "<=" if high_inclusive else "<"
            raise SpikejaxError(f"{name} must be {op} {high}, got maximum {np.max(arr)!r}")


def check_binary(x: Any, name: str) -> None:
    """Raise :class:`SpikejaxError` unless every value of ``x`` is 0 or 1."""
    if is_traced(x):
        return
    arr = np.asarray(x)
    if not np.all((arr == 0) | (arr == 1)):
        bad = arr[(arr != 0) & (arr != 1)]
        raise SpikejaxError(f"{name} must hold only 0 and 1 (spike indicators), got value {bad.ravel()[0]!r}")


def check_array(
    x: Any,
    name: str,
    shape: Sequence[int | str | None] | None = None,
    *,
    ndim: int | Iterable[int] | None = None,
    dims: dict[str, int] | None = None,
    finite: bool = True,
    low: float | None = None,
    high: float | None = None,
    binary: bool = False,
    integer: bool = False,
    dtype: Any = None,
) -> jax.Array:
    """Convert ``x`` to a JAX array and validate it; returns the array.

    Parameters mirror :func:`check_shape`, :func:`check_finite`, :func:`check_range` and
    :func:`check_binary`. ``integer=True`` requires whole-number values (counts).
    """
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be an array of numbers, got {_describe(x)}")
    if not is_traced(x):
        try:
            arr_np = np.asarray(x)
        except Exception as exc:  # ragged lists etc.
            raise TypeError(f"{name} must be an array of numbers, got {_describe(x)}: {exc}") from None
        if arr_np.dtype == object or arr_np.dtype.kind not in "biufc":
            raise TypeError(f"{name} must be an array of numbers, got dtype {arr_np.dtype}")
    arr = jax.numpy.asarray(x, dtype=dtype)
    check_shape(arr, name, shape, ndim=ndim, dims=dims)
    if finite:
        check_finite(arr, name)
    if low is not None or high is not None:
        check_range(arr, name, low=low, high=high)
    if binary:
        check_binary(arr, name)
    if integer and not is_traced(arr):
        a = np.asarray(arr)
        if a.dtype.kind == "f" and np.any(np.isfinite(a) & (a != np.round(a))):
            raise SpikejaxError(f"{name} must hold whole numbers (counts), got a non-integer value")
    return arr


def check_scalar(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> Any:
    """Validate a scalar configuration value; returns it unchanged."""
    if is_traced(value):
        return value
    if isinstance(value, bool) or not np.isscalar(value) and np.ndim(value) != 0:
        raise ConfigError(f"{name} must be a number, got {_describe(value)}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {_describe(value)}") from None
    if not np.isfinite(v):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if integer and v != int(v):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if low is not None and (v < low if low_inclusive else v <= low):
        raise ConfigError(f"{name} must be {'>=' if low_inclusive else '>'} {low}, got {value!r}")
    if high is not None and (v > high if high_inclusive else v >= high):
        raise ConfigError(f"{name} must be {'<=' if high_inclusive else '<'} {high}, got {value!r}")
    return value


def check_positive(value: Any, name: str, *, strict: bool = True) -> Any:
    """A finite scalar > 0 (or >= 0 with ``strict=False``)."""
    return check_scalar(value, name, low=0.0, low_inclusive=not strict)


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


def check_keys(record: Any, name: str, required: Iterable[str]) -> None:
    """Raise :class:`DataFormatError` if the mapping ``record`` misses any required key."""
    if not isinstance(record, dict):
        raise DataFormatError(f"{name} must be a mapping (JSON object), got {type(record).__name__}")
    missing = [k for k in required if k not in record]
    if missing:
        raise DataFormatError(f"{name} is missing required key(s) {missing}; it has {sorted(record)[:20]}")
