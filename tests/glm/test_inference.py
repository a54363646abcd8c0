"""glm.spike_log_likelihood and glm.fit_connectivity: float64 reference, gradients, streaming, recovery, L1, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import gammaln

from spikejax import glm
from spikejax.core.errors import ConfigError, ShapeError


def _ref_ll(model_kind, W, x, *, T, tau, dt, r, b, alpha=1.0, beta=1.0, bias=None, inputs=None, gains=None):
    """NumPy float64 reference: explicit double loop over steps and lags (x: (n_steps, N) counts)."""
    n_steps, n = x.shape
    c = np.exp(-np.arange(T) * dt / tau)
    trace = x * dt if model_kind == "poisson_glm" else x
    ll = 0.0
    for t in range(n_steps):
        syn = np.zeros(n)
        for k in range(T):
            if t - 1 - k >= 0:
                syn += c[k] * (trace[t - 1 - k] @ W)
        g = r * syn + b
        if bias is not None:
            g = g + bias
        if inputs is not None:
            g = g + gains @ inputs[t]
        mu = dt / alpha * np.exp(beta * g)
        ll += np.sum(x[t] * np.log(mu) - mu - np.asarray(gammaln(x[t] + 1.0)))
    return ll


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    n, steps = 4, 40
    W = rng.normal(0, 0.5, (n, n))
    x = rng.poisson(0.3, (steps, n)).astype(float)
    inputs = rng.normal(0, 1, (steps, 2))
    gains = rng.normal(0, 0.3, (n, 2))
    bias = rng.normal(0, 0.2, n)
    return W, x, inputs, gains, bias


@pytest.mark.requires_x64
def test_float64_reference_streaming_and_edges(tiny):
    W, x, inputs, gains, bias = tiny
    kw = dict(T=6, tau=2.0, dt=0.5, r=0.7, b=-0.3, alpha=2.0, beta=1.5)
    model = glm.PoissonGLM(**kw)
    ref = _ref_ll("poisson_glm", W, x, bias=bias, inputs=inputs, gains=gains, **kw)
    common = dict(bias=bias, inputs=inputs, gains=gains)
    full = glm.spike_log_likelihood(model, W, x.T, window=10_000, **common)
    streamed = glm.spike_log_likelihood(model, W, x.T, window=7, **common)  # 6 windows, the last one partial
    np.testing.assert_allclose(float(full), ref, rtol=1e-12)
    np.testing.assert_allclose(float(streamed), ref, rtol=1e-12)
    # a candidate edge set: the same likelihood from the weights of every pair given as edges
    src, dst = np.nonzero(np.ones_like(W, bool))
    by_edges = glm.spike_log_likelihood(model, W[src, dst], x.T, edges=(src, dst), window=7, **common)
    np.testing.assert_allclose(float(by_edges), ref, rtol=1e-12)
    per = glm.spike_log_likelihood(model, W, x.T, per_neuron=True, window=7, **common)
    assert per.shape == (4,)
    np.testing.assert_allclose(float(per.sum()), ref, rtol=1e-12)


@pytest.mark.requires_x64
@pytest.mark.parametrize("model", [glm.BernoulliGLM(coupling_window=3, abs_ref_scale=1, rel_ref_scale=2, theta=1.0),
                                   glm.RectifiedSAM(lambda_0=50.0, theta=-0.01, tau=2.0, dt=0.5, r=0.3, b=0.01)])
def test_other_models_match_teacher_forced_reference(model, tiny):
    """Self (refractory) kernels and SA activations: streamed windows equal the simulator-based likelihood."""
    W, x, *_ = tiny
    xb = np.minimum(x, 1.0)
    net = glm.from_dense(W)
    ref = float(glm.log_likelihood(model, net, xb.T))
    got = float(glm.spike_log_likelihood(model, W, xb.T, window=7))  # streamed: 6 windows
    np.testing.assert_allclose(got, ref, rtol=1e-10)


@pytest.mark.requires_x64
def test_check_grads_weights_bias_gains_kernel(tiny):
    from jax.test_util import check_grads

    W, x, inputs, gains, bias = tiny
    x = x[:12]
    inputs = inputs[:12]

    def f(W, bias, gains, tau):
        model = glm.PoissonGLM(alpha=1.0, beta=1.0, T=4, tau=2.0, dt=1.0, r=0.5, b=-0.5)
        model = model.replace(tau=tau)
        return glm.spike_log_likelihood(model, W, x.T, bias=bias, inputs=inputs, gains=gains, window=6)

    check_grads(f, (jnp.asarray(W), jnp.asarray(bias), jnp.asarray(gains), jnp.asarray(2.0)), order=1, modes=["rev"],
                atol=1e-5, rtol=1e-5)
    # jit and vmap agree with eager
    eager = f(jnp.asarray(W), jnp.asarray(bias), jnp.asarray(gains), jnp.asarray(2.0))
    jitted = jax.jit(f)(jnp.asarray(W), jnp.asarray(bias), jnp.asarray(gains), jnp.asarray(2.0))
    np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-12)
    Ws = jnp.stack([jnp.asarray(W), 0.5 * jnp.asarray(W)])
    batched = jax.vmap(lambda w: f(w, jnp.asarray(bias), jnp.asarray(gains), jnp.asarray(2.0)))(Ws)
    np.testing.assert_allclose(float(batched[0]), float(eager), rtol=1e-12)
    np.testing.assert_allclose(float(batched[1]), float(f(0.5 * jnp.asarray(W), jnp.asarray(bias), jnp.asarray(gains),
                                                           jnp.asarray(2.0))), rtol=1e-12)


@pytest.fixture(scope="module")
def recorded():
    """12 neurons, 30 % connectivity, 3000 steps of a PoissonGLM with a shared input (about 3000 spikes)."""
    n = 12
    rng = np.random.default_rng(0)
    W = np.where(rng.random((n, n)) < 0.3, rng.normal(0, 0.4, (n, n)), 0.0).astype(np.float32)
    np.fill_diagonal(W, 0.0)
    gains = rng.uniform(0.2, 0.8, n).astype(np.float32)
    steps = 3000
    I = (0.5 * np.sin(np.arange(steps) / 40.0) + 0.5 * rng.standard_normal(steps)).astype(np.float32)
    model = glm.PoissonGLM(alpha=1.0, beta=1.0, T=10, tau=3.0, dt=1.0, r=0.5, b=-2.5)
    Ij, gj = jnp.asarray(I), jnp.asarray(gains)
    traj = glm.simulate(model, glm.from_dense(W), n_steps=steps, key=jax.random.key(1), stimulus=lambda t: gj * Ij[t])
    return model, W, gains, I, traj


def test_recovery_and_result(recorded, tmp_path):
    model, W, gains, I, traj = recorded
    res = glm.fit_connectivity(model, traj, inputs=I, true_weights=W)
    assert isinstance(res, glm.GLMFitResult)
    rec = res.recovery()
    # about 40 true edges: a chance correlation above 0.6 is a > 3.5 sd event
    assert rec["r_edges"] > 0.6, rec
    assert abs(rec["mean_absent"]) < 0.1, rec
    assert np.corrcoef(np.asarray(res.gains)[:, 0], gains)[0, 1] > 0.8
    # the estimate maximises the likelihood: it beats the truth on this recording
    ll_true = float(glm.spike_log_likelihood(model, W, traj, inputs=I, gains=gains))
    assert res.log_likelihood >= ll_true
    np.testing.assert_allclose(res.log_likelihood, float(glm.spike_log_likelihood(
        model, res.weights, traj, bias=res.bias, inputs=I, gains=res.gains)), rtol=1e-5)
    df = res.to_pandas()
    assert list(df.columns) == ["pre", "post", "true_weight", "estimate"] and len(df) == 144
    res.plot()
    path = res.save(tmp_path / "fit.h5")
    back = glm.GLMFitResult.load(path)
    np.testing.assert_array_equal(np.asarray(back.weights), np.asarray(res.weights))
    assert back.to_pandas().equals(df)
    assert isinstance(back.model, glm.PoissonGLM)
    # a candidate edge set: weights outside it stay zero
    mask = W != 0
    res_e = glm.fit_connectivity(model, traj, inputs=I, edges=mask, true_weights=W)
    assert np.all(np.asarray(res_e.weights)[~mask] == 0)
    assert len(res_e.to_pandas()) == int(mask.sum())


def test_l1_zeroes_weights(recorded):
    model, W, gains, I, traj = recorded
    res = glm.fit_connectivity(model, traj, inputs=I, l1=5.0, n_iter=150)
    assert res.l1 == 5.0
    zeros = float(np.mean(np.asarray(res.weights) == 0))
    assert zeros > 0.5, zeros
    huge = glm.fit_connectivity(model, traj, inputs=I, l1=1e5, n_iter=150)
    assert np.all(np.asarray(huge.weights) == 0)


def test_trainer_matches_in_memory_likelihood(recorded):
    model, W, gains, I, traj = recorded
    ref = glm.fit_connectivity(model, traj, inputs=I, true_weights=W)
    res = glm.fit_connectivity(model, traj, inputs=I, solver="trainer", key=jax.random.key(0), window=500, batch_size=3,
                               n_epochs=60, learning_rate=0.05, true_weights=W)
    assert res.solver == "trainer"
    assert res.log_likelihood > ref.log_likelihood - 0.005 * abs(ref.log_likelihood)
    assert res.recovery()["r_edges"] > 0.5


def test_errors(recorded):
    model, W, gains, I, traj = recorded
    with pytest.raises(ConfigError, match="ThresholdSAM"):
        glm.spike_log_likelihood(glm.ThresholdSAM(), W, traj)
    with pytest.raises(ShapeError, match="weights"):
        glm.spike_log_likelihood(model, W[:3], traj)
    with pytest.raises(ConfigError, match="gains"):
        glm.spike_log_likelihood(model, W, traj, inputs=I)
    with pytest.raises(ShapeError, match="inputs"):
        glm.spike_log_likelihood(model, W, traj, inputs=I[:10], gains=gains)
    with pytest.raises(ConfigError, match="solver"):
        glm.fit_connectivity(model, traj, solver="newton")
    with pytest.raises(ConfigError, match="l1"):
        glm.fit_connectivity(model, traj, l1=-1.0)
    with pytest.raises(ConfigError, match="key"):
        glm.fit_connectivity(model, traj, solver="trainer")
    with pytest.raises(ShapeError, match="edges"):
        glm.fit_connectivity(model, traj, edges=np.ones((3, 3), bool))
    with pytest.raises(ConfigError, match="observation"):
        glm.spike_log_likelihood(model, W, traj, observation="gaussian")
