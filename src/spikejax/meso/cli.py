"""``spikejax meso generate | fit | simulate``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .._argparse import non_negative_float, non_negative_int, positive_float, positive_int
from ..core.errors import ConfigError

__all__ = ["register"]


def _params_from(args):
    from .data import load_params_json
    from .params import ground_truth

    return load_params_json(args.params) if getattr(args, "params", None) else ground_truth()


def _check_A0(args, n_pops: int) -> None:
    if len(args.A0) != n_pops:
        raise ConfigError(f"--A0 takes one initial rate per population ({n_pops}), got {len(args.A0)}: {args.A0}")


def _generate(args: argparse.Namespace) -> int:
    import jax

    from ..core.io import atomic_path
    from .micro import MICRO_DT_MS, pulse_input, simulate_micro

    params = _params_from(args)
    _check_A0(args, len(params.N))
    n_steps = int(round(args.seconds * 1000.0 / MICRO_DT_MS))
    n_steps -= n_steps % 20
    if n_steps < 20:
        raise ConfigError(f"--seconds must cover at least one 4-ms bin (0.004 s), got {args.seconds}")
    from ..core.errors import check_allocation

    check_allocation(8.0 * (n_steps // 20) * (len(params.N) + args.n_record * len(params.N)), argument="--seconds",
                     what=f"{n_steps // 20} recorded 4-ms bins")
    I_ext = None
    if args.pulse:
        I_ext = pulse_input(n_steps, MICRO_DT_MS, params.M, _pulses(args.pulse))
    r = simulate_micro(params, n_steps, key=jax.random.PRNGKey(args.seed), A0=tuple(args.A0), I_ext=I_ext,
                       n_record=args.n_record, record_every=20)
    out = Path(args.out)
    with atomic_path(out, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, counts_4ms=np.asarray(r.counts).astype(np.uint16),
                                spikes_4ms=np.asarray(r.spikes).astype(np.uint8),
                                N=np.asarray(params.N), dt_ms=np.float64(r.dt))
    A = r.A
    print(f"wrote {out}: {A.shape[0]} bins of 4 ms, mean rates {np.round(A.mean(0), 2).tolist()} Hz")
    return 0


def _fit(args: argparse.Namespace) -> int:
    import jax

    from ..core.io import atomic_open, save_figure, save_json, save_model
    from .data import load_bundled, load_npz
    import math

    from .fit import MesoFitConfig, fit_em
    from .hard_em import INIT_EM, EMConfig
    from .marginal import MarginalConfig
    from .model import MesoConfig
    from .plots import plot_activity, plot_convergence, plot_loss_curves, plot_posterior_Z
    from .results import posterior_table
    from .sem import SEMConfig
    from .smc import posterior_Z

    data = load_bundled(n_obs=args.n_obs) if args.data == "bundled" else load_npz(args.data, n_obs=args.n_obs)
    if args.bins:
        data = data.window(0, args.bins)
    method = "sem" if args.sem_iter > 0 else args.method
    base_em = EMConfig() if method == "hard" else INIT_EM
    em = EMConfig(n_restarts=args.restarts,
                  n_iter=args.max_em if args.max_em is not None else base_em.n_iter,
                  m_maxiter=args.m_maxiter if args.m_maxiter is not None else base_em.m_maxiter,
                  e_maxiter=args.e_maxiter if args.e_maxiter is not None else base_em.e_maxiter)
    sem = SEMConfig(n_iter=args.sem_iter, n_particles=args.particles) if args.sem_iter > 0 else SEMConfig()
    mc = MarginalConfig() if args.iter is None else MarginalConfig().replace(
        n_iter=args.iter, n_burn=min(MarginalConfig().n_burn, args.iter - 1),
        info_every=math.gcd(args.iter, MarginalConfig().info_every))
    config = MesoFitConfig(method=method, em=em, marginal=mc, sem=sem, model=MesoConfig(integrator=args.integrator))
    key = jax.random.PRNGKey(args.seed)
    res = fit_em(data, key=key, config=config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res.save(out / "fit.h5")
    with atomic_open(out / "params.csv") as fh:
        res.to_pandas().to_csv(fh)
    with atomic_open(out / "history.csv") as fh:
        res.history.to_csv(fh, index=False)
    save_json(out / "fit_summary.json", {**res.summary(), "x": res.runs["x"][res.best]})
    save_model(out / "params.eqx", res.model, metadata={"N": list(res.model.N), "t_ref_ms": res.model.t_ref})
    save_figure(plot_activity(res.Z, data.Z, Z_init=res.Z0, smooth=5).figure, out / "inferred_Z.png", dpi=110)
    save_figure(plot_loss_curves(res).figure, out / "loss_curves.png", dpi=110)
    if method == "marginal":
        save_figure(plot_convergence(res).figure, out / "convergence.png", dpi=110)
        pkey = jax.random.fold_in(key, 7)
        post = posterior_Z(res.model, data, key=pkey, config=config.model)
        save_figure(plot_posterior_Z(post, data.Z, smooth=5).figure, out / "posterior_Z.png", dpi=110)
        with atomic_open(out / "posterior_Z.csv") as fh:
            posterior_table(res, data, key=pkey).to_csv(fh, index=False)
        with atomic_open(out / "convergence.csv") as fh:
            res.convergence().to_csv(fh)
    print(res.to_pandas().to_string())
    print(res.summary())
    return 0


def _pulses(specs) -> list:
    """``pop:start_s:duration_s:amplitude`` flags as ``(pop, start_ms, duration_ms, amplitude)``."""
    out = []
    for spec in specs:
        try:
            pop, start, dur, amp = (float(v) for v in spec.split(":"))
        except ValueError:
            raise ConfigError(f"--pulse {spec!r} must be pop:start_s:duration_s:amplitude (four numbers)") from None
        out.append((int(pop), 1000.0 * start, 1000.0 * dur, amp))
    return out


def _simulate(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp

    from ..core.io import atomic_open, load_json, load_model, save_figure
    from .data import dominance_durations, winner_loser_rates
    from .micro import pulse_input
    from .model import DT_MS, MesoConfig
    from .params import ground_truth
    from .plots import plot_free_run
    from .simulation import simulate

    params = ground_truth()
    if args.model:
        meta = load_json(str(args.model) + ".json") if Path(str(args.model) + ".json").is_file() else {}
        if meta.get("N") and tuple(meta["N"]) != tuple(params.N):
            raise ConfigError(f"--model {args.model}: only 3-population models saved by 'spikejax meso fit' are supported here")
        params = load_model(args.model, params)
    _check_A0(args, params.M)
    n = int(round(args.seconds * 1000.0 / DT_MS))
    if n < 1:
        raise ConfigError(f"--seconds must cover at least one {DT_MS} ms step, got {args.seconds}")
    from ..core.errors import check_allocation

    check_allocation(64.0 * n * params.M, argument="--seconds", what=f"{n} steps of {DT_MS} ms")
    I_ext = None
    if args.pulse:
        I_ext = pulse_input(n, DT_MS, params.M, _pulses(args.pulse))
    traj = simulate(params, I_ext, n_steps=n, key=jax.random.PRNGKey(args.seed), A0=jnp.asarray(args.A0),
                    noise=args.noise, config=MesoConfig(integrator=args.integrator))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "free_run.csv") as fh:
        traj.to_pandas().to_csv(fh, index=False)
    save_figure(plot_free_run(traj).figure, out / "free_run.png", dpi=110)
    A = np.asarray(traj.rate_hz)
    dur = dominance_durations(A) / 1000.0
    print(f"rates (winner, loser, I) = {np.round(winner_loser_rates(A), 2).tolist()} Hz; "
          f"{len(dur)} dominance periods, median {np.median(dur) if len(dur) else float('nan'):.2f} s")
    return 0


def register(subparsers) -> None:
    """Add ``spikejax meso ...`` to the main parser."""
    p = subparsers.add_parser("meso", help="mesoscopic LIF populations with hidden neurons (neuLVM)")
    sub = p.add_subparsers(dest="meso_command", metavar="SUBCOMMAND")

    g = sub.add_parser("generate", help="simulate the microscopic LIF network (0.2 ms) and save 4-ms data")
    g.add_argument("--seconds", type=positive_float, default=11.0, help="simulated time, s")
    g.add_argument("--out", default="out/meso/micro.npz", help="output .npz file")
    g.add_argument("--seed", type=int, default=0, help="seed of the simulation's key")
    g.add_argument("--A0", type=non_negative_float, nargs="+", default=[5.0, 20.0, 25.0], help="initial rates per population (Hz)")
    g.add_argument("--n-record", "--n_record", type=non_negative_int, default=30, help="neurons whose spikes are recorded")
    g.add_argument("--params", default=None, help="parameter JSON (default: neuLVM ground truth)")
    g.add_argument("--pulse", action="append", default=[],
                   help="input pulse pop:start_s:duration_s:amplitude (Δu/s), repeatable (default: none)")
    g.set_defaults(func=_generate, out_kind="file")

    f = sub.add_parser("fit", help="fit the mesoscopic model to a few observed neurons (marginal likelihood)")
    f.add_argument("--data", default="bundled", help="'bundled' or a .npz file (surrogate or 'generate' output)")
    f.add_argument("--out", default="out/meso/fit", help="output folder")
    f.add_argument("--seed", type=int, default=0, help="seed of the fit's key")
    f.add_argument("--n-obs", "--n_obs", type=positive_int, default=3, help="observed neurons per population")
    f.add_argument("--bins", type=non_negative_int, default=0, help="fit only the first BINS bins of the window (0 = all)")
    f.add_argument("--restarts", type=positive_int, default=5, help="hard-EM restarts from random initial parameters")
    f.add_argument("--method", choices=("marginal", "hard", "sem"), default="marginal",
                   help="marginal likelihood (hard EM as initialiser), hard EM alone, or stochastic EM")
    f.add_argument("--iter", type=positive_int, default=None, help="iterations of the marginal-likelihood stage (default: 96)")
    f.add_argument("--max-em", "--max_em", type=positive_int, default=None,
                   help="hard-EM iterations (default: 6 as initialiser, 20 alone)")
    f.add_argument("--m-maxiter", "--m_maxiter", type=positive_int, default=None,
                   help="optimiser iterations of each M-step (default: the EM configuration's)")
    f.add_argument("--e-maxiter", "--e_maxiter", type=positive_int, default=None,
                   help="optimiser iterations of each E-step (default: the EM configuration's)")
    f.add_argument("--integrator", choices=("exact", "euler"), default="exact", help="membrane-potential integrator")
    f.add_argument("--sem-iter", "--sem_iter", type=non_negative_int, default=0,
                   help="stochastic-EM refinement iterations after hard EM (particle-filter draws of Z; 0 = off)")
    f.add_argument("--particles", type=positive_int, default=256, help="particles of the refinement's filter")
    f.set_defaults(func=_fit)

    s = sub.add_parser("simulate", help="free simulation of a (fitted) mesoscopic model")
    s.add_argument("--model", default=None, help="params.eqx written by 'spikejax meso fit' (default: ground truth)")
    s.add_argument("--seconds", type=positive_float, default=100.0, help="simulated time, s")
    s.add_argument("--out", default="out/meso/simulate", help="output folder")
    s.add_argument("--seed", type=int, default=0, help="seed of the simulation's key")
    s.add_argument("--A0", type=non_negative_float, nargs="+", default=[1.0, 1.0, 1.0], help="initial rates per population (Hz)")
    s.add_argument("--noise", choices=("gaussian", "binomial"), default="gaussian", help="finite-size noise of the populations")
    s.add_argument("--integrator", choices=("exact", "euler"), default="exact", help="membrane-potential integrator")
    s.add_argument("--pulse", action="append", default=[],
                   help="input pulse pop:start_s:duration_s:amplitude (Δu/s), repeatable (default: none)")
    s.set_defaults(func=_simulate)

    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
