"""Bad-input catalogue: spikejax.l5 (configs, network construction, sweeps, simulation, tuning).

Every case is a mistake a user makes; the error comes before anything is compiled (or, for the
cases that need a sampled network, from one tiny network built once) and names the argument.
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spikejax import l5
from spikejax.core import ConfigError, DataFormatError, NonFiniteError, ShapeError, SizeError
from spikejax.l5 import L5Config, L5Model, L5Network, L5Params, build_network, make_spec, sweep_settings

from .harness import Mistake, check, params

KEY = jax.random.PRNGKey(0)
SMALL = dict(N=[4, 6, 3, 3], sim_number=2, Ttau=4, block=5, eval_steps=20, number_steps_before_learning=10,
             tau_learn=5.0, tau_threshold=0.2, nonlinearity_rule="softplus", variant="corrected")


@functools.lru_cache(maxsize=None)
def _cfg() -> L5Config:
    return l5.debug_config(**SMALL)


@functools.lru_cache(maxsize=None)
def _net():
    """A network of the right shapes for _cfg() (zeros: nothing is sampled or compiled)."""
    S, n = 2, sum(SMALL["N"])
    z = jnp.zeros
    return L5Network(W=z((S, n, n)), struct=z((S, n, n)), lambda_max=jnp.ones(S), w_type=z((S, 4, 4)),
                     pos_a=z((S, n)), pos_b=z((S, n)), r0=z((S, n)))


def _model(**params_changes):
    cfg = _cfg()
    p = L5Params.from_config(cfg)
    for k, v in params_changes.items():
        p = eqx_replace(p, k, v)
    return L5Model(params=p, net=_net(), spec=make_spec(cfg))


def eqx_replace(p, name, value):
    import equinox as eqx

    return eqx.tree_at(lambda q: getattr(q, name), p, jnp.asarray(value))


def _file(name: str, text: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix="spikejax-cat-l5-"))
    (d / name).write_text(text)
    return d / name


def _sweep(settings, **kw):
    return sweep_settings(_cfg(), settings, key=KEY, **kw)


MISTAKES = [
    # ---- config values
    Mistake("l5-config-N-three-types", lambda: L5Config(N=(10, 10, 10)), ShapeError, r"L5Config\.N.*\(4,\).*\(3,\)", "shape"),
    Mistake("l5-config-N-zero", lambda: L5Config(N=(45, 0, 46, 34)), ConfigError, r"L5Config\.N.*>= 1.*0", "config"),
    Mistake("l5-config-N-float", lambda: L5Config(N=(45.5, 275, 46, 34)), ConfigError, r"L5Config\.N\[0\].*integer", "type"),
    Mistake("l5-config-dt-negative", lambda: L5Config(dt=-0.01), ConfigError, r"L5Config\.dt.*> 0", "config"),
    Mistake("l5-config-dt-above-tau", lambda: L5Config(dt=0.2), ConfigError, r"L5Config\.dt.*tau", "config"),
    Mistake("l5-config-prob-above-one", lambda: L5Config(prob=((1.5,) * 4,) * 4), ConfigError, r"L5Config\.prob.*\[0, 1\]", "config"),
    Mistake("l5-config-w_target-shape", lambda: L5Config(w_target=((0.1,) * 3,) * 4), ShapeError,
            r"L5Config\.w_target.*\(4, 4\).*\(4, 3\)", "shape"),
    Mistake("l5-config-phi-order", lambda: L5Config(phi_lo=10.0, phi_hi=1.0), ConfigError, r"phi_lo.*phi_hi.*10.*1", "config"),
    Mistake("l5-config-rule-lowercase", lambda: L5Config(learning_rule="bcm"), ConfigError, r"learning_rule.*'BCM'.*'bcm'", "config"),
    Mistake("l5-config-sim_number-float", lambda: L5Config(sim_number=2.5), ConfigError, r"L5Config\.sim_number.*integer", "type"),
    Mistake("l5-config-Ttau-string", lambda: L5Config(Ttau="250"), ConfigError, r"L5Config\.Ttau.*number.*'250'", "type"),
    Mistake("l5-config-amplitude-three", lambda: L5Config(amplitude=(6.0, 5.0, 10.0)), ShapeError,
            r"L5Config\.amplitude.*\(4,\)", "shape"),
    Mistake("l5-config-amplitude-nan", lambda: L5Config(amplitude=(6.0, float("nan"), 10.0, 5.0)), ConfigError,
            r"L5Config\.amplitude.*finite", "nonfinite"),
    Mistake("l5-config-eval_steps-not-multiple", lambda: L5Config(eval_steps=510), ConfigError,
            r"L5Config\.eval_steps.*block=25", "config"),
    Mistake("l5-config-w_noise-negative", lambda: L5Config(w_noise=-1.0), ConfigError, r"L5Config\.w_noise.*>= 0", "config"),
    Mistake("l5-config-steady-not-binary", lambda: L5Config(steady_input=(0, 2, 0, 0)), ConfigError,
            r"L5Config\.steady_input.*0 or 1", "config"),
    Mistake("l5-config-degree-empty", lambda: L5Config(degree=()), ConfigError, r"L5Config\.degree.*non-empty", "config"),
    Mistake("l5-config-tau-two", lambda: L5Config(tau=(0.1, 0.1)), ConfigError, r"L5Config\.tau.*4", "shape"),
    Mistake("l5-config-unknown-key", lambda: L5Config.from_dict({"learnig_rule": "BCM"}), ConfigError,
            r"learnig_rule.*did you mean 'learning_rule'", "config"),
    Mistake("l5-config-replace-unknown", lambda: L5Config().replace(tau_learning=3.0), ConfigError,
            r"tau_learning.*did you mean 'tau_learn'", "config"),
    Mistake("l5-config-yaml-float-without-dot", lambda: l5.load_config(_file("c.yaml", "tau_learn: 2e3\n")), ConfigError,
            r"L5Config\.tau_learn.*string '2e3'.*2\.0e3", "type"),
    Mistake("l5-config-yaml-unknown-key", lambda: l5.load_config(_file("c.yaml", "learnig_rule: BCM\n")), ConfigError,
            r"learnig_rule.*learning_rule", "config"),
    Mistake("l5-config-json-malformed", lambda: l5.load_config(_file("bad.json", '{"dt": 0.01,')), DataFormatError,
            r"bad\.json.*not valid JSON", "file"),
    Mistake("l5-config-json-list", lambda: l5.load_config(_file("list.json", "[1, 2]")), ConfigError,
            r"L5 config.*mapping.*list", "file"),
    Mistake("l5-load_config-wrong-suffix", lambda: l5.load_config(_file("c.txt", "dt = 0.01")), ConfigError,
            r"config file.*\.py, \.json.*'c\.txt'", "file"),
    Mistake("l5-config-overrides-typo", lambda: l5.load_config(None, learnig_rule="BCM"), ConfigError,
            r"learnig_rule.*learning_rule", "config"),
    # ---- network construction: sizes before allocation
    Mistake("build_network-huge-N", lambda: build_network(L5Config(N=(10**5,) * 4), key=KEY), SizeError,
            r"N.*would need about .*TiB", "size"),
    Mistake("build_network-sim_number-zero", lambda: build_network(_cfg(), key=KEY, sim_number=0), ConfigError,
            r"sim_number.*>= 1", "config"),
    Mistake("build_network-sim_number-float", lambda: build_network(_cfg(), key=KEY, sim_number=2.5), ConfigError,
            r"sim_number.*int.*2\.5", "type"),
    Mistake("build_network-key-missing", lambda: build_network(_cfg(), key=None), ConfigError, r"key is required", "config"),
    Mistake("build_network-config-dict", lambda: build_network({"N": [4, 6, 3, 3]}, key=KEY), TypeError,
            r"config.*L5Config.*dict", "type"),
    Mistake("build_model-huge-N", lambda: l5.build_model(L5Config(N=(10**5,) * 4), key=KEY), SizeError,
            r"N.*would need about", "size"),
    # ---- sweeps
    Mistake("sweep-phi-order", lambda: _sweep({"phi_lo": jnp.asarray([0.0, 600.0])}), ConfigError,
            r"settings\['phi_lo'\].*phi_hi.*600", "config"),
    Mistake("sweep-nan-setting", lambda: _sweep({"amplitude": jnp.full((2, 4), jnp.nan)}), NonFiniteError,
            r"settings\['amplitude'\].*finite.*NaN", "nonfinite"),
    Mistake("sweep-empty-settings-array", lambda: _sweep({"amplitude": jnp.zeros((0, 4))}), ConfigError,
            r"settings\['amplitude'\].*no settings|settings.*empty", "shape"),
    Mistake("sweep-empty-dict", lambda: _sweep({}), ConfigError, r"settings must be a non-empty dict", "config"),
    Mistake("sweep-unknown-name", lambda: _sweep({"amplitudes": jnp.ones((2, 4))}), ConfigError,
            r"amplitudes.*did you mean 'amplitude'", "config"),
    Mistake("sweep-wrong-shape", lambda: _sweep({"amplitude": jnp.ones((2, 3))}), ShapeError,
            r"settings\['amplitude'\].*\(n,\) \+ \(4,\).*\(2, 3\)", "shape"),
    Mistake("sweep-mismatched-n", lambda: _sweep({"amplitude": jnp.ones((2, 4)), "tau_learn": jnp.ones(3)}), ShapeError,
            r"settings\['amplitude'\] has 2.*settings\['tau_learn'\] has 3", "shape"),
    Mistake("sweep-tau-below-dt", lambda: _sweep({"tau": jnp.full((2, 4), 0.001)}), ConfigError,
            r"settings\['tau'\].*> dt", "config"),
    Mistake("sweep-tau_learn-negative", lambda: _sweep({"tau_learn": jnp.asarray([5.0, -1.0])}), ConfigError,
            r"settings\['tau_learn'\].*> 0", "config"),
    Mistake("sweep-string-values", lambda: _sweep({"amplitude": [["a"] * 4]}), TypeError,
            r"settings\['amplitude'\].*numbers", "type"),
    Mistake("sweep-huge-chunk", lambda: sweep_settings(L5Config(), {"tau_learn": np.full(2 * 10**5, 2000.0, np.float32)},
                                                       key=KEY, chunk_size=2 * 10**5),
            SizeError, r"settings.*chunk_size", "size"),
    Mistake("sweep-chunk_size-zero", lambda: _sweep({"tau_learn": jnp.ones(2)}, chunk_size=0), ConfigError,
            r"chunk_size.*>= 1", "config"),
    Mistake("random_settings-n-zero", lambda: l5.random_settings(0, key=KEY), ConfigError, r"\bn\b.*>= 1", "config"),
    Mistake("random_settings-low-above-high", lambda: l5.random_settings(3, key=KEY, low=5.0, high=1.0), ConfigError,
            r"low.*high", "config"),
    # ---- simulation and parameters
    Mistake("simulate-not-a-model", lambda: l5.simulate(_cfg()), TypeError, r"model must be an L5Model", "type"),
    Mistake("simulate-params-amplitude-shape", lambda: l5.simulate(_model(amplitude=jnp.ones(3))), ShapeError,
            r"params\.amplitude.*\(4,\).*\(3,\)", "shape"),
    Mistake("simulate-params-tau-nan", lambda: l5.simulate(_model(tau=jnp.asarray([0.1, jnp.nan, 0.1, 0.1]))),
            NonFiniteError, r"params\.tau.*finite", "nonfinite"),
    Mistake("simulate-net-wrong-N", lambda: l5.simulate(L5Model(L5Params.from_config(_cfg()), _net(),
                                                               make_spec(_cfg().replace(N=(5, 6, 3, 3))))),
            ShapeError, r"network W.*\(S, 17, 17\)", "shape"),
    Mistake("tune-n_epochs-float", lambda: l5.tune(_cfg(), key=KEY, net=_net(), n_epochs=2.5), ConfigError,
            r"n_epochs.*int.*2\.5", "config"),
    Mistake("tune-train-unknown", lambda: l5.tune(_cfg(), key=KEY, net=_net(), n_epochs=1, train=("amplitudes",)),
            ConfigError, r"train.*unknown.*amplitudes.*did you mean .amplitude.", "config"),
    Mistake("tune-learning_rate-negative", lambda: l5.tune(_cfg(), key=KEY, net=_net(), n_epochs=1, learning_rate=-0.05),
            ConfigError, r"learning_rate.*> 0", "config"),
]


@pytest.mark.parametrize("mistake", params(MISTAKES))
def test_mistake(mistake):
    check(mistake)
