"""``spikejax gfr preprocess | fit | simulate`` end to end on a tiny synthetic bank."""

import json

import pandas as pd

from spikejax.cli import main


def test_cli_preprocess_fit_simulate(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["gfr", "preprocess", "--synthetic", "2", "--short", "--sampling-rate", "5000", "--bin-sizes", "20", "--save-path", str(data)]) == 0
    assert len(list(data.glob("*.h5"))) == 2 and len(list((data / "nwb").glob("*.nwb"))) == 2
    out = tmp_path / "fit"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"hparams": [{"lr": 0.01, "epochs": 3}], "activation_epochs": 10, "activation_repeats": 1, "finetune": False}))
    assert main(["gfr", "fit", "--data", str(data), "--save-path", str(out), "--config-path", str(cfg), "--C", "0.5", "--chunk-size", "1"]) == 0
    table = pd.read_csv(out / "summary.csv")
    assert len(table) == 2 and {"val_evr", "test_evr", "train_loss", "test_loss", "selected"} <= set(table.columns)
    records = json.loads((out / "records.json").read_text())
    assert [r["cell_id"] for r in records] == list(table["cell_id"])
    assert json.loads((out / "config.json").read_text())["C"] == 0.5
    assert main(["gfr", "simulate", "--cell-id", "566517779", "--current", "200", "--duration", "100", "--out", str(tmp_path / "r.csv")]) == 0
    rates = pd.read_csv(tmp_path / "r.csv")
    assert len(rates) == 5 and abs(rates["rate_hz"].iloc[0] - 52.7) < 0.1
    # bad input: unknown (dt, dt') and a missing folder give exit code 2 with a message
    assert main(["gfr", "fit", "--data", str(data), "--save-path", str(out), "--bin-size", "30"]) == 2
    assert "FitConfig.dt" in capsys.readouterr().err
    assert main(["gfr", "preprocess", "--save-path", str(tmp_path / "x")]) == 2
