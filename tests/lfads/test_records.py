"""simulate's statistics, the ZIG trajectory table, the PBT result's save/load, and config validation."""

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")  # tests only
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from spikejax.core import ConfigError, StopReason
from spikejax.lfads import (
    LFADS,
    HParams,
    LFADSConfig,
    LFADSPBTResult,
    PBTConfig,
    SearchParam,
    TrainConfig,
    generate_lorenz_dataset,
    loss,
    pbt,
    plot_factors,
    simulate,
)

SMALL = dict(data_dim=4, encod_seq_len=6, ic_enc_dim=3, ci_enc_dim=0, con_dim=0, co_dim=0, ic_dim=2, gen_dim=5,
             fac_dim=2)


@pytest.mark.requires_x64
def test_simulate_ar1_prior_and_poisson_counts():
    cfg = LFADSConfig(**{**SMALL, "ci_enc_dim": 2, "con_dim": 2, "co_dim": 2, "encod_seq_len": 8}, co_prior_tau=4.0,
                      co_prior_nvar=0.2, dt=20.0)
    m = LFADS(cfg, key=jax.random.key(0))
    tr = simulate(m, n_trials=4000, key=jax.random.key(1))
    u = np.asarray(tr.con_inputs)  # (T, trials, co_dim)
    alpha = np.exp(-1 / 4.0)
    var = 0.2 / (1 - alpha**2)  # stationary AR(1) variance at every step
    np.testing.assert_allclose(u.var(axis=1), var, rtol=0.1)
    lag1 = np.mean(u[1:] * u[:-1], axis=1) / var
    np.testing.assert_allclose(lag1, alpha, atol=0.05)
    np.testing.assert_allclose(np.asarray(tr.z0).var(axis=0), cfg.ic_prior_var, rtol=0.1)
    # Poisson counts: mean = rate per bin = rate_hz * dt / 1000
    lam = np.asarray(tr.rates) * cfg.dt / 1000.0
    obs = np.asarray(tr.observations)
    assert np.all(obs == np.round(obs)) and np.all(obs >= 0)
    np.testing.assert_allclose(obs.mean(), lam.mean(), rtol=0.03)


def test_simulate_zig_table_and_plots():
    cfg = LFADSConfig(**SMALL, reconstruction="zig", s_min=0.1, dt=33.0)
    tr = simulate(LFADS(cfg, key=jax.random.key(0)), n_trials=3, key=jax.random.key(1), n_steps=9)
    df = tr.to_pandas()
    assert list(df.columns) == ["time_ms", "trial", "neuron", "rate_hz", "events_au"]
    assert len(df) == 9 * 3 * 4 and np.isclose(df["time_ms"].max(), 8 * 33.0)
    ev = df["events_au"].to_numpy()
    assert np.all((ev == 0) | (ev > 0.1)) and np.any(ev > 0)
    assert isinstance(tr.plot(), matplotlib.axes.Axes)
    assert isinstance(plot_factors(tr.factors, dt=tr.dt), matplotlib.axes.Axes)
    plt.close("all")
    with pytest.raises(ConfigError):
        simulate(LFADS(cfg, key=jax.random.key(0)), n_trials=3, key=0)


def test_loss_without_key_is_deterministic_and_epoch_ramps():
    cfg = LFADSConfig(**SMALL)
    m = LFADS(cfg, key=jax.random.key(0))
    x = jnp.ones((3, 6, 4))
    assert float(loss(m, x)) == float(loss(m, {"data": x}))
    k = jax.random.key(2)
    assert float(loss(m, x, key=k)) == float(jax.jit(lambda m, x: loss(m, x, key=k))(m, x))
    hp = HParams.create(kl_ic_scale=1.0, kl_increase_epoch=9)
    assert float(loss(m, x, hp=hp, epoch=0)) < float(loss(m, x, hp=hp))


def test_pbt_result_table_save_load(tmp_path):
    d = generate_lorenz_dataset(n_conditions=2, trials_per_condition=4, n_neurons=4, n_steps=120, dt=20,
                                key=jax.random.key(1))
    cfg = LFADSConfig(**SMALL)
    space = (SearchParam("learning_rate", 1e-3, 1e-2, init=5e-3, explore_param=0.3),
             SearchParam("kl_ic_scale", 1e-6, 1e-3))
    res = pbt(cfg, {"data": d["train"]["data"]}, {"data": d["valid"]["data"]},
              hp=HParams.create(kl_increase_epoch=1, l2_increase_epoch=1), train_config=TrainConfig(batch_size=3),
              pbt_config=PBTConfig(n_workers=2, epochs_per_generation=1, max_generations=2, burn_in_epochs=0),
              search_space=space, key=jax.random.key(0))
    assert isinstance(res, LFADSPBTResult) and res.stop_reason == StopReason.COMPLETED
    table = res.to_pandas()
    assert list(table.columns[:5]) == ["generation", "worker", "metric", "train_loss", "source"]
    assert len(table) == 2 * res.n_generations and "hp/learning_rate" in table
    assert res.lr == res.learning_rate
    back = LFADSPBTResult.load(res.save(tmp_path / "pbt.h5"))
    for a, b in zip(jax.tree_util.tree_leaves(res.population), jax.tree_util.tree_leaves(back.population)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(res.model.readout.weight), np.asarray(back.model.readout.weight))
    pd.testing.assert_frame_equal(table, back.to_pandas(), check_dtype=False)
    assert back.pbt_config == res.pbt_config and back.model_config == cfg
    assert isinstance(res.plot(), matplotlib.axes.Axes)
    plt.close("all")


def test_configs_validate_once():
    with pytest.raises(ConfigError, match="LFADSConfig.gen_dim"):
        LFADSConfig(data_dim=3, encod_seq_len=5, gen_dim=0)
    with pytest.raises(ConfigError, match="LFADSConfig.dt"):
        LFADSConfig(data_dim=3, encod_seq_len=5, dt=-1.0)
    with pytest.raises(ConfigError, match="PBTConfig.explore_param"):
        PBTConfig(explore_param=1.5)
    with pytest.raises(ConfigError, match="did you mean 'n_epochs'"):
        TrainConfig.from_dict({"n_epoch": 3})
    tc = TrainConfig().replace(n_epochs=3)
    assert tc.n_epochs == 3 and TrainConfig().n_epochs == 1000
