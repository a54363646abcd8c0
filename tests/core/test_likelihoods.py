import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats

from spikejax.core import bernoulli_nll, gaussian_nll, poisson_nll, poisson_nll_log_rate, zig_mean, zig_nll


@pytest.mark.requires_x64
def test_poisson_conventions_against_scipy():
    rng = np.random.default_rng(0)
    rate = rng.uniform(0.1, 3.0, size=(4, 7))
    y = rng.poisson(rate).astype(float)
    exact = -stats.poisson.logpmf(y, rate)
    np.testing.assert_allclose(poisson_nll(rate, y, convention="exact", eps=0.0, reduction="none"), exact, rtol=1e-12)
    torch_form = rate - y * np.log(rate + 1e-8)
    np.testing.assert_allclose(poisson_nll(rate, y, convention="torch", reduction="none"), torch_form, rtol=1e-12)
    np.testing.assert_allclose(poisson_nll_log_rate(np.log(rate), y, reduction="sum"), exact.sum(), rtol=1e-12)


@pytest.mark.requires_x64
def test_mask_and_nan_targets():
    rate = jnp.array([1.0, 2.0, 3.0])
    y = jnp.array([1.0, jnp.nan, 2.0])
    mask = ~jnp.isnan(y)
    full = poisson_nll(rate, y, mask=mask, reduction="sum")
    ref = -stats.poisson.logpmf([1, 2], [1.0, 3.0]).sum()
    np.testing.assert_allclose(full, ref, rtol=1e-7)
    np.testing.assert_allclose(poisson_nll(rate, y, mask=mask, reduction="mean"), ref / 2, rtol=1e-7)
    g = jax.grad(lambda r: poisson_nll(r, y, mask=mask))(rate)
    assert np.all(np.isfinite(g)) and g[1] == 0.0


@pytest.mark.requires_x64
def test_bernoulli_and_gaussian():
    logits = jnp.array([-30.0, -1.0, 0.0, 2.0, 40.0])
    y = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0])
    p = 1 / (1 + np.exp(-np.asarray(logits)))
    ref = -(stats.bernoulli.logpmf(np.asarray(y), p))
    # exact in log space even where p underflows (logit -30, 40)
    np.testing.assert_allclose(bernoulli_nll(y, logits=logits, reduction="none")[1:4], ref[1:4], rtol=1e-10)
    np.testing.assert_allclose(np.asarray(bernoulli_nll(y, logits=logits, reduction="none"))[[0, 4]], [30.0, 40.0], rtol=1e-10)
    np.testing.assert_allclose(bernoulli_nll(y, probs=p, reduction="none")[1:4], ref[1:4], rtol=1e-8)
    mu, var = np.array([0.5, -1.0]), np.array([2.0, 0.3])
    x = np.array([1.0, 0.2])
    np.testing.assert_allclose(gaussian_nll(x, mu, var=var, reduction="none"), -stats.norm.logpdf(x, mu, np.sqrt(var)))
    np.testing.assert_allclose(gaussian_nll(x, mu, log_var=np.log(var)), -stats.norm.logpdf(x, mu, np.sqrt(var)).sum())


@pytest.mark.requires_x64
def test_zig_against_scipy_gamma():
    rng = np.random.default_rng(1)
    k = rng.uniform(0.5, 4.0, 50)
    theta = rng.uniform(0.1, 2.0, 50)
    q_logit = rng.normal(size=50)
    s_min = 0.1
    y = np.where(rng.random(50) < 0.5, 0.0, s_min + rng.gamma(k, theta))
    q = 1 / (1 + np.exp(-q_logit))
    ref = np.where(y == 0, np.log1p(-q), np.log(q) + stats.gamma.logpdf(np.maximum(y - s_min, 1e-300), k, scale=theta))
    got = zig_nll(y, q_logit=q_logit, shape_k=k, scale_theta=theta, s_min=s_min, reduction="none")
    np.testing.assert_allclose(got, -ref, rtol=1e-10)
    g = jax.grad(lambda kk: zig_nll(y, q_logit=q_logit, shape_k=kk, scale_theta=theta, s_min=s_min))(jnp.asarray(k))
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(zig_mean(q, k, theta, s_min), q * (k * theta + s_min))


@pytest.mark.requires_x64
def test_grads():
    y = jnp.array([0.0, 1.0, 3.0])
    check_grads(lambda r: poisson_nll(r, y), (jnp.array([0.5, 1.5, 2.5]),), order=2)
    check_grads(lambda l: bernoulli_nll(jnp.array([0.0, 1.0, 1.0]), logits=l), (jnp.array([-1.0, 0.3, 2.0]),), order=2)
    check_grads(lambda m: gaussian_nll(y, m, var=2.0), (jnp.array([0.1, 0.2, 0.3]),), order=2)


# ---- bad input: a clear error naming the argument (issue: bad input at the boundary) ----------------

import pytest as _pytest  # noqa: E402

from spikejax.core import ConfigError as _ConfigError, NonFiniteError as _NonFiniteError, ShapeError as _ShapeError  # noqa: E402
from spikejax.core import SpikejaxError as _SpikejaxError  # noqa: E402
from spikejax.core import bernoulli_nll as _bern, gaussian_nll as _gauss, poisson_nll as _pois, zig_nll as _zig  # noqa: E402


@_pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: _pois(jnp.ones(3), jnp.ones(4)), _ShapeError, ("rate (3,)", "counts (4,)")),
        (lambda: _pois(-jnp.ones(3), jnp.ones(3)), _SpikejaxError, ("rate", ">= 0")),
        (lambda: _pois(jnp.ones(3), -jnp.ones(3)), _SpikejaxError, ("counts", ">= 0")),
        (lambda: _pois(jnp.array([1.0, jnp.nan]), jnp.ones(2)), _NonFiniteError, ("rate", "NaN")),
        (lambda: _pois(jnp.ones(3), jnp.ones(3), reduction="avg"), _ConfigError, ("reduction",)),
        (lambda: _pois(jnp.ones(3), jnp.ones(3), convention="scipy"), _ConfigError, ("convention",)),
        (lambda: _bern(jnp.array([0.0, 2.0]), logits=jnp.zeros(2)), _SpikejaxError, ("y", "<= 1.0")),
        (lambda: _bern(jnp.ones(2), probs=jnp.array([0.5, 1.5])), _SpikejaxError, ("probs",)),
        (lambda: _bern(jnp.ones(2), logits=jnp.zeros(3)), _ShapeError, ("y (2,)", "logits (3,)")),
        (lambda: _gauss(jnp.ones(2), jnp.ones(2), var=jnp.zeros(2)), _SpikejaxError, ("var", "> 0")),
        (lambda: _gauss(jnp.ones(2), jnp.ones(3), var=1.0), _ShapeError, ("y (2,)", "mean (3,)")),
        (lambda: _zig(-jnp.ones(2), q_logit=0.0, shape_k=1.0, scale_theta=1.0, s_min=0.1), _SpikejaxError, ("y",)),
        (lambda: _zig(jnp.ones(2), q_logit=0.0, shape_k=-1.0, scale_theta=1.0, s_min=0.1), _SpikejaxError, ("shape_k",)),
    ],
)
def test_bad_input_is_named(call, exc, words):
    with _pytest.raises(exc) as info:
        call()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_masked_nan_targets_still_allowed_and_traced_inputs_unchecked():
    y = jnp.array([1.0, jnp.nan])
    m = ~jnp.isnan(y)
    assert jnp.isfinite(_pois(jnp.ones(2), y, mask=m))
    # under jit the values are unknown: no host check, the function still compiles
    assert jnp.isfinite(jax.jit(lambda r: _pois(r, jnp.ones(2)))(jnp.ones(2)))
