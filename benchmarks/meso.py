"""Benchmark and acceptance numbers for ``spikejax.meso`` in one run -> benchmarks/RESULTS_meso.md.

1. Whole 5-restart EM fit on the 11-s surrogate (wall time incl. compilation), with the
   parameter errors, Pearson r of Z, and a free run of the fit (dominance durations vs the
   200-s surrogate).
2. Loss evaluations per second: JAX (jit, single and 5 vmapped restarts, value and gradient)
   against a NumPy implementation of the same loss written in the original's loop style
   (``tests/meso/numpy_ref.py``).
3. Microscopic generator speed against Brian2 simulating the same network (Brian2 runs in its own
   interpreter given by ``--brian2-python``, because brian2 2.9 needs numpy < 2).
4. Mesoscopic vs microscopic over >= 100 s: mean prediction given the micro history (exact and
   Euler) and free-run winner / loser / inhibitory rates.

Usage::

    python benchmarks/meso.py [--quick] [--brian2-python /path/to/python] [--out benchmarks/RESULTS_meso.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spikejax import meso  # noqa: E402
from spikejax.meso import model as M  # noqa: E402
from tests.meso.numpy_ref import neulvm_loss  # noqa: E402

BRIAN2_SCRIPT = r'''
import sys, time, json, numpy as np
from brian2 import *
prefs.codegen.target = sys.argv[1]
T = float(sys.argv[2])
defaultclock.dt = 0.2*ms
N = [400, 400, 200]; J = [9.984, 9.984, 19.968]; conm = [[1,0,1],[0,1,1],[-1,-1,-1]]
asyn = [1000/3., 1000/3., 500/3.]
traces = [NeuronGroup(1, 'ds/dt = -s*%f/second : 1' % asyn[b], method='exact', name='trace%d' % b) for b in range(3)]
pops = []
for a in range(3):
    I = ' + '.join('(%f)*s%d' % (conm[b][a] * J[b], b) for b in range(3))
    eqs = """
    du/dt = 50*(14.4 - u)/second + I/second : 1 (unless refractory)
    I = %s : 1
    s0 : 1 (linked)
    s1 : 1 (linked)
    s2 : 1 (linked)
    """ % I
    g = NeuronGroup(N[a], eqs, threshold='rand() < 1 - exp(-exp(u - 3.6974149)*dt/second)', reset='u = 0',
                    refractory=4*ms, method='euler', name='pop%d' % a)
    pops.append(g)
for a in range(3):
    for b in range(3):
        setattr(pops[a], 's%d' % b, linked_var(traces[b], 's', index=np.zeros(N[a], dtype=int)))
    pops[a].u = 'rand()*8'
syns = []
for b in range(3):
    sy = Synapses(pops[b], traces[b], on_pre='s_post += %f' % (asyn[b] / N[b]))
    sy.connect()
    syns.append(sy)
mons = [SpikeMonitor(g) for g in pops]
net = Network(*pops, *traces, *syns, *mons)
net.run(0.2*second)
t0 = time.perf_counter(); net.run(T*second); dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "rates": [m.num_spikes / n / (T + 0.2) for m, n in zip(mons, N)]}))
'''


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, jax {jax.__version__}"


def bench_fit(quick: bool) -> dict:
    data = meso.load_bundled()
    em = meso.EMConfig(max_em=2, m_maxiter=10, e_maxiter=10) if quick else meso.EMConfig(max_em=8, m_maxiter=100, e_maxiter=100)
    sem = meso.SEMConfig(n_iter=2, m_maxiter=5, n_particles=32) if quick else meso.SEMConfig()
    t0 = time.perf_counter()
    refined = meso.fit_em(data, key=jax.random.PRNGKey(0), em=em, sem=sem)
    wall_total = time.perf_counter() - t0
    res = refined.hard_em
    wall = res.seconds
    Zs, _ = refined.simulate(int(200.0 / meso.DT), key=jax.random.PRNGKey(1))
    dur_s = meso.dominance_durations(np.asarray(Zs) / meso.DT)
    sem_out = {"sem": str(sem), "wall_total_s": wall_total, "table": refined.to_pandas(),
               "restarts": refined.restarts_table().assign(log_lik=refined.runs["log_lik"]),
               "median_rel_error": refined.median_rel_error(), "pearson_r": refined.z_correlation().tolist(),
               "free_rates": meso.winner_loser_rates(np.asarray(Zs) / meso.DT), "n_periods": len(dur_s),
               "free_dominance_median_s": float(np.median(dur_s)) if len(dur_s) else float("nan")}
    Z, _ = res.simulate(int(200.0 / meso.DT), key=jax.random.PRNGKey(1))
    A = np.asarray(Z) / meso.DT
    dur = meso.dominance_durations(A)
    ref = meso.dominance_durations(meso.load_activity(meso.bundled_path("T200s")))
    hist = [res.objective_history(r) for r in range(res.runs["loss"].shape[0])]
    mono = all(np.all(np.diff(h) <= 1e-6 * np.abs(h[:-1])) for h in hist)
    # where hard EM goes when it *starts* at the ground truth (is the truth a fixed point of the objective?)
    gt = np.asarray(meso.to_vector(meso.ground_truth(theta=meso.THETA_REF)))
    res_gt = meso.fit_em(data, key=jax.random.PRNGKey(0), em=dataclasses.replace(em, n_restarts=1), x0=gt[None])
    at_truth = meso.objective(meso.ground_truth(theta=meso.THETA_REF), data)
    # ceiling of r(inferred Z, true Z) at 4 ms: the one-step prediction Z̄ given the *true* past at the truth
    zbar_oracle = meso.predict(meso.ground_truth(), data.Z, data.A0, None, meso.MesoConfig())
    r_oracle = [float(np.corrcoef(np.asarray(zbar_oracle)[:, j], np.asarray(data.Z)[:, j])[0, 1]) for j in range(data.M)]
    return {
        "gt_start": {"median_rel_error": res_gt.median_rel_error(), "ratio_to_truth": (res_gt.runs["x"][0] / gt).tolist(),
                     "objective_history": res_gt.objective_history(0).tolist(),
                     "objective_truth_trueZ": float(at_truth.total)},
        "sem_refined": sem_out, "r_oracle": r_oracle,
        "em": str(em), "wall_s": wall, "table": res.to_pandas(), "restarts": res.restarts_table(),
        "median_rel_error": res.median_rel_error(), "pearson_r": res.z_correlation().tolist(),
        "free_dominance_median_s": float(np.median(dur)) if len(dur) else float("nan"), "n_periods": len(dur),
        "surrogate_dominance_median_s": float(np.median(ref)), "monotone": mono,
        "free_rates": meso.winner_loser_rates(A),
    }


def bench_loss(quick: bool) -> dict:
    data = meso.load_bundled()
    gt = meso.ground_truth()
    x = meso.to_vector(gt)
    cfg = meso.MesoConfig()

    def f(v, Z):
        return M.loss(meso.from_vector(gt, v), Z, data.y, data.A0, data.age0, None, cfg).total

    out = {}
    fj = jax.jit(f)
    gj = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))
    xs = jnp.stack([x] * 5)
    gv = jax.jit(jax.vmap(jax.value_and_grad(f, argnums=(0, 1)), in_axes=(0, None)))
    for name, fn, args in (("jax_loss", fj, (x, data.Z)), ("jax_value_and_grad", gj, (x, data.Z)),
                           ("jax_value_and_grad_vmap5", gv, (xs, data.Z))):
        jax.block_until_ready(fn(*args))
        n = 3 if quick else 20
        t0 = time.perf_counter()
        for _ in range(n):
            jax.block_until_ready(fn(*args))
        out[name] = n / (time.perf_counter() - t0) * (5 if "vmap5" in name else 1)
    xn = np.asarray(x, float)
    y = np.asarray(data.y)
    yh = np.asarray(data.y_hist)
    Z = np.asarray(data.Z, float)
    t0 = time.perf_counter()
    n = 1 if quick else 3
    for _ in range(n):
        ref = neulvm_loss(xn, np.asarray(gt.asyn), np.asarray(gt.conmat), gt.N, Z, y, yh, n_age=64, free_bin=True)
    out["numpy_loss"] = n / (time.perf_counter() - t0)
    out["numpy_vs_jax_rel_diff"] = abs(ref[0] - float(fj(x, data.Z))) / abs(ref[0])
    # the original's finite-difference M-step needs 13 loss evaluations per gradient
    out["numpy_fd_gradients_per_s"] = out["numpy_loss"] / 13.0
    return out


def bench_micro(quick: bool, brian2_python: str | None) -> dict:
    gt = meso.ground_truth()
    T = 2.0 if quick else 20.0
    n = int(round(T / meso.MICRO_DT))
    r = meso.simulate_micro(gt, 1000, key=jax.random.PRNGKey(0), record_every=20)  # compile
    jax.block_until_ready(r.counts)
    t0 = time.perf_counter()
    r = meso.simulate_micro(gt, n, key=jax.random.PRNGKey(1), record_every=20)
    jax.block_until_ready(r.counts)
    t_jax = time.perf_counter() - t0
    # the jit cache is keyed on n_steps: the timed run above includes one compilation; rerun
    t0 = time.perf_counter()
    r = meso.simulate_micro(gt, n, key=jax.random.PRNGKey(2), record_every=20)
    jax.block_until_ready(r.counts)
    t_jax2 = time.perf_counter() - t0
    out = {"sim_seconds": T, "jax_s_first_call": t_jax, "jax_s": t_jax2, "jax_rates": r.A.mean(0).tolist()}
    if brian2_python:
        for target in ("cython", "numpy"):
            try:
                p = subprocess.run([brian2_python, "-c", BRIAN2_SCRIPT, target, str(T)], capture_output=True,
                                   text=True, timeout=3000)
                res = json.loads(p.stdout.strip().splitlines()[-1])
                out[f"brian2_{target}_s"] = res["seconds"]
                out[f"brian2_{target}_rates"] = res["rates"]
            except Exception as exc:  # report, do not hide
                out[f"brian2_{target}_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return out


def bench_long(quick: bool) -> dict:
    gt = meso.ground_truth()
    T = 20.0 if quick else 110.0
    n = int(round(T / meso.MICRO_DT))
    r = meso.simulate_micro(gt, n, key=jax.random.PRNGKey(11), record_every=20, n_record=3)
    d = meso.MesoData.from_micro(r, n_obs=3)
    out = {"micro_seconds": T, "fitted_window_s": d.T * meso.DT}
    for integ in ("exact", "euler"):
        zbar = meso.predict(gt, d.Z, d.A0, None, meso.MesoConfig(integrator=integ))
        out[f"ratio_{integ}"] = np.asarray(zbar.mean(0) / d.Z.mean(0)).tolist()
    Z, _ = meso.simulate(gt, d.T + 250, key=jax.random.PRNGKey(12), A0=jnp.array([5.0, 20.0, 25.0]))
    out["free_meso_rates"] = meso.winner_loser_rates(np.asarray(Z) / meso.DT)
    out["micro_rates"] = meso.winner_loser_rates(r.A)
    out["free_meso_dominance_median_s"] = float(np.median(meso.dominance_durations(np.asarray(Z) / meso.DT)))
    out["micro_dominance_median_s"] = float(np.median(meso.dominance_durations(r.A)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--brian2-python", default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_meso.md"))
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: fit,loss,micro,long")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    res = {}
    t_all = time.perf_counter()
    for name, fn in (("fit", lambda: bench_fit(args.quick)), ("loss", lambda: bench_loss(args.quick)),
                     ("long", lambda: bench_long(args.quick)), ("micro", lambda: bench_micro(args.quick, args.brian2_python))):
        if name in skip:
            continue
        t0 = time.perf_counter()
        res[name] = fn()
        print(f"[meso bench] {name} done in {time.perf_counter() - t0:.1f} s", flush=True)
    lines = [
        "# spikejax.meso benchmark", "",
        f"Machine: {machine()}; load average at the end: {os.getloadavg()[0]:.1f} (the machine was shared with other jobs).",
        f"Command: `python benchmarks/meso.py {' '.join(sys.argv[1:])}`; total {time.perf_counter() - t_all:.0f} s.", "",
    ]
    if "loss" in res:
        L = res["loss"]
        lines += ["## Loss evaluations per second (11-s surrogate: 2500 bins, 3 populations, 9 observed neurons)", "",
                  "| implementation | evaluations/s |", "|---|---|",
                  f"| NumPy, loop over bins (original style), loss only | {L['numpy_loss']:.2f} |",
                  f"| NumPy finite-difference gradients (13 losses each, as the original M-step) | {L['numpy_fd_gradients_per_s']:.3f} |",
                  f"| JAX jit, loss only | {L['jax_loss']:.1f} |",
                  f"| JAX jit, loss + exact gradient (Θ and Z) | {L['jax_value_and_grad']:.1f} |",
                  f"| JAX jit, loss + gradient, 5 restarts vmapped (per restart) | {L['jax_value_and_grad_vmap5']:.1f} |", "",
                  f"Ratio JAX loss / NumPy loss: {L['jax_loss'] / L['numpy_loss']:.0f}x; JAX gradient vs NumPy FD gradient: "
                  f"{L['jax_value_and_grad'] / L['numpy_fd_gradients_per_s']:.0f}x. Relative difference of the two losses: "
                  f"{L['numpy_vs_jax_rel_diff']:.1e} (float32 vs float64).", ""]
    if "micro" in res:
        m = res["micro"]
        lines += ["## Microscopic generator (1000 LIF neurons, δ = 0.2 ms)", "",
                  f"Simulated {m['sim_seconds']} s: spikejax {m['jax_s']:.2f} s (first call incl. compilation {m['jax_s_first_call']:.2f} s); "
                  f"rates {np.round(m['jax_rates'], 2).tolist()} Hz."]
        for target in ("cython", "numpy"):
            if f"brian2_{target}_s" in m:
                lines.append(f"Brian2 ({target} target) {m[f'brian2_{target}_s']:.2f} s, rates {np.round(m[f'brian2_{target}_rates'], 2).tolist()} Hz "
                             f"-> spikejax is {m[f'brian2_{target}_s'] / m['jax_s']:.1f}x faster.")
            elif f"brian2_{target}_error" in m:
                lines.append(f"Brian2 ({target}) failed: {m[f'brian2_{target}_error']}")
        if not any(k.startswith("brian2") for k in m):
            lines.append("Brian2 not run (pass --brian2-python).")
        lines.append("")
    if "long" in res:
        g = res["long"]
        lines += ["## Mesoscopic vs microscopic, ground truth, no fitting", "",
                  f"Microscopic run of {g['micro_seconds']} s ({g['fitted_window_s']:.0f} s after the 1-s history).", "",
                  f"* mean predicted / observed activity given the micro history, exact: {np.round(g['ratio_exact'], 3).tolist()}; "
                  f"Euler: {np.round(g['ratio_euler'], 3).tolist()}",
                  f"* free runs, (winner, loser, inhibitory) Hz: meso {np.round(g['free_meso_rates'], 2).tolist()}, micro {np.round(g['micro_rates'], 2).tolist()}",
                  f"* dominance-duration median: meso {g['free_meso_dominance_median_s']:.2f} s, micro {g['micro_dominance_median_s']:.2f} s", ""]
    if "fit" in res:
        f = res["fit"]
        lines += ["## Whole 5-restart EM fit (11-s surrogate, 9 observed neurons)", "",
                  f"Settings: {f['em']}. Wall time (one compiled program, incl. compilation): **{f['wall_s']:.1f} s**.", "",
                  f"Median relative error of the 12 parameters (best restart): {f['median_rel_error']:.3f}; "
                  f"Pearson r(inferred Z, true Z): {np.round(f['pearson_r'], 3).tolist()}; objective non-increasing in every restart: {f['monotone']}.", "",
                  "```", f["table"].to_string(), "", f["restarts"].to_string(), "```", "",
                  f"Free run of the fit (200 s): (winner, loser, I) rates {np.round(f['free_rates'], 2).tolist()} Hz, "
                  f"{f['n_periods']} dominance periods, median {f['free_dominance_median_s']:.2f} s vs {f['surrogate_dominance_median_s']:.2f} s in the 200-s surrogate.", "",
                  "EM started *at the ground truth* (same settings, 1 restart): objective "
                  f"{np.round(f['gt_start']['objective_history'], 4).tolist()} (the truth with the true Z scores "
                  f"{f['gt_start']['objective_truth_trueZ']:.4f}); it ends at median relative error "
                  f"{f['gt_start']['median_rel_error']:.3f}, estimate/truth {np.round(f['gt_start']['ratio_to_truth'], 2).tolist()}.", ""]
        lines += ["Ceiling of r(Z) at 4-ms bins: the model's one-step prediction Z̄ at the ground truth given the *true* past "
                  f"activity correlates with the true Z at r = {np.round(f['r_oracle'], 3).tolist()} (the 4-ms fluctuations "
                  "are finite-size noise that 3 observed neurons per population cannot reveal).", ""]
        r = f["sem_refined"]
        lines += ["### Stochastic-EM refinement of the same restarts (`fit_em(..., sem=SEMConfig())`)", "",
                  f"Settings: {r['sem']}. Wall time of hard EM + refinement (two compiled programs, incl. compilation): "
                  f"**{r['wall_total_s']:.1f} s**. Restarts ranked by the particle estimate of log p(y | Θ).", "",
                  f"Median relative error (best restart): {r['median_rel_error']:.3f}; Pearson r(posterior-mean Z, true Z): "
                  f"{np.round(r['pearson_r'], 3).tolist()}.", "",
                  "```", r["table"].to_string(), "", r["restarts"].to_string(), "```", "",
                  f"Free run of the refined fit (200 s): rates {np.round(r['free_rates'], 2).tolist()} Hz, {r['n_periods']} dominance "
                  f"periods, median {r['free_dominance_median_s']:.2f} s.", ""]
    text = "\n".join(lines)
    Path(args.out).write_text(text)
    print(textwrap.indent(text, "  "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
