"""The public objective of the mesoscopic family: :func:`loss` (the neuLVM complete-data objective)."""

from __future__ import annotations

import functools

import jax

from ..core.errors import ConfigError, is_traced
from ..core.random import check_key
from .data import MesoData, check_params_data
from .model import MesoConfig, _loss_parts
from .params import MesoParams

__all__ = ["loss"]


def loss(model: MesoParams, data: MesoData, *, key: jax.Array | None = None,
         config: MesoConfig = MesoConfig()) -> jax.Array:
    """The neuLVM objective ``L = L_y + L_Z`` of ``model`` on ``data`` (a scalar; pure, differentiable).

    ``L = −log p(y, Z | Θ) / (M·T)`` up to a constant: ``L_Z`` is the Gaussian NLL of the
    population activity ``data.Z`` (variance ``Z̄/N + 0.1Δ/N``) and ``L_y`` the Bernoulli NLL of
    the observed spikes ``data.y``, both averaged over populations and bins. It is what the
    gradient steps of :func:`~spikejax.meso.fit_em` minimise (its M-step in ``Θ`` and its E-step in
    ``Z``, with ``data.with_Z(Z)``); usable inside ``jax.grad``/``jit``/``vmap`` (``data`` is a pytree).

    Parameters
    ----------
    model
        Model parameters (:class:`MesoParams`; validated unless traced).
    data
        The trial (:class:`MesoData`) with its population activity ``Z`` (T, M) in [0, 1]: the true
        one, or an inferred one set with :meth:`MesoData.with_Z`.
    key
        Unused (the objective is deterministic); accepted for the family contract.
    config
        Model options (:class:`MesoConfig`).
    """
    if key is not None:
        check_key(key)
    if not isinstance(data, MesoData):
        raise TypeError(f"data must be a MesoData, got {type(data).__name__}")
    if data.Z is None:
        raise ConfigError("loss needs the population activity: data.Z is None (set one with data.with_Z(Z))")
    if not is_traced(model):
        check_params_data(model, data)
    elif tuple(model.N) != tuple(data.N):
        raise ConfigError(f"model.N {model.N} must equal data.N {data.N}")
    return _loss_total(model, data.Z, data.y, data.A0, data.age0, data.I_ext, cfg=config)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _loss_total(params, Z, y, A0, age0, I_ext, *, cfg):
    return _loss_parts(params, Z, y, A0, age0, I_ext, cfg).total
