"""Metrics shared by every family.

* :func:`explained_variance` – GRNN's EV(x, y) = 2 Cov / (Var x + Var y) (ddof 0).
* :func:`ev_ceiling` / :func:`evr` – the repeated-trial data ceiling and the explained-variance ratio.
* :func:`r2_score` – the coefficient of determination (scikit-learn's definition).
* :func:`bits_per_spike` – NLB's bits/spike of predicted rates against the per-neuron mean rate.
* :func:`pearson_r`, :func:`firing_rate`, :func:`isi`, :func:`mean_isi`.

Functions are pure ``jax.numpy`` unless stated (``isi`` works on host arrays and returns
variable-length results).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from .errors import ConfigError, ShapeError, check_finite, check_range, check_scalar, is_traced

__all__ = [
    "explained_variance",
    "ev_ceiling",
    "evr",
    "r2_score",
    "pearson_r",
    "bits_per_spike",
    "firing_rate",
    "isi",
    "mean_isi",
]


def _same_shape(**arrays) -> None:
    """Metrics compare like with like: equal shapes, or a :class:`ShapeError` naming the arguments."""
    shapes = {k: tuple(jnp.shape(v)) for k, v in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise ShapeError(f"shapes must be equal: {listed}")


def explained_variance(x: jax.Array, y: jax.Array, axis: int = -1) -> jax.Array:
    """EV(x, y) = [Var x + Var y − Var(x − y)] / [Var x + Var y] = 2 Cov(x, y) / (Var x + Var y).

    Population variances (ddof 0) along ``axis``; NaN where the denominator is 0
    (both traces constant), as in GRNN.
    """
    try:
        jnp.broadcast_shapes(jnp.shape(x), jnp.shape(y))
    except ValueError:
        raise ShapeError(f"shapes must be broadcastable: x {tuple(jnp.shape(x))}, y {tuple(jnp.shape(y))}") from None
    x = jnp.asarray(x)
    y = jnp.asarray(y, dtype=x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else jnp.asarray(y)
    vx = jnp.var(x, axis=axis)
    vy = jnp.var(y, axis=axis)
    vd = jnp.var(x - y, axis=axis)
    den = vx + vy
    return jnp.where(den > 0, (den - vd) / jnp.where(den > 0, den, 1.0), jnp.nan)


def ev_ceiling(trials: jax.Array) -> jax.Array:
    """Data ceiling EV_d = mean_k EV(r_k, PSTH) for trials of shape (..., K, T).

    The PSTH includes each trial itself (not leave-one-out), as in GRNN.
    """
    trials = jnp.asarray(trials)
    psth = jnp.mean(trials, axis=-2, keepdims=True)
    return jnp.mean(explained_variance(trials, psth), axis=-1)


def evr(model_trace: jax.Array, trials: jax.Array) -> jax.Array:
    """Explained-variance ratio EV_m / EV_d.

    ``model_trace`` has shape (..., T) (the model's response to the first trial's current) and
    ``trials`` shape (..., K, T); EV_m = mean_k EV(r_k, m).
    """
    trials = jnp.asarray(trials)
    if trials.ndim < 2 or jnp.shape(model_trace) != trials.shape[:-2] + trials.shape[-1:]:
        raise ShapeError(f"model_trace must have shape {trials.shape[:-2] + trials.shape[-1:]} (trials without the "
                         f"trial axis -2), got model_trace {tuple(jnp.shape(model_trace))} and trials {trials.shape}")
    m = jnp.asarray(model_trace)[..., None, :]
    ev_m = jnp.mean(explained_variance(trials, m), axis=-1)
    return ev_m / ev_ceiling(trials)


def r2_score(y_true: jax.Array, y_pred: jax.Array, *, multioutput: str = "uniform_average") -> jax.Array:
    """R² = 1 − SS_res / SS_tot per output column (scikit-learn's definition).

    Inputs of shape (n_samples,) or (n_samples, n_outputs). ``multioutput`` is
    ``"raw_values"``, ``"uniform_average"`` or ``"variance_weighted"``.
    """
    _same_shape(y_true=y_true, y_pred=y_pred)
    if jnp.ndim(y_true) not in (1, 2):
        raise ShapeError(f"y_true must be (n_samples,) or (n_samples, n_outputs), got shape {jnp.shape(y_true)}")
    y_true = jnp.asarray(y_true)
    y_pred = jnp.asarray(y_pred, dtype=y_true.dtype)
    if y_true.ndim == 1:
        y_true, y_pred = y_true[:, None], y_pred[:, None]
    ss_res = jnp.sum((y_true - y_pred) ** 2, axis=0)
    ss_tot = jnp.sum((y_true - jnp.mean(y_true, axis=0)) ** 2, axis=0)
    r2 = 1.0 - ss_res / ss_tot
    if multioutput == "raw_values":
        return r2
    if multioutput == "uniform_average":
        return jnp.mean(r2)
    if multioutput == "variance_weighted":
        return jnp.sum(r2 * ss_tot) / jnp.sum(ss_tot)
    raise ConfigError(f"multioutput must be 'raw_values', 'uniform_average' or 'variance_weighted', got {multioutput!r}")


def pearson_r(x: jax.Array, y: jax.Array, axis: int = -1) -> jax.Array:
    """Pearson correlation along ``axis``."""
    _same_shape(x=x, y=y)
    x = jnp.asarray(x)
    y = jnp.asarray(y, dtype=x.dtype)
    xc = x - jnp.mean(x, axis=axis, keepdims=True)
    yc = y - jnp.mean(y, axis=axis, keepdims=True)
    return jnp.sum(xc * yc, axis=axis) / jnp.sqrt(jnp.sum(xc**2, axis=axis) * jnp.sum(yc**2, axis=axis))


def _poisson_ll(rates, counts, mask):
    rates = jnp.maximum(rates, 1e-9)  # nlb_tools clips rates at 1e-9
    ll = counts * jnp.log(rates) - rates - gammaln(counts + 1.0)
    return jnp.sum(jnp.where(mask, ll, 0.0))


def bits_per_spike(rates: jax.Array, counts: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """NLB bits/spike: (LL(rates) − LL(mean rate per neuron)) / (n_spikes · ln 2).

    ``rates`` are expected counts per bin and ``counts`` observed counts, both shaped
    (..., neurons) with neurons last (trials × time × neurons in NLB). Entries with
    ``mask == 0`` (or NaN counts) are excluded, as nlb_tools drops NaN.
    """
    _same_shape(rates=rates, counts=counts)
    if not is_traced(rates):
        check_finite(rates, "rates")
        check_range(rates, "rates", low=0.0)
    if not is_traced(counts) and mask is None:
        c = np.asarray(counts)
        check_range(c[~np.isnan(c)] if c.dtype.kind == "f" else c, "counts", low=0.0)
    rates = jnp.asarray(rates)
    counts = jnp.asarray(counts, dtype=rates.dtype)
    n = counts.shape[-1]
    r = rates.reshape(-1, n)
    c = counts.reshape(-1, n)
    m = ~jnp.isnan(c) if mask is None else jnp.broadcast_to(jnp.asarray(mask), counts.shape).reshape(-1, n).astype(bool)
    c0 = jnp.where(m, c, 0.0)
    mean_rate = jnp.sum(c0, axis=0) / jnp.maximum(jnp.sum(m, axis=0), 1)
    ll_model = _poisson_ll(jnp.where(m, r, 1.0), c0, m)
    ll_null = _poisson_ll(jnp.broadcast_to(mean_rate, c.shape), c0, m)
    return (ll_model - ll_null) / (jnp.sum(c0) * math.log(2.0))


def firing_rate(spikes: jax.Array, dt: float, axis: int = -1) -> jax.Array:
    """Mean firing rate in Hz of a count/indicator array with bins of ``dt`` milliseconds along ``axis``."""
    check_scalar(dt, "dt", low=0.0, low_inclusive=False)
    if not is_traced(spikes):
        check_range(spikes, "spikes", low=0.0)
    return jnp.mean(jnp.asarray(spikes, dtype=jnp.result_type(float)), axis=axis) / dt * 1000.0


def isi(spike_train, dt: float = 1.0) -> np.ndarray:
    """Inter-spike intervals (ms) of one spike train (binary/count vector over time bins of ``dt`` ms), on the host."""
    check_scalar(dt, "dt", low=0.0, low_inclusive=False)
    st = np.asarray(spike_train)
    if st.ndim != 1:
        raise ShapeError(f"spike_train must be 1-D (time,), got shape {st.shape}")
    times = np.flatnonzero(st > 0)
    return np.diff(times).astype(float) * dt


def mean_isi(raster, dt: float = 1.0) -> float:
    """Mean inter-spike interval (ms) over all neurons of a (neurons, time) raster; NaN when no neuron spikes twice."""
    raster = np.asarray(raster)
    if raster.ndim < 1 or raster.size == 0:
        raise ShapeError(f"raster must be a non-empty (neurons, time) array, got shape {raster.shape}")
    intervals = [isi(row, dt) for row in raster.reshape(-1, raster.shape[-1])]
    flat = np.concatenate(intervals) if intervals else np.array([])
    return float(flat.mean()) if flat.size else float("nan")
