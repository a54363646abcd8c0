"""Observation likelihoods shared by every family, as negative log-likelihoods (NLL).

All functions are elementwise with an optional ``mask`` (1 = counts, 0 = ignored; bool or
float) and a ``reduction``:

* ``"none"`` – elementwise NLL (masked entries set to 0),
* ``"sum"``  – sum over the observed entries,
* ``"mean"`` – mean over the observed entries (sum / number of observed entries).

They are written in log space (``log_sigmoid``, ``log1p``, ``gammaln``) and stay finite for
extreme inputs. Missing data for SBTT can be given as NaN in the target together with
``mask = ~isnan(y)``: masked entries are replaced before any arithmetic so no NaN leaks
into values or gradients.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from .errors import ConfigError, ShapeError, check_finite, check_range, is_traced

__all__ = [
    "reduce_masked",
    "poisson_nll",
    "poisson_nll_log_rate",
    "bernoulli_nll",
    "gaussian_nll",
    "zig_nll",
    "zig_mean",
]

Reduction = Literal["none", "sum", "mean"]


def _shape(**arrays) -> tuple[int, ...]:
    """The broadcast shape of the named arrays, or a :class:`ShapeError` naming them and their shapes."""
    shapes = {k: tuple(jnp.shape(v)) for k, v in arrays.items() if v is not None}
    try:
        return jnp.broadcast_shapes(*shapes.values())
    except ValueError:
        listed = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise ShapeError(f"shapes do not match: {listed} (they must be equal or broadcastable)") from None


def _check_reduction(reduction) -> None:
    if reduction not in ("none", "sum", "mean"):
        raise ConfigError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")


def _check_domain(x, name, *, low=None, high=None, low_inclusive=True, mask=None, finite=True) -> None:
    """Value checks on concrete inputs (skipped under jit tracing, where values are unknown).

    Masked-out entries (``mask == 0``) are not checked: SBTT passes NaN there on purpose.
    """
    if x is None or is_traced(x) or is_traced(mask):
        return
    import numpy as np

    a = np.asarray(x)
    if mask is not None:
        a = a[np.broadcast_to(np.asarray(mask).astype(bool), a.shape)] if a.ndim else a
    elif a.dtype.kind == "f" and name in ("counts", "y") and np.isnan(a).any():
        return  # NaN targets without a mask: left to the caller's mask convention
    if finite:
        check_finite(a, name)
    if low is not None or high is not None:
        check_range(a, name, low=low, high=high, low_inclusive=low_inclusive)


def _prep_mask(mask, like):
    if mask is None:
        return None
    return jnp.broadcast_to(jnp.asarray(mask), like.shape).astype(bool)


def _clean(x, mask, fill):
    """Replace masked-out entries by ``fill`` so NaN targets do not poison the result or grads."""
    if mask is None:
        return x
    return jnp.where(mask, x, jnp.asarray(fill, dtype=x.dtype))


def reduce_masked(values: jax.Array, mask: jax.Array | None = None, reduction: Reduction = "sum") -> jax.Array:
    """Apply ``mask`` to elementwise ``values`` and reduce them (see module docstring)."""
    _check_reduction(reduction)
    if mask is not None:
        _shape(values=values, mask=mask)
        mask = _prep_mask(mask, values)
        values = jnp.where(mask, values, jnp.zeros((), values.dtype))
    if reduction == "none":
        return values
    if reduction == "sum":
        return jnp.sum(values)
    if reduction == "mean":
        n = values.size if mask is None else jnp.sum(mask)
        return jnp.sum(values) / jnp.maximum(n, 1)
    raise ConfigError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")


def poisson_nll(
    rate: jax.Array,
    counts: jax.Array,
    *,
    mask: jax.Array | None = None,
    convention: Literal["torch", "exact"] = "exact",
    eps: float = 1e-8,
    reduction: Reduction = "sum",
) -> jax.Array:
    """Poisson NLL of ``counts`` given expected counts ``rate`` (both per bin, rate >= 0).

    ``convention="torch"`` is ``rate - counts * log(rate + eps)``: torch's ``PoissonNLLLoss``
    with ``log_input=False, full=False`` as the GRNN code uses it (no log y! term).
    ``convention="exact"`` is the true NLL ``rate - counts * log(rate + eps) + log(counts!)``.
    """
    _check_reduction(reduction)
    if convention not in ("torch", "exact"):
        raise ConfigError(f"convention must be 'torch' or 'exact', got {convention!r}")
    _check_domain(rate, "rate", low=0.0, mask=mask)
    _check_domain(counts, "counts", low=0.0, mask=mask)
    rate = jnp.asarray(rate)
    if not jnp.issubdtype(rate.dtype, jnp.floating):
        rate = rate.astype(jnp.result_type(float))
    counts = jnp.asarray(counts, dtype=rate.dtype)
    shape = _shape(rate=rate, counts=counts, mask=mask)
    m = _prep_mask(mask, jnp.zeros(shape))
    counts = _clean(jnp.broadcast_to(counts, shape), m, 0.0)
    rate = _clean(jnp.broadcast_to(rate, shape), m, 1.0)
    nll = rate - counts * jnp.log(rate + eps)
    if convention == "exact":
        nll = nll + gammaln(counts + 1.0)
    elif convention != "torch":
        raise ConfigError(f"convention must be 'torch' or 'exact', got {convention!r}")
    return reduce_masked(nll, m, reduction)


def poisson_nll_log_rate(
    log_rate: jax.Array,
    counts: jax.Array,
    *,
    mask: jax.Array | None = None,
    exact: bool = True,
    reduction: Reduction = "sum",
) -> jax.Array:
    """Poisson NLL parametrised by the log expected count: ``exp(log_rate) - counts*log_rate [+ log counts!]``."""
    _check_reduction(reduction)
    _check_domain(log_rate, "log_rate", mask=mask)
    _check_domain(counts, "counts", low=0.0, mask=mask)
    log_rate = jnp.asarray(log_rate)
    counts = jnp.asarray(counts, dtype=log_rate.dtype)
    shape = _shape(log_rate=log_rate, counts=counts, mask=mask)
    m = _prep_mask(mask, jnp.zeros(shape))
    counts = _clean(jnp.broadcast_to(counts, shape), m, 0.0)
    log_rate = _clean(jnp.broadcast_to(log_rate, shape), m, 0.0)
    nll = jnp.exp(log_rate) - counts * log_rate
    if exact:
        nll = nll + gammaln(counts + 1.0)
    return reduce_masked(nll, m, reduction)


def bernoulli_nll(
    y: jax.Array,
    *,
    logits: jax.Array | None = None,
    probs: jax.Array | None = None,
    mask: jax.Array | None = None,
    eps: float = 1e-12,
    reduction: Reduction = "sum",
) -> jax.Array:
    """Bernoulli NLL of ``y`` in {0, 1} given ``logits`` (preferred, stable) or ``probs``."""
    if (logits is None) == (probs is None):
        raise ConfigError("bernoulli_nll needs exactly one of logits= or probs=")
    _check_reduction(reduction)
    _check_domain(y, "y", low=0.0, high=1.0, mask=mask)
    _check_domain(logits, "logits", mask=mask)
    _check_domain(probs, "probs", low=0.0, high=1.0, mask=mask)
    if logits is not None:
        logits = jnp.asarray(logits)
        y = jnp.asarray(y, dtype=logits.dtype)
        shape = _shape(y=y, logits=logits, mask=mask)
        m = _prep_mask(mask, jnp.zeros(shape))
        y = _clean(jnp.broadcast_to(y, shape), m, 0.0)
        logits = _clean(jnp.broadcast_to(logits, shape), m, 0.0)
        nll = -(y * jax.nn.log_sigmoid(logits) + (1.0 - y) * jax.nn.log_sigmoid(-logits))
    else:
        probs = jnp.asarray(probs)
        y = jnp.asarray(y, dtype=probs.dtype)
        shape = _shape(y=y, probs=probs, mask=mask)
        m = _prep_mask(mask, jnp.zeros(shape))
        y = _clean(jnp.broadcast_to(y, shape), m, 0.0)
        probs = _clean(jnp.broadcast_to(probs, shape), m, 0.5)
        nll = -(y * jnp.log(probs + eps) + (1.0 - y) * jnp.log1p(-probs + eps))
    return reduce_masked(nll, m, reduction)


def gaussian_nll(
    y: jax.Array,
    mean: jax.Array,
    *,
    var: jax.Array | None = None,
    log_var: jax.Array | None = None,
    mask: jax.Array | None = None,
    include_const: bool = True,
    reduction: Reduction = "sum",
) -> jax.Array:
    """Gaussian NLL ``0.5*[(y-mean)^2/var + log var + log 2pi]`` with ``var`` or ``log_var``."""
    if (var is None) == (log_var is None):
        raise ConfigError("gaussian_nll needs exactly one of var= or log_var=")
    _check_reduction(reduction)
    _check_domain(var, "var", low=0.0, low_inclusive=False)
    _check_domain(log_var, "log_var")
    _check_domain(mean, "mean", mask=mask)
    _shape(y=y, mean=mean, var=var, log_var=log_var, mask=mask)
    mean = jnp.asarray(mean)
    y = jnp.asarray(y, dtype=mean.dtype)
    if log_var is None:
        log_var = jnp.log(jnp.asarray(var, dtype=mean.dtype))
    log_var = jnp.asarray(log_var, dtype=mean.dtype)
    shape = jnp.broadcast_shapes(mean.shape, y.shape, log_var.shape)
    m = _prep_mask(mask, jnp.zeros(shape))
    y = _clean(jnp.broadcast_to(y, shape), m, 0.0)
    mean = _clean(jnp.broadcast_to(mean, shape), m, 0.0)
    log_var = _clean(jnp.broadcast_to(log_var, shape), m, 0.0)
    nll = 0.5 * ((y - mean) ** 2 * jnp.exp(-log_var) + log_var)
    if include_const:
        nll = nll + 0.5 * math.log(2 * math.pi)
    return reduce_masked(nll, m, reduction)


def zig_nll(
    y: jax.Array,
    *,
    q_logit: jax.Array,
    shape_k: jax.Array,
    scale_theta: jax.Array,
    s_min: float | jax.Array,
    mask: jax.Array | None = None,
    reduction: Reduction = "sum",
) -> jax.Array:
    """Zero-inflated gamma NLL (RADICaL / lfads-torch).

    ``P(y = 0) = 1 - q``; for ``y > 0`` the density is ``q * Gamma(y - s_min; k, theta)``
    (shape ``k``, scale ``theta``). ``q = sigmoid(q_logit)`` is handled in log space. Every
    non-zero event must exceed ``s_min``; the gamma branch is evaluated at a safe point where
    ``y == 0`` so gradients stay finite.
    """
    _check_reduction(reduction)
    _check_domain(y, "y", low=0.0, mask=mask)
    _check_domain(shape_k, "shape_k", low=0.0, low_inclusive=False)
    _check_domain(scale_theta, "scale_theta", low=0.0, low_inclusive=False)
    _shape(y=y, q_logit=q_logit, shape_k=shape_k, scale_theta=scale_theta, mask=mask)
    k = jnp.asarray(shape_k)
    y = jnp.asarray(y, dtype=k.dtype)
    theta = jnp.asarray(scale_theta, dtype=k.dtype)
    q_logit = jnp.asarray(q_logit, dtype=k.dtype)
    shape = jnp.broadcast_shapes(y.shape, k.shape, theta.shape, q_logit.shape)
    m = _prep_mask(mask, jnp.zeros(shape))
    y = _clean(jnp.broadcast_to(y, shape), m, 0.0)
    nonzero = y > 0
    x = jnp.where(nonzero, y - s_min, 1.0)
    x = jnp.maximum(x, jnp.finfo(k.dtype).tiny)
    log_gamma_pdf = (k - 1.0) * jnp.log(x) - x / theta - k * jnp.log(theta) - gammaln(k)
    ll = jnp.where(nonzero, jax.nn.log_sigmoid(q_logit) + log_gamma_pdf, jax.nn.log_sigmoid(-q_logit))
    return reduce_masked(-ll, m, reduction)


def zig_mean(q: jax.Array, shape_k: jax.Array, scale_theta: jax.Array, s_min: float | jax.Array) -> jax.Array:
    """Expected event size per bin of the ZIG: ``q * (k * theta + s_min)`` (the tutorial's event rate)."""
    return q * (shape_k * scale_theta + s_min)
