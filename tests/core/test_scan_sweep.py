import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spikejax.core import chunked_scan, scan, stack, step_keys, sweep, unstack


def _step(c, x):
    c = 0.9 * c + jnp.tanh(x * c + 0.1)
    return c, c**2


@pytest.mark.parametrize("ckpt", [False, True, 4, 7])
def test_checkpointed_scan_matches_plain(ckpt):
    xs = jnp.linspace(-1, 1, 30)
    ref_c, ref_y = jax.lax.scan(_step, 0.3, xs)
    c, y = scan(_step, 0.3, xs, checkpoint=ckpt)
    np.testing.assert_allclose(c, ref_c, rtol=1e-6)
    np.testing.assert_allclose(y, ref_y, rtol=1e-6)
    g_ref = jax.grad(lambda c0: jax.lax.scan(_step, c0, xs)[1].sum())(0.3)
    g = jax.grad(lambda c0: scan(_step, c0, xs, checkpoint=ckpt)[1].sum())(0.3)
    np.testing.assert_allclose(g, g_ref, rtol=1e-5)


def test_scan_length_without_xs():
    c, y = scan(lambda c, _: (c + 1, c), 0, length=5, checkpoint=2)
    assert int(c) == 5 and list(np.asarray(y)) == [0, 1, 2, 3, 4]


def test_chunked_scan_equals_one_shot():
    key = jax.random.PRNGKey(0)

    def step(c, k):
        x = jax.random.normal(k)
        return c + x, x

    xs_fn = lambda ts: step_keys(key, ts)
    _, one = jax.lax.scan(step, 0.0, step_keys(key, jnp.arange(23)))
    c, outs = chunked_scan(step, 0.0, 23, 5, xs_fn=xs_fn)
    np.testing.assert_allclose(np.concatenate([np.asarray(o) for o in outs]), one, rtol=1e-6)
    np.testing.assert_allclose(c, one.sum(), rtol=1e-5)


class Affine(eqx.Module):
    w: jax.Array
    b: jax.Array


def test_stack_unstack_and_sweep():
    models = [Affine(jnp.array(float(i)), jnp.array(1.0)) for i in range(5)]
    batched = stack(models)
    assert batched.w.shape == (5,)
    back = unstack(batched)
    assert float(back[3].w) == 3.0
    x = jnp.arange(4.0)
    out = sweep(lambda m, x: m.w * x + m.b, batched, x)
    np.testing.assert_allclose(out, np.arange(5.0)[:, None] * np.arange(4.0) + 1)
    out_chunked = sweep(lambda m, x: m.w * x + m.b, batched, x, chunk_size=2)
    np.testing.assert_allclose(out_chunked, out)


def test_sharded_sweep_matches_unsharded():
    """With 4 forced host devices the sharded sweep returns the same numbers as a plain vmap."""
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np
        from spikejax.core import sweep
        assert jax.local_device_count() == 4
        def f(p, x):
            return jnp.sum(jnp.tanh(p["a"] * x + p["b"]) ** 2)
        p = {"a": jnp.linspace(0, 1, 10), "b": jnp.linspace(-1, 1, 10)}
        x = jnp.linspace(0, 3, 50)
        sharded = sweep(f, p, x)
        plain = jax.vmap(lambda a, b: f({"a": a, "b": b}, x))(p["a"], p["b"])
        assert sharded.shape == (10,)
        np.testing.assert_allclose(np.asarray(sharded), np.asarray(plain), rtol=1e-6)
        print("OK")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "OK" in res.stdout


def test_sweep_compiles_once_for_repeated_calls():
    calls = []

    def f(m, x):
        calls.append(1)  # runs only while tracing
        return m.w * jnp.sum(x) + m.b

    batched = stack([Affine(jnp.array(float(i)), jnp.array(0.0)) for i in range(3)])
    for k in range(3):
        out = sweep(f, batched, jnp.arange(4.0) + k)
    np.testing.assert_allclose(out, np.arange(3.0) * 14.0)
    assert len(calls) == 1
