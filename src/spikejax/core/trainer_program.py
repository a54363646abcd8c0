"""The compiled program of the one trainer (:func:`spikejax.core.fit_population`; :func:`spikejax.core.fit`
is it with one member).

A *round* is ``steps_per_round`` optimiser steps (an epoch by default; ``fit``'s ``steps_per_call``).
After every round, per member and inside the program: the validation (unless it runs on the host),
its smoothing, the NaN guard, early stopping, restore-best bookkeeping and plateau decay. Rounds run
in chunks inside one ``lax.while_loop`` that exits once every member has finished. Nothing here
loops on the host; :mod:`spikejax.core.population` holds the host loop.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .errors import ConfigError
from .trainer_options import EarlyStopping, PlateauDecay

ACTIVE, COMPLETED, EARLY_STOPPED, DIVERGED, STOPPED = 0, 1, 2, 3, 4
#: Names of the per-member status codes (``PopulationState.status`` indexes this tuple).
STATUS_NAMES = ("active", "completed", "early_stopping", "diverged", "stopped")

def patience_step(improved: jax.Array, n_bad: jax.Array, patience: int, count: Any = True) -> tuple[jax.Array, jax.Array]:
    """The one patience counter (in the program, any batch shape): ``(n_bad, stop)``.

    ``improved`` resets the count of evaluations without improvement, other evaluations that ``count``
    add one, and ``stop`` is ``n_bad >= patience``. Early stopping and plateau decay here and the
    mesoscopic E-step (``meso.hard_em``) all count with it.
    """
    n_bad = jnp.where(improved, 0, jnp.where(count, n_bad + 1, n_bad)).astype(jnp.asarray(n_bad).dtype)
    return n_bad, n_bad >= patience


DEVICE_FIELDS = ("params", "frozen", "opt_state", "args", "carry", "member_id", "status", "epochs_done", "budget",
                 "best", "best_epoch", "bad", "recent", "val_smth", "plateau_best", "plateau_bad", "best_params")


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything static about one training configuration (the compiled program's cache key)."""

    batching: str              # "none" | "full" | "sampled" | "fixed"
    n_batches: int             # steps per epoch
    batch_size: int | None
    n_samples: int | None
    shuffle: bool
    shared: bool
    member_data: bool
    steps_per_round: int
    pass_step: bool
    has_args: bool
    has_carry: bool
    nan_guard: bool
    early_stopping: EarlyStopping | None
    plateau: PlateauDecay | None
    validation: str            # "none" | "program" | "host"
    val_pass_step: bool
    has_val_data: bool
    smoothing: float | None
    restore_best: bool
    chunk: int                 # rounds per compiled call


@dataclasses.dataclass(frozen=True)
class Program:
    run: Any      # (dyn, data, idx, val_data, round0, n_run, key, step_limit) -> (dyn, hist, n_done)
    train: Any    # host validation: one round's training -> (trained, stats)
    finish: Any   # host validation: the round's evaluation -> (dyn, rows)


def split_loss_output(out: Any, has_carry: bool, carry: Any):
    """``loss``, ``(loss, aux)`` or ``(loss, aux, carry)`` -> ``(loss, aux dict, carry)`` (decided at trace time)."""
    if isinstance(out, (tuple, list)):
        if len(out) == 2:
            loss, aux = out
            new_carry = carry
        elif len(out) == 3:
            if not has_carry:
                raise ConfigError("the loss returned (loss, aux, carry) but the trainer got no carry=")
            loss, aux, new_carry = out
        else:
            raise ConfigError(f"the loss must return loss, (loss, aux) or (loss, aux, carry); got a tuple of {len(out)}")
    else:
        loss, aux, new_carry = out, {}, carry
    return loss, ({} if aux is None else dict(aux)), new_carry


def all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree) if eqx.is_inexact_array(x)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 8


def program(plan: Plan, loss_fn, optimizer, val_fn, skip_step, static_rest, static_key) -> Program:
    """The jitted program of one configuration (cached: same ingredients, one compilation)."""
    from .training import make_train_step

    key = (plan, loss_fn, optimizer, val_fn if plan.validation == "program" else None, skip_step, static_key)
    try:
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    p = plan
    es, pl = p.early_stopping, p.plateau
    default_monitor = "val" if p.validation != "none" else "train"
    spr, nb = p.steps_per_round, p.n_batches

    def wrapped(model, packed, k):
        batch, carry, args, step = packed
        kw = {}
        if p.pass_step:
            kw["step"] = step
        if p.has_args:
            kw["args"] = args
        if p.has_carry:
            kw["carry"] = carry
        loss, aux, new_carry = split_loss_output(loss_fn(model, batch, k, **kw), p.has_carry, carry)
        return loss, (aux, new_carry)

    def member_step(params, frozen, opt_state, carry, args, batch, mid, active, step, step_key, step_limit):
        step_fn = make_train_step(wrapped, optimizer, eqx.combine(frozen, static_rest), has_aux=True)
        k = jax.random.fold_in(jax.random.fold_in(step_key, step), mid)
        p2, s2, loss, (aux, c2) = step_fn(params, opt_state, (batch, carry, args, step), k)
        skip = jnp.asarray(skip_step(batch), bool) if skip_step is not None else jnp.asarray(False)
        ok = (jnp.isfinite(loss) & all_finite(p2)) if p.nan_guard else jnp.asarray(True)
        run = active & ~skip & (step < step_limit)
        apply = run & ok
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(apply, a, b), new, old)  # noqa: E731
        return keep(p2, params), keep(s2, opt_state), keep(c2, carry), loss, aux, apply, run & ~ok

    def member_val(params, frozen, args, val_data, mid, step, val_key):
        model = eqx.combine(params, frozen, static_rest)
        kw = {}
        if p.val_pass_step:
            kw["step"] = step
        if p.has_args:
            kw["args"] = args
        out = val_fn(model, val_data, jax.random.fold_in(val_key, mid), **kw)
        return dict(out) if isinstance(out, dict) else {"val": out}

    def batch_of(data, member_index, member_id, step, j, data_key):
        """The minibatch of global ``step`` (``j``: its static index in the round, for fixed batches)."""
        if p.batching == "fixed":
            b = data[j]
        elif p.batching == "none":
            return data, None
        else:
            b = data
        if p.batching == "sampled":
            epoch, i = step // nb, step % nb
            ek = jax.random.fold_in(data_key, epoch)
            if p.shared:
                perm = jax.random.permutation(ek, p.n_samples) if p.shuffle else jnp.arange(p.n_samples)
                idx = jax.lax.dynamic_slice_in_dim(perm, i * p.batch_size, p.batch_size)
            else:
                perms = jax.vmap(lambda m: jax.random.permutation(jax.random.fold_in(ek, m), p.n_samples))(member_id)
                idx = jax.lax.dynamic_slice_in_dim(perms, i * p.batch_size, p.batch_size, axis=1)
        if not p.member_data:
            if p.batching == "sampled":
                if p.shared:
                    return jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), b), None
                return jax.vmap(lambda i: jax.tree_util.tree_map(lambda a: jnp.take(a, i, axis=0), b))(idx), 0
            return b, None
        if p.batching == "sampled":
            if p.shared:
                return jax.vmap(lambda r: jax.tree_util.tree_map(lambda a: jnp.take(a[r], idx, axis=0), b))(member_index), 0
            return jax.vmap(lambda r, i: jax.tree_util.tree_map(lambda a: jnp.take(a[r], i, axis=0), b))(member_index, idx), 0
        return jax.tree_util.tree_map(lambda a: jnp.take(a, member_index, axis=0), b), 0

    # ``vstep`` and ``vval`` are jitted inside the program only so that JAX traces each of them once: the
    # program asks for their output shapes (``eval_shape``) before its loop and then calls them in it, three
    # traces of the user's loss otherwise (the costliest part of a warm start: 1.5 s a trace for L5's).
    # The calls must agree in abstract values: ``j`` is a static int for fixed batches and for one step a
    # round, an int32 scalar otherwise.
    @eqx.filter_jit
    def vstep(dyn, data, member_index, rnd, j, data_key, step_key, params, opt_state, carry, active, step_limit):
        """Step ``j`` of round ``rnd`` for every member."""
        arrays, static_data = eqx.partition(data, eqx.is_array)  # non-array leaves of the data stay static
        step = rnd * spr + j
        batch, b_axis = batch_of(arrays, member_index, dyn["member_id"], step, j, data_key)
        static_batch = static_data[j] if p.batching == "fixed" else static_data

        def one(pr, fz, s, c, a, b, mid, act, stp, sk, lim):
            return member_step(pr, fz, s, c, a, eqx.combine(b, static_batch), mid, act, stp, sk, lim)

        f = member_map(one, (0, 0, 0, 0, 0, b_axis, 0, 0, None, None, None), dyn["member_id"].shape[0])
        return f(params, dyn["frozen"], opt_state, carry, dyn["args"], batch, dyn["member_id"], active, step, step_key,
                 step_limit)

    def steps_done(rnd, step_limit):
        return jnp.minimum((rnd + 1) * spr, step_limit)

    @eqx.filter_jit
    def vval(dyn, params, val_data, rnd, val_key, step_limit):
        vv = member_map(member_val, (0, 0, 0, None, 0, None, None), dyn["member_id"].shape[0])
        return vv(params, dyn["frozen"], dyn["args"], val_data, dyn["member_id"], steps_done(rnd, step_limit),
                  jax.random.fold_in(val_key, rnd))

    def train_round(dyn, data, member_index, rnd, data_key, step_key, aux_shapes, step_limit):
        active0 = (dyn["status"] == ACTIVE) & (dyn["epochs_done"] < dyn["budget"])
        m = active0.shape[0]
        dtype = dyn["best"].dtype

        def one_step(c, j):
            params, opt_state, carry, active, tot, cnt, aux_tot, diverged, div_at = c
            pr, s, cr, loss, aux, applied, div = vstep(dyn, data, member_index, rnd, j, data_key, step_key, params,
                                                       opt_state, carry, active, step_limit)
            tot = tot + jnp.where(applied, loss, 0.0).astype(dtype)
            aux_tot = {k: aux_tot[k] + jnp.where(bcast(applied, v), jnp.asarray(v, dtype), 0.0) for k, v in aux.items()}
            div_at = jnp.where(div & (div_at < 0), rnd * spr + j, div_at).astype(jnp.int32)
            return (pr, s, cr, active & ~div, tot, cnt + applied.astype(dtype), aux_tot, diverged | div, div_at)

        zeros = jnp.zeros((m,), dtype)
        aux0 = {k: jnp.zeros(v.shape, dtype) for k, v in aux_shapes.items()}
        c = (dyn["params"], dyn["opt_state"], dyn["carry"], active0, zeros, zeros, aux0, jnp.zeros((m,), bool),
             jnp.full((m,), -1, jnp.int32))
        if p.batching == "fixed":
            for j in range(spr):  # batches of different shapes: one step each, unrolled
                c = one_step(c, j)
        elif spr == 1:
            c = one_step(c, 0)
        else:
            c, _ = jax.lax.scan(lambda cc, j: (one_step(cc, j), None), c, jnp.arange(spr, dtype=jnp.int32))
        params, opt_state, carry, _, tot, cnt, aux_tot, diverged, div_at = c
        counted = cnt > 0
        den = jnp.maximum(cnt, 1.0)
        loss = jnp.where(counted, tot / den, jnp.nan)
        aux = {k: jnp.where(bcast(counted, v), v / bcast(den, v), jnp.nan) for k, v in aux_tot.items()}
        trained = {"params": params, "opt_state": opt_state, "carry": carry}
        stats = {"loss": loss, "aux": aux, "active0": active0, "diverged": diverged, "div_at": div_at}
        return trained, stats

    def monitored(mon, loss, aux, val, smth):
        if mon == "train":
            return loss
        if mon == "val_smth":
            return smth
        if mon.startswith("train/"):
            return aux[mon[6:]]
        return val["val" if mon == "val" else mon[4:]]

    def finish_round(dyn, trained, stats, val, rnd, step_limit):
        """The evaluation after a round: smoothing, early stopping, best, plateau decay, status, history row."""
        loss, aux, active0, diverged = stats["loss"], stats["aux"], stats["active0"], stats["diverged"]
        dtype = dyn["best"].dtype
        params, opt_state = trained["params"], trained["opt_state"]
        done = dyn["epochs_done"] + active0.astype(dyn["epochs_done"].dtype)
        steps = steps_done(rnd, step_limit)
        val = {k: jnp.asarray(v, dtype) for k, v in val.items()}
        smth = dyn["val_smth"]
        if p.smoothing is not None and "val" in val:
            a = p.smoothing
            new = jnp.where(jnp.isnan(smth), val["val"], (1 - a) * smth + a * val["val"])
            smth = jnp.where(active0, new, smth)
        out = dict(dyn, params=params, opt_state=opt_state, carry=trained["carry"], epochs_done=done, val_smth=smth)
        status = dyn["status"]
        track = active0 & ~diverged
        rows = {"loss": loss, **aux, **{("val" if k == "val" else f"val/{k}"): v for k, v in val.items()}}
        if p.smoothing is not None and p.validation != "none":
            rows["val_smth"] = smth
        if es is not None or p.restore_best:
            e = es if es is not None else EarlyStopping(patience=1, monitor=default_monitor)
            value = jnp.asarray(monitored(e.monitor, loss, aux, val, smth), dtype)
            signed = value if e.mode == "min" else -value
            best = dyn["best"]
            improved = jnp.isfinite(signed) & (~jnp.isfinite(best) | (signed < best - e.min_delta)) & track
            late = steps >= e.min_steps
            out["best"] = jnp.where(improved, signed, best)
            out["best_epoch"] = jnp.where(improved, done, dyn["best_epoch"])
            out["bad"], patience_done = patience_step(improved, dyn["bad"], es.patience if es is not None else 1, track & late)
            if p.restore_best:
                # a training loss is measured at the parameters *before* the round's updates (exactly so
                # when a round is one step): those are the best; a validation value after the round
                at = dyn["params"] if e.monitor == "train" or e.monitor.startswith("train/") else params
                out["best_params"] = where(improved, at, dyn["best_params"])
            if es is not None:
                if es.rule == "unchanged":
                    recent = dyn["recent"]
                    stop = jnp.all(recent == value[:, None], axis=-1) & (done >= es.patience)
                    out["recent"] = jnp.where(track[:, None], jnp.concatenate([recent[:, 1:], value[:, None]], -1), recent)
                else:
                    stop = patience_done
                status = jnp.where(track & late & stop, EARLY_STOPPED, status)
        if pl is not None:
            value = jnp.asarray(monitored(pl.monitor, loss, aux, val, smth), dtype)
            signed = value if pl.mode == "min" else -value
            hp = optax.tree_utils.tree_get(opt_state, pl.name)
            rows[pl.name] = hp
            considered = track & (steps >= pl.min_steps)
            pbest, pbad = dyn["plateau_best"], dyn["plateau_bad"]
            imp = jnp.isfinite(signed) & (~jnp.isfinite(pbest) | (signed < pbest - pl.min_delta))
            out["plateau_best"] = jnp.where(considered & imp, signed, pbest)
            pbad, reached = patience_step(considered & imp, pbad, pl.patience, considered)
            decay = considered & reached
            new_hp = jnp.where(decay, jnp.maximum(hp * pl.factor, pl.min_value), hp).astype(hp.dtype)
            out["plateau_bad"] = jnp.where(decay, 0, pbad).astype(dyn["plateau_bad"].dtype)
            out["opt_state"] = optax.tree_utils.tree_set(opt_state, **{pl.name: new_hp})
        status = jnp.where(diverged, DIVERGED, status)
        # a diverged member's monitored values become NaN, so that ranking code (PBT) sees it
        out["val_smth"] = jnp.where(diverged, jnp.nan, out["val_smth"])
        out["best"] = jnp.where(diverged, jnp.nan, out["best"])
        status = jnp.where((status == ACTIVE) & active0 & (done >= dyn["budget"]), COMPLETED, status)
        out["status"] = status.astype(dyn["status"].dtype)
        if p.nan_guard:
            rows["_diverged_at"] = jnp.where(diverged, stats["div_at"], -1)
        rows = {k: jnp.where(bcast(active0, v), v, jnp.nan) for k, v in rows.items()}
        return out, rows

    def aux_shapes_of(dyn, data, member_index, rnd0, data_key, step_key, step_limit):
        active = dyn["status"] == ACTIVE
        j0 = 0 if p.batching == "fixed" or spr == 1 else jnp.zeros((), jnp.int32)  # as train_round passes it
        return jax.eval_shape(lambda d: vstep(d, data, member_index, rnd0, j0, data_key, step_key, d["params"],
                                              d["opt_state"], d["carry"], active, step_limit)[4], dyn)

    def run(dyn, data, member_index, val_data, rnd0, n_run, key, step_limit):
        data_key, step_key, val_key = jax.random.split(key, 3)
        aux_shapes = aux_shapes_of(dyn, data, member_index, rnd0, data_key, step_key, step_limit)

        def body_rows(d, rnd):
            trained, stats = train_round(d, data, member_index, rnd, data_key, step_key, aux_shapes, step_limit)
            val = vval(d, trained["params"], val_data, rnd, val_key, step_limit) if p.validation == "program" else {}
            return finish_round(d, trained, stats, val, rnd, step_limit)

        row_shapes = jax.eval_shape(lambda d: body_rows(d, rnd0)[1], dyn)
        m, dtype = dyn["status"].shape[0], dyn["best"].dtype
        hist = {k: jnp.full((p.chunk,) + v.shape, jnp.nan, dtype) for k, v in row_shapes.items()}
        del m

        def cond(c):
            e, d, _ = c
            return (e < n_run) & jnp.any((d["status"] == ACTIVE) & (d["epochs_done"] < d["budget"]))

        def body(c):
            e, d, h = c
            d, rows = body_rows(d, rnd0 + e)
            h = {k: jax.lax.dynamic_update_index_in_dim(h[k], rows[k].astype(h[k].dtype), e, 0) for k in h}
            return e + 1, d, h

        e, dyn, hist = jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), dyn, hist))
        return dyn, hist, e

    def train_only(dyn, data, member_index, rnd, key, step_limit):
        data_key, step_key, _ = jax.random.split(key, 3)
        aux_shapes = aux_shapes_of(dyn, data, member_index, rnd, data_key, step_key, step_limit)
        return train_round(dyn, data, member_index, rnd, data_key, step_key, aux_shapes, step_limit)

    prog = Program(run=eqx.filter_jit(run), train=eqx.filter_jit(train_only), finish=eqx.filter_jit(finish_round))
    if key is not None:
        _CACHE[key] = prog
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return prog


def member_map(f, in_axes, m: int):
    """``vmap(f, in_axes)`` over the member axis; a population of one calls ``f`` directly (no batching
    overhead, and data-dependent ``lax.cond`` stays a branch instead of a ``select``)."""
    if m != 1:
        return jax.vmap(f, in_axes=in_axes)

    def one(*args):
        squeezed = [jax.tree_util.tree_map(lambda a: a[0], x) if ax == 0 else x for x, ax in zip(args, in_axes)]
        return jax.tree_util.tree_map(lambda a: jnp.expand_dims(a, 0), f(*squeezed))

    return one


def where(mask, new, old):
    """``where(mask, new, old)`` leaf by leaf, ``mask`` (members,) broadcast over trailing axes."""

    def pick(a, b):
        mm = mask.reshape(mask.shape + (1,) * (jnp.ndim(a) - mask.ndim))
        return jnp.where(mm, a, b)

    return jax.tree_util.tree_map(pick, new, old)


def bcast(mask, like):
    return mask.reshape(mask.shape + (1,) * (jnp.ndim(like) - mask.ndim))


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


_INIT_CACHE: dict = {}


def _init_fn(optimizer):
    """``vmap(optimizer.init)`` compiled once per optimiser object (one small program instead of eager ops)."""
    try:
        fn = _INIT_CACHE.get(optimizer)
    except TypeError:
        return jax.jit(jax.vmap(optimizer.init))
    if fn is None:
        if len(_INIT_CACHE) >= 8:
            _INIT_CACHE.pop(next(iter(_INIT_CACHE)))
        fn = _INIT_CACHE[optimizer] = jax.jit(jax.vmap(optimizer.init))
    return fn


def _initial_smth(value: Any, m: int, dtype) -> np.ndarray:
    if value is None:
        return np.full(m, np.nan, dtype)
    v = np.asarray(value, dtype=dtype)
    if v.ndim not in (0, 1) or (v.ndim == 1 and v.shape != (m,)):
        raise ConfigError(f"val_smth must be a scalar or one value per member ({m}), got shape {v.shape}")
    return np.broadcast_to(v, (m,)).copy()
