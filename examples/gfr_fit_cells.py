"""Build a synthetic Allen-like cell bank, preprocess it through the NWB path and fit all cells at once.

    python examples/gfr_fit_cells.py            # 8 cells, GRNN's default schedule (about a minute)
    python examples/gfr_fit_cells.py --quick    # 2 cells, tiny schedule (smoke test)
"""

import argparse
from pathlib import Path

import jax

from spikejax.core.io import atomic_open
from spikejax.gfr import FitConfig, fit_cells, load_cells, make_cell_bank, preprocess_files, save_records


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=_Formatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--n-cells", "--n_cells", dest="n_cells", type=int, default=8, help="synthetic cells (without --quick)")
    ap.add_argument("--out", default="out/examples/gfr_fit_cells", help="output folder")
    ap.add_argument("--seed", type=int, default=0, help="seed of the bank's and the fit's keys")
    args = ap.parse_args()
    out = Path(args.out)
    k_bank, k_fit = jax.random.split(jax.random.key(args.seed))
    if args.quick:
        nwb = make_cell_bank(out / "nwb", 2, key=k_bank, sampling_rate=5000.0, short=True)
        config = FitConfig(activation_n_epochs=30, learning_rates=(1e-2, 1e-3), n_epochs=(5, 5))
    else:
        nwb = make_cell_bank(out / "nwb", args.n_cells, key=k_bank)
        config = FitConfig()
    preprocess_files(nwb, out / "h5", bin_sizes=(20,))
    cells = load_cells(out / "h5")
    res = fit_cells(cells, config, key=k_fit)  # a GFRFitResult: one row per cell in res.to_pandas()
    with atomic_open(out / "summary.csv", "w", newline="") as fh:
        res.to_pandas().to_csv(fh, index=False)
    save_records(out / "records.json", res.records)
    res.save(out / "fit.h5")  # GFRFitResult.load(out / "fit.h5") reads it back
    print(res.table[["cell_id", "val_evr", "test_evr", "train_loss", "test_loss", "best_lr", "selected"]].to_string(index=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
