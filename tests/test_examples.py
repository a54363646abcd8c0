"""Smoke-test every example script and the demo with their --quick size flag (as a user would run them)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _run(args, tmp_path, timeout=300):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    res = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{args} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_quick(script, tmp_path):
    # every example takes --quick (smallest sizes) and --out (its output folder), and writes there
    out = tmp_path / "out"
    _run([sys.executable, str(script), "--quick", "--out", str(out)], tmp_path)
    assert any(p.is_file() for p in out.rglob("*")), f"{script.name} --out {out} wrote nothing"


@pytest.mark.slow  # `make demo` runs the full demo; this smoke run of every part is long on 2 cores
def test_demo_quick_writes_outputs(tmp_path):
    out = tmp_path / "demo"
    _run([sys.executable, "-m", "spikejax.cli", "demo", "--quick", "--out", str(out)], tmp_path, timeout=600)
    assert (out / "summary.json").is_file()
    import json

    summary = json.loads((out / "summary.json").read_text())
    for family in summary:
        files = [p for p in (out / family).rglob("*") if p.is_file()]
        assert files, f"demo part {family} wrote nothing"
        assert summary[family]["quick"] is True, family
