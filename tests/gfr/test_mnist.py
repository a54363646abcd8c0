"""Offline MNIST source: bundled subset, IDX / npz readers, and their error paths."""

import gzip
import hashlib
import re
import struct

import numpy as np
import pytest

from spikejax.core.errors import ConfigError, DataFormatError, ShapeError
from spikejax.data import path as data_path
from spikejax.gfr.mnist import BUNDLED_MNIST, build_bundle, load_mnist, read_idx


def _write_idx(path, array, dtype_code=0x08):
    """Independent IDX writer (big-endian header: 0, 0, dtype code, ndim, then the dims)."""
    array = np.asarray(array)
    header = bytes([0, 0, dtype_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(">u1" if dtype_code == 0x08 else array.dtype.newbyteorder(">")).tobytes()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


@pytest.fixture(scope="module")
def fake_mnist():
    rng = np.random.default_rng(0)
    return {
        "train": (rng.integers(0, 256, (12, 28, 28)).astype(np.uint8), rng.integers(0, 10, 12).astype(np.uint8)),
        "test": (rng.integers(0, 256, (5, 28, 28)).astype(np.uint8), rng.integers(0, 10, 5).astype(np.uint8)),
    }


def _idx_folder(folder, fake, gz=False):
    names = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
    suffix = ".gz" if gz else ""
    for split, (img_name, lab_name) in names.items():
        _write_idx(folder / (img_name + suffix), fake[split][0])
        _write_idx(folder / (lab_name + suffix), fake[split][1])
    return folder


def test_bundled_subset_shapes_split_and_range():
    x, y = load_mnist("train")
    xt, yt = load_mnist("test")
    assert x.shape == (4000, 28, 28) and x.dtype == np.float32 and y.dtype == np.int32
    assert xt.shape == (1000, 28, 28) and yt.shape == (1000,)
    assert np.array_equal(np.bincount(y, minlength=10), np.full(10, 400))
    assert np.array_equal(np.bincount(yt, minlength=10), np.full(10, 100))
    assert x.min() == 0.0 and x.max() == 1.0
    # Raw grey levels are whole numbers 0..255 and normalisation divides by 255.
    raw, _ = load_mnist("train", normalize=False, n=50)
    assert raw.max() == 255 and np.array_equal(raw, np.round(raw))
    np.testing.assert_allclose(raw / 255.0, x[:50], rtol=1e-6)
    # The split is disjoint (no test image also in the training set).
    train_hashes = {hashlib.sha1(img.tobytes()).hexdigest() for img in x}
    assert not any(hashlib.sha1(img.tobytes()).hexdigest() in train_hashes for img in xt)
    # Minibatches mix the digits: the first 40 training labels are not all one class.
    assert len(set(y[:40].tolist())) >= 5
    xa, ya = load_mnist("all")
    assert xa.shape == (5000, 28, 28) and np.array_equal(ya, np.concatenate([y, yt]))


def test_bundled_file_matches_readme_checksum_and_size():
    p = data_path(BUNDLED_MNIST)
    readme = (p.parent / "README.md").read_text()
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    assert digest in readme
    assert re.search(rf"\|\s*{p.name}\s*\|\s*{p.stat().st_size}\s*\|", readme)
    assert p.stat().st_size < 2 * 1024 * 1024


def test_n_keeps_the_first_images():
    x, y = load_mnist("test")
    x5, y5 = load_mnist("test", n=5)
    assert np.array_equal(x5, x[:5]) and np.array_equal(y5, y[:5])


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_roundtrip(tmp_path, fake_mnist, gz):
    folder = _idx_folder(tmp_path, fake_mnist, gz=gz)
    for split in ("train", "test"):
        x, y = load_mnist(split, path=folder, normalize=False)
        assert np.array_equal(x, fake_mnist[split][0].astype(np.float32))
        assert np.array_equal(y, fake_mnist[split][1].astype(np.int32))
    x, _ = load_mnist("all", path=folder)
    assert x.shape == (17, 28, 28) and x.max() <= 1.0


def test_read_idx_other_dtypes(tmp_path):
    a = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
    _write_idx(tmp_path / "a.idx", a, dtype_code=0x0C)
    assert np.array_equal(read_idx(tmp_path / "a.idx"), a)


@pytest.mark.parametrize("layout", ["keras", "spikejax"])
def test_npz_layouts(tmp_path, fake_mnist, layout):
    keys = {"keras": ("x_train", "y_train", "x_test", "y_test"), "spikejax": ("train_images", "train_labels", "test_images", "test_labels")}[layout]
    f = tmp_path / "m.npz"
    np.savez(f, **{keys[0]: fake_mnist["train"][0], keys[1]: fake_mnist["train"][1], keys[2]: fake_mnist["test"][0], keys[3]: fake_mnist["test"][1]})
    x, y = load_mnist("test", path=f, normalize=False)
    assert np.array_equal(x, fake_mnist["test"][0]) and np.array_equal(y, fake_mnist["test"][1])
    # Flattened (N, 784) images are accepted too.
    g = tmp_path / "flat.npz"
    np.savez(g, x_train=fake_mnist["train"][0].reshape(12, 784), y_train=fake_mnist["train"][1], x_test=fake_mnist["test"][0], y_test=fake_mnist["test"][1])
    assert load_mnist("train", path=g)[0].shape == (12, 28, 28)


def test_build_bundle_split(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), 3)
    images = rng.integers(0, 256, (30, 784))
    images[:, 0] = np.arange(30)  # tag each image with its row in the csv
    table = np.concatenate([images, labels[:, None]], axis=1)
    csv = tmp_path / "mini.csv.gz"
    with gzip.open(csv, "wt") as fh:
        np.savetxt(fh, table, fmt="%d", delimiter=",")
    out = build_bundle(csv, tmp_path / "mini.npz", n_test_per_class=1)
    x, y = load_mnist("train", path=out, normalize=False)
    xt, yt = load_mnist("test", path=out, normalize=False)
    assert np.array_equal(np.bincount(y), np.full(10, 2)) and np.array_equal(np.bincount(yt), np.ones(10))
    # The last image of each digit (file order) is the test image.
    assert sorted(xt[:, 0, 0].astype(int).tolist()) == [3 * d + 2 for d in range(10)]
    for img, lab in zip(x, y):
        assert labels[int(img[0, 0])] == lab


# ---------------------------------------------------------------- errors


def test_bad_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no MNIST data"):
        load_mnist("train", path=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist("train", path=tmp_path)  # an empty folder
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nothing.idx")


def test_malformed_idx_raises(tmp_path, fake_mnist):
    folder = _idx_folder(tmp_path, fake_mnist)
    (folder / "train-images-idx3-ubyte").write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 40)
    with pytest.raises(DataFormatError, match="not an IDX file"):
        load_mnist("train", path=folder)
    _write_idx(folder / "train-images-idx3-ubyte", fake_mnist["train"][0])
    raw = (folder / "train-images-idx3-ubyte").read_bytes()
    (folder / "train-images-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(DataFormatError, match="truncated"):
        load_mnist("train", path=folder)
    (folder / "train-images-idx3-ubyte").write_bytes(raw[:6])
    with pytest.raises(DataFormatError, match="truncated"):
        load_mnist("train", path=folder)
    (folder / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataFormatError, match="could not be read"):
        read_idx(folder / "bad.gz")


def test_malformed_npz_raises(tmp_path, fake_mnist):
    f = tmp_path / "m.npz"
    np.savez(f, x_train=fake_mnist["train"][0], y_train=fake_mnist["train"][1])
    truncated = tmp_path / "t.npz"
    truncated.write_bytes(f.read_bytes()[:200])
    with pytest.raises(DataFormatError, match="npz"):
        load_mnist("train", path=truncated)
    with pytest.raises(DataFormatError, match="no MNIST test arrays"):
        load_mnist("test", path=f)
    other = tmp_path / "m.txt"
    other.write_text("hello")
    with pytest.raises(DataFormatError, match="folder of MNIST IDX files or an .npz"):
        load_mnist("train", path=other)


def test_wrong_shapes_and_values_raise(tmp_path, fake_mnist):
    x, y = fake_mnist["train"]
    cases = [
        (dict(x_train=x[:, :27], y_train=y), ShapeError, r"\(N, 28, 28\)"),
        (dict(x_train=x, y_train=y[:-1]), ShapeError, "labels"),
        (dict(x_train=x, y_train=y.astype(np.int64) + 5), DataFormatError, "0..9"),
        (dict(x_train=x.astype(np.float32) * 2.0, y_train=y), DataFormatError, r"\[0, 255\]"),
    ]
    for i, (arrays, exc, match) in enumerate(cases):
        f = tmp_path / f"bad{i}.npz"
        np.savez(f, **arrays)
        with pytest.raises(exc, match=match):
            load_mnist("train", path=f)
    folder = tmp_path / "idx"
    folder.mkdir()
    _idx_folder(folder, fake_mnist)
    _write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))  # 5 images, 4 labels
    with pytest.raises(ShapeError, match="labels"):
        load_mnist("test", path=folder)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="split"):
        load_mnist("validation")
    for n in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="n must"):
            load_mnist("test", n=n)
    with pytest.raises(ConfigError, match="at most"):
        load_mnist("test", n=1001)


def test_pixel_sequences_variant():
    from spikejax.gfr.mnist import pixel_sequences

    x, _ = load_mnist("test", n=3)
    seq = pixel_sequences(x)
    assert seq.shape == (3, 576, 1) and seq.dtype == np.float32
    assert seq.min() >= -1e-6 and seq.max() <= 1.0 + 1e-6
    # Resizing keeps the mean grey level (antialiased linear resampling) and the reading order.
    np.testing.assert_allclose(seq.reshape(3, -1).mean(1), x.reshape(3, -1).mean(1), atol=0.02)
    same = pixel_sequences(x, size=28)
    np.testing.assert_allclose(same[..., 0], x.reshape(3, -1), atol=1e-6)
    with pytest.raises(ShapeError):
        pixel_sequences(x[0])
    with pytest.raises(ConfigError, match="size"):
        pixel_sequences(x, size=0)
