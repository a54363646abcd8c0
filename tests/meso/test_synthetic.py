"""Trials drawn from the mesoscopic model itself (``simulate_observed``)."""

import jax
import numpy as np
import pytest

from spikejax import meso
from spikejax.meso.synthetic import simulate_observed


@pytest.fixture(scope="module")
def trial():
    return simulate_observed(meso.ground_truth(), 1000, key=jax.random.PRNGKey(0), n_obs=4, hist_bins=100,
                             burn_bins=100)


def test_shapes_and_key(trial):
    assert trial.y.shape == (1000, 3, 4) and trial.y_hist.shape == (100, 3, 4)
    assert trial.Z.shape == (1000, 3) and tuple(trial.N) == (400, 400, 200)
    again = simulate_observed(meso.ground_truth(), 1000, key=jax.random.PRNGKey(0), n_obs=4, hist_bins=100,
                              burn_bins=100)
    np.testing.assert_array_equal(again.y, trial.y)
    np.testing.assert_array_equal(again.Z, trial.Z)
    other = simulate_observed(meso.ground_truth(), 1000, key=jax.random.PRNGKey(1), n_obs=4, hist_bins=100,
                              burn_bins=100)
    assert not np.array_equal(other.y, trial.y)


def test_observed_neurons_follow_their_population(trial):
    """The observed neurons are drawn from the emission the filter assumes: over the trial their mean
    rate matches their population's (4 neurons x 4 s per population; binomial s.d. ~ 1.6-2.5 Hz),
    and no neuron fires in two consecutive 4-ms bins (the 4-ms refractory period)."""
    y, Z = np.asarray(trial.y), np.asarray(trial.Z)
    obs_rate = y.mean(axis=(0, 2)) / (trial.dt / 1000.0)
    pop_rate = Z.mean(axis=0) / (trial.dt / 1000.0)
    np.testing.assert_allclose(obs_rate, pop_rate, atol=8.0)
    assert not np.any(y[1:] * y[:-1])
    # the particle filter at the generating parameters follows Z far above chance (the s.d. of r for
    # unrelated series of 1000 bins is ~0.03; the 4-ms finite-size noise itself is unpredictable)
    post = meso.posterior_Z(meso.ground_truth(), trial, key=jax.random.PRNGKey(2), n_particles=64, n_runs=2)
    r = [np.corrcoef(np.asarray(post.mean)[:, j], Z[:, j])[0, 1] for j in range(2)]
    assert min(r) > 0.15, r


def test_errors():
    gt = meso.ground_truth()
    with pytest.raises(ValueError, match="n_steps"):
        simulate_observed(gt, 1, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="n_obs"):
        simulate_observed(gt, 10, key=jax.random.PRNGKey(0), n_obs=0)
    with pytest.raises(TypeError, match="params"):
        simulate_observed({"J": 1}, 10, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="A0"):
        simulate_observed(gt, 10, key=jax.random.PRNGKey(0), A0=[1.0, 2.0])
