"""load_npz for the 4-ms output of any LIF simulator: A_4ms, sampled_spikes_4ms, sampled_ids."""

import numpy as np
import pytest

from spikejax import meso
from spikejax.core.errors import DataFormatError

N = (400, 400, 200)


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def generic(tmp_path_factory):
    """The bundled 11-s excerpt rewritten with only the three generic keys."""
    raw = np.load(meso.bundled_path("T11s"))
    counts = raw["counts_4ms"].astype(float)
    A = counts / (np.asarray(N, float)[None, :] * 0.004)
    sp = raw["spikes_4ms"].transpose(1, 0, 2)  # (M, T, n)
    ids = np.tile(np.arange(sp.shape[2], dtype=np.int32), (3, 1))
    path = _write(tmp_path_factory.mktemp("g") / "lif.npz", A_4ms=A, sampled_spikes_4ms=sp, sampled_ids=ids)
    return path, A, sp, ids


def test_generic_file_equals_bundled(generic):
    path, _, _, _ = generic
    d = meso.load_npz(path)
    ref = meso.load_bundled()
    np.testing.assert_array_equal(np.asarray(d.y), np.asarray(ref.y))
    np.testing.assert_array_equal(np.asarray(d.y_hist), np.asarray(ref.y_hist))
    np.testing.assert_allclose(np.asarray(d.Z), np.asarray(ref.Z), rtol=1e-6)
    assert d.N == N and d.n_obs == 3
    # float32 rates (A·N·Δ not exactly whole) and spike counts > 1 are accepted
    d32 = meso.load_npz(_write(path.parent / "f32.npz", A_4ms=generic[1].astype(np.float32),
                               sampled_spikes_4ms=2 * generic[2], sampled_ids=generic[3]), n_obs=5)
    np.testing.assert_allclose(np.asarray(d32.Z), np.asarray(ref.Z), rtol=1e-6)
    assert d32.n_obs == 5 and float(np.asarray(d32.y).max()) == 1.0


@pytest.mark.parametrize("change, match", [
    (lambda a: a.pop("A_4ms"), "missing \\['A_4ms'\\]"),
    (lambda a: a.pop("sampled_ids"), "missing \\['sampled_ids'\\]"),
    (lambda a: a.update(A_4ms=a["A_4ms"][:, :2]), "A_4ms must have shape"),
    (lambda a: a.update(A_4ms=a["A_4ms"] * 1.3), "whole spike counts"),
    (lambda a: a.update(A_4ms=-a["A_4ms"]), "rates >= 0"),
    (lambda a: a.update(sampled_spikes_4ms=a["sampled_spikes_4ms"][:, :-1]), "sampled_spikes_4ms must have shape"),
    (lambda a: a.update(sampled_spikes_4ms=a["sampled_spikes_4ms"].transpose(1, 0, 2)), "sampled_spikes_4ms must"),
    (lambda a: a.update(sampled_ids=a["sampled_ids"][:, :2]), "sampled_ids must have shape"),
    (lambda a: a.update(sampled_ids=a["sampled_ids"] + 400), "sampled_ids must be neuron indices"),
    (lambda a: a.update(A_4ms=a["A_4ms"] * 0 + 400 / (400 * 0.004) * 2), "more spikes per bin than neurons"),
])
def test_generic_file_errors(generic, tmp_path, change, match):
    _, A, sp, ids = generic
    arrays = {"A_4ms": A, "sampled_spikes_4ms": sp, "sampled_ids": ids}
    change(arrays)
    path = _write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataFormatError, match=match):
        meso.load_npz(path)
