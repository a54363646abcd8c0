"""File input/output: atomic writes, JSON, HDF5, and equinox model serialisation.

Every writer goes to a temporary file in the destination folder and is renamed into place
(``os.replace``), so a crash never leaves a partial file under the final name. Readers turn
malformed or truncated files into :class:`~spikejax.core.errors.DataFormatError` naming the
file. Nothing here uses ``pickle``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import equinox as eqx
import numpy as np

from .errors import DataFormatError

__all__ = [
    "atomic_path",
    "atomic_open",
    "save_json",
    "load_json",
    "json_ready",
    "short_float",
    "save_h5",
    "load_h5",
    "save_model",
    "load_model",
    "save_figure",
]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp creates the file 0600; the final file gets the mode a plain open() would give (umask)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os_error = _os_error_in(exc)
        if os_error is not None and str(path) not in str(exc):
            # a full disk or a file-size limit: say which file could not be written (same errno, same subclass)
            reason = os_error.strerror or str(os_error) or type(os_error).__name__
            if os_error.errno is None:
                raise OSError(f"could not write {path}: {reason} (disk full or file-size limit?)") from exc
            raise OSError(os_error.errno, f"could not write {path}: {reason}") from exc
        raise


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError that caused ``exc`` (itself, or along its ``__cause__``/``__context__`` chain), if any."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """``open`` that writes to a temporary file and renames it into place when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "__array__"):
        return np.asarray(obj).tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _finite_json(obj: Any) -> Any:
    """``obj`` with arrays as lists and every NaN/inf float as ``None`` (JSON has no NaN token)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k) if not isinstance(k, str) else k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray)) or (hasattr(obj, "__array__") and not isinstance(obj, (str, bytes))):
        a = np.asarray(obj)
        if a.dtype in (np.float32, np.float16):
            # the shortest decimal that round-trips in the array's own precision: 0.1, not 0.10000000149011612
            flat = [float(np.format_float_positional(v, unique=True)) if np.isfinite(v) else float(v) for v in a.ravel()]
            return _finite_json(np.asarray(flat, dtype=float).reshape(a.shape).tolist() if a.ndim else flat[0])
        return _finite_json(a.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def short_float(x: Any) -> float | None:
    """A scalar as a Python float with the shortest decimal that round-trips in its own precision.

    ``short_float(np.float32(0.1))`` is ``0.1`` (``float()`` gives ``0.10000000149011612``); NaN and
    inf become ``None`` (JSON has no token for them). Python floats and float64 values are unchanged.
    """
    a = np.asarray(x)
    if a.size != 1:
        raise TypeError(f"short_float: x must be a scalar, got an array of shape {a.shape}")
    v = a.ravel()[0]  # a numpy scalar of the array's own dtype
    if not np.isfinite(v):
        return None
    if v.dtype in (np.float32, np.float16):
        return float(np.format_float_positional(v, unique=True))
    return float(v)


def json_ready(obj: Any) -> Any:
    """``obj`` as plain JSON values, as :func:`save_json` writes it: arrays become lists, float32 values
    their shortest decimals (``0.1``, not ``0.10000000149011612``), NaN and inf ``None``."""
    return _finite_json(obj)


def save_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON atomically (numpy/JAX arrays become lists; NaN and inf become ``null``,
    so the file is valid JSON for every reader)."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(_finite_json(obj), fh, indent=indent, default=_json_default, allow_nan=False)
    return Path(path)


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; malformed or truncated JSON raises :class:`DataFormatError` naming the file and position."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such JSON file: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); is the file truncated?"
        ) from None


def _write_h5_group(group: Any, data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, Mapping):
            _write_h5_group(group.create_group(str(key)), value)
        elif isinstance(value, str):
            group.attrs[str(key)] = value
        else:
            arr = np.asarray(value)
            kw = {"compression": "gzip", "compression_opts": 4} if arr.size > 1024 else {}
            group.create_dataset(str(key), data=arr, **kw)


def save_h5(path: str | os.PathLike, data: Mapping[str, Any], *, attrs: Mapping[str, Any] | None = None) -> Path:
    """Write a nested mapping of arrays to HDF5 atomically (nested mappings become groups, strings attributes)."""
    import h5py

    if not isinstance(data, Mapping):
        raise TypeError(f"save_h5: data must be a mapping of names to arrays, got {type(data).__name__}")
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as fh:
            _write_h5_group(fh, data)
            for k, v in (attrs or {}).items():
                fh.attrs[k] = v
    return Path(path)


def _read_h5_group(group: Any) -> dict[str, Any]:
    import h5py

    out: dict[str, Any] = {}
    for key, item in group.items():
        out[key] = _read_h5_group(item) if isinstance(item, h5py.Group) else item[()]
    for key, value in group.attrs.items():
        out.setdefault(key, value.decode() if isinstance(value, bytes) else value)
    return out


def load_h5(path: str | os.PathLike, required: Iterable[str] = ()) -> dict[str, Any]:
    """Read an HDF5 file into a nested dict of numpy arrays.

    Truncated or non-HDF5 files raise :class:`DataFormatError`; so does a missing ``required`` key
    (slash-separated paths allowed, e.g. ``"sweeps/0/current"``).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such HDF5 file: {path}")
    try:
        with h5py.File(path, "r") as fh:
            missing = [k for k in required if k not in fh]
            if missing:
                raise DataFormatError(f"{path} is missing required dataset(s) {missing}; it has {sorted(fh.keys())}")
            return _read_h5_group(fh)
    except DataFormatError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise DataFormatError(f"{path} could not be read as HDF5 (truncated or not an HDF5 file?): {exc}") from None


def save_model(path: str | os.PathLike, model: Any, *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Serialise the array leaves of an equinox model (or any pytree) atomically.

    The file is equinox's leaf serialisation (numpy ``.npy`` records, no pickle); ``metadata``
    (JSON-able hyperparameters needed to rebuild the skeleton) is written beside it as
    ``<path>.json``. Load with :func:`load_model` and a skeleton of the same structure.
    """
    path = Path(path)
    with atomic_path(path, suffix=".eqx") as tmp:
        eqx.tree_serialise_leaves(tmp, model)
    if metadata is not None:
        save_json(path.with_suffix(path.suffix + ".json"), dict(metadata))
    return path


def load_model(path: str | os.PathLike, like: Any) -> Any:
    """Load leaves saved by :func:`save_model` into the skeleton ``like`` (same structure, shapes and dtypes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    try:
        return eqx.tree_deserialise_leaves(path, like)
    except Exception as exc:  # equinox raises several kinds on mismatched/truncated files
        raise DataFormatError(
            f"{path} does not match the model skeleton or is truncated ({type(exc).__name__}: {exc})"
        ) from None


def save_figure(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (``bbox_inches="tight"`` unless given) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    kwargs.setdefault("bbox_inches", "tight")  # axis labels are never cut off
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **kwargs)
    plt.close(fig)
    return path
