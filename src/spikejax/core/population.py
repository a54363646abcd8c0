"""The one trainer: a population of models (cells x restarts, PBT workers, ..., or one model) in one compiled program.

:func:`fit_population` trains many independent models at once; :func:`spikejax.core.fit` is it with
one member. The *member axis* is the leading axis of every array leaf of the model pytree (build
it with :func:`spikejax.core.stack`). Each member has

* its own optimiser state and injected hyperparameters (``optax.inject_hyperparams`` leaves of
  shape (members,), e.g. one learning rate per member), its own traced ``args`` (e.g. a KL weight)
  and its own loss state ``carry`` (e.g. a simulation state carried from epoch to epoch);
* its own epoch budget, validation, early stopping (:class:`~spikejax.core.EarlyStopping`), plateau
  decay (:class:`~spikejax.core.PlateauDecay`), restore-best and NaN guard, all evaluated after every
  round inside the compiled program: a step whose loss or new parameters are not finite is not
  applied and the member is marked ``"diverged"``. A finished member simply stops updating (its
  parameters and optimiser state are kept by ``jnp.where``); the program keeps its shape and never
  recompiles;
* its own PRNG stream: step keys are ``fold_in(fold_in(key, step), member_id)``, so chunked,
  resumed and one-shot runs draw the same numbers.

Behaviour is chosen by small objects (:mod:`spikejax.core.trainer_options`): :class:`Batching`,
:class:`MemberData`, :class:`FixedBatches`, :class:`Validation`, :class:`EarlyStopping`,
:class:`PlateauDecay`, :class:`Checkpointing`, :class:`Progress`. The keyword arguments of earlier
versions (``batch_size=``, ``val_fn=``, ``checkpoint_dir=``, ``has_aux=``, ...) still work: one
function (:func:`_options`) translates them into these objects.

One loss signature: ``loss_fn(model, batch, key, **kw)`` returning ``loss``, ``(loss, aux)`` or
``(loss, aux, carry)`` (the form is detected when the program is traced); ``kw`` holds ``step=`` (the
global step, traced) when the loss declares a ``step`` parameter, ``args=`` when the trainer has
``args`` and ``carry=`` when it has a ``carry``.

Rounds (an epoch each; ``fit``'s ``steps_per_call`` steps) run in chunks of ``epochs_per_chunk``
inside one compiled ``lax.while_loop`` (which exits early once every member has finished); between
chunks the host updates the tqdm bar, calls the optional ``between_chunks`` hook (population-based
training: exploit/explore on :class:`PopulationState`, with array leaves of unchanged shapes and
dtypes, so nothing recompiles) and writes a checkpoint of the whole population
(:func:`spikejax.core.save_checkpoint`; resuming gives the same result as an uninterrupted run). With
several devices the member axis is padded and sharded over them (:func:`spikejax.core.shard_batch`),
as in :func:`spikejax.core.sweep`; after ``jax.distributed.initialize()`` the devices are every
process's: each process places only its own members, shared data are replicated, the history and
the final state are gathered on every process, and only process 0 shows progress and writes
checkpoints (every process reads them back on resume).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .errors import ConfigError
from .results import Result, StopReason
from .sweep import _mesh, _spans_processes, batch_size_of, gather, replicate, shard_batch, sweep_devices
from .trainer_options import (Batching, Checkpointing, EarlyStopping, FixedBatches, MemberData, PlateauDecay, Progress,
                              Validation, _check_monitor, _options, accepts, check_int, check_trainer_call)
from .trainer_program import (ACTIVE, DEVICE_FIELDS, STATUS_NAMES, STOPPED, Plan, _init_fn, _initial_smth, _leading,
                              _same_layout, _strong, program, where)

__all__ = ["PopulationState", "PopulationResult", "fit_population", "STATUS_NAMES"]


class PopulationState(eqx.Module):
    """The whole training state of a population (every array leaf has a leading member axis).

    Attributes
    ----------
    params, frozen : the trainable and frozen halves of the stacked model (``eqx.partition``).
    opt_state : the (vmapped) optimiser state; injected hyperparameters have shape (members,).
    args, carry : the per-member traced arguments and loss state (or ``None``).
    member_id : (members,) int, the member's position (it keys the member's random stream).
    status : (members,) int, an index into :data:`STATUS_NAMES` (0 = still training).
    epochs_done, budget : (members,) int, rounds (epochs) trained and the member's budget.
    best, best_epoch, bad, recent : early-stopping bookkeeping of the monitored value
        (``best`` in its own sign, ``best_epoch`` = the member's epoch count then, -1 = none).
    val_smth : (members,) the exponentially smoothed validation value (NaN before the first).
    best_params : the parameters at ``best_epoch`` (with ``restore_best``), else ``None``.
    plateau_best, plateau_bad : (members,) plateau-decay bookkeeping (with a :class:`PlateauDecay`).
    epoch : the population's epoch clock (epochs run so far; a Python int).
    extra : any pytree the ``between_chunks`` hook keeps (checkpointed, never traced).

    A ``between_chunks`` hook returns a modified copy (``dataclasses.replace``, :meth:`take`,
    :meth:`with_hyperparam`, :meth:`stop`); shapes and dtypes of the leaves must stay the same.
    """

    params: Any
    frozen: Any
    opt_state: Any
    args: Any
    carry: Any
    member_id: jax.Array
    status: jax.Array
    epochs_done: jax.Array
    budget: jax.Array
    best: jax.Array
    best_epoch: jax.Array
    bad: jax.Array
    recent: jax.Array
    val_smth: jax.Array
    best_params: Any
    plateau_best: Any = None
    plateau_bad: Any = None
    epoch: int = eqx.field(static=True, default=0)
    extra: Any = None

    @property
    def n_members(self) -> int:
        return int(self.member_id.shape[0])

    @property
    def active(self) -> np.ndarray:
        """(members,) bool: members still training."""
        return (np.asarray(self.status) == ACTIVE) & (np.asarray(self.epochs_done) < np.asarray(self.budget))

    def model(self, static: Any) -> Any:
        """The stacked model (``static`` is :attr:`PopulationResult.static`, the non-array part)."""
        return eqx.combine(self.params, self.frozen, static)

    def hyperparam(self, name: str = "learning_rate") -> jax.Array:
        """(members,) values of an injected optimiser hyperparameter."""
        from .training import get_hyperparam

        return get_hyperparam(self.opt_state, name)

    def with_hyperparam(self, name: str, values: Any) -> PopulationState:
        """A copy with the injected hyperparameter ``name`` set to ``values`` (scalar or (members,))."""
        from .training import set_hyperparam

        return dataclasses.replace(self, opt_state=set_hyperparam(self.opt_state, name, values))

    def take(self, source: Any) -> PopulationState:
        """A copy where member ``i`` becomes a copy of member ``source[i]`` (PBT's exploit): parameters,
        frozen leaves, optimiser state (hyperparameters included), args, carry, status, counters and
        smoothed metric; ``member_id`` (the random stream) stays with the position."""
        idx = jnp.asarray(np.asarray(source, dtype=np.int32))
        if idx.shape != (self.n_members,):
            raise ConfigError(f"take(source) needs one source index per member ({self.n_members}), got shape {idx.shape}")
        pick = lambda t: jax.tree_util.tree_map(lambda a: a[idx], t)  # noqa: E731
        moved = {f.name: pick(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in ("member_id", "epoch", "extra")}
        return dataclasses.replace(self, **moved)

    def stop(self, mask: Any = None) -> PopulationState:
        """A copy where the members in ``mask`` (default: all) stop training (status ``"stopped"``)."""
        m = np.ones(self.n_members, bool) if mask is None else np.asarray(mask, bool)
        status = jnp.where(jnp.asarray(m) & (self.status == ACTIVE), jnp.asarray(STOPPED, self.status.dtype), self.status)
        return dataclasses.replace(self, status=status)




class PopulationResult(Result):
    """What :func:`fit_population` returns (a :class:`~spikejax.core.Result`).

    Attributes
    ----------
    model : the trained stacked model (each member's best parameters with ``restore_best``); also
        available as ``population``.
    history : a long DataFrame, one row per epoch (round) and member: ``epoch`` (the population's
        clock after it), ``member``, then ``loss``, the aux keys, ``val``, ``val/<key>``,
        ``val_smth`` (NaN where a member did not train).
    stop_reason : ``COMPLETED`` (every member finished) or ``EPOCH_LIMIT`` (the epoch limit was
        reached first); each member's own reason is in ``status``.
    seconds : wall time in s.
    state : the final :class:`PopulationState` (resume-able, e.g. as a hook would see it).
    static : the non-array part of the model (``state.model(static)``).
    curves : dict of numpy arrays of shape (epochs, members, ...) (the layout of ``history`` in
        earlier versions): ``loss``, every aux key (epoch means), ``val``, ``val/<key>``, ``val_smth``.
    status : (members,) status names (:data:`STATUS_NAMES`).
    epochs : (members,) epochs each member trained.
    best, best_epoch : (members,) best monitored value and the member's epoch count at it (-1: none).
    n_epochs : epochs run in this call (``state.epoch`` = ``start_epoch + n_epochs``).
    """

    state: Any = None
    static: Any = None
    curves: dict = eqx.field(default_factory=dict)
    status: Any = None
    epochs: Any = None
    best: Any = None
    best_epoch: Any = None
    n_epochs: int = 0

    @property
    def population(self) -> Any:
        return self.model

    @property
    def opt_state(self) -> Any:
        return None if self.state is None else self.state.opt_state


def population_frame(curves: dict[str, np.ndarray], n_rounds: int, epoch0: int = 0):
    """The long table of a population's curves: ``epoch``, ``member``, one column per curve."""
    import pandas as pd

    if not curves:
        return pd.DataFrame({"epoch": np.zeros(0, int), "member": np.zeros(0, int)})
    first = next(iter(curves.values()))
    m = int(first.shape[1]) if first.ndim > 1 else 1
    e = np.repeat(np.arange(n_rounds) + epoch0 + 1, m)
    cols: dict[str, Any] = {"epoch": e, "member": np.tile(np.arange(m), n_rounds)}
    for k, v in curves.items():
        a = np.asarray(v)[:n_rounds]
        flat = a.reshape(n_rounds * m, int(np.prod(a.shape[2:], dtype=int)))
        if flat.shape[1] == 1 and a.ndim == 2:
            cols[k] = flat[:, 0]
        else:
            for j in range(flat.shape[1]):
                cols[f"{k}[{j}]"] = flat[:, j]
    return pd.DataFrame(cols)


# ------------------------------------------------------------------------------------------------
# helpers of the host loop
# ------------------------------------------------------------------------------------------------


def _host_validate(validation: Validation, params, frozen, static, m: int, steps: int) -> dict[str, np.ndarray]:
    """A host validation of every member (``fn(model)`` / ``fn(model, step=)``), as (members,) arrays."""
    rows: list[dict[str, float]] = []
    for i in range(m):
        one = jax.tree_util.tree_map(lambda a: a[i] if eqx.is_array(a) else a, eqx.combine(params, frozen))
        model = eqx.combine(one, static)
        out = validation.fn(model, step=steps) if validation.pass_step else validation.fn(model)
        if isinstance(out, dict):
            if "val" not in out:
                raise ConfigError("a validation function returning a dict must put the monitored value under 'val'")
            rows.append({k: float(v) for k, v in out.items()})
        else:
            rows.append({"val": float(out)})
    return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}


def _read_checkpoint(ckpt: Path, dyn_like: Any, extra: Any, m: int):
    """``(rounds, dyn, extra, history)`` from the checkpoint in ``ckpt``, or ``None``."""
    from .training import _checkpoint_index, load_checkpoint

    info = _checkpoint_index(ckpt)  # None, or a validated index (DataFormatError naming latest.json)
    if info is None:
        return None
    rounds, meta = int(info["step"]), dict(info.get("meta", {}))
    shapes = meta.get("history")
    if shapes is None or meta.get("format") != 2:
        from .errors import DataFormatError

        raise DataFormatError(f"checkpoint {ckpt} was written by an earlier spikejax trainer; pass resume=False or a fresh folder")
    like = {k: np.zeros((rounds, m) + tuple(s), np.dtype(d)) for k, (s, d) in shapes.items()}
    found = load_checkpoint(ckpt, (dyn_like, extra, like))
    _, (dyn, extra_, hist), _ = found
    return rounds, dyn, extra_, {k: np.array(v) for k, v in hist.items()}


# ------------------------------------------------------------------------------------------------
# the trainer
# ------------------------------------------------------------------------------------------------


def fit_population(
    population: Any,
    loss_fn: Callable[..., Any],
    data: Any = None,
    *,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    n_epochs: int | Sequence[int] | jax.Array,
    batching: Batching | None = None,
    member_data: MemberData | bool | None = None,
    batches: FixedBatches | Sequence[Any] | None = None,
    validation: Validation | None = None,
    early_stopping: EarlyStopping | None = None,
    plateau: PlateauDecay | None = None,
    checkpointing: Checkpointing | None = None,
    progress: Progress | bool | None = None,
    restore_best: bool = False,
    nan_guard: bool = True,
    skip_step: Callable[[Any], Any] | None = None,
    filter_spec: Any = None,
    args: Any = None,
    carry: Any = None,
    hyperparams: dict[str, Any] | None = None,
    opt_state: Any = None,
    epochs_per_chunk: int | None = None,
    steps_per_epoch: int | None = None,
    step_limit: int | None = None,
    between_chunks: Callable[[PopulationState, dict[str, np.ndarray]], PopulationState | None] | None = None,
    extra: Any = None,
    shard: bool = True,
    devices: Sequence[Any] | None = None,
    start_epoch: int = 0,
    val_smth: Any = None,
    # ---- keyword arguments of earlier versions (translated into the objects above by _options)
    batch_size: int | None = None,
    shuffle: bool = True,
    shared_batches: bool = True,
    data_index: Any = None,
    has_aux: bool | None = None,
    with_step: bool = False,
    val_fn: Callable[..., Any] | None = None,
    val_data: Any = None,
    val_smoothing: float | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    desc: str = "fit_population",
) -> PopulationResult:
    """Train every member of ``population`` (leading member axis) independently, in one compiled program.

    Parameters
    ----------
    population
        A stacked model (:func:`spikejax.core.stack`): every array leaf has the member axis first.
    loss_fn
        Per member: ``loss_fn(model, batch, key, **kw)`` returning ``loss``, ``(loss, aux_dict)`` or
        ``(loss, aux_dict, new_carry)`` (detected when traced); ``kw``: ``step=`` (the global step,
        traced) when the loss declares ``step`` (or ``with_step=True``), ``args=`` with ``args``,
        ``carry=`` with ``carry``.
    data
        Training data: shared by all members (leading sample axis), or one data set per member with
        ``member_data=MemberData()`` (see :class:`MemberData`).
    optimizer
        Any optax transformation; build it with ``optax.inject_hyperparams`` for per-member
        hyperparameters (``hyperparams={"learning_rate": lrs}``, one value per member) and for
        :class:`PlateauDecay`. It is initialised per member unless ``opt_state`` is given.
    key
        PRNG key: minibatch permutations ``fold_in(key_data, epoch)``, step keys
        ``fold_in(fold_in(key_step, step), member_id)``.
    n_epochs
        Rounds (epochs): an int, or (members,) ints (each member's budget; the run lasts the longest).
    batching, member_data, batches
        :class:`Batching` (default: full batch), :class:`MemberData`, :class:`FixedBatches` (instead of ``data``).
    validation, early_stopping, plateau, restore_best
        :class:`Validation`, :class:`EarlyStopping`, :class:`PlateauDecay` applied to each member after
        each round; ``restore_best`` returns each member's best parameters by the monitored value
        (the early-stopping monitor, else ``"val"`` with a validation, else ``"train"``).
    checkpointing, progress
        :class:`Checkpointing` (``every`` in rounds, a multiple of ``epochs_per_chunk``), :class:`Progress`.
    nan_guard
        A non-finite loss or parameter stops the member (status ``"diverged"``; the last finite
        parameters are kept). ``False``: such steps are applied.
    skip_step
        ``skip_step(batch) -> bool`` (per member): the step is not applied and not counted.
    filter_spec, args, carry, hyperparams, opt_state
        Trainable leaves (default :func:`spikejax.core.trainable`); per-member traced arguments and
        loss state; per-member injected hyperparameter values; the initial (stacked) optimiser state.
    epochs_per_chunk
        Rounds per compiled call (default: all, or the checkpoint period); progress, the hook and
        checkpoints happen between chunks.
    steps_per_epoch, step_limit
        A round of ``steps_per_epoch`` optimiser steps (default: one epoch of the batching) and a cap
        on the global step (steps at or beyond it are not applied): how :func:`spikejax.core.fit`
        runs ``steps_per_call`` steps per round.
    between_chunks, extra
        ``between_chunks(state, curves) -> PopulationState | None`` after every chunk, with the
        :class:`PopulationState` (unpadded) and the curves so far; return a modified state (same leaf
        shapes and dtypes: it never recompiles) or ``None``. For an exact resume, draw its random
        numbers from ``state.epoch`` and keep host-side state in ``state.extra`` (initially ``extra``).
    shard, devices
        Pad and shard the member axis over the devices (default :func:`spikejax.core.sweep_devices`:
        every process's devices after ``jax.distributed.initialize()``, else the local ones; no
        effect with one device).
    start_epoch
        The population's clock starts here (step keys, minibatch permutations, ``step`` and
        ``state.epoch`` continue from it): a run continued across calls draws what one call would.
    val_smth
        Initial smoothed validation value per member (default NaN: the first value).
    batch_size, shuffle, shared_batches, data_index, val_fn, val_data, val_smoothing, checkpoint_dir, checkpoint_every, resume, desc
        Earlier spellings of ``Batching``, ``MemberData(index=)``, ``Validation``, ``Checkpointing``,
        ``Progress(desc=)``; ``has_aux`` is ignored (the loss's output form is detected), ``with_step``
        passes ``step=`` to a loss that takes ``**kwargs``.

    Returns
    -------
    :class:`PopulationResult`.
    """
    t0 = time.perf_counter()
    del has_aux  # the loss's output form is detected at trace time
    key = check_trainer_call(loss_fn, optimizer, key)
    for _name, _v in (("epochs_per_chunk", epochs_per_chunk), ("steps_per_epoch", steps_per_epoch)):
        check_int(_v, _name, low=1, optional=True)
    batching, mdata, fixed, validation, checkpointing, prog_bar = _options(
        batching=batching, member_data=member_data, batches=batches, validation=validation,
        checkpointing=checkpointing, progress=progress, batch_size=batch_size, shuffle=shuffle,
        shared_batches=shared_batches, data_index=data_index, val_fn=val_fn, val_data=val_data,
        val_smoothing=val_smoothing, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume,
        desc=desc)
    params_all = eqx.filter(population, eqx.is_array)
    if not jax.tree_util.tree_leaves(params_all):
        raise ConfigError("population has no array leaves to train")
    m = batch_size_of(params_all, "population")
    _leading(params_all, m, "population")
    budget = np.asarray(n_epochs)
    if budget.ndim == 0:
        budget = np.full(m, int(budget)) if budget.dtype.kind in "iu" else budget
    if budget.shape != (m,) or budget.dtype.kind not in "iu" or np.any(budget < 0):
        raise ConfigError(f"n_epochs must be an int >= 0 or one int >= 0 per member ({m}), got {n_epochs!r}")
    max_epochs = int(budget.max()) if m else 0
    _check_monitor("EarlyStopping", early_stopping, validation)
    _check_monitor("PlateauDecay", plateau, validation)
    if args is not None:
        _leading(args, m, "args")
    if carry is not None:
        _leading(carry, m, "carry")

    # ---- data layout
    if fixed is not None and data is not None:
        raise ConfigError("pass either data= or batches=, not both")
    if fixed is not None:
        if batching.batch_size is not None:
            raise ConfigError("batch_size does not apply to batches= (they are already minibatches)")
        kind, n_batches, n_samples, payload = "fixed", len(fixed.batches), None, fixed.batches
    elif data is None:
        if batching.batch_size is not None:
            raise ConfigError("batch_size needs data=")
        kind, n_batches, n_samples, payload = "none", 1, None, None
    else:
        leaves = [x for x in jax.tree_util.tree_leaves(data) if eqx.is_array(x) or isinstance(x, np.ndarray)]
        axis = 1 if mdata is not None else 0
        sizes = {int(np.shape(x)[axis]) for x in leaves if np.ndim(x) > axis}
        if batching.batch_size is not None:
            if len(sizes) != 1:
                raise ConfigError(f"all arrays in data must share their sample axis {axis}, got sizes {sorted(sizes)}")
            n_samples = sizes.pop()
            if not 1 <= batching.batch_size <= n_samples:
                raise ConfigError(f"batch_size must be in [1, {n_samples}] (samples), got {batching.batch_size}")
            kind, n_batches = "sampled", n_samples // batching.batch_size
        else:
            kind, n_batches, n_samples = "full", 1, None
        payload = data
    if mdata is not None:
        if kind == "none":
            raise ConfigError("member_data needs data= or batches=")
        rows = {int(np.shape(x)[0]) for x in jax.tree_util.tree_leaves(payload) if np.ndim(x) > 0}
        if mdata.index is None:
            if rows != {m}:
                raise ConfigError(f"member_data: every data leaf needs the leading member axis ({m}), got {sorted(rows)}")
            member_index = np.arange(m, dtype=np.int32)
        else:
            member_index = np.asarray(mdata.index, dtype=np.int32)
            if member_index.shape != (m,):
                raise ConfigError(f"data_index (MemberData.index) must hold one int per member ({m}), got shape {member_index.shape}")
            if len(rows) != 1 or member_index.max() >= min(rows):
                raise ConfigError(f"data_index (MemberData.index) must index the leading axis of the per-member data (sizes {sorted(rows)})")
    else:
        member_index = np.arange(m, dtype=np.int32)
    spr = n_batches if steps_per_epoch is None else int(steps_per_epoch)
    if spr < 1 or (kind == "fixed" and spr != n_batches):
        raise ConfigError(f"steps_per_epoch must be >= 1 (and equal the number of fixed batches), got {steps_per_epoch}")
    limit = np.int32(np.iinfo(np.int32).max if step_limit is None else int(step_limit))

    # ---- state
    if filter_spec is None:
        from .training import trainable

        filter_spec = trainable(population)
    params, rest = eqx.partition(population, filter_spec)
    frozen, static = eqx.partition(rest, eqx.is_array)
    if opt_state is None:
        opt_state = _init_fn(optimizer)(params)
    from .training import get_hyperparam

    for name, values in (hyperparams or {}).items():
        old = get_hyperparam(opt_state, name)
        v = np.asarray(values, dtype=float)
        if v.ndim not in (0, 1) or (v.ndim == 1 and v.shape != (m,)):
            raise ConfigError(f"hyperparams[{name!r}] must be a scalar or one value per member ({m}), got shape {v.shape}")
        # set on the host (numpy, the state's dtype): no device op, nothing to compile
        opt_state = optax.tree_utils.tree_set(opt_state, **{name: np.broadcast_to(v, old.shape).astype(old.dtype)})
    if plateau is not None:
        get_hyperparam(opt_state, plateau.name)  # fail early with a clear message
    dtype = jnp.result_type(*[x.dtype for x in jax.tree_util.tree_leaves(params) if eqx.is_inexact_array(x)] or [float])
    n_recent = max(int(early_stopping.patience) - 1, 1) if early_stopping is not None else 1
    params, frozen, opt_state, args, carry = _strong((params, frozen, opt_state, args, carry))
    i32, fdt = np.int32, np.dtype(dtype)  # counters built on the host: no device ops before the first chunk
    state = PopulationState(
        params=params, frozen=frozen, opt_state=opt_state, args=args, carry=carry,
        member_id=np.arange(m, dtype=i32), status=np.zeros(m, i32), epochs_done=np.zeros(m, i32),
        budget=budget.astype(i32), best=np.full(m, np.inf, fdt), best_epoch=np.full(m, -1, i32),
        bad=np.zeros(m, i32), recent=np.full((m, n_recent), np.nan, fdt), val_smth=_initial_smth(val_smth, m, fdt),
        best_params=params if restore_best else None, epoch=0, extra=extra,
        plateau_best=np.full(m, np.inf, fdt) if plateau is not None else None,
        plateau_bad=np.zeros(m, i32) if plateau is not None else None,
    )

    on_host = validation is not None and validation.on_host
    ckpt = Path(checkpointing.dir) if checkpointing is not None else None
    if epochs_per_chunk is None:
        epochs_per_chunk = 1 if on_host else ((checkpointing.every if checkpointing else None) or max(max_epochs, 1))
    chunk = max(1, min(int(epochs_per_chunk), max(max_epochs, 1)))
    if on_host and chunk != 1:
        raise ConfigError("Validation(on_host=True) runs one round per compiled call: epochs_per_chunk must be 1")
    every = None
    if ckpt is not None:
        every = checkpointing.every or chunk
        if every % chunk:
            raise ConfigError(f"checkpoint_every ({every}) must be a multiple of epochs_per_chunk ({chunk})")

    plan = Plan(
        batching=kind, n_batches=n_batches, batch_size=batching.batch_size, n_samples=n_samples,
        shuffle=bool(batching.shuffle), shared=bool(batching.shared), member_data=mdata is not None, steps_per_round=spr,
        pass_step=bool(with_step) or accepts(loss_fn, "step"), has_args=args is not None, has_carry=carry is not None,
        nan_guard=bool(nan_guard), early_stopping=early_stopping, plateau=plateau,
        validation="none" if validation is None else ("host" if on_host else "program"),
        val_pass_step=bool(validation is not None and validation.pass_step), has_val_data=bool(validation is not None and validation.data is not None),
        smoothing=None if validation is None else validation.smoothing, restore_best=bool(restore_best), chunk=chunk)
    static_leaves, static_def = jax.tree_util.tree_flatten(static)
    prog = program(plan, loss_fn, optimizer, None if validation is None else validation.fn, skip_step, static,
                   (tuple(static_leaves), static_def))
    val_payload = None if validation is None or on_host else validation.data

    devs = sweep_devices(devices)
    sharded = bool(shard) and len(devs) > 1
    # across processes (jax.distributed): each process places its own shards of the members, shared
    # inputs are replicated once, results are gathered, only process 0 writes and shows progress
    multi = sharded and _spans_processes(_mesh(devs))
    lead = jax.process_index() == 0
    if multi:
        payload, val_payload, key = replicate((payload, val_payload, key), devs)

    def place(st: PopulationState):
        dyn = {f: getattr(st, f) for f in DEVICE_FIELDS}
        idx = member_index
        if sharded:
            (dyn, idx), _ = shard_batch((dyn, idx), devs)
        return dyn, idx

    def unpad(tree):
        if not sharded:
            return tree
        return jax.tree_util.tree_map(lambda a: a[:m] if eqx.is_array(a) and a.ndim > 0 else a, tree)

    def view(dyn) -> PopulationState:
        return dataclasses.replace(state_box[0], **unpad(gather(dyn) if multi else dyn))

    def active(dyn) -> np.ndarray:
        if not multi:
            return view(dyn).active
        small = gather({f: dyn[f] for f in ("status", "epochs_done", "budget")})
        small = {k: np.asarray(v)[:m] for k, v in small.items()}
        return (small["status"] == ACTIVE) & (small["epochs_done"] < small["budget"])

    curves: dict[str, np.ndarray] | None = None
    diverged_at = np.full(m, -1, np.int64)
    epoch = 0
    if ckpt is not None and checkpointing.resume:
        found = _read_checkpoint(ckpt, {f: getattr(state, f) for f in DEVICE_FIELDS}, state.extra, m)
        if found is not None:
            epoch, dyn_, extra_, hist_ = found
            # the budget is this call's (a resumed fit may run longer); members that had used up a
            # smaller budget train on
            status = np.asarray(dyn_["status"])
            status = np.where((status == 1) & (np.asarray(dyn_["epochs_done"]) < budget), ACTIVE, status).astype(i32)
            dyn_ = dict(dyn_, budget=budget.astype(i32), status=status)
            state = dataclasses.replace(state, **dyn_, extra=extra_, epoch=start_epoch + int(epoch))
            curves = {k: np.full((max(max_epochs, epoch),) + v.shape[1:], np.nan, v.dtype) for k, v in hist_.items()}
            for k, v in hist_.items():
                curves[k][:epoch] = v
    state_box = [state]
    dyn, idx = place(state)
    max_rounds = max(max_epochs, epoch)

    show = prog_bar.shown and lead
    from .trainer_options import progress_bar

    bar = progress_bar(total=max_epochs, initial=min(epoch, max_epochs), desc=prog_bar.desc, disable=not show, leave=False,
               dynamic_ncols=True)
    try:
        while epoch < max_epochs and bool(np.any(active(dyn))):
            n_run = min(chunk, max_epochs - epoch)
            rnd = np.int32(start_epoch + epoch)
            if on_host:
                trained, stats = prog.train(dyn, payload, idx, rnd, key, limit)
                steps = int(min((int(rnd) + 1) * spr, int(limit)))
                host_params, host_frozen = gather((trained["params"], dyn["frozen"])) if multi else (trained["params"], dyn["frozen"])
                val = _host_validate(validation, unpad(host_params), unpad(host_frozen), static, m, steps)
                n_pad = int(np.shape(dyn["status"])[0]) - m
                val = {k: np.pad(v, (0, n_pad), mode="edge") if n_pad else v for k, v in val.items()}
                dyn, rows = prog.finish(dyn, trained, stats, val, rnd, limit)
                hist, n_done = {k: v[None] for k, v in rows.items()}, 1
            else:
                dyn, hist, n_done = prog.run(dyn, payload, idx, val_payload, rnd, np.int32(n_run), key, limit)
                n_done = int(np.asarray(gather(n_done)))
            hist = dict(gather(hist) if multi else hist)
            div = hist.pop("_diverged_at", None)
            if div is not None and n_done:
                d = np.nanmax(np.where(np.isnan(np.asarray(div)[:n_done, :m]), -1, np.asarray(div)[:n_done, :m]), axis=0)
                diverged_at = np.where((diverged_at < 0) & (d >= 0), d, diverged_at)
            if curves is None:
                curves = {k: np.full((max_rounds,) + (m,) + v.shape[2:], np.nan, np.dtype(v.dtype)) for k, v in hist.items()}
            for k, v in hist.items():
                if k not in curves:
                    curves[k] = np.full((max_rounds,) + (m,) + v.shape[2:], np.nan, np.dtype(v.dtype))
                curves[k][epoch : epoch + n_done] = np.asarray(v)[:n_done, :m]
            epoch += n_done
            state_box[0] = dataclasses.replace(state_box[0], epoch=start_epoch + epoch)
            bar.update(n_done)
            if show:
                st = view(dyn)
                last = curves["loss"][epoch - 1] if n_done else np.full(m, np.nan)
                bar.set_postfix({"active": int(st.active.sum()),
                                 "loss": float(np.nanmin(last)) if np.isfinite(last).any() else float("nan")}, refresh=False)
            if between_chunks is not None:
                current = view(dyn)
                new = between_chunks(current, {k: v[:epoch] for k, v in curves.items()})
                if new is not None:
                    if not isinstance(new, PopulationState):
                        raise ConfigError(f"between_chunks must return a PopulationState or None, got {type(new).__name__}")
                    fields = lambda s: {f: getattr(s, f) for f in DEVICE_FIELDS}  # noqa: E731
                    fixed_ = _same_layout(fields(new), fields(current), "between_chunks")
                    state_box[0] = dataclasses.replace(new, **fixed_, epoch=start_epoch + epoch)
                    dyn, idx = place(state_box[0])
            if ckpt is not None and (epoch % every == 0 or epoch >= max_epochs or not np.any(active(dyn))):
                from .training import save_checkpoint

                st = view(dyn)
                shapes = {k: [list(v.shape[2:]), np.dtype(v.dtype).str] for k, v in curves.items()}
                if lead:  # one writer; every process reads it back on resume
                    save_checkpoint(ckpt, epoch, ({f: getattr(st, f) for f in DEVICE_FIELDS}, st.extra,
                                                  {k: v[:epoch] for k, v in curves.items()}),
                                    {"n_members": m, "format": 2, "history": shapes})
                if multi:
                    from jax.experimental import multihost_utils

                    multihost_utils.sync_global_devices(f"spikejax checkpoint {ckpt} {epoch}")
    finally:
        bar.close()

    final = dataclasses.replace(view(dyn), epoch=start_epoch + epoch)
    if curves is None:  # nothing ran: empty curves of the right keys
        shapes = eqx.filter_eval_shape(prog.run, dyn, payload, idx, val_payload, np.int32(start_epoch), np.int32(0), key,
                                       limit)[1] if not on_host else {"loss": jax.ShapeDtypeStruct((1, m), fdt)}
        curves = {k: np.full((max_rounds, m) + tuple(v.shape[2:]), np.nan, np.dtype(v.dtype)) for k, v in shapes.items()
                  if k != "_diverged_at"}
    status = np.asarray(final.status)
    host_status = np.asarray([STATUS_NAMES[int(s)] for s in status])
    trained = final.best_params if (restore_best and final.best_params is not None) else final.params
    if restore_best:
        no_best = np.asarray(final.best_epoch) < 0
        if no_best.any():
            trained = where(jnp.asarray(no_best), final.params, trained)
    best = np.asarray(final.best, dtype=float)
    mode = early_stopping.mode if early_stopping is not None else "min"
    if mode == "max":
        best = -best
    best = np.where(np.isfinite(best), best, np.nan)
    reason = StopReason.COMPLETED if not np.any(final.active) else StopReason.EPOCH_LIMIT
    final = dataclasses.replace(final, extra=final.extra)
    res = PopulationResult(
        model=eqx.combine(trained, final.frozen, static), history=population_frame(curves, epoch, start_epoch),
        stop_reason=reason, seconds=time.perf_counter() - t0, state=final, static=static, curves=curves,
        status=host_status, epochs=np.asarray(final.epochs_done), best=best, best_epoch=np.asarray(final.best_epoch),
        n_epochs=epoch)
    object.__setattr__(res, "_diverged_at", diverged_at)
    return res
