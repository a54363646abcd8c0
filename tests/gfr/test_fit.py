"""Fitting: parameter recovery, the synthetic bank, fit_cells == fit_cell, checkpoint/resume, bad inputs."""

import copy

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spikejax import ConfigError, DataFormatError, NonFiniteError, SpikejaxError
from spikejax.core import evr
from spikejax.gfr import (
    GFR,
    FitConfig,
    PolynomialActivation,
    decay_rates,
    evaluate,
    fit_alpha_beta,
    fit_cell,
    fit_cells,
    kernels,
    masked_evr,
    prepare_cell,
    simulate_rates,
)
from spikejax.gfr.fit import _Interrupted, stage2_loss

SMALL = dict(activation_n_epochs=300, learning_rates=(1e-2, 1e-3, 1e-4), n_epochs=(60, 60, 60))
KEY = jax.random.key(0)


def _true_model(bin_size=100):
    lam = decay_rates(bin_size)
    n = len(lam)
    g = PolynomialActivation(jnp.asarray([0.1, 2.0]), jnp.asarray(50.0), jnp.asarray(200.0), jnp.asarray(0.1), bin_size)
    alpha = np.zeros(n)
    alpha[:4] = [0.6 * n, 0.8, 0.6, 0.4]
    beta = np.zeros(n)
    beta[:4] = [0.0, -0.1, -0.15, -0.05]
    return GFR(alpha, beta, lam, g, bin_size)


def _noise_current(n_sweeps=2, n_bins=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_sweeps, n_bins))
    k = np.exp(-np.arange(10) / 3.0)
    x = np.stack([np.convolve(row, k)[:n_bins] for row in x])
    return 80.0 + 120.0 * x / x.std()


@pytest.mark.requires_x64
def test_parameter_recovery_kernels_bfgs():
    """Acceptance 3: known alpha, beta driven by noise; the fitted kernels k_I, k_f are within 5 %
    (relative L2) of the truth and EVR > 0.95 on the noiseless rates."""
    true = _true_model()
    cur = jnp.asarray(_noise_current())
    rate = simulate_rates(true, cur)
    assert 0.1 < float(jnp.mean(rate == 0)) < 0.6  # both rectified and driven bins
    res = fit_alpha_beta(GFR.init(true.g, 100), cur, rate, method="bfgs", n_epochs=1000)
    length = 100
    ki, kf = kernels(true, length)
    ki_hat, kf_hat = kernels(res.model, length)
    err_i = float(jnp.linalg.norm(ki_hat - ki) / jnp.linalg.norm(ki))
    err_f = float(jnp.linalg.norm(kf_hat - kf) / jnp.linalg.norm(kf))
    assert err_i < 0.05 and err_f < 0.05, (err_i, err_f)
    held_out = jnp.asarray(_noise_current(1, 300, seed=5))[0]
    assert float(evr(simulate_rates(res.model, held_out), simulate_rates(true, held_out)[None])) > 0.95


def test_adam_stage2_fits_noiseless_rates():
    """GRNN's optimiser (Adam) on the same problem: EVR > 0.95 on held-out noiseless rates."""
    true = _true_model()
    cur = jnp.asarray(_noise_current(), jnp.float32)
    rate = simulate_rates(true, cur)
    res = fit_alpha_beta(GFR.init(true.g, 100), cur, rate, learning_rate=0.02, n_epochs=400)
    assert res.history["per_bin"].iloc[-1] < res.history["per_bin"].iloc[0]
    held_out = jnp.asarray(_noise_current(1, 300, seed=5), jnp.float32)[0]
    assert float(evr(simulate_rates(res.model, held_out), simulate_rates(true, held_out)[None])) > 0.95
    np.testing.assert_array_equal(res.model.g.poly_coeff, true.g.poly_coeff)  # g frozen by the filter spec
    np.testing.assert_array_equal(res.model.decay, true.decay)


@pytest.fixture(scope="module")
def bank_fit(gfr_bank):
    _, cells = gfr_bank
    return fit_cells(cells, FitConfig(**SMALL), key=KEY)


def test_bank_fit_noise2_evr_and_selection(bank_fit, gfr_bank):
    """Acceptance 4 (fast version; the full default schedule is the slow test below)."""
    table = bank_fit.table
    assert list(table["cell_id"]) == [c.cell_id for c in gfr_bank[1]]
    n_good = int((table["test_evr"] > 0.5).sum())
    assert n_good >= 3, table[["cell_id", "val_evr", "test_evr", "train_loss"]]
    # the release criteria as in the original: val_evr > 0.5 and train_loss < 0.45
    np.testing.assert_array_equal(table["selected"], (table["val_evr"] > 0.5) & (table["train_loss"] < 0.45))
    # the best learning rate is the one with the best Noise-1 EVR
    lrs = [1e-2, 1e-3, 1e-4]
    for _, row in table.iterrows():
        vals = [row[f"val_evr@{lr:g}"] for lr in lrs]
        assert row["best_lr"] == lrs[int(np.nanargmax(vals))]
    assert len(bank_fit.records) == 4 and bank_fit.records[0]["params"]["g.bin_size"] == 20
    assert bank_fit.history.groupby(["cell_id", "learning_rate"]).ngroups == 12 and bank_fit.history["epoch"].max() == 60
    for model in bank_fit.models:
        assert model.alpha.shape == (8,) and model.kappa == 1000.0
    # evaluate() reproduces the table; GRNN's round-to-counts option scores round(m dt)/dt
    cell, model = gfr_bank[1][3], bank_fit.models[3]
    ev = evaluate(model, cell, FitConfig())
    assert ev["test_evr"] == pytest.approx(float(table["test_evr"].iloc[3]), rel=1e-4)
    trials = np.stack([s.binned[20][1] for s in cell.by_stimulus("Noise 2")])
    m = np.asarray(simulate_rates(model, jnp.asarray(cell.by_stimulus("Noise 2")[0].binned[20][0], jnp.float32)))
    want = float(evr(jnp.asarray(np.round(m * 20) / 20), jnp.asarray(trials)))
    assert evaluate(model, cell, FitConfig(round_counts=True))["test_evr"] == pytest.approx(want, rel=1e-4, abs=1e-6)


@pytest.mark.requires_x64
def test_fit_cells_equals_one_cell_core_fit(gfr_bank):
    """fit_cells (padded, vmapped over cells and learning rates) gives each cell's own fit
    (fit_cell, one core.fit per restart) to float64 precision."""
    cells = gfr_bank[1][:2]
    cfg = FitConfig(activation_n_epochs=40, activation_repeats=1, learning_rates=(1e-2,), n_epochs=(8,))
    res = fit_cells(cells, cfg, epochs_per_call=4, key=KEY)
    one = fit_cell(cells[1], cfg, key=KEY)
    model, summary = one.models[0], one.table.iloc[0]
    got = res.models[1]
    np.testing.assert_allclose(got.g.poly_coeff, model.g.poly_coeff, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.alpha, model.alpha, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.beta, model.beta, rtol=1e-9, atol=1e-12)
    row = res.table.iloc[1]
    assert row["val_evr"] == pytest.approx(summary["val_evr"], rel=1e-9)
    assert row["train_loss"] == pytest.approx(summary["train_loss"], rel=1e-9)
    assert row["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-9)


@pytest.mark.slow
@pytest.mark.requires_x64
def test_shared_and_per_batch_padding_and_chunks_agree(gfr_bank):
    """fit_cells(shared_padding=False) (each type-batch padded to its own shape) and chunked fits == the default."""
    cells = gfr_bank[1]
    cfg = FitConfig(activation_n_epochs=20, activation_repeats=1, learning_rates=(1e-2, 1e-3), n_epochs=(6, 6))
    a = fit_cells(cells, cfg, epochs_per_call=3, key=KEY)
    b = fit_cells(cells, cfg, epochs_per_call=3, shared_padding=False, key=KEY)
    for ma, mb in zip(a.models, b.models):
        np.testing.assert_allclose(mb.alpha, ma.alpha, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(mb.beta, ma.beta, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.history["loss"], a.history["loss"], rtol=1e-9)
    c = fit_cells(cells, cfg, epochs_per_call=3, chunk_size=3, key=KEY)  # chunks of 3 (last one padded)
    np.testing.assert_allclose(c.history["loss"], a.history["loss"], rtol=1e-9)
    assert list(c.table["cell_id"]) == list(a.table["cell_id"])
    np.testing.assert_allclose(c.table["test_evr"], a.table["test_evr"], rtol=1e-9)


def test_resume_after_interruption_gives_same_parameters(gfr_bank, tmp_path):
    """Acceptance 7: fit_cell interrupted after a checkpoint (core.fit) and resumed == uninterrupted."""
    cell = gfr_bank[1][0]
    cfg = FitConfig(activation_n_epochs=30, activation_repeats=1, learning_rates=(1e-2,), n_epochs=(10,))
    ref_res = fit_cell(cell, cfg, key=KEY)
    ref, ref_summary = ref_res.models[0], ref_res.table.iloc[0]
    with pytest.raises(_Interrupted):
        fit_cell(cell, cfg, key=KEY, checkpoint_dir=tmp_path / "ck", checkpoint_every=2, _stop_after=6)
    assert (tmp_path / "ck" / "stage2_0" / "latest.json").is_file()
    res2 = fit_cell(cell, cfg, key=KEY, checkpoint_dir=tmp_path / "ck", checkpoint_every=2)
    resumed, summary = res2.models[0], res2.table.iloc[0]
    np.testing.assert_array_equal(resumed.alpha, ref.alpha)
    np.testing.assert_array_equal(resumed.beta, ref.beta)
    np.testing.assert_array_equal(resumed.g.poly_coeff, ref.g.poly_coeff)
    assert summary["epochs"] == ref_summary["epochs"] and summary["train_loss"] == ref_summary["train_loss"]


@pytest.mark.slow
def test_fit_cells_resume(gfr_bank, tmp_path):
    """fit_cells' own checkpoints (every compiled call) resume to the uninterrupted result."""
    cells = gfr_bank[1][2:3]
    cfg = FitConfig(activation_n_epochs=20, activation_repeats=1, learning_rates=(1e-2, 1e-3), n_epochs=(9, 9))
    ref = fit_cells(cells, cfg, epochs_per_call=3, checkpoint_dir=tmp_path / "ref", key=KEY)  # uninterrupted
    with pytest.raises(_Interrupted):
        fit_cells(cells, cfg, epochs_per_call=3, checkpoint_dir=tmp_path / "ck", _stop_after=2, key=KEY)
    res = fit_cells(cells, cfg, epochs_per_call=3, checkpoint_dir=tmp_path / "ck", key=KEY)
    np.testing.assert_array_equal(res.models[0].alpha, ref.models[0].alpha)
    np.testing.assert_array_equal(res.models[0].beta, ref.models[0].beta)
    np.testing.assert_array_equal(res.history["loss"], ref.history["loss"])
    with pytest.raises(ConfigError, match="another configuration"):
        fit_cells(cells, FitConfig(activation_n_epochs=21, activation_repeats=1, learning_rates=(1e-2,), n_epochs=(9,)), checkpoint_dir=tmp_path / "ck", key=KEY)


def test_C_penalty_has_no_effect_on_gradients():
    true = _true_model()
    cur = jnp.asarray(_noise_current(1, 50), jnp.float32)
    batch = {"current": cur, "rate": simulate_rates(true, cur) * 0.9, "n_sweeps": 1, "n_bins": 50, "dt": 100.0}
    model = GFR.init(true.g, 100)

    @eqx.filter_jit
    def value_and_grad(m, c):
        return eqx.filter_value_and_grad(lambda mm: stage2_loss(mm, batch, C=c)[0])(m)

    l0, g0 = value_and_grad(model, 0.0)
    l5, g5 = value_and_grad(model, 5.0)
    np.testing.assert_array_equal(g0.alpha, g5.alpha)
    np.testing.assert_array_equal(g0.beta, g5.beta)
    assert float(l5 - l0) == pytest.approx(5.0 * 1)  # one non-zero alpha entry at initialisation


def test_masked_evr_equals_core_evr_on_unpadded_data():
    rng = np.random.default_rng(0)
    trials = rng.poisson(2.0, (3, 40)).astype(float)
    model = trials.mean(0) + rng.normal(0, 0.3, 40)
    want = float(jax.jit(evr)(jnp.asarray(model), jnp.asarray(trials)))
    padded = np.zeros((5, 55))
    padded[:3, :40] = trials
    got = jax.jit(masked_evr)(jnp.asarray(np.r_[model, np.ones(15)]), jnp.asarray(padded), jnp.asarray([1, 1, 1, 0, 0], bool), 40)
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_fit_bad_inputs(gfr_bank, tmp_path):
    """Acceptance 6 for fitting: negative rates, NaN, missing Noise 2, unknown (dt, dt'), bad config."""
    cell = copy.deepcopy(gfr_bank[1][0])
    with pytest.raises(ConfigError, match=r"FitConfig.dt must be one of"):
        FitConfig(dt=30, activation_dt=20)
    with pytest.raises(DataFormatError, match="no 50 ms binning"):
        prepare_cell(cell, FitConfig(dt=50, activation_dt=100))
    bad = copy.deepcopy(cell)
    cur, rate = bad.by_stimulus("Ramp")[0].binned[20]
    bad.by_stimulus("Ramp")[0].binned[20] = (cur, rate - 1.0)
    with pytest.raises(DataFormatError, match="rates must be >= 0"):
        prepare_cell(bad, FitConfig())
    bad = copy.deepcopy(cell)
    cur, rate = bad.by_stimulus("Noise 1")[0].binned[20]
    bad.by_stimulus("Noise 1")[0].binned[20] = (cur * np.nan, rate)
    with pytest.raises(NonFiniteError, match="finite"):
        prepare_cell(bad, FitConfig())
    bad = copy.deepcopy(cell)
    bad.sweeps = [s for s in bad.sweeps if s.stimulus_name != "Noise 2"]
    with pytest.raises(DataFormatError, match="Noise 2"):
        prepare_cell(bad, FitConfig())
    with pytest.raises(SpikejaxError, match="rate"):
        fit_alpha_beta(_true_model(), jnp.ones((1, 10)), -jnp.ones((1, 10)))
    (tmp_path / "cfg.json").write_text('{"hparams": [{"lr": 0.01, "epochs": 5}')
    with pytest.raises(DataFormatError, match="cfg.json"):
        FitConfig.from_json(tmp_path / "cfg.json")
    (tmp_path / "cfg2.json").write_text('{"hparams": [{"lr": -1, "epochs": 5}], "finetune": false}')
    with pytest.raises(ConfigError, match="hparams"):
        FitConfig.from_json(tmp_path / "cfg2.json")
    with pytest.raises(ConfigError, match="at least one cell"):
        fit_cells([], key=KEY)


@pytest.mark.slow
def test_bank_default_schedule_slow(tmp_path):
    """Acceptance 4, full version: 8 synthetic cells (full-length protocol, 10 kHz) with GRNN's
    default schedule (1000 activation epochs x 3 restarts, lr 1e-2/1e-3/1e-4 x 200 epochs)."""
    from spikejax.gfr import make_cell_bank, preprocess_nwb

    paths = make_cell_bank(tmp_path, 8, key=jax.random.key(3))
    cells = [preprocess_nwb(p, bin_sizes=(20,)) for p in paths]
    res = fit_cells(cells, FitConfig(), key=KEY)
    print(res.table[["cell_id", "val_evr", "test_evr", "train_loss", "test_loss", "best_lr", "selected"]])
    assert (res.table["test_evr"] > 0.5).sum() >= 5
    np.testing.assert_array_equal(res.table["selected"], (res.table["val_evr"] > 0.5) & (res.table["train_loss"] < 0.45))


def test_fit_result_table_save_load(bank_fit, tmp_path):
    """GFRFitResult: one row per cell, a long history, save -> load gives the same models and tables."""
    from spikejax.core import Result, StopReason
    from spikejax.gfr import GFRFitResult

    assert isinstance(bank_fit, Result) and isinstance(bank_fit.stop_reason, StopReason)
    assert bank_fit.model.alpha.shape == (4, 8) and bank_fit.seconds > 0
    assert list(bank_fit.history.columns) == ["epoch", "cell_id", "learning_rate", "loss"]
    back = GFRFitResult.load(bank_fit.save(tmp_path / "fit.h5"))
    np.testing.assert_array_equal(back.model.alpha, bank_fit.model.alpha)
    np.testing.assert_array_equal(back.model.g.poly_coeff, bank_fit.model.g.poly_coeff)
    assert back.config == bank_fit.config and back.stop_reason == bank_fit.stop_reason
    assert back.to_pandas().equals(bank_fit.to_pandas()) and back.records == bank_fit.records
