"""Simulation of cascade networks with spikeometric's semantics, in bounded memory.

``simulate(model, network, n_steps, key=...)``:

1. the model's connectivity filter gives the lag kernel (``T`` lags);
2. each neuron starts having spiked with probability 1/2 (SA models: activation ``U(0, 1)``); that
   column is the most recent entry of a ``T``-step window whose older entries are zero;
3. ``equilibration_steps`` steps are run (stimulus off) and not returned; only the last ``T``
   entries of history are kept (the ring buffer holds exactly that);
4. ``n_steps`` steps are recorded; the stimulus clock starts at 0;
5. the raster ``(N, n_steps)`` is returned in ``store_as_dtype``. The state that the dynamics read
   back is always float whatever the output dtype, so narrow output types never change the dynamics.

Randomness: network ``b`` of a block-diagonal batch draws from ``fold_in(key, b)`` (see
:func:`~spikejax.glm.network.batch_keys`); a single network draws from ``key``. Step ``t`` of the
recorded run uses ``fold_in(k_run, t)`` (:func:`spikejax.core.step_keys`), so chunked and one-shot
runs are identical.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError, NonFiniteError, ShapeError, check_allocation, check_finite, check_scalar, is_traced
from ..core.random import check_key
from ..core.scan import step_keys
from .kernels import Coupler, LagKernel, choose_backend, make_coupler
from .models import GLMModel, fast_poisson
from .network import Network
from .trajectory import GLMTrajectory

__all__ = ["simulate", "SimState", "Engine", "make_engine", "init_state", "run_steps", "resolve_dtype", "state_from_window", "input_from_window", "conditional_rate",
           "conditional_intensity"]


class SimState(NamedTuple):
    """Scan carry: ring buffers of the recurrent drive and of the presynaptic trace, the ring position, model state."""

    drive: jax.Array | None  # (T, N): u(s) = W0^T trace(s)
    hist: jax.Array | None  # (T, N): trace(s) (self kernels, general kernels)
    pos: jax.Array  # int32: ring slot of the most recent entry (lag 0)
    aux: Any  # model state (SA activation) or None


class Engine(eqx.Module):
    """Everything one step needs besides the model: synaptic kernel, lag kernel, blocks, stimulus."""

    coupler: Coupler
    block_sizes: tuple[int, ...] = eqx.field(static=True)

    @property
    def n(self) -> int:
        return self.coupler.n


def make_engine(network: Network, model: GLMModel, backend: str = "auto", *, capacity: int | None = None) -> Engine:
    """Precompute the synaptic kernel of ``network`` for ``model`` (outside jit)."""
    coupler = make_coupler(network, backend, spiking=type(model).spiking_trace, capacity=capacity)
    return Engine(coupler, tuple(network.block_sizes or (network.n_nodes,)))


def _blockwise(fn: Callable, block_sizes: tuple[int, ...], keys: jax.Array, *arrays):
    """Apply an elementwise-in-neurons ``fn(key, *arrays)`` per network block with that block's key."""
    if len(block_sizes) == 1:
        return fn(keys[0], *arrays)
    nb = block_sizes[0]
    if all(s == nb for s in block_sizes):
        k = len(block_sizes)
        shaped = [a.reshape((k, nb) + a.shape[1:]) for a in arrays]
        out = jax.vmap(fn)(keys, *shaped)
        return out.reshape((k * nb,) + out.shape[2:])
    outs, start = [], 0
    for b, s in enumerate(block_sizes):
        outs.append(fn(keys[b], *[a[start : start + s] for a in arrays]))
        start += s
    return jnp.concatenate(outs, axis=0)


def _ring_profile(profile: jax.Array, pos: jax.Array) -> jax.Array:
    """Profile reordered to ring slots: slot j holds lag (pos - j) mod T."""
    T = profile.shape[0]
    return jnp.take(profile, (pos - jnp.arange(T)) % T)


def _synaptic(kernel: LagKernel, engine: Engine, state: SimState) -> jax.Array:
    T = state.drive.shape[0] if state.drive is not None else state.hist.shape[0]
    syn = 0.0
    if kernel.coupling is not None:
        syn = syn + _ring_profile(kernel.coupling, state.pos) @ state.drive
    if kernel.self_kernel is not None:
        syn = syn + _ring_profile(kernel.self_kernel, state.pos) @ state.hist
    if kernel.edge_kernel is not None:
        lag_hist = jnp.take(state.hist, (state.pos - jnp.arange(T)) % T, axis=0)
        c = engine.coupler
        syn = syn + c.project_edges(lag_hist, kernel.edge_kernel, c.src if c.src is not None else None, c.dst)
    return syn


def _needs(kernel: LagKernel) -> tuple[bool, bool]:
    return kernel.coupling is not None, kernel.self_kernel is not None or kernel.edge_kernel is not None


def init_state(model: GLMModel, kernel: LagKernel, engine: Engine, keys: jax.Array, dtype) -> SimState:
    """The initial window: random spikes (p = 1/2) as the most recent column, zeros before."""
    T = kernel.T
    n = engine.n

    def one(key, dummy):
        trace, aux = model.init_trace(dummy.shape[0], key=key, dtype=dtype)
        return trace if aux is None else jnp.stack([trace, aux], axis=-1)

    packed = _blockwise(one, engine.block_sizes, keys, jnp.zeros((n,), dtype))
    if packed.ndim == 2:
        trace, aux = packed[:, 0], packed[:, 1]
    else:
        trace, aux = packed, None
    need_drive, need_hist = _needs(kernel)
    pos = jnp.asarray(0, jnp.int32)
    drive = jnp.zeros((T, n), dtype).at[0].set(engine.coupler.project(trace)) if need_drive else None
    hist = jnp.zeros((T, n), dtype).at[0].set(trace) if need_hist else None
    return SimState(drive, hist, pos, aux)


def draw_step_noise(model: GLMModel, engine: Engine, keys: jax.Array):
    """Per-step keys ``(steps, blocks)`` -> input keys, emission keys and (if the model uses them) the
    emission uniforms ``(steps, N)``, drawn in bulk: identical to drawing them inside each step."""
    in_keys = jax.vmap(jax.vmap(lambda k: jax.random.fold_in(k, 0)))(keys)
    em_keys = jax.vmap(jax.vmap(lambda k: jax.random.fold_in(k, 1)))(keys)
    if not type(model).uses_uniform:
        return in_keys, em_keys, None
    dtype = jnp.result_type(float)
    zeros = jnp.zeros((engine.n,), dtype)

    def one_step(ek):
        return _blockwise(lambda k, z: jax.random.uniform(k, z.shape, z.dtype), engine.block_sizes, ek, zeros)

    return in_keys, em_keys, jax.vmap(one_step)(em_keys)


def _step(
    model: GLMModel,
    kernel: LagKernel,
    engine: Engine,
    state: SimState,
    in_keys: jax.Array,
    em_keys: jax.Array,
    stim: jax.Array,
    u: jax.Array | None = None,
    straight_through: bool = False,
):
    """One step; returns the new state, the counts ``x``, the expected counts ``mu`` and ``g``."""
    syn = _synaptic(kernel, engine, state)
    stim = model.stimulus_filter(stim)
    stim = jnp.broadcast_to(stim, syn.shape).astype(syn.dtype)
    g = _blockwise(lambda k, s, e: model.input(s, e, key=k), engine.block_sizes, in_keys, syn, stim)
    mu = model.non_linearity(g)
    mu_d = jax.lax.stop_gradient(mu)
    if u is None:
        x = _blockwise(lambda k, m: model.emit_spikes(m, key=k), engine.block_sizes, em_keys, mu_d)
    else:
        x = _blockwise(lambda k, m, uu: model.emit_spikes(m, key=k, u=uu), engine.block_sizes, em_keys, mu_d, u)
    if straight_through:
        x = x + mu - mu_d
    trace, aux = model.presynaptic(x, state.aux)
    T = state.drive.shape[0] if state.drive is not None else state.hist.shape[0]
    pos = (state.pos + 1) % T
    drive = state.drive.at[pos].set(engine.coupler.project(trace)) if state.drive is not None else None
    hist = state.hist.at[pos].set(trace) if state.hist is not None else None
    return SimState(drive, hist, pos, aux), x, mu, g


def _block_len(length: int, cap: int = 256) -> int:
    """Largest divisor of ``length`` not above ``cap`` (steps whose noise is drawn together)."""
    for b in range(min(cap, length), 0, -1):
        if length % b == 0:
            return b
    return 1


_cast_jit = jax.jit(lambda x, dtype: _cast(x, dtype), static_argnums=1)


def _zero_stim(t):
    return jnp.zeros((), jnp.result_type(float))


def _cast(x: jax.Array, dtype) -> jax.Array:
    dtype = jnp.dtype(dtype)
    if dtype == jnp.bool_:
        return x > 0
    if jnp.issubdtype(dtype, jnp.integer):
        info = jnp.iinfo(dtype)
        return jnp.clip(x, info.min, info.max).astype(dtype)
    return x.astype(dtype)


def run_steps(
    model: GLMModel,
    kernel: LagKernel,
    engine: Engine,
    state: SimState,
    block_keys: jax.Array,
    stimulus: Callable | None,
    t0: jax.Array,
    length: int,
    out_dtype=None,
    *,
    record: str = "x",
    track_max: bool = False,
):
    """Scan ``length`` steps from absolute step ``t0`` (stimulus clock and per-step keys).

    ``record``: ``"x"`` (counts cast to ``out_dtype``), ``"none"`` or ``"count"`` (total counts per neuron).
    ``track_max``: also return the largest expected count ``mu`` seen (for the fast Poisson check).
    """
    stim_fn = stimulus if stimulus is not None else _zero_stim
    ts = t0 + jnp.arange(length, dtype=jnp.int32)
    # per-step, per-network keys: fold_in(block_key, t) (core step_keys)
    keys = jax.vmap(lambda k: step_keys(k, ts), out_axes=1)(block_keys)  # (length, blocks)
    B = _block_len(length) if type(model).uses_uniform else length

    def body(carry, inp):
        st, acc, top = carry
        t, ik, ek, u = inp
        st, x, mu, _ = _step(model, kernel, engine, st, ik, ek, stim_fn(t), u)
        if track_max:
            top = jnp.maximum(top, jnp.max(mu))
        if record == "x":
            return (st, acc, top), _cast(x, out_dtype)
        if record == "count":
            return (st, acc + x, top), None
        return (st, acc, top), None

    def block(carry, inp):
        tb, kb = inp
        ik, ek, u = draw_step_noise(model, engine, kb)
        return jax.lax.scan(body, carry, (tb, ik, ek, u))

    acc0 = jnp.zeros((engine.n,), jnp.result_type(float)) if record == "count" else None
    nblk = length // B
    shaped = (ts.reshape(nblk, B), keys.reshape((nblk, B) + keys.shape[1:]))
    top0 = jnp.asarray(-jnp.inf, jnp.result_type(float))
    (state, acc, top), ys = jax.lax.scan(block, (state, acc0, top0), shaped)
    out = acc if record == "count" else (ys.reshape((length,) + ys.shape[2:]) if ys is not None else None)
    if track_max:
        return state, out, top
    return state, out


# -- the compiled programs of simulate ---------------------------------------------------------------
#
# A run is a prologue (the random initial window and the per-network keys of the equilibration and of
# the recorded steps) and segments: one compiled program scans blocks of steps from an absolute step
# ``t0`` for a *traced* number of steps, with the stimulus switched on or off by a traced flag. The
# equilibration and every recorded chunk are calls of that same program, so a simulation compiles it
# once (plus the small prologue), whatever ``equilibration_steps``, ``n_steps`` and the stimulus are.


def _prologue_impl(model, engine, block_keys):
    """Initial state (random window) and the equilibration / recording keys of every network."""
    kernel = model.connectivity_filter().padded()
    # fold_in(key, 0 / 1 / 2) as one vectorised PRNG call (same keys, one threefry loop to compile)
    keys = jax.vmap(lambda k: jax.vmap(lambda d: jax.random.fold_in(k, d))(jnp.arange(3, dtype=jnp.uint32)))(block_keys)
    k_init, k_eq, k_run = keys[:, 0], keys[:, 1], keys[:, 2]
    return init_state(model, kernel, engine, k_init, jnp.result_type(float)), k_eq, k_run


def _segment_block(length: int) -> int:
    """Steps whose noise is drawn together in a segment of ``length`` steps."""
    return max(1, min(length, 256))


def _segment_impl(model, engine, stimulus, state, keys, t0, n_active, stim_on, length: int, fast: bool):
    """``n_active <= length`` steps from absolute step ``t0`` (keys ``fold_in(keys, t)``); returns the new
    state, the float counts ``(length, N)`` (rows from ``n_active`` on are undefined) and the largest
    expected count seen (for the optimistic fast Poisson sampling)."""
    kernel = model.connectivity_filter().padded()
    stim_fn = stimulus if stimulus is not None else _zero_stim
    dtype = jnp.result_type(float)
    B = _segment_block(length)
    nblk = -(-length // B)
    n = engine.n

    def body(carry, inp):
        st, top = carry
        t, ik, ek, u = inp
        live = (t - t0) < n_active
        stim = jnp.where(stim_on, stim_fn(t), 0.0)
        new, x, mu, _ = _step(model, kernel, engine, st, ik, ek, stim, u)
        st = jax.tree_util.tree_map(lambda a, b: jnp.where(live, a, b), new, st)
        top = jnp.where(live, jnp.maximum(top, jnp.max(mu)), top)
        return (st, top), x

    def block(carry):
        i, st, top, out = carry
        tb = t0 + i * B + jnp.arange(B, dtype=jnp.int32)
        kb = jax.vmap(lambda k: step_keys(k, tb), out_axes=1)(keys)  # (B, blocks)
        ik, ek, u = draw_step_noise(model, engine, kb)
        (st, top), xs = jax.lax.scan(body, (st, top), (tb, ik, ek, u))
        return i + 1, st, top, jax.lax.dynamic_update_index_in_dim(out, xs.astype(dtype), i, 0)

    out0 = jnp.zeros((nblk, B, n), dtype)
    top0 = jnp.asarray(-jnp.inf, dtype)
    n_blocks = (n_active + B - 1) // B
    with fast_poisson(fast):
        _, state, top, out = jax.lax.while_loop(lambda c: c[0] < n_blocks, block, (jnp.asarray(0, jnp.int32), state, top0, out0))
    return state, out.reshape((nblk * B, n))[:length], top


_prologue = eqx.filter_jit(_prologue_impl)
_segment = eqx.filter_jit(_segment_impl)
# stacked networks (a leading network axis on the engine, the state and the keys), one program each
_prologue_stacked = eqx.filter_jit(lambda model, engine, keys: jax.vmap(lambda e, k: _prologue_impl(model, e, k))(engine, keys))
_segment_stacked = eqx.filter_jit(
    lambda model, engine, stimulus, state, keys, t0, n_active, stim_on, length, fast: jax.vmap(
        lambda e, s, k: _segment_impl(model, e, stimulus, s, k, t0, n_active, stim_on, length, fast)
    )(engine, state, keys)
)


def _run_segment(model, engine, stimulus, state, keys, t0: int, n_active: int, stim_on: bool, length: int, *, segment=_segment,
                 exact: bool = False):
    """One segment with optimistic fast Poisson sampling, re-run exactly if some mean exceeded 1 (same numbers).

    ``exact=True`` (under ``jit``/``vmap``, where the check cannot be made on the host) runs the exact
    sampler at once: it draws the same numbers as the fast one whenever every mean is <= 1."""
    args = (model, engine, stimulus, state, keys, jnp.asarray(t0, jnp.int32), jnp.asarray(n_active, jnp.int32), jnp.asarray(stim_on))
    if exact:
        new_state, ys, _ = segment(*args, length, False)
        return new_state, ys
    new_state, ys, top = segment(*args, length, True)
    top = float(jnp.max(top))
    if np.isnan(top) or np.isposinf(top):
        phase = "recorded" if stim_on else "equilibration"
        raise NonFiniteError(
            f"the expected counts became {top} in the {phase} steps {t0}..{t0 + n_active - 1}: the stimulus (or a "
            "model parameter) must be finite there; check stimulus(t) for those steps"
        )
    if top > 1.0:
        new_state, ys, _ = segment(*args, length, False)
    return new_state, ys


def _equilibrate_run(model, engine, stimulus, state, k_eq, n_eq: int, length: int, *, segment=_segment, exact: bool = False):
    """``n_eq`` equilibration steps (stimulus off, clock from 0) in segments of ``length``."""
    t = 0
    while t < n_eq:
        m = min(length, n_eq - t)
        state, _ = _run_segment(model, engine, stimulus, state, k_eq, t, m, False, length, segment=segment, exact=exact)
        t += m
    return state


def _run_equilibrate(model, engine, block_keys, n_eq):
    """The simulator's initial state after ``n_eq`` equilibration steps (what :func:`simulate` starts recording from)."""
    state, k_eq, _ = _prologue(model, engine, block_keys)
    return _equilibrate_run(model, engine, None, state, k_eq, int(n_eq), max(1, min(int(n_eq), 10_000)))


_DTYPES = {
    "int": jnp.int32,
    "int32": jnp.int32,
    "int8": jnp.int8,
    "uint8": jnp.uint8,
    "int16": jnp.int16,
    "int64": jnp.int64,
    "float": jnp.float32,
    "float32": jnp.float32,
    "float64": jnp.float64,
    "double": jnp.float64,
    "bool": jnp.bool_,
}


def resolve_dtype(store_as_dtype) -> jnp.dtype:
    """Output dtype from a numpy/jax dtype, a name (``"int"``, ``"uint8"``, ``"bool"``, ...) or a torch dtype."""
    if store_as_dtype is None:
        return jnp.dtype(jnp.int32)
    name = str(store_as_dtype)
    if name.startswith("torch."):
        name = name[len("torch.") :]
    if isinstance(store_as_dtype, str) or name in _DTYPES:
        if name not in _DTYPES:
            raise ConfigError(f"store_as_dtype must be one of {sorted(_DTYPES)} or a numpy dtype, got {store_as_dtype!r}")
        dt = jnp.dtype(_DTYPES[name])
    else:
        try:
            dt = jnp.dtype(store_as_dtype)
        except TypeError:
            raise ConfigError(f"store_as_dtype must be a dtype, got {store_as_dtype!r}") from None
    if dt.kind not in "biuf":
        raise ConfigError(f"store_as_dtype must be a bool, integer or float dtype, got {dt}")
    if dt == jnp.float64 and not jax.config.jax_enable_x64:
        dt = jnp.dtype(jnp.float32)
    if dt == jnp.int64 and not jax.config.jax_enable_x64:
        dt = jnp.dtype(jnp.int32)
    return dt


def _validate_stimulus(stimulus, n: int, dtype):
    if stimulus is None:
        return None
    if not callable(stimulus):
        raise TypeError(f"stimulus must be a callable t -> input (N,), got {type(stimulus).__name__}")
    probe = jax.eval_shape(stimulus, jax.ShapeDtypeStruct((), jnp.int32))
    shape = tuple(getattr(probe, "shape", ()))
    if len(shape) >= 1 and shape[0] not in (1, n):
        raise ShapeError(
            f"stimulus returns shape {shape} at a step but the network has {n} neurons; "
            f"its masks (or output) must have {n} entries (one per neuron of the batch)"
        )
    if not _any_traced(stimulus):
        # one concrete evaluation at the first step catches a stimulus that returns NaN/inf (a later NaN is
        # caught after the chunk that produced it, from the expected counts)
        try:
            first = stimulus(jnp.asarray(0, jnp.int32))
        except (jax.errors.ConcretizationTypeError, jax.errors.UnexpectedTracerError, jax.errors.TracerArrayConversionError):
            return stimulus
        check_finite(first, "stimulus(t) at t = 0")
    return stimulus


def simulate(
    model: GLMModel,
    network: Network,
    *,
    n_steps: int,
    key: jax.Array,
    stimulus: Callable | None = None,
    equilibration_steps: int = 100,
    store_as_dtype=jnp.int32,
    backend: str = "auto",
    chunk_size: int = 10_000,
    capacity: int | None = None,
    record_state: bool = False,
) -> GLMTrajectory:
    """Simulate ``model`` on ``network`` for ``n_steps`` steps of ``model.dt`` ms.

    Parameters
    ----------
    model
        A :class:`~spikejax.glm.GLMModel` (BernoulliGLM, PoissonGLM, RectifiedLNP, RectifiedSAM,
        ThresholdSAM or a subclass).
    network
        A :class:`~spikejax.glm.Network`, a block-diagonal batch (``batch_networks``) or a stacked batch
        (``stack_networks``, simulated under ``vmap``).
    n_steps
        Number of recorded steps (each ``model.dt`` ms).
    key
        PRNG key (required). Network ``b`` of a batch uses ``fold_in(key, b)``.
    stimulus
        ``None`` or a callable ``t -> (N,)`` (or scalar, or ``(N, C)`` multi-channel for a model with a
        ``stimulus_filter``) of the integer step ``t``; the clock starts at 0 for the first recorded step.
    equilibration_steps
        Steps run before recording (stimulus off), not returned.
    store_as_dtype
        dtype of the returned spikes only (``int32`` default; ``bool`` means "spiked"; integer types
        saturate instead of wrapping). The dynamics always read float counts.
    backend
        Synaptic kernel: ``"auto"``, ``"dense"``, ``"sparse"`` or ``"event"`` (same results).
    chunk_size
        Steps per compiled chunk; memory is bounded by one chunk and results do not depend on it.
    capacity
        Event kernel capacity (see :func:`~spikejax.glm.kernels.make_coupler`).
    record_state
        Keep the final :class:`SimState` in ``trajectory.state`` (to continue a run); ``None`` otherwise.

    Returns
    -------
    :class:`~spikejax.glm.GLMTrajectory` with ``spikes`` ``(n_steps, N)`` (``(n_steps, B, N)`` for stacked
    networks; ``.raster`` is the neuron-major ``(N, n_steps)`` view). Under ``jit``/``vmap`` (a traced model,
    key or network) the exact Poisson sampler runs directly: the same numbers as an eager call.
    """
    key = check_key(key)
    if not isinstance(model, GLMModel):
        raise TypeError(f"model must be a spikejax.glm model (GLMModel subclass), got {type(model).__name__}")
    if not isinstance(network, Network):
        raise TypeError(f"network must be a spikejax.glm.Network, got {type(network).__name__}")
    for name, value, low in (("n_steps", n_steps, 1), ("equilibration_steps", equilibration_steps, 0), ("chunk_size", chunk_size, 1)):
        if isinstance(value, (str, bytes)):
            raise ConfigError(f"{name} must be a whole number, got str {value!r}")
        check_scalar(value, name, low=low, integer=True)
    n_steps, equilibration_steps, chunk_size = int(n_steps), int(equilibration_steps), int(chunk_size)
    dt = _model_dt(model)
    out_dtype = resolve_dtype(store_as_dtype)
    dtype = jnp.result_type(float)
    if backend not in ("auto", "dense", "sparse", "event"):
        raise ConfigError(f"backend must be one of 'auto', 'dense', 'sparse', 'event'; got {backend!r}")
    _check_model_values(model)
    _check_network_weights(network)
    _check_simulation_size(model, network, n_steps, chunk_size, out_dtype, backend)
    exact = _any_traced(model, network, stimulus, key)
    if network.is_stacked:
        raster, state = _simulate_stacked(model, network, n_steps, key, stimulus, equilibration_steps, out_dtype, backend,
                                          chunk_size, exact)
        return GLMTrajectory(jnp.moveaxis(raster, 0, 1), state if record_state else None, dt=dt)
    _validate_stimulus(stimulus, network.n_nodes, dtype)
    if _any_traced(network) and backend in ("auto", "event"):
        # the event kernel's adjacency is built on the host: a traced network takes the edge segment sum
        if backend == "event" or choose_backend(network, spiking=type(model).spiking_trace) == "event":
            backend = "sparse"
    engine = make_engine(network, model, backend, capacity=capacity)
    nb = len(engine.block_sizes)
    block_keys = jnp.asarray(key)[None] if network.block_sizes is None else _batch_keys(key, nb)
    # the compiled segment returns float counts (one compile for every output dtype); at most ~64 M
    # entries per chunk keep the float buffer bounded, then each chunk is cast to the requested dtype
    chunk_size = max(1, min(chunk_size, (1 << 26) // max(network.n_nodes, 1)))
    length = min(chunk_size, n_steps)
    state, k_eq, k_run = _prologue(model, engine, block_keys)
    state = _equilibrate_run(model, engine, stimulus, state, k_eq, equilibration_steps, length, exact=exact)
    outs = []
    t = 0
    while t < n_steps:
        m = min(length, n_steps - t)
        state, ys = _run_segment(model, engine, stimulus, state, k_run, t, m, True, length, exact=exact)
        outs.append(_cast_jit(ys if m == length else ys[:m], out_dtype))
        t += m
    spikes = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=0)
    return GLMTrajectory(spikes, state if record_state else None, network.block_sizes, dt=dt)


def _model_dt(model) -> float:
    """The model's time step (ms) as a Python float: the trajectory's static ``dt``."""
    dt = model.dt
    if is_traced(dt):
        raise ConfigError(
            f"{type(model).__name__}.dt is traced: declare dt as a static field (dt: float = eqx.field(static=True)) "
            "so that simulate can run under jit/vmap"
        )
    return float(dt)


def _any_traced(*trees) -> bool:
    return any(is_traced(leaf) for leaf in jax.tree_util.tree_leaves(eqx.filter(trees, eqx.is_array)))


def _batch_keys(key, k):
    return jax.vmap(lambda b: jax.random.fold_in(key, b))(jnp.arange(k))


def _check_model_values(model: GLMModel) -> None:
    """The model's array parameters must be finite (they may have been swapped in by ``eqx.tree_at``)."""
    arrays = eqx.filter(model, eqx.is_array)
    for path, leaf in jax.tree_util.tree_leaves_with_path(arrays):
        if not is_traced(leaf):
            check_finite(leaf, f"{type(model).__name__}{jax.tree_util.keystr(path)}")


def _simulation_bytes(model: GLMModel, network: Network, n_steps: int, *, chunk_size: int = 10_000, store_as_dtype=jnp.int32,
                     backend: str = "auto") -> dict[str, float]:
    """Estimated bytes of the largest buffers of :func:`simulate` (for the size check before compiling).

    ``raster``: the returned spikes ``(n_steps, N)`` in the output dtype, twice (the chunks and their
    concatenation); ``chunk``: one compiled chunk's float counts ``(length, N)`` and its cast copy; ``ring``:
    the ``T``-step ring buffers of drive and trace ``(T, N)`` and the lag-kernel vectors; ``coupler``:
    the dense ``(N, N)`` weight matrix or the event kernel's padded adjacency.
    """
    n = int(network.n_nodes)
    b = int(network.src.shape[0]) if network.is_stacked else 1
    fl = jnp.dtype(jnp.result_type(float)).itemsize
    out = jnp.dtype(resolve_dtype(store_as_dtype)).itemsize
    T = int(_model_T(model))
    length = max(1, min(chunk_size, (1 << 26) // max(b * n, 1), n_steps))
    if backend == "auto":
        kind = ("dense" if n <= 256 else "sparse") if network.is_stacked else choose_backend(network, spiking=type(model).spiking_trace)
    else:
        kind = backend
    if kind == "dense":
        coupler = float(n) * n * fl
    elif kind == "event":
        coupler = float(n + 1) * max(int(network.max_out_degree or 1), 1) * 8
    else:
        coupler = float(network.src.size) * 12
    return {
        "raster": 2.0 * b * n_steps * n * out,
        "chunk": 2.0 * b * length * n * fl,
        "ring": b * (2.0 * T * n + 8.0 * T) * fl,
        "coupler": b * coupler,
    }


def _model_T(model: GLMModel) -> int:
    """The model's history length without building its kernel (``T_steps`` or the Bernoulli windows)."""
    for attr in ("T_steps",):
        if hasattr(model, attr):
            return int(getattr(model, attr))
    if hasattr(model, "coupling_window"):
        return max(int(model.coupling_window), int(model.abs_ref_scale) + int(model.rel_ref_scale))
    return int(model.T)


def _check_simulation_size(model, network, n_steps, chunk_size, out_dtype, backend) -> None:
    parts = _simulation_bytes(model, network, n_steps, chunk_size=chunk_size, store_as_dtype=out_dtype, backend=backend)
    names = {
        "raster": ("n_steps and n_nodes", f"the raster of {n_steps} steps x {network.n_nodes} neurons"),
        "chunk": ("n_nodes", f"the per-chunk buffers of {network.n_nodes} neurons"),
        "ring": ("T and n_nodes", f"the model's history window (T = {_model_T(model)} steps) for {network.n_nodes} neurons"),
        "coupler": ("n_nodes", f"the synaptic kernel of {network.n_nodes} neurons (backend {backend!r})"),
    }
    top = max(parts, key=parts.get)
    argument, what = names[top]
    check_allocation(sum(parts.values()), argument=argument, what=f"{what} (largest of the simulation's buffers)")


def _check_network_weights(network: Network) -> None:
    from ..core.errors import check_finite

    check_finite(network.weight, "network.weight (connectivity W0)")


def _simulate_stacked(model, network, n_steps, key, stimulus, n_eq, out_dtype, backend, chunk_size, exact=False):
    """vmap over a leading network axis (dense or edge kernel; random numbers per network as in a batch)."""
    B = network.src.shape[0]
    n = network.n_nodes
    if backend in ("auto", "event"):
        backend = "dense" if n <= 256 else "sparse"
    _validate_stimulus(stimulus, n, jnp.result_type(float))
    engines = []
    for b in range(B):
        net_b = Network(network.src[b], network.dst[b], network.weight[b], n, None, network.max_out_degree)
        engines.append(make_engine(net_b, model, backend))
    engine = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *engines)
    keys = _batch_keys(key, B)[:, None]
    chunk_size = max(1, min(chunk_size, (1 << 26) // max(B * n, 1)))
    length = min(chunk_size, n_steps)
    state, k_eq, k_run = _prologue_stacked(model, engine, keys)
    state = _equilibrate_run(model, engine, stimulus, state, k_eq, n_eq, length, segment=_segment_stacked, exact=exact)
    outs, t = [], 0
    while t < n_steps:
        m = min(length, n_steps - t)
        state, ys = _run_segment(model, engine, stimulus, state, k_run, t, m, True, length, segment=_segment_stacked, exact=exact)
        outs.append(_cast_jit(ys if m == length else ys[:, :m], out_dtype))
        t += m
    raster = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=1)
    return raster, state  # (B, n_steps, N)


def state_from_window(model: GLMModel, network: Network, window, *, layout: str = "lag", aux=None, backend: str = "dense") -> tuple[SimState, Engine]:
    """A simulator state whose history is ``window`` ``(N, T)``.

    ``layout="lag"``: ``window[:, k]`` is the trace ``k + 1`` steps ago (column 0 = previous step);
    ``layout="spikeometric"``: column ``T - 1`` is the previous step (spikeometric's ``state``).
    For SA models pass the activation as ``window`` ``(N, 1)``.
    """
    kernel = model.connectivity_filter().padded()
    T = kernel.T
    w = jnp.asarray(window, jnp.result_type(float))
    if w.ndim != 2 or w.shape[0] != network.n_nodes or w.shape[1] != T:
        raise ShapeError(f"window must have shape ({network.n_nodes}, T={T}), got {tuple(w.shape)}")
    if layout == "spikeometric":
        w = w[:, ::-1]
    elif layout != "lag":
        raise ConfigError(f"layout must be 'lag' or 'spikeometric', got {layout!r}")
    engine = make_engine(network, model, backend)
    return _state_from_lag_window(model, kernel, engine, w, aux), engine


def _state_from_lag_window(model, kernel, engine, w, aux=None) -> SimState:
    T = kernel.T
    need_drive, need_hist = _needs(kernel)
    # ring slot j holds lag (pos - j) mod T; with pos = 0, slot j holds lag (-j) mod T
    slots = (-jnp.arange(T)) % T
    hist_ring = w.T[slots]  # (T, N): slot j <- lag slots[j]
    drive = jax.vmap(engine.coupler.project)(hist_ring) if need_drive else None
    hist = hist_ring if need_hist else None
    if aux is None and isinstance(model, _sa_base()):
        aux = w[:, 0]
    return SimState(drive, hist, jnp.asarray(0, jnp.int32), aux)


def _sa_base():
    from .models import SAModel

    return SAModel


def input_from_window(model: GLMModel, network: Network, window, *, stimulus=None, key=None, layout: str = "lag", backend: str = "dense") -> jax.Array:
    """The input ``g`` (N,) of the next step given a history ``window`` (see :func:`state_from_window`).

    ``stimulus`` is the stimulus value at that step (``(N,)``, scalar or ``(N, C)``); ``key`` feeds a noisy
    background (ThresholdSAM).
    """
    state, engine = state_from_window(model, network, window, layout=layout, backend=backend)
    kernel = model.connectivity_filter().padded()
    syn = _synaptic(kernel, engine, state)
    stim = jnp.zeros((), syn.dtype) if stimulus is None else jnp.asarray(stimulus, syn.dtype)
    stim = jnp.broadcast_to(model.stimulus_filter(stim), syn.shape)
    if key is None:
        from .models import ThresholdSAM

        if isinstance(model, ThresholdSAM):
            check_key(key)  # its background is random: the caller chooses the key
        key = jax.random.key(0)  # unused by deterministic inputs
    else:
        key = check_key(key)
    return model.input(syn, stim, key=key)


def conditional_rate(model: GLMModel, network: Network, raster, *, stimulus=None, initial_window=None, backend: str = "auto") -> jax.Array:
    """Mean conditional intensity (Hz) of ``model`` given an observed raster ``(N, n_steps)``.

    ``mu_i(t) = f(g_i(t))`` with ``g`` computed from the *observed* history (teacher forcing); the result
    ``mean(mu) / dt * 1000`` is the differentiable "firing rate" of spikeometric's ``tune`` (detached
    history), smooth in the model parameters. Deterministic backgrounds only (not ThresholdSAM).
    """
    mus = conditional_intensity(model, network, raster, stimulus=stimulus, initial_window=initial_window, backend=backend)
    return jnp.mean(mus) / model.dt * 1000.0


def conditional_intensity(model: GLMModel, network: Network, raster, *, stimulus=None, initial_window=None,
                          backend: str = "auto") -> jax.Array:
    """Expected counts ``mu_i(t)`` per step ``(n_steps, N)`` given an observed raster (teacher forcing).

    ``raster``: a :class:`~spikejax.glm.GLMTrajectory` or a neuron-major ``(N, n_steps)`` array;
    ``initial_window`` ``(N, T)`` is the history before the first step (``window[:, k]`` = ``k + 1`` steps
    ago; zeros by default). Deterministic backgrounds only (not ThresholdSAM).
    """
    from .models import ThresholdSAM

    if isinstance(model, ThresholdSAM):
        raise ConfigError("conditional intensities need a deterministic input; ThresholdSAM's background is random")
    if isinstance(raster, GLMTrajectory):
        raster = raster.raster
    x = jnp.asarray(raster, jnp.result_type(float))
    if x.ndim != 2 or x.shape[0] != network.n_nodes:
        raise ShapeError(f"raster must be (N={network.n_nodes}, n_steps), got shape {tuple(x.shape)}")
    kernel_T = model.connectivity_filter().T
    w0 = jnp.zeros((x.shape[0], kernel_T), x.dtype) if initial_window is None else jnp.asarray(initial_window, x.dtype)
    _, engine = state_from_window(model, network, w0, backend="sparse" if backend == "event" else backend)
    return _conditional_mu(model, engine, x, w0, stimulus)


@eqx.filter_jit
def _conditional_mu(model, engine, x, w0, stimulus):
    n, L = x.shape
    kernel = model.connectivity_filter().padded()
    T = kernel.T
    state = _state_from_lag_window(model, kernel, engine, w0)
    stim_fn = stimulus if stimulus is not None else _zero_stim

    def body(st, inp):
        t, xt = inp
        syn = _synaptic(kernel, engine, st)
        stim = jnp.broadcast_to(model.stimulus_filter(stim_fn(t)), syn.shape).astype(syn.dtype)
        g = model.input(syn, stim, key=jax.random.key(0))
        mu = model.non_linearity(g)
        trace, aux = model.presynaptic(xt, st.aux)
        pos = (st.pos + 1) % T
        drive = st.drive.at[pos].set(engine.coupler.project(trace)) if st.drive is not None else None
        hist = st.hist.at[pos].set(trace) if st.hist is not None else None
        return SimState(drive, hist, pos, aux), mu

    _, mus = jax.lax.scan(body, state, (jnp.arange(L, dtype=jnp.int32), x.T))
    return mus
