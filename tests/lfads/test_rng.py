"""spikejax.lfads.rng reproduces jax.random bit for bit (split, fold_in, uniform, normal), eager and jitted."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spikejax.lfads import rng

SHAPES = [(5,), (3, 7, 2), (2, 33)]


def _raw(k):
    return np.asarray(jax.random.key_data(k)) if jax.dtypes.issubdtype(k.dtype, jax.dtypes.prng_key) else np.asarray(k)


def _keys():
    return [jax.random.PRNGKey(3), jax.random.key(7), jax.random.fold_in(jax.random.PRNGKey(1), 12345)]


def _check(dtype):
    for key in _keys():
        assert rng.is_exact(key)
        a, b = rng.split(key)
        ref_a, ref_b = jax.random.split(key)
        np.testing.assert_array_equal(np.asarray(a), _raw(ref_a))
        np.testing.assert_array_equal(np.asarray(b), _raw(ref_b))
        np.testing.assert_array_equal(np.asarray(rng.fold_in(key, 77)), _raw(jax.random.fold_in(key, 77)))
        for shape in SHAPES:
            np.testing.assert_array_equal(np.asarray(rng.uniform(key, shape, dtype)),
                                          np.asarray(jax.random.uniform(key, shape, dtype)))
            np.testing.assert_array_equal(np.asarray(jax.jit(lambda k: rng.normal(k, shape, dtype))(key)),
                                          np.asarray(jax.random.normal(key, shape, dtype)))


def test_matches_jax_random_float32():
    _check(jnp.float32)


@pytest.mark.requires_x64
def test_matches_jax_random_float64():
    _check(jnp.float64)


def test_traced_fold_in_and_other_impls_fall_back():
    key = jax.random.PRNGKey(0)
    f = jax.jit(lambda k, i: rng.fold_in(k, i))
    np.testing.assert_array_equal(np.asarray(f(key, 5)), np.asarray(jax.random.fold_in(key, 5)))
    rbg = jax.random.key(0, impl="rbg")
    assert not rng.is_exact(rbg)
    np.testing.assert_array_equal(np.asarray(rng.uniform(rbg, (4,), jnp.float32)),
                                  np.asarray(jax.random.uniform(rbg, (4,), jnp.float32)))


@pytest.mark.parametrize("x64", [False, True])
def test_init_normal_is_the_eager_expression(x64):
    import math

    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", x64)
    try:
        key = jax.random.PRNGKey(11)
        sw = 1.0 / jnp.sqrt(124)
        np.testing.assert_array_equal(np.asarray(rng.init_normal(key, (12, 7), mul=sw)),
                                      np.asarray(sw * jax.random.normal(key, (12, 7))))
        np.testing.assert_array_equal(np.asarray(rng.init_normal(key, (12, 7), div=math.sqrt(7))),
                                      np.asarray(jax.random.normal(key, (12, 7)) / math.sqrt(7)))
        with pytest.raises(TypeError):
            rng.init_normal(key, (2,))
    finally:
        jax.config.update("jax_enable_x64", old)
