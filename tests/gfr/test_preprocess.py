"""NWB reading, windowing, binning, gamma, the synthetic bank, and bad files."""

import h5py
import numpy as np
import pytest

from spikejax import ConfigError, DataFormatError, NonFiniteError
from spikejax.gfr import (
    RawSweep,
    bin_sweep,
    load_cell,
    load_cells,
    max_firing_rate,
    preprocess_nwb,
    read_nwb,
    save_cell,
    sweep_window,
    write_nwb,
)

SR = 1000.0  # 1 kHz: one sample per ms keeps the hand computations readable


def _handmade(tmp_path, current_nan=False):
    """Two sweeps with known windows and spikes."""
    # Long Square: test pulse at 5..9 ms, experiment from 20 ms, step 100 pA from 50 ms to 250 ms
    ls = np.zeros(300)
    ls[5:10] = -20.0
    ls[50:250] = 100.0
    ls_spikes = np.array([52, 60, 75, 95, 130, 170, 210]) / SR
    # Ramp: experiment from 20 ms, ramp from 40 ms, peak at 199 ms, recording stops at 180 ms
    ramp = np.zeros(260)
    ramp[40:200] = np.linspace(1.0, 160.0, 160)
    v_ramp = np.full(260, -70.0)
    v_ramp[181:] = 0.0
    ramp_spikes = np.array([150, 170, 175]) / SR
    if current_nan:
        ls[100] = np.nan
    sweeps = [
        {"stimulus_name": "Long Square", "current": ls, "voltage": np.full(300, -70.0), "spike_times": ls_spikes, "exp_range": (20, 299)},
        {"stimulus_name": "Ramp", "current": ramp, "voltage": v_ramp, "spike_times": ramp_spikes, "exp_range": (20, 259)},
        {"stimulus_name": "Short Square", "current": ls, "voltage": np.full(300, -70.0), "spike_times": ls_spikes, "exp_range": (20, 299)},
    ]
    return write_nwb(tmp_path / "12345.nwb", 12345, sweeps, SR)


def test_read_window_and_bin_handmade(tmp_path):
    path = _handmade(tmp_path)
    cell_id, sweeps = read_nwb(path)
    assert cell_id == 12345
    assert [s.stimulus_name for s in sweeps] == ["Long Square", "Ramp"]  # Short Square not selected
    ls, ramp = sweeps
    np.testing.assert_allclose(ls.current[50], 100.0, rtol=1e-6)  # A -> pA
    assert ls.index_range == (20, 299) and ls.sampling_rate == SR
    assert sweep_window(ls) == (50, 300)  # onset after the test pulse, to the end of the epoch
    assert sweep_window(ramp) == (40, 180)  # cut at the last non-zero voltage sample (before the peak)
    cur, rate = bin_sweep(ls, 20)
    assert cur.shape == (12,)  # 250 samples -> 12 whole bins of 20
    np.testing.assert_allclose(cur[:10], 100.0, rtol=1e-6)
    np.testing.assert_allclose(cur[10:], 0.0, atol=1e-6)
    # spikes at 52, 60 | 75 | 95 | - | 130 | - | 170 | - | 210 ms: 20 ms bins from the onset at 50 ms
    np.testing.assert_allclose(rate * 20, [2, 1, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0])
    cur100, rate100 = bin_sweep(ls, 100)
    np.testing.assert_allclose(rate100 * 100, [5, 2])
    # gamma = max 1/ISI = 1/5 ms (170 -> 175 in the ramp)
    assert max_firing_rate(sweeps) == pytest.approx(0.2)
    cell = preprocess_nwb(path, bin_sizes=(20, 50))
    assert cell.gamma == pytest.approx(0.2) and cell.bin_sizes == (20, 50)
    back = load_cell(save_cell(tmp_path / "cell.h5", cell))
    assert back.cell_id == 12345 and back.gamma == cell.gamma
    for a, b in zip(cell.sweeps, back.sweeps):
        assert a.stimulus_name == b.stimulus_name and a.number == b.number
        for k in (20, 50):
            np.testing.assert_array_equal(a.binned[k][0], b.binned[k][0])
            np.testing.assert_array_equal(a.binned[k][1], b.binned[k][1])
    assert len(load_cells(tmp_path)) == 1


def test_test_sweeps_keep_their_start():
    cur = np.r_[np.zeros(10), np.ones(30)]
    sw = RawSweep(1, "Test", cur, None, SR, (0, 39), np.zeros(0))
    assert sweep_window(sw) == (0, 40)
    sw2 = RawSweep(1, "Long Square", cur, None, SR, (0, 39), np.zeros(0))
    assert sweep_window(sw2) == (10, 40)


def test_synthetic_bank_matches_metadata(gfr_bank):
    """The synthetic cells go through the NWB path and respond like Allen cells: silent below
    rheobase, more spikes for larger steps, noise repeats with identical currents."""
    from spikejax.gfr import load_metadata

    paths, cells = gfr_bank
    meta = load_metadata()
    for p, cell in zip(paths, cells):
        assert p.suffix == ".nwb" and cell.cell_id == int(p.stem)
        with h5py.File(p, "r") as fh:  # Allen NWB v1 layout
            assert "stimulus/presentation/Sweep_1/data" in fh and "analysis/spike_times/Sweep_1" in fh
            assert fh["stimulus/presentation/Sweep_1/data"].attrs["conversion"] == 1.0
        names = [s.stimulus_name for s in cell.sweeps]
        assert names.count("Long Square") == 9 and names.count("Ramp") == 1
        assert names.count("Noise 1") == 3 and names.count("Noise 2") == 3
        rh = meta.loc[cell.cell_id, "ef__threshold_i_long_square"]
        ls = cell.by_stimulus("Long Square")
        means = [float(s.binned[100][1].mean()) for s in ls]
        amps = [float(s.binned[100][0][0]) for s in ls]
        np.testing.assert_allclose(amps, np.clip(rh, 20, 600) + np.array([-40, -20, 0, 20, 40, 60, 80, 120, 160]), rtol=1e-4)
        assert means[0] < 0.005 and means[-1] > means[3] > 0  # silent well below rheobase, rising f-I
        n1 = cell.by_stimulus("Noise 1")
        np.testing.assert_allclose(n1[0].binned[20][0], n1[2].binned[20][0])  # frozen noise
        assert not np.array_equal(n1[0].binned[20][1], n1[1].binned[20][1])  # trial-to-trial variability
        assert 0.02 < cell.gamma < 1.0


def test_bad_files(tmp_path, gfr_bank):
    """Acceptance 6: truncated NWB and h5 files, NaN currents, missing groups, unknown bin sizes."""
    paths, cells = gfr_bank
    raw = paths[0].read_bytes()
    trunc = tmp_path / "999.nwb"
    trunc.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataFormatError, match="999.nwb"):
        preprocess_nwb(trunc)
    h5 = save_cell(tmp_path / "c.h5", cells[0])
    data = h5.read_bytes()
    (tmp_path / "t.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="t.h5"):
        load_cell(tmp_path / "t.h5")
    with h5py.File(tmp_path / "empty.nwb", "w") as fh:
        fh.create_group("acquisition")
    with pytest.raises(DataFormatError, match="stimulus/presentation"):
        read_nwb(tmp_path / "empty.nwb")
    nan_path = _handmade(tmp_path, current_nan=True)
    with pytest.raises(NonFiniteError, match="NaN"):
        preprocess_nwb(nan_path)
    with pytest.raises(ConfigError, match="bin_sizes"):
        preprocess_nwb(paths[0], bin_sizes=(25,))
    with pytest.raises(FileNotFoundError):
        read_nwb(tmp_path / "missing.nwb")
