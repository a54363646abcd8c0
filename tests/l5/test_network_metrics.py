"""Network construction, stimulus, metrics and output tables against direct NumPy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spikejax.l5 import (
    L5Model, L5Params, build_network, debug_config, head_loss, indegree, load_input_table, load_params, make_spec,
    metrics as M, simulate, w_compare,
)
from spikejax.l5.network import head_type_weights, type_index
from spikejax.l5.outputs import PAIR_COLUMNS, SELECTIVITY_ROWS, evaluate, selectivity_df, summary_info, weight_df
from spikejax.l5.stimulus import counterphase, thalamic_gain


def test_indegree_matches_bundled_K():
    p = load_params()
    K = indegree(p["prob"]["values"], p["N"])
    np.testing.assert_array_equal(K, np.asarray(p["indegree_round_p_times_Npre"]["values"]))
    np.testing.assert_allclose(w_compare(), np.asarray(p["w_compare"]["values"]), rtol=1e-12)


@pytest.fixture(scope="module")
def full_net():
    cfg = debug_config(sim_number=2)
    return cfg, build_network(cfg, key=jax.random.PRNGKey(7))


def test_fixed_indegree_signs_and_normalisation(full_net):
    cfg, net = full_net
    N = cfg.N
    tid = type_index(N)
    K = indegree(cfg.prob, N)
    st = np.asarray(net.struct[0])
    W = np.asarray(net.W[0])
    # every postsynaptic neuron of type b has exactly K[a, b] partners of type a, no autapses
    for a in range(4):
        counts = st[:, tid == a].sum(1)
        for b in range(4):
            assert np.all(counts[tid == b] == K[a, b])
    assert np.all(np.diag(st) == 0)
    # Dale's law at initialisation: E columns >= 0, I columns <= 0, zero where no synapse
    assert np.all(W[:, tid < 2] >= 0) and np.all(W[:, tid >= 2] <= 0)
    assert np.all(W[st == 0] == 0)
    # max Re(lambda) is exactly 1 after normalisation, and the factor is in the spec's range
    lam = np.max(np.linalg.eigvals(W).real)
    assert abs(lam - 1) < 1e-4
    assert np.all((np.asarray(net.lambda_max) > 2.4) & (np.asarray(net.lambda_max) < 3.5))
    # positions uniform in the unit disc
    assert np.all(np.asarray(net.pos_a) ** 2 + np.asarray(net.pos_b) ** 2 <= 1 + 1e-6)


def test_head_init_relative_noise():
    wt = jnp.asarray(load_params()["w_target_psp"]["values"])
    ws = jnp.stack([head_type_weights(wt, key=jax.random.PRNGKey(i)) for i in range(400)])
    m = np.asarray(ws.mean(0))
    np.testing.assert_allclose(m, np.asarray(wt), atol=0.02)
    assert np.all(np.asarray(ws[:, :2]) >= 0) and np.all(np.asarray(ws[:, 2:]) <= 0)
    sd = np.asarray(ws.std(0))
    np.testing.assert_allclose(sd, 0.1 * np.abs(np.asarray(wt)), rtol=0.2, atol=1e-6)
    ex = head_type_weights(wt, key=jax.random.PRNGKey(0), neurons="excit_only")
    np.testing.assert_allclose(np.asarray(ex[2:]), -np.abs(np.asarray(wt[2:])))


def test_counterphase_closed_form_and_aliasing():
    t = jnp.arange(100)
    u = counterphase(jnp.ones(1), jnp.zeros(1), jnp.zeros(1), t[:, None], 10.0, 50.0, 1.0)[:, 0]
    np.testing.assert_allclose(np.asarray(u), np.cos(-1.0) * np.cos(50.0 * np.arange(100)), atol=2e-5)
    tt = jnp.arange(0, 3000, 7)
    ph = np.asarray(counterphase(jnp.ones(1), jnp.zeros(1), jnp.zeros(1), tt[:, None], 0.0, 50.0, 0.0)[:, 0])
    np.testing.assert_allclose(ph, np.cos(50.0 * np.arange(0, 3000, 7)), atol=5e-5)
    # steady types: constant cos(50)
    us = counterphase(jnp.ones(1), jnp.ones(1), jnp.zeros(1), t[:, None], 10.0, 50.0, 1.0)
    np.testing.assert_allclose(np.asarray(us), np.cos(-1.0) * np.cos(50.0), atol=1e-6)
    g = thalamic_gain(None, [4, 6, 3, 3], jnp.deg2rad(90.0), jnp.deg2rad(0.0), (0.5, 0.5), 1.3, 1.7)
    np.testing.assert_allclose(np.asarray(g), [1.3, 1.3, 1, 1, 1.3, 1.3, 1.3, 1, 1, 1, 1, 1, 1, 1, 1, 1], rtol=1e-6)


def test_input_tables():
    df = load_input_table("input_data")
    assert df.shape == (65, 8)
    v = load_input_table("visual_input_thal")
    assert v.shape == (80, 7) and set(v["thal_degree_index"]) <= {0, 1, 2, 3}
    with pytest.raises(Exception, match="name must be one of"):
        load_input_table("nope")


def test_circular_selectivity_and_soft_limits():
    r = jnp.asarray([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0]]).T  # (4, 3)
    c = M.circular_selectivity(r)
    np.testing.assert_allclose(np.asarray(c["DS"]), [1, 0, 0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(c["OS"]), [1, 0, 1], atol=1e-5)
    ex = M.selectivity(r + 0.01)
    assert float(ex["DS"][2]) == 0.0 and float(ex["OS"][2]) > 0.9


def test_aggregate_and_tables_against_numpy():
    rng = np.random.default_rng(1)
    N = [4, 6, 3, 3]
    rates = jnp.asarray(rng.uniform(0.01, 2, size=(3, 4, 8, 16)))
    st = M.summarize(rates, N, eval_blocks=4)
    agg = M.aggregate(st)
    rbar = np.asarray(rates)[:, :, -4:, :].mean(2)
    tid = type_index(N)
    from .reference import reference_selectivity

    per_sim = np.array([[reference_selectivity(rbar[s])[0][tid == k].mean() for k in range(4)] for s in range(3)])
    np.testing.assert_allclose(np.asarray(st["OS_mean"]), per_sim, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(agg["OS_mean"]), per_sim.mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(agg["OS_std_mean"]), per_sim.std(0), rtol=1e-4, atol=1e-7)
    act = np.array([[np.asarray(rates)[s, :, -4:, tid == k].mean() for k in range(4)] for s in range(3)])
    np.testing.assert_allclose(np.asarray(st["act_mean"]), act, rtol=1e-5)
    x = per_sim.mean(0)
    assert abs(float(agg["os_rel"]) - (x[0] - x[1]) / (x[0] + x[1])) < 1e-5
    sdf = selectivity_df(agg, agg)
    assert list(sdf.loc["after"].index) == SELECTIVITY_ROWS and list(sdf.columns) == ["CS", "CC", "PV", "SST"]
    cnt = M.counters(rates, N)
    info = summary_info(agg, cnt)
    assert set(info) == {"Real_OS", "Real_DS", "Real_OS_paper", "nan_counter", "not_eq_counter", "activity_off"}


def test_counters_one_sided_and_nan():
    r = np.ones((1, 1, 12, 16))
    r[..., -5:, 0] = 0.5  # a decrease of 0.5: not in equilibrium
    assert int(M.counters(jnp.asarray(r), [4, 6, 3, 3])["not_eq_counter"]) == 1
    r2 = np.ones((1, 1, 12, 16))
    r2[..., -5:, 0] = 1.5  # an increase is not counted by the original's one-sided test
    assert int(M.counters(jnp.asarray(r2), [4, 6, 3, 3])["not_eq_counter"]) == 0
    assert int(M.counters(jnp.asarray(r2), [4, 6, 3, 3], variant="corrected")["not_eq_counter"]) == 1
    r3 = np.ones((2, 1, 12, 16))
    r3[1, :, -1] = np.nan
    assert int(M.counters(jnp.asarray(r3), [4, 6, 3, 3])["nan_counter"]) == 1


def test_weight_df_layout_and_head_loss_by_hand():
    cfg = debug_config(N=[4, 6, 3, 3], sim_number=2, Ttau=40, block=5, eval_steps=50, number_steps_before_learning=100,
                       tau_learn=5.0, tau_threshold=0.5)
    net = build_network(cfg, key=jax.random.PRNGKey(2))
    out = simulate(L5Model(L5Params.from_config(cfg), net, make_spec(cfg)))
    wdf = weight_df(out, cfg.N)
    assert list(wdf.columns) == PAIR_COLUMNS and wdf.shape == (9, 16)
    # W_mean[post-pre] is the block mean of the final weights
    tid = type_index(cfg.N)
    Wf = np.asarray(out.W_final).reshape(-1, 16, 16)
    by_hand = np.mean([Wf[i][np.ix_(tid == 1, tid == 2)].mean() for i in range(len(Wf))])
    assert abs(wdf.loc["W_mean", "CC-PV"] - by_hand) < 1e-6
    np.testing.assert_allclose(wdf.loc["W_dmean"], wdf.loc["W_mean"] - wdf.loc["W_init_mean"], atol=1e-6)
    after, before, cnt, _ = evaluate(out, cfg)
    sdf = selectivity_df(after, before)
    W = wdf.loc["W_mean"].to_numpy().reshape(4, 4)
    rmse = np.sqrt(np.mean((W - w_compare().T) ** 2))
    a, b = sdf.loc["after"], sdf.loc["before"]
    d_os = abs((a.loc["Mean_of_OS"] - b.loc["Mean_of_OS"]).sum())
    d_ds = (a.loc["Mean_of_DS"] - b.loc["Mean_of_DS"]).sum()
    s_b = a.loc["Std_mean_OS"].mean() + a.loc["Std_mean_DS"].mean() + a.loc["Std_mean_OS_p"].mean()
    s_w = a.loc["Mean_std"].mean() + a.loc["Mean_std_OS"].mean() + a.loc["Mean_std_DS"].mean() + a.loc["Mean_std_OS_p"].mean()
    assert abs(head_loss(wdf, sdf) - abs(10 * (rmse + d_os) - d_ds + 0.1 * (s_b + s_w))) < 1e-6
