"""Each model's input, nonlinearity and emission against float64 NumPy references written from the spec."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spikejax import glm


def _ref_input(W, window_lag, profile, self_profile=None):
    """g_i = sum_j sum_k W[j, i] c(k) x_j(t-1-k) (+ sum_k ref(k) x_i(t-1-k)); window_lag[:, k] = x(t-1-k)."""
    W = np.asarray(W, np.float64)
    g = np.zeros(W.shape[0])
    for i in range(W.shape[0]):
        for j in range(W.shape[0]):
            for k in range(len(profile)):
                g[i] += W[j, i] * profile[k] * window_lag[j, k]
        if self_profile is not None:
            g[i] += sum(self_profile[k] * window_lag[i, k] for k in range(len(self_profile)))
    return g


@pytest.mark.requires_x64
def test_bernoulli_glm_input_nonlinearity_kernel(small_matrix):
    m = glm.BernoulliGLM()
    net = glm.from_dense(small_matrix)
    T = 10
    rng = np.random.default_rng(0)
    win = (rng.random((6, T)) < 0.3).astype(float)
    k = np.arange(T)
    coup = np.where(k < 5, np.exp(-0.2 * k * 1.0), 0.0)
    ref = np.where(k < 3, -100.0, np.where(k < 10, -30.0 * np.exp(-0.5 * (k - 3) * 1.0), 0.0))
    g = glm.input_from_window(m, net, win)
    ref_g = 1.0 * _ref_input(small_matrix, win, coup, ref)
    np.testing.assert_allclose(np.asarray(g), ref_g, rtol=1e-12, atol=1e-12)
    p = m.non_linearity(jnp.asarray(ref_g))
    np.testing.assert_allclose(np.asarray(p), 1 / (1 + np.exp(-(ref_g - 5.0))) * 1.0, rtol=1e-12)
    # the explicit edge kernel in spikeometric's layout: column T-1 is lag 0, self edges appended
    src, dst, Wk = m.connectivity_filter().edge_kernel_of(net, layout="spikeometric")
    assert Wk.shape == (net.n_edges + 6, T)
    np.testing.assert_allclose(np.asarray(Wk[0]), np.asarray(net.weight[0]) * coup[::-1], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(Wk[-1]), ref[::-1], rtol=1e-12)
    assert int(src[-1]) == int(dst[-1]) == 5


@pytest.mark.requires_x64
@pytest.mark.parametrize("cls", [glm.PoissonGLM, glm.RectifiedLNP])
def test_exponential_kernel_models_input_and_rates(cls, small_matrix):
    kw = dict(T=7, tau=3.0, dt=0.5, r=0.3, b=0.01)
    m = cls(**kw)
    net = glm.from_dense(small_matrix)
    rng = np.random.default_rng(1)
    win = rng.poisson(0.4, (6, 7)).astype(float)
    c = np.exp(-np.arange(7) * 0.5 / 3.0)
    # PoissonGLM feeds back dt-scaled counts (spikeometric's float storage): y = n * dt
    trace = win * 0.5 if cls is glm.PoissonGLM else win
    stim = rng.normal(0, 0.1, 6)
    g_ref = 0.3 * _ref_input(small_matrix, trace, c) + 0.01 + stim
    g = glm.input_from_window(m, net, win if cls is glm.RectifiedLNP else trace, stimulus=stim)
    if cls is glm.PoissonGLM:
        # input_from_window takes the trace the kernel reads (already dt-scaled)
        pass
    np.testing.assert_allclose(np.asarray(g), g_ref, rtol=1e-12, atol=1e-14)
    mu = np.asarray(m.non_linearity(jnp.asarray(g_ref)))
    if cls is glm.PoissonGLM:
        np.testing.assert_allclose(mu, 0.5 / 15.9 * np.exp(10.0 * g_ref), rtol=1e-12)
    else:
        np.testing.assert_allclose(mu, 9.8 * 0.5 * np.maximum(g_ref + 0.002, 0), rtol=1e-12)


@pytest.mark.requires_x64
def test_sa_models_input(small_matrix):
    net = glm.from_dense(small_matrix)
    s = np.random.default_rng(2).random((6, 1))
    m = glm.RectifiedSAM()
    g = glm.input_from_window(m, net, s)
    g_ref = 0.025 * (np.asarray(small_matrix, np.float64).T @ s[:, 0]) + 0.001
    np.testing.assert_allclose(np.asarray(g), g_ref, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(m.non_linearity(jnp.asarray(g_ref))), 1.0861 * 0.1 * np.maximum(g_ref + 0.0137, 0), rtol=1e-12)
    # activation update s <- s (1 - dt/tau) + x dt
    x = jnp.asarray([1.0, 0, 2, 0, 0, 1])
    tr, aux = m.presynaptic(x, jnp.asarray(s[:, 0]))
    np.testing.assert_allclose(np.asarray(tr), s[:, 0] * (1 - 0.1 / 10) + np.asarray(x) * 0.1, rtol=1e-12)
    # ThresholdSAM: the background b (1 + m xi^2) is >= b; its mean is b (1 + rho sigma^2)
    t = glm.ThresholdSAM()
    bg = t.background((200_000,), jnp.float64, key=jax.random.key(0))
    assert float(bg.min()) >= 0.001
    np.testing.assert_allclose(float(bg.mean()), 0.001 * (1 + 0.07 * 0.09), rtol=2e-3)
    assert float(jnp.mean(bg > 0.001)) == pytest.approx(0.07, abs=3e-3)
    np.testing.assert_array_equal(np.asarray(t.emit_spikes(jnp.asarray([1e-3, 1.379e-3, 2e-3]), key=jax.random.key(0))), [0, 1, 1])


def test_lag_convention_spike_at_t_minus_1_acts_with_c0():
    """A single spike of neuron 0 at step t-1 reaches neuron 1 at step t with weight W0[0,1] c(0), at t+k with c(k)."""
    W = np.zeros((2, 2), np.float32)
    W[0, 1] = 0.5
    net = glm.from_dense(W)
    m = glm.RectifiedLNP(lambda_0=1.0, theta=-10.0, T=4, tau=2.0, dt=1.0, r=1.0, b=0.0)
    c = np.exp(-np.arange(4) / 2.0)
    for lag in range(4):
        win = np.zeros((2, 4))
        win[0, lag] = 1.0  # spike lag+1 steps ago
        g = glm.input_from_window(m, net, win)
        assert float(g[1]) == pytest.approx(0.5 * c[lag], rel=1e-6)
        assert float(g[0]) == 0.0
        # same thing in spikeometric's layout: column T-1 is the most recent step
        g2 = glm.input_from_window(m, net, win[:, ::-1], layout="spikeometric")
        np.testing.assert_allclose(np.asarray(g2), np.asarray(g), rtol=1e-6)
    # and through the simulator itself: spike emitted at step t-1 shows up in g at step t
    sim = __import__("importlib").import_module("spikejax.glm.simulation")
    state, engine = sim.state_from_window(m, net, np.zeros((2, 4)))
    kernel = m.connectivity_filter().padded()
    keys = jax.random.key(0)[None]
    x0 = jnp.asarray([1.0, 0.0])
    tr, _ = m.presynaptic(x0, None)
    pos = (state.pos + 1) % 4
    state = sim.SimState(state.drive.at[pos].set(engine.coupler.project(tr)), None, pos, None)
    g = sim._synaptic(kernel, engine, state)
    assert float(g[1]) == pytest.approx(0.5 * c[0], rel=1e-6)


def test_emission_statistics():
    key = jax.random.key(1)
    mu = jnp.asarray([0.001, 0.05, 0.5, 0.99])
    n = 200_000
    xs = glm.sample_poisson(jnp.broadcast_to(mu, (n, 4)), key=key)
    mean, var = np.asarray(xs.mean(0), np.float64), np.asarray(xs.var(0), np.float64)
    m64 = np.asarray(mu, np.float64)
    # 4 standard errors of the mean and of the variance (Poisson: var(x) = mu, var(s^2) ~ (mu + 2 mu^2) / n)
    assert np.all(np.abs(mean - m64) < 4 * np.sqrt(m64 / n)), (mean, m64)
    assert np.all(np.abs(var - m64) < 4 * np.sqrt((m64 + 2 * m64**2) / n)), (var, m64)
    # the pieces path (mean > 1) and the normal tail (mean > 1024)
    big = jnp.asarray([3.0, 25.0, 5000.0])
    xb = glm.sample_poisson(jnp.broadcast_to(big, (20_000, 3)), key=key)
    np.testing.assert_allclose(np.asarray(xb.mean(0)), np.asarray(big), rtol=0.02)
    np.testing.assert_allclose(np.asarray(xb.var(0)), np.asarray(big), rtol=0.06)
    assert bool(jnp.all(xb == jnp.round(xb)))
    # NaN means stay NaN (never a silent count)
    assert bool(jnp.isnan(glm.sample_poisson(jnp.asarray([jnp.nan, 0.1]), key=key)[0]))
    # Bernoulli emission
    b = glm.BernoulliGLM()
    p = jnp.full((100_000,), 0.2)
    assert float(b.emit_spikes(p, key=key).mean()) == pytest.approx(0.2, abs=0.005)
    # bulk uniforms give the same draw as the key
    u = jax.random.uniform(key, p.shape, p.dtype)
    np.testing.assert_array_equal(np.asarray(b.emit_spikes(p, key=key)), np.asarray(b.emit_spikes(p, key=key, u=u)))


def test_tunable_parameter_names_and_replace():
    assert glm.BernoulliGLM.tunable == ("theta", "r", "beta", "alpha", "rel_ref_strength")
    assert glm.PoissonGLM.tunable == ("alpha", "beta", "tau", "r", "b")
    assert glm.RectifiedLNP.tunable == ("lambda_0", "theta", "tau", "r", "b")
    assert glm.ThresholdSAM.tunable == ()
    m = glm.RectifiedLNP().replace(theta=0.5)
    assert float(m.theta) == 0.5 and m.theta.dtype == glm.RectifiedLNP().theta.dtype
    with pytest.raises(ValueError, match="no parameter"):
        glm.RectifiedLNP().replace(nope=1.0)


def test_spikeometric_kernels_match_if_installed(small_matrix):
    """Optional cross-check against spikeometric's connectivity_filter and input (skipped without it)."""
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("spikeometric.models")
    Wt = torch.from_numpy(small_matrix)
    ei = Wt.nonzero().T
    W0 = Wt[ei[0], ei[1]]
    net = glm.from_dense(small_matrix)
    sm = models.RectifiedLNP(lambda_0=9.8, theta=-0.002, T=7, tau=3.0, dt=0.5, r=0.3, b=0.01)
    Wk, _ = sm.connectivity_filter(W0, ei)
    _, _, ours = glm.RectifiedLNP(T=7, tau=3.0, dt=0.5, r=0.3, b=0.01).connectivity_filter().edge_kernel_of(net, layout="spikeometric")
    np.testing.assert_allclose(np.asarray(ours), Wk.numpy(), rtol=1e-5)
    state = (torch.rand(6, 7, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    g_sm = sm.input(ei, Wk, state, t=0).numpy()
    g = glm.input_from_window(glm.RectifiedLNP(T=7, tau=3.0, dt=0.5, r=0.3, b=0.01), net, state.numpy(), layout="spikeometric")
    np.testing.assert_allclose(np.asarray(g), g_sm, rtol=1e-5, atol=1e-7)
    bm = models.BernoulliGLM(theta=5.0, dt=1.0, coupling_window=5, alpha=0.2, abs_ref_scale=3, abs_ref_strength=-100.0, rel_ref_scale=7, rel_ref_strength=-30.0, beta=0.5, r=1.0)
    Wb, eib = bm.connectivity_filter(W0, ei)
    src, dst, ours = glm.BernoulliGLM().connectivity_filter().edge_kernel_of(net, layout="spikeometric")
    # same multiset of (src, dst, kernel row)
    a = {(int(s), int(d)): tuple(np.round(np.asarray(w), 4)) for s, d, w in zip(src, dst, ours)}
    b = {(int(s), int(d)): tuple(np.round(w.numpy(), 4)) for s, d, w in zip(eib[0], eib[1], Wb)}
    assert a == b
