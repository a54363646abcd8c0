"""A hand-written LFADS epoch (minibatch permutation + scan of the training step), for the benchmarks only.

The library trains on :func:`spikejax.core.fit` / :func:`spikejax.core.fit_population` (one trainer);
this pure epoch function lets ``benchmarks/lfads.py`` and ``benchmarks/lfads_anchor.py`` time the bare
compiled step vmapped by hand, with the same minibatch order (``fold_in(key, epoch)``) as before.
"""

import jax
import jax.numpy as jnp

from spikejax.core import make_train_step
from spikejax.lfads import loss_terms
from spikejax.lfads import rng


def _loss_for_step(model, batch, key):
    data, hp, epoch = batch
    return loss_terms(model, data, hp, epoch, key=key, training=True)


def make_epoch_fn(static, optimizer, n_train: int, batch_size: int):
    """Pure ``(params, opt_state, hp, data, epoch, key) -> (params, opt_state, mean_loss, aux_means)``.

    One epoch = ``n_train // batch_size`` minibatches from the permutation ``fold_in(key, epoch)``.
    """
    step = make_train_step(_loss_for_step, optimizer, static, has_aux=True)
    n_batches = max(n_train // batch_size, 1)

    def epoch_fn(params, opt_state, hp, data, epoch, key):
        perm = jax.random.permutation(rng.fold_in(key, epoch), n_train)
        ekey = rng.fold_in(rng.fold_in(key, 1_000_003), epoch)

        def body(carry, i):
            p, s = carry
            idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
            mb = jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), data)
            p, s, loss, aux = step(p, s, (mb, hp, epoch), rng.fold_in(ekey, i))
            return (p, s), (loss, aux)

        (params, opt_state), (losses, auxs) = jax.lax.scan(body, (params, opt_state), jnp.arange(n_batches))
        return params, opt_state, jnp.mean(losses), jax.tree_util.tree_map(jnp.mean, auxs)

    return epoch_fn
