"""Every family's main kernel on the accelerator and on the CPU backend, with the same inputs.

Each side runs in its own process (``JAX_PLATFORMS=cpu`` for the CPU side, JAX's default backend
for the accelerator side) on inputs built from the same seeds, writes its outputs, compile and warm
times; this script then checks that the two sides agree at float32 tolerances and prints a table.
Without a GPU (or TPU) only the CPU side runs and the script says so.

Workloads (``--quick``: smaller sizes, the CPU side in about two minutes on 2 cores):

* ``glm_dense`` / ``glm_sparse`` / ``glm_event``: ``glm.simulate`` of a 10k-neuron (quick: 2k)
  inhibitory network with each coupling kernel; spikes are compared by the population rate and by
  the identical fraction of the first steps (spike rasters diverge once one threshold crossing differs);
* ``l5``: ``l5.simulate`` of the debug configuration (quick: N = [9, 55, 9, 7], 2 networks), rates;
* ``gfr``: ``gfr.fit_cells`` on 200 synthetic cells (quick: 8) with short schedules, final losses;
* ``meso_grad``: the mesoscopic loss and its gradient at the ground truth (bundled data);
* ``meso_hard_em``: a short hard-EM phase (one restart, two iterations; quick: one), final objective;
* ``lfads``: one LFADS training epoch on the Lorenz set, the mean loss and the updated parameters.

Matrix products run at full float32 (``spikejax.core.matmul_precision``); ``--tf32`` runs the
accelerator side under ``matmul_precision("tensorfloat32")`` to see what TF32 changes.

    python benchmarks/gpu.py [--quick] [--only glm_dense,l5] [--tf32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = ("glm_dense", "glm_sparse", "glm_event", "l5", "gfr", "meso_grad", "meso_hard_em", "lfads")
# (rtol, atol) per output for agreement; spikes are compared by statistics (see _agree)
TOL = {"default": (2e-4, 1e-5), "l5": (1e-3, 1e-4), "gfr": (1e-2, 1e-3), "meso_hard_em": (1e-3, 1e-4),
       "lfads": (1e-3, 1e-4)}


# ------------------------------------------------------------------------------------------------
# one side (a subprocess): run the workloads, save outputs
# ------------------------------------------------------------------------------------------------


def _timed(fn):
    import jax

    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    warm = time.perf_counter() - t0
    return out, max(first - warm, 0.0), warm


def _glm(kind: str, quick: bool):
    import jax
    import numpy as np

    from spikejax import glm

    n, steps, density = (2000, 100, 0.01) if quick else (10_000, 200, 0.01)
    rng = np.random.default_rng(0)
    nnz = int(density * n * n)
    flat = rng.choice(n * n, size=nnz, replace=False)
    i, j = np.divmod(flat, n)
    keep = i != j
    W = np.zeros((n, n), np.float32)
    W[i[keep], j[keep]] = -rng.uniform(0, 2 * 0.075 / (density * n), size=int(keep.sum())).astype(np.float32)
    net = glm.from_dense(W)
    model = glm.RectifiedLNP(T=20, lambda_0=100.0, theta=1e-4, tau=10.0, dt=0.1, r=0.0025, b=0.001)
    key = jax.random.key(0)
    out, c, w = _timed(lambda: glm.simulate(model, net, n_steps=steps, key=key, equilibration_steps=0, backend=kind).spikes)
    return {"spikes": np.asarray(out)}, c, w, f"N={n}, {steps} steps"


def _l5(quick: bool):
    import jax
    import numpy as np

    from spikejax.l5 import L5Model, L5Params, build_network, debug_config, make_spec, simulate

    cfg = debug_config(**({"N": [9, 55, 9, 7], "sim_number": 2, "Ttau": 60} if quick else {}))
    net = build_network(cfg, key=jax.random.PRNGKey(cfg.seed))
    model = L5Model(L5Params.from_config(cfg), net, make_spec(cfg, record_weights=False))
    out, c, w = _timed(lambda: simulate(model).rates)
    return {"rates": np.asarray(out)}, c, w, f"N={list(cfg.N)}, {cfg.sim_number} networks, {cfg.n_steps} steps"


def _gfr(quick: bool):
    import copy

    import jax
    import numpy as np

    from spikejax import gfr

    n_distinct, n_cells = (4, 8) if quick else (20, 200)
    with tempfile.TemporaryDirectory() as tmp:
        paths = gfr.make_cell_bank(Path(tmp), n_distinct, key=jax.random.key(0), sampling_rate=5000.0, short=True)
        bank = [gfr.preprocess_nwb(p, bin_sizes=(20,)) for p in paths]
    cells = []
    for i in range(n_cells):
        c = copy.copy(bank[i % len(bank)])
        c.cell_id = 10_000_000 + i
        cells.append(c)
    cfg = gfr.FitConfig(activation_n_epochs=20 if quick else 100, n_epochs=(5, 5, 5) if quick else (20, 20, 20))
    res, c, w = _timed(lambda: gfr.fit_cells(cells, cfg, key=jax.random.key(1)))
    table = res.to_pandas()
    num = table.select_dtypes("number")
    return {"table": np.asarray(num.to_numpy(), np.float64)}, c, w, f"{n_cells} cells"


def _meso_grad(quick: bool):
    import jax
    import numpy as np

    from spikejax import meso
    from spikejax.meso import model as M

    data = meso.load_bundled()
    gt = meso.ground_truth()
    x = meso.to_vector(gt)
    cfg = meso.MesoConfig()

    def f(v, Z):
        return M._loss_parts(meso.from_vector(gt, v), Z, data.y, data.A0, data.age0, None, cfg).total

    g = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))
    (val, (gx, gz)), c, w = _timed(lambda: g(x, data.Z))
    return {"loss": np.asarray(val), "grad_theta": np.asarray(gx), "grad_Z": np.asarray(gz)}, c, w, "bundled data"


def _meso_hard_em(quick: bool):
    import jax
    import numpy as np

    from spikejax import meso

    data = meso.load_bundled()
    em = meso.EMConfig(n_restarts=1, n_iter=1, m_maxiter=5, e_maxiter=5) if quick else \
        meso.EMConfig(n_restarts=1, n_iter=2, m_maxiter=10, e_maxiter=10)
    cfg = meso.MesoFitConfig(method="hard", em=em)
    res, c, w = _timed(lambda: meso.fit_em(data, key=jax.random.PRNGKey(0), config=cfg))
    runs = res.runs
    return {"loss": np.asarray(runs["loss"], np.float64)}, c, w, f"1 restart, {em.n_iter} iteration(s)"


def _lfads(quick: bool):
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, str(HERE))
    from lfads_epoch import make_epoch_fn

    from spikejax.lfads import LFADS, HParams, LFADSConfig, TrainConfig, generate_lorenz_dataset, make_optimizer

    n_cond, per = (8, 8) if quick else (20, 16)
    d = generate_lorenz_dataset(n_conditions=n_cond, trials_per_condition=per, n_neurons=29, n_steps=1000, dt=20,
                                key=jax.random.key(0))
    data = {"data": jnp.asarray(d["train"]["data"])}
    n = data["data"].shape[0]
    cfg = LFADSConfig(data_dim=29, encod_seq_len=50, ic_enc_dim=16, ci_enc_dim=8, con_dim=8, co_dim=1, ic_dim=8,
                      gen_dim=32, fac_dim=8)
    tc = TrainConfig(batch_size=32)
    opt = make_optimizer(tc)
    hp = HParams.create()
    params, static = eqx.partition(LFADS(cfg, key=jax.random.PRNGKey(0)), eqx.is_inexact_array)
    epoch_fn = make_epoch_fn(static, opt, n, 32)
    one = jax.jit(lambda p, s: epoch_fn(p, s, hp, data, jnp.asarray(0.0), jax.random.PRNGKey(1))[:3])
    s0 = opt.init(params)
    (p1, _, loss), c, w = _timed(lambda: one(params, s0))
    flat = np.concatenate([np.ravel(np.asarray(a)) for a in jax.tree_util.tree_leaves(p1)])
    return {"loss": np.asarray(loss), "params": flat}, c, w, f"{n} trials, batch 32"


RUNNERS = {"glm_dense": lambda q: _glm("dense", q), "glm_sparse": lambda q: _glm("sparse", q),
           "glm_event": lambda q: _glm("event", q), "l5": _l5, "gfr": _gfr, "meso_grad": _meso_grad,
           "meso_hard_em": _meso_hard_em, "lfads": _lfads}


def side(names: list[str], quick: bool, out_dir: Path, tf32: bool) -> int:
    import contextlib

    import jax
    import numpy as np

    from spikejax.core import matmul_precision

    info = {"backend": jax.default_backend(), "device": str(jax.devices()[0]), "rows": {}}
    scope = matmul_precision("tensorfloat32") if tf32 else contextlib.nullcontext()
    for name in names:
        try:
            with scope:
                arrays, c, w, what = RUNNERS[name](quick)
            np.savez(out_dir / f"{name}.npz", **arrays)
            info["rows"][name] = {"compile_s": c, "warm_s": w, "what": what}
        except Exception as e:  # a failing workload is reported, the others still run
            info["rows"][name] = {"error": f"{type(e).__name__}: {e}"[:300]}
        print(f"[{info['backend']}] {name}: {info['rows'][name]}", file=sys.stderr, flush=True)
    (out_dir / "info.json").write_text(json.dumps(info))
    return 0


# ------------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------------


def _agree(name: str, a: dict, b: dict) -> tuple[bool, str]:
    import numpy as np

    if name.startswith("glm"):
        sa, sb = a["spikes"].astype(np.float64), b["spikes"].astype(np.float64)
        ra, rb = sa.mean(), sb.mean()
        head = min(10, sa.shape[0])
        same = float(np.mean(sa[:head] == sb[:head]))
        ok = abs(ra - rb) <= 0.05 * max(abs(ra), 1e-12) and same >= 0.99
        return ok, f"rate {ra:.4g} vs {rb:.4g}, first {head} steps {100 * same:.2f}% identical"
    rtol, atol = TOL.get(name, TOL["default"])
    worst = 0.0
    ok = True
    for k in a:
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        if x.shape != y.shape:
            return False, f"{k}: shapes {x.shape} vs {y.shape}"
        both_nan = np.isnan(x) & np.isnan(y)
        err = np.where(both_nan, 0.0, np.abs(x - y) / (atol + rtol * np.abs(y)))
        worst = max(worst, float(np.max(err, initial=0.0)))
        ok &= bool(np.all(err <= 1.0))
    return ok, f"max |diff| / (atol + rtol |cpu|) = {worst:.3g} (rtol {rtol:g}, atol {atol:g})"


def _run_side(platform: str | None, names, quick, tf32, timeout):
    tmp = Path(tempfile.mkdtemp(prefix=f"spikejax_gpu_{platform or 'accel'}_"))
    env = dict(os.environ)
    if platform:
        env["JAX_PLATFORMS"] = platform
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", str(tmp), "--only", ",".join(names)]
    cmd += ["--quick"] if quick else []
    cmd += ["--tf32"] if tf32 else []
    r = subprocess.run(cmd, env=env, timeout=timeout, text=True, capture_output=True)
    sys.stderr.write(r.stderr[-6000:])
    if r.returncode != 0 or not (tmp / "info.json").is_file():
        raise RuntimeError(f"the {platform or 'accelerator'} side failed (exit {r.returncode})")
    return tmp, json.loads((tmp / "info.json").read_text())


def _has_accelerator() -> bool:
    import jax

    try:
        return any(d.platform in ("gpu", "cuda", "rocm", "tpu") for d in jax.devices())
    except RuntimeError:
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (the CPU side in a couple of minutes)")
    ap.add_argument("--only", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}")
    ap.add_argument("--tf32", action="store_true", help="accelerator side under matmul_precision('tensorfloat32')")
    ap.add_argument("--json", default=None, help="write the table as JSON here")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per side")
    ap.add_argument("--side", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    bad = [n for n in names if n not in WORKLOADS]
    if bad:
        ap.error(f"unknown workloads {bad}; choose from {', '.join(WORKLOADS)}")
    if args.side:
        return side(names, args.quick, Path(args.side), args.tf32)

    import numpy as np

    accel = _has_accelerator()
    cpu_dir, cpu = _run_side("cpu", names, args.quick, False, args.timeout)
    acc_dir, acc = _run_side(None, names, args.quick, args.tf32, args.timeout) if accel else (None, None)
    if not accel:
        print("no GPU: GPU side skipped (only the CPU side ran; install a CUDA jaxlib on a GPU machine for the comparison)")
    rows = []
    for n in names:
        rc = cpu["rows"].get(n, {})
        row = {"workload": n, "what": rc.get("what"), "cpu_compile_s": rc.get("compile_s"), "cpu_warm_s": rc.get("warm_s")}
        if "error" in rc:
            row["note"] = "CPU side: " + rc["error"]
        if accel:
            ra = acc["rows"].get(n, {})
            row.update({"accel_compile_s": ra.get("compile_s"), "accel_warm_s": ra.get("warm_s")})
            if "error" in ra:
                row["note"] = "accelerator side: " + ra["error"]
            elif "error" not in rc:
                a = dict(np.load(acc_dir / f"{n}.npz"))
                b = dict(np.load(cpu_dir / f"{n}.npz"))
                row["agree"], row["note"] = _agree(n, a, b)
        rows.append(row)
    hdr = ["workload", "what", "cpu_compile_s", "cpu_warm_s"] + (["accel_compile_s", "accel_warm_s", "agree"] if accel else []) + ["note"]
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else ("-" if v is None else str(v))  # noqa: E731
    print(f"CPU: {cpu['device']}" + (f"; accelerator: {acc['device']} ({acc['backend']})" if accel else ""))
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in rows:
        print("| " + " | ".join(fmt(r.get(h)) for h in hdr) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu, "accelerator": acc, "rows": rows}, indent=1))
    failed = [r["workload"] for r in rows if r.get("agree") is False or "note" in r and "side:" in str(r.get("note"))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
