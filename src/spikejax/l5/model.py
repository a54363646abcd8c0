"""The L5 model: continuous parameters (:class:`L5Params`), static structure (:class:`Spec`) and the
sampled networks, bundled as :class:`L5Model` (what :func:`~spikejax.l5.simulate` runs).
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..core.errors import ConfigError, check_array
from ..core.random import check_key
from .config import L5Config
from .dynamics import PHASE_MODES, neuron_mask
from .network import L5Network, build_network

__all__ = ["L5Params", "Spec", "L5Model", "make_spec", "build_model", "replace_params"]


class L5Params(eqx.Module):
    """Continuous parameters of a run (array leaves: vary them without recompiling).

    Attributes
    ----------
    amplitude : (4,)   input amplitudes [CS, CC, PV, SST]
    steady : (4,)      steady-input flags (0/1 as floats)
    tau : (4,)         rate time constant per type (ms)
    tau_learn, tau_threshold : ()  learning and threshold time constants
    spatialF, temporalF, spatialPhase : ()  grating parameters (temporalF in rad/step)
    phi_lo, phi_hi : ()  bounds of the clipped ReLU
    w_gain : (4, 4)    type-level gains on W (rows = presynaptic type), 1 = unchanged
    degree : (D,)      directions in degrees
    thal_g_orth, thal_g_pref : ()  thalamic gains
    """

    amplitude: Float[Array, " 4"]
    steady: Float[Array, " 4"]
    tau: Float[Array, " 4"]
    tau_learn: Float[Array, ""]
    tau_threshold: Float[Array, ""]
    spatialF: Float[Array, ""]
    temporalF: Float[Array, ""]
    spatialPhase: Float[Array, ""]
    phi_lo: Float[Array, ""]
    phi_hi: Float[Array, ""]
    w_gain: Float[Array, "4 4"]
    degree: Float[Array, " D"]
    thal_g_orth: Float[Array, ""]
    thal_g_pref: Float[Array, ""]

    @classmethod
    def from_config(cls, cfg: L5Config) -> L5Params:
        """Array leaves from a config (current default float dtype)."""
        f = lambda v: jnp.asarray(np.asarray(v, dtype=float), dtype=jnp.result_type(float))  # noqa: E731
        tau = np.broadcast_to(np.asarray(cfg.tau, dtype=float), (4,))
        return cls(
            amplitude=f(cfg.amplitude),
            steady=f(cfg.steady_input),
            tau=f(tau),
            tau_learn=f(cfg.tau_learn),
            tau_threshold=f(cfg.tau_threshold),
            spatialF=f(cfg.spatialF),
            temporalF=f(cfg.temporalF),
            spatialPhase=f(cfg.spatialPhase),
            phi_lo=f(cfg.phi_lo),
            phi_hi=f(cfg.phi_hi),
            w_gain=f(np.ones((4, 4))),
            degree=f(np.asarray(cfg.degree, dtype=float).reshape(-1)),
            thal_g_orth=f(cfg.thal_scalar_orthogonal),
            thal_g_pref=f(cfg.thal_scalar_preferred),
        )

    def validate(self, dt: float | None = None) -> L5Params:
        """Check shapes and values of concrete parameters (skipped under tracing)."""
        for name, shape in (("amplitude", (4,)), ("steady", (4,)), ("tau", (4,)), ("w_gain", (4, 4))):
            check_array(getattr(self, name), f"params.{name}", shape)
        check_array(self.degree, "params.degree", (None,))
        for name in ("tau_learn", "tau_threshold", "spatialF", "temporalF", "spatialPhase", "phi_lo", "phi_hi"):
            check_array(getattr(self, name), f"params.{name}", ())
        if not eqx.is_array(self.tau) or isinstance(self.tau, jax.core.Tracer):
            return self
        t = np.asarray(self.tau)
        if np.any(t <= 0):
            raise ConfigError(f"params.tau must be > 0, got {t.tolist()}")
        if dt is not None and np.any(dt >= t):
            raise ConfigError(f"params.tau must be > dt (dt must be < tau), got dt={dt} and tau={t.tolist()}")
        if float(self.tau_learn) <= 0 or float(self.tau_threshold) <= 0:
            raise ConfigError("params.tau_learn and params.tau_threshold must be > 0")
        return self


@dataclass(frozen=True)
class Spec:
    """Static structure of a simulation (changing it recompiles)."""

    N: tuple
    dt: float
    n_steps: int
    block: int
    n_before: int
    rule: str
    variant: str
    integrator: str
    nonlinearity: str
    gamma: float
    smooth_beta: float
    neurons: str
    phase_modes: tuple
    eval_steps: int
    capacity: int
    stimulus: str
    thal_fraction: tuple
    thal_degree_index: int
    threshold_filter: str
    record_weights: bool = True
    record_states: bool = False
    remat: bool = False
    dense_weights: bool = False

    @property
    def low_rank(self) -> bool:
        """Whether W is carried as W0 + A^T Q (see :func:`simulate`) instead of a dense N x N matrix."""
        if self.dense_weights or not self.learning or self.rule not in ("BCM", "Slide_BCM"):
            return False
        if self.variant != "faithful" or self.integrator != "forward_euler":
            return False
        return _rank1(neuron_mask(self.N, self.neurons, self.variant)) is not None

    @property
    def n_blocks(self) -> int:
        return self.n_steps // self.block

    @property
    def acc_steps(self) -> int:
        return min(25 * self.block, self.n_steps)

    @property
    def learning(self) -> bool:
        """Whether W can change at all (the faithful RK4 clips W even for rule 'None')."""
        if self.n_before >= self.n_steps:
            return False
        if self.rule != "None":
            return True
        return self.integrator == "runge_kutta" and self.variant == "faithful"


def _rank1(mask: np.ndarray):
    """(row, col) 0/1 vectors with mask == outer(row, col), or None when the mask is not of that form."""
    rows = np.any(mask != 0, axis=1)
    if not rows.any():
        return rows.astype(float), np.zeros(mask.shape[1])
    col = (mask[int(np.argmax(rows))] != 0).astype(float)
    if np.array_equal(np.outer(rows, col), mask):
        return rows.astype(float), col
    return None


def make_spec(
    config: L5Config,
    *,
    record_weights: bool = True,
    record_states: bool = False,
    remat: bool = False,
    capacity: int | None = None,
    n_steps: int | None = None,
    dense_weights: bool = False,
) -> Spec:
    """The static half of a config. ``capacity`` (ring-buffer length) defaults to the window length
    capped at n_steps + 1; pass ``n_steps + 1`` when ``tau_threshold`` will vary (search, tuning).
    ``dense_weights=True`` forces the dense N x N weight carry even where the low-rank form applies
    (for checks; same results up to rounding)."""
    steps = config.n_steps if n_steps is None else int(n_steps)
    cap = min(config.window_length, steps + 1) if capacity is None else int(capacity)
    if config.threshold_filter == "window" and config.learning_rule in ("BCM", "Slide_BCM", "Cov") and config.window_length < config.block:
        raise ConfigError(
            f"the threshold window int(-(tau_threshold/dt) ln 0.1) = {config.window_length} steps must be >= block="
            f"{config.block}; raise tau_threshold, lower block or use threshold_filter='ema'"
        )
    return Spec(
        N=tuple(int(n) for n in config.N),
        dt=float(config.dt),
        n_steps=steps,
        block=int(config.block),
        n_before=int(config.number_steps_before_learning),
        rule=config.learning_rule,
        variant=config.variant,
        integrator=config.integrator,
        nonlinearity=config.nonlinearity_rule,
        gamma=float(config.gamma),
        smooth_beta=float(config.smooth_beta),
        neurons=config.neurons,
        phase_modes=tuple(PHASE_MODES.index(m) for m in config.phase_list),
        eval_steps=int(config.eval_steps),
        capacity=max(1, cap),
        stimulus=config.stimulus,
        thal_fraction=tuple(float(x) for x in config.thal_fraction),
        thal_degree_index=int(config.thal_degree_index),
        threshold_filter=config.threshold_filter,
        record_weights=record_weights,
        record_states=record_states,
        remat=remat,
        dense_weights=bool(dense_weights),
    )


def replace_params(p: L5Params, **changes) -> L5Params:
    """Copy of ``p`` with leaves replaced (values cast to the old leaf's dtype/shape: no recompiles)."""
    for k, v in changes.items():
        old = getattr(p, k)
        new = jnp.asarray(v, dtype=old.dtype)
        if new.shape != old.shape:
            new = jnp.broadcast_to(new, old.shape)
        p = eqx.tree_at(lambda q, k=k: getattr(q, k), p, new)
    return p


class L5Model(eqx.Module):
    """Everything :func:`~spikejax.l5.simulate` runs: parameters, sampled networks, static structure.

    Attributes
    ----------
    params : L5Params
        Continuous parameters (array leaves: differentiate or sweep them without recompiling).
    net : L5Network
        ``sim_number`` sampled networks (leading axis S).
    spec : Spec
        Static structure (step count, rule, integrator, ...); changing it recompiles.
    """

    params: L5Params
    net: L5Network
    spec: Spec = eqx.field(static=True)


def build_model(
    config: L5Config,
    *,
    key: jax.Array,
    net: L5Network | None = None,
    params: L5Params | None = None,
    record_weights: bool = True,
    record_states: bool = False,
    remat: bool = False,
    capacity: int | None = None,
    dense_weights: bool = False,
) -> L5Model:
    """Sample the networks of ``config`` from ``key`` and bundle them with its parameters and structure.

    ``net`` / ``params`` replace the sampled networks / the config's parameters (then ``key`` may be
    None: nothing is drawn). The other options are those of :func:`make_spec`.
    """
    if net is None:
        net = build_network(config, key=check_key(key))
    params = L5Params.from_config(config) if params is None else params
    spec = make_spec(config, record_weights=record_weights, record_states=record_states, remat=remat,
                     capacity=capacity, dense_weights=dense_weights)
    return L5Model(params=params, net=net, spec=spec)
