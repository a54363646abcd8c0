"""Shared pytest configuration: x64 switching, GPU skipping, small defaults."""

import os

# Keep test compiles small and single-threaded XLA from oversubscribing 2-core CI machines.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# The suite is dominated by XLA compilation of small programs: compile them with LLVM optimisation off
# (about 30 % less wall time on 2 cores; the tiny test shapes run fast either way). Inherited by the
# example scripts the smoke tests start. Benchmarks and user code keep XLA's default.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

# Tests stay independent of earlier runs: no persistent compilation cache (tests/core/test_cache.py
# checks the cache itself in subprocesses with their own folders).
os.environ.setdefault("SPIKEJAX_CACHE_DIR", "off")

import gc

import jax
import pytest

# Every compiled XLA:CPU program holds about 3 memory mappings until JAX's caches drop it, and Linux
# allows a process 65530 (vm.max_map_count): past it XLA segfaults while compiling. One pytest worker
# compiles ~20 000 programs over the suite, so the caches are emptied after a test module whenever
# the process holds more than this many mappings (a user's long session can do the same:
# ``jax.clear_caches()``; see docs/howto/sweeps.md).
MAX_MAPPINGS = 20_000


def _mappings() -> int | None:
    """Memory mappings this process holds now (Linux), ``None`` where /proc is absent."""
    try:
        with open(f"/proc/{os.getpid()}/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """After a test module, drop JAX's compiled programs if the process nears the mapping limit."""
    yield
    n = _mappings()
    if n is not None and n > MAX_MAPPINGS:
        jax.clear_caches()
        gc.collect()


@pytest.fixture(autouse=True)
def _x64_switch(request):
    """Tests marked ``requires_x64`` run with jax_enable_x64 on; the previous value is restored after."""
    if request.node.get_closest_marker("requires_x64") is None:
        yield
        return
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


def pytest_collection_modifyitems(config, items):
    has_gpu = any(d.platform == "gpu" for d in jax.devices())
    skip_gpu = pytest.mark.skip(reason="needs a GPU")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
