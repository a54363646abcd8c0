"""core.sweep and core.fit_population across 2 processes (jax.distributed on the loopback, 2 CPU devices each).

Each process runs tests/core/_multiprocess_worker.py. That each process computes its half is shown by
the sweep: every process's program returns ``jax.process_index()`` (a constant of its own trace), and the
gathered result says settings 0-3 came from process 0 and 4-6 from process 1.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("_multiprocess_worker.py")
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    d = tmp_path_factory.mktemp("multiprocess")
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
               XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0")
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(port), str(i), "2", str(d / f"out{i}.json"), str(d / "ckpt")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:  # only the processes started here
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    return [json.loads((d / f"out{i}.json").read_text()) for i in range(2)]


def test_sweep_spans_both_processes_and_equals_the_single_process_run(reports):
    for r in reports:
        assert r["n_devices"] == 4 and r["n_local"] == 2
        np.testing.assert_allclose(r["sweep_y"], r["sweep_local_y"], rtol=1e-6)
        np.testing.assert_allclose(r["sweep_chunked_y"], r["sweep_local_y"], rtol=1e-6)
        np.testing.assert_allclose(r["sweep_y"], np.sin(np.outer(np.linspace(0, 2, 7), np.linspace(0, 1, 16))).sum(1),
                                   rtol=1e-5, atol=1e-5)
        # 7 settings padded to 8 over 4 devices: process 0 holds devices 0-1 (settings 0-3), process 1 the rest
        assert r["sweep_by"] == [0, 0, 0, 0, 1, 1, 1]
    assert reports[0]["sweep_y"] == reports[1]["sweep_y"]


def test_fit_population_across_processes_hook_early_stopping_one_writer_resume(reports):
    r0, r1 = reports
    for r in reports:
        np.testing.assert_allclose(r["fit_w"], r["local_w"], rtol=1e-6, atol=1e-7)
        assert r["fit_status"] == r["local_status"]
        assert "early_stopping" in r["fit_status"] and "completed" in r["fit_status"]
        assert r["fit_hook_calls"] == [2, 4, 6, 8]  # the hook runs on every process (it must decide alike)
        np.testing.assert_allclose(r["resumed_w"], r["fit_w"], rtol=1e-6, atol=1e-7)
    assert r0["fit_w"] == r1["fit_w"] and r0["fit_loss"] == r1["fit_loss"]
    # the member that copied member 0 (the hook's exploit) trained on from its weights
    np.testing.assert_allclose(r0["fit_w"][5], r0["fit_w"][0], atol=1e-2)
    # only process 0 writes checkpoints; the resumed run went on from epoch 4 (2, 4 then 6, 8)
    assert r0["fit_writes"] == [2, 4, 6, 8] and r1["fit_writes"] == []
    assert r0["resumed_writes"] == [2, 4, 6, 8] and r1["resumed_writes"] == []


@pytest.mark.slow
def test_lfads_pbt_across_two_processes_equals_one_process(tmp_path):
    """lfads.pbt (fit_population with its exploit/explore hook) over 2 processes x 2 devices against
    one process with 4 devices: the same exploit decisions, hyperparameters and metrics."""
    worker = Path(__file__).resolve().parents[1] / "lfads" / "_multiprocess_pbt_worker.py"
    base = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    one = subprocess.run([sys.executable, str(worker), "0", "0", "1", str(tmp_path / "one.json")], timeout=900,
                         env=dict(base, XLA_FLAGS="--xla_force_host_platform_device_count=4"), capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-4000:]
    port = _free_port()
    env = dict(base, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs = [subprocess.Popen([sys.executable, str(worker), str(port), str(i), "2", str(tmp_path / f"mp{i}.json")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        logs = [p.communicate(timeout=900)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    ref = json.loads((tmp_path / "one.json").read_text())
    assert ref["devices"] == 4 and ref["processes"] == 1
    for i in range(2):
        r = json.loads((tmp_path / f"mp{i}.json").read_text())
        assert r["devices"] == 4 and r["processes"] == 2
        assert r["source"] == ref["source"] and r["best_worker"] == ref["best_worker"]
        np.testing.assert_allclose(r["lr"], ref["lr"], rtol=1e-6)
        np.testing.assert_allclose(r["metric"], ref["metric"], rtol=1e-4)
