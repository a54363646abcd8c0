"""Observation models (readouts from factors): Poisson and zero-inflated gamma (ZIG, RADICaL).

* :class:`PoissonReadout`: ``log λ = W f + b``; λ in counts per bin.
* :class:`ZIGReadout` with ``parametrization="radical"`` (lfadslite ``linscaledsigmoid``):
  ``k = S_k σ(z_k)``, ``θ = S_θ σ(z_θ)`` (θ a *scale*), both clipped to ``[1e-5, S - 1e-5]``;
  ``q = clip(σ(z_q), 1e-5, 1 - 1e-5)``; learnable scales ``S`` (init ``gamma_prior``) with the penalty
  ``½·l2_gamma_distance_scale·Σ(S - gamma_prior)²`` inside the normalised (ramped) L2 sum.
* ``parametrization="torch"`` (lfads-torch ``ZeroInflatedGamma``): ``α = S_α σ(z_α)`` (shape),
  ``β = S_β σ(z_β)`` (a *rate*, θ = 1/β), ``q = max(σ(z_q), 1e-5)``; penalty
  ``½·scale_penalty·Σ(S - prior)²`` added outside the normalised L2 (not ramped).

Both use :func:`spikejax.core.zig_nll` (log-sigmoid forms for ``q``). The reported event rate is
``E[y] = q (kθ + s_min)`` per bin (the RADICaL tutorial's ``compute_zig_mean``; it includes s_min).
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.likelihoods import poisson_nll_log_rate, zig_mean, zig_nll
from . import rng

__all__ = ["ObservationModel", "PoissonReadout", "ZIGReadout", "make_observation"]

_QMIN = 1e-5


class ObservationModel(eqx.Module):
    """Interface: ``params(factors)``, ``nll(params, y, mask)`` (elementwise), ``mean(params)``."""

    @abc.abstractmethod
    def params(self, factors: jax.Array) -> jax.Array:
        """Raw readout outputs from factors (..., fac_dim) -> (..., n_params)."""

    @abc.abstractmethod
    def nll(self, params: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Elementwise negative log-likelihood of ``y`` (masked entries 0)."""

    @abc.abstractmethod
    def mean(self, params: jax.Array) -> jax.Array:
        """Mean of the observation per bin (the reported rate)."""

    def l2_inside(self):
        return None

    def penalty_outside(self) -> jax.Array:
        return jnp.zeros(())


class PoissonReadout(ObservationModel):
    """Poisson readout: ``log λ = W f + b`` (counts per bin)."""

    weight: jax.Array
    bias: jax.Array

    def __init__(self, fac_dim: int, n_out: int, *, key, dtype=None):
        dtype = dtype or jnp.zeros(()).dtype
        self.weight = rng.init_normal(key, (n_out, fac_dim), div=math.sqrt(fac_dim)).astype(dtype)
        self.bias = jnp.zeros(n_out, dtype)

    def params(self, factors):
        return factors @ self.weight.T + self.bias

    def nll(self, params, y, mask=None):
        """Exact Poisson NLL ``λ - y log λ + log y!`` per element (masked entries 0)."""
        return poisson_nll_log_rate(params, y, mask=mask, exact=True, reduction="none")

    def mean(self, params):
        return jnp.exp(params)


class ZIGReadout(ObservationModel):
    """Zero-inflated gamma readout (RADICaL or lfads-torch parametrisation, see module docstring)."""

    weight: jax.Array
    bias: jax.Array
    scale: jax.Array
    s_min: float = eqx.field(static=True)
    prior: float = eqx.field(static=True)
    penalty: float = eqx.field(static=True)
    parametrization: str = eqx.field(static=True)

    def __init__(self, fac_dim: int, n_out: int, *, key, s_min: float = 0.1, gamma_prior: float = 20.0,
                 penalty: float = 1e-4, parametrization: str = "radical", dtype=None):
        dtype = dtype or jnp.zeros(()).dtype
        if parametrization not in ("radical", "torch"):
            raise ValueError(f"parametrization must be 'radical' or 'torch', got {parametrization!r}")
        self.weight = rng.init_normal(key, (3 * n_out, fac_dim), div=math.sqrt(fac_dim)).astype(dtype)
        self.bias = jnp.zeros(3 * n_out, dtype)
        self.scale = jnp.full((2 * n_out,), gamma_prior, dtype)
        self.s_min = float(s_min)
        self.prior = float(gamma_prior)
        self.penalty = float(penalty)
        self.parametrization = parametrization

    def params(self, factors):
        return factors @ self.weight.T + self.bias

    def split(self, params):
        """(shape k, scale θ, q_logit) from raw readout outputs (..., 3N)."""
        n = params.shape[-1] // 3
        z_k, z_t, z_q = params[..., :n], params[..., n:2 * n], params[..., 2 * n:]
        s_k, s_t = self.scale[:n], self.scale[n:]
        lo_logit = math.log(_QMIN) - math.log1p(-_QMIN)
        if self.parametrization == "radical":
            k = jnp.clip(s_k * jax.nn.sigmoid(z_k), 1e-5, s_k - 1e-5)
            theta = jnp.clip(s_t * jax.nn.sigmoid(z_t), 1e-5, s_t - 1e-5)
            q_logit = jnp.clip(z_q, lo_logit, -lo_logit)
        else:
            k = s_k * jax.nn.sigmoid(z_k)
            rate = s_t * jax.nn.sigmoid(z_t)
            theta = 1.0 / rate
            q_logit = jnp.maximum(z_q, lo_logit)
        return k, theta, q_logit

    def nll(self, params, y, mask=None):
        k, theta, q_logit = self.split(params)
        return zig_nll(y, q_logit=q_logit, shape_k=k, scale_theta=theta, s_min=self.s_min, mask=mask,
                       reduction="none")

    def mean(self, params):
        """Event rate per bin ``q (kθ + s_min)``."""
        k, theta, q_logit = self.split(params)
        return zig_mean(jax.nn.sigmoid(q_logit), k, theta, self.s_min)

    def _sq(self):
        return 0.5 * jnp.sum((self.scale - self.prior) ** 2)

    def l2_inside(self):
        if self.parametrization == "radical" and self.penalty > 0:
            return self.penalty * self._sq(), self.scale.size
        return None

    def penalty_outside(self):
        if self.parametrization == "torch":
            return self.penalty * self._sq()
        return jnp.zeros((), self.scale.dtype)


def make_observation(config, *, key, dtype=None) -> ObservationModel:
    """Build the readout named by ``config.reconstruction`` for ``config.recon_dim`` outputs."""
    if config.reconstruction == "poisson":
        return PoissonReadout(config.fac_dim, config.recon_dim, key=key, dtype=dtype)
    return ZIGReadout(config.fac_dim, config.recon_dim, key=key, s_min=config.s_min, gamma_prior=config.gamma_prior,
                      penalty=config.l2_gamma_distance_scale,
                      parametrization="radical" if config.reconstruction == "zig" else "torch", dtype=dtype)
