"""LFADS training epoch vs the PyTorch cost anchor (``shared/anchors/lfads_torch_anchor.py``), one thread each.

Both sides train the same LFADS-shaped model on the bundled Lorenz tutorial set (640 trials x 100
bins x 60 neurons; autolfads lorenz.yaml sizes: IC encoder 100, CI encoder 64, controller 64,
1 controller output, IC 100, generator 100, 40 factors), with the same batch size, Adam, global
norm clipping 200. The anchor steps its GRU cells in a Python loop over time as lfads-torch does;
spikejax runs one compiled epoch (``lax.scan`` over minibatches, ``lax.scan`` over time).

Measured in one run of this script:

* spikejax: cold compile of one epoch (persistent compilation cache off), then the mean of
  ``--epochs`` warm epochs;
* the anchor, started by this script in a subprocess with 1 torch thread (skipped with a message
  when torch is not installed): its own mean over 3 epochs after a warm-up epoch.

Both sides see 640 trials per epoch (``--batch-sizes`` 320 and 32 by default: two, resp. twenty, equal
minibatches; the anchor's default 500 would leave spikejax, which drops the remainder, with 500 trials
per epoch). Batch 320 is GEMM-bound on both sides; batch 32 (the tutorial's) shows the per-step cost.

``python benchmarks/lfads_anchor.py [--quick] [--batch-sizes 320,32] [--epochs 3] [--summary rows.json]``
"""

from __future__ import annotations

import os

# one core for both sides (the anchor's torch.set_num_threads(1); XLA's thread pool pinned to the same core):
# set before jax starts its threads; the anchor subprocess inherits the affinity
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
os.environ.setdefault("SPIKEJAX_CACHE_DIR", "off")  # cold compile is part of what is measured

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from spikejax.core.io import atomic_open  # noqa: E402
from spikejax.lfads import LFADS, HParams, LFADSConfig, TrainConfig, load_lorenz_tutorial  # noqa: E402
from spikejax.lfads.train import make_epoch_fn, make_optimizer  # noqa: E402

ANCHOR = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "lfads_torch_anchor.py"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lorenz_lfads_tutorial" / "lfads_lorenz.h5"


def run_spikejax(batch_size: int, epochs: int) -> dict:
    d = load_lorenz_tutorial()
    data = {"data": jnp.asarray(d["train"]["data"])}
    n, t, neurons = data["data"].shape
    cfg = LFADSConfig(data_dim=neurons, encod_seq_len=t, ic_enc_dim=100, ci_enc_dim=64, con_dim=64, co_dim=1,
                      ic_dim=100, gen_dim=100, fac_dim=40)
    opt = make_optimizer(TrainConfig(batch_size=batch_size, lr_init=1e-2, max_grad_norm=200.0))
    params, static = eqx.partition(LFADS(cfg, key=jax.random.PRNGKey(0)), eqx.is_inexact_array)
    epoch_fn = jax.jit(make_epoch_fn(static, opt, n, batch_size))
    hp, key, state = HParams.create(), jax.random.PRNGKey(1), opt.init(params)

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


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 timed epochs instead of --epochs")
    ap.add_argument("--batch-sizes", default="320,32", help="comma-separated minibatch sizes, one row each")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/lfads_anchor.md")
    ap.add_argument("--summary", default=None, help="write the summary row(s) as JSON here (make bench-quick)")
    a = ap.parse_args(argv)
    epochs = 2 if a.quick else a.epochs
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} on {jax.devices()[0].platform}"
    rows, table = [], []
    for bs in [int(b) for b in a.batch_sizes.split(",") if b.strip()]:
        sj = run_spikejax(bs, epochs)
        peer = run_anchor(bs)
        ratio = peer["epoch_s"] / sj["epoch_s"] if isinstance(peer, dict) else None
        print(f"spikejax LFADS: {sj['epoch_s']:.3f} s/epoch ({sj['trials_per_epoch']} trials, batch {bs}, "
              f"1 thread), cold compile {sj['compile_s']:.1f} s")
        print(f"anchor (PyTorch, 1 thread): {peer if isinstance(peer, str) else peer['line']}")
        if ratio is not None:
            print(f"ratio anchor / spikejax: {ratio:.2f}x")
        rows.append({"workload": f"LFADS epoch, Lorenz tutorial set (640 x 100 x 60), lorenz.yaml sizes, batch {bs}, "
                                 "1 thread", "peer": "lfads_torch_anchor.py (PyTorch)",
                     "peer_figure": f"{peer['epoch_s']:.2f} s/epoch" if isinstance(peer, dict) else peer,
                     "spikejax_figure": f"{sj['epoch_s']:.2f} s/epoch", "ratio": ratio, "compile_s": sj["compile_s"]})
        table.append(f"| {bs} | {sj['epoch_s']:.3f} | {sj['compile_s']:.1f} | "
                     + (f"{peer['epoch_s']:.3f} | {ratio:.2f}x |" if isinstance(peer, dict) else f"{peer} | - |"))
    load = os.getloadavg()
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(a.out, "w") as f:
            f.write("# LFADS epoch vs the PyTorch anchor (`benchmarks/lfads_anchor.py`)\n\n")
            f.write(f"Command: `python benchmarks/lfads_anchor.py{' --quick' if a.quick else ''} "
                    f"--batch-sizes {a.batch_sizes}`  \nMachine: {machine}; load average at the end "
                    f"{', '.join(f'{v:.1f}' for v in load)}\n\n")
            f.write("| batch | spikejax s/epoch (1 core) | spikejax cold compile (s) | PyTorch anchor s/epoch "
                    "(1 thread) | anchor / spikejax |\n|---|---|---|---|---|\n")
            f.write("\n".join(table) + "\n")
    if a.summary:
        with atomic_open(a.summary, "w") as f:
            json.dump(rows, f)
    return rows


if __name__ == "__main__":
    main()
