"""Bad inputs raise clear errors naming the argument."""

import jax
import numpy as np
import pytest

from spikejax import glm


def test_network_errors():
    W = np.eye(3, dtype=np.float32)
    W[0, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        glm.from_dense(W)
    with pytest.raises(ValueError, match="square"):
        glm.from_dense(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="n_nodes"):
        glm.from_edges([0, 5], [1, 2], [0.1, 0.2], 3)
    with pytest.raises(ValueError, match="weight"):
        glm.from_edges([0, 1], [1, 2], [0.1, np.inf], 3)
    with pytest.raises(ValueError, match="same shape"):
        glm.from_edges([0, 1], [1], [0.1, 0.2], 3)
    with pytest.raises(TypeError, match="integer"):
        glm.from_edges([0.5, 1.0], [1, 2], [0.1, 0.2], 3)
    with pytest.raises(ValueError, match="equal size"):
        glm.stack_networks([glm.from_dense(np.ones((3, 3))), glm.from_dense(np.ones((4, 4)))])


def test_nan_weights_injected_after_construction_raise_in_simulate():
    net = glm.from_dense(glm.mexican_hat(20))
    bad = glm.Network(net.src, net.dst, net.weight.at[3].set(np.nan), net.n_nodes)
    with pytest.raises(ValueError, match="finite"):
        glm.simulate(glm.RectifiedLNP(), bad, n_steps=10, key=jax.random.key(0))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: glm.RectifiedLNP(lambda_0=-1.0), "lambda_0"),
        (lambda: glm.RectifiedLNP(tau=-1.0), "tau"),
        (lambda: glm.RectifiedLNP(dt=0.0), "dt"),
        (lambda: glm.RectifiedLNP(T=0), "T"),
        (lambda: glm.RectifiedLNP(T=2.5), "T"),
        (lambda: glm.PoissonGLM(alpha=-15.9), "alpha"),
        (lambda: glm.RectifiedSAM(lambda_0=-0.1), "lambda_0"),
        (lambda: glm.ThresholdSAM(sigma=-0.3), "sigma"),
        (lambda: glm.ThresholdSAM(rho=1.5), "rho"),
        (lambda: glm.BernoulliGLM(coupling_window=0), "coupling_window"),
        (lambda: glm.BernoulliGLM(abs_ref_scale=-1), "abs_ref_scale"),
        (lambda: glm.RectifiedLNP(theta=np.nan), "theta"),
    ],
)
def test_model_parameter_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_simulate_argument_errors():
    net = glm.from_dense(glm.mexican_hat(20))
    m = glm.RectifiedLNP()
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="n_steps"):
        glm.simulate(m, net, n_steps=0, key=key)
    with pytest.raises(ValueError, match="equilibration_steps"):
        glm.simulate(m, net, n_steps=10, key=key, equilibration_steps=-1)
    with pytest.raises(ValueError, match="backend"):
        glm.simulate(m, net, n_steps=10, key=key, backend="gpu-magic")
    with pytest.raises(TypeError, match="model"):
        glm.simulate("RectifiedLNP", net, n_steps=10, key=key)
    with pytest.raises(TypeError, match="network"):
        glm.simulate(m, np.ones((3, 3)), n_steps=10, key=key)


def test_mean_field_errors():
    net = glm.from_dense(glm.mexican_hat(20))
    with pytest.raises(ValueError, match="RectifiedLNP"):
        glm.mean_field_rate(glm.BernoulliGLM(), net)
    excit = glm.from_dense(np.abs(glm.mexican_hat(20)) * 100)
    with pytest.raises(ValueError, match="eigenvalue"):
        glm.mean_field_rate(glm.RectifiedLNP(r=1.0), excit)


def test_stimulus_nan_after_the_first_step_is_detected():
    """A stimulus finite at t = 0 but NaN later is caught after the chunk that produced it (issue 23)."""
    import jax.numpy as jnp

    from spikejax.core.errors import NonFiniteError

    net = glm.from_dense(glm.mexican_hat(6))
    stim = lambda t: jnp.where(t >= 5, jnp.nan, 0.0) * jnp.ones(6)  # noqa: E731
    with pytest.raises(NonFiniteError, match="stimulus"):
        glm.simulate(glm.RectifiedLNP(T=5), net, n_steps=10, key=jax.random.key(0), stimulus=stim, equilibration_steps=0)
