"""Mesoscopic age-structured renewal model of LIF populations with a finite-size term.

Schwalger, Deger & Gerstner (2017) without adaptation, as used by neuLVM (Wang et al. 2022), at
bin size Δ = 4 ms. ``Z[t, α] = n_α(t)/N_α`` is the fraction of population α firing in bin t.

One step (age index k = 0 … K−1; the neurons of age k fired in bin t−1−k):

* synaptic trace per presynaptic population: ``s(t) = e^{−Δα_s} s(t−1) + (1 − e^{−Δα_s}) Z(t−1)/Δ``
  (``s(0) = A0``); input ``I = J_effᵀ s + ε I_ext``;
* potential of every age bin: exact exponential integration with the input held over the bin,
  ``V ← c + (V − c) e^{−α_m Δ}``, ``c = μ + I/α_m`` (default, ``integrator="exact"``), or neuLVM's
  forward Euler ``V ← V + Δ(α_m(μ − V) + I)`` (``integrator="euler"``); ``V = 0`` for ``kΔ < t_ref``;
* hazard ``λ = exp(V − θ)`` Hz (1e-8 while refractory); ``P = 1 − e^{−λΔ}`` (exact mode; the Euler
  mode keeps neuLVM's ``P = λΔ`` below ``λΔ = 0.01``);
* survivors ``m(k) = S(k) Z(t−1−k)``, variance proxy ``v = (1 − S) m``;
* ``Z̄(t) = Σ P m + Λ (1 − Σ m)`` with ``Λ = Σ P v / Σ v``, clipped to [0, 1];
* shift the age axis: ``V(k+1) ← V(k)``, ``log S(k+1) ← log S(k) − λ(k)Δ``.

Two implementations are provided and tested against each other:

* :func:`predict` – given the *whole* latent trajectory Z (as in the likelihood), every quantity is a
  closed-form function of two linear recurrences (synaptic trace and free potential ``U``), so the
  model is evaluated for all (time, age) pairs at once in a cohort layout (no scan over time
  through the K-long age buffer). This is what the likelihood, the E-step and the M-step use.
* :func:`step` / :func:`simulate` – the classic sequential update, used for free simulation (Z drawn
  from the model) and as a reference.

Observed neurons (:func:`observed_logits`) have their own potential driven by the same input and
reset by their own spikes; ``log p(y)`` is Bernoulli with ``P = 1 − e^{−λΔ}``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import Config, option
from ..core.errors import ConfigError, check_array, check_choice, check_finite, check_range
from ..core.likelihoods import bernoulli_nll, gaussian_nll
from .params import MesoParams

__all__ = [
    "DT_MS",
    "N_AGE",
    "HIST_BINS",
    "MesoConfig",
    "ref_bins",
    "validate_Z",
    "Integrator",
    "MesoState",
    "stationary_state",
    "predict",
    "observed_logits",
    "step",
    "step_parts",
    "advance",
    "StepParts",
    "initial_age",
]

DT_MS = 4.0  # ms, meso bin
_DT_S = DT_MS / 1000.0  # s, the internal unit
N_AGE = 64  # age bins of the model (256 ms; older neurons sit in the free bin)
HIST_BINS = 250  # history window of the data (1 s)
Integrator = Literal["exact", "euler"]
_REF_LAMBDA = 1e-8  # hazard (Hz) of refractory neurons, as in neuLVM
_VAR_FLOOR_HZ = 0.1  # variance floor 0.1*Δ/N (a 0.1 Hz rate)
_LOG_LAM_MAX = 20.0  # cap of log λ (λ ≈ 4.9e8 Hz: P = 1 to machine precision at Δ ≥ 1 µs)


def _hazard(V: jax.Array, theta: jax.Array) -> jax.Array:
    """Escape rate ``λ = exp(V − θ)`` in Hz, with the exponent capped at ``_LOG_LAM_MAX``.

    The cap changes no probability (``1 − e^{−λΔ}`` is already 1) but keeps λ finite in float32
    for parameters far from the data (the M-step starts anywhere in the box), so gradients stay
    finite instead of ``inf · 0 = NaN``.
    """
    return jnp.exp(jnp.minimum(V - theta, _LOG_LAM_MAX))


def _safe_div(num: jax.Array, den: jax.Array, fallback: jax.Array | float = 0.0) -> jax.Array:
    """``num / den`` where ``den`` is above √tiny, else ``fallback`` (finite value *and* gradient)."""
    ok = den > math.sqrt(float(jnp.finfo(den.dtype).tiny))
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), fallback)


@dataclasses.dataclass(frozen=True)
class MesoConfig(Config):
    """Static options of the mesoscopic model (hashable; changing them recompiles).

    Attributes
    ----------
    dt : float
        Bin size Δ in ms (default 4 ms; the model computes in s internally, :attr:`dt_s`).
    n_age : int
        Age bins of the refractory-density buffer (default 64 = 256 ms).
    free_bin : bool
        Keep neurons older than ``n_age`` bins in a free bin (Schwalger 2017; default True).
        ``n_age=250, free_bin=False`` is neuLVM's layout (older neurons dropped and covered by
        the finite-size term only).
    integrator : {"exact", "euler"}
        Exact exponential membrane update (default) or neuLVM's forward Euler at Δ.
    unroll : int
        ``lax.scan`` unroll factor of the time loop (speed only).
    """

    dt: float = option(DT_MS, gt=0.0, unit="ms", help="bin size Δ of the mesoscopic model")
    n_age: int = option(N_AGE, ge=2, help="age bins of the refractory-density buffer")
    free_bin: bool = option(True, help="keep neurons older than n_age bins in a free bin")
    integrator: str = option("exact", choices=("exact", "euler"), help="membrane update: exact or forward Euler")
    unroll: int = option(1, ge=1, help="lax.scan unroll factor (speed only)")

    @property
    def dt_s(self) -> float:
        """Bin size in s (the unit of the internal computation)."""
        return float(self.dt) / 1000.0


def ref_bins(params: MesoParams, dt: float) -> int:
    """Number of refractory age bins: ``#{k : kΔ < t_ref}`` (1 for t_ref = Δ = 4 ms)."""
    return max(int(math.ceil(params.t_ref_s / dt - 1e-9)), 0)


def _decay(params: MesoParams, dt: float, integrator: str) -> jax.Array:
    """Per-bin decay factor ``a`` of the membrane: ``e^{−α_m Δ}`` (exact) or ``1 − α_m Δ`` (Euler)."""
    check_choice(integrator, "integrator", ("exact", "euler"))
    if integrator == "exact":
        return jnp.exp(-params.amem * dt)
    return 1.0 - params.amem * dt


def _hazard_prob(lam: jax.Array, dt: float, integrator: str = "exact") -> jax.Array:
    """Firing probability in a bin: ``1 − e^{−λΔ}`` (exact mode, smooth), or neuLVM's
    ``λΔ`` below 0.01 and ``1 − e^{−λΔ}`` above (Euler/fidelity mode; a 5e-5 jump at 0.01)."""
    x = lam * dt
    if integrator == "euler":
        return jnp.where(x < 0.01, x, -jnp.expm1(-jnp.maximum(x, 0.01)))
    return -jnp.expm1(-x)


def _linear_recurrence(a: jax.Array, b: jax.Array) -> jax.Array:
    """``x[t] = a[t] * x[t-1] + b[t]`` along axis 0 with ``x[-1] = 0`` (a small ``lax.scan``)."""
    a = jnp.broadcast_to(a, b.shape)

    def body(x, ab):
        x = ab[0] * x + ab[1]
        return x, x

    return jax.lax.scan(body, jnp.zeros_like(b[0]), (a, b))[1]


# ----------------------------------------------------------------------------------------------
# stationary initial state
# ----------------------------------------------------------------------------------------------


class MesoState(NamedTuple):
    """State of the sequential mesoscopic model (all (M, K) except ``syn`` (M,) and ``t``).

    ``V[:, k]`` is the potential (Δu) and ``logS[:, k]`` the log survival of the neurons that fired
    in bin t−1−k; ``Zhist[:, k] = Z(t−1−k)``; ``syn`` the synaptic trace (Hz); ``t`` the step.
    """

    V: jax.Array
    logS: jax.Array
    Zhist: jax.Array
    syn: jax.Array
    x: jax.Array
    z: jax.Array
    Vf: jax.Array
    t: jax.Array


def _free_potential(params: MesoParams, A0: jax.Array) -> jax.Array:
    """``h = μ + (J_effᵀ A0)/α_m`` in Δu: the stationary potential at constant rates A0 (Hz)."""
    return params.mu + jnp.einsum("...ba,...b->...a", params.J_eff, A0) / params.amem


def stationary_state(
    params: MesoParams, A0: jax.Array, *, n_age: int = N_AGE, dt: float = DT_MS, sub: int = 4
) -> tuple[jax.Array, jax.Array]:
    """Stationary potentials and log-survival per age bin for constant rates ``A0`` (Hz), bins of ``dt`` ms.

    ``V(k) = h (1 − e^{−α_m kΔ})`` (0 for ``kΔ < t_ref``) and
    ``log S(k) = −∫_0^{kΔ} λ(V(r)) dr``, integrated with the trapezoid rule on a grid of Δ/``sub``
    (1 ms by default, as neuLVM). Returns ``(V, logS)``, each of shape (M, n_age).
    """
    return _stationary_state(params, A0, n_age=n_age, dt=float(dt) / 1000.0, sub=sub)


def _stationary_state(params, A0, *, n_age: int, dt: float, sub: int = 4):
    """:func:`stationary_state` with ``dt`` in s."""
    h = _free_potential(params, A0)[:, None]  # (M, 1)
    amem, theta = params.amem[:, None], params.theta[:, None]
    k = jnp.arange(n_age, dtype=h.dtype)[None, :]
    V = jnp.where(k * dt < params.t_ref_s - 1e-12, 0.0, h * (1.0 - jnp.exp(-amem * k * dt)))
    dr = dt / sub
    r = jnp.arange((n_age - 1) * sub + 1, dtype=h.dtype)[None, :] * dr
    Vr = h * (1.0 - jnp.exp(-amem * r))
    lam = jnp.where(r < params.t_ref_s - 1e-12, 0.0, _hazard(Vr, theta))
    cum = jnp.concatenate([jnp.zeros_like(lam[:, :1]), jnp.cumsum(0.5 * (lam[:, 1:] + lam[:, :-1]) * dr, axis=1)], 1)
    logS = -cum[:, ::sub]
    return V, logS


def initial_age(y_hist: jax.Array) -> jax.Array:
    """Bins since the last spike in the history window, per observed neuron (0 when none: neuLVM's quirk).

    ``y_hist`` has shape (K, M, n); returns an int array (M, n).
    """
    K = y_hist.shape[0]
    rev = jnp.flip(y_hist, axis=0) > 0
    return jnp.where(jnp.any(rev, axis=0), jnp.argmax(rev, axis=0), 0).astype(jnp.int32) * (K > 0)


# ----------------------------------------------------------------------------------------------
# parallel (whole-trajectory) evaluation
# ----------------------------------------------------------------------------------------------


def _drive(params, Z, A0, I_ext, dt, integrator):
    """Synaptic trace, input and free potential U for the fitted window.

    Returns ``U`` (T, M) with ``U[t] = Σ_{j<=t} a^{t-j} (1-a) c_j``, the decay ``a`` and the target
    potential ``c = μ + I/α_m`` (T, M) of every bin.
    """
    T, M = Z.shape
    e = jnp.exp(-params.asyn * dt)
    # s[0] = A0; s[t] = e s[t-1] + (1-e) Z[t-1]/dt
    b = jnp.concatenate([A0[None, :], (1.0 - e) * Z[:-1] / dt], axis=0)
    a_syn = jnp.concatenate([jnp.zeros((1, M), Z.dtype), jnp.broadcast_to(e, (T - 1, M))], axis=0)
    syn = _linear_recurrence(a_syn, b)
    I = syn @ params.J_eff
    if I_ext is not None:
        I = I + params.eps * I_ext
    a = _decay(params, dt, integrator)
    c = params.mu + I / params.amem
    U = _linear_recurrence(a, (1.0 - a) * c)
    return U, a, c


def _clipped_rows(X: jax.Array, idx: np.ndarray) -> jax.Array:
    """``X[clip(idx, 0, len(X) − 1)]`` for a static run of consecutive indices, by slices and
    broadcasts (no gather, so the gradient is no scatter)."""
    n = X.shape[0]
    lo_i, hi_i = int(idx[0]), int(idx[-1])
    assert np.all(np.diff(idx) == 1)
    parts = []
    if lo_i < 0:
        parts.append(jnp.broadcast_to(X[:1], (min(-lo_i, len(idx)),) + X.shape[1:]))
    a, b = max(lo_i, 0), min(hi_i, n - 1)
    if a <= b:
        parts.append(X[a : b + 1])
    if hi_i > n - 1:
        parts.append(jnp.broadcast_to(X[-1:], (min(hi_i - (n - 1), len(idx)),) + X.shape[1:]))
    return jnp.concatenate(parts, 0)


class LossParts(NamedTuple):
    """The neuLVM objective ``total = L_y + L_Z`` (per population and bin, see :func:`_loss_parts`)."""

    total: jax.Array
    L_y: jax.Array
    L_Z: jax.Array


def _population_nll(
    params: MesoParams, Z: jax.Array, zbar: jax.Array, *, dt: float = _DT_S, reduction: str = "sum"
) -> jax.Array:
    """Gaussian NLL of Z given Z̄, variance ``Z̄/N + 0.1Δ/N`` (core :func:`gaussian_nll`)."""
    N = params.N_array
    var = zbar / N + _VAR_FLOOR_HZ * dt / N
    return gaussian_nll(Z, zbar, var=var, reduction=reduction)


def _observed_nll(y: jax.Array, logits: jax.Array, *, reduction: str = "sum") -> jax.Array:
    """Bernoulli NLL of the observed spikes (core :func:`bernoulli_nll`)."""
    return bernoulli_nll(y, logits=logits, reduction=reduction)


def _loss_parts(
    params: MesoParams,
    Z: jax.Array,
    y: jax.Array,
    A0: jax.Array,
    age0: jax.Array,
    I_ext: jax.Array | None = None,
    cfg: MesoConfig = MesoConfig(),
) -> LossParts:
    """The neuLVM objective ``L = L_y + L_Z`` and its parts (pure, differentiable in ``params`` and ``Z``).

    The public form is :func:`spikejax.meso.loss` (``loss(model, data)``).

    ``L_Z`` is the Gaussian NLL of the population activity and ``L_y`` the Bernoulli NLL of the
    observed spikes (summed over neurons), both averaged over populations and bins:
    ``L = −log p(y, Z | Θ) / (M·T)`` up to a constant. Shapes: Z (T, M), y (T, M, n),
    A0 (M,) Hz, age0 (M, n) bins. No validation.
    """
    T, M = Z.shape
    zbar, U = _predict(params, Z, A0, I_ext, cfg)
    logits = observed_logits(params, Z, A0, y, age0, I_ext, cfg, U=U)
    L_Z = _population_nll(params, Z, zbar, dt=cfg.dt_s) / (M * T)
    L_y = _observed_nll(y, logits) / (M * T)
    return LossParts(L_y + L_Z, L_y, L_Z)


# ----------------------------------------------------------------------------------------------
# sequential model: one bin at a time (likelihood, E-step, free simulation)
# ----------------------------------------------------------------------------------------------


def init_state(params: MesoParams, A0: jax.Array, config: MesoConfig = MesoConfig()) -> MesoState:
    """Stationary start for constant rates ``A0`` (Hz): history ``Z = A0·Δ``, synaptic trace ``s = A0``.

    Age bins take V and log S from :func:`stationary_state`; with ``free_bin`` the stationary mass of
    the ages ``n_age … 249`` (the rest of neuLVM's 1-s window) starts in the free bin.
    """
    cfg = config
    dt, K = cfg.dt_s, cfg.n_age
    H = max(K + 1, HIST_BINS)
    V, logS = _stationary_state(params, A0, n_age=H, dt=dt)
    z0 = (A0 * dt)[:, None]
    Zhist = jnp.broadcast_to(z0, (params.M, K)).astype(V.dtype)
    if cfg.free_bin:
        S_old = jnp.exp(logS[:, K:HIST_BINS]) if K < HIST_BINS else jnp.zeros((params.M, 0), V.dtype)
        x = (z0 * S_old).sum(1)
        z = (z0 * S_old * (1.0 - S_old)).sum(1)
        Vf = V[:, K]
    else:
        x = z = Vf = jnp.zeros((params.M,), V.dtype)
    return MesoState(
        V=V[:, :K], logS=logS[:, :K], Zhist=Zhist, syn=jnp.asarray(A0, V.dtype), x=x, z=z, Vf=Vf,
        t=jnp.asarray(0, jnp.int32),
    )


class StepParts(NamedTuple):
    """What one bin computes before ``Z(t)`` is known: updated potentials ``V`` (M, K), hazards
    ``lam`` (M, K), synaptic trace ``syn`` (M,), free-bin potential ``Vf`` and probability ``Pf`` (M,)."""

    V: jax.Array
    lam: jax.Array
    syn: jax.Array
    Vf: jax.Array
    Pf: jax.Array


def step_parts(params: MesoParams, state: MesoState, I_ext_t: jax.Array | None = None,
               cfg: MesoConfig = MesoConfig()) -> tuple[jax.Array, StepParts]:
    """First half of :func:`step`: the expected fraction firing ``Z̄(t)`` (M,) and the
    :class:`StepParts` that :func:`advance` needs once ``Z(t)`` is drawn (arrays only, so a particle
    filter can resample them)."""
    K = state.V.shape[1]
    dt, free_bin = cfg.dt_s, cfg.free_bin
    ref = ref_bins(params, dt)
    e = jnp.exp(-params.asyn * dt)
    syn = jnp.where(state.t > 0, e * state.syn + (1.0 - e) * state.Zhist[:, 0] / dt, state.syn)
    I = syn @ params.J_eff
    if I_ext_t is not None:
        I = I + params.eps * I_ext_t
    a = _decay(params, dt, cfg.integrator)
    c = params.mu + I / params.amem
    refractory = (jnp.arange(K) < ref)[None, :]
    V = jnp.where(refractory, 0.0, a[:, None] * state.V + ((1.0 - a) * c)[:, None])
    lam = jnp.where(refractory, _REF_LAMBDA, _hazard(jnp.where(refractory, 0.0, V), params.theta[:, None]))
    P = _hazard_prob(lam, dt, cfg.integrator)
    S = jnp.exp(state.logS)
    m = S * state.Zhist
    v = (1.0 - S) * m
    sum_m, sum_pm, sum_v, sum_pv = m.sum(1), (P * m).sum(1), v.sum(1), (P * v).sum(1)
    if free_bin:
        Vf = a * state.Vf + (1.0 - a) * c
        Pf = _hazard_prob(_hazard(Vf, params.theta), dt, cfg.integrator)
        sum_m, sum_pm = sum_m + state.x, sum_pm + Pf * state.x
        sum_v, sum_pv = sum_v + state.z, sum_pv + Pf * state.z
    else:
        Vf, Pf = state.Vf, jnp.zeros_like(state.Vf)
    Lam = _safe_div(sum_pv, sum_v)
    zbar = jnp.clip(sum_pm + Lam * (1.0 - sum_m), 0.0, 1.0)
    return zbar, StepParts(V=V, lam=lam, syn=syn, Vf=Vf, Pf=Pf)


def advance(state: MesoState, parts: StepParts, Z_t: jax.Array, cfg: MesoConfig = MesoConfig()) -> MesoState:
    """Second half of :func:`step`: append ``Z(t)`` and move the age axis by one bin."""
    V, lam, Vf, Pf = parts.V, parts.lam, parts.Vf, parts.Pf
    zero = jnp.zeros_like(V[:, :1])
    logS_new = state.logS - lam * cfg.dt_s
    if cfg.free_bin:
        S_e = jnp.exp(logS_new[:, -1])
        m_e = S_e * state.Zhist[:, -1]
        kept = (1.0 - Pf) * state.x
        x = kept + m_e
        z = (1.0 - Pf) ** 2 * state.z + Pf * state.x + (1.0 - S_e) * m_e
        Vf_new = _safe_div(kept * Vf + m_e * V[:, -1], x, Vf)
    else:
        x, z, Vf_new = state.x, state.z, state.Vf
    return MesoState(
        V=jnp.concatenate([zero, V[:, :-1]], 1),
        logS=jnp.concatenate([zero, logS_new[:, :-1]], 1),
        Zhist=jnp.concatenate([Z_t[:, None], state.Zhist[:, :-1]], 1),
        syn=parts.syn, x=x, z=z, Vf=Vf_new, t=state.t + 1,
    )


def step(
    params: MesoParams,
    state: MesoState,
    I_ext_t: jax.Array | None = None,
    config: MesoConfig = MesoConfig(),
):
    """One bin of the mesoscopic model (:func:`step_parts` then :func:`advance`).

    Returns ``(zbar, advance)``: the expected fraction firing ``Z̄(t)`` (M,) and a function
    ``advance(Z_t) -> MesoState`` that appends the realised (or latent) ``Z(t)`` and moves the
    age axis by one bin (``advance.syn`` is the bin's synaptic trace).
    """
    cfg = config
    zbar, parts = step_parts(params, state, I_ext_t, cfg)

    def adv(Z_t):
        return advance(state, parts, Z_t, cfg)

    adv.syn = parts.syn
    return zbar, adv


def predict(
    params: MesoParams,
    Z: jax.Array,
    A0: jax.Array,
    I_ext: jax.Array | None = None,
    config: MesoConfig = MesoConfig(),
) -> jax.Array:
    """Expected activity ``Z̄(t)`` (T, M) given the latent trajectory Z (teacher forcing).

    Parameters
    ----------
    params
        Model parameters.
    Z
        (T, M) fraction of each population firing per bin of Δ (spikes/neuron/bin). The history
        before the window is the constant ``A0·Δ`` (neuLVM's stationary start).
    A0
        (M,) initial rates in Hz (stationary state, synaptic trace).
    I_ext
        Optional (T, M) external input in Δu/s.
    config
        Static options (:class:`MesoConfig`: bin size, age bins, free bin, integrator).
    """
    from .params import MesoParams

    if not isinstance(params, MesoParams):
        raise TypeError(f"params must be a MesoParams, got {type(params).__name__}")
    params.validate()
    if not isinstance(config, MesoConfig):
        raise ConfigError(f"config must be a MesoConfig, got {type(config).__name__}")
    dims = {"M": params.M}
    Z = check_array(Z, "Z", ("T", "M"), dims=dims, low=0.0, high=1.0)
    A0 = check_array(A0, "A0", ("M",), dims=dims, low=0.0)
    if I_ext is not None:
        I_ext = check_array(I_ext, "I_ext", ("T", "M"), dims=dims)
    return _predict_jit(params, Z, A0, I_ext, cfg=config)[0]


@functools.partial(jax.jit, static_argnames=("cfg",))
def _predict_jit(params, Z, A0, I_ext, *, cfg):
    return _predict(params, Z, A0, I_ext, cfg)


def _predict(params, Z, A0, I_ext, cfg):
    """Z̄ and the free potential ``U(t) = a U(t−1) + (1 − a) c(t)`` (for the observed neurons).

    Teacher-forced evaluation in the cohort layout: every (cohort, age) entry of the refractory
    density is a closed-form function of U, the survival is a cumulative sum along each cohort,
    and only the free bin (three numbers per population) needs a sequential scan. Equal to
    :func:`_predict_sequential` (the bin-by-bin :func:`step`) to rounding, and several times faster
    to evaluate and differentiate.
    """
    T, M = Z.shape
    K, dt = cfg.n_age, cfg.dt_s
    dtype = Z.dtype
    ref = ref_bins(params, dt)
    U, a, c = _drive(params, Z, A0, I_ext, dt, cfg.integrator)
    st = init_state(params, A0, cfg)
    V_stat, logS_stat = st.V.T, st.logS.T  # (K, M): stationary potential / log-survival per initial age
    loga = jnp.log(a)
    # cohort i = (bin of the spike) + K, i.e. spike bin ci = i - K in [-K, T-2]; age k in [0, K); time t = ci + 1 + k
    C = T + K - 1
    # static index bookkeeping (numpy: constants, so no gathers in the program)
    ci = np.arange(C)[:, None] - K
    kk = np.arange(K)[None, :]
    tt = ci + 1 + kk  # (C, K)
    valid = jnp.asarray(((tt >= 0) & (tt <= T - 1))[..., None])
    k0 = np.maximum(-1 - ci, 0)  # age at t = 0 of the cohorts of the initial state (0 for later cohorts)
    entered = jnp.asarray((k0 < ref)[..., None])  # refractory at the start of the window (or later)
    # U at time t = i - K + 1 + k for every (cohort i, age k): sliding windows of the padded U by a
    # broadcast-pad-reshape shear (row k of the (K, L + 1) reshape starts at U_pad[k]); no gather
    L = T + 2 * K - 2
    U_pad = jnp.concatenate([jnp.broadcast_to(U[:1], (K - 1, M)), U, jnp.broadcast_to(U[-1:], (K - 1, M))], 0)
    sheared = jnp.broadcast_to(U_pad[None], (K, L, M)).reshape(K * L, M)
    sheared = jnp.concatenate([sheared, jnp.zeros((K, M), dtype)], 0).reshape(K, L + 1, M)
    U_t = jnp.moveaxis(sheared[:, :C], 0, 1)  # (C, K, M)
    # U at the cohort's last refractory bin, U_prev[clip(ci + ref + 1, 0, T)] with U_prev[j] = U[j - 1], U[-1] = 0
    U_prev = jnp.concatenate([jnp.zeros((1, M), dtype), U], axis=0)
    U_s = _clipped_rows(U_prev, np.arange(C) - K + ref + 1)[:, None, :]
    a_in = jnp.exp(jnp.asarray(np.maximum(np.arange(K) - ref + 1, 0), dtype)[:, None] * loga)  # (K, M)
    V_in = U_t - a_in[None] * U_s
    # cohorts of the initial state are at most K - 1 bins into the window, so t + 1 <= K there
    a_old = jnp.exp(jnp.asarray(np.clip(tt + 1, 0, K), dtype)[..., None] * loga)  # (C, K, M)

    def initial_rows(X):
        """``X[min(k0, K - 1)]`` per cohort: cohort i < K - 1 has initial age K - 1 - i, later ones 0."""
        return jnp.concatenate([X[:0:-1], jnp.broadcast_to(X[:1], (C - K + 1, M))], 0)[:, None, :]

    V_old = U_t + a_old * initial_rows(V_stat)
    refr = jnp.asarray((kk < ref)[..., None])
    V = jnp.where(refr, 0.0, jnp.where(entered, V_in, V_old))
    lam = jnp.where(refr, _REF_LAMBDA, _hazard(jnp.where(refr, 0.0, V), params.theta))
    lam = jnp.where(valid, lam, 0.0)
    P = _hazard_prob(lam, dt, cfg.integrator)
    cum = jnp.cumsum(lam * dt, axis=1)  # inclusive, along each cohort
    base = initial_rows(logS_stat)  # (C, 1, M); 0 for cohorts born in the window
    logS = base - (cum - lam * dt)  # log survival at the start of the bin
    z0 = (A0 * dt).astype(dtype)
    Zc = jnp.concatenate([jnp.broadcast_to(z0, (K, M)), Z[:-1]], axis=0)[:, None, :]  # Z of each cohort
    S = jnp.exp(logS)
    m = jnp.where(valid, S * Zc, 0.0)
    v = (1.0 - S) * m
    def age_sum(X):
        """Σ_k X[t - 1 - k + K, k] for every t: the cohort layout sheared into (age, time) by a
        pad-and-reshape (row k' = K-1-k of the (K, C+1) reshape starts at cohort k'), no gather."""
        Xr = jnp.moveaxis(X[:, ::-1, :], 1, 0).reshape(K * C, M)
        Xs = jnp.concatenate([Xr, jnp.zeros((K, M), X.dtype)], 0).reshape(K, C + 1, M)
        return Xs[:, :T, :].sum(axis=0)

    sum_m, sum_pm, sum_v, sum_pv = age_sum(m), age_sum(P * m), age_sum(v), age_sum(P * v)
    if cfg.free_bin:
        # the cohort leaving the buffer at time t is cohort index t, at age K - 1
        V_last = V[:T, K - 1]
        S_e = jnp.exp(base[:T, 0] - cum[:T, K - 1])
        m_e = S_e * Zc[:T, 0]

        def free(carry, inp):
            x, z, Vf = carry
            c_t, Vl, Se, me = inp
            Vf1 = a * Vf + (1.0 - a) * c_t
            Pf = _hazard_prob(_hazard(Vf1, params.theta), dt, cfg.integrator)
            kept = (1.0 - Pf) * x
            x_new = kept + me
            z_new = (1.0 - Pf) ** 2 * z + Pf * x + (1.0 - Se) * me
            Vf_new = _safe_div(kept * Vf1 + me * Vl, x_new, Vf1)
            return (x_new, z_new, Vf_new), (Pf, x, z)

        _, (Pf, x, z) = jax.lax.scan(free, (st.x, st.z, st.Vf), (c, V_last, S_e, m_e))
        sum_m, sum_pm = sum_m + x, sum_pm + Pf * x
        sum_v, sum_pv = sum_v + z, sum_pv + Pf * z
    Lam = _safe_div(sum_pv, sum_v)
    zbar = jnp.clip(sum_pm + Lam * (1.0 - sum_m), 0.0, 1.0)
    return zbar, U


def _predict_sequential(params, Z, A0, I_ext, cfg):
    """Reference for :func:`_predict`: the bin-by-bin :func:`step` in a ``lax.scan``."""
    state = init_state(params, A0, cfg)
    a = _decay(params, cfg.dt_s, cfg.integrator)

    def body(carry, x):
        st, U = carry
        Zt, It = x
        zbar, adv = step(params, st, It, cfg)
        syn = adv.syn
        I = syn @ params.J_eff
        if It is not None:
            I = I + params.eps * It
        U = a * U + (1.0 - a) * (params.mu + I / params.amem)
        return (adv(Zt), U), (zbar, U)

    _, (zbar, U) = jax.lax.scan(body, (state, jnp.zeros_like(A0)), (Z, I_ext), unroll=cfg.unroll)
    return zbar, U


def observed_logits(
    params: MesoParams,
    Z: jax.Array,
    A0: jax.Array,
    y: jax.Array,
    age0: jax.Array,
    I_ext: jax.Array | None = None,
    config: MesoConfig = MesoConfig(),
    *,
    U: jax.Array | None = None,
) -> jax.Array:
    """Bernoulli logits ``log(e^{λΔ} − 1)`` of the observed neurons' spikes, shape (T, M, n).

    Each observed neuron receives its population's input, is reset to 0 by its own spikes
    ``y`` (T, M, n) and starts from the stationary potential at its initial age ``age0`` (M, n)
    in bins. ``P(y = 1) = 1 − e^{−λΔ}``, ``λ = exp(V − θ)`` Hz (1e-8 Hz while refractory).
    The potential is the closed form of the same membrane update as :func:`step`:
    ``V(t) = U(t) − a^{k−r+1} U(t−k+r−1)`` for a neuron of age k (r refractory bins), with the
    free potential ``U(t) = a U(t−1) + (1 − a)(μ + I(t)/α_m)``.
    """
    cfg = config
    T, M = Z.shape
    dt = cfg.dt_s
    ref = ref_bins(params, dt)
    dtype = Z.dtype
    if U is None:
        U, _, _ = _drive(params, Z, A0, I_ext, dt, cfg.integrator)
    a = _decay(params, dt, cfg.integrator)
    loga = jnp.log(a)[None, :, None]
    h = _free_potential(params, A0)[None, :, None]
    t = jnp.arange(T)[:, None, None]
    # cohort index d = (bin of the last spike before t) + 1, or -age0 when none yet
    never = -(1 << 30)
    spk = jnp.where(y > 0, t + 1, never)
    last = jax.lax.cummax(spk, axis=0)
    last = jnp.concatenate([jnp.full((1,) + last.shape[1:], never, last.dtype), last[:-1]], axis=0)
    d = jnp.where(last > never // 2, last, -age0[None].astype(last.dtype))
    k = t - d  # age in bins at step t
    U_prev = jnp.concatenate([jnp.zeros((1, M), dtype), U], axis=0)  # U_prev[i] = U[i-1]
    gidx = jnp.clip(d + ref, 0, T)
    Ud = jnp.take_along_axis(jnp.broadcast_to(U_prev[:, :, None], (T + 1, M, y.shape[-1])), gidx, axis=0)
    Ut = U[:, :, None]
    V_in = Ut - jnp.exp((k - ref + 1).astype(dtype) * loga) * Ud
    j0 = jnp.maximum(-d, 0).astype(dtype)  # initial age (only used where d <= 0; clamped so the unused branch stays finite)
    V0 = jnp.where(j0 * dt < params.t_ref_s - 1e-12, 0.0, h * (1.0 - jnp.exp(-params.amem[None, :, None] * j0 * dt)))
    V_old = Ut + jnp.exp((t + 1).astype(dtype) * loga) * V0
    V = jnp.where(d >= 1 - ref, V_in, V_old)
    log_p1, log_p0 = spike_log_probs(V, k < ref, params.theta[None, :, None], dt)
    return log_p1 - log_p0


def spike_log_probs(V: jax.Array, refractory: jax.Array, theta: jax.Array, dt: float):
    """``(log P(spike), log P(no spike))`` in a bin for potential V: ``P = 1 − e^{−λΔ}``, ``λ = e^{V−θ}``.

    Refractory neurons have ``λ = 1e-8`` Hz (neuLVM). Stable for small λΔ (``log(1 − e^{−x})``
    expanded below 1e-4) and, with the capped exponent, for large potentials.
    """
    log_x = jnp.where(refractory, math.log(_REF_LAMBDA), jnp.minimum(V - theta, _LOG_LAM_MAX)) + math.log(dt)
    x = jnp.exp(log_x)
    log_p1 = jnp.where(x < 1e-4, log_x - 0.5 * x, jnp.log(-jnp.expm1(-jnp.maximum(x, 1e-4))))
    return log_p1, -x


def validate_Z(Z, name: str = "Z", M: int | None = None) -> jax.Array:
    """Check a latent/population trajectory: (T, M), finite, within [0, 1]."""
    Z = check_array(Z, name, (None, M), ndim=2)
    check_finite(Z, name)
    check_range(Z, name, low=0.0, high=1.0)
    if Z.shape[0] < 2:
        raise ConfigError(f"{name} needs at least 2 bins, got shape {tuple(Z.shape)}")
    return Z


def as_numpy(x) -> np.ndarray:
    return np.asarray(jax.device_get(x))
