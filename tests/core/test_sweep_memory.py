"""core.sweep: per-device chunks keep the sharding (4 forced host devices), memory_budget picks a chunk that fits."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spikejax.core  # noqa: F401
from spikejax import ConfigError
from spikejax.core import SizeError, plan_chunks, sweep

SRC = str(Path(__file__).resolve().parents[2] / "src")

FOUR_DEVICES = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    import spikejax.core
    S = sys.modules["spikejax.core.sweep"]
    assert jax.local_device_count() == 4

    def f(p, x):
        return {"y": jnp.sum(jnp.sin(p["a"] * x) * jnp.cos(x)), "id": p["id"]}

    params = {"a": jnp.linspace(0.0, 3.0, 19), "id": jnp.arange(19)}
    x = jnp.linspace(0.0, 1.0, 512)
    full = S.sweep(f, params, x, memory_budget=None)
    chunked = S.sweep(f, params, x, chunk_size=2)
    np.testing.assert_array_equal(np.asarray(full["id"]), np.arange(19))
    np.testing.assert_allclose(np.asarray(chunked["y"]), np.asarray(full["y"]), rtol=1e-6)
    # the compiled chunked program: each device maps over its own 5 (padded 6 = 3 x 2) settings, no collective
    sw = S._Sweep(f, params, (x,), True, None)
    hlo = sw.compile(S._balanced(sw.n_local, 2))[0].compiled.as_text()
    assert sw.n_local == 5 and S._balanced(5, 2) == 2
    for op in ("all-gather", "all-reduce", "all-to-all", "collective-permute"):
        assert op not in hlo, op
    # the per-device outputs: device d holds settings [6d, 6d + 6) of the padded batch
    placed = sw.placed(2)
    out = S._run_sweep(f, sw.static, placed, sw.arg_dyn, sw.arg_static, 2, sw.mesh)
    ids = {s.device.id: np.asarray(s.data).tolist() for s in out["id"].addressable_shards}
    assert ids == {d: [min(i, 18) for i in range(6 * d, 6 * d + 6)] for d in range(4)}, ids
    # what the earlier implementation compiled (lax.map over the sharded axis) gathers the batch
    sharded, _ = S.shard_batch(params)
    old = jax.jit(lambda d: jax.lax.map(lambda p: f(p, x), d, batch_size=2)).lower(sharded).compile().as_text()
    print("old all-gather:", "all-gather" in old)
    # a budget that needs chunks also runs sharded and gives the same numbers
    info = S.plan_chunks(f, params, x, memory_budget=None)
    one = S._Sweep(f, params, (x,), True, None).memory(1)["peak"]
    budget = (one + info["unbounded_memory"]["peak"]) / 2
    plan = S.plan_chunks(f, params, x, memory_budget=budget)
    assert plan["n_devices"] == 4 and 1 <= plan["chunk_size"] < 5 and plan["memory"]["peak"] <= budget, plan
    bounded = S.sweep(f, params, x, memory_budget=budget)
    np.testing.assert_allclose(np.asarray(bounded["y"]), np.asarray(full["y"]), rtol=1e-6)
    print("ok")
""")


def test_chunked_sweep_keeps_every_device_on_its_own_shard():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0",
               JAX_PLATFORMS="cpu", PYTHONPATH=SRC)
    r = subprocess.run([sys.executable, "-c", FOUR_DEVICES], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout[-2000:] + r.stderr[-4000:]


def _f(p, x):
    # a (64, 256) history per setting: temporary memory grows with the settings vmapped at once
    h = jax.lax.scan(lambda c, xi: (c * 0.9 + jnp.sin(p * xi * x[:256]), c), jnp.zeros(256), x[:64])[1]
    return {"y": jnp.sum(jnp.sort(h, axis=0)[::7])}


def test_memory_budget_picks_the_largest_chunk_that_fits(monkeypatch):
    params = jnp.linspace(0.1, 1.0, 12)
    x = jnp.linspace(0.0, 1.0, 2048)
    free = plan_chunks(_f, params, x, memory_budget=None)
    assert free["chunk_size"] is None and free["memory"]["temp"] > 0
    sys_sweep = sys.modules["spikejax.core.sweep"]
    one = sys_sweep._Sweep(_f, params, (x,), True, None).memory(1)["peak"]
    budget = one + 0.4 * (free["unbounded_memory"]["peak"] - one)
    plan = plan_chunks(_f, params, x, memory_budget=budget)
    # 3 steps of 4 settings fit (5 would fit too but needs as many steps, with padding); 2 steps of 6 do not
    assert plan["chunk_size"] == 4 and plan["memory"]["peak"] <= budget < free["memory"]["peak"], plan
    assert sys_sweep._Sweep(_f, params, (x,), True, None).memory(6)["peak"] > budget
    np.testing.assert_allclose(np.asarray(sweep(_f, params, x, memory_budget=budget)["y"]),
                               np.asarray(sweep(_f, params, x, memory_budget=None)["y"]), rtol=1e-6)
    with pytest.raises(SizeError, match="memory_budget"):
        sweep(_f, params, x, memory_budget=one / 2)
    # the default budget (half of SPIKEJAX_MAX_BYTES here) does not refuse: one setting per step, a warning
    monkeypatch.setenv("SPIKEJAX_MAX_BYTES", str(int(one)))
    with pytest.warns(UserWarning, match="one setting per step"):
        out = sweep(_f, params, x)
    np.testing.assert_allclose(np.asarray(out["y"]), np.asarray(sweep(_f, params, x, memory_budget=None)["y"]), rtol=1e-6)
    for bad in (-1.0, "lots", True, float("nan")):
        with pytest.raises(ConfigError, match="memory_budget"):
            sweep(_f, params, x, memory_budget=bad)
    with pytest.raises(ConfigError, match="chunk_size"):
        sweep(_f, params, x, chunk_size=0)
