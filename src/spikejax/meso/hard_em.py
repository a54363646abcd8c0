"""Hard-EM fitting of the mesoscopic model to a few observed neurons (neuLVM).

Given the spikes ``y`` of a few recorded neurons per population, EM alternates

* **M-step**: minimise ``L(Θ, Ẑ)`` over the 12 parameters Θ (α_m, J, μ, θ) inside the box
  ``[0.4, 2.0] × ground truth`` with exact gradients — projected BFGS with Armijo backtracking in
  box coordinates ``Θ = lo + (hi − lo)·u``, ``u ∈ [0, 1]`` (bounds handled as L-BFGS-B's active set);
* **E-step**: minimise ``L(Θ̂, Z)`` over the whole latent trajectory Z (T × M) with projected Adam
  (learning rate 1e-3, Z clipped to [1e-5, 1] after each step), stopping after 3 consecutive steps that are
  not a *new best* (L_y and L_Z both at their minimum over the loss history, neuLVM's rule), and
  returning the last new best.

Z starts from the observed spikes (population mean per bin, Gaussian-smoothed with σ = 100 bins).
The loop stops when either step reports no improvement (M: at most one optimiser step; E: the best
came from the first step or at most 4 steps were taken) or after ``n_iter`` iterations. Restarts
from random points of the box are vmapped in one compiled program and the run with the lowest
final objective wins. Every accepted step can only lower the objective (the M-step keeps the old
Θ if the optimiser did not improve; the E-step's history includes its starting point), so the
objective never increases across EM iterations.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core.config import Config, option
from ..core.trainer_program import patience_step
from .data import MesoData
from .model import MesoConfig, _loss_parts
from .params import MesoParams, from_vector

__all__ = ["EMConfig", "INIT_EM", "init_Z", "em_single", "bfgs_box"]

Z_MIN = 1e-5


@dataclasses.dataclass(frozen=True)
class EMConfig(Config):
    """Settings of the hard-EM stage of :func:`~spikejax.meso.fit_em` (neuLVM defaults where they differ).

    Attributes
    ----------
    n_restarts : int
        Random restarts from the box, vmapped in one program (5).
    n_iter : int
        Maximum EM iterations (20).
    m_maxiter : int
        Maximum BFGS iterations per M-step (200).
    m_tol : float
        BFGS tolerance: stop when the relative change of the objective between two
        iterations falls below it.
    e_maxiter : int
        Maximum Adam steps per E-step (200).
    learning_rate : float
        Adam learning rate of the E-step (1e-3).
    e_patience : int
        Consecutive non-best steps before the E-step stops (3).
    smooth_bins : float
        σ in bins of the Gaussian smoothing of the data-driven Z initialisation (100 = 400 ms).
    """

    n_restarts: int = option(5, ge=1, help="random restarts from the box (vmapped)")
    n_iter: int = option(20, ge=1, help="maximum EM iterations")
    m_maxiter: int = option(200, ge=1, help="maximum BFGS iterations per M-step")
    m_tol: float = option(1e-6, gt=0.0, help="relative-change tolerance of the M-step")
    e_maxiter: int = option(200, ge=1, help="maximum Adam steps per E-step")
    learning_rate: float = option(1e-3, gt=0.0, help="Adam learning rate of the E-step")
    e_patience: int = option(3, ge=1, help="consecutive non-best steps before the E-step stops")
    smooth_bins: float = option(100.0, ge=0.0, help="sigma (bins) of the smoothing of the initial Z")


#: Hard-EM settings used as the initialiser of the marginal-likelihood fit (a few short iterations:
#: the joint mode is only a starting region, the marginal stage corrects its bias). Ten random
#: starts, of which the marginal stage continues the best ``MarginalConfig.n_continue`` by log p̂.
INIT_EM = EMConfig(n_restarts=10, n_iter=6, m_maxiter=60, e_maxiter=60)


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
        lp = _loss_parts(from_vector(base, _from_box(u, lo, hi)), Z, y, A0, age0, I_ext, cfg)
        return lp.total, lp

    vg = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)
    opt = optax.adam(em.learning_rate)
    nan = jnp.asarray(jnp.nan, dtype)
    inf = jnp.asarray(jnp.inf, dtype)
    u0 = _to_box(x0, lo, hi)
    s0 = {
        # shared
        "phase": jnp.asarray(0),  # 0 = M-step, 1 = E-step, 2 = done
        "k": jnp.asarray(0), "it": jnp.asarray(0), "Z": Z0,
        "objective": jnp.full((2 * em.n_iter + 1,), nan),
        "m_steps": jnp.zeros((em.n_iter,), jnp.int32), "e_steps": jnp.zeros((em.n_iter,), jnp.int32),
        "e_curves": jnp.full((em.n_iter, em.e_maxiter, 3), nan),
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
        n_bad, e_stall = patience_step(new_best, s["n_bad"], em.e_patience)  # core's patience counter
        e_i = s["e_i"] + 1
        e_done = (e_i >= em.e_maxiter) | e_stall
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
        stop_after_e = ~(s["m_accepted"] >= 1) | ~e_improved | (k + 1 >= em.n_iter)
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
    final = _loss_parts(from_vector(base, x), s["Z"], y, A0, age0, I_ext, cfg)
    return {
        "x": x, "Z": s["Z"], "loss": final.total, "L_y": final.L_y, "L_Z": final.L_Z,
        "n_em": s["k"], "objective": s["objective"], "m_steps": s["m_steps"], "e_steps": s["e_steps"],
        "e_curves": s["e_curves"],
    }


@functools.partial(jax.jit, static_argnames=("cfg", "em"))
def _em_batch(x0s, Z0, base, arrays, lo, hi, *, cfg, em):
    return jax.vmap(lambda x0: em_single(x0, Z0, base, arrays, lo, hi, cfg=cfg, em=em))(x0s)
