"""The LFADS objective as implemented by lfads-torch / autolfads-tf2 (spec §1.6-1.8, §3): :func:`loss`.

``total = loss_scale · [R + ρ_L2·L2 + ρ_KL·(kl_ic_scale·KL_ic + kl_co_scale·KL_co)] + penalty``

* ``R``: reconstruction NLL. ``config.recon_reduce_mean=True`` (lfads-torch/tf2): mean over the
  observed elements (batch × time × neurons). ``False`` (original LFADS, true ELBO with β = 1):
  sum over time and neurons, mean over trials. In both, entries that are missing (NaN, SBTT) or
  held out by sample validation are excluded and the remainder renormalised to the full count.
* Coordinated dropout: ``ℓ' = g·ℓ + stop_gradient((1-g)·ℓ)`` with ``g`` = dropped-at-input (or a
  ``cd_pass_rate`` fraction of kept entries); entries without an input (forward-prediction bins,
  held-out neurons) always pass gradients.
* Ramps ``ρ(e) = clip((e + 1 - start)/(increase + 1), 0, 1)`` per epoch ``e``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..core.errors import is_traced
from ..core.random import check_key
from . import rng
from .data import check_dataset
from .model import LFADS, HParams

__all__ = ["ramp", "prepare_inputs", "recon_cost", "loss_terms", "loss"]


def ramp(epoch, start, increase):
    """KL/L2 ramp weight at (0-based) ``epoch``: ``clip((epoch + 1 - start)/(increase + 1), 0, 1)``."""
    return jnp.clip((epoch + 1.0 - start) / (increase + 1.0), 0.0, 1.0)


def _pad_to(mask: jax.Array, t: int, n: int, fill: bool) -> jax.Array:
    """Pad a (B, T_e, N) mask to (B, t, n) with ``fill``."""
    b, te, ne = mask.shape
    out = jnp.full((b, t, n), fill, dtype=bool)
    return out.at[:, :te, :ne].set(mask)


def prepare_inputs(model: LFADS, batch: dict[str, Any], hp: HParams, *, key: jax.Array | None, training: bool):
    """Encoder inputs and the masks of the loss.

    Returns ``(x_in, target, observed, heldin, grad_mask)``: zero-filled, SV-masked and
    coordinated-dropped encoder input (B, T_e, N); the target (B, T_r, N_r) with NaN; the observed
    mask (not NaN); the SV held-in mask (True outside the encoded block); the CD gradient mask.
    """
    c = model.config
    data = batch["data"]
    target = batch.get("recon", data)
    x = jnp.where(jnp.isnan(data), 0.0, data).astype(data.dtype)
    observed = ~jnp.isnan(target)
    tr, nr = target.shape[1], target.shape[2]
    if "sv_mask" in batch:
        sv = batch["sv_mask"].astype(bool)
        x = jnp.where(sv, x, 0.0)
        heldin = _pad_to(sv, tr, nr, True)
    else:
        heldin = jnp.ones(target.shape, bool)
    grad_mask = jnp.ones(target.shape, bool)
    if training and key is not None:
        cd = hp.cd_rate
        u = rng.uniform(key, (2, *x.shape), x.dtype)  # one RNG call for both CD draws
        keep = u[0] < 1.0 - cd
        x = jnp.where(keep, x / (1.0 - cd), 0.0)
        passed = u[1] < hp.cd_pass_rate
        g_in = jnp.logical_or(~keep, passed)
        g = _pad_to(g_in, tr, nr, True)
        grad_mask = jnp.where(cd > 0, g, True)
    assert x.shape[1] == c.encod_seq_len
    return x, target, observed, heldin, grad_mask


def recon_cost(readout, params: jax.Array, target: jax.Array, observed: jax.Array, heldin: jax.Array,
               grad_mask: jax.Array, *, reduce_mean: bool = True) -> tuple[jax.Array, jax.Array]:
    """Reconstruction cost over observed held-in entries, and the SV held-out cost (NaN without SV).

    Missing entries (``observed`` False, SBTT) contribute neither value nor gradient; entries with
    ``grad_mask`` False (kept by coordinated dropout) contribute value but no gradient. The mean
    (``reduce_mean``) is over the observed held-in entries; the sum convention sums over time and
    neurons renormalised to the full element count, and averages over trials.
    """
    nll = readout.nll(params, target, mask=observed)
    nll = jnp.where(grad_mask, nll, jax.lax.stop_gradient(nll))
    m_in = observed & heldin
    m_out = observed & ~heldin
    n_in = jnp.maximum(jnp.sum(m_in), 1)
    sum_in = jnp.sum(jnp.where(m_in, nll, 0.0))
    b = nll.shape[0]
    if reduce_mean:
        recon = sum_in / n_in
    else:
        recon = sum_in * (nll.size / n_in) / b
    n_out = jnp.sum(m_out)
    recon_heldout = jnp.where(n_out > 0, jnp.sum(jnp.where(m_out, nll, 0.0)) / jnp.maximum(n_out, 1), jnp.nan)
    if not reduce_mean:
        recon_heldout = recon_heldout * nll[0].size
    return recon, recon_heldout


def loss_terms(model: LFADS, batch: dict[str, Any], hp: HParams, epoch: jax.Array, *, key: jax.Array,
               training: bool = True, sample_posteriors: bool = True) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Scalar LFADS loss and an aux dict of its terms for a minibatch (what :func:`train` minimises;
    :func:`loss` is its scalar with the ramps at full weight).

    Parameters
    ----------
    model : LFADS
    batch : dict with ``data`` (B, T_e, N) (NaN = missing), optionally ``recon`` (B, T_r, N_r),
        ``ext`` (B, T_r, ext_input_dim) and ``sv_mask`` (B, T_e, N; True = held in).
    hp : HParams
    epoch : current (0-based) epoch, for the KL/L2 ramps.
    key : PRNG key (posterior samples, dropout, coordinated dropout).
    training : apply dropout and coordinated dropout; the SV held-in mask selects the loss entries.
        With ``training=False`` (validation) the loss uses all observed held-in entries.

    Returns
    -------
    (loss, aux) with aux keys ``recon`` (held-in recon, without scale), ``recon_heldout`` (SV held
    out, NaN without SV), ``kl_ic``, ``kl_co``, ``l2``, ``kl_ramp``, ``l2_ramp``.
    """
    c = model.config
    k_in, k_fwd = rng.split(key)
    x, target, observed, heldin, grad_mask = prepare_inputs(model, batch, hp, key=k_in if training else None,
                                                            training=training)
    b = x.shape[0]
    noise = model.draw_noise(k_fwd, (b,))
    out = model.forward_batch(x, hp, noise=noise, ext=batch.get("ext"), sample_posteriors=sample_posteriors,
                              training=training)
    params = out["params"]
    kic, kco = jax.vmap(model.kl_terms)(out)
    recon, recon_heldout = recon_cost(model.readout, params, target, observed, heldin, grad_mask,
                                      reduce_mean=c.recon_reduce_mean)
    kl_ic = jnp.mean(kic)
    kl_co = jnp.mean(kco)
    l2 = model.l2_penalty(hp)
    rho_kl = ramp(epoch, hp.kl_start_epoch, hp.kl_increase_epoch)
    rho_l2 = ramp(epoch, hp.l2_start_epoch, hp.l2_increase_epoch)
    inner = recon + rho_l2 * l2 + rho_kl * (hp.kl_ic_scale * kl_ic + hp.kl_co_scale * kl_co)
    loss = hp.loss_scale * inner + model.readout.penalty_outside()
    aux = {"recon": jax.lax.stop_gradient(recon), "recon_heldout": jax.lax.stop_gradient(recon_heldout),
           "kl_ic": jax.lax.stop_gradient(kl_ic), "kl_co": jax.lax.stop_gradient(kl_co),
           "l2": jax.lax.stop_gradient(l2), "kl_ramp": rho_kl, "l2_ramp": rho_l2}
    return loss, aux


def loss(model: LFADS, data: Any, *, key: jax.Array | None = None, hp: HParams | None = None,
         epoch: Any = None) -> jax.Array:
    """The LFADS training objective (the scalar :func:`spikejax.lfads.train` minimises), differentiable.

    Parameters
    ----------
    model : LFADS
    data : a batch as :func:`train` uses it: a dict with ``data`` (trials × encod_seq_len ×
        data_dim; NaN = missing) and optionally ``recon``, ``ext``, ``sv_mask`` (see
        :func:`loss_terms`); a bare array is taken as ``{"data": array}``.
    key : PRNG key of the training-mode objective: posterior samples of z0 and u_t, dropout and
        coordinated dropout, as in a training step. ``None``: the deterministic evaluation of the
        objective (posterior means, no dropout).
    hp : HParams (default ``HParams.create()`` in the model's dtype).
    epoch : (0-based) epoch of the KL/L2 ramps; ``None`` (default): the ramps at full weight.

    Returns
    -------
    Scalar ``loss_scale · [recon + ρ_L2·L2 + ρ_KL·(kl_ic_scale·KL_ic + kl_co_scale·KL_co)] + penalty``
    (usable inside ``jax.grad``, ``jit`` and ``vmap``).
    """
    batch = dict(data) if isinstance(data, dict) else {"data": data}
    if not is_traced(batch):  # concrete data: shapes against the model, counts, inf (NaN = missing, as in SBTT)
        check_dataset({k: v for k, v in batch.items() if k != "sv_mask"} if isinstance(data, dict) else data,
                      model.config, sbtt=True, name="data", array_ok=True)
    dtype = model.ic_prior_mean.dtype
    batch = {k: (jnp.asarray(v, bool) if k == "sv_mask" else jnp.asarray(v, dtype)) for k, v in batch.items()}
    hp = hp if hp is not None else HParams.create(dtype=dtype)
    e = jnp.asarray(1e9 if epoch is None else epoch, dtype)
    if key is None:
        value, _ = loss_terms(model, batch, hp, e, key=jnp.zeros(2, jnp.uint32), training=False,
                              sample_posteriors=False)
    else:
        value, _ = loss_terms(model, batch, hp, e, key=check_key(key), training=True)
    return value
