"""The objective :func:`~spikejax.l5.tune` minimises: :func:`loss` of a model against an :class:`L5Target`.

The original had no likelihood: its tuning targets are the experimental signs of the relative
selectivity indices, os_rel < 0 (CC more orientation selective than CS; Lur et al. 2016) and
ds_rel > 0 (CS more direction selective; Kim et al. 2015), with every type active and bounded::

    loss = relu(os_rel~ + margin)^2 + relu(margin - ds_rel~)^2
           + c_act * mean_types(relu(act - max_act)^2 + (10 relu(min_act - act))^2)

where ``~`` marks the smooth (soft-argmax, sharpness ``soft_beta``) relative indices on the means
over the model's networks, and ``act`` is each type's mean rate over the evaluation window. It is
pure and differentiable through the whole simulation (``jax.grad`` / ``jit`` / ``vmap``).
:func:`~spikejax.l5.tune` adds ``c_reg * |theta - theta_0|^2`` (a penalty on the distance of its
log parameters from their start, like weight decay). The original's TPE score on the output tables
is :func:`~spikejax.l5.head_loss` (not differentiable).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from . import metrics as M
from .engine import _run
from .model import L5Model

__all__ = ["L5Target", "loss", "soft_relative_indices"]


class L5Target(eqx.Module):
    """What :func:`loss` asks of a model (the "data" of the L5 tuning: targets, no observations).

    Attributes
    ----------
    margin : float
        Required margin of the soft indices: os_rel <= -margin, ds_rel >= margin.
    c_act : float
        Weight of the activity penalty.
    min_act, max_act : float
        Lowest and highest allowed mean rate of each type (dimensionless; ``max_act`` is the
        original's ``Max_act``).
    soft_beta : float (static)
        Sharpness of the soft-argmax selectivity.
    """

    margin: Any = 0.3
    c_act: Any = 1.0
    min_act: Any = 0.05
    max_act: Any = 15.0
    soft_beta: float = eqx.field(default=20.0, static=True)


def soft_relative_indices(rates, N, eval_blocks: int, beta: float):
    """Smooth os_rel, ds_rel (soft-argmax selectivity, means over simulations) and type activity means."""
    st = M.summarize(rates, N, eval_blocks=eval_blocks, soft_beta=beta)
    os_m = jnp.mean(st["OS_mean"], axis=0)
    ds_m = jnp.mean(st["DS_mean"], axis=0)
    return M.relative_index(os_m[0], os_m[1]), M.relative_index(ds_m[0], ds_m[1]), jnp.mean(st["act_mean"], axis=0)


def _terms(model: L5Model, data: L5Target):
    spec = model.spec
    out = _run(model.params, model.net, spec, jit=False)
    os_rel, ds_rel, act = soft_relative_indices(out.rates, spec.N, spec.eval_steps // spec.block, data.soft_beta)
    value = (
        jax.nn.relu(os_rel + data.margin) ** 2
        + jax.nn.relu(data.margin - ds_rel) ** 2
        + data.c_act * jnp.mean(jax.nn.relu(act - data.max_act) ** 2 + (10 * jax.nn.relu(data.min_act - act)) ** 2)
    )
    return value, {"os_rel_soft": os_rel, "ds_rel_soft": ds_rel}


def loss(model: L5Model, data: L5Target, *, key: jax.Array | None = None) -> jax.Array:
    """The tuning objective (module docstring) of ``model`` against the targets ``data``; a scalar.

    Deterministic: ``key`` is accepted for the common signature and not used. Runs the simulation
    without its own ``jit`` so that it nests in a caller's ``jax.grad`` / ``jit`` / ``vmap``.
    """
    del key
    if not isinstance(model, L5Model):
        raise TypeError(f"model must be an L5Model (see build_model), got {type(model).__name__}")
    if not isinstance(data, L5Target):
        raise TypeError(f"data must be an L5Target (the tuning targets), got {type(data).__name__}")
    return _terms(model, data)[0]
