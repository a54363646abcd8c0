"""NWB 2 in and out (spikejax.core.nwb and the families' entries): real files written by pynwb, tiny sizes."""

from __future__ import annotations

import datetime

import jax
import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")

from spikejax import core, glm, lfads, meso  # noqa: E402
from spikejax.core.errors import DataFormatError  # noqa: E402
from spikejax.gfr import preprocess_nwb, read_nwb  # noqa: E402

POPS = ("E1", "E2", "I")
# 8 train, 8 val and 1 test trial: with the first four units the LFADS shapes equal the contract case's
# (tests/contract/lfads.py) and the meso shapes the meso case's, so a suite run compiles each program once
SPLITS = ("train", "val") * 4 + ("test",) + ("val", "train") * 4


def _nwbfile():
    return pynwb.NWBFile(session_description="spikejax test", identifier="spikejax-test",
                         session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))


def _spike_times(seed=0, n_units=6, duration=3.4, rate=25.0):
    rng = np.random.default_rng(seed)
    return [np.sort(rng.uniform(0.0, duration, rng.poisson(rate * duration))) for _ in range(n_units)]


def write_units_file(path, *, trials=True, population=True, seed=0):
    """An NLB-like file: a Units table with a population column, a trials table with a split column."""
    f = _nwbfile()
    times = _spike_times(seed)
    if population:
        f.add_unit_column(name="population", description="population label")
    for i, t in enumerate(times):
        f.add_unit(spike_times=t, id=10 + i, **({"population": POPS[i % 3]} if population else {}))
    if trials:
        f.add_trial_column(name="split", description="NLB split")
        for k, s in enumerate(SPLITS):
            f.add_trial(start_time=0.2 * k, stop_time=0.2 * k + 0.13, split=s)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return times


def test_units_read_bin_and_write_back_exactly(tmp_path):
    times = write_units_file(tmp_path / "rec.nwb")
    st = core.read_units(tmp_path / "rec.nwb")
    assert st.n_units == 6 and list(st.unit_ids) == list(range(10, 16))
    assert list(st.units["population"]) == [POPS[i % 3] for i in range(6)]
    assert list(st.trials["split"]) == list(SPLITS)
    for a, b in zip(times, st.times):
        np.testing.assert_array_equal(a, b)
    counts = st.bin(10.0, start=0.0, stop=2.0)
    assert counts.shape == (200, 6)
    expected = np.stack([np.histogram(t, bins=np.arange(201) * 0.01)[0] for t in times], 1)
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() == sum(int(((t >= 0) & (t < 2.0)).sum()) for t in times)
    # write_units -> read_units: the spike times unchanged
    core.write_units(tmp_path / "copy.nwb", st)
    back = core.read_units(tmp_path / "copy.nwb")
    for a, b in zip(st.times, back.times):
        np.testing.assert_array_equal(a, b)
    assert list(back.unit_ids) == list(st.unit_ids) and list(back.trials["split"]) == list(SPLITS)
    # a module added to the file itself (replaced atomically): the units stay, the table comes back
    core.write_processing(tmp_path / "copy.nwb", {"params": {"theta": [1.5, 2.5]}}, source=tmp_path / "copy.nwb")
    table = core.read_processing(tmp_path / "copy.nwb")["params"]
    assert list(table["parameter"]) == ["theta"] and list(table[["value_0", "value_1"]].iloc[0]) == [1.5, 2.5]
    assert core.read_units(tmp_path / "copy.nwb").n_units == 6
    with pytest.raises(core.ConfigError, match="already has a processing module 'spikejax'"):
        core.write_processing(tmp_path / "copy.nwb", {"x": (np.zeros(3), 1.0)}, source=tmp_path / "copy.nwb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.nwb", "rec.nwb"]  # no temporary left behind


def test_nwb_into_lfads_and_meso_and_results_back_out(tmp_path):
    """Acceptance: a Units-table file written by pynwb trains LFADS and fits meso; results go back into NWB 2."""
    src = tmp_path / "rec.nwb"
    write_units_file(src)
    # LFADS on the excitatory units: trials of 6 bins of 20 ms, split from the NLB-style column
    assert len(lfads.dataset_from_spikes(src, dt=20.0)["train"]["data"][0, 0]) == 6  # the path itself works
    units = core.read_units(src)
    ds = lfads.dataset_from_spikes(units.select(units.units["population"] != "I"), dt=20.0)
    assert ds["train"]["data"].shape == (8, 6, 4) and ds["valid"]["data"].shape == (8, 6, 4)
    np.testing.assert_array_equal(ds["train"]["inds"], [0, 2, 4, 6, 10, 12, 14, 16])
    np.testing.assert_array_equal(ds["extra"]["test_inds"], [8])
    cfg = lfads.LFADSConfig(data_dim=4, encod_seq_len=6, ic_enc_dim=3, ci_enc_dim=2, con_dim=2, co_dim=1, ic_dim=2,
                            gen_dim=5, fac_dim=2, dt=20.0)
    model = lfads.LFADS(cfg, key=jax.random.key(0))
    res = lfads.train(model, ds["train"], ds["valid"], config=lfads.TrainConfig(batch_size=4, n_epochs=2, learning_rate=1e-2),
                      hp=lfads.HParams.create(kl_increase_epoch=1, l2_increase_epoch=1), key=jax.random.key(1),
                      progress=False)
    out = lfads.infer(res.model, ds["valid"], key=jax.random.key(2), n_samples=2)
    rates_hz = np.moveaxis(out["rates"], 0, 1) / 0.02  # time x trials x neurons, Hz
    # meso: 40 bins of 4 ms (20 of history), two observed units per population
    data = meso.data_from_spikes(src, N=(400, 400, 200), populations=POPS, hist_bins=20, start=0.0, stop=0.16)
    assert (data.T, data.M, data.n_obs) == (20, 3, 2)
    fit_cfg = meso.MesoFitConfig(method="hard", em=meso.EMConfig(n_restarts=2, n_iter=2, m_maxiter=3, e_maxiter=3),
                                 model=meso.MesoConfig(n_age=16))
    fit = meso.fit_em(data, key=jax.random.key(3), config=fit_cfg, model=meso.ground_truth())
    # everything back into a copy of the recording, as a processing module
    dest = tmp_path / "results.nwb"
    core.write_processing(dest, {
        "lfads_rates": (rates_hz, 20.0, "Hz"),
        "lfads_factors": (np.moveaxis(out["factors"], 0, 1), 20.0),
        "lfads_history": res,
        "meso_activity": fit.to_pynapple(start=0.08),
        "meso_params": fit,
    }, source=src)
    with pynwb.NWBHDF5IO(str(dest), "r") as io:  # pynwb reads it: the recording and the module
        f = io.read()
        assert len(f.units) == 6 and len(f.trials) == len(SPLITS)
        mod = f.processing["spikejax"]
        assert set(mod.data_interfaces) == {"lfads_rates", "lfads_factors", "lfads_history", "meso_activity", "meso_params"}
        np.testing.assert_array_equal(mod["lfads_rates"].data[:], rates_hz)
        assert mod["lfads_rates"].rate == pytest.approx(50.0)
    back = core.read_processing(dest)
    np.testing.assert_array_equal(back["meso_activity"]["data"], np.asarray(fit.Z) / 0.004)
    np.testing.assert_allclose(back["meso_activity"]["timestamps"], 0.08 + (np.arange(20) + 0.5) * 0.004)
    assert list(back["meso_params"]["parameter"]) == list(fit.to_pandas().index)
    assert "valid/recon_smth" in back["lfads_history"].columns
    assert len(core.read_units(dest).times) == 6  # the recording is still there


def test_glm_raster_from_nwb(tmp_path):
    times = write_units_file(tmp_path / "rec.nwb", trials=False)
    traj = glm.trajectory_from_spikes(tmp_path / "rec.nwb", dt=2.0, start=0.0, stop=3.4)
    assert isinstance(traj, glm.GLMTrajectory) and traj.spikes.shape == (1700, 6) and traj.dt == 2.0
    rates = np.asarray(glm.firing_rates(traj))
    np.testing.assert_allclose(rates, [t.size / 3.4 for t in times], rtol=1e-5)


def _icephys_file(path, *, with_spikes=True):
    f = _nwbfile()
    f.subject = pynwb.file.Subject(subject_id="123456789")
    dev = f.create_device(name="amp")
    el = f.create_icephys_electrode(name="elec0", description="patch", device=dev)
    rate = 10_000.0
    n = 4000  # 0.4 s
    for number, code, amp in ((1, "C1LSCOARSE150216_DA_0", 100e-12), (2, "C1RP25PR1S141216_DA_0", 0.0)):
        cur = np.zeros(n)
        cur[100:200] = -20e-12  # a 10-ms test pulse
        if amp:
            cur[1000:3000] = amp
        else:
            cur[1000:3500] = np.linspace(0, 200e-12, 2500)
        v = np.full(n, -0.07)
        f.add_stimulus(pynwb.icephys.CurrentClampStimulusSeries(
            name=f"data_{number:05d}_DA0", data=cur, starting_time=0.0, rate=rate, electrode=el, gain=1.0,
            sweep_number=np.uint32(number), stimulus_description=code))
        f.add_acquisition(pynwb.icephys.CurrentClampSeries(
            name=f"data_{number:05d}_AD0", data=v, starting_time=0.0, rate=rate, electrode=el, gain=1.0,
            sweep_number=np.uint32(number), stimulus_description=code))
    if with_spikes:
        mod = f.create_processing_module(name="spikes", description="spike times")
        mod.add(pynwb.TimeSeries(name="Sweep_1", data=np.zeros(3), timestamps=[0.15, 0.2, 0.25], unit="s"))
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(f)


def test_icephys_sweeps_from_nwb2(tmp_path):
    _icephys_file(tmp_path / "cell.nwb")
    cell_id, sweeps = read_nwb(tmp_path / "cell.nwb")
    assert cell_id == 123456789
    assert [(s.number, s.stimulus_name) for s in sweeps] == [(1, "Long Square"), (2, "Ramp")]
    s1 = sweeps[0]
    assert s1.sampling_rate == 10_000.0 and s1.index_range == (200, 3999)
    np.testing.assert_allclose(s1.current[1500], 100.0)  # pA
    np.testing.assert_allclose(s1.voltage[0], -70.0)  # mV
    np.testing.assert_array_equal(s1.spike_times, [0.15, 0.2, 0.25])
    cell = preprocess_nwb(tmp_path / "cell.nwb", bin_sizes=(20,))
    cur, rate = cell.by_stimulus("Long Square")[0].binned[20]
    assert cur.shape == (15,) and cur[0] == pytest.approx(100.0)  # the window starts at the step, not the test pulse
    assert rate.sum() * 20 == pytest.approx(3)


def test_bad_files_raise_data_format_error(tmp_path):
    bad = tmp_path / "notes.nwb"
    bad.write_text("not an hdf5 file")
    with pytest.raises(DataFormatError, match="notes.nwb"):
        core.read_units(bad)
    empty = tmp_path / "empty.nwb"
    with pynwb.NWBHDF5IO(str(empty), "w") as io:
        io.write(_nwbfile())
    with pytest.raises(DataFormatError, match=r"empty\.nwb.*no Units table"):
        core.read_units(empty)
    with pytest.raises(DataFormatError, match=r"empty\.nwb.*no CurrentClampStimulusSeries"):
        read_nwb(empty)
    write_units_file(tmp_path / "notrials.nwb", trials=False, population=False)
    with pytest.raises(DataFormatError, match=r"notrials\.nwb.*no trials"):
        lfads.dataset_from_spikes(tmp_path / "notrials.nwb", dt=20.0)
    with pytest.raises(DataFormatError, match=r"notrials\.nwb.*no 'population' column"):
        meso.data_from_spikes(tmp_path / "notrials.nwb", N=(400, 400, 200))
    with pytest.raises(DataFormatError, match=r"no intervals table 'epochs_x'"):
        core.read_units(tmp_path / "notrials.nwb", trials="epochs_x")
    with pytest.raises(DataFormatError, match="no processing module"):
        core.read_processing(tmp_path / "notrials.nwb")


def test_missing_extra_names_it(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "pynwb", None)
    with pytest.raises(ImportError, match=r"spikejax\[nwb\]"):
        core.read_units(tmp_path / "x.nwb")
    monkeypatch.setitem(sys.modules, "pynapple", None)
    with pytest.raises(ImportError, match=r"spikejax\[pynapple\]"):
        core.rates_to_pynapple(np.zeros((3, 2)), dt=1.0)
