"""Shared fixtures for the glm tests: small networks reused so compiled functions are shared."""

import jax
import numpy as np
import pytest

from spikejax import glm

TUT = dict(lambda_0=100.0, theta=1e-4, T=20, tau=10.0, dt=0.1, r=0.0025, b=0.001)
LEGACY = dict(lambda_0=100.0, theta=1e-4, T=200, tau=10.0, dt=0.1, r=0.025, b=0.001)


@pytest.fixture(scope="session")
def small_matrix():
    """A 6-neuron matrix with mixed signs, a zero diagonal and a few absent edges."""
    rng = np.random.default_rng(3)
    W = rng.normal(0, 0.5, (6, 6)).astype(np.float32)
    W[rng.random((6, 6)) < 0.3] = 0.0
    np.fill_diagonal(W, 0.0)
    return W


@pytest.fixture(scope="session")
def ring20():
    return glm.from_dense(glm.mexican_hat(20))


@pytest.fixture(scope="session")
def glorot20():
    return glm.NormalGenerator(20, 0.0, 5.0, glorot=True).generate(10, key=jax.random.key(14071789))
