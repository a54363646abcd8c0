"""Long acceptance runs (``pytest -m slow tests/lfads``); tens of minutes on 2 CPU cores.

Both assert the issue's targets. Measured on 2 CPU cores: Lorenz held-out ridge R² 0.989 / 0.980 /
0.957 (800 epochs, CD 0.5, about 21 minutes of training); calcium rate R² 0.968 vs 0.271
zero-filled (a few minutes).
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_lorenz_tutorial_heldout_ridge_r2():
    """Acceptance 1: held-out ridge R² from factors to each true latent >= 0.95."""
    out = _load("lfads_lorenz").run()
    x, y, z = out["heldout_ridge_r2_xyz"]
    assert x >= 0.95 and y >= 0.95 and z >= 0.95


@pytest.mark.slow
def test_calcium_zig_sbtt_beats_zero_filled():
    """Acceptance 2: ZIG + SBTT rate R² (per-neuron affine calibration, held-out trials) >= 0.85."""
    out = _load("lfads_calcium").run()
    assert out["sbtt"]["rate_r2"] >= 0.85
    assert out["sbtt"]["rate_r2"] > out["zero_filled"]["rate_r2"] + 0.3


@pytest.mark.slow
def test_examples_quick():
    for name in ("lfads_lorenz", "lfads_calcium"):
        out = _load(name).run(quick=True)
        assert out
