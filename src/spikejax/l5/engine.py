"""The L5 simulation: sims x directions vmapped, ``lax.scan`` over 25-step blocks of steps.

One run (one network, one direction) integrates

    tau dr/dt = -r + phi(W r + u(t)),   W_in = I,

with forward Euler (default) or the original RK4 (output clipped at 0), then, from step
``number_steps_before_learning`` on and outside 'Rest' phases, the weights
``W <- W + dt * M * G / tau_learn`` (or the same through RK4). Rates and (type-level) weights
are averaged over blocks of ``block`` steps; the final weight is the mean over the last
25 blocks (as the original's ``weights[:, -25:]`` on block-averaged samples).

Threshold filters are recursive (O(N) per step): the uniform BCM window and the truncated
exponential Slide_BCM window are running sums over a ring buffer of the last L rates
(L = int(-(tau_threshold/dt) ln 0.1)), exactly the original's windows; ``threshold_filter='ema'``
uses untruncated leaky integrators instead (no buffer, for tuning and sweeps).

Weights: for the faithful BCM / Slide_BCM rules with Euler the update is
``dt/tau_learn * (m_row * post) (x) (m_col * s * u)`` and the drive is ``u(t) = c(t) @ B`` with
K <= 3 fixed patterns (:func:`~spikejax.l5.stimulus.stimulus_basis`), so ``W(t) = W0 + A(t)^T Q``
exactly, with a K x N state A: the run carries A, never writes an N x N matrix per step, and the
directions of a network share W0 (``Spec.low_rank``; ``make_spec(dense_weights=True)`` forces the
dense carry). Other rules, the corrected variant and RK4 carry W densely.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ShapeError, check_allocation, is_traced
from ..core.precision import matmul
from .dynamics import PHASE_MODES, neuron_mask, phase_row_masks, phi, rule_gradient
from .model import L5Model, L5Params, Spec, _rank1
from .network import L5Network, check_network, type_index
from .stimulus import spatial_projection, stimulus_at, stimulus_basis, thalamic_gain
from .trajectory import L5Trajectory

__all__ = ["simulate", "apply_gain"]


def _remat_group(n_blocks: int) -> int:
    """Largest divisor of ``n_blocks`` not above its square root (1 for short segments)."""
    if n_blocks < 16:
        return 1
    g = int(np.sqrt(n_blocks))
    while n_blocks % g:
        g -= 1
    return g


def _run_one(p: L5Params, spec: Spec, W0, struct, pos_a, pos_b, r0, theta, theta_pref):
    N = spec.N
    n = int(sum(N))
    dtype = r0.dtype
    tid = type_index(N)
    sgn = jnp.asarray(np.where(tid < 2, 1.0, -1.0), dtype)
    amp_n = p.amplitude[tid]
    steady_n = p.steady[tid]
    tau_n = p.tau[tid]
    dt = spec.dt
    s = spatial_projection(pos_a, pos_b, theta)
    gain = None
    if spec.stimulus == "thalamic":
        gain = thalamic_gain(tid, N, theta, theta_pref, spec.thal_fraction, p.thal_g_orth, p.thal_g_pref)

    low_rank = spec.low_rank
    if low_rank:
        # Faithful BCM / Slide_BCM with Euler: dW = dt/tau_learn * (m_row * post) (x) (m_col * s * u), and
        # u(t) = c(t) @ B with K fixed patterns, so W(t) = W0 + A(t)^T Q with Q = m_col * s * B (K x N)
        # and A (K x N) accumulating dt/tau_learn * c_k(t) * m_row * post. Exact algebra: the N x N
        # matrix is never written; W r = W0 r + A^T (Q r).
        Bmat, c_at = stimulus_basis(spec.stimulus, amp_n, steady_n, s, p.spatialF, p.temporalF, p.spatialPhase, gain)
        row_np, col_np = _rank1(neuron_mask(N, spec.neurons, spec.variant))
        Q = Bmat * jnp.asarray(col_np, dtype)[None, :]
        if spec.rule == "Slide_BCM":
            Q = Q * sgn[None, :]
        row_n = jnp.asarray(row_np, dtype)

        def u_at(t):
            cv = c_at(t.astype(dtype))
            return cv @ Bmat, cv
    else:
        def u_at(t):
            return stimulus_at(spec.stimulus, amp_n, steady_n, s, t.astype(dtype), p.spatialF, p.temporalF, p.spatialPhase, gain), None

    def matvec(Wst, r):
        if low_rank:  # Wst is A (low_rank implies learning)
            return matmul(W0, r) + matmul(Wst.T, matmul(Q, r))
        return matmul(Wst, r)

    def nl(x):
        return phi(x, kind=spec.nonlinearity, lo=p.phi_lo, hi=p.phi_hi, gamma=spec.gamma, beta=spec.smooth_beta, variant=spec.variant)

    def f_rate(r, W, u):
        return (-r + nl(matvec(W, r) + u)) / tau_n

    def rate_step(r, W, u):
        if spec.integrator == "forward_euler":
            return r + dt * f_rate(r, W, u)
        k1 = f_rate(r, W, u)
        k2 = f_rate(r + 0.5 * k1 * dt, W, u)
        k3 = f_rate(r + 0.5 * k2 * dt, W, u)
        k4 = f_rate(r + k3 * dt, W, u)
        return jnp.maximum(r + dt * ((1.0 / 6.0) * k1 + (1.0 / 3.0) * k2 + (1.0 / 3.0) * k3 + (1.0 / 6.0) * k4), 0.0)

    # ---- masks (static numpy) ----
    nmask_np = neuron_mask(N, spec.neurons, spec.variant)
    rows_np = phase_row_masks(N, spec.variant)
    nmask = jnp.asarray(nmask_np, dtype)
    rows = jnp.asarray(rows_np, dtype)
    modes = np.asarray(spec.phase_modes, dtype=np.int32)
    rest = PHASE_MODES.index("Rest")
    used = [m for m in set(spec.phase_modes) if m != rest]
    rows_trivial = all(np.all(rows_np[m] == 1) for m in used)
    mask_trivial = bool(np.all(nmask_np == 1)) and rows_trivial
    modes_j = jnp.asarray(modes)

    # ---- threshold filters ----
    # window: running sums over the last L rates; the rates leaving the window during a block are
    # read once per block from a ring of past blocks (needs L >= block), so the per-step carry
    # holds only O(N) sums.
    C = int(spec.capacity)
    B = spec.block
    window = spec.threshold_filter == "window"
    a_exp = jnp.exp(-dt / p.tau_threshold)
    L = jnp.clip(jnp.floor(-(p.tau_threshold / dt) * jnp.log(jnp.asarray(0.1, dtype))).astype(jnp.int32), B, max(C, B))
    aL = jnp.exp(-(L * dt) / p.tau_threshold)
    n_slots = max(C, B) // B + 2
    if window:
        thr0 = (r0, r0**2, r0**2)
        ring0 = jnp.zeros((n_slots, B, n), dtype)
    else:
        thr0 = (r0, r0**2)
        ring0 = jnp.zeros((), dtype)

    def leaving(ring, t0):
        # rates r_h (h = step index of the sample, r0 has h = -1) leaving the window at steps t0..t0+B-1
        h0 = t0 - L
        c1 = jnp.floor_divide(h0, B)
        off = h0 - c1 * B
        cat = jnp.concatenate([ring[jnp.mod(c1, n_slots)], ring[jnp.mod(c1 + 1, n_slots)]], axis=0)
        old = jax.lax.dynamic_slice_in_dim(cat, off, B, axis=0)
        h = h0 + jnp.arange(B)
        old = jnp.where((h == -1)[:, None], r0[None, :], old)
        return old, h >= -1

    def thr_update(thr, r_new, old, valid):
        if window:
            s1, s2, e = thr
            oldv = jnp.where(valid, old, 0.0)
            s1 = s1 + r_new - oldv
            s2 = s2 + r_new**2 - oldv**2
            e = a_exp * e + r_new**2 - aL * oldv**2
            return (s1, s2, e)
        m1, m2 = thr
        lam = dt / p.tau_threshold
        return (m1 + lam * (r_new - m1), m2 + lam * (r_new**2 - m2))

    def thr_values(thr, j):
        if window:
            s1, s2, e = thr
            cnt = jnp.minimum(j + 1, L).astype(dtype)
            return s2 / cnt, (dt / p.tau_threshold) * e, s1 / cnt
        m1, m2 = thr
        return m2, m2, m1

    def w_step_low_rank(A, r, cv, thr, j, mode):
        th_b, th_s, _ = thr_values(thr, j)
        th = th_b if spec.rule == "BCM" else th_s
        post = r * (r - th) / th
        rmask = row_n if rows_trivial else row_n * rows[mode]
        return A + (dt / p.tau_learn) * cv[:, None] * (rmask * post)[None, :]

    def w_step(W, r, u, thr, j, mode):
        if mask_trivial:
            mask = struct if spec.variant == "corrected" else 1.0
        else:
            mask = nmask if rows_trivial else nmask * rows[mode][:, None]
            if spec.variant == "corrected":
                mask = mask * struct
        th_b, th_s, rbar = thr_values(thr, j)

        def dW(Wc):
            G = rule_gradient(spec.rule, spec.variant, Wc, r, u, sgn, theta_bcm=th_b, theta_slide=th_s, r_mean=rbar)
            return mask * G / p.tau_learn

        if spec.rule == "None":
            W_new = W
        elif spec.integrator == "runge_kutta":
            if spec.rule == "Oja":
                k1 = dW(W)
                k2 = dW(W + 0.5 * k1 * dt)
                k3 = dW(W + 0.5 * k2 * dt)
                k4 = dW(W + k3 * dt)
            else:
                k1 = k2 = k3 = k4 = dW(W)
            W_new = W + dt * ((1.0 / 6.0) * k1 + (1.0 / 3.0) * k2 + (1.0 / 3.0) * k3 + (1.0 / 6.0) * k4)
        else:
            W_new = W + dt * dW(W)
        if spec.integrator == "runge_kutta" and spec.variant == "faithful":
            W_new = jnp.maximum(W_new, 0.0)
        if spec.variant == "corrected":
            W_new = jnp.where(sgn[None, :] > 0, jnp.maximum(W_new, 0.0), jnp.minimum(W_new, 0.0)) * struct
        return W_new

    learning = spec.learning
    acc_from = spec.n_steps - spec.acc_steps
    keep_W = spec.record_weights and learning
    has_rest = rest in spec.phase_modes

    def step_factory(learn_flag, acc_flag):
        # learn_flag / acc_flag: False, True or "cond" (decided per step: only in a block that
        # straddles the learning onset or the start of the final-weight window)
        def step(carry, xs):
            t, old, valid = xs
            r, W, thr, wacc = carry
            u, cv = u_at(t)
            r_new = rate_step(r, W if learning else W0, u)
            j = t + 1
            thr = thr_update(thr, r_new, old, valid)
            if learning and learn_flag:
                mode = modes_j[jnp.mod(t, len(modes))]
                if low_rank:
                    W_new = w_step_low_rank(W, r_new, cv, thr, j, mode)
                    if learn_flag == "cond" or has_rest:
                        do = (t >= spec.n_before) & (mode != rest)
                        W_new = jnp.where(do, W_new, W)
                    W = W_new
                elif learn_flag == "cond" or has_rest:
                    do = (t >= spec.n_before) & (mode != rest)
                    W = jax.lax.cond(do, lambda W_: w_step(W_, r_new, u, thr, j, mode), lambda W_: W_, W)
                else:
                    W = w_step(W, r_new, u, thr, j, mode)
            if keep_W and acc_flag:
                if acc_flag == "cond" and low_rank:
                    wacc = wacc + jnp.where(t >= acc_from, W, 0.0)
                elif acc_flag == "cond":
                    wacc = jax.lax.cond(t >= acc_from, lambda a: a + W, lambda a: a, wacc)
                else:
                    wacc = wacc + W
            ys = (r_new, W) if spec.record_states else r_new
            return (r_new, W, thr, wacc), ys

        return step

    P = np.zeros((n, 4))
    P[np.arange(n), tid] = 1.0
    P = jnp.asarray(P / np.maximum(P.sum(0), 1.0), dtype)
    PW0P = P.T @ W0 @ P if low_rank and spec.record_weights else None

    def block_factory(step):
        def block_fn(carry_ring, bts):
            carry, ring = carry_ring
            b, ts = bts
            if window:
                old, valid = leaving(ring, ts[0])
            else:
                old, valid = jnp.zeros((B, 1), dtype), jnp.zeros((B,), bool)
            carry, ys = jax.lax.scan(step, carry, (ts, old, valid))
            rs = ys[0] if spec.record_states else ys
            if window:
                ring = jax.lax.dynamic_update_slice_in_dim(ring, rs[None], jnp.mod(b, n_slots), axis=0)
            out = {"rates": jnp.mean(rs, axis=0)}
            if spec.record_weights:
                if low_rank:
                    out["w_trace"] = PW0P + (P.T @ carry[1].T) @ (Q @ P)
                else:
                    out["w_trace"] = P.T @ (carry[1] if learning else W0) @ P
            if spec.record_states:
                out["r_steps"], out["W_steps"] = ys
            return (carry, ring), out

        return jax.checkpoint(block_fn) if spec.remat else block_fn

    # static segments of blocks with the same (learn, acc) flags

    def flag(start, end, edge):
        return True if start >= edge else (False if end <= edge else "cond")

    segs = []
    if low_rank:
        # the gates cost O(K N) per step here: one scan body (a third of the compile time)
        segs.append([0, spec.n_blocks, ("cond", "cond")])
    for blk in range(spec.n_blocks if not low_rank else 0):
        f = (flag(blk * B, (blk + 1) * B, spec.n_before), flag(blk * B, (blk + 1) * B, acc_from))
        if segs and segs[-1][2] == f:
            segs[-1][1] = blk + 1
        else:
            segs.append([blk, blk + 1, f])
    if low_rank:
        W_c = jnp.zeros((Bmat.shape[0], n), dtype)
    else:
        W_c = W0 if learning else jnp.zeros((), dtype)
    wacc0 = jnp.zeros_like(W_c) if keep_W else jnp.zeros((), dtype)
    ts_all = jnp.arange(spec.n_steps, dtype=jnp.int32).reshape(spec.n_blocks, spec.block)
    carry = ((r0, W_c, thr0, wacc0), ring0)
    b_all = jnp.arange(spec.n_blocks, dtype=jnp.int32)
    outs = []
    for b0, b1, (lf, af) in segs:
        fn = block_factory(step_factory(lf, af))
        G = _remat_group(b1 - b0) if spec.remat else 1
        if G > 1:
            # two-level checkpointing: the backward pass keeps one carry (with the threshold ring)
            # per group of G blocks plus the G blocks being recomputed, instead of one per block
            def group_fn(c, xs, fn=fn):
                return jax.lax.scan(fn, c, xs)

            xs = (b_all[b0:b1].reshape(-1, G), ts_all[b0:b1].reshape(-1, G, spec.block))
            carry, o = jax.lax.scan(jax.checkpoint(group_fn), carry, xs)
            o = jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), o)
        else:
            carry, o = jax.lax.scan(fn, carry, (b_all[b0:b1], ts_all[b0:b1]))
        outs.append(o)
    carry = carry[0]
    out = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=0), *outs)
    wacc = carry[3]
    res = {"rates": out["rates"]}
    if spec.record_weights:
        res["w_trace"] = out["w_trace"]
        if keep_W and low_rank:
            res["W_final"] = W0 + (wacc / spec.acc_steps).T @ Q
        else:
            res["W_final"] = wacc / spec.acc_steps if keep_W else W0
    if spec.record_states:
        res["r_steps"] = out["r_steps"].reshape(spec.n_steps, n)
        W_steps = out["W_steps"]
        W_steps = W_steps.reshape((spec.n_steps,) + W_steps.shape[2:])
        if low_rank:
            W_steps = W0[None] + jnp.einsum("tkn,km->tnm", W_steps, Q)
        res["W_steps"] = W_steps if learning else jnp.broadcast_to(W0, (spec.n_steps, n, n))
    return res


def apply_gain(W, w_gain, N):
    """W[post, pre] scaled by the type-level gain ``w_gain[type(pre), type(post)]``."""
    tid = type_index(N)
    return W * w_gain[tid][:, tid].T


def _simulate(p: L5Params, net: L5Network, spec: Spec) -> L5Trajectory:
    theta = jnp.deg2rad(p.degree)
    theta_pref = theta[spec.thal_degree_index] if spec.stimulus == "thalamic" else theta[0]
    W0 = jax.vmap(lambda W: apply_gain(W, p.w_gain, spec.N))(net.W)

    def per_sim(W, st, a, b, r0):
        f = lambda th: _run_one(p, spec, W, st, a, b, r0, th, theta_pref)  # noqa: E731
        return jax.vmap(f)(theta)

    res = jax.vmap(per_sim)(W0, net.struct, net.pos_a, net.pos_b, net.r0)
    return L5Trajectory(
        rates=res["rates"],
        w_trace=res.get("w_trace"),
        W_final=res.get("W_final"),
        W_init=W0,
        r_steps=res.get("r_steps"),
        W_steps=res.get("W_steps"),
        degree=p.degree,
        dt=spec.dt,
        block=spec.block,
        N=spec.N,
    )


_simulate_jit = eqx.filter_jit(_simulate)


def simulation_bytes(spec: Spec, sim_number: int, n_directions: int) -> int:
    """Estimated bytes of one simulation: the gained W per network, and per network and direction the
    weight carry (dense N x N when the weights learn without the low-rank form), the ring buffer of the
    threshold window and the block-averaged records."""
    n = int(sum(spec.N))
    itemsize = jnp.dtype(jnp.result_type(float)).itemsize
    dense = spec.learning and (n > 20000 or not spec.low_rank)  # (the low-rank test builds an N x N mask)
    per_run = (n * n if dense else 4 * n) + (spec.capacity + spec.n_blocks + 4) * n + 16 * spec.n_blocks
    if spec.record_weights and dense:
        per_run += n * n  # W_final
    return int(itemsize * (sim_number * n * n + sim_number * n_directions * per_run))


def _run(params: L5Params, net: L5Network, spec: Spec, *, jit: bool = True) -> L5Trajectory:
    if not isinstance(spec, Spec):
        raise TypeError(f"spec must be a Spec (see make_spec), got {type(spec).__name__}")
    if not isinstance(params, L5Params):
        raise TypeError(f"params must be L5Params, got {type(params).__name__}")
    params.validate(spec.dt)
    check_network(net, spec.N)
    if not is_traced(net.W):
        check_allocation(simulation_bytes(spec, net.W.shape[0], int(np.size(params.degree))),
                         argument="N, sim_number, degree and Ttau",
                         what=f"simulating {net.W.shape[0]} network(s) of {sum(spec.N)} neurons for {spec.n_steps} steps "
                              f"and {int(np.size(params.degree))} direction(s)")
    if spec.n_steps % spec.block:
        raise ShapeError(f"n_steps={spec.n_steps} must be a multiple of block={spec.block}")
    return (_simulate_jit if jit else _simulate)(params, net, spec)


def simulate(model: L5Model, *, jit: bool = True) -> L5Trajectory:
    """Run every network of ``model.net`` for every direction in ``model.params.degree``.

    Deterministic (the randomness is in the sampled networks: :func:`~spikejax.l5.build_model`
    takes the key). Pure and differentiable in ``model.params`` and ``model.net.W``;
    ``model.spec`` is static. ``jax.jit`` / ``jax.vmap`` of it return an :class:`L5Trajectory`.
    ``jit=False`` skips the inner compiled call (inside a caller's own ``jit``/``grad``).
    """
    if not isinstance(model, L5Model):
        raise TypeError(f"model must be an L5Model (see build_model), got {type(model).__name__}")
    return _run(model.params, model.net, model.spec, jit=jit)
