"""Parameters of the LIF escape-noise populations (neuLVM / Schwalger et al. 2017 without adaptation).

Units follow the neuLVM code: potentials are *dimensionless* (units of the escape-noise
softness Δu = 2.5 mV), the escape-rate prefactor is folded into the threshold so that the
hazard is ``λ = exp(V − θ)`` in Hz, rates are in Hz and time constants are given as inverse
times in 1/s (``amem = 1/τ_m``, ``asyn = 1/τ_s``). Time steps are in seconds
(δ = 0.2 ms = 2e-4 s micro, Δ = 4 ms = 4e-3 s meso).

The 12 fitted parameters are ``amem`` (3), ``J`` (3, one strength per *presynaptic*
population, signed by ``conmat``), ``mu`` (3) and ``theta`` (3), in that order
(:func:`to_vector` / :func:`from_vector`).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError, ShapeError, SpikejaxError, check_array, check_finite, is_traced

__all__ = [
    "MesoParams",
    "ground_truth",
    "param_names",
    "to_vector",
    "from_vector",
    "box_bounds",
    "check_in_box",
    "sample_in_box",
    "BOX_LOW",
    "BOX_HIGH",
    "THETA_REF",
]

BOX_LOW = 0.4
BOX_HIGH = 2.0
THETA_REF = 3.7  # neuLVM training default for the threshold (used for the box)
THETA_GEN = 6.0 - math.log(10.0)  # the generator's effective threshold, 3.6974...
GT_CONMAT = ((1.0, 0.0, 1.0), (0.0, 1.0, 1.0), (-1.0, -1.0, -1.0))
FITTED = ("amem", "J", "mu", "theta")


class MesoParams(eqx.Module):
    """Parameters of ``M`` homogeneous LIF populations with exponential escape noise.

    Attributes
    ----------
    amem : (M,) array
        Inverse membrane time constants α_m = 1/τ_m in 1/s (ground truth 50, τ_m = 20 ms).
    J : (M,) array
        Coupling strength of each *presynaptic* population (Δu units per Hz·s; ground truth
        9.984, 9.984, 19.968). The effective matrix is ``conmat * J[:, None]`` (pre × post).
    mu : (M,) array
        Resting potential μ in Δu (ground truth 14.4 = 36 mV).
    theta : (M,) array
        Effective threshold θ in Δu (hazard ``exp(V − θ)`` Hz; ground truth 3.6974).
    asyn : (M,) array
        Inverse synaptic time constants α_s in 1/s, indexed by the presynaptic population.
    conmat : (M, M) array
        Sign/mask matrix, rows = presynaptic, columns = postsynaptic.
    eps : scalar array
        Gain of the external input (dimensionless; ``dV/dt += eps * I_ext`` with I_ext in Δu/s).
    N : tuple of int (static)
        Population sizes (number of neurons).
    t_ref : float (static)
        Absolute refractory period in ms (4 ms).
    names : tuple of str or None (static)
        Population names (``("E1", "E2", "I")`` for the ground truth); used in tables and plots.
    """

    amem: jax.Array
    J: jax.Array
    mu: jax.Array
    theta: jax.Array
    asyn: jax.Array
    conmat: jax.Array
    eps: jax.Array
    N: tuple = eqx.field(static=True)
    t_ref: float = eqx.field(static=True, default=4.0)
    names: tuple | None = eqx.field(static=True, default=None)

    @property
    def M(self) -> int:
        """Number of populations."""
        return len(self.N)

    @property
    def t_ref_s(self) -> float:
        """Refractory period in s (the unit of the internal computation)."""
        return float(self.t_ref) / 1000.0

    @property
    def population_names(self) -> tuple:
        """``names`` if given, else ``("0", "1", …)``."""
        return tuple(self.names) if self.names is not None else tuple(str(i) for i in range(len(self.N)))

    @property
    def J_eff(self) -> jax.Array:
        """Effective coupling matrix (pre × post) = ``conmat * J[:, None]``."""
        return self.conmat * self.J[..., :, None]

    @property
    def N_array(self) -> jax.Array:
        """Population sizes as a float array."""
        return jnp.asarray(self.N, dtype=self.amem.dtype)

    def validate(self) -> "MesoParams":
        """Check shapes, finiteness and signs; returns ``self`` (raises :class:`SpikejaxError`)."""
        M = len(self.N)
        if M < 1:
            raise ConfigError("N must name at least one population")
        for n in self.N:
            if int(n) != n or n < 1:
                raise ConfigError(f"N must hold population sizes >= 1, got {self.N!r}")
        check_scalar_like(self.t_ref, "t_ref")
        if self.names is not None and len(self.names) != M:
            raise ConfigError(f"names must give one name per population ({M}), got {self.names!r}")
        for name in ("amem", "J", "mu", "theta", "asyn"):
            check_array(getattr(self, name), name, (M,))
        check_array(self.conmat, "conmat", (M, M))
        check_array(self.eps, "eps", ())
        if not is_traced(self.amem):
            if np.any(np.asarray(self.amem) <= 0):
                raise SpikejaxError(f"amem (1/tau_m, 1/s) must be > 0, got {np.asarray(self.amem)}")
            if np.any(np.asarray(self.asyn) <= 0):
                raise SpikejaxError(f"asyn (1/tau_s, 1/s) must be > 0, got {np.asarray(self.asyn)}")
        return self


def check_scalar_like(value, name):
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0 (ms), got {value!r}")


def ground_truth(*, theta: float | None = None, dtype=None) -> MesoParams:
    """The neuLVM 3-population winner-take-all ground truth (E1, E2, I; N = 400, 400, 200).

    Parameters
    ----------
    theta
        Effective threshold; default the generator's value 6 − ln 10 = 3.6974 (the neuLVM
        training box uses 3.7, see :func:`box_bounds`).
    dtype
        Floating dtype (default: JAX's default float).
    """
    dtype = dtype or jnp.result_type(float)
    th = THETA_GEN if theta is None else float(theta)
    f = lambda v: jnp.asarray(v, dtype=dtype)  # noqa: E731
    return MesoParams(
        amem=f([50.0, 50.0, 50.0]),
        J=f([9.984, 9.984, 19.968]),
        mu=f([14.4, 14.4, 14.4]),
        theta=f([th, th, th]),
        asyn=f([1000.0 / 3, 1000.0 / 3, 500.0 / 3]),
        conmat=f(GT_CONMAT),
        eps=f(1.0),
        N=(400, 400, 200),
        t_ref=4.0,
        names=("E1", "E2", "I"),
    )


def param_names(M: int = 3) -> list[str]:
    """Names of the fitted parameters in vector order, e.g. ``amem[0] ... theta[2]``."""
    return [f"{n}[{i}]" for n in FITTED for i in range(M)]


def to_vector(params: MesoParams) -> jax.Array:
    """The fitted parameters as a flat vector ``[amem, J, mu, theta]`` (length 4M)."""
    return jnp.concatenate([params.amem, params.J, params.mu, params.theta], axis=-1)


def from_vector(params: MesoParams, x: jax.Array) -> MesoParams:
    """Replace the fitted parameters of ``params`` by the vector ``x`` (inverse of :func:`to_vector`)."""
    if not isinstance(params, MesoParams):
        raise TypeError(f"params must be a MesoParams, got {type(params).__name__}")
    M = params.M
    x = check_array(x, "x (the fitted parameters amem, J, mu, theta)", ndim=range(1, 64), finite=False)
    if x.shape[-1] != 4 * M:
        raise ShapeError(
            f"x (the fitted parameters amem, J, mu, theta) must have shape (..., {4 * M}) = (..., 4M) for M = {M} "
            f"populations, i.e. ({4 * M},) for one vector; got {tuple(x.shape)}"
        )
    parts = [x[..., i * M : (i + 1) * M] for i in range(4)]
    return eqx.tree_at(lambda p: (p.amem, p.J, p.mu, p.theta), params, tuple(parts))


def box_bounds(reference: MesoParams | None = None, *, low: float = BOX_LOW, high: float = BOX_HIGH):
    """Lower and upper bounds of the neuLVM box ``[low, high] × reference`` (vectors of length 4M).

    The default reference is the ground truth with θ = 3.7 (the neuLVM training default).
    """
    ref = ground_truth(theta=THETA_REF) if reference is None else reference
    x = to_vector(ref)
    lo, hi = jnp.minimum(low * x, high * x), jnp.maximum(low * x, high * x)
    return lo, hi


def check_in_box(params: MesoParams, lo: jax.Array, hi: jax.Array, name: str = "params") -> None:
    """Raise :class:`SpikejaxError` naming the parameter if any fitted value lies outside ``[lo, hi]``."""
    x = to_vector(params)
    if is_traced(x):
        return
    check_finite(x, name)
    xv, lv, hv = np.asarray(x), np.asarray(lo), np.asarray(hi)
    names = param_names(params.M)
    bad = np.nonzero((xv < lv - 1e-6 * np.abs(lv)) | (xv > hv + 1e-6 * np.abs(hv)))[0]
    if bad.size:
        i = int(bad[0])
        raise SpikejaxError(
            f"{name}: {names[i]} = {xv[i]:.6g} lies outside the fitting box [{lv[i]:.6g}, {hv[i]:.6g}]"
        )


def sample_in_box(lo: jax.Array, hi: jax.Array, n: int, *, key: jax.Array) -> jax.Array:
    """``n`` parameter vectors drawn independently and uniformly from the box (shape (n, 4M))."""
    u = jax.random.uniform(key, (n, lo.shape[-1]), dtype=lo.dtype)
    return lo + (hi - lo) * u
