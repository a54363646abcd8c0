"""LFADS throughput: training trials/s and PBT worker-epochs/s (vmapped population vs one worker after another).

Both measurements in one run, after a warm-up call (compile time reported separately):

* single-model training: one compiled epoch (lax.scan over minibatches) of an LFADS model on
  Lorenz spikes -> trials/s;
* PBT: ``W`` workers, one generation of ``E`` epochs, (a) vmapped in one program (what
  ``spikejax.lfads.pbt`` runs) vs (b) the same per-worker program called ``W`` times in a row
  -> worker-epochs/s and the ratio.

``python benchmarks/lfads.py [--quick] [--workers 8] [--out benchmarks/RESULTS_lfads.md]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from spikejax.core.io import atomic_open
from spikejax.lfads import LFADS, HParams, LFADSConfig, TrainConfig, generate_lorenz_dataset
from spikejax.lfads.training import make_optimizer
from lfads_epoch import make_epoch_fn


def _timed(f, *a, reps=3):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*a))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(reps):
        jax.block_until_ready(f(*a))
    return first, (time.perf_counter() - t0) / reps


def main(quick: bool, workers: int, out: str | None) -> dict:
    n_cond, per = (8, 8) if quick else (20, 16)
    d = generate_lorenz_dataset(n_conditions=n_cond, trials_per_condition=per, n_neurons=29, n_steps=1000,
                                dt=20, key=jax.random.key(0))
    data = {"data": jnp.asarray(d["train"]["data"])}
    n = data["data"].shape[0]
    cfg = LFADSConfig(data_dim=29, encod_seq_len=50, ic_enc_dim=16, ci_enc_dim=8, con_dim=8, co_dim=1, ic_dim=8,
                      gen_dim=32, fac_dim=8)
    bs = 32
    tc = TrainConfig(batch_size=bs)
    opt = make_optimizer(tc)
    hp = HParams.create()
    model = LFADS(cfg, key=jax.random.PRNGKey(0))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    epoch_fn = make_epoch_fn(static, opt, n, bs)
    key = jax.random.PRNGKey(1)
    single = jax.jit(lambda p, s: epoch_fn(p, s, hp, data, jnp.asarray(0.0), key)[:3])  # keep the update live
    s0 = opt.init(params)
    c1, t1 = _timed(single, params, s0)
    trials = (n // bs) * bs
    res = {"train_trials_per_s": trials / t1, "train_epoch_s": t1, "train_compile_s": c1 - t1}

    E = 2
    W = workers
    models = [LFADS(cfg, key=k) for k in jax.random.split(jax.random.PRNGKey(2), W)]
    pw = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[eqx.partition(m, eqx.is_inexact_array)[0] for m in models])
    sw = jax.vmap(opt.init)(pw)
    hw = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (W,)), hp)
    kw = jax.random.split(key, W)

    def worker(p, s, h, k):
        def body(c, e):
            p, s = c
            p, s, loss, _ = epoch_fn(p, s, h, data, e, k)
            return (p, s), loss
        (p, s), losses = jax.lax.scan(body, (p, s), jnp.arange(E, dtype=jnp.float32))
        return p, losses  # returning the parameters keeps every update live

    vm = jax.jit(jax.vmap(worker))
    one = jax.jit(worker)
    cv, tv = _timed(vm, pw, sw, hw, kw, reps=2)
    take = lambda t, i: jax.tree_util.tree_map(lambda a: a[i], t)  # noqa: E731

    def sequential():
        return [one(take(pw, i), take(sw, i), take(hw, i), kw[i]) for i in range(W)]

    cs, ts = _timed(sequential, reps=2)
    res.update({"workers": W, "epochs_per_generation": E, "pbt_vmapped_worker_epochs_per_s": W * E / tv,
                "pbt_sequential_worker_epochs_per_s": W * E / ts, "pbt_vmap_speedup": ts / tv,
                "pbt_vmapped_compile_s": cv - tv, "pbt_sequential_compile_s": cs - ts})
    res["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {jax.devices()}"
    res["load_avg"] = os.getloadavg()
    if out:
        with atomic_open(out, "w") as f:
            f.write("# LFADS benchmark (benchmarks/lfads.py)\n\n")
            f.write(f"Command: `python benchmarks/lfads.py{' --quick' if quick else ''} --workers {W}`  \n")
            f.write(f"Machine: {res['machine']}; load average during the run: "
                    f"{', '.join(f'{v:.1f}' for v in res['load_avg'])} (shared machine: numbers are inflated)\n\n")
            f.write(f"Model: LFADS ic_enc 16, ci_enc 8, con 8, co 1, gen 32, fac 8; Lorenz spikes {n} trials x 50 bins "
                    f"x 29 neurons; batch {bs}.\n\n")
            f.write("| measurement | value |\n|---|---|\n")
            for k, v in res.items():
                if k not in ("machine", "load_avg"):
                    f.write(f"| {k} | {v:.4g} |\n" if isinstance(v, float) else f"| {k} | {v} |\n")
            f.write("\nPeer: the same per-worker program run one worker after another (sequential) in the same "
                    "process; the ratio `pbt_vmap_speedup` = sequential time / vmapped time.\n")
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/RESULTS_lfads.md")
    a = ap.parse_args()
    print(main(a.quick, a.workers, a.out))
