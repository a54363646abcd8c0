"""The three fault cases of issue 23: kill -9 mid-training then resume; a checkpoint truncated by half;
writing under a path whose parent is a file. None leaves a partial file under a final name."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from spikejax.core import DataFormatError, save_json

# a small fit that checkpoints every 5 steps and sleeps in a host callback so it can be killed mid-run;
# it writes its final weights to OUT (np.save) when it finishes
_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import equinox as eqx, jax, jax.numpy as jnp, numpy as np, optax
    from spikejax.core import fit

    ckpt, out, slow = sys.argv[1], sys.argv[2], float(sys.argv[3])

    class M(eqx.Module):
        w: jax.Array

    x = jax.random.normal(jax.random.PRNGKey(0), (32, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5])

    def loss(m, batch, key):
        return jnp.mean((batch["x"] @ m.w - batch["y"]) ** 2)

    def hook(step, model, logs):
        time.sleep(slow)

    res = fit(M(jnp.zeros(3)), loss, {"x": x, "y": y}, optimizer=optax.adam(0.05), key=jax.random.PRNGKey(1),
              n_steps=60, steps_per_call=5, checkpoint_dir=ckpt, checkpoint_every=5, callback=hook, progress=False)
    np.save(out, np.asarray(res.model.w))
    """
)


def _run(script, ckpt, out, slow, env):
    return subprocess.Popen([sys.executable, str(script), str(ckpt), str(out), str(slow)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_mid_training_then_resume_is_identical(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"),
                                                       os.environ.get("PYTHONPATH", "")]))
    full = _run(script, tmp_path / "full", tmp_path / "full.npy", 0.0, env)
    assert full.wait(timeout=300) == 0, full.stderr.read()

    ckpt = tmp_path / "ckpt"
    victim = _run(script, ckpt, tmp_path / "victim.npy", 0.5, env)
    deadline = time.time() + 240
    while time.time() < deadline and not (ckpt / "latest.json").is_file():
        time.sleep(0.1)
    assert (ckpt / "latest.json").is_file(), "no checkpoint appeared"
    time.sleep(0.7)  # somewhere in the next chunk, possibly mid-write
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL and not (tmp_path / "victim.npy").exists()
    # what the killed run left is readable (no partial file under a final name)
    index = json.loads((ckpt / "latest.json").read_text())
    assert 0 < int(index["step"]) < 60 and (ckpt / index["state"]).is_file()

    resumed = _run(script, ckpt, tmp_path / "resumed.npy", 0.0, env)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert np.load(tmp_path / "resumed.npy").tobytes() == np.load(tmp_path / "full.npy").tobytes()
    leftovers = [p.name for p in ckpt.iterdir() if p.name.startswith(".") or p.suffix in (".tmp", ".part")]
    assert not leftovers, leftovers


def test_checkpoint_truncated_by_half_is_refused_naming_the_file(tmp_path):
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    from spikejax.core import fit

    class M(eqx.Module):
        w: jax.Array

    def run(n_steps):
        return fit(M(jnp.zeros(3)), lambda m, b, k: jnp.sum((m.w - 1.0) ** 2), None, optimizer=optax.adam(0.1),
                   key=jax.random.PRNGKey(0), n_steps=n_steps, steps_per_call=5, checkpoint_dir=tmp_path,
                   checkpoint_every=5, progress=False)

    run(10)
    states = sorted(p for p in tmp_path.iterdir() if p.name != "latest.json")
    assert states
    for p in states:
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError) as info:
        run(20)  # resumes from the truncated checkpoint
    assert str(tmp_path) in str(info.value)


def test_writing_under_a_path_whose_parent_is_a_file_leaves_nothing(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises((OSError, ValueError)) as info:
        save_json(blocker / "summary.json", {"a": 1})
    assert "not_a_dir" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_dir"]
