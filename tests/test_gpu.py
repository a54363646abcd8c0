"""GPU against CPU, same inputs, for every family's main kernel (run where a GPU is present).

``conftest.py`` skips tests marked ``gpu`` without one. Each test runs the same call under
``jax.default_device`` of the GPU and of the CPU and compares at float32 tolerances (spike rasters
by their statistics: they diverge once one threshold crossing differs). Kernel matrix products use
full float32 (``spikejax.core.matmul_precision``); scatter-add order differs (docs/howto/gpu.md).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def _devices():
    gpu = [d for d in jax.devices() if d.platform in ("gpu", "cuda", "rocm")]
    return gpu[0], jax.devices("cpu")[0]


def _both(fn):
    gpu, cpu = _devices()
    out = []
    for dev in (gpu, cpu):
        with jax.default_device(dev):
            out.append(jax.tree_util.tree_map(np.asarray, jax.block_until_ready(fn())))
    return out


@pytest.mark.parametrize("backend", ["dense", "sparse", "event"])
def test_glm_simulate(backend):
    from spikejax import glm

    rng = np.random.default_rng(0)
    n = 500
    W = np.where(rng.random((n, n)) < 0.02, -rng.uniform(0, 0.015, (n, n)), 0.0).astype(np.float32)
    np.fill_diagonal(W, 0.0)
    model = glm.RectifiedLNP(T=20, lambda_0=100.0, theta=1e-4, tau=10.0, dt=0.1, r=0.0025, b=0.001)
    g, c = _both(lambda: glm.simulate(model, glm.from_dense(W), n_steps=200, key=jax.random.key(0),
                                      equilibration_steps=0, backend=backend).spikes)
    assert np.mean(g[:5] == c[:5]) >= 0.99
    np.testing.assert_allclose(g.mean(), c.mean(), rtol=0.05)


def test_l5_simulate():
    from spikejax.l5 import L5Model, L5Params, build_network, debug_config, make_spec, simulate

    cfg = debug_config(N=[9, 55, 9, 7], sim_number=2, Ttau=60)

    def run():
        net = build_network(cfg, key=jax.random.PRNGKey(0))
        return simulate(L5Model(L5Params.from_config(cfg), net, make_spec(cfg, record_weights=False))).rates

    g, c = _both(run)
    np.testing.assert_allclose(g, c, rtol=1e-3, atol=1e-4)


def test_meso_loss_and_gradient():
    from spikejax import meso
    from spikejax.meso import model as M

    data = meso.load_bundled()
    gt = meso.ground_truth()

    def run():
        def f(v, Z):
            return M._loss_parts(meso.from_vector(gt, v), Z, data.y, data.A0, data.age0, None, meso.MesoConfig()).total

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(meso.to_vector(gt), jnp.asarray(data.Z))

    (lg, (tg, zg)), (lc, (tc, zc)) = _both(run)
    np.testing.assert_allclose(lg, lc, rtol=1e-4)
    np.testing.assert_allclose(tg, tc, rtol=1e-3, atol=1e-4 * np.abs(tc).max())
    np.testing.assert_allclose(zg, zc, rtol=1e-3, atol=1e-4 * np.abs(zc).max())


def test_lfads_loss_and_gradient():
    import equinox as eqx

    from spikejax.lfads import LFADS, HParams, LFADSConfig, generate_lorenz_dataset, loss_terms

    d = generate_lorenz_dataset(n_conditions=4, trials_per_condition=4, n_neurons=29, n_steps=1000, dt=20,
                                key=jax.random.key(0))
    x = np.asarray(d["train"]["data"][:8])
    cfg = LFADSConfig(data_dim=29, encod_seq_len=50, ic_enc_dim=16, ci_enc_dim=8, con_dim=8, co_dim=1, ic_dim=8,
                      gen_dim=32, fac_dim=8)

    def run():
        model = LFADS(cfg, key=jax.random.PRNGKey(0))
        f = lambda m: loss_terms(m, {"data": jnp.asarray(x)}, HParams.create(), 0.0, key=jax.random.PRNGKey(1), training=True)[0]  # noqa: E731
        val, grad = eqx.filter_jit(eqx.filter_value_and_grad(f))(model)
        return val, jax.tree_util.tree_leaves(eqx.filter(grad, eqx.is_inexact_array))

    (vg, gg), (vc, gc) = _both(run)
    np.testing.assert_allclose(vg, vc, rtol=1e-4)
    for a, b in zip(gg, gc):
        np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-4 * max(np.abs(b).max(), 1e-6))


def test_gfr_simulate_rates():
    from spikejax import data, gfr

    dataset = gfr.load_dataset(data.path("gfr/gfr_params_20_20_excerpt.json"))
    model = gfr.model_from_dataset(dataset, cell_id=566517779, dt=20, activation_dt=20)
    g, c = _both(lambda: gfr.simulate_rates(model, jnp.linspace(0.0, 300.0, 200)))
    np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-6)
