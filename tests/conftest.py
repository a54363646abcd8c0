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

import jax
import pytest


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
