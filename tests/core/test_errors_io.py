import json

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikejax.core import (
    ConfigError,
    DataFormatError,
    NonFiniteError,
    ShapeError,
    SpikejaxError,
    check_array,
    check_choice,
    check_keys,
    check_scalar,
    load_h5,
    load_json,
    load_model,
    save_h5,
    save_json,
    save_model,
)


def test_check_array_messages():
    with pytest.raises(ShapeError, match=r"current must have shape \(\*, 10\), got \(3, 4\)"):
        check_array(np.zeros((3, 4)), "current", (None, 10))
    with pytest.raises(NonFiniteError, match="current must be finite, got 1 NaN"):
        check_array(np.array([1.0, np.nan]), "current")
    with pytest.raises(SpikejaxError, match="rates must be >= 0"):
        check_array(np.array([1.0, -1.0]), "rates", low=0.0)
    with pytest.raises(SpikejaxError, match="spikes must hold only 0 and 1"):
        check_array(np.array([0, 2]), "spikes", binary=True)
    with pytest.raises(TypeError, match="x must be an array of numbers"):
        check_array("abc", "x")
    dims = {}
    check_array(np.zeros((3, 5)), "a", ("N", "T"), dims=dims)
    with pytest.raises(ShapeError, match="T=5"):
        check_array(np.zeros((3, 6)), "b", ("N", "T"), dims=dims)
    assert issubclass(SpikejaxError, ValueError)


@settings(max_examples=25, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_check_scalar_property(v):
    if np.isfinite(v) and v > 0:
        assert check_scalar(v, "tau", low=0.0, low_inclusive=False) == v
    else:
        with pytest.raises(ConfigError, match="tau"):
            check_scalar(v, "tau", low=0.0, low_inclusive=False)


def test_choice_and_keys():
    with pytest.raises(ConfigError, match="rule must be one of"):
        check_choice("bcm2", "rule", ["BCM", "Oja"])
    with pytest.raises(DataFormatError, match=r"record is missing required key\(s\) \['params'\]"):
        check_keys({"cell_id": 1}, "record", ["cell_id", "params"])


def test_json_roundtrip_and_malformed(tmp_path):
    p = save_json(tmp_path / "a.json", {"x": np.arange(3), "y": jnp.float32(2.0)})
    assert load_json(p) == {"x": [0, 1, 2], "y": 2.0}
    bad = tmp_path / "bad.json"
    bad.write_text('[{"cell_id": 1, "params": {')
    with pytest.raises(DataFormatError, match="bad.json is not valid JSON"):
        load_json(bad)


def test_h5_roundtrip_truncated_and_missing(tmp_path):
    p = save_h5(tmp_path / "d.h5", {"train_data": np.ones((4, 5, 3)), "meta": {"dt": 0.01, "name": "lorenz"}})
    d = load_h5(p, required=["train_data"])
    assert d["train_data"].shape == (4, 5, 3) and d["meta"]["name"] == "lorenz"
    with pytest.raises(DataFormatError, match="missing required dataset"):
        load_h5(p, required=["valid_data"])
    raw = p.read_bytes()
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataFormatError, match="truncated"):
        load_h5(trunc)
    # no partial file is left behind by a failed write
    with pytest.raises(TypeError):
        save_h5(tmp_path / "e.h5", {"x": object()})
    assert not (tmp_path / "e.h5").exists()
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]


def test_model_roundtrip(tmp_path):
    import equinox as eqx

    class M(eqx.Module):
        w: jnp.ndarray
        n: int = eqx.field(static=True)

    m = M(jnp.arange(3.0), 3)
    save_model(tmp_path / "m.eqx", m, metadata={"n": 3})
    m2 = load_model(tmp_path / "m.eqx", M(jnp.zeros(3), 3))
    np.testing.assert_array_equal(m2.w, m.w)
    assert json.loads((tmp_path / "m.eqx.json").read_text()) == {"n": 3}
    with pytest.raises(DataFormatError, match="does not match"):
        load_model(tmp_path / "m.eqx", M(jnp.zeros(5), 5))


def test_json_is_valid_without_nan_tokens_or_float32_noise(tmp_path):
    import json

    import numpy as np

    from spikejax.core import save_json

    path = save_json(tmp_path / "s.json", {"nan": float("nan"), "inf": np.array([1.0, np.inf]), "dt": np.float32(0.1)})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    assert back == {"nan": None, "inf": [1.0, None], "dt": 0.1}


def test_written_files_follow_the_umask(tmp_path):
    import os

    from spikejax.core import save_json

    old = os.umask(0o022)
    try:
        path = save_json(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)


def test_save_h5_refuses_a_non_mapping(tmp_path):
    import pytest

    from spikejax.core import save_h5

    with pytest.raises(TypeError, match="mapping"):
        save_h5(tmp_path / "x.h5", [1, 2, 3])
    assert not any(tmp_path.iterdir())
