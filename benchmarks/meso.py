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
from spikejax.core import save_figure  # noqa: E402
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


DT_S = meso.DT_MS / 1000.0  # the 4-ms bin in s (this script reports seconds)
MICRO_DT_S = meso.MICRO_DT_MS / 1000.0


def _dur_s(A, **kw):
    """Dominance durations in s (``meso.dominance_durations`` returns ms)."""
    return meso.dominance_durations(A, **kw) / 1000.0


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, jax {jax.__version__}"


def bench_fit(quick: bool) -> dict:
    data = meso.load_bundled()
    em = meso.EMConfig(n_iter=2, m_maxiter=10, e_maxiter=10) if quick else meso.EMConfig(n_iter=8, m_maxiter=100, e_maxiter=100)
    sem = meso.SEMConfig(n_iter=2, m_maxiter=5, n_particles=32) if quick else meso.SEMConfig()
    t0 = time.perf_counter()
    refined = meso.fit_em(data, key=jax.random.PRNGKey(0), config=meso.MesoFitConfig(method="sem", em=em, sem=sem))
    wall_total = time.perf_counter() - t0
    res = refined.hard_em
    wall = res.seconds
    Zs = refined.simulate(int(200.0 / DT_S), key=jax.random.PRNGKey(1)).Z
    dur_s = _dur_s(np.asarray(Zs) / DT_S)
    sem_out = {"sem": str(sem), "wall_total_s": wall_total, "table": refined.to_pandas(),
               "restarts": refined.restarts_table().assign(log_lik=refined.runs["log_lik"]),
               "median_rel_error": refined.median_rel_error(), "pearson_r": refined.z_correlation(data.Z).tolist(),
               "free_rates": meso.winner_loser_rates(np.asarray(Zs) / DT_S), "n_periods": len(dur_s),
               "free_dominance_median_s": float(np.median(dur_s)) if len(dur_s) else float("nan")}
    Z = res.simulate(int(200.0 / DT_S), key=jax.random.PRNGKey(1)).Z
    A = np.asarray(Z) / DT_S
    dur = _dur_s(A)
    ref = _dur_s(meso.load_activity(meso.bundled_path("T200s")))
    hist = [res.objective_history(r) for r in range(res.runs["loss"].shape[0])]
    mono = all(np.all(np.diff(h) <= 1e-6 * np.abs(h[:-1])) for h in hist)
    # where hard EM goes when it *starts* at the ground truth (is the truth a fixed point of the objective?)
    gt = np.asarray(meso.to_vector(meso.ground_truth(theta=meso.THETA_REF)))
    res_gt = meso.fit_em(data, key=jax.random.PRNGKey(0),
                         config=meso.MesoFitConfig(method="hard", em=dataclasses.replace(em, n_restarts=1)), x0=gt[None])
    at_truth = meso.loss(meso.ground_truth(theta=meso.THETA_REF), data)
    # ceiling of r(inferred Z, true Z) at 4 ms: the one-step prediction Z̄ given the *true* past at the truth
    zbar_oracle = meso.predict(meso.ground_truth(), data.Z, data.A0, None, meso.MesoConfig())
    r_oracle = _r_per_pop(zbar_oracle, data.Z)
    return {
        "gt_start": {"median_rel_error": res_gt.median_rel_error(), "ratio_to_truth": (res_gt.runs["x"][0] / gt).tolist(),
                     "objective_history": res_gt.objective_history(0).tolist(),
                     "objective_truth_trueZ": float(at_truth)},
        "sem_refined": sem_out, "r_oracle": r_oracle,
        "em": str(em), "wall_s": wall, "table": res.to_pandas(), "restarts": res.restarts_table(),
        "median_rel_error": res.median_rel_error(), "pearson_r": res.z_correlation(data.Z).tolist(),
        "free_dominance_median_s": float(np.median(dur)) if len(dur) else float("nan"), "n_periods": len(dur),
        "surrogate_dominance_median_s": float(np.median(ref)), "monotone": mono,
        "free_rates": meso.winner_loser_rates(A),
    }


def _r_per_pop(a, b) -> list[float]:
    """Pearson r between the columns (populations) of two (T, M) arrays."""
    a, b = np.asarray(a), np.asarray(b)
    return [float(np.corrcoef(a[:, j], b[:, j])[0, 1]) for j in range(a.shape[1])]


def _cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _free_run_stats(Z) -> dict:
    A = np.asarray(Z) / DT_S
    dur = _dur_s(A)
    return {"rates_winner_loser_inh_Hz": list(meso.winner_loser_rates(A)), "mean_rates_Hz": A.mean(0).tolist(),
            "n_periods": int(len(dur)), "dominance_median_s": float(np.median(dur)) if len(dur) else float("nan")}


def bench_marginal(quick: bool, out_dir: Path) -> dict:
    """The default fit_em (hard-EM initialiser + marginal-likelihood stage) and its acceptance numbers."""
    data = meso.load_bundled()
    kw = {}
    if quick:
        data = data.window(0, 500)
        kw = {"em": meso.EMConfig(n_restarts=2, n_iter=2, m_maxiter=10, e_maxiter=10),
              "marginal": meso.MarginalConfig(n_iter=4, n_burn=2, info_every=2, n_particles=16, n_final=2,
                                              final_particles=32)}
    load0, cpu0, t0 = os.getloadavg(), _cpu_s(), time.perf_counter()
    res = meso.fit_em(data, key=jax.random.PRNGKey(0), config=meso.MesoFitConfig(**kw))
    wall, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    post = meso.posterior_Z(res.model, data, key=jax.random.fold_in(jax.random.PRNGKey(0), 7))
    r_post = _r_per_pop(post.mean, data.Z)
    n_free = int((20.0 if quick else 200.0) / DT_S)
    fit_free = _free_run_stats(res.simulate(n_free, key=jax.random.PRNGKey(1)).Z)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_figure(meso.plot_convergence(res).figure, out_dir / "meso_convergence.png", dpi=110)
    save_figure(meso.plot_posterior_Z(post, data.Z, smooth=5).figure, out_dir / "meso_posterior_Z.png", dpi=110)
    tv = np.asarray(res.truth_x)
    return {"wall_s": wall, "cpu_s": cpu, "load_before": load0, "load_after": os.getloadavg(),
            "stage_seconds": res.stage_seconds, "em": str(res.config.em_settings), "marginal": str(res.config.marginal),
            "table": res.to_pandas(), "restarts": res.restarts_table(), "median_rel_error": res.median_rel_error(),
            "hard_em_median_rel_error": res.hard_em.median_rel_error(),
            "restart_errors": np.median(np.abs(res.runs["x"] - tv) / tv, axis=1).tolist(),
            "convergence": res.convergence(), "r_posterior_mean": r_post, "r_mean_of_runs": res.z_correlation(data.Z).tolist(),
            "free": fit_free, "x": res.runs["x"][res.best].tolist()}


def bench_synthetic(quick: bool) -> dict:
    """The default fit_em on a trial drawn from the mesoscopic model itself (``simulate_observed`` at the
    ground truth, the bundled trial's sizes): the estimator checked without the meso/micro mismatch."""
    gt = meso.ground_truth()
    n_bins = 500 if quick else 2500
    data = meso.simulate_observed(gt, n_bins, key=jax.random.PRNGKey(100), n_obs=3)
    kw = {}
    if quick:
        kw = {"em": meso.EMConfig(n_restarts=2, n_iter=2, m_maxiter=10, e_maxiter=10),
              "marginal": meso.MarginalConfig(n_iter=4, n_burn=2, info_every=2, n_particles=16, n_final=2,
                                              final_particles=32)}
    post_gt = meso.posterior_Z(gt, data, key=jax.random.PRNGKey(11), n_particles=256, n_runs=2 if quick else 8)
    r_gt = _r_per_pop(post_gt.mean, data.Z)
    load0, t0 = os.getloadavg(), time.perf_counter()
    res = meso.fit_em(data, key=jax.random.PRNGKey(0), truth=gt, config=meso.MesoFitConfig(**kw))
    wall = time.perf_counter() - t0
    post = meso.posterior_Z(res.model, data, key=jax.random.fold_in(jax.random.PRNGKey(0), 7))
    r_fit = _r_per_pop(post.mean, data.Z)
    tv = np.asarray(meso.to_vector(gt))
    n_free = int((20.0 if quick else 200.0) / DT_S)
    keys = (1, 2, 3)
    fit_free = [_free_run_stats(res.simulate(n_free, key=jax.random.PRNGKey(k)).Z) for k in keys]
    gt_free = [_free_run_stats(meso.simulate(gt, n_steps=n_free, key=jax.random.PRNGKey(k)).Z) for k in keys]
    return {"wall_s": wall, "load_before": load0, "load_after": os.getloadavg(), "stage_seconds": res.stage_seconds,
            "median_rel_error": res.median_rel_error(), "hard_em_median_rel_error": res.hard_em.median_rel_error(),
            "restart_errors": np.median(np.abs(res.runs["x"] - tv) / tv, axis=1).tolist(),
            "log_lik_fit": float(post.log_lik), "log_lik_truth": float(post_gt.log_lik),
            "r_posterior_mean_fit": r_fit, "r_posterior_mean_at_truth": r_gt, "table": res.to_pandas(),
            "restarts": res.restarts_table(), "fit_free": fit_free, "gt_free": gt_free, "free_keys": list(keys)}


def bench_ceilings(quick: bool) -> dict:
    """What the data allow: r(posterior-mean Z, true Z) at the truth, the M-step given the true Z,
    and the ground-truth model's own 200-s free run."""
    data = meso.load_bundled()
    if quick:
        data = data.window(0, 500)
    gt = meso.ground_truth()
    t0 = time.perf_counter()
    post = meso.posterior_Z(gt, data, key=jax.random.PRNGKey(11), n_particles=256, n_runs=2 if quick else 8)
    r_gt = _r_per_pop(post.mean, data.Z)
    t_post = time.perf_counter() - t0
    t0 = time.perf_counter()
    ms = meso.fit_params_given_Z(data, key=jax.random.PRNGKey(0), n_starts=5, n_iter=20 if quick else 300)
    tv = np.asarray(meso.to_vector(gt))
    errs = np.median(np.abs(ms.runs["x"] - tv) / tv, axis=1)
    t_ms = time.perf_counter() - t0
    n_free = int((20.0 if quick else 200.0) / DT_S)
    gt_free = _free_run_stats(meso.simulate(gt, n_steps=n_free, key=jax.random.PRNGKey(1)).Z)
    sur = meso.load_activity(meso.bundled_path("T200s"))
    return {"r_posterior_mean_at_truth": r_gt, "log_lik_truth": float(post.log_lik),
            "log_lik_truth_runs": np.asarray(post.log_lik_runs).tolist(), "posterior_s": t_post,
            "mstep_trueZ_median_rel_error": float(errs[ms.best]),
            "mstep_trueZ_errors": errs.tolist(), "mstep_trueZ_losses": np.asarray(ms.runs["loss"]).tolist(),
            "mstep_s": t_ms, "gt_free": gt_free,
            "surrogate_free": {"rates_winner_loser_inh_Hz": list(meso.winner_loser_rates(sur)),
                               "dominance_median_s": float(np.median(_dur_s(sur)))}}


def bench_loss(quick: bool) -> dict:
    data = meso.load_bundled()
    gt = meso.ground_truth()
    x = meso.to_vector(gt)
    cfg = meso.MesoConfig()

    def f(v, Z):
        return M._loss_parts(meso.from_vector(gt, v), Z, data.y, data.A0, data.age0, None, cfg).total

    out = {}
    fj = jax.jit(f)
    gj = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))
    xs = jnp.stack([x] * 5)
    gv = jax.jit(jax.vmap(jax.value_and_grad(f, argnums=(0, 1)), in_axes=(0, None)))
    for name, fn, args in (("jax_loss", fj, (x, data.Z)), ("jax_value_and_grad", gj, (x, data.Z)),
                           ("jax_value_and_grad_vmap5", gv, (xs, data.Z))):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        out[name + "_first_call_s"] = time.perf_counter() - t0  # compile included
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
    n = int(round(T / MICRO_DT_S))
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
    n = int(round(T / MICRO_DT_S))
    r = meso.simulate_micro(gt, n, key=jax.random.PRNGKey(11), record_every=20, n_record=3)
    d = meso.MesoData.from_micro(r, n_obs=3)
    out = {"micro_seconds": T, "fitted_window_s": d.T * DT_S}
    for integ in ("exact", "euler"):
        zbar = meso.predict(gt, d.Z, d.A0, None, meso.MesoConfig(integrator=integ))
        out[f"ratio_{integ}"] = np.asarray(zbar.mean(0) / d.Z.mean(0)).tolist()
    Z = meso.simulate(gt, n_steps=d.T + 250, key=jax.random.PRNGKey(12), A0=jnp.array([5.0, 20.0, 25.0])).Z
    out["free_meso_rates"] = meso.winner_loser_rates(np.asarray(Z) / DT_S)
    out["micro_rates"] = meso.winner_loser_rates(r.A)
    out["free_meso_dominance_median_s"] = float(np.median(_dur_s(np.asarray(Z) / DT_S)))
    out["micro_dominance_median_s"] = float(np.median(_dur_s(r.A)))
    return out


def _dump_json(path, name, value):
    def conv(v):
        if hasattr(v, "to_dict"):
            return json.loads(v.to_json())
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, (np.floating, np.integer)):
            return v.item()
        return v

    p = Path(path)
    old = json.loads(p.read_text()) if p.is_file() else {}
    old[name] = conv(value)
    p.write_text(json.dumps(old, indent=1))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--brian2-python", default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_meso.md"))
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: fit,loss,micro,long,marginal,ceilings,synthetic")
    ap.add_argument("--only", default="", help="comma-separated parts to run (default all)")
    ap.add_argument("--json", default=None, help="also write the raw numbers of the marginal/ceilings/synthetic parts here")
    ap.add_argument("--summary", default=None, help="write the loss row for make bench-quick here (JSON; needs the loss part)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    parts = ("fit", "loss", "long", "micro", "marginal", "ceilings", "synthetic")
    if args.only:
        skip |= set(parts) - set(args.only.split(","))
    res = {}
    t_all = time.perf_counter()
    for name, fn in (("fit", lambda: bench_fit(args.quick)), ("loss", lambda: bench_loss(args.quick)),
                     ("long", lambda: bench_long(args.quick)), ("micro", lambda: bench_micro(args.quick, args.brian2_python)),
                     ("marginal", lambda: bench_marginal(args.quick, Path(args.out).parent)),
                     ("ceilings", lambda: bench_ceilings(args.quick)),
                     ("synthetic", lambda: bench_synthetic(args.quick))):
        if name in skip:
            continue
        t0 = time.perf_counter()
        res[name] = fn()
        print(f"[meso bench] {name} done in {time.perf_counter() - t0:.1f} s", flush=True)
        if args.json and name in ("marginal", "ceilings", "synthetic"):
            _dump_json(args.json, name, res[name])
    if args.summary and "loss" in res:
        L = res["loss"]
        row = {"workload": "meso loss + gradient (12 parameters), 11-s surrogate, 2500 bins, 3 populations",
               "peer": "NumPy loss in the original's loop style, finite-difference gradient (13 losses, as its M-step)",
               "peer_figure": f"{L['numpy_fd_gradients_per_s']:.3f} gradients/s",
               "spikejax_figure": f"{L['jax_value_and_grad']:.1f} gradients/s (exact, also w.r.t. Z)",
               "ratio": L["jax_value_and_grad"] / L["numpy_fd_gradients_per_s"],
               "compile_s": L["jax_value_and_grad_first_call_s"]}
        Path(args.summary).write_text(json.dumps([row]))
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
    if "marginal" in res:
        g = res["marginal"]
        lines += ["## Default `fit_em`: hard-EM initialiser + maximum marginal likelihood (11-s surrogate, 10 hard-EM restarts, the best 4 continued, 2 kept at the cut)", "",
                  f"Settings: {g['em']}; {g['marginal']}.",
                  f"Wall time {g['wall_s']:.1f} s incl. compilation (stages {g['stage_seconds']}), process CPU time "
                  f"{g['cpu_s']:.1f} s; load average {g['load_before'][0]:.1f} before, {g['load_after'][0]:.1f} after.",
                  f"Median relative error (best restart by log p̂): {g['median_rel_error']:.3f} (hard-EM stage's own "
                  f"choice {g['hard_em_median_rel_error']:.3f}); per restart {np.round(g['restart_errors'], 3).tolist()}.",
                  f"r(posterior-mean Z, true Z): {np.round(g['r_posterior_mean'], 3).tolist()}.",
                  f"Free run of the fit: {g['free']}.", "", "```", g["table"].to_string(), "", g["restarts"].to_string(),
                  "", g["convergence"].iloc[:, :6].to_string(), "```", ""]
    if "ceilings" in res:
        c = res["ceilings"]
        lines += ["## Ceilings (what 10 s of 9 observed neurons allow)", "",
                  f"* r(posterior-mean Z at the ground truth, true Z): {np.round(c['r_posterior_mean_at_truth'], 3).tolist()}; "
                  f"log p̂(y | truth) {c['log_lik_truth']:.1f} (runs {np.round(c['log_lik_truth_runs'], 1).tolist()}).",
                  f"* M-step given the true Z (5 box starts, 300 BFGS iterations): median relative error "
                  f"{c['mstep_trueZ_median_rel_error']:.3f} (per start {np.round(c['mstep_trueZ_errors'], 3).tolist()}); "
                  f"{c['mstep_s']:.0f} s.",
                  f"* Ground-truth mesoscopic model, free run: {c['gt_free']}; 200-s microscopic surrogate: {c['surrogate_free']}.", ""]
    if "synthetic" in res:
        g = res["synthetic"]

        def free(runs):
            rates = np.mean([r["rates_winner_loser_inh_Hz"] for r in runs], axis=0)
            return f"{np.round(rates, 2).tolist()} Hz, median dominance {np.median([r['dominance_median_s'] for r in runs]):.2f} s"

        lines += ["## Default `fit_em` on a trial drawn from the mesoscopic model itself (`simulate_observed`, ground truth)", "",
                  f"Wall {g['wall_s']:.1f} s incl. compilation (stages {g['stage_seconds']}); load {g['load_before'][0]:.1f} / "
                  f"{g['load_after'][0]:.1f}.",
                  f"Median relative error {g['median_rel_error']:.3f} (hard EM {g['hard_em_median_rel_error']:.3f}; per "
                  f"restart {np.round(g['restart_errors'], 3).tolist()}); log p̂ fit {g['log_lik_fit']:.1f} vs truth "
                  f"{g['log_lik_truth']:.1f}.",
                  f"r(posterior-mean Z, true Z): fit {np.round(g['r_posterior_mean_fit'], 3).tolist()}, at the truth "
                  f"{np.round(g['r_posterior_mean_at_truth'], 3).tolist()}.",
                  f"Free runs (keys {g['free_keys']}, mean of (winner, loser, inh)): fit {free(g['fit_free'])}; ground truth "
                  f"{free(g['gt_free'])}.", "", "```", g["table"].to_string(), "", g["restarts"].to_string(), "```", ""]
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
