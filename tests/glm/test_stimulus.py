"""Stimuli: values, masks, batches, vectorised evaluation and validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spikejax import glm

MASK = np.zeros(20, bool)
MASK[[0, 2, 4, 6, 8]] = True


def test_regular_stimulus_periodic_and_zero_after_stop():
    s = glm.RegularStimulus(5.0, period=100, tau=10, stop=1000, stimulus_masks=[MASK])
    v = np.asarray(s(jnp.arange(1200)))
    assert v.shape == (20, 1200)
    np.testing.assert_array_equal(v[1], 0)
    on = ((np.arange(1200) % 100) < 10) & (np.arange(1200) < 1000)
    np.testing.assert_array_equal(v[0], 5.0 * on)
    assert float(s(5)[0]) == 5.0 and float(s(50)[0]) == 0.0


def test_poisson_stimulus_events_and_mean_interval():
    s = glm.PoissonStimulus(2.0, mean_interval=100, duration=100_000, stimulus_masks=[MASK], tau=10, key=jax.random.key(0))
    ev = np.asarray(s.events)
    assert ev[0] == 0 and np.all(np.diff(ev) >= 0) and ev.max() < 100_000
    assert np.mean(np.diff(ev)) == pytest.approx(100, rel=0.05)
    v = np.asarray(s(jnp.arange(2000)))[0]
    expect = np.zeros(2000)
    for e in ev[ev < 2000]:
        expect[e : e + 10] = 2.0
    np.testing.assert_array_equal(v, expect)


def test_sin_stimulus_and_loaded_stimulus(tmp_path):
    s = glm.SinStimulus(2.0, period=10, duration=100, stimulus_masks=[MASK], baseline=0.5, dt=1.0)
    t = jnp.arange(120)
    v = np.asarray(s(t))[0]
    ref = (2.0 * np.sin(2 * np.pi * np.arange(120) / 10) + 0.5) * (np.arange(120) < 100)
    np.testing.assert_allclose(v, ref, atol=5e-5)  # float32 sin of arguments up to 2 pi * 10
    plan = np.random.default_rng(0).random((20, 50, 4)).astype(np.float32)
    np.save(tmp_path / "plan.npy", plan)
    ls = glm.LoadedStimulus(tmp_path / "plan.npy", batch_size=3)
    assert ls.n_batches == 2
    np.testing.assert_allclose(np.asarray(ls(7)), np.concatenate([plan[:, 7, 0], plan[:, 7, 1], plan[:, 7, 2]]))
    assert float(jnp.abs(ls(50)).sum()) == 0.0 and float(jnp.abs(ls(-1)).sum()) == 0.0
    last = ls.next_batch()  # uneven last batch: one network
    assert last(3).shape == (20,)
    np.testing.assert_allclose(np.asarray(last(3)), plan[:, 3, 3])
    assert last.next_batch().batch == 0 and last.reset().batch == 0  # cycles
    with pytest.raises(ValueError, match="batch index"):
        ls.set_batch(2)
    multi = glm.LoadedStimulus(np.ones((20, 30, 5, 2), np.float32))
    assert multi(4).shape == (20, 5) and multi(jnp.arange(3)).shape == (20, 3, 5)


def test_mask_batches_list_and_array():
    masks = np.zeros((4, 20), bool)
    masks[np.arange(4), np.arange(4)] = True
    a = glm.RegularStimulus(1.0, 10, 5, 100, stimulus_masks=masks, batch_size=2)
    b = glm.RegularStimulus(1.0, 10, 5, 100, stimulus_masks=list(masks), batch_size=2)
    assert a.n_batches == 2 and a(0).shape == (40,)
    np.testing.assert_array_equal(np.asarray(a(0)), np.asarray(b(0)))
    np.testing.assert_array_equal(np.asarray(a.next_batch()(0)), np.concatenate([masks[2], masks[3]]).astype(float))
    with pytest.raises(ValueError, match="batch_size"):
        glm.RegularStimulus(1.0, 10, 5, 100, stimulus_masks=masks, batch_size=5)
    with pytest.raises(ValueError, match="only one batch"):
        glm.RegularStimulus(1.0, 10, 5, 100, stimulus_masks=masks[:1]).next_batch()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: glm.RegularStimulus(1.0, -10, 5, 100, stimulus_masks=[MASK]), "period"),
        (lambda: glm.RegularStimulus(1.0, 10, -5, 100, stimulus_masks=[MASK]), "tau"),
        (lambda: glm.SinStimulus(-1.0, 10, 100, stimulus_masks=[MASK]), "amplitude"),
        (lambda: glm.SinStimulus(1.0, 10, -100, stimulus_masks=[MASK]), "duration"),
        (lambda: glm.PoissonStimulus(1.0, -5, 100, stimulus_masks=[MASK], key=jax.random.key(0)), "mean_interval"),
        (lambda: glm.PoissonStimulus(1.0, 5, -100, stimulus_masks=[MASK], key=jax.random.key(0)), "duration"),
        (lambda: glm.RegularStimulus(1.0, 10, 5, 100, stimulus_masks=[np.full(20, 2)]), "boolean"),
        (lambda: glm.RegularStimulus(1.0, 10, 5, 100, stimulus_masks=np.zeros((2, 3, 4))), "stimulus_masks"),
    ],
)
def test_stimulus_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_mismatched_mask_shape_raises_in_simulate(ring20):
    s = glm.RegularStimulus(1.0, 10, 5, 100, stimulus_masks=[np.ones(30, bool)])
    with pytest.raises(ValueError, match="30"):
        glm.simulate(glm.RectifiedLNP(), ring20, n_steps=10, key=jax.random.key(0), stimulus=s)
    with pytest.raises(TypeError, match="callable"):
        glm.simulate(glm.RectifiedLNP(), ring20, n_steps=10, key=jax.random.key(0), stimulus=3.0)
