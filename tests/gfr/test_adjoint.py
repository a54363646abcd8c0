"""The hand-written adjoint of GFR simulation (stage-2 gradients) against autodiff of ``simulate``."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from spikejax import ShapeError
from spikejax.gfr import GFRLayer, load_dataset, model_from_dataset, simulate_rates
from spikejax.gfr.adjoint import simulate_adjoint
from spikejax.gfr.stage2 import stage2_loss


@pytest.fixture
def model():  # per test: built after the requires_x64 fixture switched the dtype
    m = model_from_dataset(load_dataset(), 566517779)
    # feedback on, so that the kappa beta f_{t-1} path of the adjoint is exercised
    return eqx.tree_at(lambda m: m.beta, m, m.beta - 1e-4)


def _fields(m, alpha, beta, coeff, b):
    return eqx.tree_at(lambda m: (m.alpha, m.beta, m.g.poly_coeff, m.g.b), m, (alpha, beta, coeff, b))


def _args(m):
    return (m.alpha, m.beta, m.g.poly_coeff, m.g.b)


@pytest.mark.requires_x64
def test_values_and_gradients_equal_autodiff(model):
    cur = jnp.asarray(np.random.default_rng(0).uniform(100, 300, (3, 40)))
    w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 40)))

    def loss(sim):
        return lambda alpha, beta, coeff, b, c: jnp.sum(w * sim(_fields(model, alpha, beta, coeff, b), c))

    np.testing.assert_allclose(simulate_adjoint(model, cur), simulate_rates(model, cur), rtol=1e-13, atol=1e-16)
    args = (*_args(model), cur)
    g_ref = jax.grad(loss(simulate_rates), argnums=range(5))(*args)
    g_adj = jax.grad(loss(simulate_adjoint), argnums=range(5))(*args)
    for name, a, r in zip(("alpha", "beta", "poly_coeff", "b", "current"), g_adj, g_ref):
        np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-12 * float(jnp.max(jnp.abs(r))), err_msg=name)
    assert float(jnp.max(jnp.abs(g_ref[1]))) > 0  # the feedback gradient is not trivially zero


@pytest.mark.requires_x64
def test_check_grads_reverse_mode(model):
    cur = jnp.asarray(np.random.default_rng(2).uniform(120, 260, 12))
    f = lambda alpha, beta, coeff, b, c: simulate_adjoint(_fields(model, alpha, beta, coeff, b), c)  # noqa: E731
    out = f(*_args(model), cur)
    assert np.all(np.asarray(out) > 0)  # off the ReLU kink
    check_grads(f, (*_args(model), cur), order=1, modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.requires_x64
def test_layer_and_vmapped_members_equal_autodiff(model):
    layer = GFRLayer.from_neurons([model, eqx.tree_at(lambda m: m.alpha, model, 1.1 * model.alpha)])
    cur = jnp.asarray(np.random.default_rng(3).uniform(100, 300, (2, 2, 30)))  # (sweeps, N, T)
    loss = lambda sim: lambda lay: jnp.sum(sim(lay, cur) ** 2)  # noqa: E731
    spec = lambda lay: (lay.alpha, lay.beta, lay.g.poly_coeff, lay.g.b)  # noqa: E731
    g_ref = spec(eqx.filter_grad(loss(simulate_rates))(layer))
    g_adj = spec(eqx.filter_grad(loss(simulate_adjoint))(layer))
    for a, r in zip(g_adj, g_ref):
        np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-14)
    # members vmapped as in stage 2 (fit_population), with the stage-2 loss
    cur1 = cur[:, 0]
    batch = {"current": cur1, "rate": simulate_rates(model, cur1) * 1.2, "n_sweeps": jnp.asarray(2),
             "n_bins": jnp.asarray(25), "dt": jnp.asarray(20.0)}
    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, 0.9 * a]) if eqx.is_array(a) else a, model)

    def per_member(checkpoint):
        return jax.vmap(jax.grad(lambda m: stage2_loss(m, batch, checkpoint=checkpoint)[0]))(stacked)

    adj, ref = per_member(False), per_member(5)  # checkpointed autodiff vs the adjoint
    for a, r in zip((adj.alpha, adj.beta), (ref.alpha, ref.beta)):
        np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-14)


def test_float32_and_errors(model):
    m32 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32) if eqx.is_array(a) else a, model)
    cur = jnp.linspace(100.0, 250.0, 50, dtype=jnp.float32)
    np.testing.assert_allclose(simulate_adjoint(m32, cur), simulate_rates(m32, cur), rtol=1e-6, atol=1e-9)
    with pytest.raises(ShapeError, match="current"):
        simulate_adjoint(m32, jnp.zeros((3, 0)))
    with pytest.raises(ValueError, match="current"):
        simulate_adjoint(m32, jnp.asarray([1.0, np.nan]))
