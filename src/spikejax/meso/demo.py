"""The mesoscopic part of ``spikejax demo``: fit 9 observed neurons of the 11-s surrogate, free-run the fit.

By default the part runs a light fit (:func:`light_fit_config`: neuLVM's hard EM, 2 vmapped restarts,
on the first 4 s of the trial; about 10 s on 2 CPU cores once compiled) so that ``spikejax demo`` answers in minutes;
``spikejax demo --full`` (or ``spikejax meso fit``) runs the default :func:`~spikejax.meso.fit_em`
(hard-EM initialiser, then maximum marginal likelihood; about 5 minutes on 2 cores).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["run", "light_fit_config", "FULL_FIT_HINT", "LIGHT_WINDOW_MS"]

#: The light fit's window: the first 4 s of the trial (0.4 of the compute of the 10-s window; on the
#: bundled trial, over 8 seeds, a median parameter error of 0.265 against 0.291 for the first 5 s:
#: benchmarks/RESULTS.md, session 10).
LIGHT_WINDOW_MS = 4000.0

#: How to run the full fit (printed by the light demo and written into its summary).
FULL_FIT_HINT = ("light fit (hard EM only, 2 restarts, the first 4 s); for the full marginal-likelihood fit "
                 "(about 5 min on 2 cores) run `spikejax demo --full --only meso` or `spikejax meso fit --restarts 10`")


def light_fit_config():
    """The demo's default (light) fit settings: neuLVM's hard EM alone, 2 vmapped restarts of at most 4
    EM iterations (the full fit is :class:`~spikejax.meso.MesoFitConfig`'s default)."""
    from .fit import MesoFitConfig
    from .hard_em import EMConfig

    return MesoFitConfig(method="hard", em=EMConfig(n_restarts=2, n_iter=4, m_maxiter=60, e_maxiter=60))


def run(out_dir: Path, *, quick: bool, seed: int, full: bool = False) -> dict:
    """Load the bundled 11-s surrogate, fit it (a light hard-EM fit by default, ``full=True`` the default
    ``fit_em``: hard-EM initialiser, then maximum marginal likelihood; vmapped restarts), free-run
    the fit, write figures.

    ``quick=True`` fits a 2-s excerpt by hard EM with 2 restarts and few iterations (smoke test);
    by default (``quick=False, full=False``) the first 4 s (:data:`LIGHT_WINDOW_MS`) are fitted by
    hard EM alone (:func:`light_fit_config`: a light fit, about 10 s once compiled) and the fit free-runs for 100 s;
    ``full=True`` fits the 10-s window with the default ``fit_em`` (10 hard-EM restarts, the
    best 4 by log p̂ continued; about 5 minutes on 2 cores).
    Figures: hard-EM objective and log p̂(y | Θ) traces (``loss_curves.png``), the convergence of
    the marginal stage (``convergence.png``), the posterior of Z with its band
    (``posterior_Z.png``), the free run and dominance durations. Returns a JSON-able summary.
    """
    import jax

    from ..core.io import atomic_open, save_figure, save_json
    from .data import bundled_path, dominance_durations, load_activity, load_bundled, winner_loser_rates
    from .fit import MesoFitConfig, fit_em
    from .hard_em import EMConfig
    from .model import DT_MS
    from .plots import (plot_activity, plot_convergence, plot_dominance, plot_free_run, plot_loss_curves,
                        plot_posterior_Z)
    from .results import posterior_table
    from .smc import posterior_Z

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        parts[name] = round(now - clock[0], 1)
        clock[0] = now

    t0 = time.perf_counter()
    data = load_bundled()
    if quick:
        data = data.window(0, 500)
        config = MesoFitConfig(method="hard", em=EMConfig(n_restarts=2, n_iter=2, m_maxiter=15, e_maxiter=15))
        n_free = int(20_000.0 / DT_MS)
        fit_kind = "quick"
    elif full:
        config = MesoFitConfig()
        n_free = int(100_000.0 / DT_MS)
        fit_kind = "full"
    else:
        data = data.window(0, int(round(LIGHT_WINDOW_MS / DT_MS)))
        config = light_fit_config()
        n_free = int(100_000.0 / DT_MS)
        fit_kind = "light"
    if not full:
        print(f"[spikejax demo] meso: {FULL_FIT_HINT}", flush=True)
    lap("load")
    key = jax.random.PRNGKey(seed)
    res = fit_em(data, key=key, config=config)
    t_fit = time.perf_counter() - t0
    lap("fit")
    traj = res.simulate(n_free, key=jax.random.PRNGKey(seed + 1))
    A_free = np.asarray(traj.rate_hz)
    A_sur = load_activity(bundled_path("T200s"))
    dur_free = dominance_durations(A_free)
    dur_sur = dominance_durations(A_sur)
    lap("free_run")
    with atomic_open(out_dir / "params.csv") as fh:
        res.to_pandas().to_csv(fh)
    res.save(out_dir / "fit.h5")
    pkey = jax.random.fold_in(key, 7)
    # the posterior of Z at the fit: 8 filter runs of 256 particles (full), 4 of 128 (light, quick)
    n_particles, n_runs = (256, 8) if full else (128, 4)
    post = posterior_Z(res.model, data, key=pkey, n_particles=n_particles, n_runs=n_runs, config=config.model)
    lap("posterior")
    figures = {
        "inferred_vs_true_Z.png": plot_activity(res.Z, data.Z, Z_init=res.Z0, smooth=5),
        "free_run.png": plot_free_run(traj, title="free run of the fitted model"),
        "dominance_durations.png": plot_dominance({"fitted model": dur_free, "200-s surrogate": dur_sur}),
        "loss_curves.png": plot_loss_curves(res),
        "posterior_Z.png": plot_posterior_Z(post, data.Z, smooth=5),
    }
    if "log_lik_trace" in res.runs:  # the marginal stage's convergence (not in a hard-EM-only fit)
        figures["convergence.png"] = plot_convergence(res)
    for name, ax in figures.items():
        save_figure(ax.figure, out_dir / name, dpi=110)
    lap("figures")
    with atomic_open(out_dir / "posterior_Z.csv") as fh:
        posterior_table(res, data, key=pkey, posterior=post).to_csv(fh, index=False)
    lap("posterior_table")
    summary = {
        **res.summary(),
        "pearson_r": np.asarray(res.z_correlation(data.Z)),
        "free_run_ms": n_free * DT_MS,
        "free_rates_winner_loser_inh_Hz": [round(v, 2) for v in winner_loser_rates(A_free)],
        "surrogate_rates_winner_loser_inh_Hz": [round(v, 2) for v in winner_loser_rates(A_sur)],
        "free_dominance_median_ms": float(np.median(dur_free)) if len(dur_free) else None,
        "surrogate_dominance_median_ms": float(np.median(dur_sur)),
        "n_dominance_periods_free": int(len(dur_free)),
        "fit_seconds": round(t_fit, 1),
        "fit": fit_kind,
        "fit_window_ms": float(data.T * DT_MS),
        "part_seconds": parts,
    }
    if not full:
        summary["full_fit"] = FULL_FIT_HINT
    save_json(out_dir / "summary.json", summary)
    return summary
