"""core.fit_population: per-member early stopping and NaN guard, resume, no recompilation, sharding."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from spikejax import ConfigError
from spikejax.core import EarlyStopping, PopulationState, fit_population, stack


class Lin(eqx.Module):
    w: jax.Array
    b: jax.Array


def _pop(m=4):
    return stack([Lin(jnp.full(3, 0.1 * i), jnp.zeros(())) for i in range(m)])


def _data(n=24):
    x = jax.random.normal(jax.random.PRNGKey(0), (n, 3))
    return x, x @ jnp.array([1.0, -2.0, 0.5]) + 0.3


def _loss(m, batch, key):
    x, y = batch
    r = x @ m.w + m.b - y + 0.01 * jax.random.normal(key, y.shape)  # the key makes stream bugs visible
    return jnp.mean(r**2), {"mae": jnp.mean(jnp.abs(r))}


_OPT = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
_LRS = np.array([0.1, 0.03, 0.01, 0.003])


def test_per_member_early_stopping_freezes_the_member():
    es = EarlyStopping(patience=2, monitor="train/mae", min_delta=5e-3)
    res = fit_population(_pop(), _loss, _data(), optimizer=_OPT, key=jax.random.PRNGKey(1), n_epochs=40, batch_size=8,
                         has_aux=True, hyperparams={"learning_rate": _LRS}, epochs_per_chunk=7, early_stopping=es)
    assert "early_stopping" in set(res.status) and "completed" in set(res.status), res.status
    hist = res.curves["mae"]
    for i in range(4):
        n = int(res.epochs[i])
        assert np.all(np.isfinite(hist[:n, i])) and np.all(np.isnan(hist[n:, i]))
    # a stopped member keeps the parameters of its last epoch: the same as a run with that budget
    i = int(np.flatnonzero(res.status == "early_stopping")[0])
    budget = np.full(4, 40)
    budget[i] = int(res.epochs[i])
    again = fit_population(_pop(), _loss, _data(), optimizer=_OPT, key=jax.random.PRNGKey(1), n_epochs=budget, batch_size=8,
                           has_aux=True, hyperparams={"learning_rate": _LRS}, epochs_per_chunk=7)
    np.testing.assert_array_equal(res.population.w[i], again.population.w[i])
    assert again.status[i] == "completed" and int(again.epochs[i]) == budget[i]
    assert np.asarray(res.state.hyperparam()).tolist() == pytest.approx(_LRS.tolist())


def test_nan_guard_stops_only_the_diverging_member():
    def loss(m, batch, key, *, step, args):
        x, y = batch
        poison = jnp.where((step >= 3) & (args > 0), jnp.nan, 0.0)
        return jnp.mean((x @ m.w + m.b - y) ** 2) + poison

    args = jnp.asarray([0.0, 1.0, 0.0])
    res = fit_population(_pop(3), loss, _data(), optimizer=_OPT, key=jax.random.PRNGKey(0), n_epochs=8, with_step=True,
                         args=args, epochs_per_chunk=4)
    assert list(res.status) == ["completed", "diverged", "completed"]
    assert int(res.epochs[1]) == 4 and np.all(np.isnan(res.curves["loss"][4:, 1]))
    assert np.all(np.isfinite(np.asarray(res.population.w)))
    clean = fit_population(_pop(3), loss, _data(), optimizer=_OPT, key=jax.random.PRNGKey(0), n_epochs=[8, 3, 8],
                           with_step=True, args=jnp.zeros(3), epochs_per_chunk=4)
    np.testing.assert_array_equal(res.population.w, clean.population.w)  # steps 0-2 applied, step 3 dropped
    assert np.isnan(np.asarray(res.state.best)[1])  # a diverged member's monitored values are NaN (PBT ranks it last)


class _Stop(Exception):
    pass


def test_resume_equals_uninterrupted(tmp_path):
    kw = dict(optimizer=_OPT, n_epochs=12, batch_size=6, shared_batches=False, has_aux=True,
              hyperparams={"learning_rate": _LRS}, epochs_per_chunk=3,
              early_stopping=EarlyStopping(patience=3, monitor="train", min_delta=1e-3))
    ref = fit_population(_pop(), _loss, _data(), key=jax.random.PRNGKey(3), **kw)
    calls = []

    def interrupt(state, history):
        calls.append(state.epoch)
        if len(calls) == 3:
            raise _Stop  # before the third checkpoint: the second one (epoch 6) is kept

    with pytest.raises(_Stop):
        fit_population(_pop(), _loss, _data(), key=jax.random.PRNGKey(3), checkpoint_dir=tmp_path, between_chunks=interrupt, **kw)
    res = fit_population(_pop(), _loss, _data(), key=jax.random.PRNGKey(3), checkpoint_dir=tmp_path, **kw)
    np.testing.assert_array_equal(res.population.w, ref.population.w)
    np.testing.assert_array_equal(res.curves["loss"], ref.curves["loss"])
    np.testing.assert_array_equal(res.epochs, ref.epochs)
    assert list(res.status) == list(ref.status)


def test_no_recompilation_across_chunks_and_hook_changes():
    """One compilation: many chunks, and a PBT-style hook that copies members and changes the learning
    rate and the args between chunks."""

    def loss(m, batch, key, *, args):
        x, y = batch
        return jnp.mean((x @ m.w + m.b - y) ** 2) * args["scale"]

    def run(loss_fn, chunk, hook=None):
        return fit_population(_pop(), loss_fn, _data(), optimizer=_OPT, key=jax.random.PRNGKey(0), n_epochs=12, batch_size=12,
                              args={"scale": jnp.ones(4)}, hyperparams={"learning_rate": _LRS}, epochs_per_chunk=chunk,
                              between_chunks=hook)

    counted = []

    def counting(*a, **k):
        counted.append(1)
        return loss(*a, **k)

    run(counting, 12)  # one chunk: the number of traces of one compilation
    n_traces = len(counted)

    def exploit(state: PopulationState, history):
        new = state.take(np.arange(4)[::-1]).with_hyperparam("learning_rate", np.asarray(state.hyperparam()) * 0.5)
        return dataclasses.replace(new, args={"scale": new.args["scale"] * 1.1})

    guarded = eqx.debug.assert_max_traces(loss, max_traces=n_traces)
    res = run(guarded, 3, exploit)  # 4 chunks, a change after each
    assert res.n_epochs == 12
    assert eqx.debug.get_num_traces(guarded) == n_traces
    np.testing.assert_allclose(np.asarray(res.state.hyperparam()), _LRS * 0.5**4, rtol=1e-6)


def test_member_data_index_and_fixed_batches():
    """Per-member data by row index and a fixed sequence of differently shaped batches per epoch."""
    x, y = _data(12)
    rows = (jnp.stack([x[:6], x[6:]]), jnp.stack([y[:6], y[6:]]))  # two data sets

    def loss(m, batch, key):
        xb, yb = batch
        return jnp.mean((xb @ m.w + m.b - yb) ** 2)

    a = fit_population(_pop(4), loss, rows, optimizer=_OPT, key=jax.random.PRNGKey(0), n_epochs=5, member_data=True,
                       data_index=[0, 1, 0, 1])
    copied = tuple(jnp.stack([r[0], r[1], r[0], r[1]]) for r in rows)
    b = fit_population(_pop(4), loss, copied, optimizer=_OPT, key=jax.random.PRNGKey(0), n_epochs=5, member_data=True)
    np.testing.assert_array_equal(a.population.w, b.population.w)
    # batches of two shapes, one step on each per epoch == batch_size over two equal halves without shuffling
    c = fit_population(_pop(4), loss, batches=[(x[:6], y[:6]), (x[6:], y[6:])], optimizer=_OPT, key=jax.random.PRNGKey(0),
                       n_epochs=3)
    d = fit_population(_pop(4), loss, (x, y), batch_size=6, shuffle=False, optimizer=_OPT, key=jax.random.PRNGKey(0),
                       n_epochs=3)
    np.testing.assert_allclose(c.population.w, d.population.w, rtol=1e-6)
    with pytest.raises(ConfigError, match="n_epochs"):
        fit_population(_pop(4), loss, (x, y), optimizer=_OPT, key=jax.random.PRNGKey(0), n_epochs=[1, 2])
    with pytest.raises(ConfigError, match="learning_rate"):
        fit_population(_pop(4), loss, (x, y), optimizer=_OPT, key=jax.random.PRNGKey(0), n_epochs=1,
                       hyperparams={"learning_rate": [0.1, 0.2]})
    with pytest.raises(ConfigError, match="data_index"):
        fit_population(_pop(4), loss, rows, optimizer=_OPT, key=jax.random.PRNGKey(0), n_epochs=1, member_data=True,
                       data_index=[0, 1, 2, 3])


def test_sharded_population_matches_unsharded():
    """With 4 forced host devices, 6 members (padded to 8) give the same result as one device."""
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np, optax, equinox as eqx
        from spikejax.core import fit_population, EarlyStopping
        assert jax.local_device_count() == 4
        pop = {"w": jnp.linspace(0.0, 1.0, 6)[:, None] * jnp.ones((6, 3)), "b": jnp.zeros(6)}
        x = jax.random.normal(jax.random.PRNGKey(0), (16, 3)); y = x @ jnp.array([1.0, -2.0, 0.5])
        def loss(m, batch, key):
            xb, yb = batch
            return jnp.mean((xb @ m["w"] + m["b"] - yb + 0.01 * jax.random.normal(key, yb.shape)) ** 2)
        opt = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
        def hook(state, hist):
            return state.take(np.r_[1, 1, 2, 3, 4, 5]).with_hyperparam("learning_rate", np.full(6, 0.05))
        kw = dict(optimizer=opt, key=jax.random.PRNGKey(2), n_epochs=6, batch_size=4, shared_batches=False,
                  hyperparams={"learning_rate": np.linspace(0.01, 0.2, 6)}, epochs_per_chunk=2, between_chunks=hook,
                  early_stopping=EarlyStopping(patience=1, monitor="train", min_delta=0.5))
        a = fit_population(pop, loss, (x, y), shard=True, **kw)
        b = fit_population(pop, loss, (x, y), shard=False, **kw)
        np.testing.assert_allclose(np.asarray(a.population["w"]), np.asarray(b.population["w"]), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(a.curves["loss"], b.curves["loss"], rtol=1e-6)
        assert list(a.status) == list(b.status)
        print("OK")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0",
               JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "OK" in res.stdout


def test_unchanged_rule_in_fit_and_fit_population():
    """EarlyStopping(rule="unchanged"): stop once the monitored value is identical `patience` times in a row."""
    from spikejax.core import fit

    def loss(m, batch, key):
        return jnp.sum(m.w**2) + m.b**2

    es = EarlyStopping(patience=3, monitor="train", rule="unchanged")
    one = fit(Lin(jnp.ones(3), jnp.zeros(())), loss, optimizer=optax.sgd(0.0), key=jax.random.PRNGKey(0), n_steps=20,
              steps_per_call=1, early_stopping=es)
    assert one.stop_reason == "early_stopping" and one.n_steps == 3
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0)
    res = fit_population(_pop(2), loss, optimizer=opt, key=jax.random.PRNGKey(0), n_epochs=20, early_stopping=es,
                         hyperparams={"learning_rate": [0.0, 0.1]})
    assert list(res.status) == ["early_stopping", "completed"] and list(res.epochs) == [3, 20]
    with pytest.raises(ConfigError, match="rule"):
        EarlyStopping(rule="sometimes")


def test_continued_calls_and_a_population_of_one():
    """start_epoch continues the clock (two calls == one call); one member runs unbatched, same numbers."""
    kw = dict(optimizer=_OPT, batch_size=6, shared_batches=False, has_aux=True, hyperparams={"learning_rate": _LRS[:2]})
    full = fit_population(_pop(2), _loss, _data(), key=jax.random.PRNGKey(4), n_epochs=6, **kw)
    a = fit_population(_pop(2), _loss, _data(), key=jax.random.PRNGKey(4), n_epochs=3, **kw)
    b = fit_population(a.population, _loss, _data(), key=jax.random.PRNGKey(4), n_epochs=3, start_epoch=3,
                       opt_state=a.opt_state, **kw)
    np.testing.assert_allclose(b.population.w, full.population.w, rtol=1e-6, atol=1e-7)
    assert b.state.epoch == 6 and b.n_epochs == 3
    one = fit_population(jax.tree_util.tree_map(lambda x: x[:1], _pop(2)), _loss, _data(), key=jax.random.PRNGKey(4),
                         n_epochs=6, **{**kw, "hyperparams": {"learning_rate": _LRS[:1]}})
    np.testing.assert_allclose(one.population.w[0], full.population.w[0], rtol=1e-5, atol=1e-6)


def test_static_leaves_in_data_stay_static():
    def loss(m, batch, key):
        assert batch["tag"] == "t"  # a Python string, not traced
        return jnp.mean((batch["x"] @ m.w + m.b - batch["y"]) ** 2)

    x, y = _data(8)
    res = fit_population(_pop(2), loss, {"x": jnp.stack([x, x]), "y": jnp.stack([y, y]), "tag": "t"}, optimizer=_OPT,
                         key=jax.random.PRNGKey(0), n_epochs=2, batch_size=4, member_data=True)
    assert list(res.status) == ["completed", "completed"]
