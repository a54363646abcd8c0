"""Bad-input catalogue of the GFR family (issue 23): each mistake a clear error before any compile."""

from __future__ import annotations

import functools
import json
import os

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

from spikejax import gfr
from spikejax.core.errors import ConfigError, DataFormatError, NonFiniteError, ShapeError, SizeError, SpikejaxError

from .harness import Mistake, check, params, with_memory_limit as _limit


# -- small fixtures, built once and lazily --------------------------------------------------------
@functools.lru_cache(maxsize=None)
def neuron() -> gfr.GFR:
    return gfr.default_neuron()


def with_leaf(name: str, value) -> gfr.GFR:
    """The default neuron with one of its arrays (``alpha``, ``beta``, ``decay``, ``g.<leaf>``) replaced."""
    import equinox as eqx

    m = neuron()
    if name.startswith("g."):
        return eqx.tree_at(lambda m: getattr(m.g, name[2:]), m, jnp.asarray(value, m.alpha.dtype))
    return eqx.tree_at(lambda m: getattr(m, name), m, jnp.asarray(value, m.alpha.dtype))


CURRENT = np.full(8, 100.0, np.float32)


@functools.lru_cache(maxsize=None)
def files() -> dict[str, str]:
    """Malformed preprocessed-cell files (written once per session into a temporary folder)."""
    import tempfile

    root = tempfile.mkdtemp(prefix="spikejax-catalogue-gfr-")
    out = {}
    # `sweeps` is a dataset instead of a group
    p = os.path.join(root, "sweeps_dataset.h5")
    with h5py.File(p, "w") as fh:
        fh["cell_id"] = 1
        fh["gamma"] = 0.1
        fh["sweeps"] = np.zeros(3)
    out["sweeps_dataset"] = p
    # a sweep is a dataset instead of a group
    p = os.path.join(root, "sweep_dataset.h5")
    with h5py.File(p, "w") as fh:
        fh["cell_id"] = 1
        fh["gamma"] = 0.1
        fh.create_group("sweeps")["Sweep_3"] = np.zeros(3)
    out["sweep_dataset"] = p
    # cell_id is an array, not a scalar
    p = os.path.join(root, "cell_id_array.h5")
    with h5py.File(p, "w") as fh:
        fh["cell_id"] = np.arange(3)
        fh["gamma"] = 0.1
        fh.create_group("sweeps")
    out["cell_id_array"] = p
    # gamma is negative (NaN is allowed: no sweep had two spikes)
    p = os.path.join(root, "gamma_negative.h5")
    with h5py.File(p, "w") as fh:
        fh["cell_id"] = 1
        fh["gamma"] = -0.1
        fh.create_group("sweeps")
    out["gamma_negative"] = p
    # a sweep holding NaN rates
    p = os.path.join(root, "rate_nan.h5")
    with h5py.File(p, "w") as fh:
        fh["cell_id"] = 1
        fh["gamma"] = 0.1
        s = fh.create_group("sweeps").create_group("Sweep_3")
        s["stimulus_name"] = "Noise 1"
        s["current_20"] = np.zeros(4)
        s["rate_20"] = np.array([0.0, np.nan, 0.0, 0.0])
    out["rate_nan"] = p
    # missing gamma
    p = os.path.join(root, "no_gamma.h5")
    with h5py.File(p, "w") as fh:
        fh["cell_id"] = 1
        fh.create_group("sweeps")
    out["no_gamma"] = p
    # truncated: half of a valid file
    p_ok = os.path.join(root, "ok.h5")
    with h5py.File(p_ok, "w") as fh:
        fh["cell_id"] = 1
        fh["gamma"] = 0.1
        fh["padding"] = np.zeros(4096)
        fh.create_group("sweeps")
    raw = open(p_ok, "rb").read()
    p = os.path.join(root, "truncated.h5")
    with open(p, "wb") as fh:
        fh.write(raw[: len(raw) // 2])
    out["truncated"] = p
    # a FitConfig JSON with GRNN's names and a negative activation step
    p = os.path.join(root, "grnn_config.json")
    with open(p, "w") as fh:
        json.dump({"bin_size": 20, "activation_lr": -0.05}, fh)
    out["grnn_config"] = p
    p = os.path.join(root, "typo_config.json")
    with open(p, "w") as fh:
        json.dump({"learning_rate": [0.01]}, fh)
    out["typo_config"] = p
    return out




def _network(**kw):
    import jax

    return gfr.GFRNetwork(key=jax.random.key(0), **kw)


def _rnn(**kw):
    import jax

    return gfr.VanillaRNN(key=jax.random.key(0), **kw)


GiB = 1 << 30


def _nan_network_forward():
    import equinox as eqx

    net = _network(n_nodes=3)
    bad = eqx.tree_at(lambda n: n.neurons.alpha, net, net.neurons.alpha.at[0, 0].set(jnp.nan))
    return gfr.forward(bad, np.zeros((1, 2, 28), np.float32))

MISTAKES = [
    # -- the model: NaN/inf or out-of-range parameters are refused before simulating --------------
    Mistake("gfr-simulate-nan-alpha", lambda: gfr.simulate(with_leaf("alpha", [np.nan, 0, 0, 0]), CURRENT),
            NonFiniteError, r"alpha.*finite", "nonfinite"),
    Mistake("gfr-simulate-inf-beta", lambda: gfr.simulate(with_leaf("beta", [0, np.inf, 0, 0]), CURRENT),
            NonFiniteError, r"beta.*finite", "nonfinite"),
    Mistake("gfr-simulate-decay-above-one", lambda: gfr.simulate(with_leaf("decay", [1.5, 0.5, 0.3, 0.1]), CURRENT),
            SpikejaxError, r"decay.*\(0, 1\]", "value"),
    Mistake("gfr-simulate-nan-poly-coeff", lambda: gfr.simulate(with_leaf("g.poly_coeff", [np.nan, 1.0]), CURRENT),
            NonFiniteError, r"poly_coeff.*finite", "nonfinite"),
    Mistake("gfr-simulate-zero-max-current", lambda: gfr.simulate(with_leaf("g.max_current", 0.0), CURRENT),
            SpikejaxError, r"max_current.*> 0", "value"),
    Mistake("gfr-simulate-rates-nan-alpha", lambda: gfr.simulate_rates(with_leaf("alpha", [np.nan, 0, 0, 0]), CURRENT),
            NonFiniteError, r"alpha.*finite", "nonfinite"),
    Mistake("gfr-gfr-negative-dt", lambda: gfr.GFR(jnp.ones(4), jnp.zeros(4), jnp.full(4, 0.5), neuron().g, dt=-20),
            ConfigError, r"dt.*> 0", "value"),
    Mistake("gfr-gfr-kappa-nan", lambda: gfr.GFR(jnp.ones(4), jnp.zeros(4), jnp.full(4, 0.5), neuron().g, kappa=float("nan")),
            ConfigError, r"kappa.*finite", "value"),
    Mistake("gfr-gfr-mismatched-traces", lambda: gfr.GFR(jnp.ones(4), jnp.zeros(3), jnp.full(4, 0.5), neuron().g),
            ShapeError, r"beta.*\(4,\)|alpha, beta and decay", "shape"),
    # -- the input current -----------------------------------------------------------------------
    Mistake("gfr-simulate-nan-current", lambda: gfr.simulate(neuron(), np.array([1.0, np.nan, 2.0])),
            NonFiniteError, r"current.*finite", "nonfinite"),
    Mistake("gfr-simulate-string-current", lambda: gfr.simulate(neuron(), "100 pA"),
            TypeError, r"current.*array", "type"),
    Mistake("gfr-simulate-no-bins", lambda: gfr.simulate(neuron(), np.zeros((3, 0))),
            ShapeError, r"current.*time bin", "shape"),
    Mistake("gfr-simulate-layer-wrong-neurons", lambda: gfr.simulate(gfr.default_layer(3), np.zeros((2, 8))),
            ShapeError, r"current.*N = 3", "shape"),
    Mistake("gfr-simulate-model-is-dict", lambda: gfr.simulate(neuron().get_params(), CURRENT),
            TypeError, r"model must be a GFR", "type"),
    # -- sizes refused up front --------------------------------------------------------------------
    Mistake("gfr-kernels-huge-length", lambda: gfr.kernels(neuron(), 10**13),
            SizeError, r"length.*would need", "size"),
    Mistake("gfr-kernels-fractional-length", lambda: gfr.kernels(neuron(), 2.5),
            ConfigError, r"length.*integer", "value"),
    Mistake("gfr-default-layer-huge", lambda: gfr.default_layer(10**12),
            SizeError, r"n_neurons.*would need", "size"),
    Mistake("gfr-default-layer-fractional", lambda: gfr.default_layer(2.5),
            ConfigError, r"n_neurons.*integer", "value"),
    Mistake("gfr-network-huge-n-nodes", lambda: _network(n_nodes=10**7),
            SizeError, r"n_nodes.*would need", "size"),
    Mistake("gfr-network-huge-n-nodes-small-device", _limit(GiB, lambda: _network(n_nodes=20_000)),
            SizeError, r"n_nodes.*would need", "size"),
    Mistake("gfr-rnn-huge-hidden", lambda: _rnn(n_hidden=10**7),
            SizeError, r"n_hidden.*would need", "size"),
    Mistake("gfr-forward-nan-neurons", _nan_network_forward, NonFiniteError, r"model\.neurons\.alpha.*finite", "nonfinite"),
    Mistake("gfr-network-negative-nodes", lambda: _network(n_nodes=-5),
            ConfigError, r"n_nodes.*positive integer", "value"),
    Mistake("gfr-draw-cells-too-many", lambda: gfr.draw_cells(10**9, key=np.zeros(2, np.uint32)),
            ConfigError, r"n_cells.*\[1, \d+\]", "size"),
    Mistake("gfr-stimulus-protocol-huge-rate", lambda: gfr.stimulus_protocol(100.0, 1e13),
            SizeError, r"sampling_rate.*would need", "size"),
    Mistake("gfr-stimulus-protocol-negative-rate", lambda: gfr.stimulus_protocol(100.0, -10_000.0),
            ConfigError, r"sampling_rate.*> 0", "value"),
    # -- the fitting configuration ----------------------------------------------------------------
    Mistake("gfr-fitconfig-negative-eps", lambda: gfr.FitConfig(eps=-1), ConfigError, r"eps.*> 0.*-1", "config"),
    Mistake("gfr-fitconfig-negative-activation-lr", lambda: gfr.FitConfig(activation_learning_rate=-0.05),
            ConfigError, r"activation_learning_rate.*> 0", "config"),
    Mistake("gfr-fitconfig-json-grnn-activation-lr", lambda: gfr.FitConfig.from_json(files()["grnn_config"]),
            ConfigError, r"activation_learning_rate.*> 0", "config"),
    Mistake("gfr-fitconfig-json-typo", lambda: gfr.FitConfig.from_json(files()["typo_config"]),
            ConfigError, r"learning_rate.*did you mean 'learning_rates'", "config"),
    Mistake("gfr-fitconfig-fractional-epochs", lambda: gfr.FitConfig(n_epochs=(2.5, 200, 200)),
            ConfigError, r"n_epochs", "config"),
    Mistake("gfr-fitconfig-string-epochs", lambda: gfr.FitConfig(activation_n_epochs="1000"),
            ConfigError, r"activation_n_epochs.*int", "config"),
    Mistake("gfr-fitconfig-epochs-per-rate", lambda: gfr.FitConfig(learning_rates=(1e-2,), n_epochs=(10, 10)),
            ConfigError, r"n_epochs.*one value per learning rate", "config"),
    Mistake("gfr-fitconfig-bin-size", lambda: gfr.FitConfig(dt=15), ConfigError, r"dt.*one of", "config"),
    Mistake("gfr-fitconfig-unknown-key", lambda: gfr.FitConfig.from_dict({"epochs": 3}),
            ConfigError, r"epochs", "config"),
    Mistake("gfr-fitconfig-zero-patience", lambda: gfr.FitConfig(patience=0), ConfigError, r"patience.*>= 1", "config"),
    # -- fitting entry points ----------------------------------------------------------------------
    Mistake("gfr-fit-alpha-beta-rate-shape", lambda: gfr.fit_alpha_beta(neuron(), np.zeros((2, 8)), np.zeros((2, 7))),
            ShapeError, r"rate.*\(2, 8\)", "shape"),
    Mistake("gfr-fit-alpha-beta-negative-epochs", lambda: gfr.fit_alpha_beta(neuron(), np.zeros((2, 8)), np.zeros((2, 8)), n_epochs=-3),
            ConfigError, r"n_epochs.*>= 0", "value"),
    Mistake("gfr-fit-alpha-beta-negative-lr", lambda: gfr.fit_alpha_beta(neuron(), np.zeros((2, 8)), np.zeros((2, 8)), learning_rate=-0.1),
            ConfigError, r"learning_rate.*> 0", "value"),
    Mistake("gfr-fit-alpha-beta-nan-alpha", lambda: gfr.fit_alpha_beta(with_leaf("alpha", [np.nan, 0, 0, 0]), np.zeros((2, 8)), np.zeros((2, 8))),
            NonFiniteError, r"alpha.*finite", "nonfinite"),
    Mistake("gfr-loss-missing-current", lambda: gfr.loss(neuron(), {"rate": np.zeros((2, 8))}),
            DataFormatError, r"data.*current", "value"),
    Mistake("gfr-loss-rate-shape", lambda: gfr.loss(neuron(), {"current": np.zeros((2, 8)), "rate": np.zeros((2, 9))}),
            ShapeError, r"rate.*T=8", "shape"),
    Mistake("gfr-fit-cells-not-cells", lambda: gfr.fit_cells(["cell.h5"], key=np.zeros(2, np.uint32)),
            TypeError, r"cells.*CellData", "type"),
    # -- files -------------------------------------------------------------------------------------
    Mistake("gfr-load-cell-sweeps-dataset", lambda: gfr.load_cell(files()["sweeps_dataset"]),
            DataFormatError, r"sweeps_dataset\.h5.*sweeps.*group", "file"),
    Mistake("gfr-load-cell-sweep-dataset", lambda: gfr.load_cell(files()["sweep_dataset"]),
            DataFormatError, r"sweep_dataset\.h5.*Sweep_3", "file"),
    Mistake("gfr-load-cell-cell-id-array", lambda: gfr.load_cell(files()["cell_id_array"]),
            DataFormatError, r"cell_id_array\.h5.*cell_id", "file"),
    Mistake("gfr-load-cell-gamma-negative", lambda: gfr.load_cell(files()["gamma_negative"]),
            DataFormatError, r"gamma_negative\.h5.*gamma.*>= 0", "file"),
    Mistake("gfr-load-cell-rate-nan", lambda: gfr.load_cell(files()["rate_nan"]),
            DataFormatError, r"rate_nan\.h5.*rate_20.*finite", "file"),
    Mistake("gfr-load-cell-missing-gamma", lambda: gfr.load_cell(files()["no_gamma"]),
            DataFormatError, r"no_gamma\.h5.*gamma", "file"),
    Mistake("gfr-load-cell-truncated", lambda: gfr.load_cell(files()["truncated"]),
            DataFormatError, r"truncated\.h5", "file"),
    Mistake("gfr-from-params-nan-alpha", lambda: gfr.gfr_from_params({**neuron().get_params(), "a": [[np.nan, 0, 0, 0]]}),
            DataFormatError, r"\['a'\].*finite", "file"),
    Mistake("gfr-from-params-missing-ds", lambda: gfr.gfr_from_params({k: v for k, v in neuron().get_params().items() if k != "ds"}),
            DataFormatError, r"ds", "file"),
]


@pytest.mark.parametrize("mistake", params(MISTAKES))
def test_mistake(mistake):
    check(mistake)
