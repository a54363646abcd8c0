"""Errors and input validation shared by every family.

Every check names the argument, what was expected and what was received, and raises a
subclass of :class:`SpikejaxError` (itself a :class:`ValueError`) or a :class:`TypeError`.
Value checks (finiteness, ranges, binary values) only run on concrete arrays; inside
``jax.jit`` they are skipped, so validate at the public entry points, outside the
compiled function.
"""

from __future__ import annotations

import os
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
    "TargetMissedWarning",
    "warn_target_missed",
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
    "SizeError",
    "memory_limit_bytes",
    "check_allocation",
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


class SizeError(SpikejaxError, MemoryError):
    """A request would allocate more memory than the device has (or than the documented limit).

    Raised up front, before compiling, with the estimated size and the argument responsible.
    """


class TrainingDivergedError(SpikejaxError, FloatingPointError):
    """The loss or the parameters became NaN/inf during training."""


class TargetMissedWarning(UserWarning):
    """A tune, fit or quick run finished but missed its target (a rate off the requested one by more
    than the tolerance, a fit quality below its mark, a smoke-test-sized run whose numbers mean little).

    The run's result is still returned (and its summary carries ``"target_met": false``); filter the
    warning with ``warnings.filterwarnings("error", category=TargetMissedWarning)`` to make it an error.
    """


def warn_target_missed(message: str, *, stacklevel: int = 3) -> None:
    """Issue :class:`TargetMissedWarning` with ``message`` (attributed to the caller's caller)."""
    import warnings

    warnings.warn(message, TargetMissedWarning, stacklevel=stacklevel)


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


_LIMIT_ENV = "SPIKEJAX_MAX_BYTES"


def _physical_memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        return None


def memory_limit_bytes(device: Any = None) -> int | None:
    """The number of bytes one allocation request may use before :func:`check_allocation` refuses it.

    ``SPIKEJAX_MAX_BYTES`` (an integer number of bytes) overrides everything. Otherwise the
    device's own limit (``memory_stats()['bytes_limit']`` on GPUs/TPUs) or, on the CPU backend,
    the machine's physical memory. ``None`` when nothing is known (no check is made then).
    """
    env = os.environ.get(_LIMIT_ENV)
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise ConfigError(f"{_LIMIT_ENV} must be a number of bytes, got {env!r}") from None
    device = device if device is not None else jax.devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # CPU devices may not implement it
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return _physical_memory_bytes()


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_allocation(
    nbytes: float,
    *,
    argument: str,
    what: str = "this request",
    limit: int | None = None,
) -> float:
    """Refuse, before compiling anything, a request whose estimated size exceeds the memory limit.

    ``nbytes`` is the caller's estimate of the largest buffer(s) the request needs; ``argument``
    names the user's argument(s) that set it (e.g. ``"n_steps"`` or ``"n_steps and n_nodes"``).
    ``limit`` defaults to :func:`memory_limit_bytes`. Raises :class:`SizeError` (a ``ValueError``
    and a ``MemoryError``) whose message gives the estimate, the limit and the argument.
    Returns ``nbytes``.
    """
    if not np.isfinite(nbytes) or nbytes < 0:
        raise SizeError(f"{argument}: {what} has no finite size (estimated {nbytes!r} bytes)")
    limit = memory_limit_bytes() if limit is None else limit
    if limit is not None and nbytes > limit:
        raise SizeError(
            f"{argument} too large: {what} would need about {_fmt_bytes(nbytes)}, more than the "
            f"{_fmt_bytes(limit)} available (set {_LIMIT_ENV} to change the limit, or reduce {argument})"
        )
    return nbytes
