"""Maximum marginal likelihood for the mesoscopic model: stochastic approximation with the Fisher identity.

The quantity to maximise is ``log p(y | Θ)``, the likelihood of the observed neurons with the
population activity Z integrated out. Its gradient is the posterior mean of the complete-data
score (Fisher's identity)

    ∇ log p(y | Θ) = E[∇ log p(y, Z | Θ) | y],

which the particle filter estimates with trajectories ``Z ~ p(Z | y, Θ)`` (:mod:`.smc`). Each
iteration k of :func:`marginal_single`

1. runs the filter at ``Θ_k`` and traces ``n_paths`` posterior trajectories through the genealogy;
   the score ``g`` is the mean of their exact complete-data gradients (box coordinates
   ``Θ = lo + (hi − lo) u``);
2. preconditions with the complete-data information ``H`` (Hessian of ``−log p(y, Z | Θ)`` on the
   latest trajectory by central differences of the exact gradient, made positive definite; every
   ``info_every`` iterations, averaged): ``δ = −H⁻¹ g`` is the EM-gradient step (Lange 1995), one
   Newton step of the M-step. Optionally (``min_info_fraction < 1``) the observed information by
   Louis' identity, ``I_obs = E[H | y] − Cov[g | y]``, with its eigenvalues relative to ``H`` kept in
   ``[min_info_fraction, 1]``, for larger steps along directions with missing information;
3. steps ``u ← clip(u + γ_k δ, 0, 1)`` (bounds as an active set, a trust region of ``max_step`` box
   widths), with gain ``γ_k = burn_gain`` (1) during ``n_burn`` iterations and ``(k − n_burn + 2)^(−gain_decay)``
   afterwards (Robbins–Monro: Σγ = ∞, Σγ² < ∞), and heavy-ball momentum ``v ← β v + γ_k δ``; an
   iterate whose ``log p̂`` drops by more than ``reject_nats`` is undone, its velocity reset and the
   trust region halved (optionally growing back by ``radius_growth`` per accepted iteration);
4. the estimate is the Polyak–Ruppert average of the iterates after the burn-in (or from
   ``average_from``).

The iterations run in phases (:meth:`MarginalConfig.phases`, :func:`marginal_phase`): from ``cut_at`` on
with a less noisy score (``late_runs`` independent filter runs), and :func:`spikejax.meso.fit_em` keeps only
the ``n_keep`` restarts of highest recent ``log p̂`` there (successive halving).

This is the stochastic-approximation Newton–Raphson of Gu & Kong (1998) with a particle filter in
place of the MCMC sampler. Restarts are vmapped in one program and ranked by the particle estimate
of ``log p(y | Θ)`` at their final estimate.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import Config, option
from .model import _VAR_FLOOR_HZ, MesoConfig, _loss_parts, _observed_nll, _population_nll, _predict, observed_logits
from .params import MesoParams, from_vector
from .smc import _filter, _posterior, trace_path

__all__ = ["MarginalConfig", "complete_data_terms", "complete_data_hessian", "marginal_single", "score_estimate"]


@dataclasses.dataclass(frozen=True)
class MarginalConfig(Config):
    """Settings of the marginal-likelihood stage of :func:`spikejax.meso.fit_em` (the default method).

    Attributes
    ----------
    n_iter : int
        Stochastic-approximation iterations (one particle filter each) per restart.
    n_burn : int
        Iterations with gain ``burn_gain`` before the gains decrease.
    average_from : int or None
        First iteration of the Polyak–Ruppert average that is the estimate (``None``, default:
        ``n_burn``); with a cut, at least ``cut_at``. Measured with ``average_from=32`` (the
        survivors' whole second phase, gain-1 iterations included) on the 4 default fits of keys
        0–3: median error 0.105 / 0.163 / 0.062 / 0.085 instead of 0.161 / 0.158 / 0.094 / 0.073 and
        r(Z) of the inhibitory population nearer its ceiling, but log p̂ lower by 0–6.5 nats (the
        average of iterates on a curved ridge leaves it) and the key-0 fit's free run no longer
        switches (one period in 200 s instead of 19): not the default.
    burn_gain : float
        Gain during the burn-in; above 1 the EM-gradient step is over-relaxed (measured with 1.5 for
        20 of 32 iterations: no better, log p̂ −4207.7 vs −4204.8 with the default).
    gain_decay : float
        Exponent of the decreasing gains ``(k − n_burn + 2)^(−gain_decay)``, in (0.5, 1].
    n_particles : int
        Particles of the filter during the iterations before ``cut_at``.
    n_paths : int
        Posterior trajectories per iteration before ``cut_at`` (traced from the final weights).
    min_info_fraction : float
        Lower bound on the fraction of observed information (relative to the complete-data
        information) used by the preconditioner; 1 (default) gives the EM-gradient step, smaller
        values let Louis' identity take larger steps (measured: with 4 posterior paths per
        iteration the score covariance is too noisy, and 0.1–0.2 made the iterates wander).
    info_memory : float
        Weight of the newest iteration in the running averages of the information and the score
        covariance (exponential forgetting).
    max_step : float
        Trust region: largest change of a parameter per iteration, in units of its box width.
    n_final : int
        Independent filter runs at the final estimate (ranking by ``log p̂(y | Θ)``, posterior mean of Z).
    final_particles : int
        Particles of those runs.
    reject_nats : float
        Safeguard: an iterate whose ``log p̂`` falls more than this below the last accepted one is
        undone and the trust region halved.
    radius_growth : float
        Factor by which the trust region grows back (up to ``max_step``) after each accepted
        iteration; 1 (default) keeps a halved region for the rest of the run. Measured on the
        bundled fit (one key each): 1.25 gave more rejected iterates and a lower final log p̂
        (−4203.1 vs −4196.6) than 1.
    info_every : int
        Iterations between two estimates of the complete-data information (forward-mode
        Jacobians, about 12 gradients' cost); ``n_iter`` must be a multiple of it.
    n_continue : int
        Restarts continued by the marginal stage: the ``n_continue`` hard-EM estimates with the
        highest particle estimate of ``log p(y | Θ)`` (``n_final`` filter runs of ``n_particles``;
        screening); 0 (or at least the number of restarts) continues all of them. Hard EM is cheap
        next to the marginal stage, so many hard-EM starts screened to a few is the way to reach
        the basin of the maximum (hard EM's joint mode often sits on the J_I lower bound).
    momentum : float
        Heavy-ball momentum β of the steps, ``v ← β v + γ_k δ``, ``u ← clip(u + v)`` (the velocity is
        the step actually taken, so bounds stop it; a rejected iterate resets it). EM converges at
        rate ``1 − f`` along directions where a fraction ``f`` of the information is observed;
        momentum ``β ≈ (1 − √f)²`` turns that into ``≈ 1 − √f`` (0 = the plain EM-gradient step).
    cut_at : int
        Iteration at which the score switches to ``late_runs`` independent filter runs and the stage keeps only
        the ``n_keep`` restarts with the highest mean ``log p̂`` over the last ``info_every · 2``
        iterations (successive halving: most continued restarts end tens of nats below the best,
        and their compute buys a less noisy score for the survivors instead). The iterate, its
        latest posterior trajectory and the key carry over; velocity, trust region and information
        start afresh. ``cut_at ≥ n_iter`` (or 0) switches nothing; otherwise it must be a multiple of
        ``info_every`` and at most the start of the average (``average_from``).
    n_keep : int
        Restarts kept at ``cut_at`` (at least the number continued keeps all).
    late_particles, late_paths, late_runs : int
        The score from ``cut_at`` on: ``late_runs`` independent filter runs of ``late_particles``,
        ``late_paths`` trajectories traced from each (:func:`score_estimate`). One filter's
        trajectories share their ancestors over most of the 2750 bins (path degeneracy), so more
        trajectories from one run barely help; independent runs do (step s.d. 0.013 box widths
        with 4 × 64 × 2 against 0.031 with 64 × 4 and 0.049 with one run of 256 × 8). With 2
        survivors at 4 runs each the second phase costs about what 4 restarts at one run did.
    """

    n_iter: int = option(96, ge=1, help="stochastic-approximation iterations per restart")
    n_burn: int = option(72, ge=0, help="iterations with gain burn_gain before the gains decrease")
    average_from: int | None = option(None, ge=0, help="first iteration of the Polyak average (None: n_burn)")
    burn_gain: float = option(1.0, gt=0.0, le=2.0, help="gain during the burn-in")
    gain_decay: float = option(0.6, gt=0.5, le=1.0, help="exponent of the decreasing gains")
    n_particles: int = option(64, ge=2, help="particles of the filter before cut_at")
    n_paths: int = option(4, ge=1, help="posterior trajectories per iteration before cut_at")
    min_info_fraction: float = option(1.0, gt=0.0, le=1.0, help="lower bound of the observed-information fraction")
    info_memory: float = option(0.3, gt=0.0, le=1.0, help="weight of the newest iteration in the running averages")
    max_step: float = option(0.1, gt=0.0, help="trust region (box widths per iteration)")
    n_final: int = option(4, ge=1, help="filter runs at the final estimate")
    final_particles: int = option(256, ge=2, help="particles of the final filter runs")
    info_every: int = option(4, ge=1, help="iterations between two estimates of the information")
    reject_nats: float = option(25.0, gt=0.0, unit="nats", help="drop of log p that undoes an iterate")
    momentum: float = option(0.7, ge=0.0, lt=1.0, help="heavy-ball momentum of the steps")
    n_continue: int = option(4, ge=0, help="hard-EM restarts continued (0: all)")
    radius_growth: float = option(1.0, ge=1.0, help="growth of the trust region per accepted iteration")
    cut_at: int = option(32, ge=0, help="iteration of the switch to the late score (successive halving)")
    n_keep: int = option(2, ge=1, help="restarts kept at cut_at")
    late_particles: int = option(64, ge=2, help="particles per filter run from cut_at on")
    late_paths: int = option(2, ge=1, help="trajectories per filter run from cut_at on")
    late_runs: int = option(4, ge=1, help="independent filter runs of the score from cut_at on")

    def validate(self):
        if self.n_iter % self.info_every:
            raise self.error("n_iter", f"({self.n_iter}) must be a multiple of info_every ({self.info_every})")
        if self.n_burn > self.n_iter - 1:
            raise self.error("n_burn", f"must be <= n_iter - 1 = {self.n_iter - 1}, got {self.n_burn}")
        if self.average_from is not None and self.average_from > self.n_iter - 1:
            raise self.error("average_from", f"must be <= n_iter - 1 = {self.n_iter - 1}, got {self.average_from}")
        if self.switches and (self.cut_at % self.info_every or self.cut_at > self.average_start):
            raise self.error("cut_at", f"({self.cut_at}) must be a multiple of info_every ({self.info_every}) "
                                       f"and at most the start of the average ({self.average_start}: average_from, or "
                                       f"n_burn if it is None), or >= n_iter ({self.n_iter}) to switch nothing")

    @property
    def average_start(self) -> int:
        """First iteration of the average that is the estimate (``average_from``, or ``n_burn``)."""
        return self.n_burn if self.average_from is None else int(self.average_from)

    @property
    def switches(self) -> bool:
        """Whether the stage has two phases (``0 < cut_at < n_iter``)."""
        return 0 < self.cut_at < self.n_iter

    def phases(self):
        """``[(start, stop, n_particles, n_paths, n_runs), ...]``: the iterations of each phase and the
        filter runs of its score (independent runs × particles × trajectories per run)."""
        if not self.switches:
            return [(0, self.n_iter, self.n_particles, self.n_paths, 1)]
        return [(0, self.cut_at, self.n_particles, self.n_paths, 1),
                (self.cut_at, self.n_iter, self.late_particles, self.late_paths, self.late_runs)]


def _params_of(base, u, lo, hi):
    return from_vector(base, lo + (hi - lo) * u)


def complete_data_terms(u, Z, base: MesoParams, arrays: dict, lo, hi, cfg: MesoConfig):
    """Complete-data NLL ``−log p(y, Z | Θ)`` (nats), its gradient and Gauss–Newton information in box coordinates.

    ``u`` (4M,) box coordinates, ``Z`` (T, M) a latent trajectory. The NLL depends on Θ only through
    the expected activity Z̄ and the observed neurons' logits, so their Jacobians (forward mode, one
    tangent per parameter) give both the gradient ``Jᵀ r`` and the Fisher information ``Jᵀ W J``
    (Gaussian weight ``1/v + 1/(2N²v²)`` for ``v = Z̄/N + 0.1Δ/N``, Bernoulli ``p(1 − p)``).
    Returns ``(nll, g, H)``. (A reference for :func:`complete_data_hessian`, which the fit uses
    because it compiles much faster.)
    """
    y, A0, age0, I_ext = arrays["y"], arrays["A0"], arrays["age0"], arrays["I_ext"]
    dt = cfg.dt_s

    def outputs(u_):
        p = _params_of(base, u_, lo, hi)
        zbar, U = _predict(p, Z, A0, I_ext, cfg)
        return (zbar, observed_logits(p, Z, A0, y, age0, I_ext, cfg, U=U))

    (Jz, Jl), (zbar, logits) = jax.jacfwd(lambda u_: (outputs(u_), outputs(u_)), has_aux=True)(u)

    def nll_of(zb, lg):
        return _population_nll(base, Z, zb, dt=dt) + _observed_nll(y, lg)

    nll, (rz, rl) = jax.value_and_grad(nll_of, argnums=(0, 1))(zbar, logits)
    # Jacobians come out with the parameter axis last: (T, M, P) and (T, M, n, P)
    g = jnp.einsum("tmp,tm->p", Jz, rz) + jnp.einsum("tmnp,tmn->p", Jl, rl)
    N = base.N_array.astype(zbar.dtype)
    v = zbar / N + _VAR_FLOOR_HZ * dt / N
    wz = 1.0 / v + 0.5 / (N * v) ** 2
    pr = jax.nn.sigmoid(logits)
    wl = pr * (1.0 - pr)
    H = jnp.einsum("tmp,tmq,tm->pq", Jz, Jz, wz) + jnp.einsum("tmnp,tmnq,tmn->pq", Jl, Jl, wl)
    return nll, g, H


def complete_data_hessian(u, Z, base: MesoParams, arrays: dict, lo, hi, cfg: MesoConfig, *, h: float = 1e-3):
    """Hessian of the complete-data NLL in box coordinates by central differences of the exact gradient.

    ``2·4M`` gradient evaluations through one compiled gradient (``lax.map``), symmetrised, with
    its eigenvalues replaced by their absolute values and floored at ``1e-6`` of the largest
    (positive definite, as a Newton preconditioner needs). Compiles in a fraction of the time of
    the forward-mode :func:`complete_data_terms`.
    """
    P_ = u.shape[0]
    eye = jnp.eye(P_, dtype=u.dtype)
    pts = jnp.concatenate([u[None] + h * eye, u[None] - h * eye])
    gs = jax.lax.map(lambda v: complete_data_grad(v, Z, base, arrays, lo, hi, cfg)[1], pts)
    Hm = (gs[:P_] - gs[P_:]) / (2 * h)
    Hm = 0.5 * (Hm + Hm.T)
    lam, V = jnp.linalg.eigh(Hm)
    lam = jnp.maximum(jnp.abs(lam), 1e-6 * jnp.max(jnp.abs(lam)))
    return (V * lam) @ V.T


def complete_data_grad(u, Z, base: MesoParams, arrays: dict, lo, hi, cfg: MesoConfig):
    """Complete-data NLL ``−log p(y, Z | Θ)`` (nats) and its gradient in box coordinates (reverse mode)."""
    y, A0, age0, I_ext = arrays["y"], arrays["A0"], arrays["age0"], arrays["I_ext"]
    T, M = Z.shape

    def nll(u_):
        return _loss_parts(_params_of(base, u_, lo, hi), Z, y, A0, age0, I_ext, cfg).total * (M * T)

    return jax.value_and_grad(nll)(u)


def score_estimate(u, key, base: MesoParams, arrays: dict, lo, hi, *, n_particles: int, n_paths: int,
                   cfg: MesoConfig, n_runs: int = 1):
    """Particle estimate of the marginal score by Fisher's identity (box coordinates).

    Returns ``(log_lik, g, C, Z)``: the filter's ``log p̂(y | Θ)``, the mean over ``n_paths``
    posterior trajectories of the complete-data NLL gradient ``g`` (so ``−g`` estimates
    ``∇_u log p(y | Θ)``), the covariance ``C`` of the per-trajectory gradients and the first
    trajectory ``Z`` (T, M).

    With ``n_runs > 1`` the trajectories come from ``n_runs`` independent filter runs (keys
    ``split(key, n_runs)``), ``n_paths`` from each, and ``log_lik`` is the log-mean-exp of the runs'
    estimates. Trajectories traced through one filter's genealogy share their ancestors over most of
    the window (path degeneracy), so independent runs give a far less noisy score for the same
    number of particles: at the bundled fit, the s.d. of the preconditioned step was 0.013 box widths
    with 4 runs × 64 particles × 2 trajectories vs 0.049 with one run of 256 × 8 (and 0.031 with
    the first phase's 64 × 4).
    """
    keys = key[None] if n_runs == 1 else jax.random.split(key, n_runs)  # one run keeps the key itself
    lls, gs, Zs = jax.vmap(lambda k: _score_one_run(u, k, base, arrays, lo, hi, n_particles=n_particles,
                                                    n_paths=n_paths, cfg=cfg))(keys)
    g = gs.mean((0, 1))
    d = (gs - g).reshape(-1, gs.shape[-1])
    C = d.T @ d / max(d.shape[0] - 1, 1)
    return jax.scipy.special.logsumexp(lls) - jnp.log(n_runs), g, C, Zs[0]


def _score_one_run(u, key, base, arrays, lo, hi, *, n_particles, n_paths, cfg):
    """One filter run: ``(log p̂, per-trajectory gradients (n_paths, 4M), first trajectory)``."""
    y, A0, age0, I_ext = arrays["y"], arrays["A0"], arrays["age0"], arrays["I_ext"]
    p = _params_of(base, u, lo, hi)
    Zs, ancs, logw, ll, _ = _filter(p, y, A0, age0, I_ext, key, n_particles=n_particles, cfg=cfg)
    ends = jax.random.categorical(jax.random.fold_in(key, y.shape[0]), logw, shape=(n_paths,))

    def per_path(i):
        Z = trace_path(Zs, ancs, i)
        return complete_data_grad(u, Z, base, arrays, lo, hi, cfg)[1], Z

    gs, Zp = jax.lax.map(per_path, ends)
    return ll, gs, Zp[0]


def _precondition(H, C, frac_min):
    """Observed information ``H − C`` with its eigenvalues relative to ``H`` clipped to ``[frac_min, 1]``."""
    P_ = H.shape[0]
    eye = jnp.eye(P_, dtype=H.dtype)
    Hs = 0.5 * (H + H.T) + 1e-6 * jnp.trace(H) / P_ * eye
    L = jnp.linalg.cholesky(Hs)
    Li = jax.scipy.linalg.solve_triangular(L, eye, lower=True)
    A = Li @ (Hs - 0.5 * (C + C.T)) @ Li.T
    lam, V = jnp.linalg.eigh(0.5 * (A + A.T))
    lam = jnp.clip(lam, frac_min, 1.0)
    return L @ (V * lam) @ V.T @ L.T, lam


def _newton_step(u, g, I, max_step):
    """``δ`` solving ``I δ = −g`` with the coordinates on a bound that would leave the box held."""
    P_ = u.shape[0]
    eye = jnp.eye(P_, dtype=u.dtype)

    def solve(held):
        Ih = jnp.where(held[:, None] | held[None, :], eye, I)
        d = jnp.linalg.solve(Ih, -jnp.where(held, 0.0, g))
        return jnp.where(held, 0.0, d)

    d = solve(jnp.zeros((P_,), bool))
    held = ((u <= 0.0) & (d < 0)) | ((u >= 1.0) & (d > 0))
    d = solve(held)
    held = held | ((u <= 0.0) & (d < 0)) | ((u >= 1.0) & (d > 0))
    d = jnp.where(held, 0.0, d)
    return d * jnp.minimum(1.0, max_step / jnp.maximum(jnp.max(jnp.abs(d)), 1e-12))


def gains(mc: MarginalConfig):
    """The gain sequence γ_k (length ``n_iter``) as a NumPy array."""
    k = np.arange(mc.n_iter)
    return np.where(k < mc.n_burn, mc.burn_gain, (np.maximum(k - mc.n_burn, 0) + 2.0) ** (-mc.gain_decay))


def marginal_phase(u0, Z0, key, base: MesoParams, arrays: dict, lo, hi, *, cfg: MesoConfig, mc: MarginalConfig,
                   start: int, stop: int, n_particles: int, n_paths: int, n_runs: int = 1) -> dict:
    """Iterations ``start ≤ k < stop`` of the stochastic approximation from box coordinates ``u0`` (pure; vmappable).

    ``Z0`` (T, M) is the trajectory of the first information estimate; velocity, trust region and
    running averages start afresh, the gains and the filter keys (``fold_in(key, k)``) are those of
    the global iteration ``k``. Returns the last iterate ``u`` and the latest posterior trajectory
    ``Z_last`` (to continue from), the Polyak sum ``u_sum`` and count ``n_avg`` of the iterates with
    ``k ≥ mc.average_start``, and the per-iteration traces (see :func:`marginal_single`).
    """
    dtype = lo.dtype
    P_ = lo.shape[0]
    gam = jnp.asarray(gains(mc), dtype)
    n_chunks = (stop - start) // mc.info_every

    def iteration(carry, k):
        u, u_sum, n_avg, Hbar, Cbar, _, u_prev, ll_prev, radius, v = carry
        ll, g, C, Zp = score_estimate(u, jax.random.fold_in(key, k), base, arrays, lo, hi,
                                      n_particles=n_particles, n_paths=n_paths, cfg=cfg, n_runs=n_runs)
        # safeguard: a step into a region far worse than the last accepted point is undone
        bad = (ll < ll_prev - mc.reject_nats) | ~jnp.isfinite(ll)
        g = jnp.where(jnp.isfinite(g), g, 0.0)
        C = jnp.where(jnp.isfinite(C), C, 0.0)
        Cbar = jnp.where(k == start, C, jnp.where(bad, Cbar, (1.0 - mc.info_memory) * Cbar + mc.info_memory * C))
        I_obs, fr = _precondition(Hbar, Cbar, mc.min_info_fraction)
        d = _newton_step(u, g, I_obs, radius)
        u_new = jnp.where(bad, u_prev, jnp.clip(u + mc.momentum * v + gam[k] * d, 0.0, 1.0))
        v = jnp.where(bad, 0.0, u_new - u)
        radius = jnp.where(bad, 0.5 * radius, jnp.minimum(mc.max_step, mc.radius_growth * radius))
        u_prev = jnp.where(bad, u_prev, u)
        ll_prev = jnp.where(bad, ll_prev, ll)
        averaging = k >= mc.average_start
        u_sum = u_sum + jnp.where(averaging, u_new, 0.0)
        n_avg = n_avg + averaging
        u_avg = jnp.where(n_avg > 0, u_sum / jnp.maximum(n_avg, 1), u_new)
        out = (lo + (hi - lo) * u_new, lo + (hi - lo) * u_avg, ll, jnp.max(jnp.abs(d)), fr[0], bad)
        return (u_new, u_sum, n_avg, Hbar, Cbar, Zp, u_prev, ll_prev, radius, v), out

    def chunk(carry, c):
        u, u_sum, n_avg, Hbar, Cbar, Z = carry[:6]
        H = complete_data_hessian(u, Z, base, arrays, lo, hi, cfg)
        Hbar = jnp.where(c == 0, H, 0.5 * (Hbar + H))
        ks = start + c * mc.info_every + jnp.arange(mc.info_every)
        return jax.lax.scan(iteration, (u, u_sum, n_avg, Hbar, Cbar, Z) + tuple(carry[6:]), ks)

    zeros = jnp.zeros((P_, P_), dtype)
    carry0 = (u0, jnp.zeros_like(u0), jnp.asarray(0, dtype), zeros, zeros, Z0, u0, jnp.asarray(-jnp.inf, dtype),
              jnp.asarray(mc.max_step, dtype), jnp.zeros_like(u0))
    (u_last, u_sum, n_avg, _, _, Z_last, *_), outs = jax.lax.scan(chunk, carry0, jnp.arange(n_chunks))
    names = ("x_trace", "x_avg_trace", "log_lik_trace", "step_trace", "info_fraction", "rejected")
    traces = {n: o.reshape((stop - start,) + o.shape[2:]) for n, o in zip(names, outs)}
    return {"u": u_last, "Z_last": Z_last, "u_sum": u_sum, "n_avg": n_avg, **traces}


def marginal_finish(u_last, u_sum, n_avg, key, base: MesoParams, arrays: dict, lo, hi, *, cfg: MesoConfig,
                    mc: MarginalConfig) -> dict:
    """The estimate (Polyak average, or the last iterate if nothing was averaged), ``log p̂`` of
    ``n_final`` filter runs of ``final_particles`` there and the posterior mean of Z (pure; vmappable)."""
    T, M = arrays["y"].shape[:2]
    u_hat = jnp.where(n_avg > 0, u_sum / jnp.maximum(n_avg, 1), u_last)
    post = _posterior(_params_of(base, u_hat, lo, hi), arrays["y"], arrays["A0"], arrays["age0"], arrays["I_ext"],
                      jax.random.fold_in(key, mc.n_iter + 1), n_particles=mc.final_particles, n_runs=mc.n_final,
                      level=0.9, band=False, cfg=cfg)
    return {"x": lo + (hi - lo) * u_hat, "Z": post.mean, "log_lik": post.log_lik, "loss": -post.log_lik / (M * T),
            "log_lik_runs": post.log_lik_runs}


TRACE_KEYS = ("x_trace", "x_avg_trace", "log_lik_trace", "step_trace", "info_fraction", "rejected")


def marginal_single(x0, Z0, key, base: MesoParams, arrays: dict, lo, hi, *, cfg: MesoConfig,
                    mc: MarginalConfig) -> dict:
    """Stochastic-approximation maximum marginal likelihood from one start (pure; vmap over ``x0``/``Z0``/``key``).

    ``x0`` (4M,) start inside the box, ``Z0`` (T, M) a trajectory for the first information
    estimate (e.g. hard EM's Z). The complete-data information is re-estimated every
    ``mc.info_every`` iterations (on the latest posterior trajectory), the score every iteration;
    from ``mc.cut_at`` on with ``late_runs`` × ``late_particles`` × ``late_paths`` (:meth:`MarginalConfig.phases`;
    one restart alone keeps running, :func:`spikejax.meso.fit_em` drops restarts there).

    Returns the averaged estimate ``x`` (4M,), the posterior mean ``Z`` (T, M) and ``log_lik``
    (log-mean-exp of ``n_final`` filter runs at ``x``), and the traces ``x_trace`` (n_iter, 4M)
    (the iterate after each step), ``x_avg_trace`` (the running average), ``log_lik_trace``
    (the filter's ``log p̂`` at the start of each iteration), ``step_trace`` (largest
    preconditioned step before the gain, box units) and ``info_fraction`` (smallest
    observed-information fraction per iteration).
    """
    u = jnp.clip((x0 - lo) / (hi - lo), 0.0, 1.0)
    Z, parts = Z0, []
    for start, stop, n_particles, n_paths, n_runs in mc.phases():
        ph = marginal_phase(u, Z, key, base, arrays, lo, hi, cfg=cfg, mc=mc, start=start, stop=stop,
                            n_particles=n_particles, n_paths=n_paths, n_runs=n_runs)
        u, Z = ph["u"], ph["Z_last"]
        parts.append(ph)
    out = marginal_finish(u, ph["u_sum"], ph["n_avg"], key, base, arrays, lo, hi, cfg=cfg, mc=mc)
    out.update({n: jnp.concatenate([p_[n] for p_ in parts]) for n in TRACE_KEYS})
    return out


@functools.partial(jax.jit, static_argnames=("cfg", "mc", "start", "stop", "n_particles", "n_paths", "n_runs"))
def _phase_batch(us, Zs, keys, base, arrays, lo, hi, *, cfg, mc, start, stop, n_particles, n_paths, n_runs):
    return jax.vmap(lambda u, Z, k: marginal_phase(u, Z, k, base, arrays, lo, hi, cfg=cfg, mc=mc, start=start,
                                                   stop=stop, n_particles=n_particles, n_paths=n_paths,
                                                   n_runs=n_runs))(us, Zs, keys)


@functools.partial(jax.jit, static_argnames=("cfg", "mc"))
def _finish_batch(us, u_sums, n_avgs, keys, base, arrays, lo, hi, *, cfg, mc):
    return jax.vmap(lambda u, s, n, k: marginal_finish(u, s, n, k, base, arrays, lo, hi, cfg=cfg, mc=mc))(
        us, u_sums, n_avgs, keys)


def marginal_stage(hard: dict, keep, stage_key, first_restart: int, base, arrays, lo, hi, *, cfg, mc) -> dict:
    """The marginal stage for the hard-EM restarts ``keep``: the phases of ``mc`` vmapped over restarts,
    keeping the ``mc.n_keep`` best (mean ``log p̂`` over the last ``2 · info_every`` iterations) at the
    switch; each restart's random numbers depend on its own index only (``fold_in(stage_key, i)``).
    Returns the survivors' estimates and whole traces, ``restart`` (their hard-EM indices) and, when
    restarts were dropped, ``cut_score`` (the selection score of every restart in ``keep``)."""
    keep = np.asarray(keep)
    keys = jnp.stack([jax.random.fold_in(stage_key, first_restart + int(i)) for i in keep])
    us = jnp.clip((jnp.asarray(hard["x"][keep]) - lo) / (hi - lo), 0.0, 1.0)
    Zs = jnp.asarray(hard["Z"][keep])
    rows = np.arange(len(keep))
    parts, extra = [], {}
    for j, (start, stop, n_particles, n_paths, n_runs) in enumerate(mc.phases()):
        if j == 1 and mc.n_keep < len(rows):
            last = np.asarray(parts[-1]["log_lik_trace"])[:, -2 * mc.info_every:]
            score = np.where(np.isfinite(last), last, -np.inf).mean(1)
            extra["cut_score"] = score
            extra["cut_log_lik_trace"] = np.asarray(parts[-1]["log_lik_trace"])
            sel = np.sort(np.argsort(-score, kind="stable")[: mc.n_keep])
            rows, us, Zs, keys = rows[sel], us[sel], Zs[sel], keys[sel]
            parts = [jax.tree_util.tree_map(lambda a: a[sel], p_) for p_ in parts]
        ph = jax.tree_util.tree_map(np.asarray, jax.device_get(
            _phase_batch(us, Zs, keys, base, arrays, lo, hi, cfg=cfg, mc=mc, start=start, stop=stop,
                         n_particles=n_particles, n_paths=n_paths, n_runs=n_runs)))
        us, Zs = jnp.asarray(ph["u"]), jnp.asarray(ph["Z_last"])
        parts.append(ph)
    ref = _finish_batch(us, jnp.asarray(ph["u_sum"]), jnp.asarray(ph["n_avg"]), keys, base, arrays, lo, hi,
                        cfg=cfg, mc=mc)
    ref = jax.tree_util.tree_map(np.asarray, jax.device_get(ref))
    ref.update({n: np.concatenate([p_[n] for p_ in parts], axis=1) for n in TRACE_KEYS})
    ref["restart"] = keep[rows]
    return {**ref, **extra}


def screen_log_lik(x, key, base: MesoParams, arrays: dict, *, n_particles: int, n_runs: int, cfg: MesoConfig):
    """``log p̂(y | Θ)`` at the parameter vector ``x`` (4M,): log-mean-exp of ``n_runs`` filter runs
    (the likelihood part of the posterior smoother; pure, vmappable)."""
    post = _posterior(from_vector(base, x), arrays["y"], arrays["A0"], arrays["age0"], arrays["I_ext"], key,
                      n_particles=n_particles, n_runs=n_runs, level=0.9, band=False, cfg=cfg)
    return post.log_lik


__all__ += ["gains", "complete_data_grad", "screen_log_lik", "marginal_phase", "marginal_finish", "marginal_stage"]
