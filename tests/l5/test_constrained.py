"""Constrained tuning (issue 13): gradients of the constraint terms, and a tiny tuning run that
lifts one type's activity above its lower bound with the learning rule on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from spikejax.core.errors import ConfigError
from spikejax.l5 import L5Model, L5Params, build_network, debug_config, make_spec, simulate
from spikejax.l5.constrained import Constraints, constraint_terms, tune_constrained

N = [4, 6, 3, 3]


@pytest.mark.requires_x64
def test_constraint_terms_gradients():
    rng = np.random.default_rng(0)
    r = rng.uniform(0.01, 0.3, size=(2, 4, 5, sum(N)))
    r[..., :3] = rng.uniform(0.01, 0.06, size=(2, 4, 5, 3))  # 3 of the 4 CS cells (nearly) silent
    rates = jnp.asarray(r)
    cons = Constraints(act_min=(0.2, 0.15, 0.1, 0.3), act_max=(1.0, 1.0, 0.12, 1.0), silent_rate=0.08)

    def f(r):
        ct = constraint_terms(r, N, 3, cons)
        return ct["penalty"] + jnp.sum(ct["silent_soft"] * jnp.arange(1.0, 5.0)) + jnp.sum(ct["act"] ** 2)

    ct = constraint_terms(rates, N, 3, cons)
    assert float(ct["pen_act_lo"]) > 0 and float(ct["pen_act_hi"]) > 0 and float(ct["pen_silent"]) > 0
    # the exact silent fraction counts cells below silent_rate in every direction
    rbar = np.asarray(rates)[..., -3:, :].mean(-2)
    want = (rbar.max(1) < 0.08)[:, :4].mean(1)
    np.testing.assert_allclose(np.asarray(ct["silent"][:, 0]), want)
    check_grads(jax.jit(f), (rates,), order=1, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-6)
    with pytest.raises(ConfigError, match="act_min"):
        Constraints(act_min=(0.1, 0.1)).validate()
    with pytest.raises(ConfigError, match="silent_max"):
        Constraints(silent_max=0.0).validate()


def test_tuning_lifts_activity_above_bound():
    cfg = debug_config(N=N, sim_number=1, Ttau=6, block=5, eval_steps=20, number_steps_before_learning=20,
                       tau_learn=50.0, tau_threshold=0.2)  # Slide_BCM on from step 20
    net = build_network(cfg, key=jax.random.PRNGKey(0))
    spec = make_spec(cfg)
    act0 = constraint_terms(simulate(L5Model(L5Params.from_config(cfg), net, spec)).rates, N, 4, Constraints())["act"]
    bound = 1.4 * float(act0[0, 1])  # CC must become 40 % more active than it is
    cons = Constraints(act_min=(0.0, bound, 0.0, 0.0), act_margin=0.2)
    # margin -1: the selectivity terms vanish, the constraint alone drives the amplitudes
    res = tune_constrained(cfg, key=jax.random.PRNGKey(0), net=net, constraints=cons, n_epochs=4, learning_rate=0.1,
                           margin=-1.0, train=("amplitude",))
    assert res.n_simulations == 4 and res.history["penalty"][0] > 0
    act = constraint_terms(simulate(L5Model(res.params, net, spec)).rates, N, 4, cons)["act"]
    assert float(act[0, 1]) >= bound


def test_tpe_same_objective_counts_simulations():
    pytest.importorskip("optuna")
    from spikejax.l5.constrained import tpe_constrained

    cfg = debug_config(N=N, sim_number=1, Ttau=4, block=5, eval_steps=20, number_steps_before_learning=20,
                       tau_learn=50.0, tau_threshold=0.2)
    res = tpe_constrained(cfg, key=jax.random.PRNGKey(0), n_trials=3, time_budget=None, train=("amplitude",))
    assert res.n_simulations == 3 and len(res.history["loss"]) == 3
    assert res.best_loss == pytest.approx(min(res.history["loss"]))
    # the first trial is the initial point (the gradient run starts there too)
    np.testing.assert_allclose(np.asarray(res.history[[f"act[{k}]" for k in range(4)]].iloc[0]).shape, (4,))
