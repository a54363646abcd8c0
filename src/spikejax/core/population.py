"""Training a population of models (cells x restarts, PBT workers, ...) in one compiled program.

:func:`fit_population` is :func:`spikejax.core.fit` for many independent models at once. The
*member axis* is the leading axis of every array leaf of the model pytree (build it with
:func:`spikejax.core.stack`). Each member has

* its own optimiser state and injected hyperparameters (``optax.inject_hyperparams`` leaves of
  shape (members,), e.g. one learning rate per member), its own traced ``args`` (e.g. a KL weight)
  and its own loss state ``carry`` (e.g. a simulation state carried from epoch to epoch);
* its own epoch budget, early stopping (:class:`~spikejax.core.EarlyStopping`, evaluated after
  every epoch inside the compiled program) and NaN guard: a step whose loss or new parameters are
  not finite is not applied and the member is marked ``"diverged"``. A finished member simply
  stops updating (its parameters and optimiser state are kept by ``jnp.where``); the program
  keeps its shape and never recompiles;
* its own PRNG stream: step keys are ``fold_in(fold_in(key, step), member_id)``, so chunked,
  resumed and one-shot runs draw the same numbers.

Epochs run in chunks of ``epochs_per_chunk`` inside one compiled ``lax.while_loop`` (which exits
early once every member has finished); between chunks the host updates the tqdm bar, calls the
optional ``between_chunks`` hook (population-based training: exploit/explore on
:class:`PopulationState`, with array leaves of unchanged shapes and dtypes, so nothing recompiles)
and writes a checkpoint of the whole population (:func:`spikejax.core.save_checkpoint`; resuming
gives the same result as an uninterrupted run). With several local devices the member axis is
padded and sharded over them (:func:`spikejax.core.shard_batch`), as in :func:`spikejax.core.sweep`.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .errors import ConfigError
from .sweep import batch_size_of, shard_batch
from .training import EarlyStopping, _all_finite, _auto_progress, load_checkpoint, make_train_step, save_checkpoint, trainable

__all__ = ["PopulationState", "PopulationResult", "fit_population", "STATUS_NAMES"]

ACTIVE, COMPLETED, EARLY_STOPPED, DIVERGED, STOPPED = 0, 1, 2, 3, 4
#: Names of the per-member status codes of :class:`PopulationState` (``status`` indexes this tuple).
STATUS_NAMES = ("active", "completed", "early_stopping", "diverged", "stopped")


class PopulationState(eqx.Module):
    """The whole training state of a population (every array leaf has a leading member axis).

    Attributes
    ----------
    params, frozen : the trainable and frozen halves of the stacked model (``eqx.partition``).
    opt_state : the (vmapped) optimiser state; injected hyperparameters have shape (members,).
    args, carry : the per-member traced arguments and loss state (or ``None``).
    member_id : (members,) int, the member's position (it keys the member's random stream).
    status : (members,) int, an index into :data:`STATUS_NAMES` (0 = still training).
    epochs_done, budget : (members,) int, epochs trained and the member's epoch budget.
    best, best_epoch, bad, recent : early-stopping bookkeeping of the monitored value
        (``best`` in its own sign, ``best_epoch`` = the member's epoch count then, -1 = none).
    val_smth : (members,) the exponentially smoothed validation value (NaN before the first).
    best_params : the parameters at ``best_epoch`` (with ``restore_best``), else ``None``.
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


@dataclasses.dataclass
class PopulationResult:
    """What :func:`fit_population` returns.

    Attributes
    ----------
    population : the trained stacked model (each member's best parameters with ``restore_best``).
    state : the final :class:`PopulationState` (resume-able, e.g. as a hook would see it).
    static : the non-array part of the model (``state.model(static)``).
    history : dict of numpy arrays of shape (epochs, members, ...): ``loss`` (the epoch mean of
        the loss over the member's applied steps), every aux key (epoch means), ``val`` and
        ``val/<key>`` (with ``val_fn``), ``val_smth``; NaN where a member did not train.
    status : (members,) status names (:data:`STATUS_NAMES`).
    epochs : (members,) epochs each member trained.
    best, best_epoch : (members,) best monitored value and the member's epoch count at it (-1: none).
    n_epochs : epochs run in this call (``state.epoch`` = ``start_epoch + n_epochs``).
    stop_reason : ``"completed"`` (every member finished) or ``"epochs"`` (the epoch limit was reached).
    """

    population: Any
    state: PopulationState
    static: Any
    history: dict[str, np.ndarray]
    status: np.ndarray
    epochs: np.ndarray
    best: np.ndarray
    best_epoch: np.ndarray
    n_epochs: int
    stop_reason: str

    @property
    def opt_state(self) -> Any:
        return self.state.opt_state


# ------------------------------------------------------------------------------------------------
# the compiled chunk
# ------------------------------------------------------------------------------------------------

_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 8

_DEVICE_FIELDS = ("params", "frozen", "opt_state", "args", "carry", "member_id", "status", "epochs_done", "budget",
                  "best", "best_epoch", "bad", "recent", "val_smth", "best_params")


def _device_part(state: PopulationState) -> dict[str, Any]:
    return {f: getattr(state, f) for f in _DEVICE_FIELDS}


def _where(mask, new, old):
    """``where(mask, new, old)`` leaf by leaf, ``mask`` (members,) broadcast over trailing axes."""

    def pick(a, b):
        m = mask.reshape(mask.shape + (1,) * (jnp.ndim(a) - mask.ndim))
        return jnp.where(m, a, b)

    return jax.tree_util.tree_map(pick, new, old)


def _chunk_fn(cfg: tuple, loss_fn, optimizer, val_fn, skip_step, static_rest, static_key):
    """The jitted chunk of epochs for one configuration (cached: same ingredients, one compilation)."""
    key = (cfg, loss_fn, optimizer, val_fn, skip_step, static_key)
    try:
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    (has_aux, with_step, has_args, has_carry, has_val_data, batching, n_batches, batch_size, n_samples, shuffle,
     shared_batches, member_data, n_fixed, nan_guard, es, val_smoothing, restore_best, chunk, has_val) = cfg
    default_monitor = "val" if has_val else "train"

    def wrapped(model, packed, k):
        batch, carry, args, step = packed
        kw = {}
        if with_step:
            kw["step"] = step
        if has_args:
            kw["args"] = args
        if has_carry:
            kw["carry"] = carry
        out = loss_fn(model, batch, k, **kw)
        if has_carry:
            loss, aux, new_carry = out
        elif has_aux:
            (loss, aux), new_carry = out, carry
        else:
            loss, aux, new_carry = out, {}, carry
        return loss, (dict(aux), new_carry)

    def member_step(params, frozen, opt_state, carry, args, batch, mid, active, step, step_key):
        step_fn = make_train_step(wrapped, optimizer, eqx.combine(frozen, static_rest), has_aux=True)
        k = jax.random.fold_in(jax.random.fold_in(step_key, step), mid)
        p2, s2, loss, (aux, c2) = step_fn(params, opt_state, (batch, carry, args, step), k)
        skip = jnp.asarray(skip_step(batch), bool) if skip_step is not None else jnp.asarray(False)
        ok = (jnp.isfinite(loss) & _all_finite(p2)) if nan_guard else jnp.asarray(True)
        run = active & ~skip
        apply = run & ok
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(apply, a, b), new, old)  # noqa: E731
        return keep(p2, params), keep(s2, opt_state), keep(c2, carry), loss, aux, apply, run & ~ok

    def member_val(params, frozen, args, val_data, mid, step, val_key):
        model = eqx.combine(params, frozen, static_rest)
        kw = {}
        if with_step:
            kw["step"] = step
        if has_args:
            kw["args"] = args
        out = val_fn(model, val_data, jax.random.fold_in(val_key, mid), **kw)
        return dict(out) if isinstance(out, dict) else {"val": out}

    def batch_of(data, member_index, member_id, epoch, j, data_key):
        """The minibatch of step ``j`` of ``epoch``: shared (in_axes None) or per member (in_axes 0)."""
        if batching == "fixed":
            b = data[j]
        elif batching == "none":
            return data, None
        else:
            b = data
        if batching == "sampled":
            ek = jax.random.fold_in(data_key, epoch)
            if shared_batches:
                perm = jax.random.permutation(ek, n_samples) if shuffle else jnp.arange(n_samples)
                idx = jax.lax.dynamic_slice_in_dim(perm, j * batch_size, batch_size)
            else:
                perms = jax.vmap(lambda m: jax.random.permutation(jax.random.fold_in(ek, m), n_samples))(member_id)
                idx = jax.lax.dynamic_slice_in_dim(perms, j * batch_size, batch_size, axis=1)
        if not member_data:
            if batching == "sampled":
                if shared_batches:
                    return jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), b), None
                return jax.vmap(lambda i: jax.tree_util.tree_map(lambda a: jnp.take(a, i, axis=0), b))(idx), 0
            return b, None
        if batching == "sampled":
            if shared_batches:
                return jax.vmap(lambda r: jax.tree_util.tree_map(lambda a: jnp.take(a[r], idx, axis=0), b))(member_index), 0
            return jax.vmap(lambda r, i: jax.tree_util.tree_map(lambda a: jnp.take(a[r], i, axis=0), b))(member_index, idx), 0
        return jax.tree_util.tree_map(lambda a: jnp.take(a, member_index, axis=0), b), 0

    def monitored(loss, aux, val, smth):
        mon = es[1] if es is not None else default_monitor
        if mon == "train":
            return loss
        if mon == "val_smth":
            return smth
        if mon.startswith("train/"):
            return aux[mon[6:]]
        return val["val" if mon == "val" else mon[4:]]

    def vstep(dyn, data, member_index, epoch, data_key, step_key, params, opt_state, carry, active, j):
        """Step ``j`` of ``epoch`` for every member."""
        # non-array leaves of the data (names, flags) stay static: only arrays are sliced and vmapped
        arrays, static_data = eqx.partition(data, eqx.is_array)
        batch, b_axis = batch_of(arrays, member_index, dyn["member_id"], epoch, j, data_key)
        static_batch = static_data[j] if batching == "fixed" else static_data
        step = epoch * n_batches + j

        def one(p, fz, s, c, a, b, mid, act, stp, sk):
            return member_step(p, fz, s, c, a, eqx.combine(b, static_batch), mid, act, stp, sk)

        f = _member_map(one, (0, 0, 0, 0, 0, b_axis, 0, 0, None, None), dyn["member_id"].shape[0])
        return f(params, dyn["frozen"], opt_state, carry, dyn["args"], batch, dyn["member_id"], active, step, step_key)

    def vval(dyn, params, val_data, epoch, val_key):
        """``val_fn`` for every member after ``epoch``."""
        vv = _member_map(member_val, (0, 0, 0, None, 0, None, None), dyn["member_id"].shape[0])
        return vv(params, dyn["frozen"], dyn["args"], val_data, dyn["member_id"], (epoch + 1) * n_batches,
                  jax.random.fold_in(val_key, epoch))

    def epoch_fn(dyn, data, member_index, val_data, epoch, data_key, step_key, val_key, aux_shapes):
        active0 = (dyn["status"] == ACTIVE) & (dyn["epochs_done"] < dyn["budget"])
        m = active0.shape[0]
        dtype = dyn["best"].dtype

        def one_step(c, j):
            params, opt_state, carry, active, tot, cnt, aux_tot, diverged = c
            p, s, cr, loss, aux, applied, div = vstep(dyn, data, member_index, epoch, data_key, step_key, params, opt_state,
                                                       carry, active, j)
            tot = tot + jnp.where(applied, loss, 0.0).astype(dtype)
            aux_tot = {k: aux_tot[k] + jnp.where(_bcast(applied, v), jnp.asarray(v, dtype), 0.0) for k, v in aux.items()}
            return (p, s, cr, active & ~div, tot, cnt + applied.astype(dtype), aux_tot, diverged | div)

        zeros = jnp.zeros((m,), dtype)
        aux0 = {k: jnp.zeros(v.shape, dtype) for k, v in aux_shapes.items()}
        c = (dyn["params"], dyn["opt_state"], dyn["carry"], active0, zeros, zeros, aux0, jnp.zeros((m,), bool))
        if batching == "fixed":
            for j in range(n_fixed):  # batches of different shapes: one step each, unrolled
                c = one_step(c, j)
        elif n_batches == 1:
            c = one_step(c, 0)
        else:
            c, _ = jax.lax.scan(lambda cc, j: (one_step(cc, j), None), c, jnp.arange(n_batches))
        params, opt_state, carry, _, tot, cnt, aux_tot, diverged = c
        counted = cnt > 0
        den = jnp.maximum(cnt, 1.0)
        loss = jnp.where(counted, tot / den, jnp.nan)
        aux = {k: jnp.where(_bcast(counted, v), v / _bcast(den, v), jnp.nan) for k, v in aux_tot.items()}
        done = dyn["epochs_done"] + active0.astype(dyn["epochs_done"].dtype)
        val = {}
        smth = dyn["val_smth"]
        if val_fn is not None:
            val = vval(dyn, params, val_data, epoch, val_key)
            val = {k: jnp.asarray(v, dtype) for k, v in val.items()}
            if val_smoothing is not None and "val" in val:
                new = jnp.where(jnp.isnan(smth), val["val"], (1 - val_smoothing) * smth + val_smoothing * val["val"])
                smth = jnp.where(active0, new, smth)
        out = dict(dyn, params=params, opt_state=opt_state, carry=carry, epochs_done=done, val_smth=smth)
        status = dyn["status"]
        track = active0 & ~diverged
        if es is not None or restore_best:
            patience, _mon, mode, min_delta, min_steps, rule = es if es is not None else (1, default_monitor, "min", 0.0, 0, "no_improvement")
            value = jnp.asarray(monitored(loss, aux, val, smth), dtype)
            signed = value if mode == "min" else -value
            best = dyn["best"]
            improved = jnp.isfinite(signed) & (~jnp.isfinite(best) | (signed < best - min_delta))
            improved = improved & track
            late = (epoch + 1) * n_batches >= min_steps  # the global step (start_epoch counts)
            out["best"] = jnp.where(improved, signed, best)
            out["best_epoch"] = jnp.where(improved, done, dyn["best_epoch"])
            out["bad"] = jnp.where(improved, 0, jnp.where(track & late, dyn["bad"] + 1, dyn["bad"]))
            if restore_best:
                out["best_params"] = _where(improved, params, dyn["best_params"])
            if es is not None:
                if rule == "unchanged":
                    recent = dyn["recent"]
                    same = jnp.all(recent == value[:, None], axis=-1) & (done >= patience)
                    out["recent"] = jnp.where(track[:, None], jnp.concatenate([recent[:, 1:], value[:, None]], -1), recent)
                    stop = same
                else:
                    stop = out["bad"] >= patience
                status = jnp.where(track & late & stop, EARLY_STOPPED, status)
        status = jnp.where(diverged, DIVERGED, status)
        # a diverged member's monitored values become NaN, so that ranking code (PBT) sees it
        out["val_smth"] = jnp.where(diverged, jnp.nan, out["val_smth"])
        out["best"] = jnp.where(diverged, jnp.nan, out["best"])
        status = jnp.where((status == ACTIVE) & active0 & (done >= dyn["budget"]), COMPLETED, status)
        out["status"] = status.astype(dyn["status"].dtype)
        rows = {"loss": loss, **aux, **{("val" if k == "val" else f"val/{k}"): v for k, v in val.items()}}
        if val_smoothing is not None and val_fn is not None:
            rows["val_smth"] = out["val_smth"]
        rows = {k: jnp.where(_bcast(active0, v), v, jnp.nan) for k, v in rows.items()}
        return out, rows

    def run(dyn, data, member_index, val_data, epoch0, n_run, key):
        data_key, step_key, val_key = jax.random.split(key, 3)
        # shapes of the aux and val outputs (traced once more, abstractly: nothing is compiled for it)
        active = dyn["status"] == ACTIVE
        aux_shapes = jax.eval_shape(lambda d: vstep(d, data, member_index, epoch0, data_key, step_key, d["params"], d["opt_state"],
                                                    d["carry"], active, 0)[4], dyn)
        rows = {"loss": (), **{k: v.shape[1:] for k, v in aux_shapes.items()}}
        if val_fn is not None:
            val_shapes = jax.eval_shape(lambda d: vval(d, d["params"], val_data, epoch0, val_key), dyn)
            rows.update({("val" if k == "val" else f"val/{k}"): v.shape[1:] for k, v in val_shapes.items()})
            if val_smoothing is not None:
                rows["val_smth"] = ()
        m, dtype = active.shape[0], dyn["best"].dtype
        hist = {k: jnp.full((chunk, m) + shape, jnp.nan, dtype) for k, shape in rows.items()}

        def cond(c):
            e, d, _ = c
            return (e < n_run) & jnp.any((d["status"] == ACTIVE) & (d["epochs_done"] < d["budget"]))

        def body(c):
            e, d, h = c
            d, rows = epoch_fn(d, data, member_index, val_data, epoch0 + e, data_key, step_key, val_key, aux_shapes)
            h = {k: jax.lax.dynamic_update_index_in_dim(h[k], rows[k].astype(h[k].dtype), e, 0) for k in h}
            return e + 1, d, h

        e, dyn, hist = jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), dyn, hist))
        return dyn, hist, e

    fn = eqx.filter_jit(run)
    if key is not None:
        _CACHE[key] = fn
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return fn


_INIT_CACHE: OrderedDict = OrderedDict()


def _init_fn(optimizer):
    """``vmap(optimizer.init)`` compiled once per optimiser object (one small program instead of eager ops)."""
    try:
        fn = _INIT_CACHE.get(optimizer)
    except TypeError:
        return jax.jit(jax.vmap(optimizer.init))
    if fn is None:
        fn = _INIT_CACHE[optimizer] = jax.jit(jax.vmap(optimizer.init))
        while len(_INIT_CACHE) > _CACHE_SIZE:
            _INIT_CACHE.popitem(last=False)
    return fn


def _member_map(f, in_axes, m: int):
    """``vmap(f, in_axes)`` over the member axis; a population of one calls ``f`` directly (no batching
    overhead, and data-dependent ``lax.cond`` stays a branch instead of a ``select``)."""
    if m != 1:
        return jax.vmap(f, in_axes=in_axes)

    def one(*args):
        squeezed = [jax.tree_util.tree_map(lambda a: a[0], x) if ax == 0 else x for x, ax in zip(args, in_axes)]
        return jax.tree_util.tree_map(lambda a: jnp.expand_dims(a, 0), f(*squeezed))

    return one


def _initial_smth(value: Any, m: int, dtype) -> np.ndarray:
    if value is None:
        return np.full(m, np.nan, dtype)
    v = np.asarray(value, dtype=dtype)
    if v.ndim not in (0, 1) or (v.ndim == 1 and v.shape != (m,)):
        raise ConfigError(f"val_smth must be a scalar or one value per member ({m}), got shape {v.shape}")
    return np.broadcast_to(v, (m,)).copy()


def _bcast(mask, like):
    return mask.reshape(mask.shape + (1,) * (jnp.ndim(like) - mask.ndim))


# ------------------------------------------------------------------------------------------------
# the host loop
# ------------------------------------------------------------------------------------------------


def _leading(tree: Any, m: int, name: str) -> None:
    for x in jax.tree_util.tree_leaves(tree):
        if eqx.is_array(x) and (x.ndim == 0 or x.shape[0] != m):
            raise ConfigError(f"every array leaf of {name} needs the leading member axis of length {m}, got shape {x.shape}")


def _strong(tree: Any) -> Any:
    """Every array leaf with a strong (not weak) dtype: the layout the compiled chunk is traced with."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=x.dtype) if eqx.is_array(x) else x, tree)


def _same_layout(new: Any, old: Any, what: str) -> Any:
    """``new`` cast leaf by leaf to ``old``'s dtypes; raises when the structure or a shape differs."""
    n_leaves, n_def = jax.tree_util.tree_flatten(new)
    o_leaves, o_def = jax.tree_util.tree_flatten(old)
    if n_def != o_def:
        raise ConfigError(f"{what}: the state's structure changed ({n_def} vs {o_def}); keep the same fields and leaves")
    out = []
    for a, b in zip(n_leaves, o_leaves):
        if np.shape(a) != np.shape(b):
            raise ConfigError(f"{what}: a leaf changed shape from {np.shape(b)} to {np.shape(a)} (that would recompile)")
        out.append(jnp.asarray(a, dtype=b.dtype) if eqx.is_array(b) else a)
    return jax.tree_util.tree_unflatten(o_def, out)


def fit_population(
    population: Any,
    loss_fn: Callable[..., Any],
    data: Any = None,
    *,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    n_epochs: int | Sequence[int] | jax.Array,
    batch_size: int | None = None,
    shuffle: bool = True,
    shared_batches: bool = True,
    batches: Sequence[Any] | None = None,
    member_data: bool = False,
    data_index: Any = None,
    skip_step: Callable[[Any], Any] | None = None,
    filter_spec: Any = None,
    has_aux: bool = False,
    with_step: bool = False,
    args: Any = None,
    carry: Any = None,
    hyperparams: dict[str, Any] | None = None,
    opt_state: Any = None,
    val_fn: Callable[..., Any] | None = None,
    val_data: Any = None,
    val_smoothing: float | None = None,
    early_stopping: EarlyStopping | None = None,
    restore_best: bool = False,
    nan_guard: bool = True,
    epochs_per_chunk: int | None = None,
    between_chunks: Callable[[PopulationState, dict[str, np.ndarray]], PopulationState | None] | None = None,
    extra: Any = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    shard: bool = True,
    devices: Sequence[Any] | None = None,
    progress: bool | None = None,
    desc: str = "fit_population",
    start_epoch: int = 0,
    val_smth: Any = None,
) -> PopulationResult:
    """Train every member of ``population`` (leading member axis) independently, in one compiled program.

    Parameters
    ----------
    population
        A stacked model (:func:`spikejax.core.stack`): every array leaf has the member axis first.
    loss_fn
        Per member: ``loss_fn(model, batch, key) -> loss`` (``(loss, aux_dict)`` with ``has_aux``;
        ``(loss, aux_dict, new_carry)`` with ``carry=``), keyword arguments ``step=`` (the global
        step, traced; with ``with_step``), ``args=`` (the member's ``args``), ``carry=``.
    data
        Training data. Shared by all members (leading sample axis) or, with ``member_data=True``,
        one data set per member (leading member axis, then the sample axis); with ``data_index``
        (members,) ints, member ``i`` uses row ``data_index[i]`` of the per-member data (e.g.
        several learning rates per cell without copying the cell's data).
    optimizer
        Any optax transformation; build it with ``optax.inject_hyperparams`` for per-member
        hyperparameters (``hyperparams={"learning_rate": lrs}``, one value per member). It is
        initialised per member (``vmap(optimizer.init)``) unless ``opt_state`` is given.
    key
        PRNG key: minibatch permutations ``fold_in(key_data, epoch)``, step keys
        ``fold_in(fold_in(key_step, step), member_id)``.
    n_epochs
        Epochs: an int, or (members,) ints (each member's budget; the run lasts the longest).
    batch_size, shuffle, shared_batches
        Minibatches of ``batch_size`` samples drawn from a per-epoch permutation (``n_samples //
        batch_size`` steps per epoch; ``None``: one full-batch step per epoch). ``shared_batches``:
        every member sees the same minibatches; ``False``: each member its own permutation.
    batches
        Instead of ``data``: a fixed sequence of minibatches (pytrees that may differ in shape; per
        member like ``data`` with ``member_data``); every epoch takes one step on each, in order
        (the steps are unrolled in the program).
    skip_step
        ``skip_step(batch) -> bool`` (per member): the step is not applied and not counted (e.g. an
        empty, padded batch).
    filter_spec
        Trainable leaves (default :func:`spikejax.core.trainable`); the rest is frozen.
    args, carry
        Per-member pytrees (leading member axis) handed to ``loss_fn`` (and ``val_fn``): traced
        hyperparameters and a loss state carried from step to step.
    val_fn, val_data, val_smoothing
        ``val_fn(model, val_data, key, **kw) -> value or dict`` per member after every epoch (inside
        the program); ``val_smoothing=a``: ``val_smth = (1 - a) val_smth + a val``.
    early_stopping
        :class:`~spikejax.core.EarlyStopping` applied to each member after each epoch (monitor
        ``"train"``, ``"train/<aux key>"``, ``"val"``, ``"val/<key>"``, ``"val_smth"``; ``min_steps``
        counts the member's steps).
    restore_best
        Return each member's best parameters by the monitored value.
    nan_guard
        A non-finite loss or parameter stops the member (status ``"diverged"``; the last finite
        parameters are kept).
    epochs_per_chunk
        Epochs per compiled call (default: all, or ``checkpoint_every``); progress, the hook and
        checkpoints happen between chunks.
    between_chunks
        ``between_chunks(state, history) -> PopulationState | None`` after every chunk, with the
        :class:`PopulationState` (unpadded) and the history so far; return a modified state (same
        leaf shapes and dtypes: it never recompiles) or ``None``. For an exact resume, draw its
        random numbers from ``state.epoch`` and keep host-side state in ``state.extra``.
    extra
        Initial value of ``state.extra`` (a pytree of arrays the hook keeps; checkpointed).
    checkpoint_dir, checkpoint_every, resume
        Checkpoint the population every ``checkpoint_every`` epochs (a multiple of
        ``epochs_per_chunk``; default every chunk) and resume from ``checkpoint_dir`` when it holds one.
    shard, devices
        Pad and shard the member axis over the local devices (no effect with one device).
    progress, desc
        tqdm bar over epochs (default: when stderr is a terminal).
    start_epoch
        The population's epoch clock starts here (step keys, minibatch permutations, ``step`` and
        ``state.epoch`` continue from it): a run continued across calls draws what one call would.
        ``n_epochs`` still counts the epochs of this call.
    val_smth
        Initial smoothed validation value per member (default NaN: the first value).

    Returns
    -------
    :class:`PopulationResult`.
    """
    params_all = eqx.filter(population, eqx.is_array)
    if not jax.tree_util.tree_leaves(params_all):
        raise ConfigError("population has no array leaves to train")
    m = batch_size_of(params_all)
    _leading(params_all, m, "population")
    budget = np.asarray(n_epochs)
    if budget.ndim == 0:
        budget = np.full(m, int(budget))
    if budget.shape != (m,) or budget.dtype.kind not in "iu" or np.any(budget < 0):
        raise ConfigError(f"n_epochs must be an int >= 0 or one int >= 0 per member ({m}), got {n_epochs!r}")
    max_epochs = int(budget.max()) if m else 0
    if val_smoothing is not None and not 0 < val_smoothing <= 1:
        raise ConfigError(f"val_smoothing must be in (0, 1], got {val_smoothing}")
    for what, mon in (("early_stopping", early_stopping.monitor if early_stopping is not None else None),):
        if mon is not None and mon.startswith("val") and val_fn is None:
            raise ConfigError(f"{what} monitors {mon!r}: pass val_fn=")
        if mon == "val_smth" and val_smoothing is None:
            raise ConfigError(f"{what} monitors 'val_smth': pass val_smoothing=")
    if args is not None:
        _leading(args, m, "args")
    if carry is not None:
        _leading(carry, m, "carry")

    # ---- data layout
    if batches is not None and data is not None:
        raise ConfigError("pass either data= or batches=, not both")
    if batches is not None:
        batches = tuple(batches)
        if not batches:
            raise ConfigError("batches must hold at least one minibatch")
        if batch_size is not None:
            raise ConfigError("batch_size does not apply to batches= (they are already minibatches)")
        batching, n_batches, n_samples = "fixed", len(batches), None
        payload = batches
    elif data is None:
        if batch_size is not None:
            raise ConfigError("batch_size needs data=")
        batching, n_batches, n_samples, payload = "none", 1, None, None
    else:
        leaves = [x for x in jax.tree_util.tree_leaves(data) if eqx.is_array(x) or isinstance(x, np.ndarray)]
        axis = 1 if member_data else 0
        sizes = {int(np.shape(x)[axis]) for x in leaves if np.ndim(x) > axis}
        if batch_size is not None:
            if len(sizes) != 1:
                raise ConfigError(f"all arrays in data must share their sample axis {axis}, got sizes {sorted(sizes)}")
            n_samples = sizes.pop()
            if not 1 <= int(batch_size) <= n_samples:
                raise ConfigError(f"batch_size must be in [1, {n_samples}] (samples), got {batch_size}")
            batching, batch_size, n_batches = "sampled", int(batch_size), n_samples // int(batch_size)
        else:
            batching, n_batches, n_samples = "full", 1, None
        payload = data
    if member_data:
        if batching == "none":
            raise ConfigError("member_data=True needs data= or batches=")
        rows = {int(np.shape(x)[0]) for x in jax.tree_util.tree_leaves(payload) if np.ndim(x) > 0}
        if data_index is None:
            if rows != {m}:
                raise ConfigError(f"member_data: every data leaf needs the leading member axis ({m}), got {sorted(rows)}")
            member_index = np.arange(m, dtype=np.int32)
        else:
            member_index = np.asarray(data_index)
            if member_index.shape != (m,) or member_index.dtype.kind not in "iu":
                raise ConfigError(f"data_index must hold one int per member ({m}), got shape {member_index.shape}")
            if len(rows) != 1 or member_index.min() < 0 or member_index.max() >= min(rows):
                raise ConfigError(f"data_index must index the leading axis of the per-member data (sizes {sorted(rows)})")
            member_index = member_index.astype(np.int32)
    else:
        if data_index is not None:
            raise ConfigError("data_index needs member_data=True")
        member_index = np.arange(m, dtype=np.int32)

    # ---- state
    if filter_spec is None:
        filter_spec = trainable(population)
    params, rest = eqx.partition(population, filter_spec)
    frozen, static = eqx.partition(rest, eqx.is_array)
    if opt_state is None:
        opt_state = _init_fn(optimizer)(params)
    for name, values in (hyperparams or {}).items():
        from .training import get_hyperparam

        old = get_hyperparam(opt_state, name)
        v = np.asarray(values, dtype=float)
        if v.ndim not in (0, 1) or (v.ndim == 1 and v.shape != (m,)):
            raise ConfigError(f"hyperparams[{name!r}] must be a scalar or one value per member ({m}), got shape {v.shape}")
        # set on the host (numpy, the state's dtype): no device op, nothing to compile
        opt_state = optax.tree_utils.tree_set(opt_state, **{name: np.broadcast_to(v, old.shape).astype(old.dtype)})
    dtype = jnp.result_type(*[x.dtype for x in jax.tree_util.tree_leaves(params) if eqx.is_inexact_array(x)] or [float])
    es = None
    if early_stopping is not None:
        e = early_stopping
        es = (int(e.patience), e.monitor, e.mode, float(e.min_delta), int(e.min_steps), e.rule)
    n_recent = max(int(early_stopping.patience) - 1, 1) if early_stopping is not None else 1
    params, frozen, opt_state, args, carry = _strong((params, frozen, opt_state, args, carry))
    i32, fdt = np.int32, np.dtype(dtype)  # counters built on the host: no device ops before the first chunk
    state = PopulationState(
        params=params, frozen=frozen, opt_state=opt_state, args=args, carry=carry,
        member_id=np.arange(m, dtype=i32), status=np.zeros(m, i32), epochs_done=np.zeros(m, i32),
        budget=budget.astype(i32), best=np.full(m, np.inf, fdt), best_epoch=np.full(m, -1, i32),
        bad=np.zeros(m, i32), recent=np.full((m, n_recent), np.nan, fdt), val_smth=_initial_smth(val_smth, m, fdt),
        best_params=params if restore_best else None, epoch=0, extra=extra,
    )

    if epochs_per_chunk is None:
        epochs_per_chunk = checkpoint_every or max(max_epochs, 1)
    chunk = max(1, min(int(epochs_per_chunk), max(max_epochs, 1)))
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None:
        checkpoint_every = checkpoint_every or chunk
        if checkpoint_every % chunk:
            raise ConfigError(f"checkpoint_every ({checkpoint_every}) must be a multiple of epochs_per_chunk ({chunk})")

    static_leaves, static_def = jax.tree_util.tree_flatten(static)
    cfg = (has_aux, with_step, args is not None, carry is not None, val_data is not None, batching, n_batches, batch_size,
           n_samples, bool(shuffle), bool(shared_batches), bool(member_data), len(batches) if batches else 0,
           bool(nan_guard), es, val_smoothing, bool(restore_best), chunk, val_fn is not None)
    run = _chunk_fn(cfg, loss_fn, optimizer, val_fn, skip_step, static, (tuple(static_leaves), static_def))

    devs = list(devices) if devices is not None else jax.local_devices()
    sharded = bool(shard) and len(devs) > 1

    def place(st: PopulationState):
        dyn = _device_part(st)
        idx = member_index
        if sharded:
            (dyn, idx), _ = shard_batch((dyn, idx), devs)
        return dyn, idx

    def view(dyn) -> PopulationState:
        if sharded:
            dyn = jax.tree_util.tree_map(lambda a: a[:m] if eqx.is_array(a) and a.ndim > 0 else a, dyn)
        return dataclasses.replace(state_box[0], **dyn)

    history: dict[str, np.ndarray] | None = None
    epoch = 0
    if ckpt is not None and resume:
        skeleton = _history_skeleton(run, place(state), payload, val_data, key, max_epochs, m)
        found = load_checkpoint(ckpt, (_device_part(state), state.extra, skeleton))
        if found is not None:
            epoch, (dyn, extra_, hist_), _meta = found
            state = dataclasses.replace(state, **dyn, extra=extra_, epoch=start_epoch + int(epoch))
            history = {k: np.array(v) for k, v in hist_.items()}
    state_box = [state]
    dyn, idx = place(state)

    show = _auto_progress() if progress is None else bool(progress)
    from tqdm.auto import tqdm

    bar = tqdm(total=max_epochs, initial=epoch, desc=desc, disable=not show, leave=False, dynamic_ncols=True)
    try:
        while epoch < max_epochs and bool(np.any(view(dyn).active)):
            n_run = min(chunk, max_epochs - epoch)
            dyn, hist, n_done = run(dyn, payload, idx, val_data, np.int32(start_epoch + epoch), np.int32(n_run), key)
            n_done = int(n_done)
            if history is None:
                history = {k: np.full((max_epochs,) + (m,) + v.shape[2:], np.nan, np.dtype(v.dtype)) for k, v in hist.items()}
            for k, v in hist.items():
                history[k][epoch : epoch + n_done] = np.asarray(v)[:n_done, :m]
            epoch += n_done
            state_box[0] = dataclasses.replace(state_box[0], epoch=start_epoch + epoch)
            bar.update(n_done)
            if show:
                st = view(dyn)
                last = history["loss"][epoch - 1] if n_done else np.full(m, np.nan)
                bar.set_postfix({"active": int(st.active.sum()),
                                 "loss": float(np.nanmin(last)) if np.isfinite(last).any() else float("nan")}, refresh=False)
            if between_chunks is not None:
                current = view(dyn)
                new = between_chunks(current, {k: v[:epoch] for k, v in history.items()})
                if new is not None:
                    if not isinstance(new, PopulationState):
                        raise ConfigError(f"between_chunks must return a PopulationState or None, got {type(new).__name__}")
                    fixed = _same_layout(_device_part(new), _device_part(current), "between_chunks")
                    state_box[0] = dataclasses.replace(new, **fixed, epoch=start_epoch + epoch)
                    dyn, idx = place(state_box[0])
            if ckpt is not None and (epoch % checkpoint_every == 0 or epoch >= max_epochs or not np.any(view(dyn).active)):
                st = view(dyn)
                save_checkpoint(ckpt, epoch, (_device_part(st), st.extra, history), {"n_members": m})
    finally:
        bar.close()

    final = view(dyn)
    final = dataclasses.replace(final, epoch=start_epoch + epoch)
    if history is None:
        skeleton = _history_skeleton(run, (dyn, idx), payload, val_data, key, max_epochs, m)
        history = {k: np.array(v) for k, v in skeleton.items()}
    status = np.asarray(final.status)
    host_status = np.asarray([STATUS_NAMES[int(s)] for s in status])
    trained = final.best_params if (restore_best and final.best_params is not None) else final.params
    if restore_best:
        no_best = np.asarray(final.best_epoch) < 0
        if no_best.any():
            trained = _where(jnp.asarray(no_best), final.params, trained)
    best = np.asarray(final.best, dtype=float)
    if early_stopping is not None and early_stopping.mode == "max":
        best = -best
    best = np.where(np.isfinite(best), best, np.nan)
    reason = "completed" if not np.any(final.active) else "epochs"
    return PopulationResult(
        population=eqx.combine(trained, final.frozen, static), state=final, static=static,
        history=history, status=host_status, epochs=np.asarray(final.epochs_done), best=best,
        best_epoch=np.asarray(final.best_epoch), n_epochs=epoch, stop_reason=reason,
    )


def _history_skeleton(run, placed, payload, val_data, key, max_epochs, m):
    """Empty (NaN) history arrays of the right keys, shapes and dtypes (for resuming / zero epochs)."""
    dyn, idx = placed
    out = eqx.filter_eval_shape(run, dyn, payload, idx, val_data, np.int32(0), np.int32(0), key)[1]
    return {k: np.full((max_epochs, m) + v.shape[2:], np.nan, np.dtype(v.dtype)) for k, v in out.items()}
