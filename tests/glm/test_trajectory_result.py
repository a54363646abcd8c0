"""The contract types of glm: GLMTrajectory tables, GLMTuneResult save/load, TuneConfig validation, loss."""

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")  # tests only
import matplotlib.pyplot as plt
import numpy as np
import pytest

from spikejax import glm
from spikejax.core import ConfigError, StopReason, TargetMissedWarning

from .conftest import TUT


def _small():
    return glm.RectifiedLNP(**{**TUT, "T": 5})


def test_trajectory_tables_single_batch_stacked(ring20, glorot20, tmp_path):
    m = _small()
    key = jax.random.key(2)
    one = glm.simulate(m, ring20, n_steps=30, key=key)
    assert one.spikes.shape == (30, 20) and one.dt == pytest.approx(0.1) and one.state is None
    np.testing.assert_array_equal(np.asarray(one.raster), np.asarray(one.spikes).T)
    df = one.to_pandas()
    assert list(df.columns) == ["time_ms", "neuron", "spikes_count"] and len(df) == 600
    assert df["spikes_count"].sum() == int(one.spikes.sum())
    np.testing.assert_allclose(np.unique(df["time_ms"]), np.arange(30) * 0.1, rtol=1e-6)
    # block-diagonal batch: a network column, neurons counted within their network
    nets = [ring20, glorot20[0]]
    batch = glm.simulate(m, glm.batch_networks(nets), n_steps=10, key=key)
    dfb = batch.to_pandas()
    assert list(dfb.columns) == ["time_ms", "network", "neuron", "spikes_count"]
    assert dfb["neuron"].max() == 19 and sorted(dfb["network"].unique()) == [0, 1]
    back = glm.GLMTrajectory.load(batch.save(tmp_path / "traj.h5"))
    assert back.block_sizes == (20, 20) and back.dt == batch.dt
    np.testing.assert_array_equal(np.asarray(back.spikes), np.asarray(batch.spikes))
    # stacked: (n_steps, B, N) and the same network/neuron table
    stacked = glm.simulate(m, glm.stack_networks(nets), n_steps=10, key=key)
    assert stacked.spikes.shape == (10, 2, 20) and stacked.raster.shape == (2, 20, 10)
    np.testing.assert_array_equal(np.asarray(stacked.spikes).reshape(10, 40), np.asarray(batch.spikes))
    assert list(stacked.to_pandas().columns) == ["time_ms", "network", "neuron", "spikes_count"]
    ax = one.plot()
    assert isinstance(ax, matplotlib.axes.Axes)
    assert glm.plot_isi_histogram(one) is not None and glm.plot_raster(one, ax=ax) is ax
    plt.close("all")
    # the analysis helpers take the trajectory (its dt) or a raster and dt alike
    assert glm.population_rate(one) == pytest.approx(glm.population_rate(one.raster, m.dt))
    with pytest.raises(ConfigError, match="dt"):
        glm.population_rate(one.raster)


def test_record_state_continues_and_key_is_required(ring20):
    m = _small()
    traj = glm.simulate(m, ring20, n_steps=10, key=jax.random.key(0), record_state=True)
    assert isinstance(traj.state, glm.SimState)
    with pytest.raises(ConfigError, match="key is required"):
        glm.simulate(m, ring20, n_steps=10, key=None)
    with pytest.raises(ConfigError, match="PRNG key"):
        glm.simulate(m, ring20, n_steps=10, key=0)
    with pytest.raises(TypeError):
        glm.simulate(m, ring20, 10, key=jax.random.key(0))  # n_steps is keyword-only


def test_vmap_over_keys_equals_one_by_one(ring20):
    m = _small()
    keys = jax.random.split(jax.random.key(4), 3)
    batched = eqx.filter_vmap(lambda k: glm.simulate(m, ring20, n_steps=25, key=k))(keys)
    assert isinstance(batched, glm.GLMTrajectory) and batched.spikes.shape == (3, 25, 20)
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(batched.spikes[i]), np.asarray(glm.simulate(m, ring20, n_steps=25, key=keys[i]).spikes))
    # a traced network (jit over the network): the event kernel gives way to the segment sum, same numbers
    eager = glm.simulate(m, ring20, n_steps=25, key=keys[0], backend="event")
    jitted = eqx.filter_jit(lambda net, k: glm.simulate(m, net, n_steps=25, key=k, backend="event"))(ring20, keys[0])
    np.testing.assert_array_equal(np.asarray(jitted.spikes), np.asarray(eager.spikes))


def test_tune_result_save_load_and_stimulus(ring20, tmp_path):
    m = _small()
    mask = np.zeros((1, 20), bool)
    mask[0, :5] = True
    stim = glm.RegularStimulus(0.001, 10, 5, 1000, stimulus_masks=mask)
    with pytest.warns(TargetMissedWarning, match="glm tune missed its target"):  # 3 epochs: far from 62.5 Hz
        res = glm.tune(m, ring20, 62.5, "all", key=jax.random.key(0), stimulus=stim, estimator="spikeometric",
                       n_steps=20, n_epochs=3, learning_rate=1e-5)
    assert res.target_met is False and abs(res.final_rate_hz - 62.5) > 6.25
    assert isinstance(res, glm.GLMTuneResult) and res.stop_reason == StopReason.COMPLETED and res.seconds > 0
    assert list(res.history.columns[:3]) == ["epoch", "loss", "rate_hz"] and len(res.history) == 3
    assert set(res.params) == set(glm.RectifiedLNP.tunable) | {"stimulus.strength"}
    assert res.params["theta"] == pytest.approx(float(res.model.theta))
    assert res.config.estimator == "spikeometric" and res.target_rate_hz == 62.5
    back = glm.GLMTuneResult.load(res.save(tmp_path / "tune.h5"))
    for name in glm.RectifiedLNP.tunable:
        assert float(getattr(back.model, name)) == float(getattr(res.model, name))
    assert back.model.T_steps == 5 and back.model.dt == m.dt and back.config == res.config
    assert back.stimulus is None  # not written; the tuned values are in params
    again = back.tuned_stimulus(stim)
    assert float(again.strength) == pytest.approx(float(res.stimulus.strength))
    assert isinstance(res.plot(), matplotlib.axes.Axes)
    plt.close("all")


def test_tune_config_validated_once():
    cfg = glm.TuneConfig(n_epochs=5, learning_rate=1e-4)
    assert cfg.replace(estimator="spikeometric").estimator == "spikeometric"
    with pytest.raises(ConfigError, match="TuneConfig.learning_rate"):
        glm.TuneConfig(learning_rate=-1.0)
    with pytest.raises(ConfigError, match="TuneConfig.estimator"):
        glm.TuneConfig(estimator="magic")
    with pytest.raises(ConfigError, match="n_epochs"):
        glm.tune(_small(), glm.from_dense(glm.mexican_hat(10)), 10.0, key=jax.random.key(0), n_epoch=3)


def test_loss_gradient_moves_the_rate_toward_the_target(ring20):
    """Above the target rate the loss decreases with theta (a higher threshold lowers the rate), below it increases."""
    m = _small()
    key = jax.random.key(3)
    rate = glm.population_rate(glm.simulate(m, ring20, n_steps=2000, key=key, equilibration_steps=200))
    for target, sign in ((0.2 * rate, -1.0), (5.0 * rate, 1.0)):
        data = glm.RateTarget(ring20, target, n_steps=100, equilibration_steps=50, estimator="spikeometric")
        g = eqx.filter_grad(lambda mm: glm.loss(mm, data, key=key))(m)
        assert np.sign(float(g.theta)) == sign
    data = glm.RateTarget(ring20, 62.5, n_steps=50, equilibration_steps=20)
    v = glm.loss(m, data, key=key)
    assert jnp.ndim(v) == 0 and np.isfinite(float(v))
    with pytest.raises(ConfigError, match="key is required"):
        glm.loss(m, data)
    with pytest.raises(ConfigError, match="estimator"):
        glm.RateTarget(ring20, 62.5, estimator="magic")


@pytest.mark.requires_x64
def test_log_likelihood_float64_reference_and_grads(small_matrix):
    """Teacher-forced Poisson log-likelihood of RectifiedLNP against a NumPy float64 reference written from the
    equations, its gradients against finite differences, and the Bernoulli case of BernoulliGLM."""
    from jax.scipy.special import gammaln
    from jax.test_util import check_grads

    net = glm.from_dense(small_matrix)
    m = glm.RectifiedLNP(lambda_0=100.0, theta=-5e-4, T=4, tau=10.0, dt=0.1, r=0.5, b=0.001)
    traj = glm.simulate(m, net, n_steps=60, key=jax.random.key(0), store_as_dtype=jnp.float64)
    x = np.asarray(traj.raster, np.float64)  # (N, L)
    assert x.sum() > 0
    W = np.asarray(small_matrix, np.float64)
    c = np.exp(-np.arange(4) * 0.1 / 10.0)
    N, L = x.shape
    ll = 0.0
    for t in range(L):
        drive = np.zeros(N)
        for k in range(4):
            if t - 1 - k >= 0:
                drive += c[k] * (W.T @ x[:, t - 1 - k])
        mu = 100.0 * 0.1 * np.maximum(0.5 * drive + 0.001 + 5e-4, 0.0)
        ll += np.sum(np.where(x[:, t] > 0, x[:, t] * np.log(np.where(mu > 0, mu, 1.0)), 0.0) - mu - np.asarray(gammaln(x[:, t] + 1)))
    got = glm.log_likelihood(m, net, traj)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(float(got), ll, rtol=1e-10)
    np.testing.assert_allclose(float(glm.log_likelihood(m, net, traj.raster)), ll, rtol=1e-10)
    check_grads(lambda th, r: glm.log_likelihood(m.replace(theta=th, r=r), net, traj), (jnp.float64(-5e-4), jnp.float64(0.5)),
                order=1, modes=("rev",), eps=1e-6)
    b = glm.BernoulliGLM()
    xb = glm.simulate(b, net, n_steps=60, key=jax.random.key(1), store_as_dtype=jnp.float64)
    mu_b = np.asarray(glm.conditional_intensity(b, net, xb))
    xr = np.asarray(xb.spikes)
    ref_b = np.sum(xr * np.log(mu_b) + (1 - xr) * np.log1p(-mu_b))
    np.testing.assert_allclose(float(glm.log_likelihood(b, net, xb)), ref_b, rtol=1e-10)
    with pytest.raises(ConfigError, match="deterministic emission"):
        glm.log_likelihood(glm.ThresholdSAM(), net, xb)
