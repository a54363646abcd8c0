"""The spec's "implement a new model" tutorial (FilRectLNP) expressed by subclassing GLMModel."""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spikejax import glm


class FilRectLNP(glm.GLMModel):
    """Refractoriness (self kernel), rectifier, and a multi-channel stimulus mixed by a channel filter."""

    lambda_0: jax.Array
    theta: jax.Array
    tau: jax.Array
    dt: jax.Array
    r: jax.Array
    abs_ref: jax.Array
    channel_weights: jax.Array
    T_steps: int = eqx.field(static=True)

    tunable: ClassVar[tuple[str, ...]] = ("lambda_0", "theta", "tau", "r")
    uses_uniform: ClassVar[bool] = True

    def __init__(self, lambda_0=50.0, theta=-0.01, T=10, tau=3.0, dt=1.0, r=1.0, abs_ref=-10.0, channel_weights=(1.0, -0.5, 0.25)):
        self.lambda_0 = jnp.asarray(lambda_0, float)
        self.theta = jnp.asarray(theta, float)
        self.tau = jnp.asarray(tau, float)
        self.dt = jnp.asarray(dt, float)
        self.r = jnp.asarray(r, float)
        self.abs_ref = jnp.asarray(abs_ref, float)
        self.channel_weights = jnp.asarray(channel_weights, float)
        self.T_steps = T

    def connectivity_filter(self):
        k = jnp.arange(self.T_steps, dtype=self.dt.dtype)
        coupling = jnp.exp(-k * self.dt / self.tau)
        refractory = jnp.where(k < 2, self.abs_ref, 0.0)
        return glm.LagKernel(coupling=coupling, self_kernel=refractory)

    def input(self, synaptic, stimulus, *, key):
        return self.r * synaptic + stimulus

    def non_linearity(self, g):
        return self.lambda_0 * self.dt / 1000.0 * jax.nn.relu(g - self.theta)

    def emit_spikes(self, mu, *, key, u=None):
        return glm.sample_poisson(mu, u, key=key)

    def stimulus_filter(self, stimulus):
        # (N, C) multi-channel plan -> one input per neuron
        return stimulus @ self.channel_weights if stimulus.ndim == 2 else stimulus


@pytest.mark.requires_x64
def test_custom_model_input_matches_hand_computation(small_matrix):
    m = FilRectLNP()
    net = glm.from_dense(small_matrix)
    win = np.random.default_rng(0).poisson(0.3, (6, 10)).astype(float)
    stim = np.random.default_rng(1).normal(size=(6, 3))
    g = glm.input_from_window(m, net, win, stimulus=stim)
    k = np.arange(10)
    c = np.exp(-k / 3.0)
    ref = np.where(k < 2, -10.0, 0.0)
    expect = np.einsum("ji,jk,k->i", small_matrix.astype(float), win, c) + win @ ref + stim @ np.array([1.0, -0.5, 0.25])
    np.testing.assert_allclose(np.asarray(g), expect, rtol=1e-12)


def test_custom_model_simulates_with_loaded_multichannel_stimulus_and_tunes():
    net = glm.from_dense(glm.mexican_hat(20) * 10)
    m = FilRectLNP()
    plan = np.zeros((20, 200, 3), np.float32)
    plan[:10, 50:150, 0] = 0.2
    stim = glm.LoadedStimulus(plan)
    key = jax.random.key(0)
    x = np.asarray(glm.simulate(m, net, n_steps=200, key=key, stimulus=stim).raster)
    assert x[:10, 50:150].mean() > 2 * x[:10, :50].mean()
    # refractoriness: no neuron spikes in two consecutive steps (abs_ref = -10 at lags 0, 1)
    assert not np.any((x[:, 1:] > 0) & (x[:, :-1] > 0))
    res = glm.tune(m, net, 20.0, ["theta"], key=key, estimator="spikeometric", n_steps=50, n_epochs=2, learning_rate=1e-3)
    assert float(res.model.theta) != float(m.theta)


def test_general_per_edge_kernel(small_matrix):
    """A non-separable [E, T] kernel (each edge its own time course) through the general path."""

    class EdgeKernelLNP(glm.RectifiedLNP):
        def connectivity_filter(self):
            return glm.LagKernel(edge_kernel=self._edge_kernel)

        @property
        def _edge_kernel(self):
            w = jnp.asarray(EDGE_W)
            return w[:, None] * jnp.stack([jnp.ones_like(w), 0.5 * jnp.sign(w), jnp.zeros_like(w)], axis=1)

    net = glm.from_dense(small_matrix)
    global EDGE_W
    EDGE_W = np.asarray(net.weight)
    m = EdgeKernelLNP(T=3)
    win = np.random.default_rng(0).poisson(0.5, (6, 3)).astype(float)
    g = glm.input_from_window(m, net, win, backend="sparse")
    src, dst = np.asarray(net.src), np.asarray(net.dst)
    expect = np.full(6, 0.001)
    for e in range(len(src)):
        expect[dst[e]] += 0.025 * (EDGE_W[e] * win[src[e], 0] + 0.5 * abs(EDGE_W[e]) * win[src[e], 1])
    np.testing.assert_allclose(np.asarray(g), expect, rtol=1e-5, atol=1e-8)
