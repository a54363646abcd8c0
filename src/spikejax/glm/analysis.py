"""Analysis: firing rates (Hz), inter-spike intervals, raster and ISI plots, mean-field rates.

Mean field (rectified models, no stimulus, rectifier in its linear regime): with the expected count
per step ``p``, the stationary input is ``g = b + r G (W0^T p)`` where ``G`` is the gain of the
presynaptic trace — ``C = sum_k c(k)`` for :class:`RectifiedLNP` (trace = spike counts through the
lag kernel) and ``tau`` for :class:`RectifiedSAM` (the activation's stationary mean is ``p * tau``).
Hence ``p = lambda_0 dt (b - theta) (Id - lambda_0 dt r G M)^{-1} 1`` with ``M_ij = W0[j, i]``; for a
homogeneous summed incoming weight ``w_in`` this is the closed form
``p = lambda_0 dt (b - theta) / (1 - lambda_0 dt r w_in G)``. The rate is ``p / dt * 1000`` Hz.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError, check_scalar
from ..core.metrics import isi as _isi
from ..core.results import get_ax
from .models import GLMModel, RectifiedLNP, RectifiedSAM
from .network import Network
from .trajectory import GLMTrajectory

__all__ = [
    "firing_rates",
    "population_rate",
    "isi_distribution",
    "mean_isi",
    "plot_raster",
    "plot_isi_histogram",
    "mean_field_gain",
    "mean_field_rate",
    "mean_field_theta",
    "mean_field_rate_homogeneous",
    "mean_field_theta_homogeneous",
]


def _dt(dt_or_model) -> float:
    dt = getattr(dt_or_model, "dt", dt_or_model)
    check_scalar(dt, "dt", low=0.0, low_inclusive=False)
    return float(dt)


def _raster_dt(raster, dt):
    """``(raster (N, n_steps), dt in ms)`` from a :class:`GLMTrajectory` (``dt`` optional) or an array and ``dt``."""
    if isinstance(raster, GLMTrajectory):
        return raster.raster, (raster.dt if dt is None else _dt(dt))
    if dt is None:
        raise ConfigError("dt (ms, or a model) is required with a raster array; a GLMTrajectory carries its own")
    return raster, _dt(dt)


def firing_rates(raster, dt=None) -> jax.Array:
    """Per-neuron firing rate in Hz of a trajectory or a ``(N, n_steps)`` raster (``dt`` in ms, or a model)."""
    raster, d = _raster_dt(raster, dt)
    x = jnp.asarray(raster, jnp.result_type(float))
    if x.ndim != 2:
        raise ConfigError(f"raster must be (N, n_steps), got shape {x.shape}")
    return jnp.mean(x, axis=1) / d * 1000.0


def population_rate(raster, dt=None) -> float:
    """Mean firing rate in Hz over all neurons and steps (``mean count per step / dt * 1000``)."""
    raster, d = _raster_dt(raster, dt)
    x = jnp.asarray(raster, jnp.result_type(float))
    return float(jnp.mean(x) / d * 1000.0)


def isi_distribution(raster, dt=None) -> np.ndarray:
    """All inter-spike intervals (ms) of all neurons of a trajectory or a ``(N, n_steps)`` raster (host array)."""
    raster, d = _raster_dt(raster, dt)
    r = np.asarray(raster)
    if r.ndim == 1:
        r = r[None]
    parts = [_isi(row, d) for row in r]
    return np.concatenate(parts) if parts else np.zeros(0)


def mean_isi(raster, dt=None) -> float:
    """Mean inter-spike interval in ms (NaN when no neuron spikes twice)."""
    iv = isi_distribution(raster, dt)
    return float(iv.mean()) if iv.size else float("nan")


def plot_raster(raster, dt=None, *, ax=None, max_neurons: int | None = None, title: str | None = None):
    """Raster plot of a trajectory or a ``(N, n_steps)`` raster (time in ms on x, neuron on y); returns the Axes."""
    raster, d = _raster_dt(raster, dt)
    r = np.asarray(raster)
    if max_neurons is not None:
        r = r[:max_neurons]
    ax = get_ax(ax, figsize=(8, 4))
    nz, tz = np.nonzero(r > 0)
    ax.scatter(tz * d, nz, s=1.0, c="k", marker="|", linewidths=0.5)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("neuron")
    ax.set_xlim(0, r.shape[1] * d)
    ax.set_ylim(-0.5, r.shape[0] - 0.5)
    if title:
        ax.set_title(title)
    return ax


def plot_isi_histogram(raster, dt=None, *, ax=None, bins: int = 50, title: str | None = None):
    """Histogram of inter-spike intervals (ms) of a trajectory or raster, mean ISI marked; returns the Axes."""
    iv = isi_distribution(raster, dt)
    ax = get_ax(ax, figsize=(5, 4))
    if iv.size:
        ax.hist(iv, bins=bins, color="0.4")
        ax.axvline(iv.mean(), color="C3", label=f"mean ISI {iv.mean():.2f} ms")
        ax.legend()
    ax.set_xlabel("inter-spike interval (ms)")
    ax.set_ylabel("count")
    if title:
        ax.set_title(title)
    return ax


# ------------------------------------------------------------------------------------------
# mean field


def _check_rectified(model):
    if not isinstance(model, (RectifiedLNP, RectifiedSAM)):
        raise ConfigError(f"the mean-field rate is defined for RectifiedLNP and RectifiedSAM, got {type(model).__name__}")


def mean_field_gain(model: GLMModel) -> jax.Array:
    """Gain ``G`` of the presynaptic trace: ``sum_k c(k)`` (RectifiedLNP) or ``tau`` (RectifiedSAM)."""
    _check_rectified(model)
    if isinstance(model, RectifiedSAM):
        return model.tau
    return jnp.sum(model.connectivity_filter().coupling)


def _linear_response(model, network: Network) -> jax.Array:
    """``v = (Id - lambda_0 dt r G M)^{-1} 1`` with ``M = W0^T``; raises if the fixed point is unstable."""
    if network.is_stacked:
        raise ConfigError("mean-field functions take one network or a block-diagonal batch, not a stacked batch")
    n = network.n_nodes
    M = network.to_dense().T
    a = model.lambda_0 * model.dt * model.r * mean_field_gain(model)
    A = a * M
    eig = np.max(np.real(np.linalg.eigvals(np.asarray(A, np.float64)))) if n <= 4096 and not _traced(A) else None
    if eig is not None and eig >= 1.0:
        raise ConfigError(
            f"the mean-field fixed point does not exist: the largest eigenvalue of lambda_0 dt r G W0^T is {eig:.3g} >= 1 "
            "(runaway excitation)"
        )
    return jnp.linalg.solve(jnp.eye(n, dtype=A.dtype) - A, jnp.ones((n,), A.dtype))


def _traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def mean_field_rate(model, network: Network, *, rectify: bool = False, per_neuron: bool = False):
    """Stationary rate (Hz) of a rectified model on ``network`` in mean field.

    ``rectify=False`` (default) is the closed form of the linear regime (spec §5.3); ``rectify=True``
    solves ``p = lambda_0 dt [b - theta + r G W0^T p]_+`` with optimistix (valid also when some neurons
    are silenced). Returns the population mean, or the per-neuron rates with ``per_neuron=True``.
    """
    _check_rectified(model)
    v = _linear_response(model, network)
    p = model.lambda_0 * model.dt * (model.b - model.theta) * v
    if rectify:
        p = _rectified_fixed_point(model, network, p)
    rate = p / model.dt * 1000.0
    return rate if per_neuron else jnp.mean(rate)


def _rectified_fixed_point(model, network, p0):
    import optimistix as optx

    M = network.to_dense().T
    G = mean_field_gain(model)
    c = model.lambda_0 * model.dt

    def residual(p, _):
        return p - c * jax.nn.relu(model.b - model.theta + model.r * G * (M @ p))

    sol = optx.root_find(residual, optx.Newton(rtol=1e-10, atol=1e-12), jnp.maximum(p0, 0.0), throw=False)
    return sol.value


def mean_field_theta(model, network: Network, rate_hz) -> jax.Array:
    """The threshold ``theta`` that gives a population mean rate ``rate_hz`` (Hz) in mean field (linear regime).

    ``theta* = b - p* / (lambda_0 dt mean(v))`` with ``v = (Id - lambda_0 dt r G M)^{-1} 1`` and
    ``p* = rate_hz dt / 1000``; for a homogeneous ring this equals
    ``b - p* (1 - lambda_0 dt r w_in G) / (lambda_0 dt)``.
    """
    _check_rectified(model)
    check_scalar(rate_hz, "rate_hz", low=0.0)
    v = _linear_response(model, network)
    p_star = rate_hz * model.dt / 1000.0
    return model.b - p_star / (model.lambda_0 * model.dt * jnp.mean(v))


def mean_field_rate_homogeneous(lambda_0, theta, b, r, dt, w_in, gain) -> float:
    """Closed form ``lambda_0 dt (b - theta) / (1 - lambda_0 dt r w_in G) / dt * 1000`` (Hz)."""
    denom = 1.0 - lambda_0 * dt * r * w_in * gain
    if denom <= 0:
        raise ConfigError(f"1 - lambda_0 dt r w_in G must be > 0 for a stationary mean field, got {denom:.3g}")
    return lambda_0 * dt * (b - theta) / denom / dt * 1000.0


def mean_field_theta_homogeneous(rate_hz, lambda_0, b, r, dt, w_in, gain) -> float:
    """Inverse of :func:`mean_field_rate_homogeneous`: ``theta* = b - p* (1 - lambda_0 dt r w_in G) / (lambda_0 dt)``."""
    p = rate_hz * dt / 1000.0
    return b - p * (1.0 - lambda_0 * dt * r * w_in * gain) / (lambda_0 * dt)
