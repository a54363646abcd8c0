"""Optional Ray Tune PBT backend on a local Ray instance (skipped when Ray is not installed)."""

import jax
import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.tune")

from spikejax.lfads import HParams, LFADSConfig, TrainConfig, generate_lorenz_dataset  # noqa: E402
from spikejax.lfads import PBTConfig, SearchParam  # noqa: E402
from spikejax.lfads import pbt_ray  # noqa: E402
from spikejax.lfads.ray_backend import _explore_fn, _initial_values  # noqa: E402


def test_ray_explore_and_initial_values_use_the_pbt_vocabulary():
    space = (SearchParam("learning_rate", 1e-4, 1e-2, init=1e-3, explore_param=0.3),
             SearchParam("kl_ic_scale", 1e-6, 1e-3, explore_param=0.8, enforce_limits=False),
             SearchParam("dropout_rate", 0.0, 0.6, "rand", explore_method="resample"))
    pc = PBTConfig(n_workers=4, explore_param=0.8)
    rows = _initial_values(space, pc, TrainConfig(), 3)
    assert [r["_worker"] for r in rows] == [0, 1, 2, 3] and all(r["learning_rate"] == 1e-3 for r in rows)
    assert all(1e-6 <= r["kl_ic_scale"] <= 1e-3 for r in rows)
    new = _explore_fn(space, pc, 3)({"hp": rows[0]})["hp"]
    assert 0.7e-3 < new["learning_rate"] < 1.3e-3 and new["learning_rate"] != 1e-3  # perturb p = 0.3
    assert 0.2 * rows[0]["kl_ic_scale"] < new["kl_ic_scale"] < 1.8 * rows[0]["kl_ic_scale"]
    assert 0.0 <= new["dropout_rate"] <= 0.6 and new["_worker"] == 0


@pytest.mark.slow
def test_pbt_ray_local_instance(tmp_path):
    """Two Ray Tune trials, three 1-epoch generations with binary-tournament exploit (about 3 min on
    2 cores: every restarted trial is a fresh process that re-imports JAX and recompiles)."""
    d = generate_lorenz_dataset(n_conditions=4, trials_per_condition=5, n_neurons=6, n_steps=200, dt=20, key=jax.random.key(1))
    cfg = LFADSConfig(data_dim=6, encod_seq_len=10, ic_enc_dim=4, ci_enc_dim=0, con_dim=0, co_dim=0, ic_dim=3,
                      gen_dim=8, fac_dim=3)
    space = (SearchParam("learning_rate", 1e-3, 3e-2, init=1e-2, explore_param=0.3),
             SearchParam("kl_ic_scale", 1e-6, 1e-3, explore_param=0.8, enforce_limits=False))
    pc = PBTConfig(n_workers=2, epochs_per_generation=1, max_generations=3, burn_in_epochs=0,
                   n_no_best_to_stop=2, percent_change_to_stop=0.0)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        r = pbt_ray(cfg, {"data": d["train"]["data"]}, {"data": d["valid"]["data"]},
                    hp=HParams.create(kl_increase_epoch=1, l2_increase_epoch=1, kl_co_scale=0.0),
                    train_config=TrainConfig(batch_size=8), pbt_config=pc, search_space=space,
                    storage_path=tmp_path / "ray", key=jax.random.key(0))
    finally:
        ray.shutdown()
    assert r.n_generations == 3 and list(r.history["generation"]) == [1, 2, 3]
    assert np.all(np.isfinite(r.history["best"])) and len(r.workers) == 2
    assert r.stop_reason in ("completed", "converged")
    assert 1e-3 * 0.69 <= r.lr <= 3e-2 and float(r.hp.kl_ic_scale) > 0
    assert np.isfinite(np.asarray(r.model.readout.weight)).all()
