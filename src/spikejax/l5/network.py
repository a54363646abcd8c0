"""Network construction: fixed in-degree connectivity, |N(w, sigma)| weights, spectral normalisation.

Conventions: type-level 4x4 matrices have rows = presynaptic type, columns = postsynaptic type;
the neuron-level matrix is ``W[post, pre]``. Neurons are ordered CS, CC, PV, SST.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..core.errors import ConfigError, ShapeError, check_allocation, check_array
from ..core.precision import cpu_tuned_jit
from ..core.random import check_key
from .config import L5Config
from .params import indegree

__all__ = [
    "L5Network",
    "type_index",
    "head_type_weights",
    "sample_connectivity",
    "spectral_normalize",
    "build_network",
    "sample_positions",
]


def type_index(N) -> np.ndarray:
    """Type id (0..3) of every neuron, shape (sum N,)."""
    return np.repeat(np.arange(len(N)), np.asarray(N, dtype=int))


class L5Network(eqx.Module):
    """``sim_number`` sampled networks (leading axis S) with their stimulus positions.

    Attributes
    ----------
    W : (S, N, N)
        Recurrent weights ``W[post, pre]`` after spectral normalisation.
    struct : (S, N, N)
        Structural mask (1 where a synapse was sampled).
    lambda_max : (S,)
        max Re(eigenvalue) of the raw matrix (the normalisation factor).
    w_type : (S, 4, 4)
        Type-level weights the matrix was sampled from (rows = presynaptic).
    pos_a, pos_b : (S, N)
        Receptive-field positions of the stimulus.
    r0 : (S, N)
        Initial rates ~ U(0, 1).
    """

    W: Float[Array, "S N N"]
    struct: Float[Array, "S N N"]
    lambda_max: Float[Array, " S"]
    w_type: Float[Array, "S 4 4"]
    pos_a: Float[Array, "S N"]
    pos_b: Float[Array, "S N"]
    r0: Float[Array, "S N"]

    @property
    def sim_number(self) -> int:
        return int(self.W.shape[0])

    @property
    def n_total(self) -> int:
        return int(self.W.shape[-1])


def head_type_weights(w_target, *, key: jax.Array, neurons: str = "all", sd_rel: float = 0.1) -> jax.Array:
    """The original HEAD initialisation of the type-level weights (rows = presynaptic type).

    Start from |w_target|; for every pair of trained types resample |N(w_ij, sd_rel*|w_ij|)|;
    then negate the PV and SST rows.
    """
    wt = jnp.asarray(w_target)
    trained = {"all": [0, 1, 2, 3], "excit_only": [0, 1], "inhibit_only": [2, 3]}[neurons]
    sel = np.zeros((4, 4), bool)
    sel[np.ix_(trained, trained)] = True
    noise = jax.random.normal(key, (4, 4), dtype=wt.dtype)
    resampled = jnp.abs(wt + sd_rel * jnp.abs(wt) * noise)
    w = jnp.where(sel, resampled, jnp.abs(wt))
    sign = jnp.asarray([1.0, 1.0, -1.0, -1.0], dtype=wt.dtype)[:, None]
    return w * sign


def sample_connectivity(w_type, N, K, w_noise, *, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Fixed in-degree sampling with |N(w_ab, w_noise)| magnitudes carrying the sign of w_ab.

    Every postsynaptic neuron of type b draws exactly ``K[a, b]`` distinct presynaptic partners of
    type a (no autapses). Returns ``(W[post, pre], struct[post, pre])``.
    """
    N = tuple(int(n) for n in N)
    K = tuple(tuple(int(k) for k in row) for row in np.asarray(K, dtype=int))
    key = check_key(key)
    return _sample_connectivity(key, jnp.asarray(w_type), jnp.asarray(w_noise, dtype=jnp.asarray(w_type).dtype), N, K)


# Small programs run once per network: compile them without LLVM optimisation (the threefry draws
# made _build_many a 3x longer compile at the default level; run time stays in milliseconds).
# Measured on CPUs: applied on the CPU backend only (core.precision.cpu_tuned_jit).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _sample_connectivity_impl(key, w_type, w_noise, N, K):
    # One sort for the whole matrix: shifting every presynaptic type into its own interval
    # (10 * type + U) makes the rank within a row, minus the type's offset, the rank among the
    # candidates of that type; self-connections are pushed to the end of their interval.
    n = sum(N)
    tid = np.repeat(np.arange(4), N)
    off = np.concatenate([[0], np.cumsum(N)])[:-1]
    k_sel, k_mag = jax.random.split(key)
    u = jax.random.uniform(k_sel, (n, n), dtype=w_type.dtype)  # [post, pre]
    u = u + 5.0 * jnp.eye(n, dtype=u.dtype) + jnp.asarray(10.0 * tid, dtype=u.dtype)[None, :]
    rank = jnp.argsort(jnp.argsort(u, axis=1), axis=1) - jnp.asarray(off[tid])[None, :]
    K_np = np.asarray(K)
    k_need = jnp.asarray(K_np[tid][:, tid].T)  # [post, pre] -> K[type(pre), type(post)]
    conn = (rank < k_need).astype(w_type.dtype)
    w_blk = w_type[tid][:, tid].T  # [post, pre] -> w_type[type(pre), type(post)]
    mag = jnp.abs(w_blk + w_noise * jax.random.normal(k_mag, (n, n), dtype=w_type.dtype))
    return conn * mag * jnp.sign(w_blk), conn


_sample_connectivity = functools.partial(cpu_tuned_jit, static_argnums=(3, 4), cpu_compiler_options=FAST_COMPILE)(
    _sample_connectivity_impl
)


@functools.lru_cache(maxsize=1)
def _openblas_threads_api():
    """(get, set) of the OpenBLAS that numpy loaded, or None (other BLAS, other platform)."""
    import ctypes
    import glob
    import os

    libdir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", "_64_", ""):
            get = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None)
            set_ = getattr(lib, f"scipy_openblas_set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                get.restype = ctypes.c_int
                set_.argtypes = [ctypes.c_int]
                return get, set_
    return None


def max_real_eigenvalues(W) -> np.ndarray:
    """max Re(lambda) of each (N, N) matrix of ``W`` (..., N, N), float64 LAPACK on the host.

    The matrices are split over a small thread pool with single-threaded OpenBLAS: on a loaded
    2-core machine OpenBLAS's own threads made one 400 x 400 ``eigvals`` 10-20x slower.
    """
    from concurrent.futures import ThreadPoolExecutor
    import os

    W = np.asarray(W, dtype=np.float64)
    flat = W.reshape((-1,) + W.shape[-2:])
    api = _openblas_threads_api()
    old = None
    if api is not None:
        old = api[0]()
        api[1](1)
    try:
        one = lambda w: float(np.max(np.real(np.linalg.eigvals(w))))  # noqa: E731
        workers = max(1, min(len(flat), os.cpu_count() or 1, 4))
        if workers == 1:
            lam = [one(w) for w in flat]
        else:
            with ThreadPoolExecutor(max_workers=workers) as ex:
                lam = list(ex.map(one, flat))
    finally:
        if api is not None and old is not None:
            api[1](int(old))
    return np.asarray(lam).reshape(W.shape[:-2])


def spectral_normalize(W) -> tuple[jax.Array, jax.Array]:
    """``W / max Re(lambda(W))`` and the factor (eigenvalues computed on the host, CPU LAPACK)."""
    W = jnp.asarray(W)
    lam = jnp.asarray(max_real_eigenvalues(W), dtype=W.dtype)
    return W / lam, lam


def sample_positions(n: int, kind: str = "disc", dtype=None, *, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Receptive-field positions (a, b).

    ``disc``: uniform in the unit disc (radius sqrt(U), angle 2 pi U), the HEAD grating;
    ``semicircle``: a = cos(U(0, pi)), b = sin(U(0, pi)) from independent draws (earlier versions).
    """
    dtype = dtype or jnp.result_type(float)
    k1, k2 = jax.random.split(key)
    u1 = jax.random.uniform(k1, (n,), dtype=dtype)
    u2 = jax.random.uniform(k2, (n,), dtype=dtype)
    if kind == "disc":
        rho = jnp.sqrt(u1)
        ang = 2 * jnp.pi * u2
        return rho * jnp.cos(ang), rho * jnp.sin(ang)
    if kind == "semicircle":
        return jnp.cos(jnp.pi * u1), jnp.sin(jnp.pi * u2)
    raise ConfigError(f"kind must be 'disc' or 'semicircle', got {kind!r}")


@functools.partial(cpu_tuned_jit, static_argnums=(5, 6, 7, 8), cpu_compiler_options=FAST_COMPILE)
def _build_many(keys, wt, w_init, w_noise, sd_rel, N, K, neurons, pos_kind):
    n_tot = sum(N)

    def one(k):
        kw, kc, kr, kp = jax.random.split(k, 4)
        w_type = head_type_weights(wt, key=kw, neurons=neurons, sd_rel=sd_rel) if w_init is None else w_init
        W, st = _sample_connectivity_impl(kc, w_type, w_noise, N, K)
        r0 = jax.random.uniform(kr, (n_tot,), dtype=wt.dtype)
        a, b = sample_positions(n_tot, pos_kind, wt.dtype, key=kp)
        return w_type, W, st, r0, a, b

    return jax.vmap(one)(keys)


def build_network(config: L5Config, *, key: jax.Array, sim_number: int | None = None, normalize: bool = True) -> L5Network:
    """Sample ``sim_number`` (default ``config.sim_number``) networks, positions and initial rates.

    Parameters
    ----------
    config
        The configuration (N, w_target, prob, w_noise, w_initial / HEAD initialisation, stimulus kind).
    key
        PRNG key; simulation ``s`` uses ``fold_in(key, s)`` so adding simulations keeps the earlier ones.
    normalize
        Divide every W by its max Re(eigenvalue) (the original does).
    """
    if not isinstance(config, L5Config):
        raise TypeError(f"config must be an L5Config (L5Config(...), load_config(...) or L5Config.from_dict(...)), "
                        f"got {type(config).__name__}")
    cfg = config
    key = check_key(key)
    if sim_number is not None and (isinstance(sim_number, bool) or not isinstance(sim_number, (int, np.integer))):
        raise ConfigError(f"sim_number must be an int >= 1, got {type(sim_number).__name__} {sim_number!r}")
    S = int(cfg.sim_number if sim_number is None else sim_number)
    if S < 1:
        raise ConfigError(f"sim_number must be >= 1, got {S}")
    check_allocation(network_bytes(cfg.N, S), argument="N (config.N)" if sim_number is None else "N and sim_number",
                     what=f"sampling {S} network(s) of {sum(int(n) for n in cfg.N)} neurons (N={list(cfg.N)})")
    N = [int(n) for n in cfg.N]
    K = indegree(cfg.prob, N)
    dtype = jnp.result_type(float)
    wt = check_array(np.asarray(cfg.w_target, dtype=float), "w_target", (4, 4)).astype(dtype)
    pos_kind = "disc" if cfg.stimulus == "counterphase" else "semicircle"
    n_tot = sum(N)

    w_init = None if cfg.w_initial is None else jnp.asarray(np.asarray(cfg.w_initial, dtype=float), dtype=dtype)
    keys = jnp.stack([jax.random.fold_in(key, s) for s in range(S)])
    K_t = tuple(tuple(int(k) for k in row) for row in K)
    w_type, W, st, r0, a, b = _build_many(
        keys, wt, w_init, jnp.asarray(cfg.w_noise, dtype), jnp.asarray(cfg.init_sd_rel, dtype),
        tuple(N), K_t, cfg.neurons, pos_kind,
    )
    if normalize:
        lam = jnp.asarray(max_real_eigenvalues(W), dtype=dtype)
        W = W / lam[:, None, None]
    else:
        lam = jnp.ones((S,), dtype)
    if not bool(jnp.all(jnp.isfinite(W))) or not bool(jnp.all(lam > 0)):
        raise ConfigError(
            "spectral normalisation failed: max Re(eigenvalue) of a sampled W is <= 0 or not finite; "
            "check w_target/prob (a network without excitatory loops cannot be normalised)"
        )
    return L5Network(W=W, struct=st, lambda_max=lam, w_type=w_type, pos_a=a, pos_b=b, r0=r0)


def network_bytes(N, sim_number: int) -> int:
    """Estimated peak bytes of :func:`build_network`: per network W, the structural mask and the raw W
    (default float dtype) plus the float64 host copy used for the eigenvalues."""
    n = int(sum(int(x) for x in N))
    itemsize = jnp.dtype(jnp.result_type(float)).itemsize
    return int(sim_number) * n * n * (3 * itemsize + 8)


def check_network(net: L5Network, N) -> None:
    """Validate the shapes of a user-supplied :class:`L5Network` against population sizes ``N``."""
    n = int(sum(N))
    S = net.W.shape[0] if net.W.ndim == 3 else None
    if net.W.ndim != 3 or net.W.shape[1:] != (n, n):
        raise ShapeError(f"network W must have shape (S, {n}, {n}) for N={list(N)}, got {tuple(net.W.shape)}")
    for name in ("struct",):
        if getattr(net, name).shape != net.W.shape:
            raise ShapeError(f"network {name} must have shape {tuple(net.W.shape)}, got {tuple(getattr(net, name).shape)}")
    for name in ("pos_a", "pos_b", "r0"):
        if getattr(net, name).shape != (S, n):
            raise ShapeError(f"network {name} must have shape ({S}, {n}), got {tuple(getattr(net, name).shape)}")
