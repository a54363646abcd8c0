"""check_grads through a short simulation, vmap/jit consistency, the sweep in one call, the TPE search."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from spikejax.l5 import (
    L5Model, L5Params, build_network, debug_config, make_spec, replace_params, simulate, soft_relative_indices, sweep_settings,
)

SMALL = dict(N=[4, 6, 3, 3], sim_number=2, Ttau=4, block=5, eval_steps=20, number_steps_before_learning=10,
             tau_learn=5.0, tau_threshold=0.2, nonlinearity_rule="softplus", variant="corrected")


@pytest.mark.requires_x64
@pytest.mark.parametrize("rule", ["Slide_BCM"])
def test_check_grads_short_simulation(rule):
    cfg = debug_config(**SMALL, learning_rule=rule)
    net = build_network(cfg, key=jax.random.PRNGKey(0))
    p0 = L5Params.from_config(cfg)
    spec = make_spec(cfg, record_weights=False, remat=True)

    def f(amp, log_tau, gain):
        p = eqx.tree_at(lambda q: (q.amplitude, q.tau, q.w_gain), p0, (amp, jnp.exp(log_tau), gain))
        out = simulate(L5Model(p, net, spec), jit=False)
        os_rel, ds_rel, act = soft_relative_indices(out.rates, cfg.N, 4, 5.0)
        return os_rel + 2 * ds_rel + jnp.mean(act)

    args = (p0.amplitude, jnp.log(p0.tau), p0.w_gain)
    check_grads(jax.jit(f), args, order=1, modes=["rev"], atol=1e-4, rtol=1e-4, eps=1e-5)


def test_vmap_matches_single_runs_and_no_retrace():
    cfg = debug_config(**{**SMALL, "nonlinearity_rule": "supralinear", "variant": "faithful"}, learning_rule="None")
    net = build_network(cfg, key=jax.random.PRNGKey(1))
    p = L5Params.from_config(cfg)
    spec = make_spec(cfg, record_weights=False)
    out = simulate(L5Model(p, net, spec))
    one = jax.tree_util.tree_map(lambda x: x[1:2], net)
    out1 = simulate(L5Model(p, one, spec))
    np.testing.assert_allclose(np.asarray(out.rates[1]), np.asarray(out1.rates[0]), rtol=2e-5, atol=1e-6)
    # changing a parameter value does not recompile (array leaves)
    from spikejax.l5.engine import _simulate_jit

    before = _simulate_jit._cached._cache_size() if hasattr(_simulate_jit, "_cached") else None
    simulate(L5Model(replace_params(p, amplitude=[1.0, 2.0, 3.0, 4.0]), net, spec))
    if before is not None:
        assert _simulate_jit._cached._cache_size() == before


def test_sweep_one_call_matches_individual():
    cfg = debug_config(**{**SMALL, "nonlinearity_rule": "supralinear", "variant": "faithful"}, learning_rule="None")
    net = build_network(cfg, key=jax.random.PRNGKey(2))
    amps = jax.random.uniform(jax.random.PRNGKey(3), (6, 4), minval=0.0, maxval=20.0)
    res = sweep_settings(cfg, {"amplitude": amps}, net=net)
    assert res["os_rel"].shape == (6,) and res["act_mean"].shape == (6, 4)
    from spikejax.l5 import metrics as M

    for i in (0, 5):
        out = simulate(L5Model(replace_params(L5Params.from_config(cfg), amplitude=amps[i]), net, make_spec(cfg)))
        agg = M.aggregate(M.summarize(out.rates, cfg.N, eval_blocks=4))
        np.testing.assert_allclose(float(res["ds_rel"][i]), float(agg["ds_rel"]), rtol=1e-4, atol=1e-6)
    with pytest.raises(Exception, match="cannot sweep"):
        sweep_settings(cfg, {"Ttau": jnp.ones(3)}, net=net)
    with pytest.raises(Exception, match="NaN"):
        sweep_settings(cfg, {"amplitude": amps.at[0, 0].set(jnp.nan)}, net=net)


def test_tpe_search_writes_original_csv(tmp_path):
    pytest.importorskip("optuna")
    from spikejax.l5 import tpe_search

    cfg = debug_config(**{**SMALL, "nonlinearity_rule": "supralinear", "variant": "faithful", "sim_number": 1},
                       learning_rule="Slide_BCM", degree=[0.0, 90.0, 180.0, 270.0])
    best, df, path = tpe_search(cfg, key=jax.random.PRNGKey(0), n_trials=3, out_dir=tmp_path)
    assert path.name.endswith("_Slide_BCM_TuningResults.csv") and path.exists()
    assert list(df.columns) == ["loss", "iteration", "cs", "cc", "pv", "sst", "tau_learn", "tau_threshold"]
    assert len(df) == 3 and np.isfinite(df["loss"]).all()
    assert best["loss"] == pytest.approx(df["loss"].min())
    assert best["amplitude"] == [best["cs"], best["cc"], best["pv"], best["sst"]]
