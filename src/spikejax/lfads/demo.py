"""LFADS part of ``spikejax demo``: train on the bundled Lorenz tutorial data, map factors to latents."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["run", "R2_TARGET"]

#: Mean held-out ridge R² (over x, y, z) below which the demo warns that the factors miss the latents
#: (the default 25-epoch run reaches about 0.5, the quick run about 0).
R2_TARGET = 0.3


def run(out_dir: Path, *, quick: bool, seed: int) -> dict:
    """Train a small autonomous LFADS on the bundled Lorenz spikes; plot inferred vs true latent trajectories.

    ``quick``: tiny model, 2 epochs on 64 trials (smoke run). Otherwise a short training (about a
    minute on 2 CPU cores), far from the converged acceptance run (see ``examples/lfads_lorenz.py``).
    Writes ``lfads_latents.png`` (true vs ridge-mapped trajectories of held-out trials),
    ``lfads_history.csv`` and ``lfads_summary.json``; returns the held-out ridge R² per latent.
    """
    import jax
    from matplotlib.figure import Figure  # no pyplot: the demo never selects a backend

    from ..core.io import atomic_open, save_figure, save_json
    from .data import load_lorenz_tutorial
    from .evaluate import ridge_fit, ridge_predict, ridge_r2
    from .inference import infer
    from .model import LFADS, HParams, LFADSConfig
    from .records import plot_factors
    from .training import TrainConfig, train

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    d = load_lorenz_tutorial()
    n_tr = 64 if quick else 320
    tr = {k: v[:n_tr] for k, v in d["train"].items()}
    va = {k: v[: 32 if quick else 160] for k, v in d["valid"].items()}
    cfg = LFADSConfig(data_dim=60, encod_seq_len=100, ic_enc_dim=8 if quick else 24, ci_enc_dim=0, con_dim=0,
                      co_dim=0, ic_dim=8 if quick else 16, gen_dim=16 if quick else 48, fac_dim=6 if quick else 20,
                      dt=d["dt"])
    hp = HParams.create(dropout_rate=0.05, kl_ic_scale=1e-5, kl_co_scale=0.0, l2_gen_scale=1e-4,
                        kl_increase_epoch=5, l2_increase_epoch=5)
    tc = TrainConfig(learning_rate=1e-2, batch_size=32, n_epochs=2 if quick else 25, lr_scheduler=False)
    res = train(LFADS(cfg, key=jax.random.PRNGKey(seed)), {"data": tr["data"]}, {"data": va["data"]}, hp=hp,
                config=tc, key=jax.random.PRNGKey(seed + 1), progress=False)
    ns = 2 if quick else 10
    o_tr = infer(res.model, tr["data"], key=jax.random.PRNGKey(seed + 2), n_samples=ns)
    o_va = infer(res.model, va["data"], key=jax.random.PRNGKey(seed + 3), n_samples=ns)
    r2 = ridge_r2(o_tr["factors"], tr["lowd"], o_va["factors"], va["lowd"])
    w, b = ridge_fit(o_tr["factors"], tr["lowd"])
    pred = ridge_predict(o_va["factors"], w, b)

    fig = Figure(figsize=(13, 4))
    ax = fig.add_subplot(1, 3, 1, projection="3d")
    for i in range(3):
        ax.plot(*va["lowd"][i].T, color=f"C{i}", lw=1)
        ax.plot(*pred[i].T, color=f"C{i}", lw=1, ls="--")
    ax.set_title("Lorenz latents: true (—) vs from LFADS factors (--)", fontsize=8)
    ax2 = fig.add_subplot(1, 3, 2)
    t = np.arange(va["lowd"].shape[1]) * d["dt"]
    for j, name in enumerate("xyz"):
        ax2.plot(t, va["lowd"][0, :, j] + 4 * j, color="k", lw=1)
        ax2.plot(t, pred[0, :, j] + 4 * j, color=f"C{j}", lw=1, ls="--", label=f"{name}: R²={r2[j]:.2f}")
    ax2.set_xlabel("time (ms)")
    ax2.legend(fontsize=7)
    ax2.set_title("held-out trial 0", fontsize=8)
    ax3 = plot_factors(np.swapaxes(o_va["factors"], 0, 1), dt=d["dt"], ax=fig.add_subplot(1, 3, 3))
    ax3.set_title("LFADS factors, held-out trial 0", fontsize=8)
    save_figure(fig, out_dir / "lfads_latents.png", dpi=100)
    with atomic_open(out_dir / "lfads_history.csv", "w") as f:
        keys = ["epoch", "loss", "train/recon", "valid/recon", "valid/recon_smth"]
        res.history[keys].to_csv(f, index=False, float_format="%.6g")
    mean_r2 = float(np.mean(np.asarray(r2, dtype=float)))
    met = bool(np.isfinite(mean_r2) and mean_r2 >= R2_TARGET)
    if not met:
        from ..core.errors import warn_target_missed

        warn_target_missed(f"lfads demo{' (quick run: 2 epochs, a tiny model)' if quick else ''}: mean held-out "
                           f"ridge R² {mean_r2:.3f} is below {R2_TARGET}; the factors do not carry the Lorenz "
                           f"latents yet (train longer: examples/lfads_lorenz.py)", stacklevel=2)
    summary = {"ridge_r2_xyz": [round(float(v), 4) for v in r2], "mean_ridge_r2": round(mean_r2, 4),
               "target_ridge_r2": R2_TARGET, "target_met": met, "epochs": res.n_epochs,
               "train_seconds": round(res.seconds, 1), "total_seconds": round(time.perf_counter() - t0, 1)}
    save_json(out_dir / "lfads_summary.json", summary)
    return summary
