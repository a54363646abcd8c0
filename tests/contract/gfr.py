"""The family contract for gfr: a released cell, a current ramp, the stage-2 objective, fit_alpha_beta."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spikejax import gfr

from .case import FamilyCase

_CELL = 566517779  # a released (20 ms, 20 ms) cell of the bundled excerpt


def _model():
    return gfr.model_from_dataset(gfr.load_dataset(), _CELL)


def _simulate(model, key):
    # GFR neurons are deterministic: the key is not used (simulate takes none)
    return gfr.simulate(model, jnp.linspace(150.0, 400.0, 25, dtype=model.alpha.dtype))


def _data(model, key):
    """Two type-batches of two sweeps (pA), rates = the model's own response times noise (spikes/ms)."""
    k1, k2 = jax.random.split(key)
    dtype = model.alpha.dtype
    current = 250.0 + 100.0 * jax.random.uniform(k1, (2, 2, 20), dtype)
    rate = gfr.simulate_rates(model, current) * jax.random.uniform(k2, (2, 2, 20), dtype, 0.8, 1.2)
    return {"current": current, "rate": rate, "dt": jnp.asarray(20.0, dtype)}


def _fit(model, data, key):
    # stage 2 on one type-batch (the fit draws no random numbers; the key is not needed)
    return gfr.fit_alpha_beta(model, data["current"][0], data["rate"][0], learning_rate=1e-3, n_epochs=5)


CASE = FamilyCase(
    name="gfr",
    make_model=_model,
    simulate=_simulate,
    make_data=_data,
    loss=lambda model, data, key: gfr.loss(model, data, key=key),
    grad_params=lambda m: (m.alpha, m.beta),
    fit=_fit,
    stochastic=False,
    loss_stochastic=False,
)
