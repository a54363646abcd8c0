"""The glm family's contract case: a 10-neuron Mexican-hat ring, RectifiedLNP with a 5-lag kernel."""

from __future__ import annotations

from spikejax import glm

from .case import FamilyCase

_NET = glm.from_dense(glm.mexican_hat(10))


def _model():
    return glm.RectifiedLNP(lambda_0=100.0, theta=1e-4, T=5, tau=10.0, dt=0.1, r=0.0025, b=0.001)


def _simulate(model, key):
    return glm.simulate(model, _NET, n_steps=20, key=key, equilibration_steps=10)


def _data(model, key):
    # the objective of tune's "spikeometric" estimator: its gradient is the derivative of the forward value
    # (the history is detached); the "stationary" estimator's straight-through gradient is a surrogate
    return glm.RateTarget(_NET, 62.5, n_steps=20, equilibration_steps=10, estimator="spikeometric")


def _loss(model, data, key):
    return glm.loss(model, data, key=key)


def _fit(model, data, key):
    return glm.tune(model, data.network, float(data.firing_rate), ["theta"], key=key, n_epochs=3, n_steps=20,
                    equilibration_steps=10, estimator=data.estimator, learning_rate=1e-5)


CASE = FamilyCase(
    name="glm",
    make_model=_model,
    simulate=_simulate,
    make_data=_data,
    loss=_loss,
    grad_params=lambda m: m.theta,
    fit=_fit,
    stochastic=True,
    loss_stochastic=True,
)

__all__ = ["CASE"]
