"""Where the mesoscopic model departs from the microscopic network (meso issue 11, item 5).

At the neuLVM ground truth (E1, E2, I; N = 400, 400, 200) the mesoscopic model's loser population
fires more than the microscopic LIF network's and the model switches dominance faster. This script
separates the candidate causes by changing one thing at a time:

* **finite size**: both models at 10x N (the fluctuations shrink as 1/√N) and the mesoscopic model
  at N → ∞ (N x 10⁴: the count noise vanishes, the quasi-renewal dynamics stay);
* **count noise**: neuLVM's Gaussian counts vs binomial counts;
* **bin size**: Δ = 4 ms vs 1 ms (binomial counts).

If the mesoscopic loser rate at large N matches the microscopic one at large N, the quasi-renewal
approximation is exact in the limit and the departure at N = 1000 is a finite-size effect of how the
model draws its counts; if they differ at large N, the quasi-renewal approximation itself departs.

``python benchmarks/meso_departure.py [--quick] [--micro-seconds 40] [--out benchmarks/results/meso_departure.md]``
(the 200-s microscopic run at 1x N is the bundled surrogate; the 10x-N microscopic run is simulated here).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("SPIKEJAX_CACHE_DIR", "off")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from spikejax import meso  # noqa: E402
from spikejax.core.io import atomic_open  # noqa: E402

A0 = (5.0, 20.0, 25.0)  # the generator's start (E2 wins first)


DT_S = meso.DT_MS / 1000.0  # this script works in s
MICRO_DT_S = meso.MICRO_DT_MS / 1000.0


def stable_loser(A: np.ndarray, dt: float, *, smooth_s: float = 0.2, guard_s: float = 0.5) -> float:
    """Mean rate (Hz) of the losing excitatory population away from switches: bins within ``guard_s``
    of a change of the (smoothed) winner are left out, so frequent switching does not raise it."""
    k = max(int(round(smooth_s / dt)), 1)
    As = np.stack([np.convolve(A[:, j], np.ones(k) / k, mode="same") for j in (0, 1)], 1)
    first = As[:, 0] >= As[:, 1]
    keep = np.ones(len(first), bool)
    g = int(round(guard_s / dt))
    for c in np.flatnonzero(np.diff(first.astype(int))) + 1:
        keep[max(c - g, 0):c + g] = False
    lose = np.where(first, A[:, 1], A[:, 0])
    return float(lose[keep].mean()) if keep.any() else float("nan")


def stats(A: np.ndarray, dt: float, *, skip_s: float = 0.0) -> dict:
    """(winner, loser, inhibitory) rates in Hz and dominance durations of activity ``A`` (T, M) in Hz
    (the first ``skip_s`` seconds left out)."""
    A = np.asarray(A, float)[int(round(skip_s / dt)):]
    dur = meso.dominance_durations(A, dt=1000.0 * dt) / 1000.0  # the library works in ms; this script in s
    w, lo, i = meso.winner_loser_rates(A, dt=1000.0 * dt)
    return {"winner": w, "loser": lo, "loser_stable": stable_loser(A, dt), "inh": i, "n_periods": int(len(dur)),
            "dominance_median_s": float(np.median(dur)) if len(dur) > 1 else None, "seconds": A.shape[0] * dt}


def scaled(p: meso.MesoParams, s: float) -> meso.MesoParams:
    return dataclasses.replace(p, N=tuple(int(round(n * s)) for n in p.N))


def run_meso(p, seconds: float, *, noise: str, dt: float, key, skip_s: float) -> dict:
    cfg = meso.MesoConfig(dt=1000.0 * dt, n_age=int(round(0.256 / dt)))
    n = int(round(seconds / dt))
    Z = meso.simulate(p, n_steps=n, key=key, A0=jnp.asarray(A0), noise=noise, config=cfg).Z
    return stats(np.asarray(Z) / dt, dt, skip_s=skip_s)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    ap.add_argument("--micro-seconds", type=float, default=40.0, help="length of the 10x-N microscopic run")
    ap.add_argument("--meso-seconds", type=float, default=200.0)
    ap.add_argument("--out", default="benchmarks/results/meso_departure.md")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    micro_s = 2.0 if a.quick else a.micro_seconds
    meso_s = 10.0 if a.quick else a.meso_seconds
    gt = meso.ground_truth()
    t_start = time.perf_counter()
    rows = {}
    # microscopic network: 1x N = the bundled 200-s surrogate (neuLVM's generator), 10x N simulated here
    sur = meso.load_activity(meso.bundled_path("T200s"))
    rows["micro, N = 1000 (bundled 200-s surrogate)"] = stats(sur, DT_S)
    t0 = time.perf_counter()
    r = meso.simulate_micro(scaled(gt, 10), int(round(micro_s / MICRO_DT_S)), key=jax.random.PRNGKey(3), A0=A0,
                            n_record=0, record_every=20)
    rows[f"micro, N = 10 000 ({micro_s:g} s)"] = {**stats(np.asarray(r.A), DT_S, skip_s=1.0),
                                                   "wall_s": round(time.perf_counter() - t0, 1)}
    t0 = time.perf_counter()
    big_s = 2.0 if a.quick else a.micro_seconds / 4
    r = meso.simulate_micro(scaled(gt, 100), int(round(big_s / MICRO_DT_S)), key=jax.random.PRNGKey(4), A0=A0,
                            n_record=0, record_every=20)
    rows[f"micro, N = 100 000 ({big_s:g} s)"] = {**stats(np.asarray(r.A), DT_S, skip_s=1.0),
                                                 "wall_s": round(time.perf_counter() - t0, 1)}
    # mesoscopic model: sizes, count noise, bin
    for s, label in ((1, "N = 1000"), (10, "N = 10 000"), (1e4, "N → ∞ (N x 10⁴)")):
        for noise in ("gaussian", "binomial"):
            for dt in ((0.004, 0.001) if noise == "binomial" and s < 1e4 else (0.004,)):
                name = f"meso, {label}, {noise} counts, Δ = {dt * 1e3:g} ms"
                rows[name] = run_meso(scaled(gt, s), meso_s, noise=noise, dt=dt, key=jax.random.PRNGKey(1),
                                      skip_s=0.0 if s == 1 else 1.0)
    total = time.perf_counter() - t_start
    lines = ["# Mesoscopic model vs microscopic network at the ground truth (`benchmarks/meso_departure.py`)", "",
             f"Command: `python benchmarks/meso_departure.py{' --quick' if a.quick else ''} --micro-seconds {micro_s:g}`"
             f"  \nMachine: {platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} "
             f"({jax.devices()[0].platform}); total {total:.0f} s; load average at the end "
             f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}. Mesoscopic runs {meso_s:g} s each from A0 = {A0} Hz.",
             "Large-N runs leave out their first second. *loser, stable*: the loser's mean rate more than 0.5 s away "
             "from any switch of the winner.",
             "", "| run | winner (Hz) | loser (Hz) | loser, stable (Hz) | inhibitory (Hz) | dominance periods "
             "| median dominance (s) |", "|---|---|---|---|---|---|---|"]
    for name, v in rows.items():
        med = "-" if v["dominance_median_s"] is None else f"{v['dominance_median_s']:.2f}"
        lines.append(f"| {name} | {v['winner']:.2f} | {v['loser']:.2f} | {v['loser_stable']:.2f} | {v['inh']:.2f} "
                     f"| {v['n_periods']} | {med} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(a.out, "w") as f:
            f.write(text)
    if a.json:
        with atomic_open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
