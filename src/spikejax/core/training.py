"""One optax training loop for every family.

:func:`fit` trains the inexact-array leaves of an equinox model chosen by a *filter spec*
(freezing is a filter, never a copy of the model) with any optax optimiser. It

* runs ``steps_per_call`` optimiser steps inside one compiled ``lax.scan`` per host call (one
  compilation for the whole fit, no per-step host round trip),
* draws minibatches on the device from a per-epoch permutation (``fold_in(key, epoch)``),
* evaluates an optional validation function after each call and stops early
  (:class:`EarlyStopping`),
* guards against NaN/inf: a non-finite loss or parameter raises
  :class:`~spikejax.core.errors.TrainingDivergedError` naming the step and the loss,
* shows a tqdm progress bar (quiet when stderr is not a terminal, or ``progress=False``),
* checkpoints every ``checkpoint_every`` steps into a folder (equinox leaf serialisation plus a
  JSON sidecar, written to temporary names and renamed) and resumes exactly: the step keys are
  ``fold_in(key, step)`` and the permutation keys ``fold_in(key, epoch)``, so an interrupted and
  resumed fit gives the same parameters as an uninterrupted one.

Because Adam-like optimisers act elementwise, a *batch of independent models* (a model
whose leaves carry a leading model axis, e.g. many cells) is trained independently by
summing the per-model losses: this is how families fit many models in one program.
:func:`make_train_step` exposes the pure step for ``vmap`` (e.g. population-based training).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .errors import ConfigError, DataFormatError, TrainingDivergedError
from .io import atomic_path, load_json, save_json

__all__ = [
    "EarlyStopping",
    "FitResult",
    "trainable",
    "make_train_step",
    "fit",
    "save_checkpoint",
    "load_checkpoint",
]


def trainable(model: Any, frozen: Callable[[Any], Any] | None = None) -> Any:
    """Filter spec: ``True`` for every inexact-array leaf of ``model`` except those selected by ``frozen``.

    ``frozen`` is an ``eqx.tree_at``-style selector, e.g. ``lambda m: (m.g.a, m.g.b)``; its
    targets may be arrays or whole sub-modules (all their leaves are frozen).
    """
    spec = jax.tree_util.tree_map(eqx.is_inexact_array, model)
    if frozen is None:
        return spec

    def _false_tree(sub):
        return jax.tree_util.tree_map(lambda _: False, sub)

    return eqx.tree_at(frozen, spec, replace_fn=_false_tree)


@dataclasses.dataclass
class EarlyStopping:
    """Stop when the monitored metric has not improved by ``min_delta`` for ``patience`` evaluations.

    ``monitor`` is ``"val"`` (the value of ``val_fn``) or ``"train"`` (the mean training loss of the
    call); ``mode`` is ``"min"`` or ``"max"``. ``min_steps`` delays stopping (e.g. until KL ramps end).
    """

    patience: int = 10
    min_delta: float = 0.0
    monitor: str = "val"
    mode: str = "min"
    min_steps: int = 0

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ConfigError(f"EarlyStopping.patience must be >= 1, got {self.patience}")
        if self.mode not in ("min", "max"):
            raise ConfigError(f"EarlyStopping.mode must be 'min' or 'max', got {self.mode!r}")
        if self.monitor not in ("val", "train"):
            raise ConfigError(f"EarlyStopping.monitor must be 'val' or 'train', got {self.monitor!r}")

    def improved(self, value: float, best: float | None) -> bool:
        if best is None or not math.isfinite(best):
            return math.isfinite(value)
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    model : the trained model (the best one by the monitored metric when ``restore_best``).
    opt_state : the optimiser state after the last step.
    history : dict of numpy arrays, one entry per host call: ``step`` (steps done), ``loss`` (mean
        training loss over the call), ``val`` (when ``val_fn`` is given) and every aux key.
    n_steps : optimiser steps taken.
    stop_reason : ``"completed"``, ``"early_stopping"`` or ``"callback"``.
    best_step : step of the best monitored value (or ``None``).
    """

    model: Any
    opt_state: Any
    history: dict[str, np.ndarray]
    n_steps: int
    stop_reason: str
    best_step: int | None = None


def make_train_step(
    loss_fn: Callable[..., Any],
    optimizer: optax.GradientTransformation,
    static: Any,
    *,
    has_aux: bool = False,
) -> Callable[..., tuple[Any, Any, jax.Array, Any]]:
    """Pure optimiser step ``(params, opt_state, batch, key) -> (params, opt_state, loss, aux)``.

    ``params``/``static`` are the two halves of ``eqx.partition(model, filter_spec)``; ``loss_fn``
    is ``loss_fn(model, batch, key) -> loss`` (or ``(loss, aux)`` with ``has_aux``). The step is
    pure, so it can be ``jit``-ed, ``vmap``-ed over a population, or scanned.
    """

    def loss_of(params, batch, key):
        out = loss_fn(eqx.combine(params, static), batch, key)
        return out if has_aux else (out, {})

    grad_fn = eqx.filter_value_and_grad(loss_of, has_aux=True)

    def step(params, opt_state, batch, key):
        (loss, aux), grads = grad_fn(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = eqx.apply_updates(params, updates)
        return params, opt_state, loss, aux

    return step


def _n_samples(data: Any) -> int | None:
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        return None
    n = {int(np.shape(leaf)[0]) for leaf in leaves}
    if len(n) != 1:
        raise ConfigError(f"all arrays in data must share their leading (sample) axis, got sizes {sorted(n)}")
    return n.pop()


def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree) if eqx.is_inexact_array(x)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _auto_progress() -> bool:
    try:
        return sys.stderr.isatty()
    except Exception:
        return False


def fit(
    model: Any,
    loss_fn: Callable[..., Any],
    data: Any = None,
    *,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    n_steps: int | None = None,
    n_epochs: int | None = None,
    batch_size: int | None = None,
    shuffle: bool = True,
    filter_spec: Any = None,
    has_aux: bool = False,
    steps_per_call: int | None = None,
    val_fn: Callable[[Any], Any] | None = None,
    early_stopping: EarlyStopping | None = None,
    restore_best: bool = False,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    nan_guard: bool = True,
    progress: bool | None = None,
    callback: Callable[[int, Any, dict[str, float]], bool | None] | None = None,
    desc: str = "fit",
) -> FitResult:
    """Train ``model`` with ``optimizer`` on ``loss_fn``.

    Parameters
    ----------
    model
        An equinox module (or any pytree).
    loss_fn
        ``loss_fn(model, batch, key) -> scalar`` (or ``(scalar, aux_dict)`` with ``has_aux=True``).
        ``batch`` is a minibatch of ``data`` (or all of it, or ``None`` without data); ``key`` is
        ``fold_in(key, step)``.
    data
        Pytree of arrays sharing a leading sample axis, or ``None``.
    optimizer
        Any optax transformation. Put hyperparameters you will change in
        ``optax.inject_hyperparams`` so they are array leaves (no recompilation).
    key
        PRNG key for minibatch order and the per-step keys.
    n_steps, n_epochs
        Length of training: exactly one of them. An epoch is ``N // batch_size`` steps (one step
        without ``batch_size``).
    batch_size
        Minibatch size (remainder dropped each epoch); ``None`` for full batch.
    shuffle
        Reshuffle samples every epoch (else take minibatches in order).
    filter_spec
        Which leaves train: a pytree of bools like ``model`` (see :func:`trainable`); default all
        inexact arrays.
    steps_per_call
        Steps per compiled call (evaluation, early stopping, NaN checks and checkpoints happen at
        call boundaries). Default: one epoch, at least 1 and at most 100 steps for full batch.
    val_fn
        ``val_fn(model) -> scalar`` evaluated after each call (jit it yourself if expensive).
    early_stopping
        An :class:`EarlyStopping`; ``monitor="val"`` needs ``val_fn``.
    restore_best
        Return the model with the best monitored value instead of the last one.
    checkpoint_dir, checkpoint_every
        Save the state every ``checkpoint_every`` steps (a multiple of ``steps_per_call``) into this
        folder; with ``resume=True`` a fit finding a checkpoint there continues from it.
    nan_guard
        Raise :class:`TrainingDivergedError` on a non-finite loss or parameter.
    progress
        tqdm bar; default on when stderr is a terminal.
    callback
        ``callback(step, model, logs) -> stop?`` after each call.
    """
    if (n_steps is None) == (n_epochs is None):
        raise ConfigError("fit needs exactly one of n_steps= or n_epochs=")
    n_samples = _n_samples(data) if data is not None else None
    if batch_size is not None:
        if n_samples is None:
            raise ConfigError("batch_size needs data with a leading sample axis")
        if not 1 <= batch_size <= n_samples:
            raise ConfigError(f"batch_size must be in [1, {n_samples}] (number of samples), got {batch_size}")
        n_batches = n_samples // batch_size
    else:
        n_batches = 1
    total = int(n_steps) if n_steps is not None else int(n_epochs) * n_batches
    if total < 0:
        raise ConfigError(f"n_steps/n_epochs must be >= 0, got {n_steps if n_steps is not None else n_epochs}")
    if steps_per_call is None:
        steps_per_call = n_batches if batch_size is not None else min(100, max(total, 1))
    steps_per_call = max(1, min(int(steps_per_call), max(total, 1)))
    if checkpoint_dir is not None:
        checkpoint_every = checkpoint_every or steps_per_call
        if checkpoint_every % steps_per_call:
            raise ConfigError(
                f"checkpoint_every ({checkpoint_every}) must be a multiple of steps_per_call ({steps_per_call})"
            )
    if early_stopping is not None and early_stopping.monitor == "val" and val_fn is None:
        raise ConfigError("EarlyStopping(monitor='val') needs val_fn=")

    if filter_spec is None:
        filter_spec = trainable(model)
    params, static = eqx.partition(model, filter_spec)
    opt_state = optimizer.init(params)
    step_fn = make_train_step(loss_fn, optimizer, static, has_aux=has_aux)
    data_key, step_key = jax.random.split(key)

    def get_batch(step):
        if data is None or batch_size is None:
            return data
        epoch, i = step // n_batches, step % n_batches
        if shuffle:
            perm = jax.random.permutation(jax.random.fold_in(data_key, epoch), n_samples)
        else:
            perm = jnp.arange(n_samples)
        idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
        return jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), data)

    @eqx.filter_jit
    def run_call(params, opt_state, start, n_active):
        def body(carry, j):
            p, s = carry
            step = start + j
            batch = get_batch(step)
            p2, s2, loss, aux = step_fn(p, s, batch, jax.random.fold_in(step_key, step))
            active = j < n_active
            keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new, old)
            return (keep(p2, p), keep(s2, s)), (loss, aux)

        (params, opt_state), (losses, auxs) = jax.lax.scan(body, (params, opt_state), jnp.arange(steps_per_call))
        return params, opt_state, losses, auxs, _all_finite(params)

    history: dict[str, list[float]] = {"step": [], "loss": []}
    step = 0
    best_val: float | None = None
    best_step: int | None = None
    best_params = params
    bad_evals = 0
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None

    loaded = load_checkpoint(ckpt, (params, opt_state, best_params)) if (ckpt is not None and resume) else None
    if loaded is not None:
        step, (params, opt_state, best_params), meta = loaded
        history = {k: list(v) for k, v in meta["history"].items()}
        best_val, best_step, bad_evals = meta["best_val"], meta["best_step"], int(meta["bad_evals"])

    show = _auto_progress() if progress is None else bool(progress)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=step, desc=desc, disable=not show, leave=False, dynamic_ncols=True)
    stop_reason = "completed"
    try:
        while step < total:
            n_active = min(steps_per_call, total - step)
            params, opt_state, losses, auxs, finite = run_call(params, opt_state, jnp.asarray(step), jnp.asarray(n_active))
            losses = np.asarray(losses)[:n_active]
            if nan_guard:
                bad = np.flatnonzero(~np.isfinite(losses))
                if bad.size:
                    s_bad = step + int(bad[0])
                    raise TrainingDivergedError(
                        f"{desc}: the loss became {losses[bad[0]]} at step {s_bad} (last finite loss: "
                        f"{losses[bad[0] - 1] if bad[0] > 0 else 'none in this call'}). Lower the learning rate, "
                        "clip gradients, check the data for NaN/inf, or enable float64 with "
                        "jax.config.update('jax_enable_x64', True)."
                    )
                if not bool(finite):
                    raise TrainingDivergedError(
                        f"{desc}: a parameter became NaN/inf between steps {step} and {step + n_active} "
                        f"(loss {losses[-1]}). Lower the learning rate or enable float64."
                    )
            step += n_active
            logs = {"loss": float(np.mean(losses))}
            for k, v in (auxs or {}).items():
                v = np.asarray(v)[:n_active]
                logs[k] = v.mean(axis=0) if v.ndim > 1 else float(v.mean())
            model_now = None
            if val_fn is not None:
                model_now = eqx.combine(params, static)
                logs["val"] = float(val_fn(model_now))
            history["step"].append(step)
            for k, v in logs.items():
                history.setdefault(k, []).append(v.tolist() if isinstance(v, np.ndarray) else v)
            bar.update(n_active)
            bar.set_postfix({k: v for k, v in logs.items() if isinstance(v, float)}, refresh=False)

            stop = False
            if early_stopping is not None or restore_best:
                es = early_stopping or EarlyStopping(monitor="val" if val_fn is not None else "train")
                value = logs["val"] if es.monitor == "val" else logs["loss"]
                if es.improved(value, best_val):
                    best_val, best_step, best_params, bad_evals = value, step, params, 0
                else:
                    bad_evals += 1
                if early_stopping is not None and bad_evals >= es.patience and step >= es.min_steps:
                    stop_reason, stop = "early_stopping", True
            if callback is not None:
                model_now = model_now if model_now is not None else eqx.combine(params, static)
                if callback(step, model_now, logs):
                    stop_reason, stop = "callback", True
            if ckpt is not None and (step % checkpoint_every == 0 or step == total or stop):
                meta = {"history": history, "best_val": best_val, "best_step": best_step, "bad_evals": bad_evals}
                save_checkpoint(ckpt, step, (params, opt_state, best_params), meta)
            if stop:
                break
    finally:
        bar.close()

    final = best_params if (restore_best and best_step is not None) else params
    hist = {k: np.asarray(v) for k, v in history.items()}
    return FitResult(eqx.combine(final, static), opt_state, hist, step, stop_reason, best_step)


def save_checkpoint(directory: str | Path, step: int, state: Any, meta: dict[str, Any] | None = None) -> Path:
    """Write a training checkpoint into ``directory`` atomically.

    ``state`` (any pytree of arrays: parameters, optimiser state, ...) is saved with equinox's leaf
    serialisation as ``state-<step>.eqx``; then ``latest.json`` (``step``, the state file name and the
    JSON-able ``meta``: history, early-stopping counters, ...) is replaced atomically, and the previous
    state file is removed. A crash at any point leaves the previous checkpoint usable.
    """
    ckpt = Path(directory)
    ckpt.mkdir(parents=True, exist_ok=True)
    name = f"state-{int(step):09d}.eqx"
    with atomic_path(ckpt / name, suffix=".eqx") as tmp:
        eqx.tree_serialise_leaves(tmp, state)
    previous = load_json(ckpt / "latest.json").get("state") if (ckpt / "latest.json").is_file() else None
    save_json(ckpt / "latest.json", {"step": int(step), "state": name, "meta": meta or {}}, indent=None)
    if previous and previous != name:
        (ckpt / previous).unlink(missing_ok=True)
    return ckpt / name


def load_checkpoint(directory: str | Path, like: Any) -> tuple[int, Any, dict[str, Any]] | None:
    """Latest checkpoint of ``directory`` as ``(step, state, meta)``, or ``None`` if there is none.

    ``like`` is a skeleton pytree with the structure, shapes and dtypes of the saved state.
    """
    ckpt = Path(directory)
    if not (ckpt / "latest.json").is_file():
        return None
    info = load_json(ckpt / "latest.json")
    try:
        state = eqx.tree_deserialise_leaves(ckpt / info["state"], like)
    except Exception as exc:
        raise DataFormatError(
            f"checkpoint {ckpt / info.get('state', '?')} does not match this model/optimiser or is damaged "
            f"({type(exc).__name__}: {exc}); pass resume=False or a fresh checkpoint folder"
        ) from None
    return int(info["step"]), state, dict(info.get("meta", {}))
