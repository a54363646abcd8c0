"""Training LFADS on :func:`spikejax.core.fit`: AdamW, clipping, ramps, plateau decay, smoothed validation.

:func:`train` hands the LFADS loss to :func:`spikejax.core.fit` with ``with_step=True`` (the epoch,
``step // steps_per_epoch``, drives the KL/L2 ramps inside the compiled step) and the
hyperparameters as traced ``args``; the validation recon is exponentially smoothed
(``val_smoothing``), early stopping and the plateau learning-rate decay
(:class:`spikejax.core.PlateauDecay` on the injected learning rate) count only after the ramps,
and checkpoints resume exactly. :func:`spikejax.lfads.pbt` trains a worker population on :func:`spikejax.core.fit_population`.
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

from ..core.config import Config, option
from ..core.random import check_key
from ..core.results import StopReason, history_frame
from ..core.training import EarlyStopping, PlateauDecay, fit, get_hyperparam, set_hyperparam
from .data import check_dataset, make_sv_mask
from .model import LFADS, HParams
from .objective import loss_terms
from .records import LFADSTrainResult
from .rng import numpy_seed

__all__ = ["TrainConfig", "make_optimizer", "make_eval_fn", "train", "set_lr", "get_lr"]


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """Optimisation settings (lfads-torch names, spec §1.6; ``learning_rate`` is lfads-torch's ``lr_init``
    and ``n_epochs`` its ``max_epochs``)."""

    learning_rate: float = option(4e-3, gt=0, help="initial Adam step size")
    lr_stop: float = option(1e-5, gt=0, help="the plateau decay stops at this learning rate")
    lr_decay: float = option(0.95, gt=0, le=1, help="plateau decay factor")
    lr_patience: int = option(6, ge=1, help="epochs without improvement before a decay", unit="epochs")
    lr_scheduler: bool = option(True, help="plateau decay of the learning rate")
    adam_beta1: float = option(0.9, ge=0, lt=1, help="Adam first-moment decay")
    adam_beta2: float = option(0.999, ge=0, lt=1, help="Adam second-moment decay")
    adam_epsilon: float = option(1e-8, gt=0, help="Adam epsilon")
    weight_decay: float = option(0.0, ge=0, help="AdamW weight decay")
    max_grad_norm: float = option(200.0, gt=0, help="global gradient-norm clip")
    batch_size: int = option(256, ge=1, help="trials per minibatch", unit="trials")
    n_epochs: int = option(1000, ge=0, help="training length", unit="epochs")
    early_stopping_patience: int = option(200, ge=1, help="epochs without improvement before stopping",
                                          unit="epochs")
    smoothing: float = option(0.7, gt=0, le=1, help="weight of the newest validation recon in its smoothing")
    sv_rate: float = option(0.0, ge=0, lt=1, help="fraction of entries held out for sample validation")
    checkpoint_every: int = option(25, ge=1, help="checkpoint interval", unit="epochs")

    def validate(self) -> None:
        if self.lr_stop > self.learning_rate:
            raise self.error("lr_stop", f"must be <= learning_rate, got lr_stop={self.lr_stop}, "
                             f"learning_rate={self.learning_rate}")


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

    return optax.inject_hyperparams(build)(learning_rate=tc.learning_rate, weight_decay=tc.weight_decay)


def get_lr(opt_state) -> jax.Array:
    return get_hyperparam(opt_state, "learning_rate")


def set_lr(opt_state, lr):
    """Return ``opt_state`` with the learning rate replaced (same dtype/shape: no recompilation)."""
    return set_hyperparam(opt_state, "learning_rate", lr)


def make_eval_fn(static):
    """Pure ``(params, hp, data, epoch, key) -> aux`` on a whole (validation) set, no dropout/CD.

    Posteriors are sampled (as lfads-torch does in validation), so the metric is stochastic;
    :func:`train` smooths it.
    """

    def eval_fn(params, hp, data, epoch, key):
        model = eqx.combine(params, static)
        loss, aux = loss_terms(model, data, hp, epoch, key=jax.random.fold_in(key, epoch), training=False)
        return {**aux, "loss": loss}

    return eval_fn


def _fit_loss(model, batch, key, *, step, args):
    """The LFADS training loss as :func:`spikejax.core.fit` calls it (epoch from the traced step)."""
    hp, steps_per_epoch = args
    epoch = (step // steps_per_epoch).astype(model.ic_prior_mean.dtype)
    return loss_terms(model, batch, hp, epoch, key=key, training=True)


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


def sv_seed(key) -> int:
    """The NumPy seed of the sample-validation masks, from the caller's key (``fold_in(key, 3)``)."""
    return numpy_seed(jax.random.fold_in(key, 3))


def device_splits(train_data, valid_data, dtype, tc: TrainConfig, *, seed: int = 0):
    """Both splits on the device, with the fixed sample-validation masks (NumPy ``seed`` for the
    train split, ``seed + 1`` for the valid split) when ``tc.sv_rate > 0``."""
    tr = _to_device(train_data, dtype)
    va = _to_device(valid_data, dtype)
    if tc.sv_rate > 0:
        tr["sv_mask"] = jnp.asarray(make_sv_mask(tr["data"].shape, tc.sv_rate, seed))
        va["sv_mask"] = jnp.asarray(make_sv_mask(va["data"].shape, tc.sv_rate, seed + 1))
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
          callback=None) -> LFADSTrainResult:
    """Train one LFADS model (through :func:`spikejax.core.fit`).

    Parameters
    ----------
    model : LFADS (its ``config`` fixes the sizes and the observation model).
    train_data, valid_data : dicts with ``data`` (trials × time × neurons; NaN = missing, needs
        ``sbtt=True``), optional ``recon`` and ``ext`` (see :func:`spikejax.lfads.loss`).
    hp : HParams (default ``HParams.create()``).
    config : TrainConfig.
    key : PRNG key (minibatch order, posterior samples, dropout).
    sbtt : allow missing (NaN) entries and train on the observed ones only (SBTT).
    checkpoint_dir, resume : save every ``config.checkpoint_every`` epochs; resume from there.
    progress : tqdm progress bar (default: when stderr is a terminal or in IPython/Jupyter).
    callback : ``callback(epoch, logs) -> stop?`` after each epoch.

    Returns
    -------
    LFADSTrainResult with the model of the best smoothed validation recon or the last; ``history``
    per epoch: ``epoch``, ``loss``, ``learning_rate``, ``train/<term>``, ``valid/<term>``, ``valid/recon_smth``.
    """
    key = check_key(key)
    if not isinstance(model, LFADS):
        raise TypeError(f"model must be an LFADS model (LFADS(config, key=...)), got {type(model).__name__}")
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig (TrainConfig(...) or TrainConfig.from_dict(...)), got "
                        f"{type(config).__name__}")
    if hp is not None and not isinstance(hp, HParams):
        raise TypeError(f"hp must be HParams (HParams.create(...)), got {type(hp).__name__}")
    tc = config or TrainConfig()
    c = model.config
    hp = hp if hp is not None else HParams.create(dtype=model.ic_prior_mean.dtype)
    check_dataset(train_data, c, sbtt=sbtt, name="train_data")
    check_dataset(valid_data, c, sbtt=sbtt, name="valid_data")
    dtype = model.ic_prior_mean.dtype
    tr, va = device_splits(train_data, valid_data, dtype, tc, seed=sv_seed(key))
    n_train = tr["data"].shape[0]
    bs = min(tc.batch_size, n_train)
    n_batches = n_train // bs
    params = eqx.filter(model, eqx.is_inexact_array)
    optimizer, eval_fn = _compiled(c, (tc.max_grad_norm, tc.adam_beta1, tc.adam_beta2, tc.adam_epsilon))
    opt_state = set_lr(optimizer.init(params), tc.learning_rate)
    opt_state = set_hyperparam(opt_state, "weight_decay", tc.weight_decay)
    k_train, k_val = jax.random.split(key)
    ramp_end = int(max(float(hp.kl_start_epoch) + float(hp.kl_increase_epoch),
                       float(hp.l2_start_epoch) + float(hp.l2_increase_epoch)))

    def val_fn(m, *, step):
        epoch = step // n_batches - 1
        out = eval_fn(eqx.filter(m, eqx.is_inexact_array), hp, va, jnp.asarray(epoch, dtype), k_val)
        return {"val": out["recon"], **out}

    def to_logs(step, logs):
        out = {"epoch": step // n_batches - 1, "loss": logs["loss"], "learning_rate": logs.get("learning_rate", tc.learning_rate)}
        out.update({f"train/{k}": v for k, v in logs.items() if k not in ("loss", "val", "val_smth", "learning_rate")
                    and not k.startswith("val/")})
        out.update({f"valid/{k[4:]}": v for k, v in logs.items() if k.startswith("val/")})
        out["valid/recon_smth"] = logs["val_smth"]
        return out

    fit_cb = None if callback is None else (lambda step, m, logs: callback(step // n_batches, to_logs(step, logs)))
    ramp_steps = ramp_end * n_batches
    t0 = time.perf_counter()
    res = fit(model, _fit_loss, tr, optimizer=optimizer, key=k_train, n_epochs=tc.n_epochs, batch_size=bs,
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
        h["learning_rate"] = np.full(len(h["step"]), tc.learning_rate)
    per_epoch = [to_logs(int(s), {k: v[i] for k, v in h.items()}) for i, s in enumerate(h["step"])]
    history = history_frame({k: np.asarray([row[k] for row in per_epoch]) for k in (per_epoch[0] if per_epoch else {})},
                            index="epoch")
    best_epoch = None if res.best_step is None else int(res.best_step // n_batches)
    return LFADSTrainResult(model=res.model, history=history, stop_reason=StopReason.of(res.stop_reason),
                            seconds=max(time.perf_counter() - t0, 1e-9), hp=hp, opt_state=res.opt_state,
                            n_epochs=int(res.n_steps // n_batches), best_epoch=best_epoch, model_config=c, config=tc)
