"""The mesoscopic part of ``spikejax demo``: fit 9 observed neurons of the 11-s surrogate, free-run the fit."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["run"]


def run(out_dir: Path, *, quick: bool, seed: int) -> dict:
    """Load the bundled 11-s surrogate, fit it (default ``fit_em``: hard-EM initialiser, then maximum
    marginal likelihood; vmapped restarts), free-run the fit, write figures.

    ``quick=True`` fits a 2-s excerpt with 2 restarts and few iterations (smoke test);
    ``quick=False`` fits the full 10-s window with the default ``fit_em`` (10 hard-EM restarts, the
    best 4 by log p̂ continued) and runs a 100-s free simulation.
    Figures: hard-EM objective and log p̂(y | Θ) traces (``loss_curves.png``), the convergence of
    the marginal stage (``convergence.png``), the posterior of Z with its band
    (``posterior_Z.png``), the free run and dominance durations. Returns a JSON-able summary.
    """
    import jax

    from ..core.io import atomic_open, save_json
    from .data import dominance_durations, load_activity, load_bundled, bundled_path, winner_loser_rates
    from .fit import EMConfig, fit_em
    from .marginal import MarginalConfig
    from .model import DT
    from .results import (plot_activity, plot_convergence, plot_dominance, plot_free_run, plot_loss_curves,
                          plot_posterior_Z)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = load_bundled()
    if quick:
        data = data.window(0, 500)
        kw = {"em": EMConfig(n_restarts=2, max_em=2, m_maxiter=15, e_maxiter=15),
              "marginal": MarginalConfig(n_iter=4, n_burn=2, info_every=2, n_particles=16, n_final=2,
                                         final_particles=32)}
        n_free = int(20.0 / DT)
    else:
        kw = {}
        n_free = int(100.0 / DT)
    res = fit_em(data, key=jax.random.PRNGKey(seed), **kw)
    t_fit = time.perf_counter() - t0
    Z, _ = res.simulate(n_free, key=jax.random.PRNGKey(seed + 1))
    A_free = np.asarray(Z) / DT
    A_sur = load_activity(bundled_path("T200s"))
    dur_free = dominance_durations(A_free)
    dur_sur = dominance_durations(A_sur)
    with atomic_open(out_dir / "params.csv") as fh:
        res.to_pandas().to_csv(fh)
    plot_activity(res.Z, data.Z, Z_init=res.Z0, path=out_dir / "inferred_vs_true_Z.png", smooth=5)
    plot_free_run(Z, path=out_dir / "free_run.png", title="free run of the fitted model")
    plot_dominance({"fitted model": dur_free, "200-s surrogate": dur_sur}, path=out_dir / "dominance_durations.png")
    plot_loss_curves(res, path=out_dir / "loss_curves.png")
    plot_convergence(res, path=out_dir / "convergence.png")
    plot_posterior_Z(res, path=out_dir / "posterior_Z.png", smooth=5)
    with atomic_open(out_dir / "posterior_Z.csv") as fh:
        res.to_pandas("Z").to_csv(fh)
    summary = {
        **res.summary(),
        "free_run_s": n_free * DT,
        "free_rates_winner_loser_inh_Hz": [round(v, 2) for v in winner_loser_rates(A_free)],
        "surrogate_rates_winner_loser_inh_Hz": [round(v, 2) for v in winner_loser_rates(A_sur)],
        "free_dominance_median_s": float(np.median(dur_free)) if len(dur_free) else None,
        "surrogate_dominance_median_s": float(np.median(dur_sur)),
        "n_dominance_periods_free": int(len(dur_free)),
        "fit_seconds": round(t_fit, 1),
    }
    save_json(out_dir / "summary.json", summary)
    return summary
