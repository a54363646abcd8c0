"""LFADS on the bundled Lorenz tutorial spikes: held-out ridge R² from inferred factors to the true latents.

Acceptance 1 of the spikejax LFADS issue: an autonomous LFADS (no controller: the Lorenz system is
autonomous, so the initial condition determines the trial) is trained on the 640 training
trials; posterior-averaged factors are ridge-mapped (α = 0.01, intercept unpenalised) to the
standardised Lorenz latents using the training trials, and R² per latent is reported on the 160
held-out trials. The published single-model anchor (lfads_tf2, in-sample, 800 trials) is
0.988 / 0.982 / 0.954 for x / y / z.

``python examples/lfads_lorenz.py`` (the full run: 800 epochs with coordinated dropout 0.5, about
21 minutes of training on 2 CPU cores) or ``--quick`` (smoke: 2 epochs, tiny model). Measured (2
shared cores): held-out x 0.989, y 0.980, z 0.957 after 800 epochs (1267 s of training; 0.987 /
0.979 / 0.951 after 600, 0.989 / 0.981 / 0.957 after 700). With CD 0.3 the same model plateaus at
z ≈ 0.938 (400–800 epochs); with CD 0 it learns z worse (0.867 after 400).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from spikejax.core.io import save_json
from spikejax.lfads import LFADS, HParams, LFADSConfig, TrainConfig, infer, load_lorenz_tutorial, ridge_r2, train

FULL = dict(ic_enc_dim=64, ic_dim=32, gen_dim=64, fac_dim=40)


def run(quick: bool = False, epochs: int | None = None, seed: int = 0, checkpoint_dir=None, save=None,
        cd_rate: float = 0.5, out=None) -> dict:
    d = load_lorenz_tutorial()
    dims = dict(ic_enc_dim=8, ic_dim=8, gen_dim=16, fac_dim=6) if quick else FULL
    cfg = LFADSConfig(data_dim=60, encod_seq_len=100, ci_enc_dim=0, con_dim=0, co_dim=0, **dims)
    hp = HParams.create(dropout_rate=0.05, cd_rate=cd_rate, kl_ic_scale=1e-5, kl_co_scale=0.0, l2_gen_scale=1e-4,
                        kl_increase_epoch=20, l2_increase_epoch=20)
    epochs = epochs if epochs is not None else (2 if quick else 800)
    tc = TrainConfig(learning_rate=1e-2, batch_size=32, n_epochs=epochs, lr_scheduler=True)
    tr = d["train"] if not quick else {k: v[:64] for k, v in d["train"].items()}
    va = d["valid"] if not quick else {k: v[:32] for k, v in d["valid"].items()}
    t0 = time.perf_counter()
    res = train(LFADS(cfg, key=jax.random.PRNGKey(seed)), {"data": tr["data"]}, {"data": va["data"]}, hp=hp,
                config=tc, key=jax.random.PRNGKey(seed + 1), checkpoint_dir=checkpoint_dir)
    train_s = time.perf_counter() - t0
    ns = 2 if quick else 50
    o_tr = infer(res.model, tr["data"], key=jax.random.PRNGKey(2), n_samples=ns)
    o_va = infer(res.model, va["data"], key=jax.random.PRNGKey(3), n_samples=ns)
    r2 = ridge_r2(o_tr["factors"], tr["lowd"], o_va["factors"], va["lowd"], alpha=0.01)
    if save is None and out is not None:
        save = str(Path(out) / "result")
    if save is not None:  # the training result (model, history) + posterior-averaged factors for later analysis
        res.save(f"{save}.h5")
        np.savez(f"{save}.npz", train_factors=o_tr["factors"], valid_factors=o_va["factors"])
    return {"heldout_ridge_r2_xyz": [float(v) for v in r2], "epochs": res.n_epochs, "best_epoch": res.best_epoch,
            "train_seconds": round(train_s, 1), "total_seconds": round(time.perf_counter() - t0, 1),
            "devices": str(jax.devices())}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny model, 2 epochs on 64 trials (smoke test)")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs; None: 800, or 2 with --quick")
    ap.add_argument("--seed", type=int, default=0, help="seed of the model and training keys")
    ap.add_argument("--checkpoint-dir", default=None, help="checkpoint folder; rerunning resumes")
    ap.add_argument("--out", default="out/examples/lfads_lorenz",
                    help="output folder: summary.json, result.h5 (LFADSTrainResult) and result.npz (factors)")
    ap.add_argument("--save", default=None, help="path prefix: writes PREFIX.h5 and PREFIX.npz instead of OUT/result.h5 and OUT/result.npz")
    ap.add_argument("--cd-rate", type=float, default=0.5, help="coordinated-dropout rate")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = run(a.quick, a.epochs, a.seed, a.checkpoint_dir, a.save, a.cd_rate, out=out)
    save_json(out / "summary.json", summary)
    print(json.dumps(summary, indent=1))
