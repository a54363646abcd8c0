import jax.numpy as jnp
import numpy as np
import pytest

from spikejax.core import bits_per_spike, ev_ceiling, evr, explained_variance, firing_rate, isi, mean_isi, pearson_r, r2_score


def test_explained_variance_hand_computed():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([2.0, 2.0, 4.0, 4.0])
    # Var x = 1.25, Var y = 1.0, Cov = 1.0 -> EV = 2 / 2.25
    np.testing.assert_allclose(explained_variance(x, y), 2.0 / 2.25, rtol=1e-6)
    np.testing.assert_allclose(explained_variance(x, x), 1.0, rtol=1e-6)
    assert np.isnan(explained_variance(np.ones(4), np.ones(4)))


def test_evr_and_ceiling():
    rng = np.random.default_rng(0)
    signal = np.sin(np.linspace(0, 6, 200))
    trials = signal + 0.3 * rng.normal(size=(5, 200))
    psth = trials.mean(0)
    ev_d = np.mean([explained_variance(t, psth) for t in trials])
    np.testing.assert_allclose(ev_ceiling(trials), ev_d, rtol=1e-6)
    ev_m = np.mean([explained_variance(t, signal) for t in trials])
    np.testing.assert_allclose(evr(signal, trials), ev_m / ev_d, rtol=1e-6)
    # batched over cells
    both = np.stack([trials, trials])
    np.testing.assert_allclose(evr(np.stack([signal, signal]), both), [ev_m / ev_d] * 2, rtol=1e-6)


def test_r2_and_pearson():
    y = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 7.0]])
    p = np.array([[1.1, 2.0], [2.0, 5.0], [2.9, 6.0]])
    ss_res = ((y - p) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(r2_score(y, p, multioutput="raw_values"), 1 - ss_res / ss_tot, rtol=1e-6)
    np.testing.assert_allclose(r2_score(y, p), np.mean(1 - ss_res / ss_tot), rtol=1e-6)
    np.testing.assert_allclose(pearson_r(y[:, 0], p[:, 0]), np.corrcoef(y[:, 0], p[:, 0])[0, 1], rtol=1e-6)


@pytest.mark.requires_x64
def test_bits_per_spike_hand_computed():
    from scipy import stats

    counts = np.array([[[0, 1], [2, 0], [1, 1]]], dtype=float)  # 1 trial, 3 bins, 2 neurons
    rates = np.array([[[0.2, 0.9], [1.8, 0.1], [1.0, 1.2]]])
    ll = stats.poisson.logpmf(counts, rates).sum()
    mean = counts.reshape(-1, 2).mean(0)
    ll0 = stats.poisson.logpmf(counts, np.broadcast_to(mean, counts.shape)).sum()
    np.testing.assert_allclose(bits_per_spike(rates, counts), (ll - ll0) / (counts.sum() * np.log(2)), rtol=1e-10)
    # NaN entries are dropped (nlb_tools convention)
    c2 = counts.copy()
    c2[0, 0, 0] = np.nan
    m = ~np.isnan(c2)
    ll = stats.poisson.logpmf(counts, rates)[m].sum()
    mean = np.array([np.nanmean(c2[..., 0]), np.nanmean(c2[..., 1])])
    ll0 = stats.poisson.logpmf(counts, np.broadcast_to(mean, counts.shape))[m].sum()
    np.testing.assert_allclose(bits_per_spike(rates, c2), (ll - ll0) / (np.nansum(c2) * np.log(2)), rtol=1e-10)


def test_rates_and_isi():
    raster = np.zeros((2, 10))
    raster[0, [1, 4, 9]] = 1
    raster[1, [0, 2]] = 1
    np.testing.assert_allclose(firing_rate(raster, dt=1.0), [300.0, 200.0])
    np.testing.assert_allclose(isi(raster[0], dt=2.0), [6.0, 10.0])
    assert mean_isi(raster) == pytest.approx((3 + 5 + 2) / 3)
    with pytest.raises(ValueError, match="spike_train"):
        isi(raster)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: firing_rate(np.ones((2, 5)), dt=0.0), ("dt", "> 0")),
        (lambda: firing_rate(-np.ones((2, 5)), dt=1.0), ("spikes", ">= 0")),
        (lambda: isi(np.ones((2, 3)), dt=1.0), ("spike_train", "1-D")),
        (lambda: r2_score(np.ones((4, 1)), np.ones((4, 5))), ("y_true (4, 1)", "y_pred (4, 5)")),
        (lambda: bits_per_spike(np.ones((3, 2)), np.ones((3, 4))), ("rates (3, 2)", "counts (3, 4)")),
        (lambda: bits_per_spike(-np.ones((3, 2)), np.ones((3, 2))), ("rates", ">= 0")),
    ],
)
def test_bad_metric_input_is_named(call, words):
    with pytest.raises(ValueError) as info:
        call()
    for w in words:
        assert w in str(info.value), (w, str(info.value))
