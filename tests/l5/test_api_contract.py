"""The l5 side of the family contract beyond tests/test_contract.py: frozen configs, the loss is what
tune minimises, constrained results save and load."""

import dataclasses

import jax
import numpy as np
import pytest

from spikejax.core import Result, StopReason
from spikejax.core.errors import ConfigError
from spikejax.l5 import (
    Constraints, L5ConstrainedResult, L5Config, L5Target, L5Trajectory, build_model, debug_config, loss, simulate,
    tune, tune_constrained,
)

TINY = dict(N=[4, 6, 3, 3], sim_number=1, Ttau=4, block=5, eval_steps=20, number_steps_before_learning=10,
            tau_learn=5.0, tau_threshold=0.2)


def test_config_frozen_and_unknown_keys_named():
    cfg = debug_config(**TINY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sim_number = 3
    with pytest.raises(ConfigError, match="learnig_rule.*did you mean 'learning_rule'"):
        L5Config.from_dict({"learnig_rule": "BCM"})
    with pytest.raises(ConfigError, match="did you mean 'learning_rule'"):
        cfg.replace(learnig_rule="BCM")
    assert L5Config.from_dict({"delta_t": 0.02}).dt == 0.02  # the original's spelling
    assert cfg.replace(N=[4, 6, 3, 4]).N == (4, 6, 3, 4)


def test_trajectory_table_and_key_required():
    cfg = debug_config(**TINY)
    with pytest.raises(ConfigError, match="key is required"):
        build_model(cfg, key=None)
    traj = simulate(build_model(cfg, key=jax.random.PRNGKey(0)))
    assert isinstance(traj, L5Trajectory) and traj.dt == cfg.dt
    df = traj.to_pandas()
    assert list(df.columns) == ["time_ms", "network", "direction_deg", "neuron", "type", "rate_au"]
    assert len(df) == traj.rates.size and set(df["type"]) == {"CS", "CC", "PV", "SST"}
    np.testing.assert_allclose(df["time_ms"].max(), cfg.n_steps * cfg.dt)


def test_loss_is_what_tune_minimises():
    cfg = debug_config(**TINY, learning_rule="None", threshold_filter="ema")
    key = jax.random.PRNGKey(3)
    model = build_model(cfg, key=key, record_weights=False)
    target = L5Target(margin=0.4, soft_beta=20.0, max_act=cfg.Max_act)
    res = tune(cfg, key=key, n_epochs=1, margin=0.4, checkpoint=False)
    # at the start the L2 term is 0: the first logged loss is loss(model, target)
    np.testing.assert_allclose(res.history["loss"].iloc[0], float(loss(model, target)), rtol=1e-5)
    assert isinstance(res, Result) and res.stop_reason == StopReason.COMPLETED


def test_constrained_result_save_load(tmp_path):
    cfg = debug_config(**TINY)
    res = tune_constrained(cfg, key=jax.random.PRNGKey(0), constraints=Constraints(), n_epochs=1, checkpoint=False)
    assert isinstance(res, L5ConstrainedResult) and res.n_simulations == 1 and res.history.columns[0] == "iteration"
    back = L5ConstrainedResult.load(res.save(tmp_path / "c.h5"))
    np.testing.assert_array_equal(np.asarray(back.model.amplitude), np.asarray(res.model.amplitude))
    assert back.config == cfg and back.method == "gradient" and back.best_loss == res.best_loss


def test_check_tuned_on_given_networks_equals_sampling_them_and_refuses_a_mismatch():
    from spikejax.core.errors import ShapeError
    from spikejax.l5 import L5Params, build_network, check_tuned

    cfg = debug_config(**TINY, learning_rule="None", threshold_filter="ema")
    key = jax.random.PRNGKey(7)
    params = L5Params.from_config(cfg)
    net = build_network(cfg.replace(sim_number=2), key=key)
    given = check_tuned(cfg, params, key=key, net=net)
    sampled = check_tuned(cfg, params, key=key, sim_number=2)
    assert given["os_rel_sims"] == sampled["os_rel_sims"] and given["ds_rel"] == sampled["ds_rel"]
    with pytest.raises(ShapeError, match="net holds 2 networks but sim_number is 3"):
        check_tuned(cfg, params, key=key, net=net, sim_number=3)
    with pytest.raises(TypeError, match="net must be an L5Network"):
        check_tuned(cfg, params, key=key, net=np.zeros((2, 16, 16)))
