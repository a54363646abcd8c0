"""Generalized firing-rate (GFR) neurons with the conventions of AllenInstitute/GRNN's code.

One step of a GFR neuron (one bin of ``bin_size`` ms; input current ``I_t`` in pA, output rate
``f_t`` in spikes/ms) is::

    h_i[t] = (1 - lambda_i) h_i[t-1] + alpha_i I[t] + kappa beta_i f[t-1]      (i = 1..n)
    f[t]   = g(mean_i h_i[t])
    g(z)   = gamma * relu(tanh(sum_k a_k**2 ((z - b) / sigma)**k))

* no ``bin_size`` factor on ``alpha`` or ``beta`` (it is absorbed in the fitted values),
* ``kappa = 1000`` (``bio_units=True``, turns spikes/ms into Hz in the feedback; required for the
  released parameters) or ``kappa = 1``,
* the powers are taken of ``(z - b) / sigma`` and ``a_0**2`` is *not* divided by ``sigma``,
* the coefficients enter squared, ``gamma`` caps the rate,
* every sweep starts from ``h = 0, f = 0``,
* the decay rates ``lambda`` come from a fixed grid per bin size (:func:`decay_rates`) and are
  never trained; ``sigma`` and ``gamma`` are fixed too (gradients through them are stopped).

:class:`GFR` is one neuron (leaves ``alpha``, ``beta`` of shape ``(n,)``); stack many with
:func:`spikejax.core.stack` and ``vmap``. :class:`GFRLayer` is ``N`` neurons sharing one decay grid
(leaves with a leading neuron axis) with a single :meth:`GFRLayer.step` usable inside an RNN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import (
    ConfigError,
    DataFormatError,
    ShapeError,
    SpikejaxError,
    check_allocation,
    check_array,
    check_finite,
    check_keys,
    check_scalar,
    is_traced,
)
from ..core.scan import scan


def _py(v: Any) -> float:
    """A scalar as a Python float, float32 values as their shortest decimal (no float32 noise in JSON)."""
    from ..core.io import short_float

    x = short_float(v)
    return float(np.asarray(v)) if x is None else x

__all__ = [
    "TAUS_MS",
    "BIN_SIZES",
    "CONFIGS",
    "KAPPA_BIO",
    "decay_rates",
    "check_config",
    "PolynomialActivation",
    "GFR",
    "GFRLayer",
    "simulate",
    "simulate_rates",
    "kernels",
    "linear_drive",
    "simulate_feedforward",
    "default_neuron",
    "default_layer",
    "DEFAULT_DECAY",
    "check_model",
]

#: Time constants (ms) of the decay grid; only those >= the bin size are kept.
TAUS_MS: tuple[float, ...] = (10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
#: Bin sizes (ms) the original preprocessing produces.
BIN_SIZES: tuple[int, ...] = (10, 20, 50, 100)
#: The six released (bin_size, activation_bin_size) configurations.
CONFIGS: tuple[tuple[int, int], ...] = ((10, 20), (10, 100), (20, 20), (20, 100), (50, 100), (100, 100))
#: Feedback scale of ``bio_units=True`` (spikes/ms -> Hz).
KAPPA_BIO = 1000.0
#: Keys of a ``get_params`` dict besides the activation's.
PARAM_KEYS = ("a", "b", "ds", "bin_size")
#: Activation fields of a ``get_params`` dict (``g.<key>`` dotted or ``g: {<key>: ...}`` nested).
G_KEYS = ("max_current", "max_firing_rate", "poly_coeff", "b", "bin_size")
#: Decay rates of the default ("random") MNIST neuron: [1] + [1 - exp(-1/tau) for tau = 1, 2, 5 steps].
DEFAULT_DECAY: tuple[float, ...] = (1.0,) + tuple(1.0 - math.exp(-1.0 / t) for t in (1.0, 2.0, 5.0))


def _float_dtype():
    return jnp.result_type(float)


def _as_float(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(_float_dtype())
    return x


def _g_fields(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The activation fields of ``params`` from either the dotted or the nested layout."""
    if isinstance(params.get("g"), Mapping):
        g = params["g"]
        missing = [k for k in G_KEYS if k not in g]
        if missing:
            raise DataFormatError(f"{name}['g'] is missing required key(s) {missing}; it has {sorted(g)}")
        return {k: g[k] for k in G_KEYS}
    missing = [f"g.{k}" for k in G_KEYS if f"g.{k}" not in params]
    if missing:
        raise DataFormatError(
            f"{name} is missing required key(s) {missing} (or a nested 'g' object); it has {sorted(params)}"
        )
    return {k: params[f"g.{k}"] for k in G_KEYS}


def _vec(value: Any, name: str, n: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataFormatError(f"{name} must be a list of numbers, got {value!r:.100}") from None
    if n is not None and arr.size != n:
        raise DataFormatError(f"{name} must hold {n} number(s), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise DataFormatError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def decay_rates(dt: float, taus: Sequence[float] | None = None) -> np.ndarray:
    """The fixed decay grid ``lambda`` for bins of ``dt`` ms.

    ``lambda = [1] + [1 - exp(-dt / tau) for tau in taus if tau >= dt]`` with the
    default ``taus`` :data:`TAUS_MS` = (10, 20, 50, 100, 200, 500, 1000, 2000) ms, which gives
    n = 9, 8, 7, 6 traces for bin sizes 10, 20, 50, 100 ms. With the default grid ``dt`` must
    be one of :data:`BIN_SIZES`; pass ``taus`` (same unit as ``dt``) for other grids, e.g.
    ``decay_rates(1, taus=(1, 2, 5))`` for the default MNIST neuron.

    Returns
    -------
    numpy float64 array of shape (n,).
    """
    if taus is None:
        if dt not in BIN_SIZES:
            raise ConfigError(
                f"dt must be one of {BIN_SIZES} ms for the default decay grid, got {dt!r}; "
                "pass taus= for another grid"
            )
        taus = TAUS_MS
    if not (isinstance(dt, (int, float, np.integer, np.floating)) and dt > 0):
        raise ConfigError(f"dt must be a positive number of ms, got {dt!r}")
    kept = [float(t) for t in taus if t >= dt]
    return np.asarray([1.0] + [1.0 - math.exp(-float(dt) / t) for t in kept], dtype=np.float64)


def check_config(dt: Any, activation_dt: Any, *, released_only: bool = False) -> tuple[int, int]:
    """Validate a (dt, activation_dt) pair in ms (GRNN's (bin_size, activation_bin_size)); returns it as ints.

    Both must be among :data:`BIN_SIZES`; with ``released_only`` the pair must be one of the six
    released :data:`CONFIGS`.
    """
    pair = (dt, activation_dt)
    ok = all(isinstance(v, (int, float, np.integer, np.floating)) and float(v) in BIN_SIZES for v in pair)
    if ok and released_only:
        ok = (int(dt), int(activation_dt)) in CONFIGS
    if not ok:
        allowed = CONFIGS if released_only else f"bin sizes in {BIN_SIZES}"
        raise ConfigError(
            f"unknown (dt, activation_dt) = {pair!r}; expected {allowed}"
        )
    return int(dt), int(activation_dt)


class PolynomialActivation(eqx.Module):
    """GRNN's activation ``g(z) = gamma * relu(tanh(sum_k a_k**2 ((z - b)/sigma)**k))``.

    Attributes
    ----------
    poly_coeff : array (..., d+1)
        Coefficients ``a_0..a_d`` (they enter squared). Trainable in stage 1.
    b : array (...)
        Threshold current, pA. Trainable in stage 1.
    max_current : array (...)
        ``sigma``, the largest |I| of the activation-fitting data, pA. Fixed (gradient stopped).
    max_firing_rate : array (...)
        ``gamma``, the cell's maximum instantaneous rate, spikes/ms. Fixed (gradient stopped).
    dt : int or float (static)
        ``Delta t'``, the bin width (ms) the activation was fitted with (GRNN's ``g.bin_size``; a label only).

    Leading axes ``(...)`` are neuron axes (a :class:`GFRLayer` holds shape ``(N, d+1)`` etc.).
    """

    poly_coeff: jax.Array
    b: jax.Array
    max_current: jax.Array
    max_firing_rate: jax.Array
    dt: Any = eqx.field(static=True, default=20)

    def __init__(self, poly_coeff, b, max_current, max_firing_rate, dt=20):
        self.poly_coeff = _as_float(poly_coeff)
        self.b = _as_float(b)
        self.max_current = _as_float(max_current)
        self.max_firing_rate = _as_float(max_firing_rate)
        self.dt = dt

    @property
    def degree(self) -> int:
        return int(self.poly_coeff.shape[-1]) - 1

    def polynomial(self, z: jax.Array) -> jax.Array:
        """``p(x) = sum_k a_k**2 x**k`` with ``x = (z - b)/sigma`` (Horner), before tanh/relu."""
        sigma = jax.lax.stop_gradient(self.max_current)
        x = (z - self.b) / sigma
        c = self.poly_coeff**2
        p = c[..., -1]
        for k in range(self.degree - 1, -1, -1):
            p = p * x + c[..., k]
        return p

    def __call__(self, z: jax.Array) -> jax.Array:
        """Rate (spikes/ms) for input ``z`` (pA); ``z``'s trailing axes broadcast against the neuron axes."""
        gamma = jax.lax.stop_gradient(self.max_firing_rate)
        return gamma * jax.nn.relu(jnp.tanh(self.polynomial(z)))


def _set_fields(obj, alpha, beta, decay, g, dt, kappa):
    """Shared field conversion of :class:`GFR` and :class:`GFRLayer` (called from their ``__init__``).

    The static fields (``dt``, ``kappa``: Python numbers) and the activation's type are checked here;
    the array values (finiteness, ranges) are checked at the entry points by :func:`check_model`, outside
    ``jit`` (a model may be built from traced arrays)."""
    name = type(obj).__name__
    if not isinstance(g, PolynomialActivation):
        raise TypeError(f"{name} needs g, a spikejax.gfr.PolynomialActivation, got {type(g).__name__}")
    check_scalar(dt, f"{name} dt (the bin size, ms)", low=0.0, low_inclusive=False)
    check_scalar(kappa, f"{name} kappa (the feedback scale)", low=0.0)
    obj.alpha = _as_float(alpha)
    obj.beta = _as_float(beta)
    obj.decay = _as_float(decay)
    obj.g = g
    obj.dt = dt
    obj.kappa = float(kappa)


def check_model(model: Any, name: str = "model") -> None:
    """Check that ``model`` is a :class:`GFR` or :class:`GFRLayer` with usable parameter values.

    Raises ``TypeError`` for another type; :class:`~spikejax.core.errors.NonFiniteError` when
    ``alpha``, ``beta``, ``decay`` or a leaf of ``g`` holds NaN/inf; :class:`SpikejaxError` when a
    decay rate lies outside (0, 1] or ``g.max_current``/``g.max_firing_rate`` is not > 0. The checks
    read the (small) parameter arrays on the host; under ``jit`` tracing (traced leaves) they are
    skipped, so call the public entry points (``simulate`` ...) outside ``jit`` to get them.
    """
    if not isinstance(model, (GFR, GFRLayer)):
        raise TypeError(f"{name} must be a GFR or GFRLayer, got {type(model).__name__}")
    leaves = {
        "alpha": model.alpha,
        "beta": model.beta,
        "decay": model.decay,
        "g.poly_coeff": model.g.poly_coeff,
        "g.b": model.g.b,
        "g.max_current": model.g.max_current,
        "g.max_firing_rate": model.g.max_firing_rate,
    }
    if is_traced(list(leaves.values())):
        return
    for leaf, value in leaves.items():
        check_finite(value, f"{name}.{leaf}")
    decay = np.asarray(model.decay)
    if decay.size and not (np.all(decay > 0) and np.all(decay <= 1)):
        raise SpikejaxError(f"{name}.decay (the decay rates lambda) must lie in (0, 1], got {decay.tolist()}")
    for leaf in ("g.max_current", "g.max_firing_rate"):
        v = np.asarray(leaves[leaf])
        if np.any(v <= 0):
            what = "sigma, pA" if leaf == "g.max_current" else "gamma, spikes/ms"
            raise SpikejaxError(f"{name}.{leaf} ({what}) must be > 0, got minimum {float(np.min(v))!r}")


def _gfr_step(alpha, beta, decay, kappa, g, state, current):
    """Shared update; ``alpha``/``beta`` (..., n), ``h`` (..., n), ``f`` and ``current`` (...)."""
    h, f_prev = state
    lam = jax.lax.stop_gradient(decay)
    h = (1.0 - lam) * h + alpha * current[..., None] + kappa * beta * f_prev[..., None]
    f = g(jnp.mean(h, axis=-1))
    return (h, f), f


class GFR(eqx.Module):
    """One GFR neuron (GRNN's ``GFR`` module with ``bio_units`` controlling ``kappa``).

    Attributes
    ----------
    alpha : array (n,)
        Input weights of the n traces (pA -> pA, no bin-size factor).
    beta : array (n,)
        Feedback weights (multiplied by ``kappa * f[t-1]``).
    decay : array (n,)
        ``lambda`` (the stored ``ds``); fixed, gradient stopped.
    g : PolynomialActivation
    dt : int or float (static)
        ``Delta t``, the time step in ms (GRNN's ``bin_size``).
    kappa : float (static)
        Feedback scale: 1000 (``bio_units=True``, default) or 1.
    """

    alpha: jax.Array
    beta: jax.Array
    decay: jax.Array
    g: PolynomialActivation
    dt: Any = eqx.field(static=True, default=20)
    kappa: float = eqx.field(static=True, default=KAPPA_BIO)

    def __init__(self, alpha, beta, decay, g, dt=20, kappa=KAPPA_BIO):
        _set_fields(self, alpha, beta, decay, g, dt, kappa)
        if not is_traced((self.alpha, self.beta, self.decay)):
            n = self.decay.shape[-1:]
            if self.alpha.shape[-1:] != n or self.beta.shape[-1:] != n:
                raise ShapeError(
                    f"alpha, beta and decay must share their last (trace) axis; got shapes "
                    f"{tuple(self.alpha.shape)}, {tuple(self.beta.shape)}, {tuple(self.decay.shape)}"
                )

    @property
    def n_traces(self) -> int:
        return int(self.decay.shape[-1])

    @classmethod
    def init(
        cls,
        g: PolynomialActivation,
        dt: int = 20,
        *,
        kappa: float = KAPPA_BIO,
        decay: Sequence[float] | None = None,
    ) -> GFR:
        """The pre-fitting initialisation: ``alpha = [n, 0, ..., 0]``, ``beta = 0`` (so ``f_t = g(I_t)``)."""
        lam = np.asarray(decay if decay is not None else decay_rates(dt), dtype=np.float64)
        n = lam.shape[0]
        alpha = np.zeros(n)
        alpha[0] = n
        ft = _float_dtype()
        return cls(jnp.asarray(alpha, ft), jnp.zeros(n, ft), jnp.asarray(lam, ft), g, dt, kappa)

    def init_state(self, batch_shape: Sequence[int] = ()) -> tuple[jax.Array, jax.Array]:
        """Zero state ``(h, f_prev)`` with shapes ``(*batch_shape, n)`` and ``batch_shape``."""
        dt = self.alpha.dtype
        return jnp.zeros((*batch_shape, self.n_traces), dt), jnp.zeros(tuple(batch_shape), dt)

    def step(self, state, current):
        """One bin: ``current`` (pA, shape ``batch``) -> ``(new_state, rate)`` (rate in spikes/ms)."""
        return _gfr_step(self.alpha, self.beta, self.decay, self.kappa, self.g, state, current)

    def get_params(self) -> dict[str, Any]:
        """Parameters in GRNN's ``get_params`` layout (dotted ``g.*`` keys, nested lists); the inverse is
        :func:`spikejax.gfr.records.gfr_from_params` (records convert to and from models)."""
        a = np.asarray(self.alpha)
        if a.ndim != 1:
            raise ShapeError(f"get_params needs a single neuron (alpha of shape (n,)), got alpha shape {a.shape}")
        return {
            "a": [[_py(v) for v in a]],
            "b": [[_py(v) for v in np.asarray(self.beta)]],
            "ds": [_py(v) for v in np.asarray(self.decay)],
            "bin_size": self.dt,
            "g.max_current": [_py(self.g.max_current)],
            "g.max_firing_rate": [_py(self.g.max_firing_rate)],
            "g.poly_coeff": [[_py(v) for v in np.asarray(self.g.poly_coeff)]],
            "g.b": [_py(self.g.b)],
            "g.bin_size": self.g.dt,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *, kappa: float = KAPPA_BIO, name: str = "params") -> GFR:
        """Inverse of :meth:`get_params`; accepts dotted ``g.*`` keys or a nested ``g`` object (both
        appear in GRNN's files). ``name`` labels the dict in error messages."""
        check_keys(params, name, PARAM_KEYS)
        gf = _g_fields(params, name)
        alpha = _vec(params["a"], f"{name}['a']")
        n = alpha.size
        beta = _vec(params["b"], f"{name}['b']", n)
        ds = _vec(params["ds"], f"{name}['ds']", n)
        if not (np.all(ds > 0) and np.all(ds <= 1)):
            raise DataFormatError(f"{name}['ds'] (decay rates) must lie in (0, 1], got {ds.tolist()}")
        coeff = _vec(gf["poly_coeff"], f"{name}['g.poly_coeff']")
        sigma = _vec(gf["max_current"], f"{name}['g.max_current']", 1)[0]
        gamma = _vec(gf["max_firing_rate"], f"{name}['g.max_firing_rate']", 1)[0]
        b = _vec(gf["b"], f"{name}['g.b']", 1)[0]
        if sigma <= 0 or gamma <= 0:
            raise DataFormatError(f"{name}: g.max_current and g.max_firing_rate must be > 0, got {sigma} and {gamma}")
        dt = jnp.result_type(float)
        g = PolynomialActivation(jnp.asarray(coeff, dt), jnp.asarray(b, dt), jnp.asarray(sigma, dt), jnp.asarray(gamma, dt), gf["bin_size"])
        return cls(jnp.asarray(alpha, dt), jnp.asarray(beta, dt), jnp.asarray(ds, dt), g, params["bin_size"], kappa)


class GFRLayer(eqx.Module):
    """``N`` GFR neurons sharing one decay grid (one (bin_size, activation_bin_size) configuration).

    Attributes
    ----------
    alpha, beta : arrays (N, n)
    decay : array (n,), shared, fixed.
    g : PolynomialActivation with leaves of shape (N, d+1) and (N,).
    dt : static, ms.
    kappa : static feedback scale (1000 or 1).

    Use :meth:`step` inside an RNN: ``state = layer.init_state(batch_shape)``, then
    ``state, rate = layer.step(state, current)`` with ``current`` of shape ``(*batch_shape, N)``.
    """

    alpha: jax.Array
    beta: jax.Array
    decay: jax.Array
    g: PolynomialActivation
    dt: Any = eqx.field(static=True, default=20)
    kappa: float = eqx.field(static=True, default=KAPPA_BIO)

    def __init__(self, alpha, beta, decay, g, dt=20, kappa=KAPPA_BIO):
        _set_fields(self, alpha, beta, decay, g, dt, kappa)
        if not is_traced((self.alpha, self.beta, self.decay)):
            if self.alpha.ndim != 2 or self.alpha.shape != self.beta.shape or self.decay.shape != self.alpha.shape[-1:]:
                raise ShapeError(
                    "GFRLayer needs alpha and beta of shape (N, n) and decay of shape (n,); got shapes "
                    f"{tuple(self.alpha.shape)}, {tuple(self.beta.shape)}, {tuple(self.decay.shape)}"
                )
            if self.g.b.shape != self.alpha.shape[:1]:
                raise ShapeError(
                    f"GFRLayer's activation needs b of shape (N,) = {self.alpha.shape[:1]}, got {tuple(self.g.b.shape)}"
                )

    @property
    def n_neurons(self) -> int:
        return int(self.alpha.shape[0])

    @property
    def n_traces(self) -> int:
        return int(self.decay.shape[-1])

    @classmethod
    def from_neurons(cls, neurons: Sequence[GFR]) -> GFRLayer:
        """Build a layer from single neurons of one configuration (same ``decay``, ``dt``, degree)."""
        if not neurons:
            raise ConfigError("from_neurons needs at least one GFR")
        first = neurons[0]
        for i, nrn in enumerate(neurons):
            if nrn.dt != first.dt or nrn.g.dt != first.g.dt or nrn.kappa != first.kappa:
                raise ConfigError(
                    f"neuron {i} has (dt, activation dt, kappa) = "
                    f"({nrn.dt}, {nrn.g.dt}, {nrn.kappa}), expected "
                    f"({first.dt}, {first.g.dt}, {first.kappa}): a layer shares one configuration"
                )
            if nrn.decay.shape != first.decay.shape or not np.allclose(np.asarray(nrn.decay), np.asarray(first.decay)):
                raise ConfigError(f"neuron {i} has a different decay grid (ds) from neuron 0; a layer shares lambda")
            if nrn.g.poly_coeff.shape != first.g.poly_coeff.shape:
                raise ConfigError(f"neuron {i} has activation degree {nrn.g.degree}, neuron 0 has {first.g.degree}")
        g = PolynomialActivation(
            jnp.stack([n.g.poly_coeff for n in neurons]),
            jnp.stack([n.g.b for n in neurons]),
            jnp.stack([n.g.max_current for n in neurons]),
            jnp.stack([n.g.max_firing_rate for n in neurons]),
            first.g.dt,
        )
        return cls(
            jnp.stack([n.alpha for n in neurons]),
            jnp.stack([n.beta for n in neurons]),
            first.decay,
            g,
            first.dt,
            first.kappa,
        )

    def neuron(self, i: int) -> GFR:
        """Neuron ``i`` as a standalone :class:`GFR`."""
        g = PolynomialActivation(
            self.g.poly_coeff[i], self.g.b[i], self.g.max_current[i], self.g.max_firing_rate[i], self.g.dt
        )
        return GFR(self.alpha[i], self.beta[i], self.decay, g, self.dt, self.kappa)

    def init_state(self, batch_shape: Sequence[int] = ()) -> tuple[jax.Array, jax.Array]:
        """Zero state ``(h, f_prev)`` of shapes ``(*batch_shape, N, n)`` and ``(*batch_shape, N)``."""
        dt = self.alpha.dtype
        return (
            jnp.zeros((*batch_shape, self.n_neurons, self.n_traces), dt),
            jnp.zeros((*batch_shape, self.n_neurons), dt),
        )

    def step(self, state, current):
        """One bin for all neurons: ``current`` (pA, ``(*batch, N)``) -> ``(new_state, rates (*batch, N))``."""
        return _gfr_step(self.alpha, self.beta, self.decay, self.kappa, self.g, state, current)

    def get_params(self) -> list[dict[str, Any]]:
        """One GRNN ``get_params`` dict per neuron."""
        return [self.neuron(i).get_params() for i in range(self.n_neurons)]


def _validate_current(model, current, name="current"):
    check_model(model)
    if isinstance(model, GFRLayer):
        cur = check_array(current, name, ndim=range(2, 64), finite=not is_traced(current))
        if cur.shape[-2] != model.n_neurons:
            raise ShapeError(
                f"{name} for a GFRLayer must have shape (..., N, T) with N = {model.n_neurons} neurons, "
                f"got {tuple(cur.shape)}"
            )
    else:
        cur = check_array(current, name, ndim=range(1, 64), finite=not is_traced(current))
    if cur.shape[-1] < 1:
        raise ShapeError(f"{name} must have at least one time bin on its last axis, got shape {tuple(cur.shape)}")
    # the rates (and the time-major copy of the current) are as large as the current
    check_allocation(2.0 * cur.size * jnp.dtype(model.alpha.dtype).itemsize, argument=f"the size of {name}",
                     what=f"simulating {tuple(cur.shape)} bins")
    return _as_float(cur).astype(model.alpha.dtype)


def simulate(
    model: GFR | GFRLayer,
    current: jax.Array,
    *,
    checkpoint: bool | int = False,
    record_state: bool = False,
    state: Any = None,
):
    """Firing rates of a GFR driven by ``current`` (pA), from the zero state: a :class:`GFRTrajectory`.

    Parameters
    ----------
    model
        A :class:`GFR` (``current`` of shape ``(..., T)``) or a :class:`GFRLayer` (``current`` of
        shape ``(..., N, T)``, one current per neuron). Time (bins of ``model.dt`` ms) is the
        last axis of ``current``.
    current
        Mean injected current per bin, pA. Must be finite.
    checkpoint
        Gradient checkpointing of the time scan (``False``, ``True`` or a block length), see
        :func:`spikejax.core.scan`.
    record_state
        Fill the trajectory's ``state`` with the final state ``(h, f)`` (``None`` otherwise).
    state
        Initial state (default: zeros, as in the original).

    Returns
    -------
    :class:`~spikejax.gfr.GFRTrajectory`, time-major: ``rate`` (spikes/ms) and ``current`` (pA) of
    shape ``(T, ...)`` (``current``'s shape with time moved first), ``dt = model.dt`` ms.
    ``simulate(...).rate`` is deterministic; ``jit`` and ``vmap`` of ``simulate`` return a trajectory.
    """
    from .trajectory import GFRTrajectory, _unit_axes

    cur = _validate_current(model, current)
    rates, final = _simulate_jit(model, cur, state, checkpoint)
    layer = isinstance(model, GFRLayer)
    axes = _unit_axes(cur.ndim - (2 if layer else 1), layer)
    return GFRTrajectory(jnp.moveaxis(rates, -1, 0), jnp.moveaxis(cur, -1, 0), final if record_state else None,
                         dt=float(model.dt), axes=axes)


def simulate_rates(model: GFR | GFRLayer, current: jax.Array, *, checkpoint: bool | int = False) -> jax.Array:
    """Rates (spikes/ms) with the shape of ``current`` (time last): the array of
    ``jnp.moveaxis(simulate(model, current).rate, 0, -1)``, for use inside losses and metrics."""
    cur = _validate_current(model, current)
    return _simulate_jit(model, cur, None, checkpoint)[0]


@eqx.filter_jit
def _simulate_jit(model, cur, state, checkpoint):
    xs = jnp.moveaxis(cur, -1, 0)
    if state is None:
        state = model.init_state(xs.shape[1:-1] if isinstance(model, GFRLayer) else xs.shape[1:])

    def step(carry, x):
        return model.step(carry, x)

    final, rates = scan(step, state, xs, checkpoint=checkpoint)
    return jnp.moveaxis(rates, 0, -1), final


def kernels(model: GFR | GFRLayer, length: int) -> tuple[jax.Array, jax.Array]:
    """The LN-with-feedback kernels of length ``length`` (bins).

    ``k_I(j) = (1/n) sum_i alpha_i (1 - lambda_i)**j`` (per bin, applied to pA) and
    ``k_f(j) = (kappa/n) sum_i beta_i (1 - lambda_i)**j`` (applied to ``f_{t-1-j}``), so that
    ``f_t = g(sum_j k_I(j) I_{t-j} + sum_j k_f(j) f_{t-1-j})``.

    Returns
    -------
    ``(k_I, k_f)`` each of shape ``(..., length)`` (leading neuron axes as in ``alpha``).
    """
    check_model(model)
    check_scalar(length, "length", low=1, integer=True)
    length = int(length)
    lead = int(np.prod(model.alpha.shape[:-1]))
    check_allocation((model.n_traces + 2 * lead + 2) * length * jnp.dtype(model.alpha.dtype).itemsize, argument="length",
                     what=f"kernels of {length} bins")
    j = jnp.arange(length, dtype=model.alpha.dtype)
    base = 1.0 - jax.lax.stop_gradient(model.decay)
    powers = jnp.where(j[None, :] == 0, 1.0, jnp.power(base[:, None], j[None, :]))  # (n, L); 0**0 = 1
    n = model.n_traces
    k_i = model.alpha @ powers / n
    k_f = model.kappa * (model.beta @ powers) / n
    return k_i, k_f


def linear_drive(model: GFR | GFRLayer, current: jax.Array) -> jax.Array:
    """``sum_j k_I(j) I_{t-j}`` (pA), the feedforward part of the drive, by FFT convolution.

    Exact (up to rounding) over the whole sweep: the kernel is taken as long as the input.
    ``current`` has the same shape conventions as :func:`simulate`.
    """
    cur = _validate_current(model, current)
    t = cur.shape[-1]
    k_i, _ = kernels(model, t)
    nfft = 1 << max(1, (2 * t - 1).bit_length())
    spec = jnp.fft.rfft(cur, nfft, axis=-1) * jnp.fft.rfft(k_i, nfft, axis=-1)
    return jnp.fft.irfft(spec, nfft, axis=-1)[..., :t].astype(cur.dtype)


def simulate_feedforward(model: GFR | GFRLayer, current: jax.Array) -> jax.Array:
    """Rates (spikes/ms) of a GFR **without feedback** (``beta = 0``) by FFT: ``g(k_I * I)``.

    Raises :class:`~spikejax.core.errors.ConfigError` if ``beta`` is not zero (the recursion in
    :func:`simulate` is then needed).
    """
    check_model(model)
    if not is_traced(model.beta) and np.any(np.asarray(model.beta) != 0):
        raise ConfigError(
            "simulate_feedforward needs beta = 0 (no feedback); with feedback use simulate(), got "
            f"max |beta| = {float(np.max(np.abs(np.asarray(model.beta))))}"
        )
    z = linear_drive(model, current)
    if isinstance(model, GFRLayer):
        return jnp.moveaxis(model.g(jnp.moveaxis(z, -1, 0)), 0, -1)
    return model.g(z)


def default_neuron(*, kappa: float = 1.0) -> GFR:
    """The default ("random") MNIST neuron: lambda = [1, .6321, .3935, .1813], alpha = [4, 0, 0, 0],
    beta = 0, bin size 1 step, ``g(z) = relu(tanh(z))`` (sigma = 1, gamma = 1, b = 0, coefficients
    (0, 1)). ``kappa`` defaults to 1 (``bio_units=False``) as in the newer GRNN revision."""
    dt = _float_dtype()
    g = PolynomialActivation(jnp.asarray([0.0, 1.0], dt), jnp.zeros((), dt), jnp.ones((), dt), jnp.ones((), dt), 1)
    return GFR(
        jnp.asarray([4.0, 0.0, 0.0, 0.0], dt),
        jnp.zeros(4, dt),
        jnp.asarray(DEFAULT_DECAY, dt),
        g,
        1,
        kappa,
    )


def default_layer(n_neurons: int, *, kappa: float = 1.0) -> GFRLayer:
    """A :class:`GFRLayer` of ``n_neurons`` copies of :func:`default_neuron`."""
    check_scalar(n_neurons, "n_neurons", low=1, integer=True)
    n = int(n_neurons)
    one = default_neuron(kappa=kappa)
    # alpha, beta (N, n), g's leaves (N, 2) and (N,) x 3, plus a step's state (N, n) + (N,)
    check_allocation(n * (3 * one.n_traces + 6) * jnp.dtype(one.alpha.dtype).itemsize, argument="n_neurons",
                     what=f"a layer of {n} GFR neurons")
    tile = lambda a: jnp.broadcast_to(a, (n, *a.shape))  # noqa: E731
    g = PolynomialActivation(tile(one.g.poly_coeff), tile(one.g.b), tile(one.g.max_current), tile(one.g.max_firing_rate), one.g.dt)
    return GFRLayer(tile(one.alpha), tile(one.beta), one.decay, g, one.dt, one.kappa)
