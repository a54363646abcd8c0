"""Outputs a user can open: JSON without float32 noise or NaN tokens, a TargetMissedWarning and a
``target_met`` / ``quick`` field in the summaries when a run misses its target (issue 24, item 4)."""

import json
import math
import time
import types
import warnings

import numpy as np
import pandas as pd
import pytest

import spikejax
from spikejax import cli
from spikejax.core.errors import TargetMissedWarning, warn_target_missed
from spikejax.core.io import json_ready, save_json, short_float


def test_target_missed_warning_is_a_user_warning_exported_at_the_top():
    assert issubclass(TargetMissedWarning, UserWarning)
    assert spikejax.TargetMissedWarning is TargetMissedWarning is spikejax.core.TargetMissedWarning
    with pytest.warns(TargetMissedWarning, match="missed"):
        warn_target_missed("the run missed its target")


def test_short_float_and_json_ready_drop_float32_noise_and_nan(tmp_path):
    assert float(np.float32(0.1)) != 0.1  # the noise this removes
    assert short_float(np.float32(0.1)) == 0.1 and short_float(np.float64(0.1)) == 0.1
    assert short_float(np.float32("nan")) is None and short_float(float("inf")) is None
    with pytest.raises(TypeError, match="scalar"):
        short_float(np.zeros(2))
    obj = {"dt_ms": np.float32(0.1), "r": np.asarray([0.1, np.nan], np.float32), "x": float("nan"), "n": 3}
    ready = json_ready(obj)
    assert ready == {"dt_ms": 0.1, "r": [0.1, None], "x": None, "n": 3}
    text = save_json(tmp_path / "s.json", obj).read_text()
    assert "NaN" not in text and "0.10000000149011612" not in text and json.loads(text) == ready


def _fake_family(result, *, accepts_full=False):
    calls = []
    if accepts_full:
        def run(out_dir, *, quick, seed, full=False):
            calls.append({"quick": quick, "seed": seed, "full": full})
            return dict(result)
    else:
        def run(out_dir, *, quick, seed):
            calls.append({"quick": quick, "seed": seed})
            return dict(result)
    return types.SimpleNamespace(run=run), calls


def test_demo_summary_carries_quick_and_target_met_and_passes_full(monkeypatch, tmp_path, capsys):
    glm_mod, glm_calls = _fake_family({"target_met": False, "rate_hz": np.float32(36.7)})
    meso_mod, meso_calls = _fake_family({"fit": "full", "part_seconds": {"fit": 1.0}, "seconds": 99.0, "quick": None},
                                        accepts_full=True)
    mods = {"glm": glm_mod, "meso": meso_mod}
    monkeypatch.setattr(cli, "_family_module", lambda family, name: mods.get(family) if name == "demo" else None)
    assert cli.main(["demo", "--quick", "--jobs", "1", "--only", "glm,meso", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["glm"]["quick"] is True and summary["glm"]["target_met"] is False
    assert summary["glm"]["rate_hz"] == 36.7  # float32 written as its shortest decimal
    assert meso_calls == [{"quick": True, "seed": 0, "full": False}]  # full only when asked for
    assert summary["meso"]["seconds"] < 99.0 and summary["meso"]["quick"] is True  # the part's own keys lose
    assert cli.main(["demo", "--full", "--jobs", "1", "--only", "glm,meso", "--out", str(tmp_path)]) == 0
    assert meso_calls[-1]["full"] is True and glm_calls[-1] == {"quick": False, "seed": 0}
    out = capsys.readouterr().out
    assert "meso: done in" in out and "(fit 1.0 s)" in out and "total" in out
    assert json.loads((tmp_path / "summary.json").read_text())["glm"]["quick"] is False
    assert cli.main(["demo", "--quick", "--full", "--out", str(tmp_path)]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert cli.main(["demo", "--jobs", "0", "--out", str(tmp_path)]) == 2
    assert "--jobs must be a positive integer" in capsys.readouterr().err


def test_demo_parts_report_their_compile_seconds_and_the_next_run_expects_them_saved(monkeypatch, tmp_path):
    import jax
    import jax.numpy as jnp

    class Compiles:  # a part that compiles a new program (an unrolled chain; a constant no cache has seen)
        @staticmethod
        def run(out_dir, *, quick, seed):
            salt = float(time.time_ns() % 1_000_003)

            def f(x):
                for i in range(60):
                    x = jnp.sin(x) * (salt + i) + jnp.cos(x @ x.T)
                return x

            jax.jit(f)(jnp.ones((4, 4))).block_until_ready()
            time.sleep(0.5)  # work that is not compilation: what the next run expects this part to take
            return {}

    class Idle:
        @staticmethod
        def run(out_dir, *, quick, seed):
            return {}

    mods = {"glm": Compiles, "meso": Idle}
    times = tmp_path / "times.json"
    monkeypatch.setattr(cli, "_family_module", lambda family, name: mods.get(family) if name == "demo" else None)
    monkeypatch.setattr(cli, "_demo_times_path", lambda: times)
    assert cli.main(["demo", "--jobs", "1", "--only", "glm,meso", "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["glm"]["compile_seconds"] > 0.01 and summary["meso"]["compile_seconds"] == 0.0
    learned, used = cli._demo_costs("default")
    assert used and learned["glm"] == pytest.approx(summary["glm"]["seconds"] - summary["glm"]["compile_seconds"],
                                                     abs=0.06)
    assert 0.4 <= learned["glm"] < summary["glm"]["seconds"]

def _glm_result(rates, target=62.5, **config):
    from spikejax import glm

    return glm.GLMTuneResult(model=None, history=pd.DataFrame({"epoch": np.arange(1, len(rates) + 1),
                                                               "rate_hz": np.asarray(rates, float)}),
                             stop_reason=None, seconds=0.0, stimulus=None, params={}, target_rate_hz=target,
                             config=glm.TuneConfig(**config), model_spec={})


def test_glm_tune_result_target_met_uses_the_last_epochs_and_the_tolerance():
    assert _glm_result([10.0, 30.0, 36.7, 36.7]).target_met is False
    res = _glm_result([10.0] * 6 + [60.0, 64.0])  # average_last 0.25 of 8 epochs: the last 2
    assert res.final_rate_hz == pytest.approx(62.0) and res.target_met is True
    assert _glm_result([10.0] * 6 + [60.0, 63.0]).target_met is True
    assert _glm_result([10.0] * 6 + [60.0, 63.0], rate_tolerance=0.001).target_met is False  # 1 Hz off
    assert _glm_result([0.3], target=0.0).target_met is True  # 0.5 Hz floor
    assert _glm_result([math.nan]).target_met is False


def test_l5_tune_result_target_met_is_the_sign_pattern():
    from spikejax.l5 import L5TuneResult

    def res(os_rel, ds_rel):
        h = pd.DataFrame({"step": [1], "loss": [0.0], "os_rel_soft": [os_rel], "ds_rel_soft": [ds_rel]})
        return L5TuneResult(model=None, history=h, stop_reason=None, seconds=0.0, tune_params=None, config=None)

    assert res(-0.1, 0.2).target_met is True
    assert res(0.1, 0.2).target_met is False and res(-0.1, -0.2).target_met is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert L5TuneResult(model=None, history=pd.DataFrame(columns=["os_rel_soft", "ds_rel_soft"]),
                            stop_reason=None, seconds=0.0, tune_params=None, config=None).target_met is False
