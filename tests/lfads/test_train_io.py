"""Training smoke tests, checkpoint/resume, h5 IO and the error paths (acceptance 6)."""

import h5py
import jax
import numpy as np
import pytest

from spikejax.core.errors import ConfigError, DataFormatError, ShapeError, SpikejaxError
from spikejax.lfads import (
    LFADS,
    HParams,
    LFADSConfig,
    TrainConfig,
    check_dataset,
    generate_calcium_dataset,
    generate_lorenz_dataset,
    infer,
    load_lfads_h5,
    load_lorenz_tutorial,
    save_lfads_h5,
    train,
)
from spikejax.lfads import PBTConfig, SearchParam

CFG = LFADSConfig(data_dim=6, encod_seq_len=10, ic_enc_dim=4, ci_enc_dim=3, con_dim=3, co_dim=1, ic_dim=3,
                  gen_dim=8, fac_dim=3)


@pytest.fixture(scope="module")
def tiny():
    d = generate_lorenz_dataset(n_conditions=4, trials_per_condition=5, n_neurons=6, n_steps=200, dt=20, key=jax.random.key(1))
    return d


def _fit(tiny, epochs, ck=None, key=0):
    m = LFADS(CFG, key=jax.random.PRNGKey(key))
    hp = HParams.create(cd_rate=0.3, kl_increase_epoch=2, l2_increase_epoch=2)
    tc = TrainConfig(batch_size=8, n_epochs=epochs, learning_rate=1e-2, checkpoint_every=2)
    return train(m, {"data": tiny["train"]["data"]}, {"data": tiny["valid"]["data"]}, hp=hp, config=tc,
                 key=jax.random.PRNGKey(1), checkpoint_dir=ck)


def test_train_decreases_loss_and_resume_is_exact(tiny, tmp_path):
    full = _fit(tiny, 4)
    h = {k: full.history[k].to_numpy() for k in full.history.columns}
    assert h["train/recon"][-1] < h["train/recon"][0]
    assert np.all(np.isfinite(h["valid/recon_smth"]))
    # smoothed validation: s_e = 0.3 s_{e-1} + 0.7 r_e
    s, r = h["valid/recon_smth"], h["valid/recon"]
    assert np.isclose(s[1], 0.3 * s[0] + 0.7 * r[1])
    part = _fit(tiny, 2, ck=tmp_path / "ck")
    assert part.n_epochs == 2
    resumed = _fit(tiny, 4, ck=tmp_path / "ck")
    assert resumed.n_epochs == 4
    np.testing.assert_allclose(resumed.history["loss"].to_numpy(), full.history["loss"].to_numpy(), rtol=1e-5)
    a = jax.tree_util.tree_leaves(full.model)
    b = jax.tree_util.tree_leaves(resumed.model)
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)
    out = infer(full.model, tiny["valid"]["data"], key=jax.random.PRNGKey(0), n_samples=3, batch_size=3)
    assert out["rates"].shape == tiny["valid"]["data"].shape and np.all(out["rates"] > 0)
    assert out["factors"].shape == (len(tiny["valid"]["data"]), 10, 3)


def test_h5_roundtrip_and_layouts(tmp_path):
    rng = np.random.default_rng(0)
    tr, va = rng.poisson(1, (5, 10, 6)).astype(float), rng.poisson(1, (3, 10, 6)).astype(float)
    p = save_lfads_h5(tmp_path / "d.h5", {"data": tr, "inds": np.arange(5)}, {"data": va, "truth": va},
                      {"conversion_factor": 1.0})
    d = load_lfads_h5(p)
    np.testing.assert_array_equal(d["train"]["data"], tr)
    np.testing.assert_array_equal(d["valid"]["truth"], va)
    assert float(d["extra"]["conversion_factor"]) == 1.0
    # RADICaL-style (neurons, samples, trials) written from Python
    with h5py.File(tmp_path / "nst.h5", "w") as f:
        f["train_data"] = np.transpose(tr, (2, 1, 0))
        f["valid_data"] = np.transpose(va, (2, 1, 0))
    d2 = load_lfads_h5(tmp_path / "nst.h5", layout="neurons_samples_trials")
    np.testing.assert_array_equal(d2["train"]["data"], tr)
    # the same file read with the default layout: train/valid disagree -> clear error naming the layout
    with pytest.raises(DataFormatError, match="layout"):
        load_lfads_h5(tmp_path / "nst.h5")


def test_wrong_h5_layout_errors(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["training"] = np.zeros((2, 3, 4))
    with pytest.raises(DataFormatError, match="train_data"):
        load_lfads_h5(tmp_path / "a.h5")
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["train_data"] = np.zeros((2, 3))
        f["valid_data"] = np.zeros((2, 3))
    with pytest.raises(DataFormatError, match="3-D"):
        load_lfads_h5(tmp_path / "b.h5")
    (tmp_path / "c.h5").write_bytes(b"not an h5 file")
    with pytest.raises(DataFormatError):
        load_lfads_h5(tmp_path / "c.h5")
    with pytest.raises(DataFormatError, match="layout"):
        load_lfads_h5(tmp_path / "b.h5", layout="time_major")


def test_bad_data_errors():
    good = np.ones((2, 10, 6))
    with pytest.raises(DataFormatError, match="negative counts"):
        check_dataset({"data": -good}, CFG)
    nan = good.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(DataFormatError, match="SBTT"):
        check_dataset({"data": nan}, CFG)
    check_dataset({"data": nan}, CFG, sbtt=True)  # allowed with SBTT
    with pytest.raises(ShapeError, match="encod_seq_len"):
        check_dataset({"data": np.ones((2, 9, 6))}, CFG)
    zig = LFADSConfig(**{**CFG.to_dict(), "reconstruction": "zig", "s_min": 0.1})
    ev = np.zeros((2, 10, 6))
    ev[0, 1, 2] = 0.05
    with pytest.raises(DataFormatError, match="s_min"):
        check_dataset({"data": ev}, zig)
    ev[0, 1, 2] = 0.5
    check_dataset({"data": ev}, zig)
    inf = good.copy()
    inf[1, 1, 1] = np.inf
    with pytest.raises(DataFormatError, match="inf"):
        check_dataset({"data": inf}, CFG)
    # train() refuses NaN without sbtt
    with pytest.raises(DataFormatError):
        train(LFADS(CFG, key=jax.random.PRNGKey(0)), {"data": nan}, {"data": good}, key=jax.random.PRNGKey(0),
              config=TrainConfig(n_epochs=1, batch_size=2))


def test_inconsistent_hyperparameters_errors():
    with pytest.raises(ConfigError, match="controller"):
        LFADSConfig(data_dim=3, encod_seq_len=5, ci_enc_dim=4, con_dim=0, co_dim=1)
    with pytest.raises(ConfigError, match="ci_lag"):
        LFADSConfig(data_dim=3, encod_seq_len=5, ci_lag=5)
    with pytest.raises(ConfigError, match="recon_seq_len"):
        LFADSConfig(data_dim=3, encod_seq_len=5, recon_seq_len=4)
    with pytest.raises(ConfigError, match="reconstruction"):
        LFADSConfig(data_dim=3, encod_seq_len=5, reconstruction="gaussian")
    with pytest.raises(ConfigError, match="dropout_rate"):
        HParams.create(dropout_rate=1.0)
    with pytest.raises(ConfigError, match="kl_ic_scale"):
        HParams.create(kl_ic_scale=-1.0)
    with pytest.raises(ConfigError, match="lr_stop"):
        TrainConfig(learning_rate=1e-4, lr_stop=1e-3)
    with pytest.raises(ConfigError, match="init"):
        SearchParam("cd_rate", 0.1, 0.5, "rand", init=0.9)
    with pytest.raises(ConfigError, match="unknown"):
        SearchParam("learning_rates", 0.1, 0.5)
    with pytest.raises(ConfigError, match="learning_rate"):
        SearchParam("lr_init", 0.1, 0.5)
    with pytest.raises(ConfigError, match="adam_beta1"):
        TrainConfig(adam_beta1=1.0)
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="n_epochs"):
        TrainConfig(n_epochs="3")
    with pytest.raises(ConfigError, match="explore_method"):
        PBTConfig(explore_method="mutate")
    with pytest.raises(ConfigError, match="n_workers"):
        PBTConfig(n_workers=1)
    assert issubclass(ConfigError, SpikejaxError)


def test_lorenz_tutorial_bundle_and_calcium_generator():
    d = load_lorenz_tutorial()
    assert d["train"]["data"].shape == (640, 100, 60) and d["valid"]["lowd"].shape == (160, 100, 3)
    assert d["train"]["truth"].max() > 300
    c = generate_calcium_dataset(n_conditions=2, trials_per_condition=5, n_neurons=6, n_bins=30, key=jax.random.key(0))
    x = c["train"]["data"]
    # staggered 1-in-3 sampling: neuron n observed only at bins t with t % 3 == n % 3
    for n in range(6):
        obs = ~np.isnan(x[:, :, n])
        assert np.all(obs[:, np.arange(30) % 3 == n % 3]) and not np.any(obs[:, np.arange(30) % 3 != n % 3])
    v = x[~np.isnan(x)]
    assert np.all((v == 0) | (v > c["s_min"])) and np.any(v > 0)


def test_calcium_nnls_deconvolution_recovers_spikes_without_lag():
    from spikejax.lfads.data import _nnls_deconvolve

    t = np.arange(60) * 10.0
    kern = np.exp(-t / 400.0) - np.exp(-t / 30.0)
    kern /= kern.max()
    idx = np.arange(1, 60, 3)
    s_true = np.zeros((1, len(idx)))
    s_true[0, [3, 4, 10]] = [1.0, 2.0, 1.0]
    lags = idx[:, None] - idx[None, :]
    f = (np.where(lags >= 0, kern[np.clip(lags, 0, 59)], 0.0) @ s_true[0])[None]
    np.testing.assert_allclose(_nnls_deconvolve(f, kern, idx)[0, :-1], s_true[0, :-1], atol=1e-8)
    # the decay-only (AR(1)) deconvolution ignores the rise time: its events lag the spikes
    d = {m: generate_calcium_dataset(n_conditions=2, trials_per_condition=4, n_neurons=6, n_bins=30, key=jax.random.key(0),
                                     deconvolution=m, noise_sd=0.0) for m in ("nnls", "ar1")}
    sp, ev = d["nnls"]["train"]["spikes"], d["nnls"]["train"]["data"]
    obs = ~np.isnan(ev)
    assert np.corrcoef(ev[obs], sp[obs])[0, 1] > 0.9
    ev1 = d["ar1"]["train"]["data"]
    assert np.corrcoef(ev1[obs], sp[obs])[0, 1] < 0.5
    with pytest.raises(ConfigError, match="deconvolution"):
        generate_calcium_dataset(n_conditions=1, trials_per_condition=2, n_neurons=3, n_bins=9, deconvolution="x", key=jax.random.key(0))


def test_observation_model_is_abstract():
    from spikejax.lfads.observation import ObservationModel

    with pytest.raises(TypeError, match="abstract"):
        ObservationModel()
