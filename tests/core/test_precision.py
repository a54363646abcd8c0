"""core.precision: full float32 kernel products by default, a switch for TF32, CPU-only compile options."""

import jax
import jax.numpy as jnp
import numpy as np

from spikejax.core import kernel_precision, matmul_precision, on_cpu
from spikejax.core.precision import cpu_tuned_jit, matmul, precise


def _dots(fn, *args):
    return [line for line in jax.jit(fn).lower(*args).as_text().splitlines() if "dot_general" in line]


def test_kernel_products_are_full_float32_unless_the_user_switches():
    a = jnp.ones((3, 3))
    assert kernel_precision() == jax.lax.Precision.HIGHEST
    assert all("HIGHEST" in d for d in _dots(lambda x: matmul(x, x), a))
    assert all("HIGHEST" in d for d in _dots(precise(lambda x: x @ x @ x), a))
    with matmul_precision("tensorfloat32"):
        assert kernel_precision() is None
        assert not any("HIGHEST" in d for d in _dots(lambda x: matmul(x, x), a))
        assert not any("HIGHEST" in d for d in _dots(precise(lambda x: x @ x), a))
    np.testing.assert_allclose(np.asarray(matmul(a, a)), 3.0)


def test_the_glm_dense_kernel_asks_for_highest():
    from spikejax.glm.kernels import Coupler

    c = Coupler(kind="dense", n=3, capacity=3, dense=jnp.eye(3), src=None, dst=None, weight=None, out_dst=None, out_w=None)
    assert all("HIGHEST" in d for d in _dots(lambda x: c.project(x), jnp.ones(3)))


def test_cpu_tuned_jit_uses_its_options_on_cpu_only():
    f = cpu_tuned_jit(lambda x: x * 2, cpu_compiler_options={"xla_backend_optimization_level": 0})
    assert float(f(jnp.float32(2.0))) == 4.0
    assert on_cpu() == (jax.default_backend() == "cpu") and on_cpu(jnp.ones(2)) == on_cpu()
