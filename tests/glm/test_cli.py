"""``spikejax glm simulate | tune`` over a connectivity folder."""

import json

import jax

from spikejax import cli, glm


def test_cli_simulate_and_tune(tmp_path, capsys):
    folder = tmp_path / "w0"
    glm.MexicanHatGenerator(20).save(2, folder)
    out = tmp_path / "out"
    args = ["glm", "simulate", str(folder), "--model", "RectifiedLNP", "--set", "T=20", "--set", "lambda_0=100", "--set", "theta=1e-4",
            "--set", "r=0.0025", "--steps", "200", "--out", str(out)]
    assert cli.main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["networks"] == 2 and summary["neurons"] == 40 and summary["rate_hz"] > 10
    assert summary["dt_ms"] == 0.1 and "0.10000000149011612" not in (out / "summary.json").read_text()
    import numpy as np

    assert np.load(out / "raster.npy").shape == (40, 200)
    args = ["glm", "tune", str(folder), "--model", "RectifiedLNP", "--set", "T=20", "--set", "lambda_0=100", "--set", "theta=1e-4",
            "--set", "r=0.0025", "--rate", "62.5", "--params", "theta", "--epochs", "2", "--estimator", "spikeometric",
            "--steps-per-epoch", "20", "--lr", "1e-5", "--check-steps", "200", "--quiet", "--out", str(out)]
    assert cli.main(args) == 0
    tuned = json.loads((out / "tuned.json").read_text())
    assert tuned["tuned"]["theta"] != 1e-4 and tuned["target_hz"] == 62.5
    assert tuned["target_met"] is False and abs(tuned["final_tune_rate_hz"] - 62.5) > 6.25  # 2 epochs miss it
    # errors are reported, not raised
    assert cli.main(["glm", "simulate", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert cli.main(["glm", "simulate", str(folder), "--set", "T", "--out", str(out)]) == 2
    assert "error" in capsys.readouterr().err


def test_cli_generate_then_simulate_and_the_bundled_example(tmp_path, capsys):
    folder = tmp_path / "nets"
    assert cli.main(["glm", "generate", "--networks", "2", "--neurons", "10", "--seed", "3", "--out", str(folder)]) == 0
    import numpy as np

    mats = [np.load(folder / f"{i}.npy") for i in range(2)]
    assert all(m.shape == (10, 10) and not np.diag(m).any() for m in mats) and not np.array_equal(mats[0], mats[1])
    assert json.loads((folder / "generator.json").read_text())["generator"] == "NormalGenerator"
    out = tmp_path / "sim"
    # without a folder, simulate reads the bundled example (three 20-neuron networks)
    assert cli.main(["glm", "simulate", "--steps", "50", "--equilibration", "0", "--out", str(out)]) == 0
    text = (out / "summary.json").read_text()
    summary = json.loads(text)
    assert summary["networks"] == 3 and summary["neurons"] == 60
    assert '"dt_ms": 0.1,' in text and "NaN" not in text  # no float32 noise, valid JSON
    # the bundled folder is what its README's command writes
    from spikejax.data import path

    bundled = path("glm/normal_20")
    again = tmp_path / "again"
    assert cli.main(["glm", "generate", "--networks", "3", "--neurons", "20", "--seed", "0", "--out", str(again)]) == 0
    for i in range(3):
        np.testing.assert_allclose(np.load(bundled / f"{i}.npy"), np.load(again / f"{i}.npy"), rtol=1e-6, atol=1e-7)
