"""LFADS training epoch vs the PyTorch cost anchor (``shared/anchors/lfads_torch_anchor.py``), one thread each.

Both sides train the same LFADS-shaped model on the bundled Lorenz tutorial set (640 trials x 100
bins x 60 neurons; autolfads lorenz.yaml sizes: IC encoder 100, CI encoder 64, controller 64,
1 controller output, IC 100, generator 100, 40 factors), with the same batch size, Adam, global
norm clipping 200. The anchor steps its GRU cells in a Python loop over time as lfads-torch does;
spikejax runs one compiled epoch (``lax.scan`` over minibatches, ``lax.scan`` over time).

Measured in one run of this script:

* spikejax, twice: the default training configuration (``HParams.create()``: dropout 0.05, no
  coordinated dropout) and the matched-work configuration (dropout 0, coordinated dropout 0: the
  anchor's computation; spikejax's rates are traced, so its program still draws the masks and
  multiplies by ones): cold compile of one epoch (persistent compilation cache off), then the
  mean of ``--epochs`` warm epochs;
* the anchor, started by this script in a subprocess with 1 torch thread (skipped with a message
  when torch is not installed): its own mean over 3 epochs after a warm-up epoch;
* unless ``--no-tutorial-compile``: the cold compile of one training epoch at the tutorial's sizes
  (``examples/lfads_lorenz.py``: IC encoder 64, IC 32, generator 64, 40 factors, no controller,
  dropout 0.05, CD 0.5, batch 32) in a fresh process on all cores: ``lower()`` then ``compile()``
  of the epoch program, and ``train(n_epochs=1)`` end to end (model build, both compiles,
  the epoch, validation).

Both sides see 640 trials per epoch (``--batch-sizes`` 320 and 32 by default: two, resp. twenty, equal
minibatches; the anchor's default 500 would leave spikejax, which drops the remainder, with 500 trials
per epoch). Batch 320 is GEMM-bound on both sides; batch 32 (the tutorial's) shows the per-step cost.

``python benchmarks/lfads_anchor.py [--quick] [--batch-sizes 320,32] [--epochs 3] [--summary rows.json]``
The load average (``os.getloadavg``) is written beside the table: on a shared machine it inflates
both sides, the interpreted anchor more than the compiled program.
"""

from __future__ import annotations

import os
import sys

TUTORIAL_CHILD = "--tutorial-compile-child"
# one core for both sides (the anchor's torch.set_num_threads(1); XLA's thread pool pinned to the same core):
# set before jax starts its threads; the anchor subprocess inherits the affinity
if hasattr(os, "sched_setaffinity") and TUTORIAL_CHILD not in sys.argv:  # the tutorial compile runs on all cores
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
os.environ.setdefault("SPIKEJAX_CACHE_DIR", "off")  # cold compile is part of what is measured

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from spikejax.core.io import atomic_open  # noqa: E402
from spikejax.lfads import LFADS, HParams, LFADSConfig, TrainConfig, load_lorenz_tutorial  # noqa: E402
from spikejax.lfads.training import make_optimizer
from lfads_epoch import make_epoch_fn  # noqa: E402

NOTES_HEADING = "## Notes (written by hand"
ANCHOR = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "lfads_torch_anchor.py"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lorenz_lfads_tutorial" / "lfads_lorenz.h5"


HP_ROWS = {"default": {}, "matched": {"dropout_rate": 0.0, "cd_rate": 0.0}}


def run_spikejax(batch_size: int, epochs: int, hp_kw: dict | None = None) -> dict:
    d = load_lorenz_tutorial()
    data = {"data": jnp.asarray(d["train"]["data"])}
    n, t, neurons = data["data"].shape
    cfg = LFADSConfig(data_dim=neurons, encod_seq_len=t, ic_enc_dim=100, ci_enc_dim=64, con_dim=64, co_dim=1,
                      ic_dim=100, gen_dim=100, fac_dim=40)
    opt = make_optimizer(TrainConfig(batch_size=batch_size, learning_rate=1e-2, max_grad_norm=200.0))
    params, static = eqx.partition(LFADS(cfg, key=jax.random.PRNGKey(0)), eqx.is_inexact_array)
    epoch_fn = jax.jit(make_epoch_fn(static, opt, n, batch_size))
    hp, key, state = HParams.create(**(hp_kw or {})), jax.random.PRNGKey(1), opt.init(params)

    t0 = time.perf_counter()
    compiled = epoch_fn.lower(params, state, hp, data, jnp.asarray(0.0), key).compile()
    compile_s = time.perf_counter() - t0
    params, state, loss, _ = compiled(params, state, hp, data, jnp.asarray(0.0), key)  # warm-up epoch
    jax.block_until_ready(loss)
    t0 = time.perf_counter()
    for e in range(1, epochs + 1):
        params, state, loss, _ = compiled(params, state, hp, data, jnp.asarray(float(e)), key)
    jax.block_until_ready(loss)
    per_epoch = (time.perf_counter() - t0) / epochs
    return {"epoch_s": per_epoch, "compile_s": compile_s, "trials_per_epoch": (n // batch_size) * batch_size,
            "loss": float(loss)}


def run_anchor(batch_size: int) -> dict | str:
    if importlib.util.find_spec("torch") is None:
        return "skipped: torch is not installed (pip install torch==2.13.0 for the CPU build)"
    if not ANCHOR.exists() or not DATA.exists():
        return f"skipped: anchor or data not found ({ANCHOR}, {DATA}); they live in shared/ beside the project"
    out = subprocess.run([sys.executable, str(ANCHOR), str(DATA), "1", str(batch_size)], capture_output=True,
                         text=True, timeout=3600)
    if out.returncode != 0:
        return f"failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}"
    m = re.search(r"([0-9.]+) s per epoch", out.stdout)
    return {"epoch_s": float(m.group(1)), "line": out.stdout.strip()} if m else f"unparsed: {out.stdout!r}"


def tutorial_compile() -> dict:
    """Cold compile at the tutorial's sizes, in this (fresh) process: epoch program and train(n_epochs=1)."""
    from spikejax.lfads import train

    t_start = time.perf_counter()
    d = load_lorenz_tutorial()
    cfg = LFADSConfig(data_dim=60, encod_seq_len=100, ci_enc_dim=0, con_dim=0, co_dim=0, ic_enc_dim=64, ic_dim=32,
                      gen_dim=64, fac_dim=40)
    hp = HParams.create(dropout_rate=0.05, cd_rate=0.5, kl_ic_scale=1e-5, kl_co_scale=0.0, l2_gen_scale=1e-4,
                        kl_increase_epoch=20, l2_increase_epoch=20)
    tc = TrainConfig(learning_rate=1e-2, batch_size=32, n_epochs=1, lr_scheduler=True)
    data = {"data": jnp.asarray(d["train"]["data"])}
    n = data["data"].shape[0]
    opt = make_optimizer(tc)
    params, static = eqx.partition(LFADS(cfg, key=jax.random.PRNGKey(0)), eqx.is_inexact_array)
    fn = jax.jit(make_epoch_fn(static, opt, n, tc.batch_size))
    args = (params, opt.init(params), hp, data, jnp.asarray(0.0), jax.random.PRNGKey(1))
    t0, c0 = time.perf_counter(), time.process_time()
    lowered = fn.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2, c2 = time.perf_counter(), time.process_time()
    hlo = compiled.as_text()
    out = {"lower_s": t1 - t0, "compile_s": t2 - t1, "total_s": t2 - t0, "cpu_s": c2 - c0,
           "fusions": hlo.count(" fusion("), "loops": hlo.count(" while(")}
    # train() end to end in the same fresh process (its own program differs from the one above only
    # by core.fit's step bookkeeping, so XLA compiles it again from scratch)
    t0, c0 = time.perf_counter(), time.process_time()
    res = train(LFADS(cfg, key=jax.random.PRNGKey(0)), {"data": d["train"]["data"]}, {"data": d["valid"]["data"]},
                hp=hp, config=tc, key=jax.random.PRNGKey(1), progress=False)
    out.update({"train_1_epoch_s": time.perf_counter() - t0, "train_1_epoch_cpu_s": time.process_time() - c0,
                "train_loss": float(res.history["loss"].iloc[0]), "process_s": time.perf_counter() - t_start,
                "load": os.getloadavg()})
    return out


def run_tutorial_compile() -> dict | str:
    env = {**os.environ, "SPIKEJAX_CACHE_DIR": "off"}
    # the child widens its affinity again (it inherits this process's single core); the target is on 2 cores
    code = f"import os, runpy, sys; os.sched_setaffinity(0, range(os.cpu_count())); sys.argv = " \
        f"[{str(Path(__file__))!r}, {TUTORIAL_CHILD!r}]; runpy.run_path(sys.argv[0], run_name='__main__')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        return f"failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 timed epochs instead of --epochs")
    ap.add_argument("--batch-sizes", default="320,32", help="comma-separated minibatch sizes, one row each")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/lfads_anchor.md")
    ap.add_argument("--summary", default=None, help="write the summary row(s) as JSON here (make bench-quick)")
    ap.add_argument("--no-tutorial-compile", action="store_true", help="skip the tutorial-size cold compile")
    a = ap.parse_args(argv)
    epochs = 2 if a.quick else a.epochs
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} on {jax.devices()[0].platform}"
    rows, table = [], []
    for bs in [int(b) for b in a.batch_sizes.split(",") if b.strip()]:
        sj = {name: run_spikejax(bs, epochs, kw) for name, kw in HP_ROWS.items()}
        peer = run_anchor(bs)
        load_row = os.getloadavg()[0]
        for name, r in sj.items():
            r["ratio"] = peer["epoch_s"] / r["epoch_s"] if isinstance(peer, dict) else None
            print(f"spikejax LFADS ({name}): {r['epoch_s']:.3f} s/epoch ({r['trials_per_epoch']} trials, batch {bs}, "
                  f"1 thread), cold compile {r['compile_s']:.1f} s")
        print(f"anchor (PyTorch, 1 thread): {peer if isinstance(peer, str) else peer['line']}")
        for name, r in sj.items():
            if r["ratio"] is not None:
                print(f"ratio anchor / spikejax ({name}): {r['ratio']:.2f}x")
        for name, label in (("default", "default HParams (dropout 0.05)"),
                            ("matched", "matched work (dropout 0, CD 0, as the anchor)")):
            r = sj[name]
            rows.append({"workload": f"LFADS epoch, Lorenz tutorial set (640 x 100 x 60), lorenz.yaml sizes, batch {bs}, "
                                     f"1 thread, spikejax {label}", "peer": "lfads_torch_anchor.py (PyTorch)",
                         "peer_figure": f"{peer['epoch_s']:.2f} s/epoch" if isinstance(peer, dict) else peer,
                         "spikejax_figure": f"{r['epoch_s']:.2f} s/epoch", "ratio": r["ratio"],
                         "compile_s": r["compile_s"]})
        d, m = sj["default"], sj["matched"]
        table.append(f"| {bs} | {d['epoch_s']:.3f} | {m['epoch_s']:.3f} | {d['compile_s']:.1f} | "
                     + (f"{peer['epoch_s']:.3f} | {d['ratio']:.2f}x | {m['ratio']:.2f}x |" if isinstance(peer, dict)
                        else f"{peer} | - | - |") + f" {load_row:.1f} |")
    tut = None if a.no_tutorial_compile else run_tutorial_compile()
    if isinstance(tut, dict):
        print(f"tutorial sizes, cold: epoch program lower {tut['lower_s']:.2f} s + compile {tut['compile_s']:.2f} s "
              f"= {tut['total_s']:.2f} s ({tut['cpu_s']:.2f} s CPU; {tut['fusions']} fusions, {tut['loops']} loops); "
              f"train(n_epochs=1) {tut['train_1_epoch_s']:.2f} s; load {tut['load'][0]:.1f}")
    elif tut is not None:
        print(f"tutorial compile: {tut}")
    load = os.getloadavg()
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        old = Path(a.out).read_text() if Path(a.out).is_file() else ""
        notes = old[old.find(NOTES_HEADING):] if NOTES_HEADING in old else ""  # hand-written part is kept
        with atomic_open(a.out, "w") as f:
            f.write("# LFADS epoch vs the PyTorch anchor (`benchmarks/lfads_anchor.py`)\n\n")
            f.write(f"Command: `python benchmarks/lfads_anchor.py{' --quick' if a.quick else ''} "
                    f"--batch-sizes {a.batch_sizes}`  \nMachine: {machine}; load average at the end "
                    f"{', '.join(f'{v:.1f}' for v in load)}\n\n")
            f.write("Both sides pinned to one core, same run. *default*: `HParams.create()` (dropout 0.05, no "
                    "coordinated dropout); *matched*: dropout 0 and CD 0, the anchor's computation (the anchor has "
                    "neither). Cold compile: the default program, persistent cache off.\n\n")
            f.write("| batch | spikejax default s/epoch | spikejax matched s/epoch | spikejax cold compile (s) | "
                    "PyTorch anchor s/epoch (1 thread) | anchor / default | anchor / matched | 1-min load |\n"
                    "|---|---|---|---|---|---|---|---|\n")
            f.write("\n".join(table) + "\n")
            if isinstance(tut, dict):
                f.write("\nCold compile of one training epoch at the tutorial's sizes (`examples/lfads_lorenz.py`: "
                        "IC encoder 64, IC 32, generator 64, 40 factors, no controller, dropout 0.05, CD 0.5, "
                        "batch 32; fresh process, all cores, `SPIKEJAX_CACHE_DIR=off`):\n\n"
                        "| measurement | value |\n|---|---|\n"
                        f"| epoch program `lower()` | {tut['lower_s']:.2f} s |\n"
                        f"| epoch program `compile()` (XLA) | {tut['compile_s']:.2f} s |\n"
                        f"| epoch program total (target <= 10 s) | {tut['total_s']:.2f} s wall, "
                        f"{tut['cpu_s']:.2f} s CPU |\n"
                        f"| XLA fusions / while loops in it | {tut['fusions']} / {tut['loops']} |\n"
                        f"| `train(n_epochs=1)` end to end (model build, train and validation compiles, "
                        f"one epoch) | {tut['train_1_epoch_s']:.2f} s wall, {tut['train_1_epoch_cpu_s']:.2f} s CPU |\n"
                        f"| 1-min load average | {tut['load'][0]:.1f} |\n")
            if notes:
                f.write("\n" + notes)
    if a.summary:
        with atomic_open(a.summary, "w") as f:
            json.dump(rows, f)
    return rows


if __name__ == "__main__":
    if TUTORIAL_CHILD in sys.argv:
        print(json.dumps(tutorial_compile()))
    else:
        main()
