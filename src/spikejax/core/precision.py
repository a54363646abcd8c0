"""The precision policy of spikejax's matrix products, and backend-specific tuning.

Float32 matrix products on recent NVIDIA GPUs run by default in TensorFloat-32 (a 10-bit mantissa:
about 1e-3 relative error), which makes simulated spike rasters diverge from the CPU's after a few
steps. spikejax's kernels (the GLM dense coupling, the L5 ``W @ r``, the LFADS GRUs and readouts)
therefore ask for full float32 products (``precision=HIGHEST``; free on CPUs, which always compute
in full precision) unless the user chose a precision:

    with spikejax.core.matmul_precision("tensorfloat32"):   # TF32 speed on GPUs, ~1e-3 relative
        out = glm.simulate(...)

:func:`matmul_precision` is ``jax.default_matmul_precision``: the choice is part of JAX's compilation
key, so switching it retraces (nothing compiled under one policy runs under the other), and setting
``jax.config.update("jax_default_matmul_precision", ...)`` globally applies to spikejax's kernels too.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["matmul_precision", "kernel_precision", "matmul", "precise", "on_cpu", "cpu_tuned_jit"]


@contextlib.contextmanager
def matmul_precision(value: str = "highest") -> Iterator[None]:
    """Within the block, spikejax's kernels (and every JAX matrix product) use ``value``.

    ``value`` is one of JAX's names: ``"highest"`` / ``"float32"`` (full float32, the kernels'
    default: results match the CPU at float32 tolerances), ``"high"`` / ``"bfloat16_3x"``,
    ``"default"`` / ``"tensorfloat32"`` / ``"bfloat16"`` (fastest on GPUs and TPUs, about 1e-3
    relative error: simulated spikes can diverge from a CPU run). Compiled programs are cached per
    value.
    """
    with jax.default_matmul_precision(value):
        yield


def kernel_precision() -> Any:
    """The ``precision=`` argument for a kernel's matrix product at trace time: ``HIGHEST`` unless the
    user set a precision (:func:`matmul_precision` or ``jax_default_matmul_precision``), then
    ``None`` (JAX applies the user's choice)."""
    return jax.lax.Precision.HIGHEST if jax.config.jax_default_matmul_precision is None else None


def matmul(a: Any, b: Any) -> jax.Array:
    """``a @ b`` under the precision policy (:func:`kernel_precision`)."""
    return jnp.matmul(a, b, precision=kernel_precision())


def on_cpu(x: Any = None) -> bool:
    """Whether work runs on the CPU backend: the platform of ``x``'s devices (an array or a device)
    when given and known, else ``jax.default_backend()``. CPU-specific tuning (LLVM options,
    kernel-choice thresholds measured on CPUs) is applied only when this is true."""
    if x is not None:
        try:
            devs = x.devices() if hasattr(x, "devices") else {x}
            plats = {getattr(d, "platform", None) for d in devs}
            if plats and None not in plats:
                return plats == {"cpu"}
        except Exception:  # a tracer has no devices: fall through
            pass
    return jax.default_backend() == "cpu"


def precise(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: the matrix products that ``fn`` traces use the policy's precision (full float32
    unless the user set one). For kernels with many products (the LFADS GRUs and readouts); the
    precision is fixed when the product is traced."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if jax.config.jax_default_matmul_precision is None:
            with jax.default_matmul_precision("highest"):
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper


def cpu_tuned_jit(fun: Callable[..., Any] | None = None, *, cpu_compiler_options: dict[str, Any] | None = None,
                  **jit_kwargs: Any) -> Any:
    """``jax.jit`` whose ``compiler_options`` (LLVM and XLA CPU settings measured on CPUs) apply only
    when the default backend is the CPU; on GPUs and TPUs the program compiles with XLA's defaults.
    Usable as ``functools.partial(cpu_tuned_jit, static_argnums=..., cpu_compiler_options=...)(f)``."""
    if fun is None:
        return functools.partial(cpu_tuned_jit, cpu_compiler_options=cpu_compiler_options, **jit_kwargs)
    tuned = jax.jit(fun, compiler_options=dict(cpu_compiler_options or {}), **jit_kwargs)
    plain = jax.jit(fun, **jit_kwargs)

    @functools.wraps(fun)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return (tuned if jax.default_backend() == "cpu" else plain)(*args, **kwargs)

    wrapper.cpu = tuned  # type: ignore[attr-defined]
    wrapper.other = plain  # type: ignore[attr-defined]
    wrapper.lower = lambda *a, **k: (tuned if jax.default_backend() == "cpu" else plain).lower(*a, **k)  # type: ignore[attr-defined]
    return wrapper
