"""pynapple objects in and out: TsGroup/IntervalSet into the families' data, to_pynapple() out, lossless."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

nap = pytest.importorskip("pynapple")

from spikejax import core, glm, lfads, meso  # noqa: E402


def _group(seed=0, n_units=6, duration=3.4):
    rng = np.random.default_rng(seed)
    times = {10 + i: np.sort(rng.uniform(0.0, duration, 60)) for i in range(n_units)}
    pops = np.array(["E1", "E2", "I"] * (n_units // 3))
    return nap.TsGroup({k: nap.Ts(t=v) for k, v in times.items()}, metadata={"population": pops}), times


def _trials():
    splits = np.array(["train", "val"] * 4 + ["test"] + ["val", "train"] * 4)
    start = 0.2 * np.arange(splits.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "split" is also an IntervalSet attribute name
        return nap.IntervalSet(start=start, end=start + 0.13, metadata={"split": splits})


def test_tsgroup_round_trip_is_exact(tmp_path):
    group, times = _group()
    st = core.SpikeTrains.from_pynapple(group, _trials())
    assert list(st.unit_ids) == list(times) and list(st.units["population"]) == list(group.metadata["population"])
    back = st.to_pynapple()
    assert list(back.keys()) == list(times)
    for k, v in times.items():
        np.testing.assert_array_equal(back[k].t, v)  # exact: float64 seconds in and out
    assert list(back.metadata["population"]) == list(group.metadata["population"])
    # through an NWB 2 file and back
    pytest.importorskip("pynwb")
    core.write_units(tmp_path / "g.nwb", group, trials=_trials())
    again = core.read_units(tmp_path / "g.nwb")
    for k, t in zip(again.unit_ids, again.times):
        np.testing.assert_array_equal(t, times[int(k)])
    ivs = again.trials_to_pynapple()
    np.testing.assert_array_equal(ivs.start, _trials().start)
    assert list(ivs.get_info("split")) == list(_trials().get_info("split"))


def test_binning_agrees_with_pynapple_count():
    group, _ = _group()
    ep = nap.IntervalSet(start=0.0, end=3.0)
    mine = core.bin_spikes(group, dt=100.0, start=0.0, stop=3.0)
    theirs = group.count(0.1, ep=ep)
    np.testing.assert_array_equal(mine, np.asarray(theirs.values))


def test_families_take_tsgroups():
    group, times = _group()
    ds = lfads.dataset_from_spikes(group, trials=_trials(), dt=20.0)
    assert ds["train"]["data"].shape == (8, 6, 6) and ds["valid"]["data"].shape == (8, 6, 6)
    np.testing.assert_array_equal(ds["extra"]["unit_ids"], list(times))
    # aligned 40 ms after each trial's start: the same counts as binning from there by hand
    shifted = lfads.dataset_from_spikes(group, trials=_trials(), dt=20.0, offset=40.0, n_bins=3)
    st = core.SpikeTrains.from_pynapple(group)
    np.testing.assert_array_equal(shifted["train"]["data"][1], st.bin(20.0, start=0.44, stop=0.5))
    with pytest.raises(core.DataFormatError, match="no 'move_onset_time' column"):
        lfads.dataset_from_spikes(group, trials=_trials(), dt=20.0, align="move_onset_time")
    data = meso.data_from_spikes(group, N=(400, 400, 200), hist_bins=20, start=0.0, stop=0.4)
    assert isinstance(data, meso.MesoData) and (data.T, data.M, data.n_obs) == (80, 3, 2)
    traj = glm.trajectory_from_spikes(group, dt=5.0, start=0.0, stop=3.4)
    assert traj.spikes.shape == (680, 6) and int(traj.spikes.sum()) == 360


def test_trajectories_to_pynapple_and_back_losslessly():
    rng = np.random.default_rng(1)
    # glm: counts out as a TsdFrame, back in as the same trajectory
    traj = glm.GLMTrajectory(jnp.asarray(rng.poisson(0.3, (50, 4)), jnp.int32), dt=0.5)
    frame = traj.to_pynapple(start=1.0)
    assert isinstance(frame, nap.TsdFrame) and frame.shape == (50, 4)
    np.testing.assert_allclose(frame.t[:2], [1.00025, 1.00075])
    again = glm.trajectory_from_spikes(frame)
    assert again.dt == 0.5
    np.testing.assert_array_equal(np.asarray(again.spikes), np.asarray(traj.spikes))
    # meso: rates in Hz, one column per population, exact
    Z = rng.uniform(0, 0.05, (30, 3)).astype(np.float32)
    mt = meso.MesoTrajectory(jnp.asarray(Z), jnp.asarray(Z), dt=4.0, populations=("E1", "E2", "I"))
    rates = mt.to_pynapple()
    assert list(rates.columns) == ["E1", "E2", "I"]
    values, dt = core.rates_from_pynapple(rates)
    assert dt == 4.0
    np.testing.assert_array_equal(values, np.asarray(mt.rate_hz))
    # lfads: time x trials x neurons
    r = jnp.asarray(rng.uniform(0, 30, (6, 2, 3)).astype(np.float32))
    lt = lfads.LFADSTrajectory(r, r, jnp.zeros((6, 2, 1)), jnp.zeros((6, 2, 1)), jnp.zeros((6, 2, 1)),
                               jnp.zeros((2, 1)), dt=20.0)
    tensor = lt.to_pynapple()
    assert isinstance(tensor, nap.TsdTensor)
    values, dt = core.rates_from_pynapple(tensor)
    assert dt == 20.0
    np.testing.assert_array_equal(values, np.asarray(r))


def test_bad_pynapple_input():
    with pytest.raises(TypeError, match="TsGroup"):
        core.as_spike_trains(np.zeros(3) + 1.0)
    with pytest.raises(core.DataFormatError, match="regular grid"):
        core.rates_from_pynapple(nap.TsdFrame(t=np.array([0.0, 0.1, 0.5]), d=np.zeros((3, 2))))
    with pytest.raises(core.DataFormatError, match="counts"):
        glm.trajectory_from_spikes(nap.TsdFrame(t=np.arange(3) * 0.1, d=np.full((3, 2), 0.5)))
