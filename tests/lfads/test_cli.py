"""``spikejax lfads train | infer | evaluate`` end to end on a tiny file, and config errors."""

import json

import jax
import numpy as np
import pytest

from spikejax.cli import main
from spikejax.core.errors import ConfigError
from spikejax.lfads import generate_lorenz_dataset, save_lfads_h5
from spikejax.lfads.config import load_lfads, parse_config

YAML = """
ic_enc_dim: 4
ci_enc_dim: 3
con_dim: 3
co_dim: 1
ic_dim: 3
gen_dim: 8
fac_dim: 3
keep_prob: 0.95
keep_ratio: 0.7
kl_increase_epoch: 2
l2_increase_epoch: 2
learning_rate: 0.01
batch_size: 8
n_epochs: 2
"""


def test_cli_train_infer_evaluate(tmp_path, capsys):
    d = generate_lorenz_dataset(n_conditions=4, trials_per_condition=5, n_neurons=6, n_steps=200, dt=20, key=jax.random.key(1))
    h5 = save_lfads_h5(tmp_path / "d.h5", {"data": d["train"]["data"], "truth": d["train"]["truth"]},
                       {"data": d["valid"]["data"], "truth": d["valid"]["truth"]},
                       {"train_latents": d["train"]["latents"], "valid_latents": d["valid"]["latents"],
                        "conversion_factor": 1000.0 / 20.0})
    (tmp_path / "c.yaml").write_text(YAML)
    assert main(["lfads", "train", str(tmp_path / "c.yaml"), str(h5), "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs"] == 2
    model, hp, meta = load_lfads(tmp_path / "run" / "model.eqx")
    assert model.config.gen_dim == 8 and np.isclose(float(hp.dropout_rate), 0.05) and np.isclose(float(hp.cd_rate), 0.3)
    assert main(["lfads", "infer", str(tmp_path / "run" / "model.eqx"), str(h5), "--out", str(tmp_path / "r.h5"),
                 "--n-samples", "2"]) == 0
    capsys.readouterr()
    assert main(["lfads", "evaluate", str(tmp_path / "r.h5"), str(h5), "--out", str(tmp_path / "m.json")]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert np.isfinite(m["valid_bits_per_spike"]) and len(m["ridge_r2_factors_to_latents"]) == 3
    # bad configuration -> exit code 2 and a message naming the key
    (tmp_path / "bad.yaml").write_text("gen_dims: 8\n")
    assert main(["lfads", "train", str(tmp_path / "bad.yaml"), str(h5), "--out", str(tmp_path / "x")]) == 2
    assert "gen_dims" in capsys.readouterr().err


def test_parse_config_errors():
    with pytest.raises(ConfigError, match="data_dim"):
        parse_config({"gen_dim": 4})
    with pytest.raises(ConfigError, match="ic_enc_seq_len"):
        parse_config({"ic_enc_seq_len": 5}, data_shape=(1, 10, 3))
    with pytest.raises(ConfigError, match="search_space"):
        parse_config({"search_space": [{"name": "lr_init"}]}, data_shape=(1, 10, 3))
    c = parse_config({"n_workers": 8, "explore_method": "resample", "search_space": [
        {"name": "cd_rate", "low": 0.1, "high": 0.5, "sampling": "rand"}]}, data_shape=(1, 10, 3))
    assert c["pbt"].n_workers == 8 and c["search_space"][0].name == "cd_rate" and c["model"].data_dim == 3
    # renamed keys name their new spelling; numbers are checked once, at construction
    for old, new in (("lr_init", "learning_rate"), ("max_epochs", "n_epochs"), ("bin_ms", "dt")):
        with pytest.raises(ConfigError, match=new):
            parse_config({old: 1}, data_shape=(1, 10, 3))
    with pytest.raises(ConfigError, match="batch_size"):
        parse_config({"batch_size": "8"}, data_shape=(1, 10, 3))
    with pytest.raises(ConfigError, match="adam_beta1"):
        parse_config({"adam_beta1": 1.0}, data_shape=(1, 10, 3))


def test_cli_evaluate_finds_the_truth_in_the_bundled_lorenz_layout(tmp_path, capsys):
    """cond_truth / cond_lowd per condition, trial i in condition inds[i] // n_trials_per_init_cond."""
    from spikejax.lfads import load_lorenz_tutorial

    d = load_lorenz_tutorial()
    # a perfect "model": the true expected counts per 10-ms bin as rates, the latents as factors
    pred = save_lfads_h5(tmp_path / "pred.h5", {"data": d["train"]["truth"] / 100.0}, {"data": d["valid"]["truth"] / 100.0},
                         {"train_factors": d["train"]["lowd"], "valid_factors": d["valid"]["lowd"]})
    capsys.readouterr()
    assert main(["lfads", "evaluate", str(pred), "bundled", "--out", str(tmp_path / "m.json")]) == 0
    captured = capsys.readouterr()
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["conversion_factor"] == 100.0 and m["valid_rate_r2"] > 0.999 and m["valid_rate_r2_calibrated"] > 0.999
    assert min(m["ridge_r2_factors_to_lowd"]) > 0.999 and len(m["ridge_r2_rates_to_lowd"]) == 3
    assert np.isfinite(m["valid_bits_per_spike"]) and "rate R²" in captured.err
    # without truth, it says so (and still reports bits/spike)
    bare = save_lfads_h5(tmp_path / "bare.h5", {"data": d["train"]["data"]}, {"data": d["valid"]["data"]})
    assert main(["lfads", "evaluate", str(pred), str(bare)]) == 0
    captured = capsys.readouterr()
    assert "no true rates" in captured.err and "no true latents" in captured.err
    assert set(json.loads(captured.out)) == {"valid_bits_per_spike"}
