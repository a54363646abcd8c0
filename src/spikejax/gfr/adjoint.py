"""GFR simulation with a hand-written reverse-mode adjoint: the gradient of stage-2 training.

The recursion of :func:`spikejax.gfr.model.simulate` (per bin, ``D = 1 - lambda``)::

    h_t = D h_{t-1} + alpha I_t + kappa beta f_{t-1},    m_t = mean_i h_t,    f_t = g(m_t)

has, for a loss ``L(f_1..f_T)`` with output cotangents ``l_t = dL/df_t``, the adjoint recursion
(run backward from ``t = T``, with ``a_{T+1} = 0``)::

    q_t = l_t + kappa beta . a_{t+1}             (dL/df_t, direct and through h_{t+1})
    a_t = D a_{t+1} + q_t g'(m_t) / n            (dL/dh_t)

and then, in one contraction each over all bins, ``dL/dalpha = sum_t a_t I_t``,
``dL/dbeta = kappa sum_t a_t f_{t-1}``, ``dL/dI_t = alpha . a_t``, and the activation's parameters
from the vector-Jacobian product of ``g`` at all ``m_t`` with the cotangents ``q_t``.

Autodiff of the ``lax.scan`` stores ``h_t`` and every intermediate of the step and transposes them
one by one; the adjoint keeps only ``m_t`` and ``f_t``, evaluates ``g'(m_t)`` for all bins at once
outside the loop, and leaves four element-wise operations per bin in the sequential backward loop.
On the stage-2 workload (300 members x 12 sweeps x 1000 bins, 8 traces, CPU) loss + gradient take
about half the time of autodiff (benchmarks/RESULTS.md, "Session 5").

Reverse mode only (``jax.custom_vjp``): :func:`simulate` stays the function to use for forward-mode
derivatives, Hessians or gradient checkpointing. ``decay`` gets no gradient (it is stopped in the
model too).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .model import GFR, GFRLayer, _validate_current

__all__ = ["simulate_adjoint"]


def simulate_adjoint(model: GFR | GFRLayer, current: jax.Array) -> jax.Array:
    """Firing rates (spikes/ms) of ``model`` driven by ``current`` (pA, time on the last axis), from
    the zero state: the numbers of :func:`spikejax.gfr.model.simulate`, with a hand-written
    reverse-mode gradient (see the module docstring). Not forward-mode differentiable."""
    cur = _validate_current(model, current)
    xs = jnp.moveaxis(cur, -1, 0)
    batch = xs.shape[1:-1] if isinstance(model, GFRLayer) else xs.shape[1:]
    h0, f0 = model.init_state(batch)
    f = _run(float(model.kappa), model.alpha, model.beta, jax.lax.stop_gradient(model.decay), model.g, h0, f0, xs)
    return jnp.moveaxis(f, 0, -1)


def _forward(kappa, alpha, beta, decay, g, h0, f0, xs):
    d = 1.0 - decay

    def step(carry, x):
        h, f_prev = carry
        h = d * h + alpha * x[..., None] + kappa * beta * f_prev[..., None]
        m = jnp.mean(h, axis=-1)
        f = g(m)
        return (h, f), (f, m)

    _, (f, m) = jax.lax.scan(step, (h0, f0), xs)
    return f, m


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _run(kappa, alpha, beta, decay, g, h0, f0, xs):
    return _forward(kappa, alpha, beta, decay, g, h0, f0, xs)[0]


def _run_fwd(kappa, alpha, beta, decay, g, h0, f0, xs):
    f, m = _forward(kappa, alpha, beta, decay, g, h0, f0, xs)
    return f, (alpha, beta, decay, g, h0, f0, xs, f, m)


def _sum_to(x, shape):
    """Sum ``x`` over the axes it gained by broadcasting against ``shape``."""
    lead = x.ndim - len(shape)
    x = jnp.sum(x, axis=tuple(range(lead))) if lead else x
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and x.shape[i] != 1)
    return jnp.sum(x, axis=axes, keepdims=True) if axes else x


def _run_bwd(kappa, res, ct_f):
    alpha, beta, decay, g, h0, f0, xs, f, m = res
    n = alpha.shape[-1]
    d = 1.0 - decay
    # g'(m_t) for all bins at once: g acts element-wise on m
    _, gprime = jax.jvp(g, (m,), (jnp.ones_like(m),))
    wb = kappa * beta

    f_prev = jnp.concatenate([f0[None], f[:-1]], axis=0)

    def back(carry, inp):
        a_next, acc_a, acc_b = carry
        l_t, gp_t, x_t, fp_t = inp
        q = l_t + jnp.sum(wb * a_next, axis=-1)
        a = d * a_next + (q * gp_t / n)[..., None]
        return (a, acc_a + a * x_t[..., None], acc_b + a * fp_t[..., None]), (q, jnp.sum(a * alpha, axis=-1))

    zero = jnp.zeros(m.shape[1:] + (n,), m.dtype)
    (a1, acc_a, acc_b), (q, d_x) = jax.lax.scan(back, (zero, zero, zero), (ct_f, gprime, xs, f_prev), reverse=True)
    d_alpha = _sum_to(acc_a, alpha.shape)
    d_beta = _sum_to(kappa * acc_b, beta.shape)
    # parameters of g: dL/dtheta = sum_t q_t dg(m_t)/dtheta (the cotangents of f_t before g')
    _, g_vjp = jax.vjp(lambda gg: gg(m), g)
    (d_g,) = g_vjp(q)
    d_h0 = d * a1
    d_f0 = jnp.sum(wb * a1, axis=-1)
    return d_alpha, d_beta, jnp.zeros_like(decay), d_g, d_h0, d_f0, d_x


_run.defvjp(_run_fwd, _run_bwd)
