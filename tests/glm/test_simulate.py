"""simulate: kernels agree, batches equal one-by-one runs, chunking, dtypes, and the golden rates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from spikejax import glm

from .conftest import LEGACY, TUT

# PoissonGLM with dt < 1 whose int-storage run is silent in spikeometric
POISSON = glm.PoissonGLM(alpha=0.5, beta=1.0, T=20, tau=1.0, dt=0.1, r=0.025, b=0.0)


def test_dense_sparse_event_kernels_identical_rasters():
    # 60-neuron sparse random inhibitory network: all three kernels, same key -> same raster
    rng = np.random.default_rng(0)
    W = np.where(rng.random((60, 60)) < 0.1, -rng.random((60, 60)) * 0.02, 0.0).astype(np.float32)
    np.fill_diagonal(W, 0)
    net = glm.from_dense(W)
    m = glm.RectifiedLNP(**TUT)
    key = jax.random.key(3)
    rasters = {be: np.asarray(glm.simulate(m, net, n_steps=200, key=key, backend=be).raster) for be in ("dense", "sparse", "event")}
    assert rasters["dense"].sum() > 20
    np.testing.assert_array_equal(rasters["dense"], rasters["sparse"])
    np.testing.assert_array_equal(rasters["dense"], rasters["event"])
    # the event kernel falls back to the segment sum when more neurons spike than its capacity
    low_cap = np.asarray(glm.simulate(m, net, n_steps=200, key=key, backend="event", capacity=1).raster)
    np.testing.assert_array_equal(rasters["dense"], low_cap)
    # Bernoulli GLM (self kernel + coupling) on a ring
    b = glm.BernoulliGLM()
    ring = glm.from_dense(glm.mexican_hat(20) * 50)
    r1 = glm.simulate(b, ring, n_steps=200, key=key, backend="dense").raster
    r2 = glm.simulate(b, ring, n_steps=200, key=key, backend="event").raster
    assert int(r1.sum()) > 5
    np.testing.assert_array_equal(np.asarray(r1), np.asarray(r2))


def test_synaptic_input_same_for_all_kernels(small_matrix):
    net = glm.from_dense(small_matrix)
    m = glm.RectifiedLNP(T=5, tau=2.0)
    win = np.random.default_rng(0).poisson(0.5, (6, 5)).astype(float)
    gs = [np.asarray(glm.input_from_window(m, net, win, backend=be)) for be in ("dense", "sparse", "event")]
    np.testing.assert_allclose(gs[0], gs[1], rtol=1e-6)
    np.testing.assert_allclose(gs[0], gs[2], rtol=1e-6)


def test_block_diagonal_batch_equals_one_by_one(ring20, glorot20):
    nets = [ring20, glorot20[0], glorot20[1]]
    batch = glm.batch_networks(nets)
    assert batch.n_nodes == 60 and batch.block_sizes == (20, 20, 20)
    m = glm.BernoulliGLM()
    key = jax.random.key(11)
    xb = glm.simulate(m, batch, n_steps=200, key=key).raster
    keys = glm.batch_keys(3, key=key)
    for b, (part, net) in enumerate(zip(glm.unbatch_raster(xb, batch), nets)):
        xs = glm.simulate(m, net, n_steps=200, key=keys[b]).raster
        np.testing.assert_array_equal(np.asarray(part), np.asarray(xs))
    # leading batch axis under vmap gives the same rasters
    stacked = glm.stack_networks(nets)
    xv = glm.simulate(m, stacked, n_steps=200, key=key).raster
    assert xv.shape == (3, 20, 200)
    for b in range(3):
        np.testing.assert_array_equal(np.asarray(xv[b]), np.asarray(xb[20 * b : 20 * (b + 1)]))


def test_chunked_equals_one_shot_and_no_equilibration_returned(ring20):
    m = glm.RectifiedLNP(**TUT)
    key = jax.random.key(5)
    one = glm.simulate(m, ring20, n_steps=200, key=key).raster
    chunked = glm.simulate(m, ring20, n_steps=200, key=key, chunk_size=100).raster
    np.testing.assert_array_equal(np.asarray(one), np.asarray(chunked))
    assert one.shape == (20, 200)
    # equilibration steps are not returned, for all five models (the raster has exactly n_steps columns,
    # and a run with more equilibration is not a prefix-shifted copy)
    for m in (glm.BernoulliGLM(), POISSON, glm.RectifiedSAM(), glm.ThresholdSAM()):
        x = glm.simulate(m, ring20, n_steps=200, key=key).raster
        assert x.shape == (20, 200)


def test_store_as_dtype_is_output_only_and_int_storage_dt_below_one_is_not_silent():
    """spikeometric's PoissonGLM with dt < 1 and int storage truncates n*dt to 0 and goes silent; spikejax does not."""
    net = glm.from_dense(glm.mexican_hat(20))
    m = POISSON
    key = jax.random.key(2)
    outs = {d: glm.simulate(m, net, n_steps=200, key=key, store_as_dtype=d).raster for d in ("int", "float", "uint8", "bool", jnp.int8)}
    assert outs["int"].dtype == jnp.int32 and outs["float"].dtype == jnp.float32
    assert outs["uint8"].dtype == jnp.uint8 and outs["bool"].dtype == jnp.bool_ and outs[jnp.int8].dtype == jnp.int8
    assert int(outs["int"].sum()) > 50  # not silent
    for d in ("float", "uint8", jnp.int8):
        np.testing.assert_array_equal(np.asarray(outs[d], np.float64), np.asarray(outs["int"], np.float64))
    np.testing.assert_array_equal(np.asarray(outs["bool"]), np.asarray(outs["int"]) > 0)
    with pytest.raises(ValueError, match="store_as_dtype"):
        glm.simulate(m, net, n_steps=10, key=key, store_as_dtype="complex")


def test_rectified_lnp_matches_mean_field_tutorial_text():
    net = glm.from_dense(glm.mexican_hat(100))
    m = glm.RectifiedLNP(**TUT)
    x = glm.simulate(m, net, n_steps=20_000, key=jax.random.key(0), equilibration_steps=1000).raster
    sim = glm.population_rate(x, m)
    mf = float(glm.mean_field_rate(m, net))
    w_in = float(net.in_weight().mean())
    C = float(np.sum(np.exp(-np.arange(20) * 0.1 / 10)))
    closed = glm.mean_field_rate_homogeneous(100.0, 1e-4, 0.001, 0.0025, 0.1, w_in, C)
    assert w_in == pytest.approx(-0.0750, abs=5e-5)
    assert mf == pytest.approx(closed, rel=1e-5)
    assert abs(sim / mf - 1) < 0.02, (sim, mf)


@pytest.mark.slow
def test_rectified_lnp_matches_mean_field_legacy_notebook():
    """Legacy settings (r = 0.025, T = 200 steps, diagonal kept): the tutorial's 'before tuning' 33.9 Hz."""
    net = glm.from_dense(glm.mexican_hat(100, diagonal=True))
    m = glm.RectifiedLNP(**LEGACY)
    x = glm.simulate(m, net, n_steps=20_000, key=jax.random.key(1), equilibration_steps=2000).raster
    sim = glm.population_rate(x, m)
    mf = float(glm.mean_field_rate(m, net))
    assert float(net.in_weight().mean()) == pytest.approx(-0.0765, abs=5e-5)
    assert mf == pytest.approx(33.886, rel=0.01)
    assert abs(sim / mf - 1) < 0.02, (sim, mf)


@pytest.mark.slow
def test_bernoulli_glm_standard_rate_on_glorot_networks(glorot20):
    """Standard parameters fire at about sigma(-5) / dt = 6.7 Hz to the upstream 7.2 Hz."""
    batch = glm.batch_networks(glorot20)
    x = glm.simulate(glm.BernoulliGLM(), batch, n_steps=5000, key=jax.random.key(4)).raster
    rate = glm.population_rate(x, 1.0)
    assert 6.3 < rate < 7.6, rate


@pytest.mark.slow
def test_threshold_sam_rate_on_uniform_network():
    """ThresholdSAM on 20-neuron uniform networks: the spikeometric test's 33.6 Hz (rtol 0.1) is one noisy
    1000-step draw of a process whose stationary rate is the background's exceedance probability
    rho * P(xi^2 > theta / b - 1) (inhibition is ~1e-6 here): about 28.3 Hz."""
    gen = glm.UniformGenerator(20, -0.00229, 0.0, 0.9)
    nets = gen.generate(20, key=jax.random.key(14071789))
    batch = glm.batch_networks(nets)
    m = glm.ThresholdSAM()
    x = glm.simulate(m, batch, n_steps=5000, key=jax.random.key(0)).raster
    rate = glm.population_rate(x, m)
    p = 0.07 * 2 * norm.sf(np.sqrt(1.378e-3 / 1e-3 - 1) / 0.3)
    expected = p / 0.1 * 1000
    n = 20 * 20 * 5000
    assert abs(rate - expected) < 4 * np.sqrt(p / n) / 0.1 * 1000 + 0.2, (rate, expected)
    # a single 1000-step run of one network has a standard deviation of ~3.7 Hz: 33.6 Hz is within 2 sd
    sd_1000 = np.sqrt(p / (20 * 1000)) / 0.1 * 1000
    assert abs(33.6364 - expected) < 2 * sd_1000


def test_stimulus_drives_network_and_clock_starts_at_zero(ring20):
    m = glm.RectifiedLNP(**TUT)
    masks = np.zeros((1, 20), bool)
    masks[0, ::2] = True
    stim = glm.RegularStimulus(0.01, period=100, tau=10, stop=1000, stimulus_masks=masks)
    key = jax.random.key(0)
    x0 = np.asarray(glm.simulate(m, ring20, n_steps=200, key=key).raster)
    x1 = np.asarray(glm.simulate(m, ring20, n_steps=200, key=key, stimulus=stim).raster)
    on = (np.arange(200) % 100) < 10
    assert x1[::2][:, on].sum() > 3 * x0[::2][:, on].sum() + 5
    np.testing.assert_array_equal(x1[1::2][:, :1], x0[1::2][:, :1])  # unmasked neurons: same first step
    # any callable t -> (N,) works
    x2 = np.asarray(glm.simulate(m, ring20, n_steps=200, key=key, stimulus=lambda t: 0.01 * (t < 10) * jnp.ones(20)).raster)
    assert x2[:, :10].sum() > x0[:, :10].sum() + 5
