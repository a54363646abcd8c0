"""Lag kernels and the synaptic-input kernels (dense matrix, edge segment-sum, spike-driven).

Lag convention
--------------
spikejax stores kernels **lag-major**: ``profile[k]`` is the weight of a presynaptic event ``k + 1``
steps ago, so ``profile[0] = c(0)`` acts on the step right after the spike:

    g_i(t) = sum_j sum_{k=0}^{T-1} W0[j, i] c(k) x_j(t - 1 - k).

spikeometric stores the same kernel time-flipped: its column ``T - 1`` is lag 0 and column 0 is lag
``T - 1``. :meth:`LagKernel.edge_kernel` converts (``layout="spikeometric"`` flips the columns).

Separable kernels
-----------------
All five spikeometric models have kernels that factor per edge class: coupling edges carry
``W0[e] * c(k)`` with one profile ``c`` shared by every edge, and (BernoulliGLM) every neuron has a
self-edge with a refractory profile. The simulator exploits this: it keeps a ring buffer of the
instantaneous recurrent drive ``u(s) = W0^T x(s)`` (one sparse/dense product per step, not T) and
contracts it with ``c`` — O(E + N T) work per step instead of spikeometric's O(E T). A general,
non-separable ``[E, T]`` kernel (custom models) is supported too.

Synaptic-input kernels
----------------------
:class:`Coupler` computes ``u = W0^T x`` for one step:

* ``"dense"``: a ``(N, N)`` matrix-vector product (small or dense networks);
* ``"sparse"``: ``segment_sum`` over edges of ``W0[e] * x[src[e]]`` into ``dst[e]``;
* ``"event"``: spike-driven gathering: only the outgoing rows of neurons that spiked are scattered
  (work proportional to the number of spikes times the out-degree); if more than ``capacity``
  neurons are active in a step it falls back to the segment sum, so results never depend on activity.

All three give the same input up to floating-point summation order; since at most a few terms are
non-zero per neuron and step, rasters are identical in practice (tested).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError, ShapeError
from ..core.precision import matmul, on_cpu
from .network import Network

__all__ = ["LagKernel", "Coupler", "make_coupler", "choose_backend", "BACKENDS"]

BACKENDS = ("auto", "dense", "sparse", "event")


class LagKernel(eqx.Module):
    """The lag kernel ``W[e, k]`` a model's connectivity filter builds from the edge weights ``W0``.

    Attributes
    ----------
    coupling
        ``(T,)`` profile ``c(k)`` shared by all edges (``W[e, k] = W0[e] * c(k)``), or ``None``.
    edge_kernel
        ``(E, T)`` per-edge kernel (general, non-separable), or ``None``. Lag-major.
    self_kernel
        ``(T,)`` kernel of every neuron on its own history (refractoriness), or ``None``.
    """

    coupling: jax.Array | None = None
    edge_kernel: jax.Array | None = None
    self_kernel: jax.Array | None = None

    def __check_init__(self):
        if self.coupling is None and self.edge_kernel is None and self.self_kernel is None:
            raise ConfigError("a LagKernel needs at least one of coupling, edge_kernel or self_kernel")
        if self.coupling is not None and self.edge_kernel is not None:
            raise ConfigError("give either a shared coupling profile or a per-edge edge_kernel, not both")

    @property
    def T(self) -> int:
        """Number of lags (steps of history) the kernel reads."""
        lens = [a.shape[-1] for a in (self.coupling, self.edge_kernel, self.self_kernel) if a is not None]
        return int(max(lens))

    def padded(self) -> "LagKernel":
        """All parts padded with zeros to the common length ``T``."""
        T = self.T

        def pad(a):
            if a is None or a.shape[-1] == T:
                return a
            widths = [(0, 0)] * (a.ndim - 1) + [(0, T - a.shape[-1])]
            return jnp.pad(a, widths)

        return LagKernel(pad(self.coupling), pad(self.edge_kernel), pad(self.self_kernel))

    def edge_kernel_of(self, network: Network, *, layout: str = "spikejax"):
        """The explicit per-edge kernel ``(src, dst, W[E', T])`` with self-edges appended.

        ``layout="spikejax"`` is lag-major (column 0 = lag 0); ``layout="spikeometric"`` flips the
        columns (column T-1 = lag 0), which is spikeometric's ``connectivity_filter`` layout. Self
        edges (refractory kernel) are appended after the coupling edges, as PyG's
        ``add_remaining_self_loops`` does.
        """
        k = self.padded()
        T = k.T
        src, dst, w = network.src, network.dst, network.weight
        if k.coupling is not None:
            W = w[:, None] * k.coupling[None, :]
        elif k.edge_kernel is not None:
            W = k.edge_kernel
        else:
            W = jnp.zeros((0, T), w.dtype)
            src = src[:0]
            dst = dst[:0]
        if k.self_kernel is not None:
            n = network.n_nodes
            idx = jnp.arange(n, dtype=src.dtype)
            src = jnp.concatenate([src, idx])
            dst = jnp.concatenate([dst, idx])
            W = jnp.concatenate([W, jnp.broadcast_to(k.self_kernel, (n, T)).astype(W.dtype)])
        if layout == "spikeometric":
            W = W[:, ::-1]
        elif layout != "spikejax":
            raise ConfigError(f"layout must be 'spikejax' or 'spikeometric', got {layout!r}")
        return src, dst, W


class Coupler(eqx.Module):
    """Computes the instantaneous recurrent drive ``u_i = sum_j W0[j, i] x_j`` for one step."""

    kind: str = eqx.field(static=True)
    n: int = eqx.field(static=True)
    capacity: int = eqx.field(static=True)
    dense: jax.Array | None
    src: jax.Array | None
    dst: jax.Array | None
    weight: jax.Array | None
    out_dst: jax.Array | None
    out_w: jax.Array | None

    def _segment(self, x):
        return jax.ops.segment_sum(self.weight * x[self.src], self.dst, num_segments=self.n)

    def project(self, x: jax.Array) -> jax.Array:
        """``W0^T x`` for a presynaptic vector ``x`` of shape ``(N,)``."""
        if self.kind == "dense":
            return matmul(x, self.dense)
        if self.kind == "sparse":
            return self._segment(x)
        # event-driven: scatter the outgoing rows of active neurons only, in two tiers of capacity
        n, cap = self.n, self.capacity
        cap2 = min(n, max(4 * cap, n // 8))

        def events(x, size):
            idx = jnp.nonzero(x, size=size, fill_value=n)[0]
            vals = jnp.concatenate([x, jnp.zeros((1,), x.dtype)])[idx]
            d = self.out_dst[idx]
            contrib = self.out_w[idx] * vals[:, None]
            return jnp.zeros((n + 1,), contrib.dtype).at[d.reshape(-1)].add(contrib.reshape(-1))[:n]

        if cap >= n:
            return events(x, n)
        active = jnp.count_nonzero(x)
        if cap2 <= cap:
            return jax.lax.cond(active <= cap, lambda v: events(v, cap), lambda v: self._segment(v), x)

        def big(v):
            return jax.lax.cond(active <= cap2, lambda w: events(w, cap2), lambda w: self._segment(w), v)

        return jax.lax.cond(active <= cap, lambda v: events(v, cap), big, x)

    def project_edges(self, hist: jax.Array, edge_kernel: jax.Array, self_src, self_dst) -> jax.Array:
        """General kernel: ``sum_e sum_k W[e, k] hist[k, src[e]]`` into ``dst[e]`` (hist lag-major ``(T, N)``)."""
        contrib = jnp.sum(edge_kernel * hist[:, self_src].T, axis=1)
        return jax.ops.segment_sum(contrib, self_dst, num_segments=self.n)


def choose_backend(network: Network, *, spiking: bool = True) -> str:
    """The kernel :func:`make_coupler` picks for ``backend="auto"``.

    From the CPU measurements of ``benchmarks/glm_kernels.py`` (RESULTS.md, "Kernel choice"; the choice
    was the fastest kernel at every measured N in 100-3000 and density in 1-50 %):

    * very sparse networks (density <= 2 %): the edge segment sum up to N = 512; beyond, spike-driven
      gathering for spike-count traces (GLMs) and the segment sum for dense activations (SA models);
    * otherwise dense up to N = 512, and for dense networks (density >= 25 %) up to N = 4096;
    * otherwise spike-driven gathering (GLMs) or, for SA models, dense up to N = 4096 and the segment sum
      beyond (the dense and segment-sum costs do not depend on activity).

    The event kernel's cost grows with the number of spikes per step; the table was measured at the
    tutorial RectifiedLNP's low rates, so very active networks may be faster with ``backend="dense"``.
    These thresholds apply on the CPU backend only; on accelerators the dense product is taken up to
    N = 8192 (a 256 MB float32 matrix) and the edge segment sum beyond (no per-step ``cond`` on the
    number of spikes, which would synchronise with the host every step).
    """
    n = network.n_nodes
    if not on_cpu():
        return "dense" if n <= 8192 else "sparse"
    density = network.density
    if density <= 0.02:
        if n <= 512 or not spiking:
            return "sparse"
        return "event"
    if n <= 512 or (density >= 0.25 and n <= 4096):
        return "dense"
    if spiking:
        return "event"
    return "dense" if n <= 4096 else "sparse"


def _out_adjacency(src: np.ndarray, dst: np.ndarray, w: np.ndarray, n: int, degree: int):
    """Outgoing edges per source neuron, padded to ``degree`` columns (pad: dst = n, weight 0); row n is padding."""
    degree = max(degree, 1)
    order = np.argsort(src, kind="stable")
    s, d, ww = src[order], dst[order], w[order]
    counts = np.bincount(s, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(s.size) - starts[s]
    out_dst = np.full((n + 1, degree), n, np.int32)
    out_w = np.zeros((n + 1, degree), w.dtype)
    out_dst[s, slot] = d
    out_w[s, slot] = ww
    return out_dst, out_w


def make_coupler(network: Network, backend: str = "auto", *, spiking: bool = True, capacity: int | None = None) -> Coupler:
    """Build the synaptic-input kernel for ``network`` (outside ``jit``; the network must be concrete).

    Parameters
    ----------
    backend
        ``"auto"`` (see :func:`choose_backend`), ``"dense"``, ``"sparse"`` or ``"event"``.
    spiking
        Whether the presynaptic trace is a sparse spike count (enables the event kernel under auto).
    capacity
        Event kernel: most active neurons per step handled by the small gather (default
        ``max(16, N // 64)``); a second tier handles up to ``max(4 capacity, N // 8)``; steps with more
        activity use the segment sum. A gather always processes its full capacity of rows, so small
        tiers are fast as long as they are rarely exceeded.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    if network.is_stacked:
        raise ShapeError("make_coupler takes a single (or block-diagonal) network; vmap over stacked ones")
    n = network.n_nodes
    kind = choose_backend(network, spiking=spiking) if backend == "auto" else backend
    cap = int(capacity) if capacity is not None else max(16, n // 64)
    cap = max(1, min(cap, n))
    if kind == "dense":
        return Coupler("dense", n, cap, network.to_dense(), network.src, network.dst, network.weight, None, None)
    if kind == "sparse":
        return Coupler("sparse", n, cap, None, network.src, network.dst, network.weight, None, None)
    src = np.asarray(network.src)
    dst = np.asarray(network.dst)
    w = np.asarray(network.weight)
    degree = network.max_out_degree or (int(np.bincount(src, minlength=n).max()) if src.size else 1)
    out_dst, out_w = _out_adjacency(src, dst, w, n, degree)
    return Coupler(
        "event", n, cap, None, network.src, network.dst, network.weight, jnp.asarray(out_dst), jnp.asarray(out_w, network.weight.dtype)
    )


def kernel_sum(profile: jax.Array) -> jax.Array:
    """``C = sum_k c(k)``: the gain of a stationary input through a lag profile."""
    return jnp.sum(profile)
