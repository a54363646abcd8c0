"""Hard-EM fitting of the mesoscopic model to a few observed neurons (neuLVM).

Given the spikes ``y`` of a few recorded neurons per population, EM alternates

* **M-step**: minimise ``L(Θ, Ẑ)`` over the 12 parameters Θ (α_m, J, μ, θ) inside the box
  ``[0.4, 2.0] × ground truth`` with exact gradients — projected BFGS with Armijo backtracking in
  box coordinates ``Θ = lo + (hi − lo)·u``, ``u ∈ [0, 1]`` (bounds handled as L-BFGS-B's active set);
* **E-step**: minimise ``L(Θ̂, Z)`` over the whole latent trajectory Z (T × M) with projected Adam
  (lr 1e-3, Z clipped to [1e-5, 1] after each step), stopping after 3 consecutive steps that are
  not a *new best* (L_y and L_Z both at their minimum over the loss history, neuLVM's rule), and
  returning the last new best.

Z starts from the observed spikes (population mean per bin, Gaussian-smoothed with σ = 100 bins).
The loop stops when either step reports no improvement (M: at most one optimiser step; E: the best
came from the first step or at most 4 steps were taken) or after ``max_em`` iterations. Restarts
from random points of the box are vmapped in one compiled program and the run with the lowest
final objective wins. Every accepted step can only lower the objective (the M-step keeps the old
Θ if the optimiser did not improve; the E-step's history includes its starting point), so the
objective never increases across EM iterations.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core.errors import ConfigError, check_array, check_choice, check_scalar
from .data import MesoData, check_params_data
from .model import MesoConfig, loss
from .marginal import MarginalConfig, marginal_stage, screen_log_lik
from .smc import particle_filter
from .params import MesoParams, box_bounds, check_in_box, from_vector, ground_truth, sample_in_box

__all__ = ["EMConfig", "SEMConfig", "INIT_EM", "fit_em", "fit_params_given_Z", "init_Z", "em_single",
           "sem_single", "bfgs_box"]

Z_MIN = 1e-5


@dataclasses.dataclass(frozen=True)
class EMConfig:
    """Settings of :func:`fit_em` (neuLVM defaults in brackets where they differ).

    Attributes
    ----------
    n_restarts : int
        Random restarts from the box, vmapped in one program (5).
    max_em : int
        Maximum EM iterations (20).
    m_maxiter : int
        Maximum L-BFGS iterations per M-step (200).
    m_tol : float
        L-BFGS tolerance: stop when the relative change of the objective between two
        iterations falls below it.
    e_maxiter : int
        Maximum Adam steps per E-step (200).
    e_lr : float
        Adam learning rate of the E-step (1e-3).
    e_patience : int
        Consecutive non-best steps before the E-step stops (3).
    smooth_bins : float
        σ in bins of the Gaussian smoothing of the data-driven Z initialisation (100 = 400 ms).
    """

    n_restarts: int = 5
    max_em: int = 20
    m_maxiter: int = 200
    m_tol: float = 1e-6
    e_maxiter: int = 200
    e_lr: float = 1e-3
    e_patience: int = 3
    smooth_bins: float = 100.0

    def __post_init__(self):
        for name in ("n_restarts", "max_em", "m_maxiter", "e_maxiter", "e_patience"):
            check_scalar(getattr(self, name), name, low=1, integer=True)
        check_scalar(self.m_tol, "m_tol", low=0.0, low_inclusive=False)
        check_scalar(self.e_lr, "e_lr", low=0.0, low_inclusive=False)
        check_scalar(self.smooth_bins, "smooth_bins", low=0.0)


#: Hard-EM settings used as the initialiser of the marginal-likelihood fit (a few short iterations:
#: the joint mode is only a starting region, the marginal stage corrects its bias). Ten random
#: starts, of which the marginal stage continues the best ``MarginalConfig.n_continue`` by log p̂.
INIT_EM = EMConfig(n_restarts=10, max_em=6, m_maxiter=60, e_maxiter=60)


@dataclasses.dataclass(frozen=True)
class SEMConfig:
    """Settings of the stochastic-EM refinement of :func:`fit_em` (``sem=SEMConfig()``).

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

    n_iter: int = 12
    m_maxiter: int = 25
    m_tol: float = 1e-6
    n_particles: int = 256
    burn_in: float = 0.5
    n_final: int = 8

    def __post_init__(self):
        for name in ("n_iter", "m_maxiter", "n_final"):
            check_scalar(getattr(self, name), name, low=1, integer=True)
        check_scalar(self.n_particles, "n_particles", low=2, integer=True)
        check_scalar(self.m_tol, "m_tol", low=0.0, low_inclusive=False)
        check_scalar(self.burn_in, "burn_in", low=0.0, high=1.0, high_inclusive=False)


def _gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with half-sample symmetric ('reflect') boundaries."""
    if sigma <= 0:
        return np.asarray(x, float)
    r = int(4 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = np.empty_like(np.asarray(x, float))
    for j in range(x.shape[1]):
        col = np.asarray(x[:, j], float)
        pad = np.pad(col, r, mode="symmetric") if r < len(col) else np.pad(col, r, mode="wrap")
        out[:, j] = np.convolve(pad, k, mode="valid")
    return out


def init_Z(data: MesoData, smooth_bins: float = 100.0) -> jax.Array:
    """Data-driven start of Z: the observed neurons' mean spike indicator per bin, smoothed.

    Averages the observed spikes of each population over the history and the fitted window,
    smooths with a Gaussian of σ = ``smooth_bins`` bins and returns the fitted window (T, M),
    clipped to [1e-5, 1].
    """
    y_all = np.concatenate([np.asarray(data.y_hist), np.asarray(data.y)], 0).mean(axis=2)
    Zs = _gaussian_smooth(y_all, float(smooth_bins))[data.y_hist.shape[0] :]
    return jnp.clip(jnp.asarray(Zs, data.y.dtype), Z_MIN, 1.0)


def _to_box(x, lo, hi):
    """Box coordinates ``v = (x − lo)/(hi − lo)`` in [0, 1] (the optimiser projects onto [0, 1])."""
    return jnp.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _from_box(u, lo, hi):
    return lo + (hi - lo) * u


def _trial_point(s: dict):
    """The next point the BFGS state asks for: ``u + alpha p`` projected onto the box [0, 1]."""
    return jnp.clip(s["u"] + s["alpha"] * s["p"], 0.0, 1.0)


def _bfgs_init(u0, dtype) -> dict:
    """Fresh state of :func:`_bfgs_iter` at ``u0`` (nothing evaluated yet)."""
    P_ = u0.shape[0]
    return {"u": u0, "f": jnp.asarray(jnp.inf, dtype), "f_raw": jnp.asarray(jnp.inf, dtype),
            "g": jnp.zeros((P_,), dtype), "H": jnp.eye(P_, dtype=dtype), "p": jnp.zeros((P_,), dtype),
            "alpha": jnp.asarray(0.0, dtype), "scale": jnp.asarray(1.0, dtype), "m_i": jnp.asarray(0),
            "m_accepted": jnp.asarray(0), "m_stall": jnp.asarray(0)}


def _bfgs_iter(s: dict, u_eval, f, gu, f_ok, *, maxiter: int, tol: float):
    """One iteration of projected BFGS with Armijo backtracking in box coordinates [0, 1].

    Takes the objective ``f`` and gradient ``gu`` at the trial point ``u_eval`` =
    :func:`_trial_point` (one evaluation per iteration, so it can share a ``while_loop`` body with
    other work). Variables on a bound whose gradient pushes outward are held (an active set, as
    L-BFGS-B), the Armijo test and the quasi-Newton update use the projected step. The objective
    is scaled by ``1/max|g|`` of the first evaluation. Returns the new state (the keys of
    :func:`_bfgs_init`; ``f_raw`` the unscaled objective at the accepted point) and whether the
    minimisation is done.
    """
    dtype = gu.dtype
    P_ = gu.shape[0]
    first = s["m_i"] == 0
    scale = jnp.where(first, 1.0 / jnp.maximum(jnp.max(jnp.abs(gu)), 1e-8), s["scale"])
    gs = gu * scale
    sv = u_eval - s["u"]  # the projected step actually taken
    armijo = f_ok & (f * scale <= s["f"] + 1e-4 * jnp.dot(s["g"], sv))
    accept = first | (armijo & ~first)
    # BFGS update of the inverse Hessian (scaled objective) on accepted steps
    yv = gs - s["g"]
    sy = jnp.dot(sv, yv)
    rho = jnp.where(sy > 1e-12, 1.0 / jnp.where(sy > 1e-12, sy, 1.0), 0.0)
    I = jnp.eye(P_, dtype=dtype)
    H_upd = (I - rho * jnp.outer(sv, yv)) @ s["H"] @ (I - rho * jnp.outer(yv, sv)) + rho * jnp.outer(sv, sv)
    H = jnp.where(accept & ~first & (sy > 1e-12), H_upd, s["H"])
    u_acc = jnp.where(accept, u_eval, s["u"])
    f_acc = jnp.where(accept, f * scale, s["f"])
    g_acc = jnp.where(accept, gs, s["g"])
    rel_change = jnp.abs(s["f"] - f_acc) / (jnp.abs(f_acc) + 1e-3)
    stall = jnp.where(accept & ~first, jnp.where(rel_change < tol, s["m_stall"] + 1, 0), s["m_stall"])
    # active set: on a bound with the gradient pushing outward
    held = ((u_acc <= 0.0) & (g_acc > 0)) | ((u_acc >= 1.0) & (g_acc < 0))
    g_free = jnp.where(held, 0.0, g_acc)
    p_new = jnp.where(held, 0.0, -H @ g_free)
    # not a descent direction: reset to (projected) steepest descent
    bad_dir = jnp.dot(p_new, g_free) >= 0
    p_new = jnp.where(bad_dir, -g_free, p_new)
    H = jnp.where(bad_dir, I, H)
    p_new = jnp.where(accept, p_new, s["p"])
    alpha_new = jnp.where(accept, 1.0, 0.5 * s["alpha"])
    m_i = s["m_i"] + 1
    done = (m_i >= maxiter) | (stall >= 2) | (alpha_new < 1e-10) | (jnp.max(jnp.abs(g_free)) < 1e-9)
    new = {"u": u_acc, "f": f_acc, "f_raw": jnp.where(accept, f, s["f_raw"]), "g": g_acc, "H": H, "p": p_new,
           "alpha": alpha_new, "scale": scale, "m_i": m_i, "m_accepted": s["m_accepted"] + (accept & ~first),
           "m_stall": stall}
    return new, done


def bfgs_box(fun, u0, *, maxiter: int, tol: float = 1e-6):
    """Minimise ``fun(u) -> (value, aux)`` from ``u0`` by BFGS (one ``lax.while_loop``, exact gradients).

    Non-finite values count as failed trial points (the step is halved); non-finite gradient
    entries are zeroed. Returns ``(u, f, n_accepted)``.
    """
    vg = jax.value_and_grad(lambda u: fun(u)[0])
    dtype = u0.dtype

    def cond(c):
        return ~c[1]

    def body(c):
        s, _ = c
        u_eval = _trial_point(s)
        f, gu = vg(u_eval)
        f_ok = jnp.isfinite(f)
        gu = jnp.where(jnp.isfinite(gu), gu, 0.0)
        return _bfgs_iter(s, u_eval, f, gu, f_ok, maxiter=maxiter, tol=tol)

    s, _ = jax.lax.while_loop(cond, body, (_bfgs_init(u0, dtype), jnp.asarray(False)))
    return s["u"], s["f_raw"], s["m_accepted"]


def em_single(x0, Z0, base: MesoParams, arrays: dict, lo, hi, *, cfg: MesoConfig, em: EMConfig) -> dict:
    """EM from one starting point (pure; vmap it over ``x0`` for restarts).

    ``x0`` (12,) parameters inside the box, ``Z0`` (T, M) start of Z, ``arrays`` the data
    (``y``, ``A0``, ``age0``, ``I_ext``). Returns a dict of the final ``x``, ``Z``, objective and
    the loss histories (NaN where unused).

    The whole EM is one ``lax.while_loop`` whose body evaluates the objective and its gradient
    (with respect to both Θ and Z) exactly once and then advances a small state machine: an
    M-step is BFGS with Armijo backtracking in box coordinates (one trial point per iteration),
    an E-step is projected Adam (one step per iteration). One call site of the differentiated
    model keeps compilation short, and under ``vmap`` restarts in different phases share it.
    """
    y, A0, age0, I_ext = arrays["y"], arrays["A0"], arrays["age0"], arrays["I_ext"]
    dtype = Z0.dtype
    P_ = lo.shape[0]

    def objective(u, Z):
        lp = loss(from_vector(base, _from_box(u, lo, hi)), Z, y, A0, age0, I_ext, cfg)
        return lp.total, lp

    vg = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)
    opt = optax.adam(em.e_lr)
    nan = jnp.asarray(jnp.nan, dtype)
    inf = jnp.asarray(jnp.inf, dtype)
    u0 = _to_box(x0, lo, hi)
    s0 = {
        # shared
        "phase": jnp.asarray(0),  # 0 = M-step, 1 = E-step, 2 = done
        "k": jnp.asarray(0), "it": jnp.asarray(0), "Z": Z0,
        "objective": jnp.full((2 * em.max_em + 1,), nan),
        "m_steps": jnp.zeros((em.max_em,), jnp.int32), "e_steps": jnp.zeros((em.max_em,), jnp.int32),
        "e_curves": jnp.full((em.max_em, em.e_maxiter, 3), nan),
        # M-step (BFGS + Armijo backtracking, see _bfgs_iter)
        **_bfgs_init(u0, dtype),
        # E-step (projected Adam)
        "e_i": jnp.asarray(0), "opt": opt.init(Z0), "Z_best": Z0, "f_best": inf, "i_best": jnp.asarray(-1),
        "n_bad": jnp.asarray(0), "best_y": inf, "best_z": inf,
    }

    def cond(s):
        return s["phase"] < 2

    def body(s):
        u_eval = _trial_point(s)
        (f, lp), (gu, gZ) = vg(u_eval, s["Z"])
        f_ok = jnp.isfinite(f)
        gu = jnp.where(jnp.isfinite(gu), gu, 0.0)
        gZ = jnp.where(jnp.isfinite(gZ), gZ, 0.0)
        is_m = s["phase"] == 0
        first_eval = (s["it"] == 0)

        # ---------------- M-step ----------------
        m_new, m_done = _bfgs_iter(s, u_eval, f, gu, f_ok, maxiter=em.m_maxiter, tol=em.m_tol)
        f_m_unscaled = m_new["f_raw"]

        # ---------------- E-step ----------------
        best_y0 = jnp.where(s["e_i"] == 0, jnp.minimum(s["best_y"], lp.L_y), s["best_y"])
        best_z0 = jnp.where(s["e_i"] == 0, jnp.minimum(s["best_z"], lp.L_Z), s["best_z"])
        new_best = (lp.L_y <= best_y0) & (lp.L_Z <= best_z0) & f_ok
        upd, opt_new = opt.update(gZ, s["opt"], s["Z"])
        Z_step = jnp.clip(optax.apply_updates(s["Z"], upd), Z_MIN, 1.0)
        n_bad = jnp.where(new_best, 0, s["n_bad"] + 1)
        e_i = s["e_i"] + 1
        e_done = (e_i >= em.e_maxiter) | (n_bad >= em.e_patience)
        Z_best = jnp.where(new_best, s["Z"], s["Z_best"])
        f_best = jnp.where(new_best, f, s["f_best"])
        i_best = jnp.where(new_best, s["e_i"], s["i_best"])
        e_improved = (i_best >= 1) & (e_i > 4)
        k = s["k"]

        # ---------------- assemble ----------------
        t = dict(s)
        t["it"] = s["it"] + 1
        obj0 = jnp.where(first_eval, s["objective"].at[0].set(f), s["objective"])
        # M branch
        m_out = dict(m_new, p=jnp.where(m_done, 0.0, m_new["p"]), alpha=jnp.where(m_done, 0.0, m_new["alpha"]))
        m_to_e = m_done
        # E branch
        e_out = dict(Z=jnp.where(e_done, Z_best, Z_step), opt=opt_new, e_i=e_i, n_bad=n_bad, Z_best=Z_best,
                     f_best=f_best, i_best=i_best, best_y=jnp.minimum(best_y0, lp.L_y),
                     best_z=jnp.minimum(best_z0, lp.L_Z))
        sel = lambda a, b: jax.tree_util.tree_map(lambda x, y_: jnp.where(is_m, x, y_), a, b)  # noqa: E731
        for key_ in m_out:
            t[key_] = jnp.where(is_m, m_out[key_], s[key_])
        for key_ in e_out:
            t[key_] = sel(s[key_], e_out[key_])
        curve_row = jnp.stack([f, lp.L_y, lp.L_Z])
        t["e_curves"] = jnp.where(is_m, s["e_curves"],
                                  s["e_curves"].at[k, jnp.minimum(s["e_i"], em.e_maxiter - 1)].set(curve_row))
        # phase transitions
        obj = obj0
        obj = jnp.where(is_m & m_to_e, obj.at[2 * k + 1].set(f_m_unscaled), obj)
        obj = jnp.where(~is_m & e_done, obj.at[2 * k + 2].set(f_best), obj)
        t["objective"] = obj
        t["m_steps"] = jnp.where(is_m & m_to_e, s["m_steps"].at[k].set(m_new["m_accepted"]), s["m_steps"])
        t["e_steps"] = jnp.where(~is_m & e_done, s["e_steps"].at[k].set(e_i), s["e_steps"])
        # leaving M: start E (reset its counters); stop right away if M did not improve
        leave_m = is_m & m_to_e
        leave_e = ~is_m & e_done
        stop_after_e = ~(s["m_accepted"] >= 1) | ~e_improved | (k + 1 >= em.max_em)
        t["phase"] = jnp.where(leave_m, 1, jnp.where(leave_e, jnp.where(stop_after_e, 2, 0), s["phase"]))
        t["e_i"] = jnp.where(leave_m, 0, t["e_i"])
        t["n_bad"] = jnp.where(leave_m, 0, t["n_bad"])
        t["i_best"] = jnp.where(leave_m, -1, t["i_best"])
        t["Z_best"] = jnp.where(leave_m, s["Z"], t["Z_best"])
        t["f_best"] = jnp.where(leave_m, f_m_unscaled, t["f_best"])
        t["opt"] = jax.tree_util.tree_map(lambda a_, b_: jnp.where(leave_m, a_, b_), opt.init(s["Z"]), t["opt"])
        # leaving E: start a new M-step from the accepted parameters
        t["k"] = jnp.where(leave_e, k + 1, k)
        t["m_i"] = jnp.where(leave_e, 0, t["m_i"])
        t["m_accepted"] = jnp.where(leave_e, 0, t["m_accepted"])
        t["m_stall"] = jnp.where(leave_e, 0, t["m_stall"])
        t["H"] = jnp.where(leave_e, jnp.eye(P_, dtype=dtype), t["H"])
        t["alpha"] = jnp.where(leave_e, 0.0, t["alpha"])
        t["p"] = jnp.where(leave_e, 0.0, t["p"])
        t["f"] = jnp.where(leave_e, inf, t["f"])
        return t

    s = jax.lax.while_loop(cond, body, s0)
    x = _from_box(s["u"], lo, hi)
    final = loss(from_vector(base, x), s["Z"], y, A0, age0, I_ext, cfg)
    return {
        "x": x, "Z": s["Z"], "loss": final.total, "L_y": final.L_y, "L_Z": final.L_Z,
        "n_em": s["k"], "objective": s["objective"], "m_steps": s["m_steps"], "e_steps": s["e_steps"],
        "e_curves": s["e_curves"],
    }


@functools.partial(jax.jit, static_argnames=("cfg", "em"))
def _em_batch(x0s, Z0, base, arrays, lo, hi, *, cfg, em):
    return jax.vmap(lambda x0: em_single(x0, Z0, base, arrays, lo, hi, cfg=cfg, em=em))(x0s)


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
        Zp, ll, _ = particle_filter(params_of(u), y, A0, age0, I_ext, jax.random.fold_in(key, i),
                                    n_particles=sem.n_particles, n_paths=1, cfg=cfg)

        def fun(u_):
            return loss(params_of(u_), Zp[0], y, A0, age0, I_ext, cfg).total, None

        u_new, f, _ = bfgs_box(fun, u, maxiter=sem.m_maxiter, tol=sem.m_tol)
        return u_new, (_from_box(u_new, lo, hi), ll, f)

    _, (xs, lls, fs) = jax.lax.scan(iteration, _to_box(x0, lo, hi), jnp.arange(sem.n_iter))
    n_burn = min(int(sem.burn_in * sem.n_iter), sem.n_iter - 1)
    x = xs[n_burn:].mean(0)
    keys = jax.random.split(jax.random.fold_in(key, sem.n_iter + 1), sem.n_final)
    Zf, llf, _ = jax.vmap(lambda k: particle_filter(params_of(_to_box(x, lo, hi)), y, A0, age0, I_ext, k,
                                                    n_particles=sem.n_particles, n_paths=1, cfg=cfg))(keys)
    log_lik = jax.scipy.special.logsumexp(llf) - jnp.log(sem.n_final)
    Z = Zf[:, 0].mean(0)
    lp = loss(from_vector(base, x), Z, y, A0, age0, I_ext, cfg)
    return {"x": x, "Z": Z, "log_lik": log_lik, "loss": -log_lik / (M * T), "L_y": lp.L_y, "L_Z": lp.L_Z,
            "x_trace": xs, "log_lik_trace": lls, "m_loss_trace": fs}


@functools.partial(jax.jit, static_argnames=("cfg", "sem"))
def _sem_batch(x0s, keys, base, arrays, lo, hi, *, cfg, sem):
    return jax.vmap(lambda x0, k: sem_single(x0, k, base, arrays, lo, hi, cfg=cfg, sem=sem))(x0s, keys)


def fit_em(
    data: MesoData,
    *,
    key: jax.Array,
    method: str = "marginal",
    em: EMConfig | None = None,
    marginal: MarginalConfig = MarginalConfig(),
    cfg: MesoConfig = MesoConfig(),
    base: MesoParams | None = None,
    reference: MesoParams | None = None,
    x0=None,
    truth: MesoParams | None = None,
    sem: SEMConfig | None = None,
    init_hard_em: bool = True,
    _first_restart: int = 0,
):
    """Fit the mesoscopic model to the observed neurons of ``data`` (vmapped random restarts).

    ``method="marginal"`` (default) maximises the marginal likelihood ``log p(y | Θ)``: hard EM
    (``em``, short, 10 random starts by default) gives the restarts their starts, the
    ``marginal.n_continue`` hard-EM estimates with the highest particle ``log p̂(y | Θ)`` are
    continued (screening), and the stochastic approximation of :mod:`spikejax.meso.marginal`
    (Fisher's identity through the particle filter, EM-gradient steps with heavy-ball momentum,
    decreasing gains and Polyak averaging; ``marginal`` settings) converges to a stationary point
    of ``log p(y | Θ)``; at ``marginal.cut_at`` only the ``marginal.n_keep`` restarts of highest
    recent ``log p̂`` continue, with a less noisy score (``late_runs`` independent filter runs); restarts are ranked by the particle estimate of ``log p(y | Θ)``. ``method="hard"`` is neuLVM's hard EM alone (the joint
    mode of ``p(y, Z | Θ)``, biased); ``method="sem"`` (or ``sem=SEMConfig()``) the earlier
    stochastic-EM refinement.

    Parameters
    ----------
    data
        One trial (:class:`~spikejax.meso.MesoData`); ``data.Z`` is never used for fitting.
    key
        PRNG key for the random starting points and the particle filters (the fit is a pure
        function of it).
    method
        ``"marginal"`` (default), ``"hard"`` or ``"sem"``.
    em
        Hard-EM settings (:class:`EMConfig`); default :data:`INIT_EM` as initialiser of the
        marginal/SEM stage, ``EMConfig()`` for ``method="hard"``.
    marginal
        Settings of the marginal-likelihood stage (:class:`~spikejax.meso.MarginalConfig`).
    cfg
        Mesoscopic model options (:class:`~spikejax.meso.MesoConfig`).
    base
        Fixed parameters (α_s, conmat, N, t_ref, ε); default the neuLVM ground truth with
        ``N = data.N``.
    reference
        Centre of the box ``[0.4, 2.0] × reference`` (default ground truth with θ = 3.7).
    x0
        Optional (n_restarts, 12) starting points inside the box (default: uniform draws).
    truth
        Ground truth for the results table (default: the neuLVM ground truth when sizes match).
    sem
        Settings of ``method="sem"`` (:class:`SEMConfig`); passing it selects that method.
    init_hard_em
        ``method="marginal"`` only: start the marginal stage from the hard-EM estimates (default)
        or directly from the starting points (with the data-driven Z for the first information
        estimate).

    Returns
    -------
    spikejax.meso.results.FitResults
        ``runs`` holds per restart the estimate ``x``, ``Z`` (posterior mean for the marginal and
        SEM methods, the joint mode for hard EM), ``loss`` (``−log p̂(y | Θ)/(M·T)`` for the
        marginal and SEM methods, the hard-EM objective otherwise), ``log_lik`` and the traces
        (``convergence()``), and for the marginal method ``restart`` (the hard-EM restart each run
        continues; with screening, ``results.hard_em.runs["screen_log_lik"]`` holds the screening
        ``log p̂`` of all of them, and with the cut ``cut_score`` / ``cut_log_lik_trace`` the
        selection score and the first-phase traces of every continued restart, NaN for the others); the hard-EM stage is kept in ``results.hard_em``; ``seconds`` and
        ``stage_seconds`` the wall times (incl. compilation).
    """
    from .results import FitResults

    if sem is not None and not isinstance(sem, SEMConfig):
        raise TypeError(f"sem must be a SEMConfig or None, got {type(sem).__name__}")
    if sem is not None:
        method = "sem"
    check_choice(method, "method", ("marginal", "hard", "sem"))
    if em is None:
        em = EMConfig() if method == "hard" else INIT_EM
    if not isinstance(em, EMConfig):
        raise TypeError(f"em must be an EMConfig or None, got {type(em).__name__}")
    if not isinstance(marginal, MarginalConfig):
        raise TypeError(f"marginal must be a MarginalConfig, got {type(marginal).__name__}")
    if method == "sem" and sem is None:
        sem = SEMConfig()

    if not isinstance(data, MesoData):
        raise TypeError(f"data must be a MesoData, got {type(data).__name__}")
    dtype = data.y.dtype
    if base is None:
        base = dataclasses.replace(ground_truth(dtype=dtype), N=tuple(data.N))
    if len(base.N) != data.M or tuple(base.N) != tuple(data.N):
        raise ConfigError(f"base.N {base.N} must equal data.N {data.N}")
    lo, hi = box_bounds(reference)
    lo, hi = lo.astype(dtype), hi.astype(dtype)
    if lo.shape[0] != 4 * data.M:
        raise ConfigError(f"the box has {lo.shape[0]} entries, expected {4 * data.M}")
    if x0 is None:
        x0s = sample_in_box(key, lo, hi, em.n_restarts)
    else:
        x0s = check_array(x0, "x0", (None, 4 * data.M)).astype(dtype)
        for i in range(x0s.shape[0]):
            check_in_box(from_vector(base, x0s[i]), lo, hi, name=f"x0[{i}]")
    Z0 = init_Z(data, em.smooth_bins)
    arrays = {"y": data.y, "A0": data.A0, "age0": data.age0, "I_ext": data.I_ext}
    t0 = time.perf_counter()
    if method == "marginal" and not init_hard_em:
        out = {"x": np.asarray(x0s), "Z": np.broadcast_to(np.asarray(Z0), (x0s.shape[0],) + Z0.shape),
               "loss": np.zeros(x0s.shape[0], np.asarray(Z0).dtype), "n_em": np.zeros(x0s.shape[0], np.int32)}
    else:
        out = _em_batch(x0s, Z0, base, arrays, lo, hi, cfg=cfg, em=em)
        out = jax.tree_util.tree_map(np.asarray, jax.device_get(out))
    seconds = time.perf_counter() - t0
    if not np.all(np.isfinite(out["loss"])):
        bad = np.flatnonzero(~np.isfinite(out["loss"])).tolist()
        from ..core.errors import TrainingDivergedError

        raise TrainingDivergedError(
            f"EM restart(s) {bad} ended with a non-finite objective; try jax_enable_x64 or a smaller e_lr"
        )
    if truth is None and tuple(data.N) == (400, 400, 200):
        truth = ground_truth(dtype=dtype)
    hard = FitResults(
        method="hard", runs=out, x0=np.asarray(x0s), Z0=np.asarray(Z0), base=base, data=data, truth=truth, cfg=cfg, em=em,
        seconds=seconds, lo=np.asarray(lo), hi=np.asarray(hi),
    )
    if method == "hard":
        return hard
    if method == "marginal":
        stage_key = jax.random.fold_in(key, 2)
        t1 = time.perf_counter()
        n_all = x0s.shape[0]
        keep = np.arange(n_all)
        if init_hard_em and 0 < marginal.n_continue < n_all:
            # screening: continue the hard-EM estimates with the highest particle log p(y | theta)
            skeys = jnp.stack([jax.random.fold_in(jax.random.fold_in(key, 3), _first_restart + i) for i in range(n_all)])
            sll = np.asarray(_screen_batch(jnp.asarray(out["x"]), skeys, base, arrays, cfg=cfg,
                                           n_particles=marginal.n_particles, n_runs=marginal.n_final))
            out["screen_log_lik"] = sll
            keep = np.sort(np.argsort(-np.where(np.isfinite(sll), sll, -np.inf), kind="stable")[: marginal.n_continue])
        ref = marginal_stage(out, keep, stage_key, _first_restart, base, arrays, lo, hi, cfg=cfg, mc=marginal)
        if "cut_score" in ref:  # the selection at the switch, for every continued restart
            out["cut_score"] = np.full(n_all, np.nan, ref["cut_score"].dtype)
            out["cut_score"][keep] = ref.pop("cut_score")
            tr = ref.pop("cut_log_lik_trace")
            out["cut_log_lik_trace"] = np.full((n_all, tr.shape[1]), np.nan, tr.dtype)
            out["cut_log_lik_trace"][keep] = tr
        keep = ref["restart"]
        t2 = time.perf_counter()
        if not np.all(np.isfinite(ref["log_lik"])):
            from ..core.errors import TrainingDivergedError

            raise TrainingDivergedError("the marginal-likelihood stage ended with a non-finite log p(y | theta) "
                                        "estimate; try more particles (MarginalConfig.final_particles) or x64")
        ref["n_em"] = out["n_em"][keep]
        return dataclasses.replace(hard, runs=ref, x0=np.asarray(x0s)[keep], seconds=seconds + t2 - t1, hard_em=hard,
                                   method="marginal",
                                   marginal=marginal, stage_seconds={"hard_em": seconds, "marginal": t2 - t1},
                                   key=key)
    x_start = out["x"]
    keys = jax.random.split(jax.random.fold_in(key, 1), x_start.shape[0])
    t0 = time.perf_counter()
    ref = _sem_batch(jnp.asarray(x_start), keys, base, arrays, lo, hi, cfg=cfg, sem=sem)
    ref = jax.tree_util.tree_map(np.asarray, jax.device_get(ref))
    if not np.all(np.isfinite(ref["log_lik"])):
        from ..core.errors import TrainingDivergedError

        raise TrainingDivergedError("stochastic EM ended with a non-finite marginal likelihood estimate; "
                                    "try more particles (SEMConfig.n_particles)")
    ref["n_em"] = out["n_em"]
    return dataclasses.replace(hard, runs=ref, seconds=seconds + time.perf_counter() - t0, sem=sem, hard_em=hard,
                               method="sem", stage_seconds={"hard_em": seconds, "sem": time.perf_counter() - t0})


@functools.partial(jax.jit, static_argnames=("cfg", "n_particles", "n_runs"))
def _screen_batch(xs, keys, base, arrays, *, cfg, n_particles, n_runs):
    return jax.vmap(lambda x, k: screen_log_lik(x, k, base, arrays, n_particles=n_particles, n_runs=n_runs,
                                                cfg=cfg))(xs, keys)


def fit_em_sequential(data: MesoData, *, x0, key: jax.Array | None = None, method: str = "hard",
                      em: EMConfig | None = None, marginal: MarginalConfig = MarginalConfig(),
                      cfg: MesoConfig = MesoConfig(), base=None, init_hard_em: bool = True):
    """Run the restarts of :func:`fit_em` one after the other (for checking the vmapped program).

    Restart ``i`` gets the same starting point and the same random numbers as restart ``i`` of
    ``fit_em(data, key=key, x0=x0, ...)``. Every restart is continued (one at a time there is
    nothing to screen or cut), as ``fit_em`` does with ``MarginalConfig(n_continue=0)`` and ``n_keep``
    at least the number of restarts; with the cut, each survivor of ``fit_em`` equals its run here.
    """
    key = jax.random.PRNGKey(0) if key is None else key
    if em is None:
        em = EMConfig() if method == "hard" else INIT_EM
    outs = []
    for i in range(np.asarray(x0).shape[0]):
        r = fit_em(data, key=key, method=method, em=dataclasses.replace(em, n_restarts=1), marginal=marginal,
                   cfg=cfg, base=base, x0=np.asarray(x0)[i : i + 1], init_hard_em=init_hard_em, _first_restart=i)
        outs.append(r)
    return outs


__all__.append("fit_em_sequential")


def objective(
    params: MesoParams,
    data: MesoData,
    Z=None,
    *,
    cfg: MesoConfig = MesoConfig(),
    box: tuple | None = None,
):
    """The validated neuLVM objective ``L_y + L_Z`` of ``params`` on ``data``.

    Parameters
    ----------
    params
        Model parameters (validated; with ``box=(lo, hi)`` they must lie inside it).
    data
        The trial (:class:`~spikejax.meso.MesoData`).
    Z
        (T, M) latent activity in [0, 1]; default the data's true Z.
    cfg
        Model options.

    Returns
    -------
    LossParts
        ``total``, ``L_y`` and ``L_Z`` (per population and bin).
    """
    check_params_data(params, data)
    if box is not None:
        check_in_box(params, *box)
    if Z is None:
        if data.Z is None:
            raise ConfigError("Z is required when the data hold no true activity")
        Z = data.Z
    Z = check_array(Z, "Z", (data.T, data.M), low=0.0, high=1.0).astype(data.y.dtype)
    return _objective(params, Z, data.y, data.A0, data.age0, data.I_ext, cfg=cfg)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _objective(params, Z, y, A0, age0, I_ext, *, cfg):
    return loss(params, Z, y, A0, age0, I_ext, cfg)


__all__.append("objective")


@functools.partial(jax.jit, static_argnames=("cfg", "maxiter", "tol"))
def _mstep_batch(x0s, Z, base, arrays, lo, hi, *, cfg, maxiter, tol):
    y, A0, age0, I_ext = arrays["y"], arrays["A0"], arrays["age0"], arrays["I_ext"]

    def one(x0):
        def fun(u):
            return loss(from_vector(base, _from_box(u, lo, hi)), Z, y, A0, age0, I_ext, cfg).total, None

        u, f, n = bfgs_box(fun, _to_box(x0, lo, hi), maxiter=maxiter, tol=tol)
        return _from_box(u, lo, hi), f, n

    return jax.vmap(one)(x0s)


def fit_params_given_Z(
    data: MesoData,
    Z=None,
    *,
    key: jax.Array,
    n_starts: int = 5,
    maxiter: int = 300,
    tol: float = 1e-7,
    cfg: MesoConfig = MesoConfig(),
    base: MesoParams | None = None,
    reference: MesoParams | None = None,
    x0=None,
):
    """The M-step given the latent activity: minimise ``L(Θ, Z)`` over the 12 parameters in the box.

    With ``Z = data.Z`` (the default, the *true* activity) this is the information ceiling of the
    parameters: what a fit could reach if the population activity were observed. Projected BFGS
    with exact gradients (as the M-step of :func:`fit_em`) from ``n_starts`` uniform box draws (or
    ``x0``), vmapped; the start with the lowest objective wins.

    Returns a dict: ``x`` (12,) the best estimate, ``params`` (:class:`MesoParams`), ``loss`` its
    objective, ``xs``/``losses``/``n_accepted`` per start, ``seconds`` (incl. compilation).
    """
    if not isinstance(data, MesoData):
        raise TypeError(f"data must be a MesoData, got {type(data).__name__}")
    dtype = data.y.dtype
    if base is None:
        base = dataclasses.replace(ground_truth(dtype=dtype), N=tuple(data.N))
    if tuple(base.N) != tuple(data.N):
        raise ConfigError(f"base.N {base.N} must equal data.N {data.N}")
    if Z is None:
        if data.Z is None:
            raise ConfigError("Z is required when the data hold no true activity")
        Z = data.Z
    Z = check_array(Z, "Z", (data.T, data.M), low=0.0, high=1.0).astype(dtype)
    n_starts = int(check_scalar(n_starts, "n_starts", low=1, integer=True))
    maxiter = int(check_scalar(maxiter, "maxiter", low=1, integer=True))
    check_scalar(tol, "tol", low=0.0, low_inclusive=False)
    lo, hi = box_bounds(reference)
    lo, hi = lo.astype(dtype), hi.astype(dtype)
    if x0 is None:
        x0s = sample_in_box(key, lo, hi, n_starts)
    else:
        x0s = check_array(x0, "x0", (None, 4 * data.M)).astype(dtype)
        for i in range(x0s.shape[0]):
            check_in_box(from_vector(base, x0s[i]), lo, hi, name=f"x0[{i}]")
    arrays = {"y": data.y, "A0": data.A0, "age0": data.age0, "I_ext": data.I_ext}
    t0 = time.perf_counter()
    xs, fs, ns = jax.device_get(_mstep_batch(x0s, Z, base, arrays, lo, hi, cfg=cfg, maxiter=maxiter, tol=float(tol)))
    seconds = time.perf_counter() - t0
    xs, fs = np.asarray(xs), np.asarray(fs)
    b = int(np.nanargmin(np.where(np.isfinite(fs), fs, np.inf)))
    return {"x": xs[b], "params": from_vector(base, jnp.asarray(xs[b])), "loss": float(fs[b]), "xs": xs,
            "losses": fs, "n_accepted": np.asarray(ns), "seconds": seconds}
