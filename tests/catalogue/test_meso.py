"""Bad-input catalogue of the meso family (issue 23): each mistake a clear error before any compile."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from spikejax import meso
from spikejax.core.errors import ConfigError, DataFormatError, NonFiniteError, ShapeError, SizeError, SpikejaxError

from .harness import Mistake, check, params, with_memory_limit as _limit

KEY = np.zeros(2, np.uint32)  # a raw uint32 key: no device work to build it
GiB = 1 << 30


@functools.lru_cache(maxsize=None)
def gt() -> meso.MesoParams:
    return meso.ground_truth()


def with_leaf(name: str, value) -> meso.MesoParams:
    import equinox as eqx
    import jax.numpy as jnp

    m = gt()
    return eqx.tree_at(lambda m: getattr(m, name), m, jnp.asarray(value, m.amem.dtype))


@functools.lru_cache(maxsize=None)
def data() -> meso.MesoData:
    """A tiny trial: 20 bins, 3 populations, 2 observed neurons each (no spikes)."""
    return meso.MesoData(np.zeros((20, 3, 2)), np.zeros((5, 3, 2)), N=(400, 400, 200))


@functools.lru_cache(maxsize=None)
def files() -> dict[str, str]:
    import tempfile

    root = tempfile.mkdtemp(prefix="spikejax-catalogue-meso-")
    out = {}
    src = meso.bundled_path("T11s")
    raw = open(src, "rb").read()
    p = os.path.join(root, "truncated.npz")
    with open(p, "wb") as fh:
        fh.write(raw[: len(raw) // 2])
    out["truncated"] = p
    p = os.path.join(root, "wrong_keys.npz")
    np.savez(p, activity=np.zeros((10, 3)))
    out["wrong_keys"] = p
    p = os.path.join(root, "not_npz.npz")
    with open(p, "w") as fh:
        fh.write("time,rate\n0,1\n")
    out["not_npz"] = p
    return out




MISTAKES = [
    # -- simulate ----------------------------------------------------------------------------------
    Mistake("meso-simulate-nan-theta", lambda: meso.simulate(with_leaf("theta", [np.nan, 3.7, 3.7]), n_steps=10, key=KEY),
            NonFiniteError, r"theta.*finite", "nonfinite"),
    Mistake("meso-simulate-inf-J", lambda: meso.simulate(with_leaf("J", [np.inf, 10.0, 20.0]), n_steps=10, key=KEY),
            NonFiniteError, r"J.*finite", "nonfinite"),
    Mistake("meso-simulate-negative-amem", lambda: meso.simulate(with_leaf("amem", [-50.0, 50.0, 50.0]), n_steps=10, key=KEY),
            SpikejaxError, r"amem.*> 0", "value"),
    Mistake("meso-simulate-theta-wrong-length", lambda: meso.simulate(with_leaf("theta", [3.7, 3.7]), n_steps=10, key=KEY),
            ShapeError, r"theta.*\(3,\)", "shape"),
    Mistake("meso-simulate-huge-n-steps", lambda: meso.simulate(gt(), n_steps=10**13, key=KEY),
            SizeError, r"n_steps.*would need", "size"),
    Mistake("meso-simulate-n-steps-small-device", _limit(GiB, lambda: meso.simulate(gt(), n_steps=10**9, key=KEY)),
            SizeError, r"n_steps.*would need", "size"),
    Mistake("meso-simulate-fractional-n-steps", lambda: meso.simulate(gt(), n_steps=2.5, key=KEY),
            ConfigError, r"n_steps.*integer", "value"),
    Mistake("meso-simulate-zero-n-steps", lambda: meso.simulate(gt(), n_steps=0, key=KEY), ConfigError, r"n_steps.*>= 1", "value"),
    Mistake("meso-simulate-n-steps-positional", lambda: meso.simulate(gt(), 100, key=KEY), ConfigError, r"n_steps=100", "type"),
    Mistake("meso-simulate-I-ext-wrong-M", lambda: meso.simulate(gt(), np.zeros((10, 2)), key=KEY),
            ShapeError, r"I_ext.*\(\*, 3\)", "shape"),
    Mistake("meso-simulate-I-ext-nan", lambda: meso.simulate(gt(), np.full((10, 3), np.nan), key=KEY),
            NonFiniteError, r"I_ext.*finite", "nonfinite"),
    Mistake("meso-simulate-I-ext-n-steps-disagree", lambda: meso.simulate(gt(), np.zeros((10, 3)), n_steps=5, key=KEY),
            ConfigError, r"I_ext.*10.*n_steps.*5", "shape"),
    Mistake("meso-simulate-negative-A0", lambda: meso.simulate(gt(), n_steps=10, A0=[-1.0, 1.0, 1.0], key=KEY),
            SpikejaxError, r"A0.*>= 0", "value"),
    Mistake("meso-simulate-unknown-noise", lambda: meso.simulate(gt(), n_steps=10, noise="poisson", key=KEY),
            ConfigError, r"noise.*gaussian", "config"),
    Mistake("meso-simulate-model-dict", lambda: meso.simulate({"theta": 3.7}, n_steps=10, key=KEY),
            TypeError, r"model must be a MesoParams", "type"),
    Mistake("meso-simulate-config-dict", lambda: meso.simulate(gt(), n_steps=10, key=KEY, config={"dt": 4.0}),
            ConfigError, r"config must be a MesoConfig", "type"),
    # -- posterior and particle filter sizes ---------------------------------------------------------
    Mistake("meso-posterior-huge-particles", lambda: meso.posterior_Z(gt(), data(), key=KEY, n_particles=10**9),
            SizeError, r"n_particles.*would need", "size"),
    Mistake("meso-posterior-huge-runs", lambda: meso.posterior_Z(gt(), data(), key=KEY, n_runs=10**9),
            SizeError, r"n_runs.*would need", "size"),
    Mistake("meso-posterior-one-particle", lambda: meso.posterior_Z(gt(), data(), key=KEY, n_particles=1),
            ConfigError, r"n_particles.*>= 2", "value"),
    Mistake("meso-posterior-level-one", lambda: meso.posterior_Z(gt(), data(), key=KEY, level=1.0),
            ConfigError, r"level.*< 1", "value"),
    Mistake("meso-posterior-nan-theta", lambda: meso.posterior_Z(with_leaf("theta", [np.nan, 3.7, 3.7]), data(), key=KEY),
            NonFiniteError, r"theta.*finite", "nonfinite"),
    Mistake("meso-sample-posterior-huge", lambda: meso.sample_posterior(gt(), data(), key=KEY, n_particles=10**9),
            SizeError, r"n_particles.*would need", "size"),
    Mistake("meso-simulate-micro-huge", lambda: meso.simulate_micro(gt(), 10**13, key=KEY),
            SizeError, r"n_steps.*would need", "size"),
    Mistake("meso-simulate-micro-fractional", lambda: meso.simulate_micro(gt(), 100.5, key=KEY),
            ConfigError, r"n_steps.*integer", "value"),
    Mistake("meso-simulate-observed-huge", lambda: meso.simulate_observed(gt(), 10**13, key=KEY),
            SizeError, r"n_steps.*would need", "size"),
    Mistake("meso-pulse-input-negative", lambda: meso.pulse_input(-5, 4.0, 3, []), ConfigError, r"n_steps.*>= 1", "value"),
    Mistake("meso-pulse-input-huge", lambda: meso.pulse_input(10**13, 4.0, 3, []), SizeError, r"n_steps.*would need", "size"),
    # -- configs -----------------------------------------------------------------------------------
    Mistake("meso-config-negative-dt", lambda: meso.MesoConfig(dt=-4.0), ConfigError, r"dt.*> 0", "config"),
    Mistake("meso-config-n-age-one", lambda: meso.MesoConfig(n_age=1), ConfigError, r"n_age.*>= 2", "config"),
    Mistake("meso-config-string-dt", lambda: meso.MesoConfig(dt="4"), ConfigError, r"dt.*number.*str", "config"),
    Mistake("meso-fitconfig-unknown-method", lambda: meso.MesoFitConfig(method="adam"), ConfigError, r"method.*marginal", "config"),
    Mistake("meso-fitconfig-typo", lambda: meso.MesoFitConfig.from_dict({"mehtod": "hard"}),
            ConfigError, r"mehtod.*did you mean 'method'", "config"),
    # -- data --------------------------------------------------------------------------------------
    Mistake("meso-data-not-binary", lambda: meso.MesoData(np.full((20, 3, 2), 2.0), np.zeros((5, 3, 2)), N=(400, 400, 200)),
            SpikejaxError, r"y \(observed spikes\).*0 and 1", "value"),
    Mistake("meso-data-y-2d", lambda: meso.MesoData(np.zeros((20, 3)), np.zeros((5, 3)), N=(400, 400, 200)),
            ShapeError, r"y \(observed spikes\).*\(T, M, n\)", "shape"),
    Mistake("meso-data-hist-populations", lambda: meso.MesoData(np.zeros((20, 3, 2)), np.zeros((5, 2, 2)), N=(400, 400, 200)),
            ShapeError, r"y_hist.*M=3", "shape"),
    Mistake("meso-data-zero-dt", lambda: meso.MesoData(np.zeros((20, 3, 2)), np.zeros((5, 3, 2)), N=(400, 400, 200), dt=0.0),
            ConfigError, r"dt.*> 0", "value"),
    Mistake("meso-data-Z-above-one", lambda: meso.MesoData(np.zeros((20, 3, 2)), np.zeros((5, 3, 2)), N=(400, 400, 200), Z=np.full((20, 3), 2.0)),
            SpikejaxError, r"Z.*<= 1", "value"),
    Mistake("meso-data-N-wrong", lambda: meso.MesoData(np.zeros((20, 3, 2)), np.zeros((5, 3, 2)), N=(400, 400)),
            ShapeError, r"N.*one size per population \(3\)", "shape"),
    Mistake("meso-loss-N-mismatch", lambda: meso.loss(gt(), meso.MesoData(np.zeros((20, 3, 2)), np.zeros((5, 3, 2)), N=(40, 40, 20), Z=np.zeros((20, 3)))),
            ConfigError, r"N.*must equal", "shape"),
    Mistake("meso-load-npz-truncated", lambda: meso.load_npz(files()["truncated"]), DataFormatError, r"truncated\.npz", "file"),
    Mistake("meso-load-npz-wrong-keys", lambda: meso.load_npz(files()["wrong_keys"]), DataFormatError, r"wrong_keys\.npz", "file"),
    Mistake("meso-load-npz-not-npz", lambda: meso.load_npz(files()["not_npz"]), DataFormatError, r"not_npz\.npz", "file"),
    Mistake("meso-from-vector-length", lambda: meso.from_vector(gt(), np.zeros(11)), ShapeError, r"x .*\(12,\).*got \(11,\)", "shape"),
]


@pytest.mark.parametrize("mistake", params(MISTAKES))
def test_mistake(mistake):
    check(mistake)
