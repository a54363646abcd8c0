"""Population-based training: host-side rules (fast) and the vmapped/sharded population (slow, acceptance 3)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from spikejax.lfads.population import DEFAULT_SEARCH_SPACE, exploit_binary_tournament, improvement_ratio_stop, perturb


def test_binary_tournament_losers_copy_winners():
    rng = np.random.default_rng(0)
    metric = np.array([5.0, 1.0, np.nan, 3.0, 2.0, 4.0, 0.5, 6.0])
    for _ in range(20):
        src = exploit_binary_tournament(metric, rng)
        changed = np.flatnonzero(src != np.arange(8))
        assert len(changed) == 4  # one loser per pair
        for w in changed:
            s = src[w]
            assert src[s] == s  # winners keep themselves
            score = np.where(np.isfinite(metric), metric, np.inf)
            assert score[s] <= score[w]
        assert src[2] != 2  # NaN always loses
    # odd population: the unpaired worker is untouched
    src = exploit_binary_tournament(np.array([1.0, 2.0, 3.0]), rng)
    assert (src != np.arange(3)).sum() == 1


def test_perturb_ranges_and_limits():
    rng = np.random.default_rng(1)
    vals = np.array([perturb(1.0, 0.8, rng, enforce_limits=False) for _ in range(2000)])
    assert vals.min() > 0.2 - 1e-12 and vals.max() < 1.8 + 1e-12
    assert np.all(np.abs(vals - 1.0) >= 2 * 0.8 * 0.001 - 1e-12)
    assert vals.min() < 0.3 and vals.max() > 1.7
    lim = [perturb(0.55, 0.3, rng, low=0.0, high=0.6) for _ in range(500)]
    assert max(lim) <= 0.6 and min(lim) >= 0.0 and np.isclose(max(lim), 0.6)


def test_improvement_ratio_stopper():
    assert not improvement_ratio_stop([1.0, 0.9, 0.8], 4, 5e-4)
    assert not improvement_ratio_stop([1.0, 0.9, 0.8, 0.7], 4, 5e-4)
    assert improvement_ratio_stop([1.0, 0.7, 0.7, 0.7, 0.7], 4, 5e-4)
    assert improvement_ratio_stop([0.7, 0.7, 0.70001, 0.69999], 4, 5e-4)


def test_default_search_space_matches_spec():
    d = {s.name: s for s in DEFAULT_SEARCH_SPACE}
    assert (d["learning_rate"].low, d["learning_rate"].high, d["learning_rate"].init) == (1e-5, 5e-3, 4e-3)
    assert (d["cd_rate"].low, d["cd_rate"].high, d["cd_rate"].init) == (0.01, 0.7, 0.5)
    assert d["kl_co_scale"].explore_param == 0.8 and not d["kl_co_scale"].enforce_limits
    assert d["dropout_rate"].sampling == "rand" and d["l2_gen_scale"].sampling == "logrand"


PBT_SCRIPT = textwrap.dedent(
    """
    import json, sys, jax, numpy as np
    from spikejax.lfads import HParams, LFADSConfig, PBTConfig, TrainConfig, generate_lorenz_dataset, pbt
    d = generate_lorenz_dataset(n_conditions=8, trials_per_condition=6, n_neurons=10, n_steps=400, dt=20, key=jax.random.key(0))
    cfg = LFADSConfig(data_dim=10, encod_seq_len=20, ic_enc_dim=6, ci_enc_dim=0, con_dim=0, co_dim=0, ic_dim=4,
                      gen_dim=12, fac_dim=4)
    hp = HParams.create(kl_increase_epoch=2, l2_increase_epoch=2)
    r = pbt(cfg, {"data": d["train"]["data"]}, {"data": d["valid"]["data"]}, hp=hp,
            train_config=TrainConfig(batch_size=19),
            pbt_config=PBTConfig(n_workers=16, epochs_per_generation=4, max_generations=int(sys.argv[1]),
                                 burn_in_epochs=0, n_no_best_to_stop=3, percent_change_to_stop=0.0),
            key=jax.random.PRNGKey(0))
    w = r.workers
    col = lambda c: w.pivot(index="generation", columns="worker", values=c).to_numpy().tolist()
    print(json.dumps({"devices": jax.local_device_count(), "metric": col("metric"),
                      "best": r.history["best"].tolist(), "source": col("source"),
                      "lr": col("hp/learning_rate")}))
    """
)


def _run_pbt(n_dev, generations):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_dev}"
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-c", PBT_SCRIPT, str(generations)], env=env, capture_output=True,
                         text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_pbt_16_workers_improves_and_sharded_equals_unsharded():
    one = _run_pbt(1, 5)
    four = _run_pbt(4, 5)
    assert one["devices"] == 1 and four["devices"] == 4
    metric = np.asarray(one["metric"])
    assert metric.shape == (5, 16)
    # the population's best after PBT beats the best worker after the first generation
    assert np.nanmin(metric[-1]) < np.nanmin(metric[0])
    # exploit happened and losers took winners' hyperparameters (then explored them)
    src = np.asarray(one["source"])
    assert (src[0] != np.arange(16)).sum() == 8
    # sharded over 4 host devices: same decisions and the same numbers
    np.testing.assert_array_equal(np.asarray(four["source"]), src)
    np.testing.assert_allclose(np.asarray(four["metric"]), metric, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(four["lr"]), np.asarray(one["lr"]), rtol=1e-6)


@pytest.mark.slow
def test_ray_trial_generations_run_on_core_fit(monkeypatch):
    """A Ray Tune trial without Ray (a stand-in for ``ray.tune``): each generation is one core.fit call that
    continues the epoch clock (KL/L2 ramps) and the smoothed metric, and reports once."""
    import importlib
    import types

    import jax

    from spikejax.lfads import HParams, LFADSConfig, PBTConfig, TrainConfig, generate_lorenz_dataset

    pr = importlib.import_module("spikejax.lfads.ray_backend")
    reports = []

    class Done(Exception):
        pass

    def report(metrics, checkpoint=None):
        reports.append(metrics)
        if len(reports) == 2:
            raise Done

    fake = types.SimpleNamespace(get_checkpoint=lambda: None, report=report,
                                 get_context=lambda: types.SimpleNamespace(get_trial_id=lambda: "t0"),
                                 Checkpoint=types.SimpleNamespace(from_directory=lambda d: d))
    monkeypatch.setattr(pr, "_import_ray", lambda: (None, fake))
    d = generate_lorenz_dataset(n_conditions=4, trials_per_condition=5, n_neurons=6, n_steps=200, dt=20, key=jax.random.key(1))
    cfg = LFADSConfig(data_dim=6, encod_seq_len=10, ic_enc_dim=4, ci_enc_dim=0, con_dim=0, co_dim=0, ic_dim=3,
                      gen_dim=8, fac_dim=3)
    base = HParams.create(kl_increase_epoch=1, l2_increase_epoch=1, kl_co_scale=0.0)
    payload = {"model_config": cfg, "train_config": TrainConfig(batch_size=8, lr_scheduler=False),
               "pbt_config": PBTConfig(n_workers=2, epochs_per_generation=2),
               "base_hp": {f: float(getattr(base, f)) for f in HParams.__dataclass_fields__},
               "train": {"data": np.asarray(d["train"]["data"])}, "valid": {"data": np.asarray(d["valid"]["data"])}}
    with pytest.raises(Done):
        pr._worker({"hp": {"learning_rate": 1e-2, "kl_ic_scale": 1e-4, "_worker": 0}}, payload)
    assert [r["epoch"] for r in reports] == [2, 4]
    assert all(np.isfinite(r["metric"]) and np.isfinite(r["train_loss"]) for r in reports)
    assert reports[1]["metric"] < reports[0]["metric"]


@pytest.mark.slow
def test_ray_trial_resumes_from_its_core_checkpoint(monkeypatch, tmp_path):
    """The trial's Ray Tune checkpoint is core's checkpoint (save_checkpoint/load_checkpoint): a trial
    restarted from it continues the epoch clock and the smoothed metric."""
    import contextlib
    import importlib
    import shutil
    import types

    import jax

    from spikejax.lfads import HParams, LFADSConfig, PBTConfig, TrainConfig, generate_lorenz_dataset

    pr = importlib.import_module("spikejax.lfads.ray_backend")
    reports, kept = [], tmp_path / "kept"

    class Done(Exception):
        pass

    def report(metrics, checkpoint=None):
        reports.append(metrics)
        if kept.exists():
            shutil.rmtree(kept)
        shutil.copytree(checkpoint, kept)
        raise Done

    class Ckpt:
        @contextlib.contextmanager
        def as_directory(self):
            yield str(kept)

    state = {"ckpt": None}
    fake = types.SimpleNamespace(get_checkpoint=lambda: state["ckpt"], report=report,
                                 get_context=lambda: types.SimpleNamespace(get_trial_id=lambda: "t0"),
                                 Checkpoint=types.SimpleNamespace(from_directory=lambda d: d))
    monkeypatch.setattr(pr, "_import_ray", lambda: (None, fake))
    d = generate_lorenz_dataset(n_conditions=4, trials_per_condition=5, n_neurons=6, n_steps=200, dt=20, key=jax.random.key(1))
    cfg = LFADSConfig(data_dim=6, encod_seq_len=10, ic_enc_dim=4, ci_enc_dim=0, con_dim=0, co_dim=0, ic_dim=3,
                      gen_dim=8, fac_dim=3)
    base = HParams.create(kl_increase_epoch=1, l2_increase_epoch=1, kl_co_scale=0.0)
    payload = {"model_config": cfg, "train_config": TrainConfig(batch_size=8, lr_scheduler=False),
               "pbt_config": PBTConfig(n_workers=2, epochs_per_generation=2),
               "base_hp": {f: float(getattr(base, f)) for f in HParams.__dataclass_fields__},
               "train": {"data": np.asarray(d["train"]["data"])}, "valid": {"data": np.asarray(d["valid"]["data"])}}
    config = {"hp": {"learning_rate": 1e-2, "kl_ic_scale": 1e-4, "_worker": 0}}
    with pytest.raises(Done):
        pr._worker(config, payload)
    assert (kept / "latest.json").is_file() and reports[0]["epoch"] == 2
    state["ckpt"] = Ckpt()
    with pytest.raises(Done):
        pr._worker(config, payload)
    assert reports[1]["epoch"] == 4 and np.isfinite(reports[1]["metric"])
