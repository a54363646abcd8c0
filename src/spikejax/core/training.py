"""Training in core: :func:`fit` (one model) on the one trainer, and the training utilities.

:func:`fit` trains the inexact-array leaves of an equinox model chosen by a *filter spec*
(freezing is a filter, never a copy of the model) with any optax optimiser. It is
:func:`spikejax.core.fit_population` with a population of one: the model is stacked into a
member axis of length 1, trained, and unstacked. So it has the trainer's minibatching
(:class:`Batching`), validation (:class:`Validation`, in the program or on the host), early stopping
(:class:`EarlyStopping`), plateau decay (:class:`PlateauDecay`), restore-best, NaN guard (here a
:class:`~spikejax.core.errors.TrainingDivergedError` naming the step), checkpoint/resume
(:class:`Checkpointing`: an interrupted and resumed fit equals an uninterrupted one), progress
(:class:`Progress`) and compile reuse (a small bounded cache keyed by the loss function, optimiser
object and model structure; data, ``args`` and keys are traced). ``steps_per_call`` steps form one
*round*, after which the validation, early stopping, plateau decay and the host ``callback`` run.

Because Adam-like optimisers act elementwise, a *batch of independent models* (a model
whose leaves carry a leading model axis, e.g. many cells) is trained independently by
summing the per-model losses. :func:`make_train_step` exposes the pure step for ``vmap``.
:func:`save_checkpoint` / :func:`load_checkpoint` are the trainer's atomic checkpoint files.
"""

from __future__ import annotations

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
from .results import Result, StopReason, history_frame
from .trainer_options import (Batching, Checkpointing, EarlyStopping, FixedBatches, MemberData, PlateauDecay, Progress,
                              Validation, accepts, check_int, check_trainer_call)
from .trainer_program import all_finite as _all_finite

__all__ = [
    "Batching",
    "Checkpointing",
    "EarlyStopping",
    "FixedBatches",
    "MemberData",
    "PlateauDecay",
    "Progress",
    "Validation",
    "FitResult",
    "get_hyperparam",
    "set_hyperparam",
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


def get_hyperparam(opt_state: Any, name: str = "learning_rate") -> jax.Array:
    """Current value of an ``optax.inject_hyperparams`` hyperparameter anywhere in ``opt_state``."""
    try:
        value = optax.tree_utils.tree_get(opt_state, name)
    except KeyError:  # several matches
        value = None
    if value is None:
        raise ConfigError(
            f"the optimiser state has no unique injected hyperparameter {name!r}; build the optimiser with "
            f"optax.inject_hyperparams(...)({name}=...)"
        )
    return value


def set_hyperparam(opt_state: Any, name: str, value: Any) -> Any:
    """``opt_state`` with the injected hyperparameter ``name`` replaced (same dtype and shape: no recompile)."""
    old = get_hyperparam(opt_state, name)
    return optax.tree_utils.tree_set(opt_state, **{name: jnp.broadcast_to(jnp.asarray(value, old.dtype), old.shape)})


class FitResult(Result):
    """What :func:`fit` returns (a :class:`~spikejax.core.Result`).

    Attributes
    ----------
    model : the trained model (the best one by the monitored metric when ``restore_best``).
    history : DataFrame, one row per round (``steps_per_call`` steps): ``step`` (steps done),
        ``loss`` (mean training loss over the round), ``val``, ``val/<key>``, ``val_smth`` (with a
        validation), every aux key and the plateau-decayed hyperparameter.
    stop_reason : :class:`~spikejax.core.StopReason` (``completed``, ``early_stopping`` or ``callback``).
    seconds : wall time in s.
    opt_state : the optimiser state after the last step.
    curves : the history as a dict of numpy arrays (shape (rounds,) or (rounds, ...)).
    n_steps : optimiser steps taken.
    best_step : step of the best monitored value (or ``None``).

    ``FitResult.load(path, like=model)`` reads a saved result (``like``: a model of the same
    structure; ``like={"model": model, "opt_state": opt_state}`` restores the optimiser state too).
    """

    opt_state: Any = None
    curves: dict = eqx.field(default_factory=dict)
    n_steps: int = 0
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


def _stack1(tree: Any) -> Any:
    """A population of one: every array leaf (and number) gets a leading axis of length 1."""
    def one(a):
        if eqx.is_array(a):
            return jnp.expand_dims(jnp.asarray(a), 0)
        if isinstance(a, (bool, int, float, np.number)) and not isinstance(a, bool):
            return jnp.asarray([a])
        return a

    return jax.tree_util.tree_map(one, tree)


def _unstack1(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: a[0] if eqx.is_array(a) else a, tree)


def _n_samples(data: Any) -> int | None:
    leaves = [x for x in jax.tree_util.tree_leaves(data) if eqx.is_array(x) or isinstance(x, np.ndarray)]
    if not leaves:
        return None
    n = {int(np.shape(leaf)[0]) for leaf in leaves}
    if len(n) != 1:
        raise ConfigError(f"all arrays in data must share their leading (sample) axis, got sizes {sorted(n)}")
    return n.pop()


def _logs(curves: dict[str, np.ndarray], row: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in curves.items():
        x = np.asarray(v[row, 0])
        out[k] = float(x) if x.ndim == 0 else x
    return out


def fit(
    model: Any,
    loss_fn: Callable[..., Any],
    data: Any = None,
    *,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    n_steps: int | None = None,
    n_epochs: int | None = None,
    batching: Batching | None = None,
    validation: Validation | None = None,
    early_stopping: EarlyStopping | None = None,
    plateau: PlateauDecay | None = None,
    checkpointing: Checkpointing | None = None,
    progress: Progress | bool | None = None,
    restore_best: bool = False,
    nan_guard: bool = True,
    filter_spec: Any = None,
    args: Any = None,
    opt_state: Any = None,
    steps_per_call: int | None = None,
    callback: Callable[[int, Any, dict[str, float]], bool | None] | None = None,
    # ---- keyword arguments of earlier versions
    batch_size: int | None = None,
    shuffle: bool = True,
    has_aux: bool | None = None,
    with_step: bool = False,
    val_fn: Callable[..., Any] | None = None,
    val_smoothing: float | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    desc: str = "fit",
) -> FitResult:
    """Train ``model`` with ``optimizer`` on ``loss_fn``: :func:`spikejax.core.fit_population` with one member.

    Parameters
    ----------
    model
        An equinox module (or any pytree).
    loss_fn
        ``loss_fn(model, batch, key, **kw)`` returning ``loss``, ``(loss, aux_dict)`` (or, with a
        carry, ``(loss, aux, carry)``; the form is detected). ``batch`` is a minibatch of ``data`` (or
        all of it, or ``None`` without data); ``key`` is ``fold_in(fold_in(key_step, step), 0)``. A
        loss declaring a ``step`` parameter (or any loss with ``with_step=True``) gets ``step=`` (the
        global step, a traced int32 array: ``step // steps_per_epoch`` is the epoch); with ``args``
        it gets ``args=`` (that pytree, traced: changing its values does not recompile).
    data
        Pytree of arrays sharing a leading sample axis, or ``None``.
    optimizer
        Any optax transformation. Put hyperparameters you will change in
        ``optax.inject_hyperparams`` so they are array leaves (no recompilation).
    key
        PRNG key for minibatch order and the per-step keys.
    n_steps, n_epochs
        Length of training: exactly one of them. An epoch is ``N // batch_size`` steps (one step
        without a batch size).
    batching
        :class:`Batching` (``batch_size``: remainder dropped each epoch; ``None``: full batch).
    validation
        :class:`Validation`: in the program (``fn(model, data, key, *, step=…)``) or on the host
        (``on_host=True``: ``fn(model)`` / ``fn(model, step=…)``). It may return a dict with the
        monitored value under ``"val"``; its other entries are logged as ``"val/<name>"``.
    early_stopping, plateau, restore_best
        :class:`EarlyStopping`, :class:`PlateauDecay` (of an injected hyperparameter, default the
        learning rate); ``restore_best`` returns the model with the best monitored value.
    checkpointing
        :class:`Checkpointing` (``every`` in rounds of ``steps_per_call`` steps); a fit finding a
        checkpoint continues from it (smoothing, early-stopping and plateau counters included: the
        resumed run equals an uninterrupted one).
    progress
        :class:`Progress` or ``True``/``False``/``None`` (default: when stderr is a terminal or in IPython/Jupyter).
    nan_guard
        Raise :class:`TrainingDivergedError` (naming the step) on a non-finite loss or parameter.
    filter_spec
        Which leaves train: a pytree of bools like ``model`` (see :func:`trainable`); default all
        inexact arrays.
    args, opt_state
        Traced extra argument of the loss; initial optimiser state (default ``optimizer.init``).
    steps_per_call
        Steps per round (validation, early stopping, the callback and checkpoints happen after each
        round). Default: one epoch, at least 1 and at most 100 steps for full batch.
    callback
        ``callback(step, model, logs) -> stop?`` on the host after each round (then one round runs per
        compiled call).
    batch_size, shuffle, val_fn, val_smoothing, checkpoint_dir, checkpoint_every, resume, desc, has_aux, with_step
        Earlier spellings: ``Batching(batch_size, shuffle)``, ``Validation(val_fn, smoothing=,
        on_host=True)`` (``val_fn(model)``, or ``val_fn(model, step=)`` with ``with_step``),
        ``Checkpointing(checkpoint_dir, every=checkpoint_every // steps_per_call, resume=)`` (here
        ``checkpoint_every`` counts steps), ``Progress(desc=)``; ``has_aux`` is ignored (detected).
    """
    from .population import fit_population

    if (n_steps is None) == (n_epochs is None):
        raise ConfigError("fit needs exactly one of n_steps= or n_epochs=")
    key = check_trainer_call(loss_fn, optimizer, key)
    n_steps = check_int(n_steps, "n_steps", low=0, optional=True)
    n_epochs = check_int(n_epochs, "n_epochs", low=0, optional=True)
    steps_per_call = check_int(steps_per_call, "steps_per_call", low=1, optional=True)
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every", low=1, optional=True)
    if batching is not None and (batch_size is not None or shuffle is not True):
        raise ConfigError("pass either batching=Batching(...) or batch_size=/shuffle=, not both")
    if batching is not None and not isinstance(batching, Batching):
        raise ConfigError(f"batching must be a Batching(...), got {type(batching).__name__}")
    batching = batching or Batching(batch_size=check_int(batch_size, "batch_size", low=1, optional=True), shuffle=shuffle)
    n_samples = _n_samples(data) if data is not None else None
    if batching.batch_size is not None:
        if n_samples is None:
            raise ConfigError("batch_size needs data with a leading sample axis")
        if not 1 <= batching.batch_size <= n_samples:
            raise ConfigError(f"batch_size must be in [1, {n_samples}] (number of samples), got {batching.batch_size}")
        n_batches = n_samples // batching.batch_size
    else:
        n_batches = 1
    total = int(n_steps) if n_steps is not None else int(n_epochs) * n_batches
    if total < 0:
        raise ConfigError(f"n_steps/n_epochs must be >= 0, got {n_steps if n_steps is not None else n_epochs}")
    spr = steps_per_call if steps_per_call is not None else (n_batches if batching.batch_size is not None else min(100, max(total, 1)))
    spr = max(1, min(int(spr), max(total, 1)))
    rounds = -(-total // spr)
    if validation is not None and (val_fn is not None or val_smoothing is not None):
        raise ConfigError("pass either validation=Validation(...) or val_fn=/val_smoothing=, not both")
    if val_fn is not None:
        validation = Validation(val_fn, smoothing=val_smoothing, on_host=True,
                                pass_step=bool(with_step) or accepts(val_fn, "step"))
    elif val_smoothing is not None and (isinstance(val_smoothing, (str, bool)) or not 0 < val_smoothing <= 1):
        raise ConfigError(f"val_smoothing must be in (0, 1], got {val_smoothing!r}")
    if checkpointing is not None and checkpoint_dir is not None:
        raise ConfigError("pass either checkpointing=Checkpointing(...) or checkpoint_dir=, not both")
    if checkpoint_dir is not None:
        every_steps = checkpoint_every or spr
        if every_steps % spr:
            raise ConfigError(f"checkpoint_every ({every_steps}) must be a multiple of steps_per_call ({spr})")
        checkpointing = Checkpointing(checkpoint_dir, every=every_steps // spr, resume=resume)
    if not isinstance(progress, Progress):
        progress = Progress(enabled=progress, desc=desc)
    per_round = callback is not None or (validation is not None and validation.on_host)
    chunk = 1 if per_round else ((checkpointing.every if checkpointing is not None else None) or max(rounds, 1))

    population = _stack1(model)
    static = eqx.partition(population, eqx.is_array)[1]
    hook = None
    if callback is not None:

        def hook(state, curves):
            row = state.epoch - 1
            model_now = _unstack1(state.model(static))
            if callback(min(state.epoch * spr, total), model_now, _logs(curves, row)):
                return state.stop()
            return None

    res = fit_population(
        population, loss_fn, data, optimizer=optimizer, key=key, n_epochs=rounds, batching=batching,
        validation=validation, early_stopping=early_stopping, plateau=plateau, checkpointing=checkpointing,
        progress=progress, restore_best=restore_best, nan_guard=nan_guard, filter_spec=filter_spec,
        args=None if args is None else _stack1(args), opt_state=None if opt_state is None else _stack1(opt_state),
        epochs_per_chunk=chunk, steps_per_epoch=spr, step_limit=total, between_chunks=hook, with_step=with_step,
        shard=False)
    status = str(res.status[0])
    n_done = int(res.n_epochs)
    curves = {k: np.asarray(v[:n_done, 0]) for k, v in res.curves.items()}
    if status == "diverged" and nan_guard:
        s = int(getattr(res, "_diverged_at", np.asarray([-1]))[0])
        finite = curves.get("loss", np.zeros(0))
        finite = finite[np.isfinite(finite)]
        raise TrainingDivergedError(
            f"{progress.desc}: the loss or a parameter became NaN/inf at step {s} (last finite round loss: "
            f"{finite[-1] if finite.size else 'none'}). Lower the learning rate, clip gradients, check the data "
            "for NaN/inf, or enable float64 with jax.config.update('jax_enable_x64', True).")
    rounds_done = int(res.epochs[0])
    steps = np.minimum((np.arange(n_done) + 1 + (rounds_done - n_done)) * spr, total)
    curves = {"step": steps, **curves}
    reason = {"early_stopping": StopReason.EARLY_STOPPING, "stopped": StopReason.CALLBACK}.get(status, StopReason.COMPLETED)
    best_epoch = int(res.best_epoch[0])
    return FitResult(
        model=_unstack1(res.model), history=history_frame(curves, "step"), stop_reason=reason, seconds=res.seconds,
        opt_state=_unstack1(res.state.opt_state), curves=curves, n_steps=min(rounds_done * spr, total),
        best_step=min(best_epoch * spr, total) if best_epoch >= 0 else None)


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
    try:
        previous = (_checkpoint_index(ckpt) or {}).get("state")
    except DataFormatError:  # a damaged index is replaced below; its state file is left alone
        previous = None
    save_json(ckpt / "latest.json", {"step": int(step), "state": name, "meta": meta or {}}, indent=None)
    if previous and previous != name:
        (ckpt / previous).unlink(missing_ok=True)
    return ckpt / name


def load_checkpoint(directory: str | Path, like: Any) -> tuple[int, Any, dict[str, Any]] | None:
    """Latest checkpoint of ``directory`` as ``(step, state, meta)``, or ``None`` if there is none.

    ``like`` is a skeleton pytree with the structure, shapes and dtypes of the saved state.
    """
    ckpt = Path(directory)
    info = _checkpoint_index(ckpt)
    if info is None:
        return None
    latest = ckpt / "latest.json"
    step, name, meta = info["step"], info["state"], info.get("meta", {})
    if not (ckpt / name).is_file():
        raise DataFormatError(f"checkpoint state file {ckpt / name} named by {latest} is missing; "
                              "pass resume=False or a fresh checkpoint folder")
    try:
        state = eqx.tree_deserialise_leaves(ckpt / name, like)
    except Exception as exc:
        raise DataFormatError(
            f"checkpoint {ckpt / name} does not match this model/optimiser or is damaged "
            f"({type(exc).__name__}: {exc}); pass resume=False or a fresh checkpoint folder"
        ) from None
    return int(step), state, dict(meta)


def _checkpoint_index(ckpt: Path) -> dict[str, Any] | None:
    """The validated ``latest.json`` of checkpoint folder ``ckpt`` (``None`` when there is none);
    a malformed index raises :class:`DataFormatError` naming the file."""
    latest = ckpt / "latest.json"
    if not latest.is_file():
        return None
    info = load_json(latest)
    if not isinstance(info, dict):
        raise DataFormatError(f"checkpoint index {latest} must hold a JSON object with 'step' and 'state', "
                              f"got a {type(info).__name__}; pass resume=False or a fresh checkpoint folder")
    missing = [k for k in ("step", "state") if k not in info]
    if missing:
        raise DataFormatError(f"checkpoint index {latest} is missing key(s) {missing} (it has {sorted(info)}); "
                              "pass resume=False or a fresh checkpoint folder")
    step, name, meta = info["step"], info["state"], info.get("meta", {})
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise DataFormatError(f"checkpoint index {latest}: 'step' must be an integer >= 0, got {step!r}")
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".eqx"):
        raise DataFormatError(f"checkpoint index {latest}: 'state' must name a .eqx file in the same folder, got {name!r}")
    if not isinstance(meta, dict):
        raise DataFormatError(f"checkpoint index {latest}: 'meta' must be a JSON object, got {type(meta).__name__}")
    return info
