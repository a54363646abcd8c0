"""One optax training loop for every family.

:func:`fit` trains the inexact-array leaves of an equinox model chosen by a *filter spec*
(freezing is a filter, never a copy of the model) with any optax optimiser. It

* runs ``steps_per_call`` optimiser steps inside one compiled ``lax.scan`` per host call (one
  compilation for the whole fit, no per-step host round trip),
* draws minibatches on the device from a per-epoch permutation (``fold_in(key, epoch)``),
* evaluates an optional validation function after each call (optionally exponentially
  smoothed), stops early (:class:`EarlyStopping`) and decays an injected hyperparameter such as
  the learning rate when the monitored metric plateaus (:class:`PlateauDecay`),
* can hand the loss the global step (a traced array: epoch-dependent ramps without recompiling)
  and extra traced arguments (``args``, e.g. hyperparameters),
* guards against NaN/inf: a non-finite loss or parameter raises
  :class:`~spikejax.core.errors.TrainingDivergedError` naming the step and the loss,
* shows a tqdm progress bar (quiet when stderr is not a terminal, or ``progress=False``),
* checkpoints every ``checkpoint_every`` steps into a folder (equinox leaf serialisation plus a
  JSON sidecar, written to temporary names and renamed) and resumes exactly: the step keys are
  ``fold_in(key, step)`` and the permutation keys ``fold_in(key, epoch)``, so an interrupted and
  resumed fit gives the same parameters as an uninterrupted one,
* reuses its compiled program across calls with the same loss function, optimiser object and
  model structure (a small bounded cache; data, ``args`` and keys are traced arguments).

Because Adam-like optimisers act elementwise, a *batch of independent models* (a model
whose leaves carry a leading model axis, e.g. many cells) is trained independently by
summing the per-model losses: this is how families fit many models in one program.
:func:`make_train_step` exposes the pure step for ``vmap`` (e.g. population-based training).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections import OrderedDict
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
    "PlateauDecay",
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


@dataclasses.dataclass
class EarlyStopping:
    """Stop when the monitored metric has not improved by ``min_delta`` for ``patience`` evaluations.

    ``monitor`` is ``"val"`` (the value of ``val_fn``), ``"val_smth"`` (its exponential smoothing,
    see ``fit(val_smoothing=)``), ``"train"`` (the mean training loss of the call),
    ``"train/<key>"`` (the mean of the loss's aux entry ``<key>``) or ``"val/<key>"`` (an entry of
    a dict-valued ``val_fn``); ``mode`` is ``"min"`` or ``"max"``. Evaluations without
    improvement are counted only from ``min_steps`` on (e.g. once KL ramps end); the best value is
    tracked throughout.

    ``rule="unchanged"`` stops instead when the monitored value has been *identical* for
    ``patience`` evaluations in a row (GRNN's criterion; ``min_delta`` and ``mode`` then only
    affect the best value that is tracked).
    """

    patience: int = 10
    min_delta: float = 0.0
    monitor: str = "val"
    mode: str = "min"
    min_steps: int = 0
    rule: str = "no_improvement"

    def __post_init__(self) -> None:
        _check_monitoring(self)
        if self.rule not in _RULES:
            raise ConfigError(f"EarlyStopping.rule must be one of {_RULES}, got {self.rule!r}")

    def improved(self, value: float, best: float | None) -> bool:
        return _improved(value, best, self.mode, self.min_delta)


_MONITORS = ("val", "val_smth", "train")
_RULES = ("no_improvement", "unchanged")


def _check_monitoring(obj) -> None:
    """Shared checks of EarlyStopping / PlateauDecay (patience, mode, monitor)."""
    name = type(obj).__name__
    if obj.patience < 1:
        raise ConfigError(f"{name}.patience must be >= 1, got {obj.patience}")
    if obj.mode not in ("min", "max"):
        raise ConfigError(f"{name}.mode must be 'min' or 'max', got {obj.mode!r}")
    prefixed = isinstance(obj.monitor, str) and obj.monitor.startswith(("train/", "val/")) and len(obj.monitor.split("/", 1)[1]) > 0
    if obj.monitor not in _MONITORS and not prefixed:
        raise ConfigError(f"{name}.monitor must be one of {_MONITORS}, 'train/<aux key>' or 'val/<key>', got {obj.monitor!r}")


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    if mode == "min":
        return value < best - min_delta
    return value > best + min_delta


@dataclasses.dataclass
class PlateauDecay:
    """Multiply an injected optimiser hyperparameter by ``factor`` when the monitored metric plateaus.

    After ``patience`` evaluations (host calls) without an improvement by ``min_delta`` the
    hyperparameter ``name`` of an ``optax.inject_hyperparams`` state (anywhere inside the optimiser
    state) is multiplied by ``factor``, never below ``min_value``, and the counter restarts
    (``torch.optim.lr_scheduler.ReduceLROnPlateau`` semantics without cooldown). Counting starts at
    ``min_steps``. The value stays an array leaf of the same dtype, so nothing recompiles. Its
    current value is logged under ``name`` in the history.
    """

    factor: float = 0.95
    patience: int = 6
    min_value: float = 0.0
    monitor: str = "val"
    mode: str = "min"
    min_delta: float = 0.0
    min_steps: int = 0
    name: str = "learning_rate"

    def __post_init__(self) -> None:
        if not 0 < self.factor <= 1:
            raise ConfigError(f"PlateauDecay.factor must be in (0, 1], got {self.factor}")
        _check_monitoring(self)


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


_CALL_CACHE: OrderedDict = OrderedDict()
_CALL_CACHE_SIZE = 8


def _compiled_call(loss_fn, optimizer, static, *, has_aux, with_step, with_args, batch_size, n_batches, n_samples,
                   shuffle, steps_per_call):
    """The jitted ``steps_per_call`` scan for one fit configuration, from a small LRU cache.

    The cache key holds the loss function and optimiser objects, the non-array part of ``static``
    and the sizes; arrays (parameters, data, ``args``, keys, frozen leaves) are traced arguments,
    so a second fit with the same ingredients reuses the compilation. Unhashable ingredients
    simply skip the cache.
    """
    static_arrays, static_rest = eqx.partition(static, eqx.is_array)
    rest_leaves, rest_def = jax.tree_util.tree_flatten(static_rest)
    key = (loss_fn, optimizer, rest_def, tuple(rest_leaves), has_aux, with_step, with_args, batch_size, n_batches,
           n_samples, shuffle, steps_per_call)
    try:
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _CALL_CACHE:
        _CALL_CACHE.move_to_end(key)
        return _CALL_CACHE[key], static_arrays

    def loss_wrapped(model, batch, k):
        batch, step, args = batch
        kw = {}
        if with_step:
            kw["step"] = step
        if with_args:
            kw["args"] = args
        return loss_fn(model, batch, k, **kw)

    def get_batch(data, step, data_key):
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
    def run_call(params, opt_state, start, n_active, data, args, data_key, step_key, static_arrays):
        step_fn = make_train_step(loss_wrapped, optimizer, eqx.combine(static_arrays, static_rest), has_aux=has_aux)

        def body(carry, j):
            p, s = carry
            step = start + j
            batch = (get_batch(data, step, data_key), step, args)
            p2, s2, loss, aux = step_fn(p, s, batch, jax.random.fold_in(step_key, step))
            active = j < n_active
            keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new, old)  # noqa: E731
            return (keep(p2, p), keep(s2, s)), (loss, aux)

        (params, opt_state), (losses, auxs) = jax.lax.scan(body, (params, opt_state), jnp.arange(steps_per_call))
        return params, opt_state, losses, auxs, _all_finite(params)

    if key is not None:
        _CALL_CACHE[key] = run_call
        while len(_CALL_CACHE) > _CALL_CACHE_SIZE:
            _CALL_CACHE.popitem(last=False)
    return run_call, static_arrays


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
    with_step: bool = False,
    args: Any = None,
    opt_state: Any = None,
    steps_per_call: int | None = None,
    val_fn: Callable[..., Any] | None = None,
    val_smoothing: float | None = None,
    early_stopping: EarlyStopping | None = None,
    plateau: PlateauDecay | None = None,
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
        ``fold_in(key, step)``. With ``with_step=True`` it is also given ``step=`` (the global
        step, a traced int32 array: ``step // steps_per_epoch`` is the epoch), and with ``args``
        it is given ``args=`` (that pytree, traced: changing its values does not recompile).
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
    with_step, args
        See ``loss_fn``.
    opt_state
        Initial optimiser state (e.g. with injected hyperparameters set, see
        :func:`set_hyperparam`); default ``optimizer.init(params)``.
    steps_per_call
        Steps per compiled call (evaluation, early stopping, NaN checks and checkpoints happen at
        call boundaries). Default: one epoch, at least 1 and at most 100 steps for full batch.
    val_fn
        ``val_fn(model) -> scalar`` evaluated after each call (jit it yourself if expensive); with
        ``with_step=True`` it is called as ``val_fn(model, step=steps_done)``. It may return a dict
        with the monitored value under ``"val"``; its other entries are logged as ``"val/<name>"``.
    val_smoothing
        Exponential smoothing of the validation value, logged as ``"val_smth"``:
        ``s = (1 − a)·s_prev + a·val`` with ``a = val_smoothing`` (LFADS: 0.7). Monitor it with
        ``EarlyStopping(monitor="val_smth")`` / ``PlateauDecay(monitor="val_smth")``.
    early_stopping
        An :class:`EarlyStopping`; ``monitor="val"`` needs ``val_fn``.
    plateau
        A :class:`PlateauDecay` of an injected hyperparameter (default: the learning rate).
    restore_best
        Return the model with the best monitored value instead of the last one.
    checkpoint_dir, checkpoint_every
        Save the state every ``checkpoint_every`` steps (a multiple of ``steps_per_call``) into this
        folder; with ``resume=True`` a fit finding a checkpoint there continues from it (smoothing,
        early-stopping and plateau counters included: the resumed run equals an uninterrupted one).
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
    for what, obj in (("EarlyStopping", early_stopping), ("PlateauDecay", plateau)):
        if obj is not None and obj.monitor.startswith("val") and val_fn is None:
            raise ConfigError(f"{what}(monitor={obj.monitor!r}) needs val_fn=")
        if obj is not None and obj.monitor == "val_smth" and val_smoothing is None:
            raise ConfigError(f"{what}(monitor='val_smth') needs val_smoothing=")
    if val_smoothing is not None and not 0 < val_smoothing <= 1:
        raise ConfigError(f"val_smoothing must be in (0, 1], got {val_smoothing}")

    if filter_spec is None:
        filter_spec = trainable(model)
    params, static = eqx.partition(model, filter_spec)
    opt_state = optimizer.init(params) if opt_state is None else opt_state
    if plateau is not None:
        get_hyperparam(opt_state, plateau.name)  # fail early with a clear message
    data_key, step_key = jax.random.split(key)
    run_call, static_arrays = _compiled_call(
        loss_fn, optimizer, static, has_aux=has_aux, with_step=with_step, with_args=args is not None,
        batch_size=batch_size, n_batches=n_batches, n_samples=n_samples, shuffle=shuffle,
        steps_per_call=steps_per_call)

    history: dict[str, list[float]] = {"step": [], "loss": []}
    step = 0
    best_val: float | None = None
    best_step: int | None = None
    best_params = params
    bad_evals = 0
    recent: list[float] = []
    smth: float | None = None
    pl_best: float | None = None
    pl_bad = 0
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None

    loaded = load_checkpoint(ckpt, (params, opt_state, best_params)) if (ckpt is not None and resume) else None
    if loaded is not None:
        step, (params, opt_state, best_params), meta = loaded
        history = {k: list(v) for k, v in meta["history"].items()}
        best_val, best_step, bad_evals = meta["best_val"], meta["best_step"], int(meta["bad_evals"])
        recent = [float(v) for v in meta.get("recent", [])]
        smth, pl_best, pl_bad = meta.get("val_smth"), meta.get("plateau_best"), int(meta.get("plateau_bad", 0))

    show = _auto_progress() if progress is None else bool(progress)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=step, desc=desc, disable=not show, leave=False, dynamic_ncols=True)
    stop_reason = "completed"
    try:
        while step < total:
            n_active = min(steps_per_call, total - step)
            params, opt_state, losses, auxs, finite = run_call(
                params, opt_state, jnp.asarray(step), jnp.asarray(n_active), data, args, data_key, step_key,
                static_arrays)
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
                out = val_fn(model_now, step=step) if with_step else val_fn(model_now)
                if isinstance(out, dict):
                    if "val" not in out:
                        raise ConfigError("a val_fn returning a dict must put the monitored value under 'val'")
                    logs["val"] = float(out["val"])
                    logs.update({f"val/{k}": float(v) for k, v in out.items() if k != "val"})
                else:
                    logs["val"] = float(out)
                if val_smoothing is not None:
                    smth = logs["val"] if smth is None else (1 - val_smoothing) * smth + val_smoothing * logs["val"]
                    logs["val_smth"] = smth
            if plateau is not None:
                logs[plateau.name] = float(get_hyperparam(opt_state, plateau.name))
            history["step"].append(step)
            for k, v in logs.items():
                history.setdefault(k, []).append(v.tolist() if isinstance(v, np.ndarray) else v)
            bar.update(n_active)
            bar.set_postfix({k: v for k, v in logs.items() if isinstance(v, float)}, refresh=False)

            stop = False
            if early_stopping is not None or restore_best:
                es = early_stopping or EarlyStopping(monitor="val" if val_fn is not None else "train")
                value = _monitored(logs, es.monitor)
                if es.improved(value, best_val):
                    best_val, best_step, best_params, bad_evals = value, step, params, 0
                elif step >= es.min_steps:
                    bad_evals += 1
                if es.rule == "unchanged":
                    recent = (recent + [value])[-es.patience:]
                    done = len(recent) == es.patience and len(set(recent)) == 1
                else:
                    done = bad_evals >= es.patience
                if early_stopping is not None and done and step >= es.min_steps:
                    stop_reason, stop = "early_stopping", True
            if plateau is not None and step >= plateau.min_steps:
                value = _monitored(logs, plateau.monitor)
                if _improved(value, pl_best, plateau.mode, plateau.min_delta):
                    pl_best, pl_bad = value, 0
                else:
                    pl_bad += 1
                    if pl_bad >= plateau.patience:
                        old = float(get_hyperparam(opt_state, plateau.name))
                        opt_state = set_hyperparam(opt_state, plateau.name, max(old * plateau.factor, plateau.min_value))
                        pl_bad = 0
            if callback is not None:
                model_now = model_now if model_now is not None else eqx.combine(params, static)
                if callback(step, model_now, logs):
                    stop_reason, stop = "callback", True
            if ckpt is not None and (step % checkpoint_every == 0 or step == total or stop):
                meta = {"history": history, "best_val": best_val, "best_step": best_step, "bad_evals": bad_evals, "recent": recent,
                        "val_smth": smth, "plateau_best": pl_best, "plateau_bad": pl_bad}
                save_checkpoint(ckpt, step, (params, opt_state, best_params), meta)
            if stop:
                break
    finally:
        bar.close()

    final = best_params if (restore_best and best_step is not None) else params
    hist = {k: np.asarray(v) for k, v in history.items()}
    return FitResult(eqx.combine(final, static), opt_state, hist, step, stop_reason, best_step)


def _monitored(logs: dict[str, Any], monitor: str) -> float:
    """The value of ``monitor`` (``"train"``, ``"train/<aux key>"``, ``"val"``, ``"val/<key>"``, ``"val_smth"``) in a fit's logs."""
    if monitor == "train":
        return logs["loss"]
    key = monitor[6:] if monitor.startswith("train/") else monitor
    if key not in logs:
        raise ConfigError(f"the monitored value {monitor!r} is not logged (have {sorted(logs)})")
    value = logs[key]
    if isinstance(value, (list, np.ndarray)):
        raise ConfigError(f"the monitored value {monitor!r} must be a scalar")
    return float(value)


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
