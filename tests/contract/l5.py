"""The family contract for l5: a 16-neuron network (1 network, 4 directions, 40 steps, Slide_BCM on)."""

import jax

from spikejax import l5

from .case import FamilyCase

# corrected variant + softplus: the rate nonlinearity is smooth, so check_grads sees no kinks
CONFIG = dict(N=[4, 6, 3, 3], sim_number=1, Ttau=4, block=5, eval_steps=20, number_steps_before_learning=10,
              tau_learn=5.0, tau_threshold=0.2, nonlinearity_rule="softplus", variant="corrected")


def _config():
    return l5.debug_config(**CONFIG)


def make_model():
    # the networks are part of the model; a fixed key here is the test's choice, not the library's
    return l5.build_model(_config(), key=jax.random.PRNGKey(0), record_weights=False)


def simulate(model, key):
    del key  # simulate is deterministic: the randomness is in the sampled networks (build_model's key)
    return l5.simulate(model)


def make_data(model, key):
    del model, key
    return l5.L5Target(margin=0.3, soft_beta=5.0)


def loss(model, data, key):
    return l5.loss(model, data, key=key)


def fit(model, data, key):
    return l5.tune(_config(), key=key, n_epochs=2, learning_rate=0.05, net=model.net, params=model.params,
                   margin=data.margin, soft_beta=data.soft_beta, checkpoint=False)


CASE = FamilyCase(
    name="l5",
    make_model=make_model,
    simulate=simulate,
    make_data=make_data,
    loss=loss,
    grad_params=lambda m: m.params.amplitude,
    fit=fit,
    stochastic=False,
    loss_stochastic=False,
)
