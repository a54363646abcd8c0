"""l5.sweep_settings under a memory budget: the chunked program fits and gives the unbounded numbers."""

import sys

import jax
import numpy as np

import spikejax.core  # noqa: F401
from spikejax.l5 import L5Params, build_network, debug_config, make_spec, sweep_settings
from spikejax.l5.sweep import _setting_fn

SMALL = dict(N=[4, 6, 3, 3], sim_number=2, Ttau=4, block=5, eval_steps=20, number_steps_before_learning=10,
             tau_learn=5.0, tau_threshold=0.2, nonlinearity_rule="supralinear", variant="faithful", learning_rule="None")


def test_sweep_settings_under_a_budget_equals_the_unbounded_run():
    S = sys.modules["spikejax.core.sweep"]
    cfg = debug_config(**SMALL)
    net = build_network(cfg, key=jax.random.PRNGKey(2))
    amps = jax.random.uniform(jax.random.PRNGKey(3), (8, 4), minval=0.0, maxval=20.0)
    free = sweep_settings(cfg, {"amplitude": amps}, net=net, memory_budget=None)
    one = _setting_fn(cfg, make_spec(cfg, record_weights=False))  # what sweep_settings sweeps (same compilation)
    full = S.plan_chunks(one, {"amplitude": amps}, L5Params.from_config(cfg), net, memory_budget=None)["memory"]["peak"]
    budget = 0.5 * full
    plan = S.plan_chunks(one, {"amplitude": amps}, L5Params.from_config(cfg), net, memory_budget=budget)
    assert 1 <= plan["chunk_size"] < 8 and plan["memory"]["peak"] <= budget < full, plan
    bounded = sweep_settings(cfg, {"amplitude": amps}, net=net, memory_budget=budget)
    for k in free:
        np.testing.assert_allclose(np.asarray(bounded[k]), np.asarray(free[k]), rtol=1e-5, atol=1e-6, err_msg=k)
