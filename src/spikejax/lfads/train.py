"""Training LFADS: optimiser, epoch step, smoothed validation, plateau decay, early stopping, checkpoints.

The per-step update is :func:`spikejax.core.make_train_step` (pure, so :mod:`spikejax.lfads.pbt`
vmaps the very same step over a worker population). One compiled call runs a whole epoch
(``lax.scan`` over minibatches of an on-device permutation ``fold_in(key, epoch)``), so the
training is bit-for-bit resumable from a checkpoint.

Why not :func:`spikejax.core.fit` directly: LFADS needs the epoch inside the loss (KL/L2 ramps),
host-side learning-rate changes from the *validation* metric (plateau decay) and a smoothed
validation metric for early stopping that only counts after the ramps. ``fit``'s loss sees
neither the step nor the optimiser state, so this loop reuses its building blocks
(``make_train_step``, ``EarlyStopping`` semantics, atomic checkpoint IO, the NaN guard and
error types, tqdm) around an epoch-aware step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core.errors import ConfigError, TrainingDivergedError
from ..core.io import atomic_path, load_json, save_json
from ..core.training import make_train_step
from .data import check_dataset, make_sv_mask
from .loss import lfads_loss
from .model import LFADS, HParams

__all__ = ["TrainConfig", "TrainResult", "make_optimizer", "make_epoch_fn", "make_eval_fn", "train", "set_lr", "get_lr"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (lfads-torch names; spec §1.6)."""

    lr_init: float = 4e-3
    lr_stop: float = 1e-5
    lr_decay: float = 0.95
    lr_patience: int = 6
    lr_scheduler: bool = True
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.0
    max_grad_norm: float = 200.0
    batch_size: int = 256
    max_epochs: int = 1000
    early_stopping_patience: int = 200
    smoothing: float = 0.7
    sv_rate: float = 0.0
    sv_seed: int = 0
    checkpoint_every: int = 25

    def __post_init__(self):
        if not (0 < self.lr_init and 0 < self.lr_stop <= self.lr_init):
            raise ConfigError(f"need 0 < lr_stop <= lr_init, got lr_init={self.lr_init}, lr_stop={self.lr_stop}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.batch_size < 1 or self.max_epochs < 0 or self.lr_patience < 1 or self.early_stopping_patience < 1:
            raise ConfigError("batch_size, lr_patience, early_stopping_patience must be >= 1 and max_epochs >= 0")
        if not 0 <= self.sv_rate < 1:
            raise ConfigError(f"sv_rate must be in [0, 1), got {self.sv_rate}")
        if not 0 < self.smoothing <= 1:
            raise ConfigError(f"smoothing must be in (0, 1], got {self.smoothing}")
        if self.max_grad_norm <= 0:
            raise ConfigError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: best model, last optimiser state, per-epoch history (numpy arrays)."""

    model: LFADS
    hp: HParams
    opt_state: Any
    history: dict[str, np.ndarray]
    n_epochs: int
    best_epoch: int | None
    stop_reason: str
    seconds: float


def make_optimizer(tc: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping then AdamW; ``learning_rate`` and ``weight_decay`` are injected array leaves."""

    def build(learning_rate, weight_decay):
        return optax.chain(
            optax.clip_by_global_norm(tc.max_grad_norm),
            optax.adamw(learning_rate, b1=tc.adam_beta1, b2=tc.adam_beta2, eps=tc.adam_epsilon,
                        weight_decay=weight_decay),
        )

    return optax.inject_hyperparams(build)(learning_rate=tc.lr_init, weight_decay=tc.weight_decay)


def get_lr(opt_state) -> jax.Array:
    return opt_state.hyperparams["learning_rate"]


def set_lr(opt_state, lr):
    """Return ``opt_state`` with the learning rate replaced (same dtype/shape: no recompilation)."""
    old = opt_state.hyperparams["learning_rate"]
    hyper = dict(opt_state.hyperparams)
    hyper["learning_rate"] = jnp.broadcast_to(jnp.asarray(lr, old.dtype), old.shape)
    return opt_state._replace(hyperparams=hyper)


def _loss_for_step(model, batch, key):
    data, hp, epoch = batch
    return lfads_loss(model, data, hp, epoch, key=key, training=True)


def make_epoch_fn(static, optimizer, n_train: int, batch_size: int):
    """Pure ``(params, opt_state, hp, data, epoch, key) -> (params, opt_state, mean_loss, aux_means)``.

    One epoch = ``n_train // batch_size`` minibatches from the permutation ``fold_in(key, epoch)``.
    """
    step = make_train_step(_loss_for_step, optimizer, static, has_aux=True)
    n_batches = max(n_train // batch_size, 1)

    def epoch_fn(params, opt_state, hp, data, epoch, key):
        perm = jax.random.permutation(jax.random.fold_in(key, epoch), n_train)
        ekey = jax.random.fold_in(jax.random.fold_in(key, 1_000_003), epoch)

        def body(carry, i):
            p, s = carry
            idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
            mb = jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), data)
            p, s, loss, aux = step(p, s, (mb, hp, epoch), jax.random.fold_in(ekey, i))
            return (p, s), (loss, aux)

        (params, opt_state), (losses, auxs) = jax.lax.scan(body, (params, opt_state), jnp.arange(n_batches))
        return params, opt_state, jnp.mean(losses), jax.tree_util.tree_map(jnp.mean, auxs)

    return epoch_fn


def make_eval_fn(static):
    """Pure ``(params, hp, data, epoch, key) -> aux`` on a whole (validation) set, no dropout/CD.

    Posteriors are sampled (as lfads-torch does in validation), so the metric is stochastic;
    :func:`train` smooths it.
    """

    def eval_fn(params, hp, data, epoch, key):
        model = eqx.combine(params, static)
        loss, aux = lfads_loss(model, data, hp, epoch, key=jax.random.fold_in(key, epoch), training=False)
        return {**aux, "loss": loss}

    return eval_fn


@functools.lru_cache(maxsize=16)
def _compiled(config, opt_key: tuple, n_train: int, bs: int):
    """Jitted epoch/eval functions shared by every :func:`train` call with the same sizes (no recompiles).

    ``opt_key`` = (max_grad_norm, beta1, beta2, eps); the learning rate and weight decay are
    injected array leaves set after ``init``.
    """
    static = eqx.partition(LFADS(config, key=jax.random.PRNGKey(0)), eqx.is_inexact_array)[1]
    gn, b1, b2, eps = opt_key
    optimizer = make_optimizer(TrainConfig(max_grad_norm=gn, adam_beta1=b1, adam_beta2=b2, adam_epsilon=eps))
    return optimizer, jax.jit(make_epoch_fn(static, optimizer, n_train, bs)), jax.jit(make_eval_fn(static))


def device_splits(train_data, valid_data, dtype, tc: TrainConfig):
    """Both splits on the device, with the fixed sample-validation masks when ``tc.sv_rate > 0``."""
    tr = _to_device(train_data, dtype)
    va = _to_device(valid_data, dtype)
    if tc.sv_rate > 0:
        tr["sv_mask"] = jnp.asarray(make_sv_mask(tr["data"].shape, tc.sv_rate, tc.sv_seed))
        va["sv_mask"] = jnp.asarray(make_sv_mask(va["data"].shape, tc.sv_rate, tc.sv_seed + 1))
    return tr, va


def _to_device(data: dict[str, Any], dtype) -> dict[str, jax.Array]:
    out = {}
    for k, v in data.items():
        v = np.asarray(v)
        out[k] = jnp.asarray(v, dtype=bool if k == "sv_mask" else dtype)
    return out


def train(model: LFADS, train_data: dict[str, Any], valid_data: dict[str, Any], *, hp: HParams | None = None,
          config: TrainConfig | None = None, key: jax.Array, sbtt: bool = False,
          checkpoint_dir: str | Path | None = None, resume: bool = True, progress: bool | None = None,
          callback=None) -> TrainResult:
    """Train one LFADS model.

    Parameters
    ----------
    model : LFADS (its ``config`` fixes the sizes and the observation model).
    train_data, valid_data : dicts with ``data`` (trials × time × neurons; NaN = missing, needs
        ``sbtt=True``), optional ``recon`` and ``ext`` (see :func:`spikejax.lfads.lfads_loss`).
    hp : HParams (default ``HParams.create()``).
    config : TrainConfig.
    key : PRNG key (minibatch order, posterior samples, dropout).
    sbtt : allow missing (NaN) entries and train on the observed ones only (SBTT).
    checkpoint_dir, resume : save every ``config.checkpoint_every`` epochs; resume from there.
    progress : tqdm progress bar (default: when stderr is a terminal).
    callback : ``callback(epoch, logs) -> stop?`` after each epoch.

    Returns
    -------
    TrainResult with the model of the best smoothed validation recon (after the ramps) or the last.
    """
    tc = config or TrainConfig()
    hp = hp if hp is not None else HParams.create()
    c = model.config
    check_dataset(train_data, c, sbtt=sbtt, name="train_data")
    check_dataset(valid_data, c, sbtt=sbtt, name="valid_data")
    dtype = model.ic_prior_mean.dtype
    tr, va = device_splits(train_data, valid_data, dtype, tc)
    n_train = tr["data"].shape[0]
    bs = min(tc.batch_size, n_train)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    optimizer, epoch_fn, eval_fn = _compiled(c, (tc.max_grad_norm, tc.adam_beta1, tc.adam_beta2, tc.adam_epsilon),
                                             n_train, bs)
    opt_state = set_lr(optimizer.init(params), tc.lr_init)
    opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "weight_decay": jnp.asarray(
        tc.weight_decay, opt_state.hyperparams["weight_decay"].dtype)})
    k_train, k_val = jax.random.split(key)
    ramp_end = int(max(float(hp.kl_start_epoch) + float(hp.kl_increase_epoch),
                       float(hp.l2_start_epoch) + float(hp.l2_increase_epoch)))

    history: dict[str, list] = {}
    epoch = 0
    smth = None
    best = math.inf
    best_epoch = None
    best_params = params
    bad_es = bad_lr = 0
    lr_best = math.inf
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None and resume and (ckpt / "latest.json").is_file():
        meta = load_json(ckpt / "latest.json")
        params, opt_state, best_params = eqx.tree_deserialise_leaves(ckpt / meta["state"],
                                                                     (params, opt_state, best_params))
        epoch, smth, best, best_epoch = meta["epoch"], meta["smth"], meta["best"], meta["best_epoch"]
        bad_es, bad_lr, lr_best = meta["bad_es"], meta["bad_lr"], meta["lr_best"]
        history = {k: list(v) for k, v in meta["history"].items()}
        best = math.inf if best is None else best
        lr_best = math.inf if lr_best is None else lr_best

    show = (sys.stderr.isatty() if progress is None else bool(progress))
    from tqdm.auto import tqdm

    bar = tqdm(total=tc.max_epochs, initial=epoch, desc="lfads", disable=not show, leave=False, dynamic_ncols=True)
    stop_reason = "completed"
    t0 = time.perf_counter()
    try:
        while epoch < tc.max_epochs:
            e = jnp.asarray(epoch, dtype)
            params, opt_state, loss, aux = epoch_fn(params, opt_state, hp, tr, e, k_train)
            loss = float(loss)
            if not math.isfinite(loss) or not bool(jax.tree_util.tree_reduce(
                    lambda a, b: a & b, jax.tree_util.tree_map(lambda x: jnp.all(jnp.isfinite(x)), params))):
                raise TrainingDivergedError(
                    f"LFADS training diverged at epoch {epoch}: loss {loss}. Lower lr_init, lower max_grad_norm, "
                    "check the data for NaN/inf (missing entries need sbtt=True), or enable float64 with "
                    "jax.config.update('jax_enable_x64', True).")
            val = eval_fn(params, hp, va, e, k_val)
            vrec = float(val["recon"])
            smth = vrec if smth is None else (1 - tc.smoothing) * smth + tc.smoothing * vrec
            logs = {"epoch": epoch, "loss": loss, "lr": float(get_lr(opt_state))}
            logs.update({f"train/{k}": float(v) for k, v in aux.items()})
            logs.update({f"valid/{k}": float(v) for k, v in val.items()})
            logs["valid/recon_smth"] = smth
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            epoch += 1
            bar.update(1)
            bar.set_postfix({"loss": loss, "val": smth}, refresh=False)
            after_ramp = epoch >= ramp_end
            if smth < best:
                best, best_epoch, best_params = smth, epoch, params
                bad_es = 0
            elif after_ramp:
                bad_es += 1
            if tc.lr_scheduler and after_ramp:
                if smth < lr_best:
                    lr_best, bad_lr = smth, 0
                else:
                    bad_lr += 1
                    if bad_lr >= tc.lr_patience:
                        lr = max(float(get_lr(opt_state)) * tc.lr_decay, tc.lr_stop)
                        opt_state = set_lr(opt_state, lr)
                        bad_lr = 0
            stop = after_ramp and bad_es >= tc.early_stopping_patience
            if stop:
                stop_reason = "early_stopping"
            if callback is not None and callback(epoch, logs):
                stop, stop_reason = True, "callback"
            if ckpt is not None and (epoch % tc.checkpoint_every == 0 or epoch == tc.max_epochs or stop):
                _save(ckpt, epoch, (params, opt_state, best_params), history, smth, best, best_epoch, bad_es,
                      bad_lr, lr_best)
            if stop:
                break
    finally:
        bar.close()
    final = best_params if best_epoch is not None else params
    return TrainResult(eqx.combine(final, static), hp, opt_state, {k: np.asarray(v) for k, v in history.items()},
                       epoch, best_epoch, stop_reason, time.perf_counter() - t0)


def _save(ckpt: Path, epoch, state, history, smth, best, best_epoch, bad_es, bad_lr, lr_best) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    name = f"state-{epoch:07d}.eqx"
    with atomic_path(ckpt / name, suffix=".eqx") as tmp:
        eqx.tree_serialise_leaves(tmp, state)
    prev = load_json(ckpt / "latest.json").get("state") if (ckpt / "latest.json").is_file() else None
    fin = lambda v: v if (v is not None and math.isfinite(v)) else None  # noqa: E731
    save_json(ckpt / "latest.json", {"epoch": epoch, "state": name, "history": history, "smth": smth,
                                     "best": fin(best), "best_epoch": best_epoch, "bad_es": bad_es,
                                     "bad_lr": bad_lr, "lr_best": fin(lr_best)}, indent=None)
    if prev and prev != name:
        (ckpt / prev).unlink(missing_ok=True)
