"""Bad-input catalogue of the GLM family (issue 23): each mistake a clear error before any compile."""

from __future__ import annotations

import functools
import os

import jax.numpy as jnp
import numpy as np
import pytest

from spikejax import glm
from spikejax.core.errors import ConfigError, NonFiniteError, ShapeError, SizeError

from .harness import Mistake, check, params, with_memory_limit as _limit

N = 6
KEY = np.zeros(2, np.uint32)  # a raw uint32 key: no device work to build it


@functools.lru_cache(maxsize=None)
def net() -> glm.Network:
    return glm.from_dense(glm.mexican_hat(N))


@functools.lru_cache(maxsize=None)
def lnp() -> glm.RectifiedLNP:
    return glm.RectifiedLNP(T=5)


def sim(model=None, network=None, **kw):
    kw.setdefault("n_steps", 10)
    kw.setdefault("key", KEY)
    return glm.simulate(lnp() if model is None else model, net() if network is None else network, **kw)




GiB = 1 << 30
MASK = np.ones(N, bool)

MISTAKES = [
    # -- models: parameters validated at construction and by replace -------------------------------
    Mistake("glm-replace-negative-dt", lambda: lnp().replace(dt=-0.1), ConfigError, r"dt.*> 0.*-0\.1", "value"),
    Mistake("glm-replace-zero-dt", lambda: glm.PoissonGLM().replace(dt=0.0), ConfigError, r"dt.*> 0", "value"),
    Mistake("glm-replace-negative-tau", lambda: lnp().replace(tau=-1.0), ConfigError, r"tau.*> 0", "value"),
    Mistake("glm-replace-nan-theta", lambda: lnp().replace(theta=float("nan")), ConfigError, r"theta.*finite", "nonfinite"),
    Mistake("glm-replace-unknown", lambda: lnp().replace(lamda_0=2.0), ConfigError, r"lamda_0.*lambda_0", "config"),
    Mistake("glm-replace-fractional-T", lambda: lnp().replace(T=2.5), ConfigError, r"\bT\b.*integer", "value"),
    Mistake("glm-model-zero-dt", lambda: glm.RectifiedLNP(dt=0.0), ConfigError, r"dt.*> 0", "value"),
    Mistake("glm-model-string-lambda", lambda: glm.RectifiedLNP(lambda_0="9.8"), ConfigError, r"lambda_0.*number", "type"),
    Mistake("glm-model-inf-theta", lambda: glm.RectifiedLNP(theta=np.inf), ConfigError, r"theta.*finite", "nonfinite"),
    Mistake("glm-model-fractional-T", lambda: glm.RectifiedLNP(T=2.5), ConfigError, r"\bT\b.*integer", "value"),
    Mistake("glm-model-negative-window", lambda: glm.BernoulliGLM(coupling_window=-3), ConfigError, r"coupling_window.*>= 1", "value"),
    Mistake("glm-model-rho-above-one", lambda: glm.ThresholdSAM(rho=1.5), ConfigError, r"rho.*<= 1", "value"),
    # -- simulate: counts, types, sizes --------------------------------------------------------
    Mistake("glm-simulate-huge-n-steps", lambda: sim(n_steps=10**12), SizeError, r"n_steps.*would need", "size"),
    Mistake("glm-simulate-huge-T", lambda: sim(model=glm.RectifiedLNP(T=10**11)), SizeError, r"\bT\b.*would need", "size"),
    Mistake("glm-simulate-T-1e9-small-device", _limit(8 * GiB, lambda: sim(model=glm.RectifiedLNP(T=10**9))),
            SizeError, r"\bT\b.*would need", "size"),
    Mistake("glm-simulate-huge-n-nodes", lambda: sim(network=glm.from_edges([0], [1], [0.1], 10**11)),
            SizeError, r"n_nodes.*would need", "size"),
    Mistake("glm-simulate-huge-equilibration", lambda: sim(model=glm.RectifiedLNP(T=10**9), equilibration_steps=0, n_steps=1),
            SizeError, r"\bT\b", "size"),
    Mistake("glm-simulate-fractional-n-steps", lambda: sim(n_steps=2.5), ConfigError, r"n_steps.*integer", "value"),
    Mistake("glm-simulate-zero-n-steps", lambda: sim(n_steps=0), ConfigError, r"n_steps.*>= 1", "value"),
    Mistake("glm-simulate-string-n-steps", lambda: sim(n_steps="100"), ConfigError, r"n_steps.*number", "type"),
    Mistake("glm-simulate-negative-equilibration", lambda: sim(equilibration_steps=-5), ConfigError,
            r"equilibration_steps.*>= 0", "value"),
    Mistake("glm-simulate-zero-chunk", lambda: sim(chunk_size=0), ConfigError, r"chunk_size.*>= 1", "value"),
    Mistake("glm-simulate-dense-matrix", lambda: sim(network=glm.mexican_hat(N)), TypeError, r"network.*Network", "type"),
    Mistake("glm-simulate-model-class", lambda: sim(model=glm.RectifiedLNP), TypeError, r"model.*GLMModel", "type"),
    Mistake("glm-simulate-int-key", lambda: sim(key=0), (TypeError, ValueError), r"key", "type"),
    Mistake("glm-simulate-unknown-backend", lambda: sim(backend="gpu"), ConfigError, r"backend.*gpu", "config"),
    Mistake("glm-simulate-bad-dtype", lambda: sim(store_as_dtype="complex64"), ConfigError, r"store_as_dtype", "config"),
    # -- stimuli -----------------------------------------------------------------------------------
    Mistake("glm-simulate-nan-stimulus", lambda: sim(stimulus=lambda t: jnp.full((N,), jnp.nan)),
            NonFiniteError, r"stimulus.*finite", "nonfinite"),
    Mistake("glm-simulate-inf-stimulus-scalar", lambda: sim(stimulus=lambda t: jnp.inf * t),
            NonFiniteError, r"stimulus.*finite", "nonfinite"),
    Mistake("glm-simulate-stimulus-wrong-size", lambda: sim(stimulus=lambda t: jnp.zeros(N + 1)),
            ShapeError, r"stimulus.*6 neurons", "shape"),
    Mistake("glm-simulate-stimulus-array", lambda: sim(stimulus=np.zeros(N)), TypeError, r"stimulus.*callable", "type"),
    Mistake("glm-regular-stimulus-nan-strength", lambda: glm.RegularStimulus(np.nan, 10, 2, 100, MASK),
            ConfigError, r"strength.*finite", "nonfinite"),
    Mistake("glm-regular-stimulus-zero-period", lambda: glm.RegularStimulus(1.0, 0, 2, 100, MASK),
            ConfigError, r"period.*> 0", "value"),
    Mistake("glm-sin-stimulus-negative-period", lambda: glm.SinStimulus(1.0, -5.0, 100, MASK),
            ConfigError, r"period.*> 0", "value"),
    Mistake("glm-loaded-stimulus-nan-plan", lambda: glm.LoadedStimulus(np.full((N, 4), np.nan)),
            ConfigError, r"plan.*finite", "nonfinite"),
    Mistake("glm-stimulus-mask-values", lambda: glm.RegularStimulus(1.0, 10, 2, 100, np.full(N, 2)),
            ConfigError, r"stimulus_masks.*0/1", "value"),
    # -- networks and generators ---------------------------------------------------------------------
    Mistake("glm-from-dense-nan", lambda: glm.from_dense(np.array([[0.0, np.nan], [1.0, 0.0]])),
            NonFiniteError, r"matrix.*finite", "nonfinite"),
    Mistake("glm-from-dense-not-square", lambda: glm.from_dense(np.zeros((3, 4))), ShapeError, r"matrix.*square", "shape"),
    Mistake("glm-from-edges-out-of-range", lambda: glm.from_edges([0, 5], [1, 2], [0.1, 0.2], 3),
            ConfigError, r"src and dst.*n_nodes=3", "value"),
    Mistake("glm-from-edges-negative-n-nodes", lambda: glm.from_edges([], [], [], -1), ConfigError, r"n_nodes.*positive", "value"),
    Mistake("glm-from-edges-weight-length", lambda: glm.from_edges([0, 1], [1, 2], [0.1], 3), ShapeError, r"weight.*\(2,\)", "shape"),
    Mistake("glm-from-edges-float-indices", lambda: glm.from_edges([0.5, 1.0], [1, 2], [0.1, 0.2], 3),
            TypeError, r"src and dst.*integer", "type"),
    Mistake("glm-mexican-hat-huge", lambda: glm.mexican_hat(10**7), SizeError, r"n_neurons.*would need", "size"),
    Mistake("glm-mexican-hat-fractional", lambda: glm.mexican_hat(10.5), ConfigError, r"n_neurons.*integer", "value"),
    Mistake("glm-stack-different-sizes", lambda: glm.stack_networks([net(), glm.from_dense(np.ones((3, 3)))]),
            ShapeError, r"networks\[1\] has 3", "shape"),
    # -- tuning configuration ----------------------------------------------------------------------
    Mistake("glm-tuneconfig-zero-epochs", lambda: glm.TuneConfig(n_epochs=0), ConfigError, r"n_epochs.*>= 1", "config"),
    Mistake("glm-tuneconfig-typo", lambda: glm.TuneConfig.from_dict({"learning_rat": 0.1}),
            ConfigError, r"learning_rat.*did you mean 'learning_rate'", "config"),
    Mistake("glm-tuneconfig-average-last", lambda: glm.TuneConfig(average_last=2.0), ConfigError, r"average_last.*<= 1", "config"),
    Mistake("glm-firing-rates-negative-dt", lambda: glm.firing_rates(np.zeros((N, 10)), dt=-0.1),
            ConfigError, r"dt.*> 0", "value"),
]


@pytest.mark.parametrize("mistake", params(MISTAKES))
def test_mistake(mistake):
    check(mistake)


def test_replace_validates_like_the_constructor():
    """``model.replace(**kw)`` is refused exactly when ``RectifiedLNP(**kw)`` is (hypothesis over values)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-3, 3))
    names = st.sampled_from(["dt", "tau", "lambda_0", "theta", "T", "r"])

    @settings(max_examples=60, deadline=None)
    @given(name=names, value=values)
    def prop(name, value):
        try:
            glm.RectifiedLNP(**{"T": 5, name: value})
            built = None
        except ConfigError as exc:
            built = exc
        try:
            lnp().replace(**{name: value})
            replaced = None
        except ConfigError as exc:
            replaced = exc
        assert (built is None) == (replaced is None), (name, value, built, replaced)
        if built is not None:
            assert name in str(replaced)

    prop()
