"""Parameter records: df_from_json-like frames, model rebuild, lossless round trip, bundled tables, bad records."""

import copy
import json

import numpy as np
import pandas as pd
import pytest

from spikejax import ConfigError, DataFormatError
from spikejax.data import path as data_path
from spikejax.gfr import (
    GFR,
    dataset_to_records,
    load_dataset,
    load_gamma_values,
    load_metadata,
    model_from_dataset,
    load_records,
    load_species_labels,
    make_record,
    params_to_layout,
    save_records,
    selection_mask,
)

EXCERPT = data_path("gfr/gfr_params_20_20_excerpt.json")


def test_dataset_frames_like_df_from_json():
    ds = load_dataset(EXCERPT)
    assert list(ds) == [(20, 20)]
    frame = ds[(20, 20)]
    for col in ("cell_id", "cre-line", "val_evr", "test_evr", "train_loss", "test_loss", "params"):
        assert col in frame.columns
    assert len(frame) == 8 and 566517779 in set(frame["cell_id"])
    assert frame["cre-line"].isna().sum() == 1  # the human cell has no Cre line
    # the bundled CSV (transcribed independently of the JSON) holds the same parameters
    csv = pd.read_csv(data_path("gfr/gfr_params_20_20_excerpt.csv")).set_index("cell_id")
    for cid in frame["cell_id"]:
        model = model_from_dataset(ds, cid, 20, 20)
        row = csv.loc[cid]
        np.testing.assert_allclose(model.alpha, [row[f"alpha_{i}"] for i in range(1, 9)], rtol=1e-6)
        np.testing.assert_allclose(model.beta, [row[f"beta_{i}"] for i in range(1, 9)], rtol=1e-6)
        assert float(model.g.b) == pytest.approx(row["g_b"], rel=1e-6)
        assert float(model.g.max_current) == pytest.approx(row["max_current"], rel=1e-6)
        assert float(model.g.max_firing_rate) == pytest.approx(row["max_firing_rate"], rel=1e-6)
        assert model.kappa == 1000.0 and model.dt == 20 and model.g.dt == 20


@pytest.mark.requires_x64
def test_round_trip_is_lossless_bytes():
    """Acceptance 2: records -> DataFrames -> models -> get_params -> records gives the same JSON bytes."""
    ds = load_dataset(EXCERPT)
    models = {((20, 20), cid): model_from_dataset(ds, cid) for cid in ds[(20, 20)]["cell_id"]}
    records = dataset_to_records(ds, models)
    assert records == json.loads(EXCERPT.read_text())


@pytest.mark.requires_x64
def test_round_trip_file_identical(tmp_path):
    ds = load_dataset(EXCERPT)
    models = {((20, 20), cid): model_from_dataset(ds, cid) for cid in ds[(20, 20)]["cell_id"]}
    save_records(tmp_path / "out.json", dataset_to_records(ds, models))
    assert (tmp_path / "out.json").read_bytes() == EXCERPT.read_bytes()


def test_round_trip_float32_and_dotted_layout(tmp_path):
    """In float32 the frames round-trip exactly and the model parameters to float32 precision; the
    dotted g.* layout of get_params is accepted as well as the nested one."""
    ds = load_dataset(EXCERPT)
    save_records(tmp_path / "same.json", ds)
    assert (tmp_path / "same.json").read_bytes() == EXCERPT.read_bytes()
    records = load_records(EXCERPT)
    dotted = copy.deepcopy(records)
    for rec in dotted:
        rec["params"] = params_to_layout(rec["params"], nested=False)
        assert "g.poly_coeff" in rec["params"] and "g" not in rec["params"]
    ds2 = load_dataset(dotted)
    for rec in records:
        m1 = model_from_dataset(ds, rec["cell_id"])
        m2 = model_from_dataset(ds2, rec["cell_id"])
        assert m1.get_params() == m2.get_params()
        p = m1.get_params()
        want = params_to_layout(rec["params"], nested=False)
        assert set(p) == set(want)
        for k in p:
            np.testing.assert_allclose(np.asarray(p[k], float), np.asarray(want[k], float), rtol=1e-7)
    back = dataset_to_records(ds2)
    assert back == dotted
    rebuilt = GFR.from_params(m1.get_params())
    assert rebuilt.get_params() == m1.get_params()


def test_make_record_and_selection():
    model = model_from_dataset(load_dataset(), 566517779)
    rec = make_record(model, cell_id=566517779, cre_line="X", val_evr=0.6, test_evr=0.55, train_loss=0.3, test_loss=0.4)
    assert list(rec) == ["cell_id", "cre-line", "bin_size", "actv_bin_size", "val_evr", "test_evr", "train_loss", "test_loss", "params"]
    assert rec["params"]["g.bin_size"] == 20
    frame = pd.DataFrame({"val_evr": [0.6, 0.4, 0.9, 0.7], "train_loss": [0.3, 0.3, 0.5, None]})
    assert selection_mask(frame).tolist() == [True, False, False, False]


def test_bundled_tables():
    gamma = load_gamma_values()
    assert len(gamma) == 1044 and all(0.02 < v < 5.6 for v in gamma.values())
    species = load_species_labels()
    assert len(species) == 2333 and set(species.values()) == {"mouse", "human"}
    meta = load_metadata()
    assert len(meta) == 2333
    assert meta.loc[566517779, "line_name"] == "Chrna2-Cre_OE25"
    assert meta.loc[566517779, "ef__threshold_i_long_square"] == pytest.approx(70.0)


def test_record_missing_key_and_bad_values():
    """Acceptance 6: a record missing a key (top level, params or g) names the key."""
    records = load_records()
    bad = copy.deepcopy(records)
    del bad[2]["val_evr"]
    with pytest.raises(DataFormatError, match="val_evr"):
        load_dataset(bad)
    bad = copy.deepcopy(records)
    del bad[0]["params"]["ds"]
    with pytest.raises(DataFormatError, match="ds"):
        load_dataset(bad)
    bad = copy.deepcopy(records)
    del bad[0]["params"]["g"]["max_firing_rate"]
    with pytest.raises(DataFormatError, match="max_firing_rate"):
        load_dataset(bad)
    bad = copy.deepcopy(records)
    bad[0]["params"]["b"] = [[1.0, 2.0]]
    ds = load_dataset(bad)
    with pytest.raises(DataFormatError, match=r"\['b'\] must hold 8"):
        model_from_dataset(ds, bad[0]["cell_id"])
    bad = copy.deepcopy(records)
    bad[0]["bin_size"] = 30
    with pytest.raises(DataFormatError, match="bin_size"):
        load_dataset(bad)


def test_unknown_configuration_and_cell():
    """Acceptance 6: unknown (dt, dt') and unknown cells raise ConfigError listing what exists."""
    ds = load_dataset()
    with pytest.raises(ConfigError, match=r"\(10, 20\).*\[\(20, 20\)\]"):
        model_from_dataset(ds, 566517779, 10, 20)
    with pytest.raises(ConfigError, match="cell_id 123"):
        model_from_dataset(ds, 123, 20, 20)


def test_malformed_json(tmp_path):
    """Acceptance 6: malformed or truncated JSON raises DataFormatError naming the file."""
    text = EXCERPT.read_text()
    p = tmp_path / "truncated.json"
    p.write_text(text[: len(text) // 2])
    with pytest.raises(DataFormatError, match="truncated.json"):
        load_dataset(p)
    p2 = tmp_path / "object.json"
    p2.write_text('"just a string"')
    with pytest.raises(DataFormatError, match="list of records"):
        load_dataset(p2)
