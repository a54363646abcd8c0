"""What a family gives the contract test: tiny sizes, the family's own public verbs.

Each ``tests/contract/<family>.py`` defines ``CASE = FamilyCase(...)``. Every callable uses the
family's *public* API only (``spikejax.<family>``), exactly as a user would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class FamilyCase:
    name: str
    #: a tiny model (float32 or float64 following jax_enable_x64)
    make_model: Callable[[], Any]
    #: ``simulate(model, key) -> Trajectory`` — the family's ``simulate`` with tiny inputs
    simulate: Callable[[Any, Any], Any]
    #: ``make_data(model, key) -> data`` in the form the family's ``loss`` takes
    make_data: Callable[[Any, Any], Any]
    #: ``loss(model, data, key) -> scalar`` — the family's public objective (the one its fitting uses)
    loss: Callable[[Any, Any, Any], Any]
    #: selects the parameter leaf (or tuple of leaves) that check_grads differentiates, ``eqx.tree_at`` style
    grad_params: Callable[[Any], Any]
    #: ``fit(model, data, key) -> Result`` — a fitting verb run for a few steps
    fit: Callable[[Any, Any, Any], Any]
    #: does simulate draw random numbers? (then another key must give other numbers)
    stochastic: bool = True
    #: is the loss random given the key (VAE sampling, particle filters)?
    loss_stochastic: bool = False
    #: columns of simulate's table that name a unit/axis instead of carrying a unit suffix
    id_columns: tuple[str, ...] = ("neuron", "population", "trial", "cell", "member", "network", "type", "channel",
                                   "latent", "factor", "sample", "sweep", "setting", "batch")
    #: check_grads tolerances (float64)
    grad_atol: float = 1e-4
    grad_rtol: float = 1e-3
    #: order of check_grads (1: reverse mode only)
    grad_modes: tuple[str, ...] = ("rev",)
