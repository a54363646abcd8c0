"""Unit tests of the LFADS pieces against independent float64 references (acceptance 4)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats

from spikejax.lfads import (
    LFADS,
    ClippedGRUCell,
    HParams,
    LFADSConfig,
    PoissonReadout,
    ZIGReadout,
    bits_per_spike,
    co_bps,
    kl_co_ar1,
    kl_co_gaussian,
    kl_ic,
    psth_r2,
    ramp,
    recon_cost,
    ridge_r2,
    velocity_r2,
)


def np_gru(w_in, b_in, u_zr, u_n, xs, h, clip):
    """Reset-before GRU written from the spec (float64 NumPy)."""
    H = len(h)
    out = []
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
    for x in xs:
        a = w_in @ x + b_in
        z = sig(a[:H] + u_zr[:H] @ h)
        r = sig(a[H:2 * H] + u_zr[H:] @ h)
        n = np.tanh(a[2 * H:] + u_n @ (r * h))
        h = np.clip(z * h + (1 - z) * n, -clip, clip)
        out.append(h)
    return np.stack(out)


@pytest.mark.requires_x64
def test_gru_matches_numpy_reference_and_clips():
    cell = ClippedGRUCell(5, 4, key=jax.random.PRNGKey(0), clip=0.3)
    # LFADS init: gate biases 1, candidate bias 0; recurrent std 1/sqrt(in+hidden) for encoders
    np.testing.assert_array_equal(np.asarray(cell.b_in), [1.0] * 8 + [0.0] * 4)
    xs = np.random.default_rng(0).normal(size=(7, 5)) * 3
    from spikejax.lfads import gru_scan

    got = np.asarray(gru_scan(cell, jnp.asarray(xs), jnp.zeros(4)))
    ref = np_gru(*(np.asarray(a, float) for a in (cell.w_in, cell.b_in, cell.u_zr, cell.u_n)), xs, np.zeros(4), 0.3)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    assert np.abs(got).max() <= 0.3 + 1e-12 and np.isclose(np.abs(got).max(), 0.3)
    # reverse scan: out[t] has seen xs[t:]
    rev = np.asarray(gru_scan(cell, jnp.asarray(xs), jnp.zeros(4), reverse=True))
    ref_rev = np_gru(*(np.asarray(a, float) for a in (cell.w_in, cell.b_in, cell.u_zr, cell.u_n)), xs[::-1],
                     np.zeros(4), 0.3)[::-1]
    np.testing.assert_allclose(rev, ref_rev, rtol=1e-12, atol=1e-12)


@pytest.mark.requires_x64
def test_gru_init_scales_and_gradients():
    big = ClippedGRUCell(300, 200, key=jax.random.PRNGKey(1), init="decoder")
    assert np.isclose(np.std(np.asarray(big.w_in)), 1 / math.sqrt(300), rtol=0.05)
    assert np.isclose(np.std(np.asarray(big.u_n)), 1 / math.sqrt(200), rtol=0.05)
    enc = ClippedGRUCell(300, 200, key=jax.random.PRNGKey(1), init="encoder")
    assert np.isclose(np.std(np.asarray(enc.u_zr)), 1 / math.sqrt(500), rtol=0.05)
    cell = ClippedGRUCell(3, 2, key=jax.random.PRNGKey(2))
    check_grads(lambda u, h: cell(u, h), (jnp.ones(3) * 0.2, jnp.ones(2) * 0.1), order=1, modes=["rev"])


@pytest.mark.requires_x64
@pytest.mark.parametrize("param", ["radical", "torch"])
def test_zig_loglik_matches_scipy_gamma(param):
    rng = np.random.default_rng(3)
    n = 6
    ro = ZIGReadout(4, n, key=jax.random.PRNGKey(0), s_min=0.1, gamma_prior=20.0, parametrization=param)
    raw = jnp.asarray(rng.normal(size=(5, 3 * n)) * 2)
    y = np.where(rng.random((5, n)) < 0.5, 0.0, 0.1 + rng.gamma(2.0, 0.5, size=(5, n)))
    got = np.asarray(ro.nll(raw, jnp.asarray(y)))
    k, theta, q_logit = (np.asarray(a) for a in ro.split(raw))
    q = 1 / (1 + np.exp(-q_logit))
    # independent parametrisation check
    s = np.asarray(ro.scale)
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    zk, zt = np.asarray(raw[:, :n]), np.asarray(raw[:, n:2 * n])
    if param == "radical":
        np.testing.assert_allclose(k, np.clip(s[:n] * sig(zk), 1e-5, s[:n] - 1e-5))
        np.testing.assert_allclose(theta, np.clip(s[n:] * sig(zt), 1e-5, s[n:] - 1e-5))
    else:
        np.testing.assert_allclose(theta, 1 / (s[n:] * sig(zt)))
    ref = np.where(y > 0, -(np.log(q) + stats.gamma.logpdf(y - 0.1, a=k, scale=theta)), -np.log1p(-q))
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)
    # event rate q (k theta + s_min)
    np.testing.assert_allclose(np.asarray(ro.mean(raw)), q * (k * theta + 0.1), rtol=1e-12)


@pytest.mark.requires_x64
def test_kl_ic_closed_form_and_gaussian_co():
    rng = np.random.default_rng(0)
    m, s = rng.normal(size=5), rng.uniform(0.2, 2, size=5)
    pm, pv = rng.normal(size=5), 0.1
    ref = np.sum(np.log(np.sqrt(pv) / s) + (s**2 + (m - pm) ** 2) / (2 * pv) - 0.5)
    assert np.isclose(float(kl_ic(jnp.asarray(m), jnp.asarray(s), jnp.asarray(pm), pv)), ref, rtol=1e-12)
    mt, st = rng.normal(size=(4, 2)), rng.uniform(0.3, 1.5, size=(4, 2))
    ref = np.sum(np.log(np.sqrt(0.3) / st) + (st**2 + mt**2) / (2 * 0.3) - 0.5)
    assert np.isclose(float(kl_co_gaussian(jnp.asarray(mt), jnp.asarray(st), 0.3)), ref, rtol=1e-12)


@pytest.mark.requires_x64
def test_kl_co_ar1_against_multivariate_normal_and_monte_carlo():
    rng = np.random.default_rng(1)
    T, tau, nvar = 6, 4.0, 0.2
    alpha = math.exp(-1 / tau)
    cov = nvar / (1 - alpha**2) * alpha ** np.abs(np.subtract.outer(np.arange(T), np.arange(T)))
    mean, std = rng.normal(size=(T, 1)) * 0.5, rng.uniform(0.3, 0.8, size=(T, 1))
    u = mean + std * rng.normal(size=(T, 1))
    got = float(kl_co_ar1(jnp.asarray(u), jnp.asarray(mean), jnp.asarray(std), jnp.log(jnp.full(1, tau)),
                          jnp.log(jnp.full(1, nvar))))
    log_q = stats.norm.logpdf(u[:, 0], mean[:, 0], std[:, 0]).sum()
    log_p = stats.multivariate_normal.logpdf(u[:, 0], np.zeros(T), cov)
    assert np.isclose(got, log_q - log_p, rtol=1e-10)
    # the one-sample estimator is unbiased for the analytic KL(q || p_AR)
    eps = jax.random.normal(jax.random.PRNGKey(0), (20000, T, 1), jnp.float64)
    us = jnp.asarray(mean) + jnp.asarray(std) * eps
    mc = jax.vmap(lambda a: kl_co_ar1(a, jnp.asarray(mean), jnp.asarray(std), jnp.log(jnp.full(1, tau)),
                                      jnp.log(jnp.full(1, nvar))))(us)
    sq, ci = np.diag(std[:, 0] ** 2), np.linalg.inv(cov)
    analytic = 0.5 * (np.trace(ci @ sq) + mean[:, 0] @ ci @ mean[:, 0] - T + np.linalg.slogdet(cov)[1]
                      - np.log(np.diag(sq)).sum())
    assert abs(float(jnp.mean(mc)) - analytic) < 4 * float(jnp.std(mc)) / math.sqrt(20000)


def test_ramp_schedule():
    assert np.isclose(float(ramp(0.0, 0.0, 80.0)), 1 / 81)
    assert float(ramp(80.0, 0.0, 80.0)) == 1.0
    assert float(ramp(3.0, 10.0, 5.0)) == 0.0
    assert np.isclose(float(ramp(10.0, 10.0, 5.0)), 1 / 6)


def _raw(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * 0.3, jnp.float32)


def test_cd_gradient_flows_only_from_dropped_entries():
    ro = PoissonReadout(3, 4, key=jax.random.PRNGKey(0))
    raw = _raw((2, 5, 4))
    y = jnp.asarray(np.random.default_rng(1).poisson(1.0, size=(2, 5, 4)), jnp.float32)
    dropped = jnp.asarray(np.random.default_rng(2).random((2, 5, 4)) < 0.3)
    obs = jnp.ones_like(dropped)
    f = lambda r: recon_cost(ro, r, y, obs, obs, dropped)[0]  # noqa: E731
    g = np.asarray(jax.grad(f)(raw))
    assert np.all(g[~np.asarray(dropped)] == 0.0)
    assert np.all(g[np.asarray(dropped)] != 0.0)
    # but the value is computed over all entries (kept ones included)
    full = float(recon_cost(ro, raw, y, obs, obs, obs)[0])
    assert np.isclose(float(f(raw)), full, rtol=1e-6)


def test_sbtt_zero_gradient_from_missing_entries_and_renormalisation():
    ro = ZIGReadout(3, 4, key=jax.random.PRNGKey(0), s_min=0.1)
    raw = _raw((2, 6, 12))
    rng = np.random.default_rng(4)
    y = np.where(rng.random((2, 6, 4)) < 0.5, 0.0, 0.2 + rng.random((2, 6, 4)))
    missing = rng.random((2, 6, 4)) < 0.6
    y[missing] = np.nan
    y = jnp.asarray(y, jnp.float32)
    obs = ~jnp.isnan(y)
    ones = jnp.ones(y.shape, bool)
    val, g = jax.value_and_grad(lambda r: recon_cost(ro, r, y, obs, ones, ones)[0])(raw)
    g = np.asarray(g)
    assert np.isfinite(float(val)) and np.all(np.isfinite(g))
    n = 4
    for block in range(3):  # the three ZIG parameter blocks of every missing entry get zero gradient
        gb = g[..., block * n:(block + 1) * n]
        assert np.all(gb[missing] == 0.0)
        assert np.any(gb[~missing] != 0.0)
    # mean over observed entries only
    nll = np.asarray(ro.nll(raw, y, mask=obs))
    assert np.isclose(float(val), nll[~missing].mean(), rtol=1e-6)


def test_nlb_metrics_against_hand_computed_values():
    counts = np.array([[[0, 2], [1, 0]], [[3, 1], [0, 1]]], float)  # 2 trials, 2 bins, 2 neurons
    rates = np.array([[[0.5, 1.5], [1.0, 0.2]], [[2.0, 1.0], [0.0, 0.9]]])
    c, r = counts.reshape(-1, 2), np.where(rates.reshape(-1, 2) <= 0, 1e-9, rates.reshape(-1, 2))
    ll = lambda lam: sum(ci * math.log(li) - li - math.lgamma(ci + 1) for ci, li in zip(c.ravel(), lam.ravel()))  # noqa
    null = np.broadcast_to(c.mean(0), c.shape)
    ref = (ll(r) - ll(null)) / (c.sum() * math.log(2))
    assert np.isclose(bits_per_spike(rates, counts), ref, rtol=1e-12)
    assert np.isclose(co_bps(rates, counts), ref)
    # NaN targets are ignored
    cn = counts.copy()
    cn[0, 0, 0] = np.nan
    c2 = cn.reshape(-1, 2)
    m = ~np.isnan(c2)
    null2 = np.broadcast_to(np.nanmean(c2, 0), c2.shape)
    l2 = lambda lam: sum(ci * math.log(li) - li - math.lgamma(ci + 1)  # noqa: E731
                         for ci, li, mi in zip(c2.ravel(), lam.ravel(), m.ravel()) if mi)
    ref2 = (l2(r) - l2(null2)) / (np.nansum(c2) * math.log(2))
    assert np.isclose(bits_per_spike(rates, cn), ref2, rtol=1e-12)
    # psth R2: condition means vs reference
    ev = np.arange(24, dtype=float).reshape(4, 3, 2)
    cond = np.array([0, 1, 0, 1])
    true = np.stack([ev[[0, 2]].mean(0), ev[[1, 3]].mean(0)]) + 0.5
    pred = np.stack([ev[[0, 2]].mean(0), ev[[1, 3]].mean(0)])
    tt = true.reshape(-1, 2)
    ref = np.mean(1 - ((tt - pred.reshape(-1, 2)) ** 2).sum(0) / ((tt - tt.mean(0)) ** 2).sum(0))
    assert np.isclose(psth_r2(ev, cond, true), ref)
    # velocity decoding: exactly linear relation is recovered
    rng = np.random.default_rng(0)
    xr, xe = rng.normal(size=(10, 20, 5)), rng.normal(size=(4, 20, 5))
    w = rng.normal(size=(5, 2))
    assert velocity_r2(xr, xr @ w, xe, xe @ w) > 0.999
    # ridge map per latent dim
    r2 = ridge_r2(xr, xr @ w + 1.0, xe, xe @ w + 1.0, alpha=1e-6)
    assert r2.shape == (2,) and np.all(r2 > 0.9999)


def test_forward_shapes_and_eval_determinism():
    cfg = LFADSConfig(data_dim=5, encod_seq_len=8, recon_seq_len=10, recon_dim=7, ext_input_dim=2, ic_enc_dim=4,
                      ci_enc_dim=3, con_dim=3, co_dim=2, ic_dim=3, gen_dim=6, fac_dim=3, ci_lag=2)
    m = LFADS(cfg, key=jax.random.PRNGKey(0))
    hp = HParams.create(dropout_rate=0.3)
    x, ext = jnp.ones((8, 5)), jnp.ones((10, 2))
    fwd = eqx.filter_jit(lambda m, k, sp, tr: m.forward(x, hp, key=k, ext=ext, sample_posteriors=sp, training=tr))
    out = fwd(m, jax.random.PRNGKey(1), True, True)
    assert out["params"].shape == (10, 7) and out["factors"].shape == (10, 3) and out["con_inputs"].shape == (10, 2)
    # factor rows are unit-norm
    np.testing.assert_allclose(np.linalg.norm(np.asarray(m.factors.normalized()), axis=1), 1.0, rtol=1e-5)
    a = fwd(m, jax.random.PRNGKey(1), False, False)
    b = fwd(m, jax.random.PRNGKey(2), False, False)
    np.testing.assert_array_equal(np.asarray(a["params"]), np.asarray(b["params"]))
    # CI lag: the forward encoder output at t depends only on inputs before t - lag + 1
    ci = eqx.filter_jit(lambda m: m.encode_ci(x))(m)
    assert ci.shape == (10, 6)
    np.testing.assert_array_equal(np.asarray(ci[:2, :3]), 0.0)
    np.testing.assert_array_equal(np.asarray(ci[6:8, 3:]), 0.0)


@pytest.mark.requires_x64
def test_hoisted_decoder_matches_the_plain_step_by_step_forward():
    """forward() hoists the controller's ci projection and the factor normalisation out of the decoder
    loop: check it against the plain per-step equations."""
    cfg = LFADSConfig(data_dim=5, encod_seq_len=8, recon_seq_len=10, ic_enc_dim=4, ci_enc_dim=3, con_dim=3,
                      co_dim=2, ic_dim=3, gen_dim=6, fac_dim=3, ci_lag=2)
    m = LFADS(cfg, key=jax.random.PRNGKey(0))
    hp = HParams.create(dropout_rate=0.3)
    x = jax.random.uniform(jax.random.PRNGKey(3), (8, 5)) * 3
    noise = m.draw_noise(jax.random.PRNGKey(4))
    out = m.forward(x, hp, noise=noise, training=True)
    keep = {k: (noise["u_" + k] < 1 - 0.3) / (1 - 0.3) for k in ("in", "ic", "g0", "con", "ext", "gen")}
    xk = x * keep["in"]
    mean, std = m.encode_ic(xk, keep["ic"])
    ci = m.encode_ci(xk)
    g = m.ic_to_g0(mean + std * noise["n_z0"])
    f = m.factors(g * keep["g0"])
    h = m.con_h0
    fs = []
    for t in range(10):
        h = m.con_cell(jnp.concatenate([ci[t], f]) * keep["con"][t], h)
        co = m.co_linear(h)
        u = co[:2] + jnp.exp(0.5 * co[2:]) * noise["n_u"][t]
        g = m.gen_cell(u, g)
        f = m.factors(g * keep["gen"][t])
        fs.append(f)
    np.testing.assert_allclose(out["factors"], jnp.stack(fs), rtol=1e-10, atol=1e-12)
