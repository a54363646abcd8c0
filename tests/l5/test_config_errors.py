"""Configs: loading from Python/JSON/YAML, original keys, and clear errors (acceptance 5)."""

import dataclasses
import json

import numpy as np
import pytest

from spikejax.core.errors import ConfigError, ShapeError, SpikejaxError
from spikejax.l5 import L5Config, L5Model, L5Params, build_network, debug_config, load_config, make_spec, simulate
from spikejax.l5.config import phase_list_of


def test_debug_defaults_match_bundled_params():
    from spikejax.l5 import load_params

    d = load_params()["debug_config_HEAD"]
    cfg = debug_config()
    assert cfg.n_steps == d["steps"] == 2500
    assert cfg.window_length == 642
    assert cfg.dt == d["delta_t"]  # the original's name of dt
    for k in ("sim_number", "tau", "Ttau", "tau_learn", "tau_threshold", "learning_rule", "spatialF",
              "temporalF", "spatialPhase", "number_steps_before_learning", "integrator", "nonlinearity_rule"):
        assert getattr(cfg, k) == d[k], k
    assert list(cfg.amplitude) == d["amplitude_CS_CC_PV_SST"]
    assert phase_list_of("CC_CS_Alter") == ("CS",) * 10 + ("CC",) * 10 + ("Rest",) * 10


def test_load_python_json_yaml(tmp_path):
    py = tmp_path / "cfg.py"
    py.write_text("import numpy as np\nsim_number = 2\namplitude = np.array([1., 2., 3., 4.])\n"
                  "learning_rule = 'BCM'\nname_sim = 'x'\nw_compare = np.zeros((4, 4))\nexcit_only = False\n")
    c = load_config(py)
    assert c.sim_number == 2 and c.amplitude == (1.0, 2.0, 3.0, 4.0) and c.learning_rule == "BCM"
    js = tmp_path / "cfg.json"
    js.write_text(json.dumps({"tau": 0.2, "Ttau": 125, "learning_rule": "Oja"}))
    c = load_config(js)
    assert c.tau == 0.2 and c.n_steps == 2500 and c.learning_rule == "Oja"
    ym = tmp_path / "cfg.yaml"
    ym.write_text("learning_rule: Cov\nneurons: excit_only\nphase_key: All_Alter\n")
    c = load_config(ym, sim_number=3)
    assert c.learning_rule == "Cov" and c.neurons == "excit_only" and c.sim_number == 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"learning_rul": "BCM"}))
    with pytest.raises(ConfigError, match="unknown L5 config key"):
        load_config(bad)
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(ConfigError, match="must end in"):
        load_config(tmp_path / "c.txt")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "changes, err, match",
    [
        (dict(tau=-0.1), ConfigError, "tau must be > 0"),
        (dict(dt=0.1), ConfigError, "dt must be smaller than tau"),
        (dict(dt=0.2), ConfigError, "dt must be smaller than tau"),
        (dict(learning_rule="Hebb"), ConfigError, "learning_rule must be one of"),
        (dict(learning_rule="none"), ConfigError, "lowercase"),
        (dict(integrator="rk45"), ConfigError, "integrator must be one of"),
        (dict(w_target=np.zeros((3, 4)).tolist()), ShapeError, r"w_target must have shape \(4, 4\)"),
        (dict(prob=[[0.1] * 4] * 5), ShapeError, r"prob must have shape \(4, 4\)"),
        (dict(N=[45, 275, 46]), ShapeError, r"N must have shape \(4,\)"),
        (dict(amplitude=[6.0, float("nan"), 10.0, 5.0]), ConfigError, "amplitude must be finite"),
        (dict(amplitude=[6.0, 5.0]), ShapeError, "amplitude must have shape"),
        (dict(steady_input=[0, 2, 0, 0]), ConfigError, "steady_input must hold 0 or 1"),
        (dict(nonlinearity_rule="sigmoid"), ConfigError, "crashes in the original"),
        (dict(Ttau=251), ConfigError, "multiple of block"),
        (dict(prob=(np.ones((4, 4)) * 1.5).tolist()), ConfigError, "probabilities"),
        (dict(neurons="PV"), ConfigError, "neurons must be one of"),
        (dict(sim_number=0), ConfigError, "sim_number must be >= 1"),
    ],
)
def test_bad_configs_raise_clear_errors(changes, err, match):
    with pytest.raises(err, match=match):
        debug_config(**changes)
    assert issubclass(err, SpikejaxError)


def test_corrected_sigmoid_is_allowed():
    assert debug_config(variant="corrected", nonlinearity_rule="tanh").nonlinearity_rule == "tanh"


def test_bad_params_and_network_shapes_raise():
    import jax

    cfg = debug_config(N=[4, 6, 3, 3], sim_number=1, Ttau=5, block=5, eval_steps=5, learning_rule="None")
    net = build_network(cfg, key=jax.random.PRNGKey(0))
    spec = make_spec(cfg)
    p = L5Params.from_config(cfg)
    import equinox as eqx

    with pytest.raises(SpikejaxError, match="params.amplitude must be finite"):
        simulate(L5Model(eqx.tree_at(lambda q: q.amplitude, p, p.amplitude.at[0].set(np.nan)), net, spec))
    with pytest.raises(ConfigError, match="params.tau must be > 0"):
        simulate(L5Model(eqx.tree_at(lambda q: q.tau, p, -p.tau), net, spec))
    with pytest.raises(ConfigError, match="dt must be < tau"):
        simulate(L5Model(p, net, dataclasses.replace(spec, dt=spec.dt * 20)))
    with pytest.raises(ShapeError, match="network W must have shape"):
        simulate(L5Model(p, eqx.tree_at(lambda n: n.W, net, net.W[:, :5, :5]), spec))
    with pytest.raises(TypeError, match="spec must be a Spec"):
        simulate(L5Model(p, net, "spec"))
    with pytest.raises(ConfigError, match="window"):
        make_spec(cfg.replace(learning_rule="BCM", tau_threshold=0.01))


def test_config_roundtrip_dict():
    c = debug_config(sim_number=2, learning_rule="Cov")
    assert L5Config.from_dict(c.to_dict()) == c
