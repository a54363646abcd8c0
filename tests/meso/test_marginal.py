"""The marginal-likelihood estimator (Fisher identity through the particle filter), the posterior of Z,
the ceilings and the vmapped/sequential/key consistency of the default fit."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spikejax import meso
from spikejax.core import save_figure
from spikejax.meso import marginal as G
from spikejax.meso import model as M


def _tiny():
    """One population of 400 neurons, 3 observed, 3 fitted bins after a 40-bin history (float64)."""
    f = lambda v: jnp.asarray(v, jnp.float64)  # noqa: E731
    p = meso.MesoParams(amem=f([50.0]), J=f([2.0]), mu=f([7.5]), theta=f([3.7]), asyn=f([1000.0 / 3]),
                        conmat=f([[1.0]]), eps=f(1.0), N=(400,), t_ref=4.0)
    rng = np.random.default_rng(0)
    y_hist = (rng.random((40, 1, 3)) < 0.06).astype(float)
    y = np.array([[[0, 1, 0]], [[1, 0, 0]], [[0, 0, 1]]], float)
    return p, meso.MesoData(y, y_hist, N=(400,))


def _exact_log_lik(u, p, d, lo, hi, cfg, n0=161, n1=201):
    """log p(y | Θ) by quadrature over (Z(0), Z(1)); Z(2) affects no observation and integrates to 1."""
    par = meso.from_vector(p, lo + (hi - lo) * u)
    N = 400.0
    var = lambda zb: zb / N + 0.1 * cfg.dt_s / N  # noqa: E731
    zb0 = M._predict(par, jnp.full((3, 1), 0.05), d.A0, None, cfg)[0][0, 0]  # Z̄(0) depends on the history only
    sd0 = jnp.sqrt(var(zb0))
    g0 = jax.lax.stop_gradient(jnp.linspace(jnp.maximum(zb0 - 9 * sd0, 1e-5), zb0 + 9 * sd0, n0))
    g1 = jnp.linspace(1e-5, 0.25, n1)
    Z0, Z1 = jnp.meshgrid(g0, g1, indexing="ij")

    def joint(z0, z1):
        Z = jnp.stack([z0, z1, z1])[:, None]
        zbar, U = M._predict(par, Z, d.A0, None, cfg)
        lg = M.observed_logits(par, Z, d.A0, d.y, d.age0, None, cfg, U=U)
        ly = -M._observed_nll(d.y, lg)
        v = var(zbar[:2, 0])
        lz = -0.5 * jnp.sum((Z[:2, 0] - zbar[:2, 0]) ** 2 / v + jnp.log(2 * jnp.pi * v))
        return ly + lz

    vals = jax.vmap(jax.vmap(joint))(Z0, Z1)
    return jax.scipy.special.logsumexp(vals) + jnp.log(g0[1] - g0[0]) + jnp.log(g1[1] - g1[0])


@pytest.mark.requires_x64
def test_score_and_likelihood_estimates_unbiased_on_tiny_model():
    """Fisher identity: the mean of the particle score estimates equals ∇ log p(y | Θ) computed by
    quadrature, and the mean of p̂(y | Θ) equals p(y | Θ), within Monte Carlo error."""
    p, d = _tiny()
    cfg = meso.MesoConfig(n_age=8)
    lo, hi = meso.box_bounds(p)
    u = (meso.to_vector(p) - lo) / (hi - lo) + jnp.array([0.05, -0.05, 0.03, 0.02])  # off the reference point
    exact_ll, exact_grad = jax.jit(jax.value_and_grad(lambda u: _exact_log_lik(u, p, d, lo, hi, cfg)))(u)
    arrays = {"y": d.y, "A0": d.A0, "age0": d.age0, "I_ext": None}
    keys = jax.random.split(jax.random.PRNGKey(0), 800)
    for n_runs in (1, 2):  # one filter, and independent runs pooled (the second phase's score)
        est = jax.jit(jax.vmap(lambda k: G.score_estimate(u, k, p, arrays, lo, hi, n_particles=16, n_paths=2, cfg=cfg,
                                                          n_runs=n_runs)))
        ll, g, _, _ = est(keys)
        ratio = np.exp(np.asarray(ll) - float(exact_ll))
        assert abs(ratio.mean() - 1.0) < 4 * ratio.std() / np.sqrt(len(ratio)) + 1e-3, (n_runs, ratio.mean())
        score = -np.asarray(g)  # g is the gradient of the complete-data NLL
        mean, se = score.mean(0), score.std(0) / np.sqrt(score.shape[0])
        np.testing.assert_array_less(np.abs(mean - np.asarray(exact_grad)),
                                     4 * se + 1e-3 * np.abs(np.asarray(exact_grad)))


EM_TINY = meso.EMConfig(n_restarts=2, n_iter=1, m_maxiter=2, e_maxiter=2)
MC_TINY = meso.MarginalConfig(n_iter=2, n_burn=1, info_every=1, n_particles=8, n_paths=2, n_final=1, final_particles=8)


@pytest.fixture(scope="module")
def short(data11):
    return data11.window(0, 100)


@pytest.fixture(scope="module")
def x0_tiny():
    lo, hi = meso.box_bounds()
    return np.asarray(lo + (hi - lo) * jnp.array([[0.35] * 12, [0.4] * 12]))


@pytest.fixture(scope="module")
def fit_tiny(short, x0_tiny):
    return meso.fit_em(short, key=jax.random.PRNGKey(3), config=_cfg(MC_TINY), x0=x0_tiny)


def _cfg(mc, em=EM_TINY, init_hard_em=False):
    return meso.MesoFitConfig(em=em, marginal=mc, init_hard_em=init_hard_em)


def test_default_fit_is_marginal_pure_and_vmapped_equals_sequential(short, x0_tiny, fit_tiny, tmp_path):
    """The default method is the marginal-likelihood fit; it is a pure function of the key, and the
    restarts vmapped in one program equal the same restarts run one after the other."""
    r = fit_tiny
    assert r.method == "marginal" and r.hard_em is not None
    assert r.best == int(np.argmax(r.runs["log_lik"]))
    np.testing.assert_allclose(r.runs["loss"], -r.runs["log_lik"] / (3 * short.T), rtol=1e-6)
    assert r.runs["x_trace"].shape == (2, 2, 12) and r.runs["log_lik_trace"].shape == (2, 2)
    again = meso.fit_em(short, key=jax.random.PRNGKey(3), config=_cfg(MC_TINY), x0=x0_tiny)
    for k in ("x", "Z", "log_lik", "x_trace"):
        np.testing.assert_array_equal(again.runs[k], r.runs[k])
    seq = meso.fit_em_sequential(short, x0=x0_tiny, key=jax.random.PRNGKey(3), config=_cfg(MC_TINY))
    for i in range(2):
        np.testing.assert_allclose(seq[i].runs["x"][0], r.runs["x"][i], rtol=2e-3)
        np.testing.assert_allclose(seq[i].runs["log_lik"][0], r.runs["log_lik"][i], rtol=1e-3)
    df = r.to_pandas()
    assert np.all(df["estimate"] >= df["low"] - 1e-4) and np.all(df["estimate"] <= df["high"] + 1e-4)
    conv = r.convergence()
    assert list(conv.columns[:3]) == ["log_lik", "median_rel_error", "median_rel_error_avg"] and len(conv) == 2
    assert list(r.history.columns[:2]) == ["iteration", "log_lik_nats"] and len(r.history) == 2
    save_figure(meso.plot_convergence(r).figure, tmp_path / "conv.png")
    assert (tmp_path / "conv.png").is_file()


def test_posterior_of_Z_table_and_plot(short, fit_tiny, tmp_path):
    r = fit_tiny
    zt = meso.posterior_table(r, short, key=jax.random.PRNGKey(0), n_particles=32, n_runs=2)
    assert zt.shape == (300, 6) and list(zt.columns[:2]) == ["time_ms", "population"]
    for nm in ("E1", "E2", "I"):
        z = zt[zt["population"] == nm]
        assert np.all(z["lower_rate_hz"] <= z["rate_hz"] + 1e-3) and np.all(z["rate_hz"] <= z["upper_rate_hz"] + 1e-3)
    post = meso.posterior_Z(r.model, short, key=jax.random.PRNGKey(0), n_particles=32, n_runs=2)
    # a posterior computed once serves the table too (same key and sizes: the same table)
    again = meso.posterior_table(r, short, key=jax.random.PRNGKey(1), posterior=post)
    assert again.equals(zt)
    save_figure(meso.plot_posterior_Z(post, short.Z).figure, tmp_path / "post.png")
    assert (tmp_path / "post.png").is_file()


def test_posterior_Z_at_ground_truth_is_a_pure_function_of_the_key(short, gt):
    post = meso.posterior_Z(gt, short, key=jax.random.PRNGKey(0), n_particles=32, n_runs=2)
    again = meso.posterior_Z(gt, short, key=jax.random.PRNGKey(0), n_particles=32, n_runs=2)
    np.testing.assert_array_equal(np.asarray(post.mean), np.asarray(again.mean))
    assert post.mean.shape == (100, 3) and np.all(np.asarray(post.lower) <= np.asarray(post.upper))
    rates = np.asarray(post.mean).mean(0) / (meso.DT_MS / 1000.0)
    np.testing.assert_allclose(rates, np.asarray(short.Z).mean(0) / (meso.DT_MS / 1000.0), rtol=0.5)
    with pytest.raises(ValueError, match="level"):
        meso.posterior_Z(gt, short, key=jax.random.PRNGKey(0), level=1.0)
    with pytest.raises(ValueError, match="n_runs"):
        meso.posterior_Z(gt, short, key=jax.random.PRNGKey(0), n_runs=0)


@pytest.mark.slow
def test_m_step_given_true_Z(short, gt):
    """The M-step ceiling: started at the truth it stays close (the truth is near the minimum)."""
    x0 = np.asarray(meso.to_vector(gt))[None]
    r = meso.fit_params_given_Z(short, key=jax.random.PRNGKey(0), x0=x0, n_iter=5)
    assert isinstance(r, meso.MesoFitResult)
    assert r.runs["x"].shape == (1, 12) and np.isfinite(r.runs["loss"][r.best])
    assert r.runs["loss"][r.best] <= float(meso.loss(gt, short)) + 1e-6
    with pytest.raises(ValueError, match="Z"):
        meso.fit_params_given_Z(short, np.full((5, 3), 0.1), key=jax.random.PRNGKey(0))


def test_marginal_config_errors():
    with pytest.raises(ValueError, match="info_every"):
        meso.MarginalConfig(n_iter=5, info_every=2)
    with pytest.raises(ValueError, match="gain_decay"):
        meso.MarginalConfig(gain_decay=0.4)
    with pytest.raises(ValueError, match="method"):
        meso.MesoFitConfig(method="bogus")
    with pytest.raises(ValueError, match="momentum"):
        meso.MarginalConfig(momentum=1.0)
    with pytest.raises(ValueError, match="n_continue"):
        meso.MarginalConfig(n_continue=-1)
    with pytest.raises(ValueError, match="cut_at"):
        meso.MarginalConfig(cut_at=30)  # not a multiple of info_every
    with pytest.raises(ValueError, match="cut_at"):
        meso.MarginalConfig(average_from=20)  # an average over two filter sizes and two sets of restarts
    with pytest.raises(ValueError, match="average_from"):
        meso.MarginalConfig(average_from=96)
    with pytest.raises(ValueError, match="cut_at"):
        meso.MarginalConfig(cut_at=80)  # after the start of the average (n_burn)
    assert meso.MarginalConfig().average_start == 72 and meso.MarginalConfig(average_from=32).average_start == 32
    with pytest.raises(ValueError, match="n_keep"):
        meso.MarginalConfig(n_keep=0)
    with pytest.raises(ValueError, match="late_particles"):
        meso.MarginalConfig(late_particles=1)
    with pytest.raises(ValueError, match="late_runs"):
        meso.MarginalConfig(late_runs=0)
    assert not meso.MarginalConfig(n_iter=8, n_burn=4, cut_at=8).switches
    assert meso.MarginalConfig().phases() == [(0, 32, 64, 4, 1), (32, 96, 64, 2, 4)]


MC_CUT = meso.MarginalConfig(n_iter=4, n_burn=2, info_every=1, cut_at=2, n_keep=1, n_particles=8, n_paths=2,
                             late_particles=16, late_paths=3, late_runs=2, n_final=1, final_particles=8)


@pytest.mark.requires_x64
def test_cut_keeps_the_best_restarts_and_they_equal_the_same_restarts_alone(x0_tiny, tmp_path):
    """At ``cut_at`` the stage keeps the ``n_keep`` restarts of highest recent log p̂ and switches to the
    late filter size; a survivor's numbers are those it has when run alone (fit_em_sequential, and
    marginal_single, the one-restart composition of the phases). In float64: in float32 the rounding
    of another batch size flips resampling decisions within a few iterations."""
    short = meso.load_bundled().window(0, 100)
    assert short.y.dtype == jnp.float64
    r = meso.fit_em(short, key=jax.random.PRNGKey(5), config=_cfg(MC_CUT), x0=x0_tiny)
    cut = r.hard_em.runs["cut_score"]
    assert cut.shape == (2,) and np.all(np.isfinite(cut))
    (i,) = r.runs["restart"]
    assert i == int(np.argmax(cut))
    assert r.runs["x"].shape == (1, 12) and r.runs["x_trace"].shape == (1, 4, 12)
    assert r.runs["log_lik_trace"].shape == (1, 4) and np.all(np.isfinite(r.runs["log_lik_trace"]))
    # the estimate is the average of the iterates from average_start (n_burn = 2) on
    np.testing.assert_allclose(r.runs["x"][0], r.runs["x_trace"][0, MC_CUT.average_start:].mean(0), rtol=1e-10)
    assert list(r.restarts_table().index) == [i]
    first = r.hard_em.runs["cut_log_lik_trace"]
    assert first.shape == (2, 2) and np.all(np.isfinite(first))
    np.testing.assert_array_equal(first[i], r.runs["log_lik_trace"][0, :2])
    np.testing.assert_allclose(cut, first.mean(1), rtol=1e-12)
    save_figure(meso.plot_convergence(r).figure, tmp_path / "conv.png")
    back = meso.MesoFitResult.load(r.save(tmp_path / "fit.h5"))
    np.testing.assert_array_equal(back.hard_em.runs["cut_score"], cut)
    assert back.config == r.config
    seq = meso.fit_em_sequential(short, x0=x0_tiny, key=jax.random.PRNGKey(5), config=_cfg(MC_CUT))
    for k in ("x_trace", "log_lik_trace", "x", "log_lik"):
        np.testing.assert_allclose(seq[i].runs[k][0], r.runs[k][0], rtol=1e-6, err_msg=k)
    lo, hi = meso.box_bounds()
    stage_key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(5), 2), i)
    arrays = {"y": short.y, "A0": short.A0, "age0": short.age0, "I_ext": short.I_ext}
    one = jax.jit(lambda x0, Z0: G.marginal_single(x0, Z0, stage_key, r.model, arrays, lo, hi, cfg=r.config.model,
                                                   mc=MC_CUT))(
        jnp.asarray(x0_tiny[i]), jnp.asarray(r.hard_em.Z0))
    np.testing.assert_allclose(np.asarray(one["x_trace"]), r.runs["x_trace"][0], rtol=1e-6)
    np.testing.assert_allclose(float(one["log_lik"]), r.runs["log_lik"][0], rtol=1e-6)


def _screen_fits(short, *, with_full: bool):
    em = meso.EMConfig(n_restarts=3, n_iter=1, m_maxiter=2, e_maxiter=2)
    mc = dataclasses.replace(MC_TINY, momentum=0.5)
    lo, hi = meso.box_bounds()
    x0 = np.asarray(lo + (hi - lo) * jnp.array([[0.35] * 12, [0.45] * 12, [0.6] * 12]))
    part = meso.fit_em(short, key=jax.random.PRNGKey(4), config=_cfg(dataclasses.replace(mc, n_continue=2), em, True),
                       x0=x0)
    full = meso.fit_em(short, key=jax.random.PRNGKey(4), config=_cfg(mc, em, True), x0=x0) if with_full else None
    return part, full, lo, hi


def test_screening_continues_the_best_hard_em_estimates(short):
    """With ``n_continue`` below the number of restarts the marginal stage continues the hard-EM
    estimates of highest log p̂, and the traces and tables name the hard-EM restart they came
    from; momentum stays in the box."""
    part, _, lo, hi = _screen_fits(short, with_full=False)
    sll = part.hard_em.runs["screen_log_lik"]
    assert sll.shape == (3,) and np.all(np.isfinite(sll))
    keep = part.runs["restart"]
    np.testing.assert_array_equal(keep, np.sort(np.argsort(-sll)[:2]))
    assert part.runs["x"].shape == (2, 12) and part.hard_em.runs["x"].shape == (3, 12)
    assert list(part.restarts_table().index) == list(keep)
    assert np.all(part.runs["x_trace"] >= lo - 1e-4) and np.all(part.runs["x_trace"] <= hi + 1e-4)
    np.testing.assert_array_equal(part.objective_history(), part.hard_em.objective_history(int(keep[part.best])))


@pytest.mark.slow
def test_screened_runs_equal_the_same_runs_without_screening(short):
    """Each continued restart gets the random numbers it has when all restarts are continued."""
    part, full, _, _ = _screen_fits(short, with_full=True)
    for j, i in enumerate(part.runs["restart"]):
        np.testing.assert_allclose(part.runs["x"][j], full.runs["x"][i], rtol=2e-3)  # float32, other batch size
