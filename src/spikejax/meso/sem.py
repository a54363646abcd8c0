"""Stochastic EM for the mesoscopic model (``MesoFitConfig(method="sem")``): particle-filter draws of Z
alternated with BFGS M-steps, the estimate averaged after a burn-in."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from ..core.config import Config, option
from .hard_em import _from_box, _to_box, bfgs_box
from .model import MesoConfig, _loss_parts
from .params import MesoParams, from_vector
from .smc import particle_filter

__all__ = ["SEMConfig", "sem_single"]


@dataclasses.dataclass(frozen=True)
class SEMConfig(Config):
    """Settings of the stochastic-EM refinement of :func:`fit_em` (``MesoFitConfig(method="sem")``).

    Hard EM maximises ``log p(y, Z | Θ)`` jointly over Θ and the latent trajectory. That joint
    mode is biased: a smooth Z scores better under the Gaussian population term than any
    realistic trajectory, and started *at the ground truth* neuLVM's EM walks away from it
    (``benchmarks/RESULTS.md``). Stochastic EM instead alternates

    * **E**: draw ``Z ~ p(Z | y, Θ)`` with a particle filter (:func:`spikejax.meso.smc.particle_filter`);
    * **M**: a few BFGS iterations (exact gradients, box coordinates) on ``L(Θ, Z)`` for that draw,

    which targets the maximum of the *marginal* likelihood ``p(y | Θ)``; the estimate is the
    average of the iterates after ``burn_in``, and restarts are ranked by the particle estimate of
    ``log p(y | Θ)``.

    Attributes
    ----------
    n_iter : int
        Stochastic-EM iterations (E draw + M-step) per restart.
    m_maxiter : int
        BFGS iterations per M-step.
    m_tol : float
        Relative-change tolerance of the M-step.
    n_particles : int
        Particles of the filter.
    burn_in : float
        Fraction of the iterations discarded before averaging the parameters.
    n_final : int
        Independent filter runs at the final estimate (posterior mean of Z and ``log p(y | Θ)``).
    """

    n_iter: int = option(12, ge=1, help="stochastic-EM iterations per restart")
    m_maxiter: int = option(25, ge=1, help="BFGS iterations per M-step")
    m_tol: float = option(1e-6, gt=0.0, help="relative-change tolerance of the M-step")
    n_particles: int = option(256, ge=2, help="particles of the filter")
    burn_in: float = option(0.5, ge=0.0, lt=1.0, help="fraction of the iterations discarded before averaging")
    n_final: int = option(8, ge=1, help="independent filter runs at the final estimate")


def sem_single(x0, key, base: MesoParams, arrays: dict, lo, hi, *, cfg: MesoConfig, sem: SEMConfig) -> dict:
    """Stochastic EM from one starting point (pure; vmap it over ``x0``/``key`` for restarts).

    Returns the averaged estimate ``x``, the posterior-mean ``Z`` and ``log_lik`` (particle
    estimate of ``log p(y | Θ)`` at ``x``, log-mean-exp over ``n_final`` filter runs), and the
    traces ``x_trace`` (parameters after each M-step) and ``log_lik_trace`` (at the start of
    each iteration).
    """
    y, A0, age0, I_ext = arrays["y"], arrays["A0"], arrays["age0"], arrays["I_ext"]
    T, M = y.shape[:2]

    def params_of(u):
        return from_vector(base, _from_box(u, lo, hi))

    def iteration(u, i):
        Zp, ll, _ = particle_filter(params_of(u), y, A0, age0, I_ext, key=jax.random.fold_in(key, i),
                                    n_particles=sem.n_particles, n_paths=1, config=cfg)

        def fun(u_):
            return _loss_parts(params_of(u_), Zp[0], y, A0, age0, I_ext, cfg).total, None

        u_new, f, _ = bfgs_box(fun, u, maxiter=sem.m_maxiter, tol=sem.m_tol)
        return u_new, (_from_box(u_new, lo, hi), ll, f)

    _, (xs, lls, fs) = jax.lax.scan(iteration, _to_box(x0, lo, hi), jnp.arange(sem.n_iter))
    n_burn = min(int(sem.burn_in * sem.n_iter), sem.n_iter - 1)
    x = xs[n_burn:].mean(0)
    keys = jax.random.split(jax.random.fold_in(key, sem.n_iter + 1), sem.n_final)
    Zf, llf, _ = jax.vmap(lambda k: particle_filter(params_of(_to_box(x, lo, hi)), y, A0, age0, I_ext, key=k,
                                                    n_particles=sem.n_particles, n_paths=1, config=cfg))(keys)
    log_lik = jax.scipy.special.logsumexp(llf) - jnp.log(sem.n_final)
    Z = Zf[:, 0].mean(0)
    lp = _loss_parts(from_vector(base, x), Z, y, A0, age0, I_ext, cfg)
    return {"x": x, "Z": Z, "log_lik": log_lik, "loss": -log_lik / (M * T), "L_y": lp.L_y, "L_Z": lp.L_Z,
            "x_trace": xs, "log_lik_trace": lls, "m_loss_trace": fs}


@functools.partial(jax.jit, static_argnames=("cfg", "sem"))
def _sem_batch(x0s, keys, base, arrays, lo, hi, *, cfg, sem):
    return jax.vmap(lambda x0, k: sem_single(x0, k, base, arrays, lo, hi, cfg=cfg, sem=sem))(x0s, keys)
