"""Graph (edge-list) networks: one network, a block-diagonal batch, or a stack for ``vmap``.

A network is ``(src, dst, weight, n_nodes)``. Edge ``e`` carries the weight ``W0[src[e], dst[e]]``
of the square connectivity matrix whose **row is the presynaptic (source)** neuron and whose
**column is the postsynaptic (target)** neuron, exactly as spikeometric's ``edge_index``/``W0``.
The input to neuron ``i`` is therefore ``sum_j W0[j, i] * (...)``. A zero weight means "no edge":
:func:`from_dense` drops zeros.

Batches
-------
* :func:`batch_networks` joins k networks into one block-diagonal graph (node indices of network b
  are offset by the sizes of networks 0..b-1), like PyG's ``DataLoader``. The raster of the batch
  has shape ``(sum N_b, n_steps)``. The network remembers its block sizes so that random numbers
  are drawn per network (network b uses ``batch_keys(k, key=key)[b]``): a batch equals one-by-one
  simulation.
* :func:`stack_networks` gives the same networks with a leading axis (edges padded with zero
  weights to a common length) for ``jax.vmap``.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError, NonFiniteError, ShapeError, check_array

__all__ = [
    "Network",
    "from_dense",
    "from_edges",
    "to_dense",
    "batch_networks",
    "unbatch_raster",
    "stack_networks",
    "batch_keys",
]


class Network(eqx.Module):
    """A directed weighted graph of ``n_nodes`` neurons.

    Attributes
    ----------
    src, dst
        int32 arrays ``(E,)`` (or ``(B, E)`` for a stacked batch): presynaptic and postsynaptic
        neuron of each edge.
    weight
        float array ``(E,)`` (or ``(B, E)``): the coupling ``W0`` of each edge (dimensionless).
    n_nodes
        Number of neurons (static).
    block_sizes
        ``None`` for one network, or the sizes of the networks joined block-diagonally by
        :func:`batch_networks` (static).
    max_out_degree
        Largest number of outgoing edges of a neuron (static; used by the event-driven kernel).
    """

    src: jax.Array
    dst: jax.Array
    weight: jax.Array
    n_nodes: int = eqx.field(static=True)
    block_sizes: tuple[int, ...] | None = eqx.field(static=True, default=None)
    max_out_degree: int = eqx.field(static=True, default=0)

    @property
    def n_edges(self) -> int:
        return int(self.src.shape[-1])

    @property
    def is_stacked(self) -> bool:
        """True for a :func:`stack_networks` batch (leading axis over networks)."""
        return self.src.ndim == 2

    @property
    def density(self) -> float:
        return self.n_edges / max(self.n_nodes * self.n_nodes, 1)

    def to_dense(self) -> jax.Array:
        """The square ``(N, N)`` matrix ``W0[src, dst]`` (duplicate edges are summed)."""
        return to_dense(self)

    def in_weight(self) -> jax.Array:
        """Summed incoming weight ``sum_j W0[j, i]`` of each neuron, shape ``(N,)``."""
        return jax.ops.segment_sum(self.weight, self.dst, num_segments=self.n_nodes)

    def __repr__(self) -> str:  # short, readable
        extra = f", blocks={len(self.block_sizes)}" if self.block_sizes else ""
        lead = f"{self.src.shape[0]} x " if self.is_stacked else ""
        return f"Network({lead}n_nodes={self.n_nodes}, n_edges={self.n_edges}{extra})"


def _max_out_degree(src: np.ndarray, n: int) -> int:
    if src.size == 0:
        return 0
    return int(np.bincount(src.reshape(-1)).max())


def from_edges(src, dst, weight, n_nodes: int, *, check: bool = True) -> Network:
    """A network from an edge list.

    Parameters
    ----------
    src, dst
        Integer arrays ``(E,)``: presynaptic and postsynaptic neuron of each edge, in ``[0, n_nodes)``.
    weight
        Array ``(E,)`` of finite weights.
    n_nodes
        Number of neurons ``N``.
    """
    if isinstance(n_nodes, bool) or int(n_nodes) != n_nodes or n_nodes < 1:
        raise ConfigError(f"n_nodes must be a positive integer, got {n_nodes!r}")
    n_nodes = int(n_nodes)
    src_np = np.asarray(src)
    dst_np = np.asarray(dst)
    if src_np.dtype.kind not in "iu" or dst_np.dtype.kind not in "iu":
        if src_np.size or dst_np.size:
            raise TypeError(f"src and dst must be integer arrays, got dtypes {src_np.dtype} and {dst_np.dtype}")
    src_np = src_np.astype(np.int32).reshape(-1) if src_np.ndim <= 1 else src_np
    dst_np = dst_np.astype(np.int32).reshape(-1) if dst_np.ndim <= 1 else dst_np
    if src_np.ndim != 1 or dst_np.ndim != 1:
        raise ShapeError(f"src and dst must be 1-D, got shapes {src_np.shape} and {dst_np.shape}")
    if src_np.shape != dst_np.shape:
        raise ShapeError(f"src and dst must have the same shape, got {src_np.shape} and {dst_np.shape}")
    w = check_array(weight, "weight", (src_np.shape[0],), finite=check)
    if not jnp.issubdtype(w.dtype, jnp.floating):
        w = w.astype(jnp.result_type(float))
    if src_np.size and (src_np.min() < 0 or src_np.max() >= n_nodes or dst_np.min() < 0 or dst_np.max() >= n_nodes):
        raise ConfigError(
            f"src and dst must lie in [0, n_nodes={n_nodes}), got src in [{src_np.min()}, {src_np.max()}] "
            f"and dst in [{dst_np.min()}, {dst_np.max()}]"
        )
    return Network(
        jnp.asarray(src_np, jnp.int32),
        jnp.asarray(dst_np, jnp.int32),
        w,
        n_nodes,
        None,
        _max_out_degree(src_np, n_nodes),
    )


def from_dense(matrix) -> Network:
    """A network from a square connectivity matrix ``W0[pre, post]``; zero entries are dropped.

    Edges are listed in row-major order (``nonzero`` of the matrix), as spikeometric does.
    """
    if hasattr(matrix, "detach"):  # a torch tensor
        matrix = matrix.detach().cpu().numpy()
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ShapeError(f"matrix must be a square (N, N) connectivity matrix, got shape {m.shape}")
    if m.dtype.kind not in "biuf":
        raise TypeError(f"matrix must hold numbers, got dtype {m.dtype}")
    if m.dtype.kind == "f" and not np.all(np.isfinite(m)):
        raise NonFiniteError(
            f"matrix (connectivity weights) must be finite, got {int(np.isnan(m).sum())} NaN and "
            f"{int(np.isinf(m).sum())} inf value(s)"
        )
    src, dst = np.nonzero(m)
    w = m[src, dst]
    if w.dtype.kind != "f":
        w = w.astype(np.float32)
    return from_edges(src.astype(np.int32), dst.astype(np.int32), w, m.shape[0])


def to_dense(network: Network) -> jax.Array:
    """Square matrix ``(N, N)`` (or ``(B, N, N)`` for a stacked batch) of a network."""
    n = network.n_nodes

    def one(src, dst, w):
        return jnp.zeros((n, n), w.dtype).at[src, dst].add(w)

    if network.is_stacked:
        return jax.vmap(one)(network.src, network.dst, network.weight)
    return one(network.src, network.dst, network.weight)


def batch_networks(networks: Sequence[Network]) -> Network:
    """Join networks into one block-diagonal graph (offset node indices), like PyG's ``DataLoader``."""
    networks = list(networks)
    if not networks:
        raise ConfigError("batch_networks needs at least one network, got an empty list")
    for i, net in enumerate(networks):
        if not isinstance(net, Network):
            raise TypeError(f"networks[{i}] must be a Network, got {type(net).__name__}")
        if net.is_stacked:
            raise ShapeError(f"networks[{i}] is a stacked batch; batch_networks takes single networks")
    sizes: list[int] = []
    for net in networks:
        sizes.extend(net.block_sizes if net.block_sizes else (net.n_nodes,))
    offsets = np.cumsum([0] + [n.n_nodes for n in networks[:-1]])
    src = np.concatenate([np.asarray(n.src) + o for n, o in zip(networks, offsets)])
    dst = np.concatenate([np.asarray(n.dst) + o for n, o in zip(networks, offsets)])
    w = jnp.concatenate([n.weight for n in networks])
    total = int(sum(n.n_nodes for n in networks))
    return Network(
        jnp.asarray(src, jnp.int32),
        jnp.asarray(dst, jnp.int32),
        w,
        total,
        tuple(int(s) for s in sizes),
        max((n.max_out_degree for n in networks), default=0),
    )


def unbatch_raster(raster, network: Network) -> list:
    """Split a ``(sum N_b, T)`` raster (or a ``GLMTrajectory``) of a block-diagonal batch into per-network rasters."""
    raster = getattr(raster, "raster", raster)
    sizes = network.block_sizes or (network.n_nodes,)
    cuts = np.cumsum(sizes)[:-1]
    return list(jnp.split(raster, cuts, axis=0))


def stack_networks(networks: Sequence[Network]) -> Network:
    """Networks of equal size with a leading batch axis (edge lists padded with zero-weight edges)."""
    networks = list(networks)
    if not networks:
        raise ConfigError("stack_networks needs at least one network, got an empty list")
    n = networks[0].n_nodes
    for i, net in enumerate(networks):
        if net.n_nodes != n:
            raise ShapeError(f"stack_networks needs networks of equal size: networks[0] has {n} neurons, networks[{i}] has {net.n_nodes}")
        if net.is_stacked or net.block_sizes:
            raise ShapeError(f"networks[{i}] is already a batch; stack single networks")
    e = max(net.n_edges for net in networks)

    def pad(a, fill):
        a = np.asarray(a)
        return np.concatenate([a, np.full(e - a.shape[0], fill, a.dtype)])

    src = np.stack([pad(net.src, 0) for net in networks])
    dst = np.stack([pad(net.dst, 0) for net in networks])
    w = jnp.stack([jnp.concatenate([net.weight, jnp.zeros(e - net.n_edges, net.weight.dtype)]) for net in networks])
    deg = max(net.max_out_degree for net in networks)
    return Network(jnp.asarray(src, jnp.int32), jnp.asarray(dst, jnp.int32), w, n, None, deg)


def batch_keys(n_networks: int, *, key: jax.Array) -> jax.Array:
    """Keys of the networks of a batch: network ``b`` uses ``fold_in(key, b)``.

    Simulating network b alone with ``batch_keys(k, key=key)[b]`` reproduces its block of the batch.
    """
    return jax.vmap(lambda b: jax.random.fold_in(key, b))(jnp.arange(n_networks))
