"""Connectivity from spike trains: the teacher-forced log-likelihood and its maximisation.

:func:`spike_log_likelihood` is the log-likelihood (nats) of observed spike counts under a GLM-family
model, a weight matrix (or a candidate edge set) and inputs, with every neuron's conditional
intensity computed from the *recorded* history (teacher forcing):

    g_i(t)  = model.input(sum_j W[j, i] F_j(t) + S_i(t),  bias_i + sum_c gains[i, c] I_c(t) + E_i(t))
    mu_i(t) = model.non_linearity(g_i(t))

where ``F_j(t) = sum_k c(k) y_j(t - 1 - k)`` filters the presynaptic trace ``y`` (``model.presynaptic`` of
the counts: the count, ``dt`` times the count for PoissonGLM, the leaky activation for SA models) with the
model's coupling profile ``c`` (``model.connectivity_filter()``), ``S_i`` is the self (refractory) term
where the model has one, ``I`` are shared inputs with per-neuron ``gains`` and ``E`` a per-neuron input.
Observations are Poisson (``x log mu - mu - log x!``) or Bernoulli. The recording is processed in
windows of ``window`` steps by a ``lax.scan`` that carries the last ``T`` traces (and the SA activation),
each window rematerialised in the backward pass, so memory does not grow with the recording's length. It
is differentiable in the weights (dense or per edge), ``bias``, ``gains`` and the model's parameters
(kernel time constants included).

:func:`fit_connectivity` maximises it over the weights, biases and gains: every neuron's incoming
weights are an independent problem, solved for all neurons at once — by BFGS in whitened coordinates
with per-neuron curvature, line searches and stopping, all neurons advanced as one batch (the data in
memory; an L1 penalty adds accelerated proximal gradient, vmapped; optimistix BFGS / L-BFGS vmapped over
neurons on request) or, for long recordings, by the core trainer (:func:`spikejax.core.fit`, Adam on minibatches of time
windows, a proximal L1 step). It returns a :class:`~spikejax.glm.GLMFitResult`.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError, ShapeError, SpikejaxError, check_array, check_choice, check_scalar, is_traced
from .models import GLMModel, SAModel
from .trajectory import GLMTrajectory

__all__ = ["spike_log_likelihood", "fit_connectivity", "OBSERVATIONS", "CONNECTIVITY_SOLVERS"]

OBSERVATIONS = ("poisson", "bernoulli")
CONNECTIVITY_SOLVERS = ("auto", "bfgs", "optimistix-bfgs", "optimistix-lbfgs", "trainer")

# in-memory solver: at most this many bytes of filtered features (float) before "auto" takes the trainer
_IN_MEMORY_BYTES = 1 << 30
_KEY0 = None


def _dummy_key():
    global _KEY0
    if _KEY0 is None:
        _KEY0 = jax.random.key(0)
    return _KEY0


# ------------------------------------------------------------------------------------------------
# validation helpers (outside jit)
# ------------------------------------------------------------------------------------------------


def _observation(model: GLMModel, observation: str | None) -> str:
    if observation is None:
        observation = getattr(type(model), "emission", "poisson")
        if observation is None:
            raise ConfigError(
                f"{type(model).__name__} has a deterministic emission: it has no spike-train likelihood; fit its data "
                "with a stochastic model (e.g. PoissonGLM) or pass observation='poisson' / 'bernoulli'")
    return check_choice(observation, "observation", OBSERVATIONS)


def _check_model(model) -> None:
    if not isinstance(model, GLMModel):
        raise TypeError(f"model must be a spikejax.glm model (GLMModel subclass), got {type(model).__name__}")
    from .models import ThresholdSAM

    if isinstance(model, ThresholdSAM):
        raise ConfigError("model: ThresholdSAM's input has a random background, so its conditional intensity given the "
                          "history is not defined; infer with a stochastic model (e.g. PoissonGLM)")
    kernel = model.connectivity_filter()
    if kernel.edge_kernel is not None:
        raise ConfigError(f"model: {type(model).__name__} has a per-edge (non-separable) kernel; the inference routines "
                          "need a shared coupling profile (LagKernel(coupling=...))")


def _raster_time_major(spikes) -> jax.Array:
    """``(n_steps, N)`` counts from a GLMTrajectory (time-major) or a neuron-major ``(N, n_steps)`` array."""
    if isinstance(spikes, GLMTrajectory):
        if spikes.spikes.ndim != 2:
            raise ShapeError(f"spikes: a trajectory of one network (n_steps, N) is needed, got shape {tuple(spikes.spikes.shape)} "
                             "(a stacked batch: pass one network's trajectory at a time)")
        x = spikes.spikes
        if x.dtype == jnp.bool_:
            x = x.astype(jnp.int32)
        return x
    if is_traced(spikes):
        x = jnp.asarray(spikes)
    else:
        x = check_array(spikes, "spikes", ndim=2, low=0.0, integer=True)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.int32)
    return x.T


def _prepare_inputs(n_steps: int, n: int, inputs, gains, stimulus, bias, dtype):
    if inputs is not None:
        inputs = jnp.asarray(inputs, dtype) if is_traced(inputs) else check_array(inputs, "inputs", ndim=(1, 2), dtype=dtype)
        if inputs.ndim == 1:
            inputs = inputs[:, None]
        if inputs.shape[0] != n_steps:
            raise ShapeError(f"inputs must be time-major (n_steps={n_steps}, C) or (n_steps,), got shape {tuple(inputs.shape)}")
        c = inputs.shape[1]
        if gains is None:
            raise ConfigError("inputs need gains (N, C): each neuron's weight on each shared input")
        gains = jnp.asarray(gains, dtype) if is_traced(gains) else check_array(gains, "gains", ndim=(1, 2), dtype=dtype)
        if gains.ndim == 1:
            gains = gains[:, None]
        if gains.shape != (n, c):
            raise ShapeError(f"gains must have shape (N={n}, C={c}) (or (N,) for one input), got {tuple(gains.shape)}")
    elif gains is not None:
        raise ConfigError("gains were given without inputs: pass inputs (n_steps, C) as well")
    if stimulus is not None:
        stimulus = jnp.asarray(stimulus, dtype) if is_traced(stimulus) else check_array(stimulus, "stimulus", (n_steps, n), dtype=dtype)
    if bias is not None:
        bias = jnp.asarray(bias, dtype) if is_traced(bias) else check_array(bias, "bias", ndim=(0, 1), dtype=dtype)
        bias = jnp.broadcast_to(bias, (n,)) if bias.ndim == 0 else bias
        if bias.shape != (n,):
            raise ShapeError(f"bias must have shape (N={n},) or be a scalar, got {tuple(bias.shape)}")
    return inputs, gains, stimulus, bias


def _prepare_weights(weights, edges, n: int, dtype):
    """``("dense", W)`` or ``("edges", (w, src, dst))``."""
    from .network import Network

    if isinstance(weights, Network):
        if weights.is_stacked or weights.n_nodes != n:
            raise ShapeError(f"weights: a network of {n} neurons is needed, got {weights!r}")
        if edges is not None:
            raise ConfigError("edges is for a weight vector; a Network carries its own edge list")
        return "edges", (weights.weight.astype(dtype), weights.src, weights.dst)
    if edges is None:
        W = jnp.asarray(weights, dtype) if is_traced(weights) else check_array(weights, "weights", (n, n), dtype=dtype)
        if W.shape != (n, n):
            raise ShapeError(f"weights must be the square (N={n}, N) matrix W[pre, post], got shape {tuple(W.shape)}")
        return "dense", W
    src, dst = _edge_arrays(edges, n)
    w = jnp.asarray(weights, dtype) if is_traced(weights) else check_array(weights, "weights", (src.shape[0],), dtype=dtype)
    if w.shape != src.shape:
        raise ShapeError(f"weights must have one entry per candidate edge ({src.shape[0]},), got shape {tuple(w.shape)}")
    return "edges", (w, src, dst)


def _edge_arrays(edges, n: int):
    """Candidate edges as int32 ``(src, dst)`` from a pair of arrays or a boolean ``(N, N)`` mask."""
    if isinstance(edges, (tuple, list)) and len(edges) == 2:
        src = np.asarray(edges[0])
        dst = np.asarray(edges[1])
        if src.dtype.kind not in "iu" or dst.dtype.kind not in "iu" or src.ndim != 1 or src.shape != dst.shape:
            raise ShapeError(f"edges must be (src, dst) integer arrays of one length or a boolean (N, N) mask, got "
                             f"{src.dtype}{src.shape} and {dst.dtype}{dst.shape}")
    else:
        m = np.asarray(edges)
        if m.shape != (n, n) or m.dtype.kind not in "bui":
            raise ShapeError(f"edges must be (src, dst) integer arrays or a boolean (N={n}, N) mask, got {m.dtype}{m.shape}")
        src, dst = np.nonzero(m)
    if src.size and (src.min() < 0 or dst.min() < 0 or src.max() >= n or dst.max() >= n):
        raise ConfigError(f"edges: neuron indices must lie in [0, N={n}), got [{min(src.min(), dst.min())}, {max(src.max(), dst.max())}]")
    return jnp.asarray(src, jnp.int32), jnp.asarray(dst, jnp.int32)


def _initial_state(model, n: int, initial_window, dtype):
    """History ``(T, N)`` in time order (row T-1 = previous step) and the SA activation."""
    kernel = model.connectivity_filter().padded()
    T = kernel.T
    if initial_window is None:
        w = jnp.zeros((n, T), dtype)
    else:
        w = jnp.asarray(initial_window, dtype) if is_traced(initial_window) else check_array(initial_window, "initial_window", (n, T), dtype=dtype)
    hist = w[:, ::-1].T  # lag-major (column 0 = previous step) -> time order
    aux = w[:, 0] if isinstance(model, SAModel) else None
    return hist, aux


# ------------------------------------------------------------------------------------------------
# the streaming likelihood (pure; runs under jit/grad/vmap)
# ------------------------------------------------------------------------------------------------


def _filter(profile: jax.Array, Z: jax.Array, L: int) -> jax.Array:
    """``F[t] = sum_k profile[k] Z[T - 1 - k + t]`` for ``t < L`` (``Z``: ``T`` history rows then ``L`` rows)."""
    T = profile.shape[0]
    if T == 1:
        return profile[0] * Z[:L]
    acc = jnp.zeros((L,) + Z.shape[1:], Z.dtype)

    def body(k, a):
        return a + profile[k] * jax.lax.dynamic_slice_in_dim(Z, T - 1 - k, L, axis=0)

    return jax.lax.fori_loop(0, T, body, acc)


def _traces(model, x, aux):
    """Presynaptic traces of counts ``x`` ``(L, N)`` (a scan for SA models' activation)."""
    if aux is None:
        tr, _ = model.presynaptic(x, None)
        return jnp.broadcast_to(tr, x.shape).astype(x.dtype), None

    def step(a, xt):
        tr, a2 = model.presynaptic(xt, a)
        return a2, tr

    aux, tr = jax.lax.scan(step, aux, x)
    return tr, aux


def _log_terms(obs: str, x, mu, constant: bool = True):
    """Per-entry log-likelihood; ``constant=False`` drops ``-log x!`` (no parameter enters it)."""
    if obs == "poisson":
        out = jax.scipy.special.xlogy(x, mu) - mu
        return out - jax.scipy.special.gammaln(x + 1.0) if constant else out
    return jax.scipy.special.xlogy(x, mu) + jax.scipy.special.xlog1py(1.0 - x, -mu)


def _window_mu(model, kernel, Z, L, wmode, wparams, drive):
    """Conditional intensities ``(L, N)`` of a window from its traces ``Z`` (history rows first)."""
    n = Z.shape[1]
    syn = jnp.zeros((L, n), Z.dtype)
    if kernel.coupling is not None:
        F = _filter(kernel.coupling, Z, L)
        if wmode == "dense":
            syn = F @ wparams
        else:
            w, src, dst = wparams
            syn = jax.ops.segment_sum((F[:, src] * w).T, dst, num_segments=n).T
    if kernel.self_kernel is not None:
        syn = syn + _filter(kernel.self_kernel, Z, L)
    g = model.input(syn, drive, key=_dummy_key())
    return model.non_linearity(g)


def _stream_ll(model, wmode, wparams, bias, gains, x, inputs, stimulus, hist, aux, obs: str, window: int):
    """Per-neuron log-likelihood ``(N,)`` of ``x`` ``(n_steps, N)`` in windows of ``window`` steps."""
    kernel = model.connectivity_filter().padded()
    n_steps, n = x.shape
    L = int(min(window, n_steps))
    n_chunks = -(-n_steps // L)
    pad = n_chunks * L - n_steps

    def chunked(a):
        if a is None:
            return None
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape((n_chunks, L) + a.shape[1:])

    mask = jnp.arange(n_chunks * L).reshape(n_chunks, L) < n_steps
    xs = (chunked(x), chunked(inputs), chunked(stimulus), mask)

    def body(carry, chunk):
        H, a = carry
        xc, ic, sc, mc = chunk
        xc = xc.astype(H.dtype)  # counts may be stored narrow (uint8): cast one window at a time
        tr, a = _traces(model, xc, a)
        Z = jnp.concatenate([H, tr], axis=0)
        drive = jnp.zeros((L, n), H.dtype)
        if bias is not None:
            drive = drive + bias
        if ic is not None:
            drive = drive + ic @ gains.T
        if sc is not None:
            drive = drive + sc
        mu = _window_mu(model, kernel, Z, L, wmode, wparams, drive)
        terms = jnp.where(mc[:, None], _log_terms(obs, xc, mu), 0.0)
        return (Z[L:], a), jnp.sum(terms, axis=0)

    body = jax.checkpoint(body) if n_chunks > 1 else body
    _, per = jax.lax.scan(body, (hist, aux), xs)
    return jnp.sum(per, axis=0)


_stream_ll_jit = eqx.filter_jit(_stream_ll)


def spike_log_likelihood(
    model: GLMModel,
    weights,
    spikes,
    *,
    edges=None,
    bias=None,
    inputs=None,
    gains=None,
    stimulus=None,
    initial_window=None,
    observation: str | None = None,
    window: int = 4096,
    per_neuron: bool = False,
) -> jax.Array:
    """Log-likelihood (nats) of observed spikes given a network's weights, teacher-forced and streamed.

    Parameters
    ----------
    model
        A GLM-family model (BernoulliGLM, PoissonGLM, RectifiedLNP, RectifiedSAM or a subclass with a shared
        coupling profile); its nonlinearity, input map, coupling profile and presynaptic trace are used, and
        its array parameters (``tau``, ``r``, ``b``, ...) are differentiable.
    weights
        The dense ``(N, N)`` matrix ``W[pre, post]``; or, with ``edges``, one weight per candidate edge
        ``(E,)``; or a :class:`~spikejax.glm.Network`.
    spikes
        A :class:`~spikejax.glm.GLMTrajectory` or a neuron-major ``(N, n_steps)`` array of counts.
    edges
        Candidate edge set: ``(src, dst)`` integer arrays or a boolean ``(N, N)`` mask (row = pre).
    bias
        Per-neuron (or scalar) offset added to the input ``g`` (besides the model's own ``b``).
    inputs, gains
        Shared inputs, time-major ``(n_steps, C)`` (or ``(n_steps,)``), and each neuron's gains ``(N, C)``
        (or ``(N,)``): the input adds ``gains @ inputs[t]``.
    stimulus
        A per-neuron input, time-major ``(n_steps, N)``, added to ``g``.
    initial_window
        History ``(N, T)`` before the first step (column 0 = previous step; SA models: the activation
        ``(N, 1)``); zeros by default.
    observation
        ``"poisson"`` or ``"bernoulli"``; default the model's emission.
    window
        Steps per streamed window (memory is bounded by one window; the value does not change the result
        beyond float summation order).
    per_neuron
        Return the ``(N,)`` per-neuron log-likelihoods instead of their sum.

    Returns
    -------
    The log-likelihood in nats (scalar, or ``(N,)``).
    """
    _check_model(model)
    obs = _observation(model, observation)
    check_scalar(window, "window", low=1, integer=True)
    dtype = jnp.result_type(float)
    x = _raster_time_major(spikes)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        x = x.astype(dtype)
    n_steps, n = x.shape
    wmode, wparams = _prepare_weights(weights, edges, n, dtype)
    inputs, gains, stimulus, bias = _prepare_inputs(n_steps, n, inputs, gains, stimulus, bias, dtype)
    hist, aux = _initial_state(model, n, initial_window, dtype)
    per = _stream_ll_jit(model, wmode, wparams, bias, gains, x, inputs, stimulus, hist, aux, obs, int(window))
    return per if per_neuron else jnp.sum(per)


# ------------------------------------------------------------------------------------------------
# connectivity inference
# ------------------------------------------------------------------------------------------------


class ConnectivityParams(eqx.Module):
    """The parameters :func:`fit_connectivity` estimates: ``weights`` ``(N, N)`` (pre, post), ``bias`` ``(N,)``, ``gains`` ``(N, C)``."""

    weights: jax.Array
    bias: jax.Array
    gains: jax.Array


def _features(model, x, inputs, hist, aux, window: int):
    """Filtered coupling features ``F`` ``(n_steps, N)`` and the self term ``S`` (or None), streamed."""
    kernel = model.connectivity_filter().padded()
    n_steps, n = x.shape
    L = int(min(window, n_steps))
    n_chunks = -(-n_steps // L)
    pad = n_chunks * L - n_steps
    xc = jnp.pad(x, [(0, pad), (0, 0)]).reshape(n_chunks, L, n)
    has_self = kernel.self_kernel is not None
    coupling = kernel.coupling if kernel.coupling is not None else jnp.zeros((kernel.T,), x.dtype)

    def body(carry, xch):
        H, a = carry
        tr, a = _traces(model, xch, a)
        Z = jnp.concatenate([H, tr], axis=0)
        F = _filter(coupling, Z, L)
        S = _filter(kernel.self_kernel, Z, L) if has_self else None
        return (Z[L:], a), (F, S)

    _, (F, S) = jax.lax.scan(body, (hist, aux), xc)
    F = F.reshape(n_chunks * L, n)[:n_steps]
    S = S.reshape(n_chunks * L, n)[:n_steps] if has_self else None
    return F, S


_features_jit = eqx.filter_jit(_features)


def _neuron_nll(theta, F, S_i, x_i, I, model, obs, n_in):
    """Negative log-likelihood of one neuron for ``theta = [w (N), bias, gains (C)]``."""
    w = theta[:n_in]
    b = theta[n_in]
    gn = theta[n_in + 1:]
    syn = F @ w
    if S_i is not None:
        syn = syn + S_i
    drive = b + (I @ gn if I is not None else 0.0)
    mu = model.non_linearity(model.input(syn, drive, key=_dummy_key()))
    return -jnp.sum(_log_terms(obs, x_i, mu, constant=False))


def _joint_nll(Theta, F, S, x, I, model, obs, mask, l2, sc):
    """Per-neuron objectives ``(N,)`` for all neurons at once; ``Theta`` ``(P, N)`` = [w (N rows), bias, gains (C rows)]."""
    n = F.shape[1]
    Wm = Theta[:n] * mask
    syn = F @ Wm
    if S is not None:
        syn = syn + S
    drive = Theta[n][None, :]
    if I is not None:
        drive = drive + I @ Theta[n + 1:]
    mu = model.non_linearity(model.input(syn, drive, key=_dummy_key()))
    per = -jnp.sum(_log_terms(obs, x, mu, constant=False), axis=0) + 0.5 * l2 * jnp.sum(Wm * Wm, axis=0)
    return per / sc


def _solve_bfgs(model, obs, F, S, x, I, mask, l2, theta0, R, scale, max_steps, rtol, atol, lbfgs=False):
    """BFGS for every neuron at once, in whitened coordinates ``theta = R^{-1} u``.

    The neurons' problems are independent; they are solved together as a batch (one GEMM per evaluation
    for all neurons) with per-neuron inverse-Hessian approximations ``(N, P, P)``, per-neuron backtracking
    (Armijo) line searches and per-neuron stopping (gradient or relative decrease below tolerance).
    """
    P, n_post = theta0.shape
    dtype = theta0.dtype

    def to_theta(U):
        return jax.scipy.linalg.solve_triangular(R, U, lower=False)

    def vg(U):
        def tot(U):
            per = _joint_nll(to_theta(U), F, S, x, I, model, obs, mask, l2, scale)
            return jnp.sum(per), per

        (_, per), g = jax.value_and_grad(tot, has_aux=True)(U)
        return per, g

    U0 = R @ theta0
    f0, g0 = vg(U0)
    H0 = jnp.broadcast_to(jnp.eye(P, dtype=dtype), (n_post, P, P))
    c1 = 1e-4

    def cond(c):
        it, _, _, _, _, done, _ = c
        return (it < max_steps) & ~jnp.all(done)

    def body(c):
        it, U, f, g, H, done, steps = c
        d = -jnp.einsum("nij,jn->in", H, g)
        slope = jnp.sum(g * d, axis=0)
        bad = slope >= 0  # not a descent direction: restart from the gradient
        d = jnp.where(bad[None, :], -g, d)
        slope = jnp.where(bad, -jnp.sum(g * g, axis=0), slope)
        H = jnp.where(bad[:, None, None], jnp.eye(P, dtype=dtype), H)
        d = jnp.where(done[None, :], 0.0, d)

        def ls_cond(s):
            k, alpha, _, _, ok = s
            return (k < 30) & ~jnp.all(ok | done)

        def ls_body(s):
            k, alpha, fn, gn, ok = s
            trial_alpha = jnp.where(ok, alpha, jnp.where(k == 0, alpha, 0.5 * alpha))
            Un = U + trial_alpha[None, :] * d
            fn_new, gn_new = vg(Un)
            good = jnp.isfinite(fn_new) & (fn_new <= f + c1 * trial_alpha * slope)
            take = ~ok & good
            fn = jnp.where(take, fn_new, fn)
            gn = jnp.where(take[None, :], gn_new, gn)
            return k + 1, trial_alpha, fn, gn, ok | good

        init = (jnp.asarray(0), jnp.ones((n_post,), dtype), f, g, jnp.zeros((n_post,), bool))
        _, alpha, fn, gn, ok = jax.lax.while_loop(ls_cond, ls_body, init)
        move = ok & ~done
        s_ = jnp.where(move[None, :], alpha[None, :] * d, 0.0)
        Un = U + s_
        y = jnp.where(move[None, :], gn - g, 0.0)
        sy = jnp.sum(s_ * y, axis=0)
        upd = move & (sy > 1e-8 * jnp.sqrt(jnp.sum(s_ * s_, axis=0) * jnp.sum(y * y, axis=0))) & (sy > 0)
        rho = jnp.where(upd, 1.0 / jnp.where(upd, sy, 1.0), 0.0)
        eye = jnp.eye(P, dtype=dtype)
        A = eye[None] - rho[:, None, None] * jnp.einsum("in,jn->nij", s_, y)
        Hn = jnp.einsum("nij,njk,nlk->nil", A, H, A) + rho[:, None, None] * jnp.einsum("in,jn->nij", s_, s_)
        upd = upd & jnp.all(jnp.isfinite(Hn), axis=(1, 2))
        H = jnp.where(upd[:, None, None], Hn, H)
        decrease = f - fn
        conv = (jnp.max(jnp.abs(gn), axis=0) <= atol) | (move & (decrease <= rtol * (jnp.abs(fn) + 1e-3)))
        stuck = ~ok & ~done  # no step was accepted: at the precision limit
        steps = steps + (~done).astype(steps.dtype)
        done = done | conv | stuck
        f = jnp.where(move, fn, f)
        g = jnp.where(move[None, :], gn, g)
        return it + 1, Un, f, g, H, done, steps

    init = (jnp.asarray(0), U0, f0, g0, H0, jnp.zeros((n_post,), bool), jnp.zeros((n_post,), jnp.int32))
    it, U, f, g, H, done, steps = jax.lax.while_loop(cond, body, init)
    return to_theta(U) * jnp.concatenate([mask, jnp.ones((P - mask.shape[0], n_post), dtype)], axis=0), steps, done


_solve_bfgs_jit = eqx.filter_jit(_solve_bfgs)


def _solve_optx(model, obs, F, S, x, I, mask, l2, theta0, R, scale, max_steps, rtol, atol, lbfgs=False):
    """The same problem with optimistix BFGS / L-BFGS ``vmap``-ped over neurons (slower per step on CPU:
    the vmapped solver's branches run for every neuron)."""
    import optimistix as optx

    n_in = F.shape[1]

    def one(th0, x_i, S_i, m_i, sc):
        def to_theta(u):
            th = jax.scipy.linalg.solve_triangular(R, u, lower=False)
            return th.at[:n_in].multiply(m_i)

        def fn(u, _):
            th = to_theta(u)
            return (_neuron_nll(th, F, S_i, x_i, I, model, obs, n_in) + 0.5 * l2 * jnp.sum(th[:n_in] ** 2)) / sc

        solver = (optx.LBFGS if lbfgs else optx.BFGS)(rtol=rtol, atol=atol)
        sol = optx.minimise(fn, solver, R @ th0, max_steps=max_steps, throw=False)
        return to_theta(sol.value), sol.stats["num_steps"], sol.result == optx.RESULTS.successful

    S_arg = S.T if S is not None else None
    return jax.vmap(one, in_axes=(1, 1, 0 if S is not None else None, 1, 0), out_axes=(1, 0, 0))(theta0, x, S_arg, mask, scale)


_solve_optx_jit = eqx.filter_jit(_solve_optx)


def _solve_prox(model, obs, F, S, x, I, mask, l1, l2, theta0, dscale, scale, max_steps, tol):
    """vmapped FISTA with backtracking for the L1-penalised problem (weights scaled by ``dscale``)."""
    n_in = F.shape[1]

    def one(th0, x_i, S_i, m_i, sc):
        d = jnp.concatenate([dscale, jnp.ones(th0.shape[0] - n_in, th0.dtype)])
        pen = jnp.concatenate([l1 / dscale, jnp.zeros(th0.shape[0] - n_in, th0.dtype)]) / sc

        def smooth(v):
            th = v / d
            th = th.at[:n_in].multiply(m_i)
            return (_neuron_nll(th, F, S_i, x_i, I, model, obs, n_in) + 0.5 * l2 * jnp.sum(th[:n_in] ** 2)) / sc

        vg = jax.value_and_grad(smooth)

        def prox(v, step):
            return jnp.sign(v) * jnp.maximum(jnp.abs(v) - step * pen, 0.0)

        def body(c):
            it, v, v_prev, tk, step, _ = c
            yk = v + ((tk - 1.0) / (tk + 2.0)) * (v - v_prev)
            fy, gy = vg(yk)

            def bt(s):
                st, _ = s
                cand = prox(yk - st * gy, st)
                diff = cand - yk
                ok = smooth(cand) <= fy + jnp.dot(gy, diff) + jnp.sum(diff ** 2) / (2 * st)
                return st, ok

            def bt_cond(s):
                st, ok = s
                return (~ok) & (st > 1e-12)

            def bt_body(s):
                st, _ = s
                return bt((st * 0.5, False))

            step, _ = jax.lax.while_loop(bt_cond, bt_body, bt((step * 2.0, False)))
            v_new = prox(yk - step * gy, step)
            change = jnp.max(jnp.abs(v_new - v)) / (1.0 + jnp.max(jnp.abs(v)))
            return it + 1, v_new, v, tk + 1.0, step, change

        v0 = th0 * d
        init = (jnp.asarray(0), v0, v0, jnp.asarray(1.0, v0.dtype), jnp.asarray(1.0, v0.dtype), jnp.asarray(jnp.inf, v0.dtype))
        it, v, *_ , change = jax.lax.while_loop(lambda c: (c[0] < max_steps) & (c[-1] > tol), body, init)
        th = (v / d).at[:n_in].multiply(m_i)
        return th, it, change <= tol

    S_arg = S.T if S is not None else None
    return jax.vmap(one, in_axes=(1, 1, 0 if S is not None else None, 1, 0), out_axes=(1, 0, 0))(theta0, x, S_arg, mask, scale)


_solve_prox_jit = eqx.filter_jit(_solve_prox)


def _bias_init(model, obs, x, S, dtype):
    """Per-neuron bias matching each neuron's mean count without coupling (a few Newton steps, vmapped)."""
    target = jnp.mean(x, axis=0)

    def one(x_i, S_i, tgt):
        def nll(b):
            syn = jnp.zeros_like(x_i) if S_i is None else S_i
            mu = model.non_linearity(model.input(syn, b, key=_dummy_key()))
            return -jnp.mean(_log_terms(obs, x_i, mu, constant=False))

        g = jax.grad(nll)
        h = jax.grad(g)

        def step(b, _):
            gg, hh = g(b), h(b)
            nb = b - gg / jnp.where(hh > 1e-12, hh, 1.0)
            nb = jnp.where(jnp.isfinite(nb), jnp.clip(nb, b - 5.0, b + 5.0), b)
            return nb, None

        b0 = jnp.zeros((), x_i.dtype)
        b, _ = jax.lax.scan(step, b0, None, length=30)
        return jnp.where(tgt > 0, b, b0)

    S_arg = S.T if S is not None else None
    return jax.vmap(one, in_axes=(1, 0 if S is not None else None, 0))(x, S_arg, target)


_bias_init_jit = eqx.filter_jit(_bias_init)


class _Problem(NamedTuple):
    x: jax.Array  # (n_steps, N) float
    inputs: Any  # (n_steps, C) or None
    mask: jax.Array  # (N_pre, N_post) float 0/1
    hist: jax.Array
    aux: Any


def fit_connectivity(
    model: GLMModel,
    spikes,
    *,
    inputs=None,
    edges=None,
    l2: float = 0.0,
    l1: float = 0.0,
    solver: str = "auto",
    true_weights=None,
    initial_window=None,
    observation: str | None = None,
    n_iter: int = 500,
    tol: float = 1e-6,
    window: int = 4096,
    batch_size: int = 16,
    n_epochs: int = 20,
    learning_rate: float = 1e-2,
    key: jax.Array | None = None,
    progress: bool | None = False,
):
    """Infer a network's weights, per-neuron biases and input gains from spike trains by maximum likelihood.

    The model (its nonlinearity, coupling profile, ``r``, ``b``, ``dt``) is held fixed; estimated are
    ``W[pre, post]``, a bias per neuron (added to the input ``g``) and the gains of the shared ``inputs``.
    The objective is ``-log L + l2/2 ||W||^2 + l1 ||W||_1`` (the likelihood of :func:`spike_log_likelihood`),
    and every neuron's incoming weights, bias and gains are an independent problem, solved for all
    neurons at once under ``vmap``.

    Parameters
    ----------
    model
        The inference model (e.g. ``PoissonGLM``: exponential link; its ``T`` and ``tau`` give the
        coupling basis).
    spikes
        A :class:`~spikejax.glm.GLMTrajectory` or a neuron-major ``(N, n_steps)`` count array.
    inputs
        Shared inputs, time-major ``(n_steps, C)`` or ``(n_steps,)``; their gains are estimated.
    edges
        Candidate edge set (``(src, dst)`` or a boolean ``(N, N)`` mask); other weights are held at 0.
        Default: every pair, self-coupling included.
    l2, l1
        Penalties on the weights (not on biases or gains).
    solver
        ``"bfgs"``: BFGS per neuron in whitened coordinates (``theta = R^{-1} u`` with ``R^T R`` the
        second-moment matrix of the regressors), all neurons advanced together as one batch (one GEMM per
        evaluation, per-neuron Armijo line searches and stopping), on the filtered history held in memory;
        with ``l1 > 0`` accelerated proximal gradient (FISTA) follows, warm-started from the smooth
        solution. ``"optimistix-bfgs"`` / ``"optimistix-lbfgs"``: the same problem with optimistix's
        solvers ``vmap``-ped over neurons (same optimum, slower per step on CPU). ``"trainer"``: :func:`spikejax.core.fit` (Adam) on minibatches of
        ``batch_size`` windows of ``window`` steps, a proximal step for ``l1``; memory is bounded by the
        raster (stored as ``uint8``) and one minibatch. ``"auto"``: ``"bfgs"`` when the filtered
        history (``n_steps x N`` floats) is below 1 GiB, else ``"trainer"``.
    true_weights
        The generating ``(N, N)`` matrix where known (reported in the table).
    initial_window
        History before the first step ``(N, T)`` (zeros by default; in-memory solvers only).
    observation
        ``"poisson"`` or ``"bernoulli"``; default the model's emission.
    n_iter, tol
        Quasi-Newton / proximal iterations and tolerance.
    window, batch_size, n_epochs, learning_rate, key
        Trainer settings (``key`` required for ``solver="trainer"``: it shuffles the windows).
    progress
        Trainer progress bar.

    Returns
    -------
    :class:`~spikejax.glm.GLMFitResult`
    """
    from .fit_result import GLMFitResult
    from .results import model_spec

    t_start = time.perf_counter()
    _check_model(model)
    obs = _observation(model, observation)
    check_choice(solver, "solver", CONNECTIVITY_SOLVERS)
    check_scalar(l2, "l2", low=0.0)
    check_scalar(l1, "l1", low=0.0)
    check_scalar(n_iter, "n_iter", low=1, integer=True)
    check_scalar(tol, "tol", low=0.0, low_inclusive=False)
    check_scalar(window, "window", low=1, integer=True)
    dtype = jnp.result_type(float)
    x = _raster_time_major(spikes)
    n_steps, n = x.shape
    if inputs is not None:
        inputs = check_array(inputs, "inputs", ndim=(1, 2), dtype=dtype)
        if inputs.ndim == 1:
            inputs = inputs[:, None]
        if inputs.shape[0] != n_steps:
            raise ShapeError(f"inputs must be time-major (n_steps={n_steps}, C) or (n_steps,), got shape {tuple(inputs.shape)}")
    if edges is None:
        mask = np.ones((n, n), bool)
    else:
        src, dst = _edge_arrays(edges, n)
        mask = np.zeros((n, n), bool)
        mask[np.asarray(src), np.asarray(dst)] = True
    if true_weights is not None:
        true_weights = np.asarray(check_array(true_weights, "true_weights", (n, n)))
    hist, aux = _initial_state(model, n, initial_window, dtype)
    if solver == "auto":
        solver = "bfgs" if n_steps * n * jnp.dtype(dtype).itemsize * 3 <= _IN_MEMORY_BYTES else "trainer"
    if solver == "trainer":
        if initial_window is not None:
            raise ConfigError("initial_window: solver='trainer' starts the recording from an empty history; "
                              "pass the history as the first steps of spikes, or use solver='bfgs'")
        params, history, stop, ll = _fit_trainer(model, obs, x, inputs, mask, hist, aux, l1, l2, window, batch_size, n_epochs,
                                                 learning_rate, key, progress, dtype)
    else:
        params, history, stop, ll = _fit_in_memory(model, obs, x.astype(dtype), inputs, mask, hist, aux, l1, l2, int(n_iter),
                                                   float(tol), int(window), solver, dtype)
    history = history.assign(seconds=time.perf_counter() - t_start)
    return GLMFitResult(
        model=model, history=history, stop_reason=stop, seconds=float(time.perf_counter() - t_start),
        weights=params.weights, bias=params.bias, gains=params.gains, edges=mask,
        true_weights=true_weights, log_likelihood=float(ll), observation=obs, solver=solver,
        l1=float(l1), l2=float(l2), model_spec=model_spec(model))


def _fit_in_memory(model, obs, x, inputs, mask, hist, aux, l1, l2, n_iter, tol, window, solver, dtype):
    import pandas as pd

    from ..core.results import StopReason

    n_steps, n = x.shape
    F, S = _features_jit(model, x, inputs, hist, aux, window)
    c = 0 if inputs is None else inputs.shape[1]
    # whitening of [F, 1, I]: theta = R^{-1} u with R^T R = X^T X / n_steps (conditions every neuron's problem)
    cols = [F, jnp.ones((n_steps, 1), dtype)] + ([inputs] if inputs is not None else [])
    X = jnp.concatenate(cols, axis=1)
    M = X.T @ X / n_steps
    P = M.shape[0]
    M = M + (1e-6 * jnp.trace(M) / P + 1e-12) * jnp.eye(P, dtype=dtype)
    R = jnp.linalg.cholesky(M).T  # upper: M = R^T R
    del X
    b0 = _bias_init_jit(model, obs, x, S, dtype)
    theta0 = jnp.zeros((P, n), dtype).at[n].set(b0)
    counts = jnp.sum(x, axis=0)
    scale = jnp.maximum(counts, 1.0)  # per-neuron objective / spike count: unit-scale curvature
    m = jnp.asarray(mask, dtype)
    # numbers as arrays: other penalties, tolerances or iteration limits reuse the compiled solver
    arr = lambda v: jnp.asarray(v, dtype)  # noqa: E731
    it_max = jnp.asarray(n_iter, jnp.int32)
    if solver == "bfgs":
        theta, steps, ok = _solve_bfgs_jit(model, obs, F, S, x, inputs, m, arr(l2), theta0, R, scale, it_max, arr(tol), arr(tol * 1e-2))
    else:
        theta, steps, ok = _solve_optx_jit(model, obs, F, S, x, inputs, m, arr(l2), theta0, R, scale, n_iter, tol, tol * 1e-2,
                                           solver == "optimistix-lbfgs")
    if l1 > 0:
        dscale = jnp.sqrt(jnp.maximum(jnp.diag(M)[:n], 1e-12))
        theta, steps2, ok = _solve_prox_jit(model, obs, F, S, x, inputs, m, arr(l1), arr(l2), theta, dscale, scale, it_max, arr(tol))
        steps = steps + steps2
    # theta: (P, N_post) = [w (N_pre rows), bias, gains (C rows)]
    params = ConnectivityParams(weights=theta[:n] * m, bias=theta[n], gains=theta[n + 1:].T)
    per = _stream_ll_jit(model, "dense", params.weights, params.bias, params.gains if c else None, x, inputs, None, hist, aux, obs, window)
    ll = float(jnp.sum(per))
    steps = np.asarray(steps)
    okv = np.asarray(ok)
    history = pd.DataFrame({"iteration": [int(steps.max())], "loss": [-ll / n_steps], "log_lik_nats": [ll],
                            "converged_pct": [100.0 * float(okv.mean())]})
    stop = StopReason.CONVERGED if okv.all() else StopReason.EPOCH_LIMIT
    return params, history, stop, ll


def _soft_threshold_optimizer(base, threshold: float):
    """``base`` followed by the L1 proximal step on ``weights`` (soft-threshold by ``threshold``)."""
    import optax

    def init(params):
        return base.init(params)

    def update(updates, state, params=None):
        updates, state = base.update(updates, state, params)
        if params is None or threshold <= 0:
            return updates, state
        new_w = params.weights + updates.weights
        shrunk = jnp.sign(new_w) * jnp.maximum(jnp.abs(new_w) - threshold, 0.0)
        return eqx.tree_at(lambda u: u.weights, updates, shrunk - params.weights), state

    return optax.GradientTransformation(init, update)


def _fit_trainer(model, obs, x, inputs, mask, hist, aux, l1, l2, window, batch_size, n_epochs, learning_rate, key, progress, dtype):
    import optax
    import pandas as pd

    from ..core.random import check_key
    from ..core.training import Batching, Progress, fit

    key = check_key(key)
    n_steps, n = x.shape
    kernel = model.connectivity_filter().padded()
    T = kernel.T
    # history length of a window: the kernel's lags (SA models: five activation time constants)
    if isinstance(model, SAModel):
        T_h = max(T, int(math.ceil(5.0 * float(model.tau) / float(model.dt))))
    else:
        T_h = T
    W_len = int(min(window, n_steps))
    n_win = -(-n_steps // W_len)
    xn = np.asarray(x)
    if xn.size and (xn.min() < 0 or xn.max() > 255):
        raise SpikejaxError(f"spikes: the trainer stores counts as uint8; got counts in [{xn.min()}, {xn.max()}]")
    x8 = np.asarray(xn, np.uint8)
    # history before the recording: empty
    head = np.zeros((T_h, n), np.uint8)
    pad = n_win * W_len - n_steps
    full = np.concatenate([head, x8, np.zeros((pad, n), np.uint8)], axis=0)
    idx = np.arange(n_win)[:, None] * W_len + np.arange(T_h + W_len)[None, :]
    windows = full[idx]  # (n_win, T_h + W_len, N) uint8
    valid = (np.arange(n_win)[:, None] * W_len + np.arange(W_len)[None, :]) < n_steps
    data = {"x": jnp.asarray(windows), "valid": jnp.asarray(valid)}
    del windows, full, idx
    c = 0
    if inputs is not None:
        c = inputs.shape[1]
        ip = np.concatenate([np.asarray(inputs), np.zeros((pad, c), np.asarray(inputs).dtype)], axis=0)
        data["inputs"] = jnp.asarray(ip.reshape(n_win, W_len, c))
    batch_size = int(min(batch_size, n_win))
    m = jnp.asarray(mask, dtype)
    total = float(n_steps)
    b0 = _bias_init_jit(model, obs, jnp.asarray(x8[: min(n_steps, 200_000)], dtype), None, dtype) if kernel.self_kernel is None else jnp.zeros((n,), dtype)
    params0 = ConnectivityParams(weights=jnp.zeros((n, n), dtype), bias=jnp.asarray(b0, dtype), gains=jnp.zeros((n, c), dtype))

    def window_nll(p, xw, valid_w, iw):
        xw = xw.astype(dtype)
        a0 = jnp.zeros((n,), dtype) if isinstance(model, SAModel) else None
        tr, _ = _traces(model, xw, a0)
        drive = p.bias + (iw @ p.gains.T if iw is not None else 0.0)
        mu = _window_mu(model, kernel, tr[T_h - T:], W_len, "dense", p.weights * m, jnp.broadcast_to(drive, (W_len, n)))
        terms = jnp.where(valid_w[:, None], _log_terms(obs, xw[T_h:], mu), 0.0)
        return -jnp.sum(terms)

    def loss_fn(p, batch, key):
        iw = batch.get("inputs")
        nll = jax.vmap(window_nll, in_axes=(None, 0, 0, 0 if iw is not None else None))(p, batch["x"], batch["valid"], iw)
        # the objective per recorded step (minibatch estimate), penalties scaled alike
        per_step = jnp.sum(nll) / (batch["x"].shape[0] * W_len)
        w = p.weights * m
        return per_step + (0.5 * l2 * jnp.sum(w * w)) / total

    opt = _soft_threshold_optimizer(optax.adam(learning_rate), learning_rate * l1 / total)
    res = fit(params0, loss_fn, data, optimizer=opt, key=key, n_epochs=int(n_epochs),
              batching=Batching(batch_size=batch_size), progress=Progress(enabled=progress, desc="fit_connectivity"))
    p = res.model
    params = ConnectivityParams(weights=p.weights * m, bias=p.bias, gains=p.gains)
    hist_df = res.history.copy()
    # the exact (streamed) log-likelihood of the whole recording at the estimate
    del data
    per = _stream_ll_jit(model, "dense", params.weights, params.bias, params.gains if c else None, jnp.asarray(x8), inputs,
                         None, hist, aux, obs, 4096)
    ll = float(jnp.sum(per))
    if not isinstance(hist_df, pd.DataFrame):
        hist_df = pd.DataFrame(hist_df)
    return params, hist_df, res.stop_reason, ll
