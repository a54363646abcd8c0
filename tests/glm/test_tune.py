"""tune: the default (stationary, recurrent-gradient) estimator reaches the target; compatibility estimator;
parameter groups; errors; gradients of the differentiable rate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from spikejax import glm

from .conftest import TUT


def test_default_tune_reaches_62_5_hz_on_tutorial_setting():
    """Tutorial text: RectifiedLNP on a Mexican-hat ring, theta tuned to 62.5 Hz; checked by an independent run."""
    net = glm.from_dense(glm.mexican_hat(100))
    m = glm.RectifiedLNP(**TUT)
    res = glm.tune(m, net, 62.5, ["theta"], key=jax.random.key(1), n_epochs=100)
    x = glm.simulate(res.model, net, n_steps=20_000, key=jax.random.key(0), equilibration_steps=1000).raster
    rate = glm.population_rate(x, m)
    assert abs(rate - 62.5) < 1.0, rate
    # the tuned theta agrees with the mean-field inverse
    theta_mf = float(glm.mean_field_theta(m, net, 62.5))
    assert float(res.model.theta) == pytest.approx(theta_mf, rel=0.03)
    assert float(res.model.lambda_0) == 100.0  # untouched


def test_spikeometric_estimator_groups_and_freezing():
    net = glm.from_dense(glm.mexican_hat(20))
    m = glm.RectifiedLNP(**TUT)
    mask = np.zeros((1, 20), bool)
    mask[0, :5] = True
    stim = glm.RegularStimulus(0.001, 10, 5, 1000, stimulus_masks=mask)
    kw = dict(key=jax.random.key(0), stimulus=stim, estimator="spikeometric", n_steps=20, n_epochs=3, learning_rate=1e-5)
    r_model = glm.tune(m, net, 62.5, "model", **kw)
    assert float(r_model.stimulus.strength) == float(stim.strength)
    assert float(r_model.model.theta) != float(m.theta)
    r_stim = glm.tune(m, net, 62.5, "stimulus", **kw)
    assert float(r_stim.stimulus.strength) != float(stim.strength)
    for name in glm.RectifiedLNP.tunable:
        assert float(getattr(r_stim.model, name)) == float(getattr(m, name))
    for name in glm.RectifiedLNP.tunable:
        assert float(getattr(r_model.model, name)) != float(getattr(m, name))
    assert len(r_model.history["rate_hz"]) == 3 and np.all(np.isfinite(r_model.history["loss"]))
    assert glm.resolve_tunable(m, stim, "all") == list(glm.RectifiedLNP.tunable) + ["stimulus.strength"]
    # the input model is untouched (immutable modules)
    assert float(m.theta) == pytest.approx(1e-4, rel=1e-6)


def test_tune_errors():
    net = glm.from_dense(glm.mexican_hat(20))
    m = glm.RectifiedLNP(**TUT)
    with pytest.raises(ValueError, match="No parameters to tune"):
        glm.tune(m, net, 10.0, [], key=jax.random.key(0))
    with pytest.raises(ValueError, match="valid parameter names"):
        glm.tune(m, net, 10.0, ["dt"], key=jax.random.key(0))
    with pytest.raises(ValueError, match="no tunable parameters"):
        glm.tune(glm.ThresholdSAM(), net, 10.0, "all", key=jax.random.key(0))
    with pytest.raises(ValueError, match="No parameters to tune"):
        glm.tune(m, net, 10.0, "stimulus", key=jax.random.key(0))
    with pytest.raises(ValueError, match="estimator"):
        glm.tune(m, net, 10.0, key=jax.random.key(0), estimator="magic")


@pytest.mark.requires_x64
def test_check_grads_differentiable_rate():
    """The mean conditional intensity given a recorded history (spikeometric's tune objective) is smooth in the
    parameters: reverse- and forward-mode gradients match finite differences in float64."""
    net = glm.from_dense(glm.mexican_hat(20))
    m = glm.RectifiedLNP(lambda_0=100.0, theta=-5e-4, T=6, tau=10.0, dt=0.1, r=0.0025, b=0.001)
    raster = glm.simulate(m, net, n_steps=40, key=jax.random.key(0), store_as_dtype=jnp.float64).raster

    def rate(theta, tau, r, b):
        mm = m.replace(theta=theta, tau=tau, r=r, b=b)
        return glm.conditional_rate(mm, net, raster)

    args = (jnp.float64(-5e-4), jnp.float64(10.0), jnp.float64(0.0025), jnp.float64(0.001))
    check_grads(rate, args, order=1, modes=("rev",), eps=1e-6)
    # and the rate equals the mean of mu computed by hand
    assert float(rate(*args)) > 0
    # BernoulliGLM: gradients through alpha/beta in the kernel
    b = glm.BernoulliGLM()
    rb = glm.simulate(b, net, n_steps=40, key=jax.random.key(1), store_as_dtype=jnp.float64).raster
    check_grads(lambda a, be: glm.conditional_rate(b.replace(alpha=a, beta=be), net, rb), (jnp.float64(0.2), jnp.float64(0.5)), order=1, modes=("rev",), eps=1e-6)


def test_tune_falls_back_to_exact_sampling_when_a_mean_exceeds_one(monkeypatch):
    """Expected counts above 1 per step (lambda_0 dt (g - theta) > 1): the one-pass sampler is not exact
    there, so tune re-runs with the exact sampler; the result is finite and the rate reflects the counts."""
    import importlib

    tune_mod = importlib.import_module("spikejax.glm.tuning")
    calls = []
    real_fit = tune_mod._fit
    monkeypatch.setattr(tune_mod, "_fit", lambda member, *a: calls.append(member["fixed"][0].fast) or real_fit(member, *a))
    net = glm.from_dense(glm.mexican_hat(10))
    m = glm.RectifiedLNP(lambda_0=100.0, theta=-0.5, T=2, tau=10.0, dt=1.0, r=0.0025, b=0.001)
    res = glm.tune(m, net, 400.0, ["theta"], key=jax.random.key(0), estimator="spikeometric", n_steps=5,
                   n_epochs=2, learning_rate=1e-3)
    assert np.all(np.isfinite(res.history["loss"])) and np.isfinite(float(res.model.theta))
    assert min(res.history["rate_hz"]) > 1000.0  # about 50 expected counts per 1-ms step
    assert calls == [True, False]  # one-pass sampling first, then the exact re-run
