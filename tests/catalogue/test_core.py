"""Bad-input catalogue: spikejax.core (trainer, its options, checkpoints, configs, sweeps, likelihoods, metrics, files).

Every case is a mistake a user makes; the error must come before anything is compiled and name
the argument (or the file).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from spikejax import core
from spikejax.core import (
    Batching,
    Checkpointing,
    ConfigError,
    DataFormatError,
    EarlyStopping,
    NonFiniteError,
    PlateauDecay,
    Progress,
    ShapeError,
    SpikejaxError,
    Validation,
)
from spikejax.core.config import Config, option

from .harness import Mistake, check, params

KEY = jax.random.PRNGKey(0)


def _loss(model, batch, key):
    return jnp.sum((model["w"] - jnp.mean(batch["x"])) ** 2)


@functools.lru_cache(maxsize=None)
def _data():
    return {"x": jnp.ones((8, 2))}


def _fit(**kw):
    base = dict(optimizer=optax.sgd(0.1), key=KEY, n_steps=2)
    base.update(kw)
    return core.fit({"w": jnp.zeros(2)}, _loss, _data(), **base)


@dataclasses.dataclass(frozen=True)
class RunConfig(Config):
    """A family-style config (the machinery every family config uses)."""

    learning_rate: float = option(1e-3, gt=0)
    batch_size: int = option(64, ge=1)
    loss: str = option("poisson", choices=("poisson", "zig"))
    shuffle: bool = option(True)


def _tmp(name: str) -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f"spikejax-cat-{name}-"))


def _ckpt_dir(kind: str) -> Path:
    """A checkpoint folder damaged in one way."""
    d = _tmp(kind)
    if kind == "list":
        (d / "latest.json").write_text("[1, 2, 3]")
    elif kind == "nokey":
        (d / "latest.json").write_text(json.dumps({"step": 3}))
    elif kind == "badjson":
        (d / "latest.json").write_text('{"step": 3, "sta')
    elif kind == "badstep":
        core.save_checkpoint(d, 3, {"w": jnp.zeros(2)})
        info = json.loads((d / "latest.json").read_text())
        info["step"] = "three"
        (d / "latest.json").write_text(json.dumps(info))
    elif kind in ("truncated", "missing"):
        path = core.save_checkpoint(d, 3, {"w": jnp.zeros(200)})
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        else:
            path.unlink()
    elif kind == "escape":
        (d / "latest.json").write_text(json.dumps({"step": 3, "state": "../../etc/passwd"}))
    return d


def _yaml_config():
    import yaml

    d = _tmp("yaml")
    (d / "run.json").write_text(json.dumps(yaml.safe_load("learning_rate: 1e-3\nbatch_size: 32\n")))
    return RunConfig.from_json(d / "run.json")


def _json_config(text: str):
    d = _tmp("json")
    (d / "run.json").write_text(text)
    return RunConfig.from_json(d / "run.json")


def _save_json_under_file():
    d = _tmp("parentfile")
    (d / "afile").write_text("x")
    return core.save_json(d / "afile" / "out.json", {"a": 1})


def _truncated_json():
    d = _tmp("trunc")
    (d / "summary.json").write_text('{"a": [1, 2')
    return core.load_json(d / "summary.json")


MISTAKES = [
    # ---- fit: lengths and steps
    Mistake("fit-n_steps-float", lambda: _fit(n_steps=2.5), ConfigError, r"n_steps.*int.*2\.5", "config"),
    Mistake("fit-n_steps-negative", lambda: _fit(n_steps=-3), ConfigError, r"n_steps.*>= 0.*-3", "config"),
    Mistake("fit-n_steps-string", lambda: _fit(n_steps="100"), (ConfigError, TypeError), r"n_steps.*int.*'100'", "type"),
    Mistake("fit-n_epochs-float", lambda: _fit(n_steps=None, n_epochs=1.5), ConfigError, r"n_epochs.*int", "config"),
    Mistake("fit-both-lengths", lambda: _fit(n_epochs=2), ConfigError, r"n_steps.*n_epochs", "config"),
    Mistake("fit-steps_per_call-zero", lambda: _fit(steps_per_call=0), ConfigError, r"steps_per_call.*>= 1", "config"),
    Mistake("fit-batch_size-too-big", lambda: _fit(batching=Batching(batch_size=100)), ConfigError,
            r"batch_size.*\[1, 8\].*100", "config"),
    Mistake("fit-batch_size-float", lambda: _fit(batch_size=2.5), ConfigError, r"batch_size.*int.*2\.5", "config"),
    Mistake("fit-key-int", lambda: _fit(key=0), ConfigError, r"key.*PRNG key", "config"),
    Mistake("fit-optimizer-not-optax", lambda: _fit(optimizer=0.1), (ConfigError, TypeError),
            r"optimizer.*optax.*float", "type"),
    Mistake("fit-data-ragged", lambda: core.fit({"w": jnp.zeros(2)}, _loss, {"x": jnp.ones((8, 2)), "y": jnp.ones(5)},
                                                optimizer=optax.sgd(0.1), key=KEY, n_steps=1),
            ConfigError, r"data.*leading.*\[5, 8\]", "shape"),
    Mistake("fit-loss-not-callable", lambda: core.fit({"w": jnp.zeros(2)}, "mse", _data(), optimizer=optax.sgd(0.1),
                                                      key=KEY, n_steps=1), (ConfigError, TypeError),
            r"loss_fn.*callable", "type"),
    Mistake("fit-val_smoothing-zero", lambda: _fit(val_fn=lambda m: 0.0, val_smoothing=0.0), ConfigError,
            r"smoothing.*\(0, 1\]", "config"),
    # ---- trainer options
    Mistake("batching-batch_size-float", lambda: Batching(batch_size=32.0), ConfigError, r"Batching\.batch_size.*int", "config"),
    Mistake("batching-batch_size-zero", lambda: Batching(batch_size=0), ConfigError, r"Batching\.batch_size.*>= 1", "config"),
    Mistake("batching-shuffle-string", lambda: Batching(shuffle="yes"), ConfigError, r"Batching\.shuffle.*True or False", "type"),
    Mistake("early-patience-zero", lambda: EarlyStopping(patience=0), ConfigError, r"EarlyStopping\.patience.*>= 1", "config"),
    Mistake("early-patience-float", lambda: EarlyStopping(patience=2.5), ConfigError, r"EarlyStopping\.patience.*int", "config"),
    Mistake("early-min_delta-negative", lambda: EarlyStopping(min_delta=-0.1), ConfigError,
            r"EarlyStopping\.min_delta.*>= 0", "config"),
    Mistake("early-mode-typo", lambda: EarlyStopping(mode="minimum"), ConfigError, r"EarlyStopping\.mode.*'min'", "config"),
    Mistake("early-monitor-typo", lambda: EarlyStopping(monitor="valid"), ConfigError, r"EarlyStopping\.monitor.*val", "config"),
    Mistake("plateau-factor-above-one", lambda: PlateauDecay(factor=1.5), ConfigError, r"PlateauDecay\.factor.*\(0, 1\]", "config"),
    Mistake("plateau-factor-nan", lambda: PlateauDecay(factor=float("nan")), ConfigError, r"PlateauDecay\.factor", "config"),
    Mistake("plateau-min_value-inf", lambda: PlateauDecay(min_value=float("inf")), ConfigError,
            r"PlateauDecay\.min_value.*finite", "config"),
    Mistake("plateau-factor-string", lambda: PlateauDecay(factor="0.5"), ConfigError, r"PlateauDecay\.factor.*number", "type"),
    Mistake("checkpointing-every-zero", lambda: Checkpointing("ck", every=0), ConfigError,
            r"Checkpointing\.every.*>= 1", "config"),
    Mistake("checkpointing-dir-int", lambda: Checkpointing(3), ConfigError, r"Checkpointing\.dir.*path", "type"),
    Mistake("validation-fn-not-callable", lambda: Validation(fn=0.5), ConfigError, r"Validation\.fn.*callable", "type"),
    Mistake("validation-smoothing-zero", lambda: Validation(fn=lambda m: 0.0, smoothing=0), ConfigError,
            r"Validation\.smoothing.*\(0, 1\]", "config"),
    Mistake("progress-enabled-string", lambda: Progress(enabled="yes"), ConfigError, r"Progress\.enabled", "type"),
    Mistake("early-monitor-val-without-validation", lambda: _fit(early_stopping=EarlyStopping()), ConfigError,
            r"monitor.*validation", "config"),
    # ---- checkpoints
    Mistake("checkpoint-latest-is-list", lambda: core.load_checkpoint(_ckpt_dir("list"), {"w": jnp.zeros(2)}),
            DataFormatError, r"latest\.json.*object", "file"),
    Mistake("checkpoint-latest-missing-state", lambda: core.load_checkpoint(_ckpt_dir("nokey"), {"w": jnp.zeros(2)}),
            DataFormatError, r"latest\.json.*'state'", "file"),
    Mistake("checkpoint-latest-malformed", lambda: core.load_checkpoint(_ckpt_dir("badjson"), {"w": jnp.zeros(2)}),
            DataFormatError, r"latest\.json.*not valid JSON", "file"),
    Mistake("checkpoint-step-not-int", lambda: core.load_checkpoint(_ckpt_dir("badstep"), {"w": jnp.zeros(2)}),
            DataFormatError, r"latest\.json.*step.*'three'", "file"),
    Mistake("checkpoint-state-truncated", lambda: core.load_checkpoint(_ckpt_dir("truncated"), {"w": jnp.zeros(200)}),
            DataFormatError, r"state-000000003\.eqx", "file"),
    Mistake("checkpoint-state-missing", lambda: core.load_checkpoint(_ckpt_dir("missing"), {"w": jnp.zeros(200)}),
            DataFormatError, r"state-000000003\.eqx.*(missing|no such)", "file"),
    Mistake("checkpoint-state-outside-folder", lambda: core.load_checkpoint(_ckpt_dir("escape"), {"w": jnp.zeros(2)}),
            DataFormatError, r"latest\.json.*state", "file"),
    # ---- configs
    Mistake("config-string-for-int", lambda: RunConfig(batch_size="64"), ConfigError,
            r"RunConfig\.batch_size.*integer.*str '64'", "type"),
    Mistake("config-yaml-float-without-dot", _yaml_config, ConfigError,
            r"RunConfig\.learning_rate.*number.*string '1e-3'.*1\.0e-3", "type"),
    Mistake("config-float-for-int", lambda: RunConfig.from_dict({"batch_size": 32.5}), ConfigError,
            r"RunConfig\.batch_size.*integer.*32\.5", "type"),
    Mistake("config-bool-for-number", lambda: RunConfig(learning_rate=True), ConfigError,
            r"RunConfig\.learning_rate.*number.*bool", "type"),
    Mistake("config-json-misspelt-key", lambda: _json_config('{"learning_rat": 0.01}'), ConfigError,
            r"learning_rat.*did you mean 'learning_rate'", "config"),
    Mistake("config-json-list", lambda: _json_config("[0.01]"), ConfigError, r"RunConfig.*mapping.*list", "file"),
    Mistake("config-choice-typo", lambda: RunConfig(loss="poison"), ConfigError, r"RunConfig\.loss.*'poisson'", "config"),
    Mistake("config-nan", lambda: RunConfig(learning_rate=float("nan")), ConfigError, r"RunConfig\.learning_rate.*finite", "nonfinite"),
    Mistake("config-replace-unknown", lambda: RunConfig().replace(batchsize=3), ConfigError,
            r"batchsize.*did you mean 'batch_size'", "config"),
    # ---- sweeps and stacking
    Mistake("sweep-empty-batch", lambda: core.sweep(lambda p: p["a"] * 2, {"a": jnp.zeros((0, 3))}), ConfigError,
            r"params.*empty|no settings", "shape"),
    Mistake("sweep-mismatched-leaves", lambda: core.sweep(lambda p: p["a"], {"a": jnp.zeros((3,)), "b": jnp.zeros((4, 2))}),
            ConfigError, r"\['a'\].*3.*\['b'\].*4", "shape"),
    Mistake("sweep-no-arrays", lambda: core.sweep(lambda p: p, {"a": 1.0}), ConfigError, r"params.*array", "shape"),
    Mistake("sweep-chunk_size-float", lambda: core.sweep(lambda p: p, {"a": jnp.zeros(4)}, chunk_size=2.5), ConfigError,
            r"chunk_size.*int.*2\.5", "config"),
    Mistake("stack-mismatched-shapes", lambda: core.stack([{"a": jnp.zeros(3)}, {"a": jnp.zeros(4)}]), ShapeError,
            r"\['a'\].*item 1.*\(4,\).*\(3,\)", "shape"),
    Mistake("stack-mismatched-structure", lambda: core.stack([{"a": jnp.zeros(3)}, {"b": jnp.zeros(3)}]), ShapeError,
            r"item 1.*structure", "shape"),
    Mistake("stack-empty", lambda: core.stack([]), ConfigError, r"stack.*at least one", "shape"),
    # ---- likelihoods and metrics
    Mistake("poisson-negative-rate", lambda: core.poisson_nll(jnp.asarray([1.0, -0.5]), jnp.asarray([1.0, 0.0])),
            SpikejaxError, r"rate.*>= 0", "value"),
    Mistake("poisson-negative-counts", lambda: core.poisson_nll(jnp.asarray([1.0, 0.5]), jnp.asarray([1.0, -1.0])),
            SpikejaxError, r"counts.*>= 0", "value"),
    Mistake("poisson-shapes", lambda: core.poisson_nll(jnp.ones(3), jnp.ones(4)), ShapeError,
            r"rate \(3,\).*counts \(4,\)", "shape"),
    Mistake("poisson-nan-rate", lambda: core.poisson_nll(jnp.asarray([1.0, jnp.nan]), jnp.ones(2)), NonFiniteError,
            r"rate.*finite", "nonfinite"),
    Mistake("poisson-reduction-typo", lambda: core.poisson_nll(jnp.ones(3), jnp.ones(3), reduction="avg"), ConfigError,
            r"reduction.*'mean'.*'avg'", "config"),
    Mistake("bernoulli-prob-above-one", lambda: core.bernoulli_nll(jnp.asarray([0.0, 1.0]), probs=jnp.asarray([0.5, 1.5])),
            SpikejaxError, r"(p|prob).*<= 1", "value"),
    Mistake("gaussian-negative-variance", lambda: core.gaussian_nll(jnp.zeros(3), jnp.zeros(3), var=-jnp.ones(3)),
            SpikejaxError, r"var.*> 0|var.*>= 0", "value"),
    Mistake("r2-broadcast", lambda: core.r2_score(jnp.ones((4, 1)), jnp.ones((4, 5))), ShapeError,
            r"y_true \(4, 1\).*y_pred \(4, 5\)", "shape"),
    Mistake("pearson-shapes", lambda: core.pearson_r(jnp.ones(5), jnp.ones(6)), ShapeError, r"x \(5,\).*y \(6,\)", "shape"),
    Mistake("bits_per_spike-shapes", lambda: core.bits_per_spike(jnp.ones((4, 3)), jnp.ones((4, 2))), ShapeError,
            r"rates.*counts", "shape"),
    Mistake("firing_rate-dt-zero", lambda: core.firing_rate(jnp.ones(10), dt=0), ConfigError, r"dt.*> 0", "value"),
    Mistake("firing_rate-negative-spikes", lambda: core.firing_rate(-jnp.ones(10), dt=1.0), SpikejaxError,
            r"spikes.*>= 0", "value"),
    Mistake("isi-2d", lambda: core.isi(np.ones((2, 5))), ShapeError, r"spike_train.*1-D", "shape"),
    # ---- files
    Mistake("save_h5-list", lambda: core.save_h5(_tmp("h5") / "x.h5", [1, 2, 3]), TypeError, r"data.*mapping.*list", "type"),
    Mistake("load_json-truncated", _truncated_json, DataFormatError, r"summary\.json.*not valid JSON", "file"),
    Mistake("save_json-parent-is-file", _save_json_under_file, OSError, r"afile", "file"),
    Mistake("load_h5-missing-key", lambda: core.load_h5(_h5_file(), required=["spikes"]), DataFormatError,
            r"x\.h5.*spikes", "file"),
]


def _h5_file() -> Path:
    path = _tmp("h5r") / "x.h5"
    core.save_h5(path, {"rates": np.ones(3)})
    return path


@pytest.mark.parametrize("mistake", params(MISTAKES))
def test_mistake(mistake):
    check(mistake)


# ---- files: no orphan temporary after a failed write, the user's umask


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith("."))


def test_failed_checkpoint_write_leaves_no_temporary_and_names_the_file(monkeypatch, tmp_path):
    import equinox as eqx

    core.save_checkpoint(tmp_path, 1, {"w": jnp.zeros(4)})
    before = sorted(p.name for p in tmp_path.iterdir())
    real = eqx.tree_serialise_leaves

    def half_then_full_disk(path, tree):
        real(path, tree)
        with open(path, "r+b") as fh:
            fh.truncate(Path(path).stat().st_size // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(eqx, "tree_serialise_leaves", half_then_full_disk)
    with pytest.raises(OSError) as info:
        core.save_checkpoint(tmp_path, 2, {"w": jnp.ones(4)})
    assert "state-000000002.eqx" in str(info.value), str(info.value)
    assert info.value.errno == 28
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # the intact checkpoint, nothing else
    monkeypatch.undo()
    step, state, _ = core.load_checkpoint(tmp_path, {"w": jnp.zeros(4)})
    assert step == 1 and np.all(np.asarray(state["w"]) == 0)


def test_file_size_limit_leaves_no_temporary(tmp_path):
    """A real write that fails half-way (RLIMIT_FSIZE, in a subprocess) leaves only the intact checkpoint."""
    script = textwrap.dedent(
        f"""
        import resource, sys
        import jax.numpy as jnp
        from spikejax import core
        core.save_checkpoint({str(tmp_path)!r}, 1, {{"w": jnp.zeros(4)}})
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        try:
            core.save_checkpoint({str(tmp_path)!r}, 2, {{"w": jnp.ones(100000)}})
        except OSError as exc:
            print("OSERROR", exc)
            sys.exit(0)
        sys.exit(3)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(core.__file__).parents[2]), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "state-000000002.eqx" in out.stdout, out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "state-000000001.eqx"]
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("writer", ["json", "h5", "model", "checkpoint"])
def test_files_get_the_users_umask(tmp_path, writer):
    old = os.umask(0o022)
    try:
        if writer == "json":
            path = core.save_json(tmp_path / "a.json", {"a": float("nan")})
            assert json.loads(path.read_text()) == {"a": None}
        elif writer == "h5":
            path = core.save_h5(tmp_path / "a.h5", {"a": np.ones(3)})
        elif writer == "model":
            path = core.save_model(tmp_path / "m.eqx", {"w": jnp.ones(2)}, metadata={"n": 2})
            assert (Path(str(path) + ".json").stat().st_mode & 0o777) == 0o644
        else:
            path = core.save_checkpoint(tmp_path / "ck", 1, {"w": jnp.ones(2)})
            assert ((tmp_path / "ck" / "latest.json").stat().st_mode & 0o777) == 0o644
        assert (path.stat().st_mode & 0o777) == 0o644
    finally:
        os.umask(old)
    assert _leftovers(path.parent) == []
