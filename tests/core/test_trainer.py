"""The one trainer: behaviour objects, fit == fit_population with one member, old keywords == new objects."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

from spikejax.core import (Batching, Checkpointing, ConfigError, EarlyStopping, FitResult, FixedBatches, MemberData,
                           PlateauDecay, PopulationResult, Progress, Result, StopReason, Validation, fit,
                           fit_population, stack)


class Lin(eqx.Module):
    w: jax.Array
    b: jax.Array


def _data(n=24):
    x = jax.random.normal(jax.random.PRNGKey(0), (n, 3))
    return x, x @ jnp.array([1.0, -2.0, 0.5]) + 0.3


def _loss(m, batch, key):
    x, y = batch
    r = x @ m.w + m.b - y + 0.01 * jax.random.normal(key, y.shape)
    return jnp.mean(r**2), {"mae": jnp.mean(jnp.abs(r))}


def _model(s=0.0):
    return Lin(jnp.full(3, s), jnp.zeros(()))


def _val(m, data, key):
    x, y = data
    return {"val": jnp.mean((x @ m.w + m.b - y) ** 2), "b": m.b}


@pytest.mark.parametrize("make, field", [
    (lambda: Batching(batch_size=0), "batch_size"),
    (lambda: Batching(batch_size=2.5), "batch_size"),
    (lambda: Batching(shuffle="yes"), "shuffle"),
    (lambda: MemberData(index=[0, -1]), "index"),
    (lambda: FixedBatches([]), "batches"),
    (lambda: FixedBatches(3), "batches"),
    (lambda: Validation(3), "fn"),
    (lambda: Validation(_val, smoothing=1.5), "smoothing"),
    (lambda: Validation(_val, data=_data(), on_host=True), "data"),
    (lambda: Checkpointing("", every=1), "dir"),
    (lambda: Checkpointing("ck", every=0), "every"),
    (lambda: Progress(enabled="on"), "enabled"),
    (lambda: EarlyStopping(patience=0), "patience"),
    (lambda: EarlyStopping(monitor="vall"), "monitor"),
    (lambda: EarlyStopping(min_delta=-1.0), "min_delta"),
    (lambda: PlateauDecay(factor=2.0), "factor"),
    (lambda: PlateauDecay(min_value=-1.0), "min_value"),
])
def test_behaviour_objects_validate_at_construction(make, field):
    with pytest.raises(ConfigError, match=field):
        make()


def test_behaviour_objects_are_frozen_and_hashable():
    for obj in (Batching(8), MemberData(index=[0, 1]), Checkpointing("ck"), Progress(False), EarlyStopping(), PlateauDecay()):
        hash(obj)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, dataclasses.fields(obj)[0].name, None)
    assert MemberData(index=np.array([0, 1])).index == (0, 1)
    assert Validation(lambda m, d, k, *, step: 0.0).pass_step and not Validation(_val).pass_step


def test_fit_is_fit_population_with_one_member():
    kw = dict(optimizer=optax.adam(0.05), key=jax.random.PRNGKey(3), n_epochs=5)
    one = fit(_model(), _loss, _data(), batching=Batching(batch_size=6), **kw)
    pop = fit_population(stack([_model()]), _loss, _data(), batching=Batching(batch_size=6), **kw)
    np.testing.assert_array_equal(np.asarray(one.model.w), np.asarray(pop.model.w[0]))
    np.testing.assert_array_equal(one.curves["loss"], pop.curves["loss"][:, 0])
    assert one.n_steps == 5 * 4 and list(one.curves["step"]) == [4, 8, 12, 16, 20]
    # a fit's results are core Results
    assert isinstance(one, Result) and isinstance(one, FitResult) and isinstance(pop, PopulationResult)
    assert isinstance(one.history, pd.DataFrame) and list(one.history.columns[:2]) == ["step", "loss"]
    assert one.stop_reason is StopReason.COMPLETED and one.stop_reason == "completed" and one.seconds > 0
    assert list(pop.history.columns[:2]) == ["epoch", "member"] and len(pop.history) == 5
    assert pop.stop_reason == "completed" and pop.population is pop.model


def test_old_keywords_equal_new_objects(tmp_path):
    data, val_data = _data(), _data(12)
    es = EarlyStopping(patience=2, monitor="val_smth", min_delta=1e-3)
    old = fit_population(stack([_model(0.1 * i) for i in range(3)]), _loss, data, optimizer=optax.adam(0.05),
                         key=jax.random.PRNGKey(1), n_epochs=6, batch_size=8, shared_batches=False, has_aux=True,
                         val_fn=_val, val_data=val_data, val_smoothing=0.7, early_stopping=es, restore_best=True,
                         checkpoint_dir=tmp_path / "a", checkpoint_every=2, epochs_per_chunk=2, progress=False)
    new = fit_population(stack([_model(0.1 * i) for i in range(3)]), _loss, data, optimizer=optax.adam(0.05),
                         key=jax.random.PRNGKey(1), n_epochs=6, batching=Batching(8, shared=False),
                         validation=Validation(_val, data=val_data, smoothing=0.7), early_stopping=es, restore_best=True,
                         checkpointing=Checkpointing(tmp_path / "b", every=2), epochs_per_chunk=2, progress=Progress(False))
    np.testing.assert_array_equal(np.asarray(old.model.w), np.asarray(new.model.w))
    for k in ("loss", "mae", "val", "val/b", "val_smth"):
        np.testing.assert_array_equal(old.curves[k], new.curves[k])
    assert list(old.status) == list(new.status)
    with pytest.raises(ConfigError, match="not both"):
        fit_population(stack([_model()]), _loss, data, optimizer=optax.adam(0.05), key=jax.random.PRNGKey(1), n_epochs=1,
                       batch_size=8, batching=Batching(8))
    # fit: the old host val_fn and checkpoint_every (in steps) == Validation(on_host=True) / Checkpointing(every in rounds)
    host = lambda m: {"val": float(jnp.mean((val_data[0] @ m.w + m.b - val_data[1]) ** 2))}  # noqa: E731
    a = fit(_model(), _loss, data, optimizer=optax.adam(0.05), key=jax.random.PRNGKey(2), n_epochs=4, batch_size=8,
            val_fn=host, checkpoint_dir=tmp_path / "c", checkpoint_every=6, restore_best=True)
    b = fit(_model(), _loss, data, optimizer=optax.adam(0.05), key=jax.random.PRNGKey(2), n_epochs=4,
            batching=Batching(8), validation=Validation(host, on_host=True), checkpointing=Checkpointing(tmp_path / "d", every=2),
            restore_best=True)
    np.testing.assert_array_equal(np.asarray(a.model.w), np.asarray(b.model.w))
    np.testing.assert_array_equal(a.curves["val"], b.curves["val"])
    assert a.best_step == b.best_step
    # the same validation in the program gives the same numbers as on the host
    c = fit(_model(), _loss, data, optimizer=optax.adam(0.05), key=jax.random.PRNGKey(2), n_epochs=4,
            batching=Batching(8), validation=Validation(_val, data=val_data), restore_best=True)
    np.testing.assert_allclose(c.curves["val"], a.curves["val"], rtol=1e-5)
    assert c.best_step == a.best_step


def test_plateau_decay_runs_per_member_in_the_program():
    """Member 0's validation plateaus at once, member 1's keeps improving: only member 0's rate decays."""
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)

    def val(m, data, key, *, step, args):
        return jnp.where(args > 0, 1.0 / (1.0 + step), 1.0)

    res = fit_population(stack([_model(), _model()]), lambda m, b, k, *, args: _loss(m, b, k), _data(), optimizer=opt, key=jax.random.PRNGKey(0), n_epochs=6,
                         args=jnp.asarray([0.0, 1.0]), validation=Validation(val),
                         plateau=PlateauDecay(factor=0.5, patience=2, monitor="val"))
    lr = res.curves["learning_rate"]
    np.testing.assert_allclose(lr[:, 1], 0.1, rtol=1e-6)
    np.testing.assert_allclose(lr[:, 0], [0.1, 0.1, 0.1, 0.05, 0.05, 0.025], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(res.state.hyperparam()), [0.025, 0.1], rtol=1e-6)


def test_one_loss_signature_output_form_detected():
    """No has_aux/with_step: a loss returning (loss, aux) and declaring step= just works."""
    seen = []

    def loss(m, batch, key, *, step):
        seen.append(step)
        out, aux = _loss(m, batch, key)
        return out, {**aux, "at": step.astype(float)}

    res = fit(_model(), loss, _data(), optimizer=optax.adam(0.05), key=jax.random.PRNGKey(0), n_steps=6, steps_per_call=3)
    assert list(res.curves["step"]) == [3, 6] and np.all(res.curves["mae"] > 0)
    np.testing.assert_allclose(res.curves["at"], [1.0, 4.0])  # the mean step of each round of 3
    with pytest.raises(ConfigError, match="carry"):
        fit(_model(), lambda m, b, k: (jnp.sum(m.w), {}, 0.0), None, optimizer=optax.adam(0.1), key=jax.random.PRNGKey(0),
            n_steps=1)


def test_fit_result_save_load_with_a_model_template(tmp_path):
    res = fit(_model(), _loss, _data(), optimizer=optax.adam(0.05), key=jax.random.PRNGKey(0), n_steps=4)
    res.save(tmp_path / "r.h5")
    back = FitResult.load(tmp_path / "r.h5", like=_model())
    np.testing.assert_array_equal(np.asarray(back.model.w), np.asarray(res.model.w))
    assert back.stop_reason == "completed" and back.n_steps == 4 and back.opt_state is None
    pd.testing.assert_frame_equal(back.history, res.history)
    np.testing.assert_array_equal(back.curves["loss"], res.curves["loss"])


def test_population_result_save_load_with_templates(tmp_path):
    pop = stack([_model(), _model(0.5)])
    res = fit_population(pop, _loss, _data(), optimizer=optax.adam(0.05), key=jax.random.PRNGKey(0), n_epochs=3,
                         validation=Validation(_val, data=_data(12)))
    assert "val/b" in res.curves
    res.save(tmp_path / "p.h5")
    back = PopulationResult.load(tmp_path / "p.h5", like={"model": pop})
    np.testing.assert_array_equal(np.asarray(back.model.w), np.asarray(res.model.w))
    np.testing.assert_array_equal(back.curves["val/b"], res.curves["val/b"])
    pd.testing.assert_frame_equal(back.history, res.history)
    assert list(back.status) == list(res.status) and back.state is None and back.stop_reason == "completed"


def test_zero_epochs_give_empty_results():
    res = fit(_model(), _loss, _data(), optimizer=optax.adam(0.05), key=jax.random.PRNGKey(0), n_epochs=0, batch_size=8,
              val_fn=lambda m: 0.0)
    assert res.n_steps == 0 and len(res.history) == 0 and res.stop_reason == "completed"
    pop = fit_population(stack([_model()] * 2), _loss, _data(), optimizer=optax.adam(0.05), key=jax.random.PRNGKey(0),
                         n_epochs=0)
    assert len(pop.history) == 0 and pop.curves["loss"].shape == (0, 2) and "mae" in pop.curves


def test_restore_best_on_the_training_loss_returns_the_parameters_it_was_measured_at():
    """A training loss is measured before the round's update: restore-best returns those parameters, so the
    loss of the returned model equals the best logged loss (one full-batch step per round)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from spikejax.core import fit

    def loss_fn(m, batch, key):
        return jnp.sum((m["w"] - 3.0) ** 2)

    # the loss falls every step: the best logged loss is the last one, measured before the last update
    res = fit({"w": jnp.zeros(2)}, loss_fn, None, optimizer=optax.sgd(0.9), key=jax.random.key(0), n_steps=12,
              steps_per_call=1, restore_best=True, nan_guard=False, progress=False)
    logged = np.asarray(res.curves["loss"], dtype=float)
    assert float(loss_fn(res.model, None, None)) == pytest.approx(float(np.min(logged)), rel=1e-6)
    assert not eqx.tree_equal(res.model, {"w": jnp.zeros(2)})


@pytest.mark.parametrize("members, batching, n_expected", [
    (1, Batching(batch_size=6), 1),                  # 4 steps a round: a scan over the step
    (3, Batching(batch_size=6), 1),                  # vmapped over members
    (1, Batching(batch_size=None), 1),               # one step a round
    (1, "fixed", 2),                                 # fixed batches: one (static) step per batch
])
def test_the_program_traces_the_loss_and_validation_once(members, batching, n_expected):
    """The program asks for the step's and the round's output shapes before its loop; the user's loss
    and validation are still traced once per program (once per batch for fixed batches), not three times."""
    calls = {"loss": 0, "val": 0}

    def loss(m, batch, key):
        calls["loss"] += 1
        return _loss(m, batch, key)

    def val(m, data, key):
        calls["val"] += 1
        return _val(m, data, key)

    x, y = _data()
    kw = dict(optimizer=optax.adam(0.05), key=jax.random.PRNGKey(0), n_epochs=3,
              validation=Validation(val, data=_data(12)), progress=Progress(False))
    if batching == "fixed":
        res = fit_population(stack([_model()]), loss, batches=FixedBatches([(x[:12], y[:12]), (x[12:], y[12:])]), **kw)
    elif members == 1:
        res = fit(_model(), loss, (x, y), batching=batching, **kw)
    else:
        res = fit_population(stack([_model(0.1 * i) for i in range(members)]), loss, (x, y), batching=batching, **kw)
    assert np.all(np.isfinite(np.asarray(res.curves["val"])))
    assert calls == {"loss": n_expected, "val": 1}
