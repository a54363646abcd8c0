"""Training LFADS on :func:`spikejax.core.fit`: AdamW, clipping, ramps, plateau decay, smoothed validation.

:func:`train` hands the LFADS loss to :func:`spikejax.core.fit` with ``with_step=True`` (the epoch,
``step // steps_per_epoch``, drives the KL/L2 ramps inside the compiled step) and the
hyperparameters as traced ``args``; the validation recon is exponentially smoothed
(``val_smoothing``), early stopping and the plateau learning-rate decay
(:class:`spikejax.core.PlateauDecay` on the injected learning rate) count only after the ramps,
and checkpoints resume exactly. :func:`make_epoch_fn` is the same step scanned over one epoch
as a pure function, which :mod:`spikejax.lfads.pbt` vmaps over a worker population.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core.errors import ConfigError
from ..core.training import EarlyStopping, PlateauDecay, fit, get_hyperparam, make_train_step, set_hyperparam
from . import rng
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
    """Global-norm clipping then AdamW; ``learning_rate`` and ``weight_decay`` are injected array leaves.

    The optimiser works on the parameters raveled into one vector (``optax.flatten``): the compiled
    training step then has a handful of optimiser kernels instead of several per parameter leaf
    (clipping by the global norm and AdamW are elementwise apart from the norm, so the update is
    the per-leaf one).
    """

    def build(learning_rate, weight_decay):
        return optax.flatten(optax.chain(
            optax.clip_by_global_norm(tc.max_grad_norm),
            optax.adamw(learning_rate, b1=tc.adam_beta1, b2=tc.adam_beta2, eps=tc.adam_epsilon,
                        weight_decay=weight_decay),
        ))

    return optax.inject_hyperparams(build)(learning_rate=tc.lr_init, weight_decay=tc.weight_decay)


def get_lr(opt_state) -> jax.Array:
    return get_hyperparam(opt_state, "learning_rate")


def set_lr(opt_state, lr):
    """Return ``opt_state`` with the learning rate replaced (same dtype/shape: no recompilation)."""
    return set_hyperparam(opt_state, "learning_rate", lr)


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


def _fit_loss(model, batch, key, *, step, args):
    """The LFADS training loss as :func:`spikejax.core.fit` calls it (epoch from the traced step)."""
    hp, steps_per_epoch = args
    epoch = (step // steps_per_epoch).astype(model.ic_prior_mean.dtype)
    return lfads_loss(model, batch, hp, epoch, key=key, training=True)


@functools.lru_cache(maxsize=16)
def _compiled(config, opt_key: tuple):
    """Optimiser and jitted validation function shared by every :func:`train` call with the same sizes.

    The same optimiser object (and the module-level loss) lets :func:`spikejax.core.fit` reuse
    its compiled training program across calls. ``opt_key`` = (max_grad_norm, beta1, beta2,
    eps); the learning rate and weight decay are injected array leaves set after ``init``.
    """
    static = eqx.partition(LFADS(config, key=jax.random.PRNGKey(0)), eqx.is_inexact_array)[1]
    gn, b1, b2, eps = opt_key
    optimizer = make_optimizer(TrainConfig(max_grad_norm=gn, adam_beta1=b1, adam_beta2=b2, adam_epsilon=eps))
    return optimizer, jax.jit(make_eval_fn(static))


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
    """Train one LFADS model (through :func:`spikejax.core.fit`).

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
    TrainResult with the model of the best smoothed validation recon or the last; ``history``
    per epoch: ``epoch``, ``loss``, ``lr``, ``train/<term>``, ``valid/<term>``, ``valid/recon_smth``.
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
    n_batches = n_train // bs
    params = eqx.filter(model, eqx.is_inexact_array)
    optimizer, eval_fn = _compiled(c, (tc.max_grad_norm, tc.adam_beta1, tc.adam_beta2, tc.adam_epsilon))
    opt_state = set_lr(optimizer.init(params), tc.lr_init)
    opt_state = set_hyperparam(opt_state, "weight_decay", tc.weight_decay)
    k_train, k_val = jax.random.split(key)
    ramp_end = int(max(float(hp.kl_start_epoch) + float(hp.kl_increase_epoch),
                       float(hp.l2_start_epoch) + float(hp.l2_increase_epoch)))

    def val_fn(m, *, step):
        epoch = step // n_batches - 1
        out = eval_fn(eqx.filter(m, eqx.is_inexact_array), hp, va, jnp.asarray(epoch, dtype), k_val)
        return {"val": out["recon"], **out}

    def to_logs(step, logs):
        out = {"epoch": step // n_batches - 1, "loss": logs["loss"], "lr": logs.get("learning_rate", tc.lr_init)}
        out.update({f"train/{k}": v for k, v in logs.items() if k not in ("loss", "val", "val_smth", "learning_rate")
                    and not k.startswith("val/")})
        out.update({f"valid/{k[4:]}": v for k, v in logs.items() if k.startswith("val/")})
        out["valid/recon_smth"] = logs["val_smth"]
        return out

    fit_cb = None if callback is None else (lambda step, m, logs: callback(step // n_batches, to_logs(step, logs)))
    ramp_steps = ramp_end * n_batches
    t0 = time.perf_counter()
    res = fit(model, _fit_loss, tr, optimizer=optimizer, key=k_train, n_epochs=tc.max_epochs, batch_size=bs,
              has_aux=True, with_step=True, args=(hp, jnp.asarray(n_batches)), opt_state=opt_state,
              val_fn=val_fn, val_smoothing=tc.smoothing,
              early_stopping=EarlyStopping(patience=tc.early_stopping_patience, monitor="val_smth",
                                           min_steps=ramp_steps),
              plateau=PlateauDecay(factor=tc.lr_decay, patience=tc.lr_patience, min_value=tc.lr_stop,
                                   monitor="val_smth", min_steps=ramp_steps) if tc.lr_scheduler else None,
              restore_best=True, checkpoint_dir=checkpoint_dir, checkpoint_every=tc.checkpoint_every * n_batches,
              resume=resume, progress=progress, callback=fit_cb, desc="lfads")
    h = res.curves
    if "learning_rate" not in h:  # no scheduler: constant
        h["learning_rate"] = np.full(len(h["step"]), tc.lr_init)
    per_epoch = [to_logs(int(s), {k: v[i] for k, v in h.items()}) for i, s in enumerate(h["step"])]
    history = {k: np.asarray([row[k] for row in per_epoch]) for k in (per_epoch[0] if per_epoch else {})}
    best_epoch = None if res.best_step is None else res.best_step // n_batches
    return TrainResult(res.model, hp, res.opt_state, history, res.n_steps // n_batches, best_epoch, res.stop_reason,
                       time.perf_counter() - t0)
