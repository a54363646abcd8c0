"""Connectivity generators (explicit keys) and connectivity-folder IO."""

import jax
import numpy as np
import pytest

from spikejax import glm


def test_normal_generator_statistics_dale_and_determinism():
    gen = glm.NormalGenerator(100, 0.0, 1.0, sparsity=0.5)
    W = np.asarray(gen.matrix(jax.random.key(0)))
    nz = W[W != 0]
    assert abs(nz.mean()) < 0.05 and abs(nz.std() - 1) < 0.05
    assert np.all(W[:50] >= 0) and np.all(W[50:] <= 0)  # Dale's law by source row
    assert not np.any((W[:50] != 0) & (W[50:] != 0))  # pair (k, col) from k or k + N/2, never both
    assert np.all(np.diag(W) == 0)
    assert abs((W != 0).mean() - 0.5) < 0.03
    np.testing.assert_array_equal(W, np.asarray(gen.matrix(jax.random.key(0))))
    assert not np.array_equal(W, np.asarray(gen.matrix(jax.random.key(1))))
    sparse = np.asarray(glm.NormalGenerator(200, 0.0, 1.0, sparsity=0.9).matrix(jax.random.key(2)))
    assert abs((sparse != 0).mean() - 0.1) < 0.01  # the sparsity mask comes from the key too
    gl = np.asarray(glm.NormalGenerator(100, 0.0, 5.0, glorot=True).matrix(jax.random.key(0)))
    assert abs(gl[gl != 0].std() - 0.5) < 0.03


def test_uniform_generator_both_branches():
    full = np.asarray(glm.UniformGenerator(100, -0.00229, 0.0, 0.9).matrix(jax.random.key(0)))
    assert full.min() >= -0.00229 and full.max() <= 0 and np.all(np.diag(full) == 0)
    assert abs((full != 0).mean() - 0.1) < 0.01
    dale = np.asarray(glm.UniformGenerator(100, -1.0, 1.0, 0.5).matrix(jax.random.key(0)))
    assert np.all(dale[:50] >= 0) and np.all(dale[50:] <= 0)
    assert not np.any((dale[:50] != 0) & (dale[50:] != 0))


def test_mexican_hat_values():
    W = glm.mexican_hat(100)
    assert np.all(np.diag(W) == 0)
    off = W[~np.eye(100, dtype=bool)]
    assert off.max() < 0  # purely inhibitory with the tutorial parameters
    assert off.min() == pytest.approx(-0.00273, abs=1e-5)
    assert W.sum(0).mean() == pytest.approx(-0.0750, abs=5e-5)
    legacy = glm.mexican_hat(100, diagonal=True)
    assert legacy[0, 0] == pytest.approx(1 - 1.0015, abs=1e-7)
    assert legacy.sum(0).mean() == pytest.approx(-0.0765, abs=5e-5)
    nets = glm.MexicanHatGenerator(20).generate(3)
    assert len(nets) == 3 and all(int((n.src == n.dst).sum()) == 0 for n in nets)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: glm.NormalGenerator(21, 0.0, 1.0), "even"),
        (lambda: glm.NormalGenerator(20, 0.0, 1.0, sparsity=0.3), "sparsity"),
        (lambda: glm.NormalGenerator(20, 0.0, 1.0, sparsity=1.2), "sparsity"),
        (lambda: glm.NormalGenerator(20, 0.0, -1.0), "std"),
        (lambda: glm.UniformGenerator(20, 1.0, 0.0, 0.5), "low must be <= high"),
        (lambda: glm.UniformGenerator(20, -1.0, 0.0, 1.5), "sparsity"),
        (lambda: glm.MexicanHatGenerator(20, sigma_1=-1.0), "sigma_1"),
    ],
)
def test_generator_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_folder_io_roundtrip_order_and_combine(tmp_path):
    mats = glm.NormalGenerator(20, 0.0, 1.0).matrices(12, key=jax.random.key(0))
    glm.save_connectivity(mats, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir())[:4] == ["0.npy", "1.npy", "10.npy", "11.npy"]
    nets = glm.load_connectivity(tmp_path)
    # spikeometric's order: sorted by file name, so 10 and 11 come before 2
    order = [0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9]
    for net, i in zip(nets, order):
        np.testing.assert_array_equal(np.asarray(net.to_dense()), mats[i])
        assert net.weight.dtype == np.float32 and net.src.dtype == np.int32
    batch = glm.combine_all(tmp_path)
    assert batch.n_nodes == 240 and batch.n_edges == sum(int((m != 0).sum()) for m in mats)
    with pytest.raises(FileNotFoundError):
        glm.load_connectivity(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "0.npy").write_bytes(b"not an npy file")
    with pytest.raises(ValueError, match="could not be read"):
        glm.load_connectivity(tmp_path / "bad")
    np.save(tmp_path / "bad" / "0.npy", np.zeros((3, 4)))
    with pytest.raises(ValueError, match="square"):
        glm.load_connectivity(tmp_path / "bad")


def test_pt_files_if_torch_installed(tmp_path):
    torch = pytest.importorskip("torch")
    m = glm.mexican_hat(10)
    torch.save(torch.from_numpy(m), tmp_path / "0.pt")
    np.save(tmp_path / "1.npy", m * 2)
    nets = glm.load_connectivity(tmp_path)
    np.testing.assert_allclose(np.asarray(nets[0].to_dense()), m)
    np.testing.assert_allclose(np.asarray(nets[1].to_dense()), 2 * m)
