import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from spikejax.core import EarlyStopping, TrainingDivergedError, fit, trainable
from spikejax.core.errors import ConfigError


class Linear(eqx.Module):
    w: jax.Array
    b: jax.Array
    scale: jax.Array


def _data(n=64):
    x = jax.random.normal(jax.random.PRNGKey(0), (n, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5]) + 0.3
    return {"x": x, "y": y}


def _loss(m, batch, key):
    pred = m.scale * (batch["x"] @ m.w) + m.b
    return jnp.mean((pred - batch["y"]) ** 2)


def _model():
    return Linear(jnp.zeros(3), jnp.zeros(()), jnp.ones(()))


def test_fit_recovers_linear_weights_and_freezes_by_filter():
    spec = trainable(_model(), frozen=lambda m: m.scale)
    res = fit(_model(), _loss, _data(), optimizer=optax.adam(0.05), key=jax.random.PRNGKey(1),
              n_epochs=150, batch_size=16, filter_spec=spec, progress=False)
    np.testing.assert_allclose(res.model.w, [1.0, -2.0, 0.5], atol=0.05)
    np.testing.assert_allclose(res.model.b, 0.3, atol=0.02)
    assert float(res.model.scale) == 1.0  # frozen leaf untouched
    assert res.n_steps == 150 * 4 and len(res.curves["loss"]) == 150
    assert res.curves["loss"][-1] < res.curves["loss"][0] * 1e-2


def test_early_stopping_and_restore_best():
    data = _data()
    val = lambda m: _loss(m, data, None)
    res = fit(_model(), _loss, data, optimizer=optax.sgd(1e-3), key=jax.random.PRNGKey(0), n_steps=5000,
              steps_per_call=10, val_fn=val, early_stopping=EarlyStopping(patience=3, min_delta=1e-1),
              restore_best=True, progress=False)
    assert res.stop_reason == "early_stopping" and res.n_steps < 5000
    assert res.best_step is not None


def test_nan_guard_names_step():
    def bad_loss(m, batch, key):
        return jnp.sum(m.w) * jnp.log(m.b - 1.0)  # log of a negative number -> NaN at once
    with pytest.raises(TrainingDivergedError, match="step 0"):
        fit(_model(), bad_loss, None, optimizer=optax.adam(0.1), key=jax.random.PRNGKey(0), n_steps=5, progress=False)


def test_checkpoint_resume_is_exact(tmp_path):
    data = _data()
    kw = dict(optimizer=optax.adam(0.02), key=jax.random.PRNGKey(3), batch_size=8, progress=False)
    full = fit(_model(), _loss, data, n_epochs=6, **kw)
    # "interrupted" run: stops after 3 epochs (checkpointed), then a new call resumes to 6
    ckpt = tmp_path / "ckpt"
    part = fit(_model(), _loss, data, n_epochs=3, checkpoint_dir=ckpt, checkpoint_every=8, **kw)
    assert part.n_steps == 24 and (ckpt / "latest.json").is_file()
    resumed = fit(_model(), _loss, data, n_epochs=6, checkpoint_dir=ckpt, checkpoint_every=8, **kw)
    assert resumed.n_steps == 48
    np.testing.assert_array_equal(np.asarray(resumed.model.w), np.asarray(full.model.w))
    np.testing.assert_array_equal(np.asarray(resumed.curves["loss"]), np.asarray(full.curves["loss"]))


def test_interrupted_by_exception_then_resumed(tmp_path):
    data = _data()
    kw = dict(optimizer=optax.adam(0.02), key=jax.random.PRNGKey(4), n_steps=40, steps_per_call=5, progress=False)
    full = fit(_model(), _loss, data, **kw)

    def crash(step, model, logs):
        if step == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), _loss, data, checkpoint_dir=tmp_path, checkpoint_every=10, callback=crash, **kw)
    resumed = fit(_model(), _loss, data, checkpoint_dir=tmp_path, checkpoint_every=10, **kw)
    np.testing.assert_array_equal(np.asarray(resumed.model.w), np.asarray(full.model.w))


def test_many_independent_models_by_summed_loss():
    """Adam is elementwise: a stacked model trained on the summed loss equals separate fits."""
    data = _data()
    targets = jnp.array([0.3, -1.0])

    def one_loss(m, t):
        return jnp.mean((m.scale * (data["x"] @ m.w) + m.b - (data["y"] - 0.3 + t)) ** 2)

    def summed(ms, batch, key):
        return jnp.sum(jax.vmap(one_loss)(ms, targets))

    models = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), _model())
    res = fit(models, summed, None, optimizer=optax.adam(0.05), key=jax.random.PRNGKey(0), n_steps=300, progress=False)
    for i, t in enumerate(targets):
        single = fit(_model(), lambda m, b, k: one_loss(m, t), None, optimizer=optax.adam(0.05),
                     key=jax.random.PRNGKey(0), n_steps=300, progress=False)
        np.testing.assert_allclose(res.model.b[i], single.model.b, rtol=1e-4, atol=1e-5)


def test_fit_argument_errors():
    with pytest.raises(ConfigError, match="exactly one of n_steps"):
        fit(_model(), _loss, _data(), optimizer=optax.adam(0.1), key=jax.random.PRNGKey(0), progress=False)
    with pytest.raises(ConfigError, match="batch_size"):
        fit(_model(), _loss, _data(), optimizer=optax.adam(0.1), key=jax.random.PRNGKey(0), n_steps=1,
            batch_size=1000, progress=False)
    with pytest.raises(ConfigError, match="val_fn"):
        fit(_model(), _loss, _data(), optimizer=optax.adam(0.1), key=jax.random.PRNGKey(0), n_steps=1,
            early_stopping=EarlyStopping(), progress=False)


def test_checkpoint_helpers_roundtrip_and_mismatch(tmp_path):
    from spikejax.core import DataFormatError, load_checkpoint, save_checkpoint

    assert load_checkpoint(tmp_path, {"w": jnp.zeros(3)}) is None
    save_checkpoint(tmp_path, 5, {"w": jnp.arange(3.0)}, {"note": "a"})
    save_checkpoint(tmp_path, 10, {"w": jnp.arange(3.0) + 1}, {"note": "b"})
    step, state, meta = load_checkpoint(tmp_path, {"w": jnp.zeros(3)})
    assert step == 10 and meta == {"note": "b"}
    np.testing.assert_array_equal(state["w"], [1.0, 2.0, 3.0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "state-000000010.eqx"]
    with pytest.raises(DataFormatError, match="does not match"):
        load_checkpoint(tmp_path, {"w": jnp.zeros(7)})


def _ramped_loss(m, batch, key, *, step, args):
    """A loss with an epoch-dependent ramp and a traced extra argument (as LFADS' KL ramp)."""
    ramp = jnp.minimum((step // args["steps_per_epoch"] + 1) / 3.0, 1.0)
    return _loss(m, batch, key) + ramp * args["weight"] * jnp.sum(m.w ** 2), {"ramp": ramp}


def test_step_args_smoothing_plateau_and_resume(tmp_path):
    from spikejax.core import PlateauDecay, get_hyperparam, set_hyperparam

    data = _data()
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.05)
    args = {"steps_per_epoch": jnp.asarray(8), "weight": jnp.asarray(0.1)}

    def make_val():  # improves for 3 epochs, then plateaus
        seq = np.r_[np.linspace(1.0, 0.5, 3), np.full(20, 0.6)]
        return lambda m, step: {"val": seq[step // 8 - 1], "w0": m.w[0]}

    kw = dict(optimizer=opt, key=jax.random.PRNGKey(0), n_epochs=10, batch_size=8, has_aux=True, with_step=True,
              args=args, val_smoothing=0.7, progress=False,
              plateau=PlateauDecay(factor=0.5, patience=2, min_value=0.01, monitor="val_smth", min_steps=16),
              early_stopping=EarlyStopping(patience=50, monitor="val_smth"), restore_best=True)
    s0 = set_hyperparam(opt.init(eqx.filter(_model(), eqx.is_inexact_array)), "learning_rate", 0.2)
    full = fit(_model(), _ramped_loss, data, val_fn=make_val(), opt_state=s0, **kw)
    h = full.curves
    np.testing.assert_allclose(h["ramp"][:4], [1 / 3, 2 / 3, 1.0, 1.0], rtol=1e-6)
    smth = [1.0]
    for v in np.r_[np.linspace(1.0, 0.5, 3), np.full(7, 0.6)][1:]:
        smth.append(0.3 * smth[-1] + 0.7 * v)
    np.testing.assert_allclose(h["val_smth"], smth, rtol=1e-6)
    assert h["learning_rate"][0] == pytest.approx(0.2)  # opt_state= respected
    assert h["learning_rate"][-1] < 0.2 and np.all(np.diff(h["learning_rate"]) <= 0)
    assert "val/w0" in h and full.best_step == 8 * int(np.argmin(smth) + 1)
    # interrupted at epoch 4 and resumed: identical to the uninterrupted run (smoothing/plateau state saved)
    fit(_model(), _ramped_loss, data, val_fn=make_val(), opt_state=s0, checkpoint_dir=tmp_path,
        **{**kw, "n_epochs": 4})
    res = fit(_model(), _ramped_loss, data, val_fn=make_val(), opt_state=s0, checkpoint_dir=tmp_path, **kw)
    np.testing.assert_array_equal(np.asarray(res.model.w), np.asarray(full.model.w))
    np.testing.assert_array_equal(h["learning_rate"], res.curves["learning_rate"])
    assert float(get_hyperparam(res.opt_state)) == float(get_hyperparam(full.opt_state))
    with pytest.raises(ConfigError, match="inject_hyperparams"):
        fit(_model(), _loss, data, optimizer=optax.adam(0.1), key=jax.random.PRNGKey(0), n_steps=1, val_fn=lambda m: 0.0,
            plateau=PlateauDecay(), progress=False)
    with pytest.raises(ConfigError, match="val_smoothing"):
        fit(_model(), _loss, data, optimizer=opt, key=jax.random.PRNGKey(0), n_steps=1, val_fn=lambda m: 0.0,
            early_stopping=EarlyStopping(monitor="val_smth"), progress=False)


def test_compiled_call_is_reused_across_fits():
    from spikejax.core import trainer_program as training  # the one trainer's program cache

    data = _data()
    opt = optax.adam(0.01)
    training._CACHE.clear()
    a = fit(_model(), _loss, data, optimizer=opt, key=jax.random.PRNGKey(0), n_epochs=2, batch_size=8, progress=False)
    n = len(training._CACHE)
    b = fit(_model(), _loss, {k: v + 0.0 for k, v in data.items()}, optimizer=opt, key=jax.random.PRNGKey(0),
            n_epochs=2, batch_size=8, progress=False)
    assert n == 1 and len(training._CACHE) == 1
    np.testing.assert_array_equal(np.asarray(a.model.w), np.asarray(b.model.w))
    for i in range(training._CACHE_SIZE + 2):  # bounded
        fit(_model(), _loss, data, optimizer=optax.adam(0.01), key=jax.random.PRNGKey(0), n_steps=1, progress=False)
    assert len(training._CACHE) <= training._CACHE_SIZE
