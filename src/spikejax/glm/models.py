"""The cascade models: input -> nonlinearity -> emission over a lag kernel.

Every model is an :class:`equinox.Module` whose numeric parameters are array leaves (so changing a
value never recompiles) and whose sizes (``T``, windows) are static. A model provides

* :meth:`GLMModel.connectivity_filter` — the lag kernel (:class:`~spikejax.glm.kernels.LagKernel`)
  built from the edge weights;
* :meth:`GLMModel.input` — ``g`` from the synaptic sum, the stimulus and the background;
* :meth:`GLMModel.non_linearity` — the expected count per step ``mu = f(g)``;
* :meth:`GLMModel.emit_spikes` — a sample of the counts given ``mu``;
* :meth:`GLMModel.presynaptic` — what the kernel reads back (the spike count for GLMs, the synaptic
  activation for SA models).

Subclass :class:`GLMModel` (or :class:`SAModel`) and override these to define a new model; see
``docs/glm.md`` and ``tests/glm/test_custom_model.py`` for the spec's "FilRectLNP" tutorial.

Units: ``dt`` in ms, rates returned by analysis helpers in Hz, ``mu`` in expected counts per step.
Time constants ``tau`` are in ms; kernels are evaluated at lags ``k * dt`` ms.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.errors import ConfigError, check_scalar, is_traced
from .kernels import LagKernel

__all__ = [
    "GLMModel",
    "SAModel",
    "BernoulliGLM",
    "PoissonGLM",
    "RectifiedLNP",
    "RectifiedSAM",
    "ThresholdSAM",
    "sample_poisson",
    "MODELS",
]


def _no_string(value, name):
    if isinstance(value, (str, bytes)):
        raise ConfigError(f"{name} must be a number, got str {value!r}")


def _param(value, name, *, low=None, low_inclusive=True, high=None):
    """A model parameter as a float array leaf (validated when concrete)."""
    _no_string(value, name)
    if isinstance(value, jax.Array) and value.ndim == 0 and jnp.issubdtype(value.dtype, jnp.floating):
        check_scalar(value, name, low=low, low_inclusive=low_inclusive, high=high)
        return value
    check_scalar(value, name, low=low, low_inclusive=low_inclusive, high=high)
    return jnp.asarray(value, dtype=jnp.result_type(float))


def _dt(value) -> float:
    """The time step in ms as a Python float (a static field: sizes and times of a run derive from it)."""
    if is_traced(value):
        raise ConfigError("dt must be a concrete number (ms): it is a static field of the model, not a traced parameter")
    _no_string(value, "dt")
    check_scalar(value, "dt", low=0.0, low_inclusive=False)
    return float(value)


def _int(value, name, *, low=1):
    _no_string(value, name)
    check_scalar(value, name, low=low, integer=True)
    return int(value)


# terms of the inversion sampler for a Poisson piece of mean <= 1 (tail beyond: < 1e-11)
_POISSON_TERMS = 14
# above this mean a normal approximation (rounded, >= 0) is used; the relative error is negligible there
_POISSON_NORMAL = 1024.0


def _poisson_unit(u: jax.Array, mu: jax.Array) -> jax.Array:
    """Inversion of the Poisson CDF for means ``mu <= 1`` with one uniform ``u`` per entry."""
    p = jnp.exp(-mu)
    F = p
    x = jnp.zeros_like(mu)
    for k in range(1, _POISSON_TERMS + 1):
        x = x + (u > F).astype(mu.dtype)
        p = p * mu / k
        F = F + p
    return x


# Trace-time switch set by the simulator: "fast" draws every count by one inversion pass, exact only
# while every mean is <= 1; the simulator checks that (and re-runs a chunk in exact mode otherwise).
_POISSON_FAST = contextvars.ContextVar("spikejax_glm_poisson_fast", default=False)


@contextlib.contextmanager
def fast_poisson(enabled: bool = True):
    """Within this context (at trace time) :func:`sample_poisson` skips its exact fallback for means > 1."""
    token = _POISSON_FAST.set(bool(enabled))
    try:
        yield
    finally:
        _POISSON_FAST.reset(token)


def sample_poisson(mu: jax.Array, u: jax.Array | None = None, *, key: jax.Array) -> jax.Array:
    """Exact Poisson counts with means ``mu`` (float array, same dtype as ``mu``; NaN stays NaN).

    A Poisson(mu) count is the sum of ``m = ceil(max mu)`` independent Poisson(mu / m) counts, each
    drawn by inverting its CDF with one uniform (means <= 1 need at most 14 terms). In the usual
    regime (a fraction of a spike per step) this is a single pass with one uniform per neuron —
    much cheaper to run and to compile than rejection sampling. Means above 1024 per step use a
    rounded normal approximation. ``u`` optionally supplies the first piece's uniforms (it must equal
    ``jax.random.uniform(key, mu.shape, mu.dtype)``; the simulator precomputes them in bulk).
    """
    bad = jnp.isnan(mu)
    mu = jnp.where(bad, 0.0, jnp.maximum(mu, 0.0))
    u0 = jax.random.uniform(key, mu.shape, mu.dtype) if u is None else u
    if _POISSON_FAST.get():
        return jnp.where(bad, jnp.nan, _poisson_unit(u0, mu))
    top = jnp.max(mu, initial=0.0)

    def fast(_):
        return _poisson_unit(u0, mu)

    def slow(_):
        big = mu > _POISSON_NORMAL
        mu_small = jnp.where(big, 0.0, mu)
        m = jnp.maximum(jnp.ceil(jnp.max(mu_small, initial=0.0)), 1.0)
        piece = mu_small / m

        def body(carry):
            i, acc = carry
            ui = jax.random.uniform(jax.random.fold_in(key, i), mu.shape, mu.dtype)
            return i + 1, acc + _poisson_unit(ui, piece)

        x = jax.lax.while_loop(lambda c: c[0] < m.astype(jnp.int32), body, (jnp.asarray(1, jnp.int32), _poisson_unit(u0, piece)))[1]
        z = jax.random.normal(jax.random.fold_in(key, 2**31 - 1), mu.shape, mu.dtype)
        return jnp.where(big, jnp.maximum(jnp.round(mu + jnp.sqrt(mu) * z), 0.0), x)

    x = jax.lax.cond(top <= 1.0, fast, slow, None)
    return jnp.where(bad, jnp.nan, x)


class GLMModel(eqx.Module):
    """Base class of cascade models reading a ``T``-step history of spike counts.

    Subclasses set the class attribute ``tunable`` (names of parameters :func:`~spikejax.glm.tune`
    may change) and implement :meth:`connectivity_filter`, :meth:`input`, :meth:`non_linearity` and
    :meth:`emit_spikes`. The attribute ``dt`` (ms) must exist; the built-in models hold it as a static
    float (``eqx.field(static=True)``), which :func:`~spikejax.glm.simulate` needs under ``jit``/``vmap``
    (the trajectory's time axis is static).
    """

    tunable: ClassVar[tuple[str, ...]] = ()
    #: True when the presynaptic trace is a sparse spike count (enables the event-driven kernel).
    spiking_trace: ClassVar[bool] = True
    #: True when ``emit_spikes`` uses ``jax.random.uniform(key, mu.shape)`` (the simulator then draws
    #: these uniforms for many steps at once, which is much faster for small networks).
    uses_uniform: ClassVar[bool] = False
    #: The emission's distribution for :func:`~spikejax.glm.log_likelihood`: ``"poisson"``, ``"bernoulli"``
    #: or ``None`` (deterministic emission: no likelihood).
    emission: ClassVar[str | None] = "poisson"

    # -- the cascade ---------------------------------------------------------------------------
    def connectivity_filter(self) -> LagKernel:
        """The lag kernel. Default: the weights themselves as a one-lag kernel (``c = [1]``)."""
        return LagKernel(coupling=jnp.ones((1,), jnp.result_type(float)))

    def input(self, synaptic: jax.Array, stimulus: jax.Array, *, key: jax.Array) -> jax.Array:
        """``g`` from the synaptic sum ``sum_j sum_k W[j->i, k] trace_j(t-1-k)`` and the stimulus."""
        return synaptic + stimulus

    @abc.abstractmethod
    def non_linearity(self, g: jax.Array) -> jax.Array:
        """Expected count per step ``mu = f(g)``."""

    @abc.abstractmethod
    def emit_spikes(self, mu: jax.Array, *, key: jax.Array, u: jax.Array | None = None) -> jax.Array:
        """A sample of the counts (float array) given the expected counts ``mu``.

        ``u`` is ``None`` or ``jax.random.uniform(key, mu.shape, mu.dtype)`` precomputed by the simulator
        in bulk (when the class sets ``uses_uniform = True``); implementations must give the same result
        either way.
        """

    def stimulus_filter(self, stimulus: jax.Array) -> jax.Array:
        """Map a (possibly multi-channel ``(N, C)``) stimulus to one input per neuron. Default: identity."""
        return stimulus

    # -- state -------------------------------------------------------------------------------
    def init_trace(self, n: int, *, key: jax.Array, dtype) -> tuple[jax.Array, object]:
        """Initial presynaptic trace and auxiliary state: each neuron has spiked with probability 1/2."""
        return jax.random.bernoulli(key, 0.5, (n,)).astype(dtype), None

    def presynaptic(self, x: jax.Array, aux):
        """``(trace, aux)`` after emitting counts ``x``: what the kernel reads at the next steps."""
        return x, aux

    # -- helpers -----------------------------------------------------------------------------
    @property
    def T(self) -> int:
        """History length (lags) of the model's kernel."""
        return self.connectivity_filter().T

    def params(self) -> dict[str, jax.Array]:
        """The tunable parameters as a dict ``{name: value}``."""
        return {name: getattr(self, name) for name in self.tunable}

    def replace(self, **values) -> "GLMModel":
        """A copy with parameters replaced, validated as the constructor validates them.

        Array parameters keep their leaves' dtype. Static fields (``dt``, ``T``) may be replaced too.
        For the built-in models (and subclasses whose ``__init__`` arguments are attributes of the
        same name) the copy is rebuilt by the constructor, so ``replace(dt=-0.1)`` is refused like
        ``RectifiedLNP(dt=-0.1)``; other subclasses get the generic checks (finite numbers, ``dt > 0``).
        """
        import difflib

        names = list(values)
        for name in names:
            if not hasattr(self, name):
                known = sorted(set(_init_names(type(self))) | {f.name for f in _fields(self)})
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; it has {', '.join(known)}"
                raise ConfigError(f"{type(self).__name__} has no parameter {name!r}{hint}")
        init = _init_names(type(self))
        if init is not None and set(names) <= set(init) and all(_has_value(self, n) for n in init):
            kwargs = {n: _current(self, n) for n in init}
            kwargs.update(values)
            return type(self)(**kwargs)
        # generic subclasses: array leaves by tree_at, static fields set on a copy
        static = {f.name for f in _fields(self) if f.metadata.get("static", False)}
        for n in names:
            v = values[n]
            if n == "dt":
                _dt(v)
            elif not is_traced(v):
                _no_string(v, n)
                from ..core.errors import check_finite

                check_finite(jnp.asarray(v), n)
        leaf_names = [n for n in names if n not in static]
        out = self
        if leaf_names:
            leaves = [jnp.asarray(values[n], dtype=jnp.asarray(getattr(self, n)).dtype) for n in leaf_names]
            out = eqx.tree_at(lambda m: [getattr(m, n) for n in leaf_names], out, leaves)
        static_changes = {n: values[n] for n in names if n in static}
        if static_changes:
            out = _set_static(out, static_changes)
        return out

    def rate_hz(self, mu: jax.Array) -> jax.Array:
        """Convert expected counts per step to Hz (``mu / dt * 1000`` with ``dt`` in ms)."""
        return mu / self.dt * 1000.0


def _fields(model) -> tuple:
    import dataclasses

    return dataclasses.fields(model)


def _init_names(cls) -> list[str] | None:
    """The keyword arguments of ``cls.__init__`` (``None`` if it takes ``*args``/``**kwargs``)."""
    import inspect

    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return None
    out = []
    for p in list(sig.parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            return None
        out.append(p.name)
    return out


def _current(model, name):
    """The value of constructor argument ``name`` (``T`` is stored as ``T_steps``)."""
    if name == "T" and hasattr(model, "T_steps"):
        return model.T_steps
    return getattr(model, name)


def _has_value(model, name) -> bool:
    try:
        _current(model, name)
    except Exception:
        return False
    return True


def _set_static(model, changes):
    """``model`` with static fields changed (object.__setattr__ on a shallow copy, as dataclasses.replace can't
    be used once array leaves were swapped by tree_at without re-running ``__init__``)."""
    import copy

    out = copy.copy(model)
    for k, v in changes.items():
        object.__setattr__(out, k, v)
    return out


class SAModel(GLMModel):
    """Base of synaptic-activation models: a one-lag kernel over a leaky activation ``s``.

    ``s <- s * (1 - dt / tau) + x * dt`` after each step; the input reads ``r * sum_j W0[j, i] s_j``.
    The initial activation is ``U(0, 1)`` per neuron, as in spikeometric.
    """

    spiking_trace: ClassVar[bool] = False

    def connectivity_filter(self) -> LagKernel:
        return LagKernel(coupling=jnp.ones((1,), jnp.result_type(float)))

    def init_trace(self, n: int, *, key: jax.Array, dtype):
        s0 = jax.random.uniform(key, (n,), dtype)
        return s0, s0

    def presynaptic(self, x, aux):
        s = aux * (1.0 - self.dt / self.tau) + x * self.dt
        return s, s


def _sigmoid(x):
    return jax.nn.sigmoid(x)


class BernoulliGLM(GLMModel):
    """Bernoulli GLM with refractoriness (Lepperød et al.).

    ``g_i = r * (sum_j sum_k W0[j, i] c(k) x_j(t-1-k) + sum_k ref(k) x_i(t-1-k)) + E_i(t)``,
    ``p_i = sigmoid(g_i - theta) * dt``, ``x_i ~ Bernoulli(p_i)``.

    Coupling kernel ``c(k) = exp(-|alpha| k dt)`` for ``k < coupling_window``; refractory (self)
    kernel ``abs_ref_strength`` for ``k < abs_ref_scale`` then
    ``rel_ref_strength * exp(-|beta| (k - abs_ref_scale) dt)`` for ``k < abs_ref_scale + rel_ref_scale``.
    ``T = max(coupling_window, abs_ref_scale + rel_ref_scale)``.

    Naming caveat (as in spikeometric's code): ``alpha`` is the *coupling* decay and ``beta`` the
    *refractory* decay (spikeometric's class docstring says the opposite). Note that ``r`` also
    scales the refractory term. Every neuron gets the refractory self-kernel (spikeometric gives it
    only to neurons ``0..max(edge_index)``), and a self-edge present in ``W0`` keeps its own coupling
    weight in addition (spikeometric misassigns coupling weights after such an edge).

    Standard parameters: ``theta=5, dt=1, coupling_window=5, abs_ref_scale=3,
    abs_ref_strength=-100, rel_ref_scale=7, rel_ref_strength=-30, alpha=0.2, beta=0.5, r=1``.
    """

    theta: jax.Array
    dt: float = eqx.field(static=True)  # ms
    alpha: jax.Array
    beta: jax.Array
    r: jax.Array
    abs_ref_strength: jax.Array
    rel_ref_strength: jax.Array
    coupling_window: int = eqx.field(static=True)
    abs_ref_scale: int = eqx.field(static=True)
    rel_ref_scale: int = eqx.field(static=True)

    tunable: ClassVar[tuple[str, ...]] = ("theta", "r", "beta", "alpha", "rel_ref_strength")
    emission: ClassVar[str | None] = "bernoulli"

    def __init__(
        self,
        theta=5.0,
        dt=1.0,
        coupling_window=5,
        alpha=0.2,
        abs_ref_scale=3,
        abs_ref_strength=-100.0,
        rel_ref_scale=7,
        rel_ref_strength=-30.0,
        beta=0.5,
        r=1.0,
    ):
        self.theta = _param(theta, "theta")
        self.dt = _dt(dt)
        self.alpha = _param(alpha, "alpha")
        self.beta = _param(beta, "beta")
        self.r = _param(r, "r")
        self.abs_ref_strength = _param(abs_ref_strength, "abs_ref_strength")
        self.rel_ref_strength = _param(rel_ref_strength, "rel_ref_strength")
        self.coupling_window = _int(coupling_window, "coupling_window", low=1)
        self.abs_ref_scale = _int(abs_ref_scale, "abs_ref_scale", low=0)
        self.rel_ref_scale = _int(rel_ref_scale, "rel_ref_scale", low=0)

    def connectivity_filter(self) -> LagKernel:
        T = max(self.coupling_window, self.abs_ref_scale + self.rel_ref_scale)
        k = jnp.arange(T, dtype=jnp.result_type(float))
        coupling = jnp.where(k < self.coupling_window, jnp.exp(-jnp.abs(self.alpha) * k * self.dt), 0.0)
        A, R = self.abs_ref_scale, self.rel_ref_scale
        rel = self.rel_ref_strength * jnp.exp(-jnp.abs(self.beta) * (k - A) * self.dt)
        ref = jnp.where(k < A, self.abs_ref_strength, jnp.where(k < A + R, rel, 0.0))
        return LagKernel(coupling=coupling, self_kernel=ref)

    def input(self, synaptic, stimulus, *, key):
        return self.r * synaptic + stimulus

    def non_linearity(self, g):
        return _sigmoid(g - self.theta) * self.dt

    uses_uniform: ClassVar[bool] = True

    def emit_spikes(self, mu, *, key, u=None):
        u = jax.random.uniform(key, mu.shape, mu.dtype) if u is None else u
        return (u < mu).astype(mu.dtype)


class _ExpKernelMixin:
    """Exponential coupling profile ``c(k) = exp(-k dt / tau)`` over ``T_steps`` lags."""

    def connectivity_filter(self) -> LagKernel:
        k = jnp.arange(self.T_steps, dtype=jnp.result_type(float))
        return LagKernel(coupling=jnp.exp(-k * self.dt / self.tau))


class _LinearPoissonMixin:
    """Input ``r * synaptic + b + stimulus`` and Poisson emission."""

    uses_uniform: ClassVar[bool] = True

    def input(self, synaptic, stimulus, *, key):
        return self.r * synaptic + self.b + stimulus

    def emit_spikes(self, mu, *, key, u=None):
        return sample_poisson(mu, u, key=key)


class _RectifierMixin:
    """``mu = lambda_0 dt max(g - theta, 0)``."""

    def non_linearity(self, g):
        return self.lambda_0 * self.dt * jax.nn.relu(g - self.theta)


class PoissonGLM(_ExpKernelMixin, _LinearPoissonMixin, GLMModel):
    """Exponential-nonlinearity Poisson GLM (Das & Fiete, section S.7).

    ``g_i = r * sum_j sum_k W0[j, i] c(k) y_j(t-1-k) + b + E_i(t)`` with ``c(k) = exp(-k dt / tau)``,
    ``mu_i = (dt / alpha) * exp(beta * g_i)``, counts ``n_i ~ Poisson(mu_i)``.

    spikeometric emits ``Poisson(mu) * dt`` and feeds these dt-scaled values back (``y = n * dt``).
    spikejax keeps the same dynamics (the kernel reads ``y = n * dt`` as a float) but returns the
    integer counts ``n`` in the raster, so integer storage with ``dt < 1`` does not silence the
    network (spikeometric's int-storage bug). Multiply the raster by ``dt`` to get spikeometric's
    float-storage values.
    """

    alpha: jax.Array
    beta: jax.Array
    tau: jax.Array
    dt: float = eqx.field(static=True)  # ms
    r: jax.Array
    b: jax.Array
    T_steps: int = eqx.field(static=True)

    tunable: ClassVar[tuple[str, ...]] = ("alpha", "beta", "tau", "r", "b")

    def __init__(self, alpha=15.9, beta=10.0, T=200, tau=10.0, dt=0.1, r=0.025, b=0.001):
        self.alpha = _param(alpha, "alpha", low=0.0, low_inclusive=False)
        self.beta = _param(beta, "beta")
        self.T_steps = _int(T, "T", low=1)
        self.tau = _param(tau, "tau", low=0.0, low_inclusive=False)
        self.dt = _dt(dt)
        self.r = _param(r, "r")
        self.b = _param(b, "b")

    def non_linearity(self, g):
        return self.dt / self.alpha * jnp.exp(self.beta * g)

    def presynaptic(self, x, aux):
        return x * self.dt, aux


class RectifiedLNP(_ExpKernelMixin, _RectifierMixin, _LinearPoissonMixin, GLMModel):
    """Rectified linear-nonlinear Poisson model (Das & Fiete, section S.6): the tutorial model.

    ``g_i = r * sum_j sum_k W0[j, i] c(k) x_j(t-1-k) + b + E_i(t)``, ``c(k) = exp(-k dt / tau)``,
    ``mu_i = lambda_0 * dt * max(g_i - theta, 0)``, ``x_i ~ Poisson(mu_i)``. ``T`` is in steps.

    Test parameters: ``lambda_0=9.8, theta=-0.002, dt=0.1, T=200, tau=10, r=0.025, b=0.001``.
    Tutorial text: ``lambda_0=100, theta=1e-4, T=20, tau=10, dt=0.1, r=0.0025, b=0.001``.
    """

    lambda_0: jax.Array
    theta: jax.Array
    tau: jax.Array
    dt: float = eqx.field(static=True)  # ms
    r: jax.Array
    b: jax.Array
    T_steps: int = eqx.field(static=True)

    tunable: ClassVar[tuple[str, ...]] = ("lambda_0", "theta", "tau", "r", "b")

    def __init__(self, lambda_0=9.8, theta=-0.002, T=200, tau=10.0, dt=0.1, r=0.025, b=0.001):
        self.lambda_0 = _param(lambda_0, "lambda_0", low=0.0)
        self.theta = _param(theta, "theta")
        self.T_steps = _int(T, "T", low=1)
        self.tau = _param(tau, "tau", low=0.0, low_inclusive=False)
        self.dt = _dt(dt)
        self.r = _param(r, "r")
        self.b = _param(b, "b")


class RectifiedSAM(_RectifierMixin, _LinearPoissonMixin, SAModel):
    """Rectified synaptic-activation model (Das & Fiete, section S.5).

    ``g_i = r * sum_j W0[j, i] s_j + b + E_i``, ``mu_i = lambda_0 dt max(g_i - theta, 0)``,
    ``x_i ~ Poisson(mu_i)``, ``s <- s (1 - dt/tau) + x dt``.
    Test parameters: ``lambda_0=1.0861, theta=-0.0137, tau=10, dt=0.1, r=0.025, b=0.001``.
    """

    lambda_0: jax.Array
    theta: jax.Array
    tau: jax.Array
    dt: float = eqx.field(static=True)  # ms
    r: jax.Array
    b: jax.Array

    tunable: ClassVar[tuple[str, ...]] = ("lambda_0", "theta", "tau", "r", "b")

    def __init__(self, lambda_0=1.0861, theta=-0.0137, tau=10.0, dt=0.1, r=0.025, b=0.001):
        self.lambda_0 = _param(lambda_0, "lambda_0", low=0.0)
        self.theta = _param(theta, "theta")
        self.tau = _param(tau, "tau", low=0.0, low_inclusive=False)
        self.dt = _dt(dt)
        self.r = _param(r, "r")
        self.b = _param(b, "b")


class ThresholdSAM(SAModel):
    """Threshold synaptic-activation model (Das & Fiete's main generative model). Not tunable.

    ``g_i = r * sum_j W0[j, i] s_j + B_i + E_i`` with the background that spikeometric's code
    computes, ``B_i = b * (1 + m_i xi_i^2)``, ``xi_i ~ N(0, sigma^2)``, ``m_i ~ Bernoulli(rho)`` drawn
    fresh per neuron and step (documented upstream as ``b`` plus sparse Gaussian noise; the code
    squares the noise). Emission ``x_i = [g_i > theta]`` (the nonlinearity is the identity).
    Test parameters: ``r=0.025, b=0.001, tau=10, dt=0.1, sigma=0.3, rho=0.07, theta=1.378e-3``.
    """

    r: jax.Array
    b: jax.Array
    tau: jax.Array
    dt: float = eqx.field(static=True)  # ms
    sigma: jax.Array
    rho: jax.Array
    theta: jax.Array

    tunable: ClassVar[tuple[str, ...]] = ()
    emission: ClassVar[str | None] = None

    def __init__(self, r=0.025, b=0.001, tau=10.0, dt=0.1, sigma=0.3, rho=0.07, theta=1.378e-3):
        self.r = _param(r, "r")
        self.b = _param(b, "b")
        self.tau = _param(tau, "tau", low=0.0, low_inclusive=False)
        self.dt = _dt(dt)
        self.sigma = _param(sigma, "sigma", low=0.0)
        self.rho = _param(rho, "rho", low=0.0, high=1.0)
        self.theta = _param(theta, "theta")

    def background(self, n_shape, dtype, *, key):
        k1, k2 = jax.random.split(key)
        xi = self.sigma * jax.random.normal(k1, n_shape, dtype)
        m = jax.random.uniform(k2, n_shape, dtype) < self.rho
        return self.b * (1.0 + jnp.where(m, xi * xi, 0.0))

    def input(self, synaptic, stimulus, *, key):
        return self.r * synaptic + self.background(synaptic.shape, synaptic.dtype, key=key) + stimulus

    def non_linearity(self, g):
        return g

    def emit_spikes(self, mu, *, key, u=None):
        return (mu > self.theta).astype(mu.dtype)


MODELS = {
    "BernoulliGLM": BernoulliGLM,
    "PoissonGLM": PoissonGLM,
    "RectifiedLNP": RectifiedLNP,
    "RectifiedSAM": RectifiedSAM,
    "ThresholdSAM": ThresholdSAM,
}
