"""Connectivity generators with explicit PRNG keys, and connectivity-folder IO.

Every generator returns square matrices ``W0[pre, post]`` (zero diagonal) or :class:`Network` s.
All randomness — values *and* the sparsity mask — comes from the key passed in (spikeometric
draws the sparsity mask from torch's global generator, so its networks cannot be reproduced
from the generator's seed alone).

Folder layout (spikeometric's): one dense square matrix per file, ``{i}.npy`` (or ``{i}.pt``),
loaded in **file-name order** (so ``10.npy`` comes before ``2.npy``).
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError, DataFormatError, check_allocation, check_scalar
from ..core.io import atomic_path
from ..core.random import check_key
from .network import Network, batch_networks, from_dense

__all__ = [
    "NormalGenerator",
    "UniformGenerator",
    "MexicanHatGenerator",
    "mexican_hat",
    "load_connectivity",
    "save_connectivity",
    "combine_all",
]


def _dale_half(values: jax.Array, keep: jax.Array) -> jax.Array:
    """Dale's law by source row from one half matrix ``H (N/2, N)``: rows ``0..N/2-1`` excitatory, the rest inhibitory."""
    H = jnp.where(keep, values, 0.0)
    W = jnp.concatenate([jnp.maximum(H, 0.0), jnp.minimum(H, 0.0)], axis=0)
    return W * (1.0 - jnp.eye(W.shape[0], dtype=W.dtype))


class _Generator(abc.ABC):
    n_neurons: int

    @abc.abstractmethod
    def matrix(self, key: jax.Array) -> jax.Array:
        """One weight matrix (presynaptic x postsynaptic) drawn with ``key``."""

    def matrices(self, n: int, *, key: jax.Array) -> list[np.ndarray]:
        """``n`` square matrices (network ``i`` from ``fold_in(key, i)``)."""
        check_scalar(n, "n", low=1, integer=True)
        key = check_key(key)
        return [np.asarray(self.matrix(jax.random.fold_in(key, i))) for i in range(int(n))]

    def generate(self, n: int, *, key: jax.Array) -> list[Network]:
        """``n`` networks (network ``i`` from ``fold_in(key, i)``), as spikeometric's ``generate``."""
        return [from_dense(m) for m in self.matrices(n, key=key)]

    def save(self, n: int, directory, *, key: jax.Array, fmt: str = "npy") -> list[Path]:
        """Write ``n`` networks to ``directory/{i}.npy`` (or ``.pt``), as spikeometric's ``save``."""
        return save_connectivity(self.matrices(n, key=key), directory, fmt=fmt)


@dataclass(frozen=True)
class NormalGenerator(_Generator):
    """Gaussian weights with Dale's law by source row.

    A half matrix ``H (N/2, N) ~ N(mean, std^2)`` (divided by ``sqrt(N)`` with ``glorot``) keeps each
    entry with probability ``2 (1 - sparsity)``; rows ``0..N/2-1`` get ``max(H, 0)`` (excitatory), rows
    ``N/2..N-1`` get ``min(H, 0)`` (inhibitory) from the *same* draw, so each (k, column) pair connects
    from neuron k or k + N/2, never both. Overall density about ``1 - sparsity``; zero diagonal.

    Parameters
    ----------
    n_neurons
        Even number of neurons.
    mean, std
        Mean and standard deviation of the weights (``std >= 0``).
    sparsity
        Fraction of absent edges, in ``[0.5, 1]``.
    glorot
        Divide the weights by ``sqrt(n_neurons)``.
    """

    n_neurons: int
    mean: float = 0.0
    std: float = 1.0
    sparsity: float = 0.5
    glorot: bool = False

    def __post_init__(self):
        check_scalar(self.n_neurons, "n_neurons", low=2, integer=True)
        if int(self.n_neurons) % 2:
            raise ConfigError(f"n_neurons must be even for NormalGenerator (Dale's law halves), got {self.n_neurons}")
        check_scalar(self.mean, "mean")
        check_scalar(self.std, "std", low=0.0)
        check_scalar(self.sparsity, "sparsity", low=0.5, high=1.0)

    def matrix(self, key: jax.Array) -> jax.Array:
        n = int(self.n_neurons)
        k1, k2 = jax.random.split(key)
        dtype = jnp.result_type(float)
        H = self.mean + self.std * jax.random.normal(k1, (n // 2, n), dtype)
        if self.glorot:
            H = H / jnp.sqrt(jnp.asarray(n, dtype))
        keep = jax.random.uniform(k2, (n // 2, n), dtype) < 2.0 * (1.0 - self.sparsity)
        return _dale_half(H, keep)


@dataclass(frozen=True)
class UniformGenerator(_Generator):
    """Uniform weights in ``[low, high)``.

    If ``low == -high`` the Dale's-law half matrix of :class:`NormalGenerator` is built with uniform
    values (keep probability ``2 (1 - sparsity)``, so ``sparsity`` must be in ``[0.5, 1]``); otherwise a
    full matrix keeps each entry with probability ``1 - sparsity`` (``sparsity`` in ``[0, 1]``).
    Zero diagonal.
    """

    n_neurons: int
    low: float
    high: float
    sparsity: float = 0.5

    def __post_init__(self):
        check_scalar(self.n_neurons, "n_neurons", low=1, integer=True)
        check_scalar(self.low, "low")
        check_scalar(self.high, "high")
        if self.low > self.high:
            raise ConfigError(f"low must be <= high, got low={self.low} and high={self.high}")
        if self._dale:
            if int(self.n_neurons) % 2:
                raise ConfigError(f"n_neurons must be even when low == -high (Dale's law halves), got {self.n_neurons}")
            check_scalar(self.sparsity, "sparsity", low=0.5, high=1.0)
        else:
            check_scalar(self.sparsity, "sparsity", low=0.0, high=1.0)

    @property
    def _dale(self) -> bool:
        return self.low == -self.high and self.high != 0

    def matrix(self, key: jax.Array) -> jax.Array:
        n = int(self.n_neurons)
        k1, k2 = jax.random.split(key)
        dtype = jnp.result_type(float)
        if self._dale:
            H = jax.random.uniform(k1, (n // 2, n), dtype, self.low, self.high)
            keep = jax.random.uniform(k2, (n // 2, n), dtype) < 2.0 * (1.0 - self.sparsity)
            return _dale_half(H, keep)
        W = jax.random.uniform(k1, (n, n), dtype, self.low, self.high)
        keep = jax.random.uniform(k2, (n, n), dtype) < 1.0 - self.sparsity
        return jnp.where(keep, W, 0.0) * (1.0 - jnp.eye(n, dtype=dtype))


def mexican_hat(n_neurons: int, a: float = 1.0015, sigma_1: float = 6.98, sigma_2: float = 7.0, *, diagonal: bool = False) -> np.ndarray:
    """Mexican-hat ring ``W_ij = exp(-d^2 / 2 s1^2) - a exp(-d^2 / 2 s2^2)``, ``d = min(|i-j|, N-|i-j|)``.

    ``diagonal=False`` (current spikeometric) zeroes the diagonal; ``diagonal=True`` keeps the legacy
    self-inhibition ``W_ii = 1 - a`` (spikeometric before Feb 2023, used by the tutorial's figures).
    Computed in float64 and returned as float32 (as spikeometric stores it).
    """
    check_scalar(n_neurons, "n_neurons", low=1, integer=True)
    check_scalar(sigma_1, "sigma_1", low=0.0, low_inclusive=False)
    check_scalar(sigma_2, "sigma_2", low=0.0, low_inclusive=False)
    check_scalar(a, "a")
    n = int(n_neurons)
    # distances (int64), the float64 matrix and its float32 copy, and the temporaries of the two Gaussians
    check_allocation(5.0 * 8 * n * n, argument="n_neurons", what=f"a dense {n} x {n} Mexican-hat matrix")
    i = np.arange(n)
    d = np.abs(i[:, None] - i[None, :])
    d = np.minimum(d, n - d).astype(np.float64)
    W = np.exp(-(d**2) / (2 * sigma_1**2)) - a * np.exp(-(d**2) / (2 * sigma_2**2))
    if not diagonal:
        np.fill_diagonal(W, 0.0)
    return W.astype(np.float32)


@dataclass(frozen=True)
class MexicanHatGenerator(_Generator):
    """Deterministic Mexican-hat rings (see :func:`mexican_hat`); the key is accepted and ignored."""

    n_neurons: int
    a: float = 1.0015
    sigma_1: float = 6.98
    sigma_2: float = 7.0
    diagonal: bool = False

    def __post_init__(self):
        mexican_hat(2, self.a, self.sigma_1, self.sigma_2)  # validates
        check_scalar(self.n_neurons, "n_neurons", low=1, integer=True)

    def matrix(self, key: jax.Array | None = None) -> jax.Array:
        return jnp.asarray(mexican_hat(self.n_neurons, self.a, self.sigma_1, self.sigma_2, diagonal=self.diagonal))

    def matrices(self, n: int, *, key: jax.Array | None = None) -> list[np.ndarray]:
        check_scalar(n, "n", low=1, integer=True)
        m = mexican_hat(self.n_neurons, self.a, self.sigma_1, self.sigma_2, diagonal=self.diagonal)
        return [m.copy() for _ in range(int(n))]

    def generate(self, n: int, *, key: jax.Array | None = None) -> list[Network]:
        return [from_dense(m) for m in self.matrices(n)]

    def save(self, n: int, directory, *, key: jax.Array | None = None, fmt: str = "npy") -> list[Path]:
        return save_connectivity(self.matrices(n), directory, fmt=fmt)


# --------------------------------------------------------------------------------------------
# folder IO


def _load_pt(path: Path) -> np.ndarray:
    try:
        import torch  # noqa: PLC0415 - optional, lazily imported
    except ImportError:
        raise DataFormatError(
            f"{path} is a PyTorch file; reading .pt needs torch (pip install 'spikejax[bench]' or torch)"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataFormatError(f"{path} could not be read as a torch tensor: {exc}") from None
    if not hasattr(obj, "numpy"):
        raise DataFormatError(f"{path} must hold one tensor (a square matrix), got {type(obj).__name__}")
    return obj.detach().cpu().numpy()


def _load_matrix(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            m = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DataFormatError(f"{path} could not be read as a .npy array (truncated?): {exc}") from None
    else:
        m = _load_pt(path)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise DataFormatError(f"{path} must hold a square (N, N) connectivity matrix, got shape {m.shape}")
    return m.astype(np.float32) if m.dtype != np.float32 else m


def load_connectivity(directory, *, as_networks: bool = True):
    """Every ``*.npy`` / ``*.pt`` square matrix in ``directory``, sorted by file name (``10`` before ``2``).

    Returns a list of :class:`Network` (weights float32, indices int32), or of numpy matrices with
    ``as_networks=False``. ``.pt`` files need torch (imported only then).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no such connectivity folder: {directory}")
    files = sorted((p for p in directory.iterdir() if p.suffix in (".npy", ".pt") and p.is_file()), key=lambda p: p.name)
    if not files:
        raise DataFormatError(f"connectivity folder {directory} holds no .npy or .pt files")
    mats = [_load_matrix(p) for p in files]
    return [from_dense(m) for m in mats] if as_networks else mats


def save_connectivity(matrices, directory, *, fmt: str = "npy") -> list[Path]:
    """Write square matrices (or networks) as ``directory/{i}.npy`` (or ``{i}.pt``), atomically."""
    if fmt not in ("npy", "pt"):
        raise ConfigError(f"fmt must be 'npy' or 'pt', got {fmt!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, m in enumerate(matrices):
        arr = np.asarray(m.to_dense() if isinstance(m, Network) else m, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
            raise ConfigError(f"matrices[{i}] must be square (N, N), got shape {arr.shape}")
        path = directory / f"{i}.{fmt}"
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            if fmt == "npy":
                with open(tmp, "wb") as fh:
                    np.save(fh, arr, allow_pickle=False)
            else:
                try:
                    import torch  # noqa: PLC0415
                except ImportError:
                    raise ConfigError("fmt='pt' needs torch (pip install torch)") from None
                torch.save(torch.from_numpy(arr), os.fspath(tmp))
        paths.append(path)
    return paths


def combine_all(networks) -> Network:
    """All networks of a folder (or list) in one block-diagonal batch (spikeometric's ``combine_all``)."""
    if isinstance(networks, (str, os.PathLike)):
        networks = load_connectivity(networks)
    return batch_networks(networks)
