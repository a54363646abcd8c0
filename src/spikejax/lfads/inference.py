"""Posterior sample-and-average inference (lfads-torch ``num_samples=50``)."""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.random import check_key
from ..core.trainer_options import check_int
from .data import check_dataset
from .model import LFADS, HParams

__all__ = ["infer"]


@eqx.filter_jit
def _infer_batch(model, hp, xb, eb, k, *, n_samples: int, sample_posteriors: bool):
    """Posterior-averaged outputs of one batch (module level, so the compilation is reused across calls)."""

    def one_sample(ks):
        noise = model.draw_noise(ks, (xb.shape[0],))
        out = model.forward_batch(xb, hp, noise=noise, ext=eb, sample_posteriors=sample_posteriors, training=False)
        return {"rates": model.readout.mean(out["params"]), "factors": out["factors"],
                "gen_states": out["gen_states"], "con_inputs": out["con_inputs"], "ic_mean": out["ic_mean"],
                "ic_std": out["ic_std"]}

    def body(acc, ks):
        o = one_sample(ks)
        return jax.tree_util.tree_map(lambda a, b: a + b / n_samples, acc, o), None

    shapes = jax.eval_shape(one_sample, k)
    zero = jax.tree_util.tree_map(lambda sd: jnp.zeros(sd.shape, sd.dtype), shapes)
    acc, _ = jax.lax.scan(body, zero, jax.random.split(k, n_samples))
    return acc


def infer(model: LFADS, data: Any, *, key: jax.Array, n_samples: int = 50, batch_size: int = 256,
          hp: HParams | None = None, sample_posteriors: bool = True) -> dict[str, np.ndarray]:
    """Average model outputs over posterior samples of z0 and u_t (eval mode: no dropout/CD).

    Parameters
    ----------
    model : trained LFADS.
    data : (trials, time, neurons) array (NaN = missing; zero-filled) or a split dict with ``data``
        (and ``ext``).
    key : PRNG key.
    n_samples : posterior samples averaged per trial (1 with ``sample_posteriors=False``: posterior means).
    batch_size : trials per compiled call (bounds memory).

    Returns
    -------
    dict of numpy arrays (trials first): ``rates`` (mean of the observation model per bin: counts
    per bin for Poisson, event size per bin ``q(kθ + s_min)`` for ZIG), ``factors``, ``gen_states``,
    ``con_inputs`` (inferred inputs), ``ic_mean``, ``ic_std`` (averaged over samples).
    """
    if not isinstance(model, LFADS):
        raise TypeError(f"model must be an LFADS model, got {type(model).__name__}")
    key = check_key(key)
    n_samples = check_int(n_samples, "n_samples", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    if hp is not None and not isinstance(hp, HParams):
        raise TypeError(f"hp must be HParams (HParams.create(...)), got {type(hp).__name__}")
    # shapes against the model, no inf, NaN = missing (zero-filled below), counts >= 0 for Poisson
    check_dataset(data, model.config, sbtt=True, name="data", array_ok=True)
    x = data["data"] if isinstance(data, dict) else data
    ext = data.get("ext") if isinstance(data, dict) else None
    dtype = model.ic_prior_mean.dtype
    x = np.asarray(x, dtype=np.float64)
    x = np.where(np.isnan(x), 0.0, x)
    hp = hp if hp is not None else HParams.create()
    if not sample_posteriors:
        n_samples = 1

    run = functools.partial(_infer_batch, model, hp, n_samples=n_samples, sample_posteriors=sample_posteriors)

    outs = []
    n = x.shape[0]
    bs = min(batch_size, n)

    def pad(a):  # fixed batch shape: one compilation
        return np.concatenate([a, np.repeat(a[-1:], bs - len(a), axis=0)]) if len(a) < bs else a

    for i, s in enumerate(range(0, n, bs)):
        m = min(bs, n - s)
        xb = jnp.asarray(pad(x[s:s + bs]), dtype)
        eb = jnp.asarray(pad(np.asarray(ext[s:s + bs])), dtype) if ext is not None else None
        o = run(xb, eb, jax.random.fold_in(key, i))
        outs.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[:m], o))
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
