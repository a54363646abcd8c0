"""The mesoscopic family's contract case: the neuLVM ground truth, a 20-bin trial drawn from the model,
hard EM for two iterations of two restarts (the cheapest fitting path; the marginal stage compiles for
minutes)."""

from spikejax import meso

from .case import FamilyCase

_FIT = meso.MesoFitConfig(method="hard", em=meso.EMConfig(n_restarts=2, n_iter=2, m_maxiter=3, e_maxiter=3),
                          model=meso.MesoConfig(n_age=16))
_MODEL_CONFIG = meso.MesoConfig(n_age=16)


def _make_model():
    return meso.ground_truth()


def _simulate(model, key):
    return meso.simulate(model, n_steps=30, key=key, config=_MODEL_CONFIG)


def _make_data(model, key):
    return meso.simulate_observed(model, 20, key=key, n_obs=2, hist_bins=20, burn_bins=20, config=_MODEL_CONFIG)


def _loss(model, data, key):
    return meso.loss(model, data, key=key, config=_MODEL_CONFIG)


def _fit(model, data, key):
    return meso.fit_em(data, key=key, config=_FIT, model=model)


CASE = FamilyCase(
    name="meso",
    make_model=_make_model,
    simulate=_simulate,
    make_data=_make_data,
    loss=_loss,
    grad_params=lambda m: (m.amem, m.J, m.mu, m.theta),
    fit=_fit,
    stochastic=True,
    loss_stochastic=False,
)

