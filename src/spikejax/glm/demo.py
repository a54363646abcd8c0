"""The GLM part of ``spikejax demo``: spikeometric's "Parameter tuning" tutorial in spikejax.

RectifiedLNP (tutorial-text parameters) on Mexican-hat rings of 100 neurons: simulate, compare with
the mean-field rate, tune theta to 62.5 Hz (ISI 16 ms) with the default estimator, check by an
independent simulation, and plot rasters and ISI histograms before/after. (spikeometric's estimator
on the same setting is compared in ``benchmarks/glm.py``.)
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

TUTORIAL = dict(lambda_0=100.0, theta=1e-4, T=20, tau=10.0, dt=0.1, r=0.0025, b=0.001)


def run(out_dir: Path, *, quick: bool, seed: int) -> dict:
    import matplotlib.pyplot as plt

    from ..core.io import atomic_open, save_figure, save_json, short_float
    from . import analysis as A
    from .generators import MexicanHatGenerator
    from .models import RectifiedLNP
    from .network import batch_networks
    from .simulation import simulate
    from .tuning import tune

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    n_rings = 1 if quick else 5
    steps = 1000 if quick else 10_000
    epochs = 15 if quick else 100
    tune_kw = dict(n_steps=100, rel_learning_rate=0.25) if quick else {}
    net = batch_networks(MexicanHatGenerator(100).generate(n_rings))
    model = RectifiedLNP(**TUTORIAL)
    key = jax.random.key(seed)
    k_before, k_tune, k_after = jax.random.split(key, 3)

    x0 = np.asarray(simulate(model, net, n_steps=steps, key=k_before).raster)
    rate0 = A.population_rate(x0, model.dt)
    mf0 = float(A.mean_field_rate(model, net))
    theta_mf = A.mean_field_theta(model, net, 62.5)

    res = tune(model, net, 62.5, ["theta"], key=k_tune, n_epochs=epochs, **tune_kw)
    x1 = np.asarray(simulate(res.model, net, n_steps=steps, key=k_after).raster)
    rate1 = A.population_rate(x1, model.dt)

    summary = {
        "networks": f"{n_rings} x 100-neuron Mexican-hat rings",
        "rate_before_hz": round(rate0, 3),
        "mean_field_rate_before_hz": round(mf0, 3),
        "mean_isi_before_ms": round(A.mean_isi(x0, 0.1), 3),
        "tuned_theta": short_float(res.model.theta),
        "mean_field_theta": short_float(theta_mf),
        "rate_after_hz": round(rate1, 3),
        "target_rate_hz": 62.5,
        "final_tune_rate_hz": round(res.final_rate_hz, 3),
        "target_met": res.target_met,
        "mean_isi_after_ms": round(A.mean_isi(x1, 0.1), 3),
        "tune_seconds": round(res.seconds, 2),
    }

    fig, axes = plt.subplots(2, 2, figsize=(12, 7), gridspec_kw={"width_ratios": [3, 1.3]})
    show = min(steps, 3000)
    A.plot_raster(x0[:100, :show], 0.1, ax=axes[0, 0], title=f"before tuning: {rate0:.1f} Hz (mean field {mf0:.1f} Hz)")
    A.plot_raster(x1[:100, :show], 0.1, ax=axes[1, 0], title=f"after tuning theta: {rate1:.1f} Hz (target 62.5 Hz)")
    A.plot_isi_histogram(x0, 0.1, ax=axes[0, 1], title="ISI before")
    A.plot_isi_histogram(x1, 0.1, ax=axes[1, 1], title="ISI after")
    fig.tight_layout()
    save_figure(fig, out_dir / "glm_tutorial_raster_isi.png", dpi=110)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    res.plot(ax=ax)
    fig.tight_layout()
    save_figure(fig, out_dir / "glm_tune_history.png", dpi=110)

    summary["seconds"] = round(time.perf_counter() - t_start, 1)
    save_json(out_dir / "glm_summary.json", summary)
    with atomic_open(out_dir / "glm_tune_history.csv", "w") as fh:
        res.to_pandas()[["epoch", "rate_hz", "theta"]].to_csv(fh, index=False)
    return summary
