"""The persistent compilation cache: used on import, its folder written to, and switched off by env."""

import json
import os
import subprocess
import sys

import pytest

from spikejax.core import cache

# A program that takes a measurable time to compile (an unrolled chain), run in a fresh process.
_SCRIPT = r"""
import json, os, sys, time
import jax, jax.numpy as jnp
import spikejax
from spikejax.core import cache

def f(x):
    for i in range(40):
        x = jnp.sin(x) * (1.0 + i) + jnp.cos(x @ x.T)[: x.shape[0], : x.shape[1]]
    return x

x = jnp.ones((8, 8)).block_until_ready()
hits = []
jax.monitoring.register_event_listener(lambda name, **kw: hits.append(name) if name.endswith("cache_hits") else None)
t0 = time.perf_counter()
jax.jit(f)(x).block_until_ready()
print(json.dumps({
    "dir": None if cache.cache_dir() is None else str(cache.cache_dir()),
    "min_time": jax.config.jax_persistent_cache_min_compile_time_secs,
    "seconds": time.perf_counter() - t0,
    "hits": len(hits),
}))
"""


def _run(env_update: dict[str, str | None]) -> dict:
    env = dict(os.environ)
    for k, v in env_update.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _entries(folder, prefix: str = "") -> list[str]:
    """Names of the cached executables (``<name>-<hash>-cache``) in ``folder``."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(prefix) and p.name.endswith("-cache"))


def test_cache_folder_is_used_and_reused(tmp_path):
    folder = tmp_path / "jaxcache"
    first = _run({cache.CACHE_ENV: str(folder), "JAX_COMPILATION_CACHE_DIR": None})
    assert first["dir"] == str(folder)
    assert first["min_time"] == pytest.approx(cache.DEFAULT_MIN_COMPILE_TIME)
    written = _entries(folder, "jit_f-")
    assert len(written) == 1, f"the first process did not write f's program to the cache: {_entries(folder)}"
    second = _run({cache.CACHE_ENV: str(folder), "JAX_COMPILATION_CACHE_DIR": None})
    assert second["dir"] == str(folder)
    assert first["hits"] == 0
    # the second process loads f's program from the folder instead of compiling it
    assert second["hits"] >= 1
    assert _entries(folder, "jit_f-") == written


def test_cache_off_disables_it(tmp_path):
    res = _run({cache.CACHE_ENV: "off", "JAX_COMPILATION_CACHE_DIR": None, "XDG_CACHE_HOME": str(tmp_path)})
    assert res["dir"] is None and res["hits"] == 0
    assert not any(tmp_path.rglob("*-cache*")) and not (tmp_path / "spikejax").exists()


def test_default_folder_is_per_user(tmp_path):
    res = _run({cache.CACHE_ENV: None, "JAX_COMPILATION_CACHE_DIR": None, "XDG_CACHE_HOME": str(tmp_path)})
    assert res["dir"] is not None and res["dir"].startswith(str(tmp_path))
    assert _entries(tmp_path / "spikejax" / "jax")


def test_users_own_jax_setting_is_kept(tmp_path):
    mine = tmp_path / "mine"
    res = _run({cache.CACHE_ENV: None, "JAX_COMPILATION_CACHE_DIR": str(mine)})
    assert res["dir"] == str(mine)
    assert res["min_time"] == pytest.approx(1.0)  # JAX's own threshold, untouched


def test_enable_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="min_compile_time_secs"):
        cache.enable_compilation_cache(tmp_path, min_compile_time_secs=-1.0)
    with pytest.raises(ValueError, match="max_size_bytes"):
        cache.enable_compilation_cache(tmp_path, max_size_bytes=0)
