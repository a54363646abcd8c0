"""``spikejax gfr ...``: preprocess NWB files, fit GFR models, simulate released cells.

* ``spikejax gfr preprocess --nwb FILES|DIR --save-path OUT`` (or ``--synthetic N`` to first
  write a synthetic Allen-like cell bank as NWB files under ``OUT/nwb``) -> ``OUT/<cell_id>.h5``;
* ``spikejax gfr fit --data DIR --save-path OUT [--dt 20 --activation-dt 20 --degree 1
  --C 0 --config-path cfg.json --lr 1e-2 1e-3 1e-4 --epochs 200 ...]`` -> ``OUT/records.json``
  (all fitted cells, ``gfr_dataset.json`` layout), ``OUT/gfr_dataset.json`` (the cells passing the
  release selection) and ``OUT/summary.csv``;
* ``spikejax gfr simulate --cell-id ID [--dataset JSON] --current 150 --duration 1000`` -> CSV of
  rates for a current step;
* ``spikejax gfr network ...`` when :mod:`spikejax.gfr.cli_network` is installed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._argparse import non_negative_float, non_negative_int, positive_float, positive_int
from ..core.errors import ConfigError

__all__ = ["register"]


def _preprocess(args: argparse.Namespace) -> int:
    import jax

    from .preprocess import BIN_SIZES, preprocess_files
    from .synthetic import make_cell_bank

    out = Path(args.save_path)
    paths: list[Path] = []
    if args.synthetic:
        paths += make_cell_bank(out / "nwb", args.synthetic, key=jax.random.key(args.seed), sampling_rate=args.sampling_rate, short=args.short)
        print(f"wrote {len(paths)} synthetic NWB files to {out / 'nwb'}")
    for item in args.nwb or []:
        p = Path(item)
        paths += sorted(p.glob("*.nwb")) if p.is_dir() else [p]
    if not paths:
        raise ConfigError("give NWB files or folders with --nwb, or --synthetic N")
    bins = tuple(args.bin_sizes) if args.bin_sizes else BIN_SIZES
    written = preprocess_files(paths, out, bins)
    print(f"preprocessed {len(written)} cell(s) at bin sizes {bins} ms -> {out}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    import jax

    from ..core.io import atomic_open, save_json
    from .fit import FitConfig, fit_cells
    from .preprocess import load_cells
    from .records import save_records

    overrides = {
        "dt": args.dt,
        "activation_dt": args.activation_dt,
        "degree": args.degree,
        "C": args.C,
        "activation_n_epochs": args.activation_epochs,
        "activation_repeats": args.activation_repeats,
    }
    if args.lr:
        epochs = args.epochs if args.epochs else [200]
        if len(epochs) not in (1, len(args.lr)):
            raise ConfigError(f"--epochs must give one value or one per --lr ({len(args.lr)}), got {len(epochs)}")
        overrides["learning_rates"] = tuple(args.lr)
        overrides["n_epochs"] = tuple(epochs if len(epochs) > 1 else epochs * len(args.lr))
    elif args.epochs:
        base = FitConfig.from_json(args.config_path) if args.config_path else FitConfig()
        overrides["n_epochs"] = tuple(args.epochs[:1] * len(base.learning_rates))
    if args.config_path:
        config = FitConfig.from_json(args.config_path, **overrides)
    else:
        config = FitConfig(**{k: v for k, v in overrides.items() if v is not None})
    cells = load_cells(args.data)
    print(f"fitting {len(cells)} cell(s) at (dt, activation_dt) = ({config.dt}, {config.activation_dt}) ms")
    res = fit_cells(cells, config, key=jax.random.key(args.seed), checkpoint_dir=args.checkpoint_dir, epochs_per_call=args.epochs_per_call, chunk_size=args.chunk_size)
    out = Path(args.save_path)
    save_records(out / "records.json", res.records)
    selected = [rec for rec, ok in zip(res.records, res.table["selected"]) if ok]
    save_records(out / "gfr_dataset.json", selected)
    with atomic_open(out / "summary.csv", "w", newline="") as fh:
        res.table.to_csv(fh, index=False)
    save_json(out / "config.json", config.to_dict())
    cols = ["cell_id", "val_evr", "test_evr", "train_loss", "test_loss", "best_lr", "selected"]
    print(res.table[cols].to_string(index=False))
    print(f"{len(selected)}/{len(cells)} cell(s) pass the selection (val_evr > 0.5, train_loss < 0.45); wrote {out}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    import jax.numpy as jnp

    from ..core.io import atomic_open
    from .model import simulate
    from .records import load_dataset, model_from_dataset

    ds = load_dataset(args.dataset)
    model = model_from_dataset(ds, args.cell_id, args.dt, args.activation_dt)
    n = int(round(args.duration / model.dt))
    if n < 1:
        raise ConfigError(f"--duration must cover at least one {model.dt} ms bin, got {args.duration}")
    from ..core.errors import check_allocation

    check_allocation(16.0 * n, argument="--duration", what=f"{n} bins of {model.dt} ms")  # current, rates, state
    frame = simulate(model, jnp.full(n, float(args.current))).to_pandas()  # time_ms (bin start), rate_hz, current_pa
    if args.out:
        with atomic_open(args.out, "w", newline="") as fh:
            frame.to_csv(fh, index=False)
        print(f"wrote {args.out}")
    else:
        print(frame.to_string(index=False))
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``spikejax gfr {preprocess,fit,simulate[,network]}``."""
    gfr = subparsers.add_parser("gfr", help="generalized firing-rate neurons (AllenInstitute/GRNN)")
    sub = gfr.add_subparsers(dest="gfr_command", metavar="SUBCOMMAND")
    gfr.set_defaults(func=lambda a: (gfr.print_help(), 2)[1])

    pre = sub.add_parser("preprocess", help="read Allen cell-types NWB files (h5py), window, bin and save h5 per cell")
    pre.add_argument("--nwb", nargs="*", help="NWB files or folders of *.nwb (default: none)")
    pre.add_argument("--synthetic", type=non_negative_int, default=0, metavar="N", help="first write N synthetic Allen-like cells as NWB")
    pre.add_argument("--save-path", "--save_path", required=True, help="output folder for <cell_id>.h5 (and nwb/ with --synthetic)")
    pre.add_argument("--bin-sizes", "--bin_sizes", type=positive_int, nargs="*", help="bin sizes in ms (default: 10 20 50 100)")
    pre.add_argument("--sampling-rate", "--sampling_rate", type=positive_float, default=10_000.0, help="synthetic bank sampling rate, Hz")
    pre.add_argument("--short", action="store_true", help="synthetic bank: half-length protocol")
    pre.add_argument("--seed", type=int, default=0, help="seed of the synthetic bank's key")
    pre.set_defaults(func=_preprocess)

    fit = sub.add_parser("fit", help="fit GFR models (stage 1 + stage 2) to preprocessed cells, all at once")
    fit.add_argument("--data", required=True, help="folder of preprocessed <cell_id>.h5 files (or one file)")
    fit.add_argument("--save-path", "--save_path", required=True, help="output folder (records.json, gfr_dataset.json, summary.csv)")
    fit.add_argument("--config-path", "--config_path", default=None, help="GRNN-style JSON config (hparams, eps, activation_epochs, ...) (default: none)")
    fit.add_argument("--dt", "--bin-size", "--bin_size", dest="dt", type=positive_int, default=None, help="model time step (GRNN's bin_size), ms (default: 20)")
    fit.add_argument("--activation-dt", "--activation_dt", "--activation-bin-size", "--activation_bin_size", dest="activation_dt", type=positive_int,
                     default=None, help="activation time step (GRNN's activation_bin_size), ms (default: 20)")
    fit.add_argument("--degree", type=positive_int, default=None, help="activation polynomial degree (default: 1)")
    fit.add_argument("--C", type=non_negative_float, default=None, help="'L0' penalty weight; as in the original it has no effect on training (default: 0)")
    fit.add_argument("--lr", type=positive_float, nargs="*", help="stage-2 learning rates (independent restarts) (default: 1e-2 1e-3 1e-4)")
    fit.add_argument("--epochs", type=non_negative_int, nargs="*", help="stage-2 epochs (one value, or one per --lr) (default: 200)")
    fit.add_argument("--activation-epochs", "--activation_epochs", type=non_negative_int, default=None, help="stage-1 epochs (default: 1000)")
    fit.add_argument("--activation-repeats", "--activation_repeats", type=positive_int, default=None, help="stage-1 restarts (default: 3)")
    fit.add_argument("--epochs-per-call", "--epochs_per_call", type=positive_int, default=50, help="epochs per compiled call (checkpoint granularity)")
    fit.add_argument("--checkpoint-dir", "--checkpoint_dir", default=None, help="checkpoint folder; rerunning resumes from it (default: none)")
    fit.add_argument("--chunk-size", "--chunk_size", type=positive_int, default=None, help="at most this many cells per compiled call (default: all)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the fit's key (initial coefficients, type-batch order)")
    fit.set_defaults(func=_fit)

    sim = sub.add_parser("simulate", help="rates of a released cell for a current step")
    sim.add_argument("--cell-id", "--cell_id", type=int, default=566517779, help="Allen cell id of a released cell")
    sim.add_argument("--dataset", default=None, help="gfr_dataset.json-layout file (default: the bundled excerpt)")
    sim.add_argument("--dt", "--bin-size", "--bin_size", dest="dt", type=positive_int, default=20, help="model time step, ms")
    sim.add_argument("--activation-dt", "--activation_dt", "--activation-bin-size", "--activation_bin_size", dest="activation_dt",
                     type=positive_int, default=20, help="activation time step, ms")
    sim.add_argument("--current", type=float, default=200.0, help="step current, pA")
    sim.add_argument("--duration", type=positive_float, default=1000.0, help="duration of the step, ms")
    sim.add_argument("--out", default=None, help="CSV file (default: print the table)")
    sim.set_defaults(func=_simulate, out_kind="file")

    try:
        from . import cli_network
    except ImportError:
        cli_network = None
    if cli_network is not None:
        cli_network.add_parser(sub)
    return gfr
