"""GFR model: equations against an independent float64 NumPy reference, kernels, layer, gradients, transforms."""

import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from spikejax import ConfigError, NonFiniteError, ShapeError
from spikejax.core import stack, sweep
from spikejax.gfr import (
    GFR,
    GFRLayer,
    decay_rates,
    default_layer,
    default_neuron,
    kernels,
    linear_drive,
    load_dataset,
    model_from_dataset,
    load_records,
    simulate,
    simulate_rates,
    simulate_feedforward,
)

# ----------------------------------------------------------------------------------------------
# independent float64 reference, written from the spec (section 2 and 3), one Python loop per bin
# ----------------------------------------------------------------------------------------------


def _g_fields(params):
    if "g" in params:
        return params["g"]
    return {k: params[f"g.{k}"] for k in ("max_current", "max_firing_rate", "poly_coeff", "b", "bin_size")}


def reference_rates(params, current, kappa=1000.0):
    alpha = np.asarray(params["a"], dtype=np.float64).ravel()
    beta = np.asarray(params["b"], dtype=np.float64).ravel()
    lam = np.asarray(params["ds"], dtype=np.float64)
    g = _g_fields(params)
    sigma = float(g["max_current"][0])
    gamma = float(g["max_firing_rate"][0])
    coeffs = np.asarray(g["poly_coeff"], dtype=np.float64).ravel()
    thresh = float(g["b"][0])
    h = np.zeros_like(alpha)
    f_prev = 0.0
    out = np.zeros(len(current))
    for t, i_t in enumerate(np.asarray(current, dtype=np.float64)):
        h = (1.0 - lam) * h + alpha * i_t + kappa * beta * f_prev
        z = h.sum() / len(h)
        x = (z - thresh) / sigma
        p = sum(c * c * x**k for k, c in enumerate(coeffs))
        f_prev = gamma * max(np.tanh(p), 0.0)
        out[t] = f_prev
    return out


def _stimuli(n_bins=80):
    t = np.arange(n_bins)
    steps = [np.where((t >= 5) & (t < 55), amp, 0.0) for amp in (60.0, 120.0, 250.0, 500.0)]
    rng = np.random.default_rng(3)
    noise = 150.0 + 80.0 * rng.standard_normal(n_bins)
    return np.stack(steps + [noise])


@pytest.mark.requires_x64
def test_excerpt_cells_match_float64_reference():
    """Acceptance 1: the 8 excerpt cells against the NumPy reference (relative error < 1e-5)."""
    records = load_records()
    assert len(records) == 8
    ds = load_dataset(records)
    cur = _stimuli()
    worst = 0.0
    for rec in records:
        model = model_from_dataset(ds, rec["cell_id"], 20, 20)
        assert model.alpha.dtype == jnp.float64
        got = np.asarray(simulate_rates(model, jnp.asarray(cur)))
        want = np.stack([reference_rates(rec["params"], c) for c in cur])
        assert want.max() > 0.005  # the cells fire for these currents
        rel = np.max(np.abs(got - want)) / np.max(np.abs(want))
        worst = max(worst, rel)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * want.max())
    assert worst < 1e-10


def test_excerpt_cells_float32_close_to_reference():
    """The float32 default stays within 3e-5 of the float64 reference (relative to the peak rate).

    Float32 round-off only: 0.35e-5 with XLA's default code generation, 1.25e-5 with the suite's
    unoptimised compilation (no fused multiply-add contraction)."""
    records = load_records()
    ds = load_dataset(records)
    cur = _stimuli()
    for rec in records:
        got = np.asarray(simulate_rates(model_from_dataset(ds, rec["cell_id"]), jnp.asarray(cur, jnp.float32)))
        want = np.stack([reference_rates(rec["params"], c) for c in cur])
        assert np.max(np.abs(got - want)) / want.max() < 3e-5


def test_example_cell_onset_then_adaptation():
    """Cell 566517779 (kappa = 1000): g(I) at onset, then the rate adapts; below threshold it is silent."""
    model = model_from_dataset(load_dataset(), 566517779)
    i_step = 200.0
    cur = jnp.concatenate([jnp.full(50, i_step), jnp.zeros(10)])
    r = np.asarray(simulate_rates(model, cur))
    # first bin: h = alpha * I, mean = mean(alpha) * I
    z0 = float(np.mean(model.alpha)) * i_step
    assert r[0] == pytest.approx(float(model.g(jnp.asarray(z0))), rel=1e-6)
    assert r[0] > r[-11] > 0  # onset then adaptation (beta < 0 on slow traces)
    assert np.all(r[-9:] < r[-11])
    silent = np.asarray(simulate_rates(model, jnp.full(20, 50.0)))  # 50 pA is below the 110 pA threshold
    assert np.all(silent == 0)


def test_decay_grid_and_default_neuron():
    np.testing.assert_allclose(decay_rates(20), [1, 0.6321, 0.3297, 0.1813, 0.0952, 0.0392, 0.0198, 0.0100], atol=1e-4)
    assert [len(decay_rates(b)) for b in (10, 20, 50, 100)] == [9, 8, 7, 6]
    np.testing.assert_allclose(decay_rates(1, taus=(1, 2, 5)), [1, 0.6321, 0.3935, 0.1813], atol=1e-4)
    with pytest.raises(ConfigError, match="dt must be one of"):
        decay_rates(30)
    nrn = default_neuron()
    assert nrn.kappa == 1.0
    z = jnp.linspace(-3, 3, 13)
    np.testing.assert_allclose(nrn.g(z), jnp.maximum(jnp.tanh(z), 0), rtol=1e-6)
    # alpha = [4, 0, 0, 0], beta = 0: the mean trace is I in the first step
    np.testing.assert_allclose(simulate_rates(nrn, jnp.asarray([0.5]))[0], np.tanh(0.5), rtol=1e-6)


def test_kernel_form_matches_recursion_and_fft():
    """The LN-with-feedback kernels reproduce the recursion; FFT evaluation only when beta = 0."""
    model = model_from_dataset(load_dataset(), 566517779)
    cur = jnp.asarray(_stimuli(60)[4])
    rates = np.asarray(simulate_rates(model, cur))
    k_i, k_f = (np.asarray(k) for k in kernels(model, 60))
    cur = np.asarray(cur)
    # z_t = sum_j k_I(j) I_{t-j} + sum_j k_f(j) f_{t-1-j}
    z = np.array([np.dot(k_i[: t + 1][::-1], cur[: t + 1]) + (np.dot(k_f[:t][::-1], rates[:t]) if t else 0.0) for t in range(60)])
    np.testing.assert_allclose(np.asarray(model.g(jnp.asarray(z))), rates, rtol=2e-4, atol=1e-7)
    assert float(k_i[0]) == pytest.approx(float(np.mean(model.alpha)), rel=1e-6)
    with pytest.raises(ConfigError, match="beta = 0"):
        simulate_feedforward(model, jnp.asarray(cur))
    ff = eqx.tree_at(lambda m: m.beta, model, jnp.zeros_like(model.beta))
    np.testing.assert_allclose(simulate_feedforward(ff, jnp.asarray(cur)), simulate_rates(ff, jnp.asarray(cur)), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(linear_drive(ff, jnp.asarray(cur)), np.convolve(cur, k_i)[:60], rtol=1e-4, atol=1e-3)


def test_layer_equals_single_neurons_and_step_api():
    ds = load_dataset()
    neurons = [model_from_dataset(ds, c) for c in ds[(20, 20)]["cell_id"]]
    layer = GFRLayer.from_neurons(neurons)
    assert layer.n_neurons == 8 and layer.decay.shape == (8,)
    cur = jnp.asarray(np.random.default_rng(0).uniform(0, 400, (2, 8, 30)))
    out = simulate_rates(layer, cur)
    for i, nrn in enumerate(neurons):
        np.testing.assert_allclose(out[:, i], simulate_rates(nrn, cur[:, i]), rtol=1e-5, atol=1e-8)
    state = layer.init_state((2,))
    state, r0 = layer.step(state, cur[:, :, 0])
    np.testing.assert_allclose(r0, out[:, :, 0], rtol=1e-6)
    assert layer.neuron(3).get_params() == neurons[3].get_params()
    dl = default_layer(5)
    assert dl.alpha.shape == (5, 4) and dl.kappa == 1.0
    with pytest.raises(ConfigError, match="decay grid|configuration"):
        GFRLayer.from_neurons([neurons[0], default_neuron()])


def test_jit_vmap_and_sweep_agree_with_plain_calls():
    ds = load_dataset()
    cells = list(ds[(20, 20)]["cell_id"])
    models = [model_from_dataset(ds, c) for c in cells]
    cur = jnp.asarray(_stimuli(40)[2], jnp.float32)
    plain = np.stack([np.asarray(simulate_rates(m, cur)) for m in models])
    stacked = stack(models)
    vm = jax.vmap(lambda m: simulate_rates(m, cur))(stacked)
    jt = jax.jit(lambda m, c: simulate_rates(m, c))(models[0], cur)
    sw = sweep(lambda m, c: simulate_rates(m, c), stacked, cur)
    ck = simulate_rates(models[0], cur, checkpoint=7)
    np.testing.assert_allclose(vm, plain, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(jt, plain[0], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(sw, plain, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(ck, plain[0], rtol=1e-6, atol=1e-9)
    batched = simulate_rates(models[0], jnp.stack([cur, 2 * cur]))  # (..., T) broadcasting
    np.testing.assert_allclose(batched[0], plain[0], rtol=1e-6)


@pytest.mark.requires_x64
def test_check_grads_float64():
    """Acceptance 5: gradients of simulate (alpha, beta, g, current) pass check_grads in float64."""
    model = model_from_dataset(load_dataset(), 566517779)
    cur = jnp.asarray(np.random.default_rng(1).uniform(120, 260, 12))

    def f(alpha, beta, coeff, b, c):
        m = eqx.tree_at(lambda m: (m.alpha, m.beta, m.g.poly_coeff, m.g.b), model, (alpha, beta, coeff, b))
        return simulate_rates(m, c, checkpoint=4)

    args = (model.alpha, model.beta, model.g.poly_coeff, model.g.b, cur)
    out = f(*args)
    assert np.all(np.asarray(out) > 0)  # stay off the ReLU kink
    check_grads(f, args, order=1, modes=("rev", "fwd"), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_sharded_sweep_matches_plain():
    """Acceptance 5: a sweep sharded over 4 forced host devices gives the plain numbers."""
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np
        from spikejax.core import stack, sweep
        from spikejax.gfr import load_dataset, model_from_dataset, simulate_rates
        assert jax.local_device_count() == 4
        ds = load_dataset()
        models = [model_from_dataset(ds, c) for c in ds[(20, 20)]["cell_id"]][:6]
        cur = jnp.linspace(0.0, 400.0, 30)
        sharded = sweep(lambda m, c: simulate_rates(m, c), stack(models), cur)
        plain = np.stack([np.asarray(simulate_rates(m, cur)) for m in models])
        np.testing.assert_allclose(np.asarray(sharded), plain, rtol=1e-6, atol=1e-9)
        print("OK")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "OK" in res.stdout


def test_bad_current_inputs():
    """Acceptance 6: wrong shapes and NaN/inf currents raise clear errors naming the argument."""
    model = model_from_dataset(load_dataset(), 566517779)
    with pytest.raises(NonFiniteError, match="current"):
        simulate(model, jnp.asarray([1.0, np.nan, 2.0]))
    with pytest.raises(NonFiniteError, match="current"):
        simulate(model, jnp.asarray([1.0, np.inf]))
    with pytest.raises(ShapeError, match="current"):
        simulate(model, jnp.asarray(3.0))
    with pytest.raises(TypeError, match="current"):
        simulate(model, "a lot")
    layer = default_layer(3)
    with pytest.raises(ShapeError, match="N = 3"):
        simulate(layer, jnp.ones((4, 10)))
    with pytest.raises(ShapeError, match="alpha, beta and decay"):
        GFR(jnp.ones(3), jnp.ones(4), jnp.ones(4), model.g)
    with pytest.raises(TypeError, match="GFR"):
        simulate(object(), jnp.ones(3))


def test_simulate_returns_trajectory():
    """simulate returns a time-major GFRTrajectory (rates spikes/ms, table in Hz), also under jit and vmap."""
    import equinox as eqx

    from spikejax.gfr import GFRTrajectory

    model = model_from_dataset(load_dataset(), 566517779)
    cur = jnp.stack([jnp.full(30, 250.0), jnp.full(30, 150.0)])  # (trials, T)
    traj = simulate(model, cur)
    assert isinstance(traj, GFRTrajectory) and traj.dt == 20.0 and traj.state is None
    assert traj.rate.shape == (30, 2) and traj.current.shape == (30, 2)
    np.testing.assert_allclose(traj.rate, simulate_rates(model, cur).T, rtol=1e-6)
    df = traj.to_pandas()
    assert list(df.columns) == ["time_ms", "trial", "rate_hz", "current_pa"]
    np.testing.assert_allclose(df["rate_hz"].to_numpy(), np.asarray(traj.rate).ravel() * 1000.0, rtol=1e-6)
    with_state = simulate(model, cur, record_state=True)
    assert isinstance(with_state, GFRTrajectory) and with_state.state[0].shape == (2, model.n_traces)
    jitted = eqx.filter_jit(simulate)(model, cur)
    np.testing.assert_allclose(jitted.rate, traj.rate, rtol=1e-6)
    vm = eqx.filter_vmap(lambda c: simulate(model, c))(cur)
    assert isinstance(vm, GFRTrajectory) and vm.rate.shape == (2, 30)


def test_layer_trajectory_table_has_neuron_column():
    """A GFRLayer's trajectory: (T, N) rates, a `neuron` column, plot returns the Axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spikejax.gfr import plot_rates

    layer = default_layer(3)
    traj = simulate(layer, jnp.ones((3, 7)))
    assert traj.rate.shape == (7, 3) and traj.axes == ("neuron",) and traj.dt == 1.0
    df = traj.to_pandas()
    assert list(df.columns) == ["time_ms", "neuron", "rate_hz", "current_pa"] and len(df) == 21
    ax = plot_rates(traj)
    assert ax is traj.plot(ax=ax)
    plt.close("all")


def test_trajectory_save_load(tmp_path):
    from spikejax.gfr import GFRTrajectory

    model = model_from_dataset(load_dataset(), 566517779)
    traj = simulate(model, jnp.full((2, 10), 200.0))
    back = GFRTrajectory.load(traj.save(tmp_path / "traj.h5"))
    assert back.axes == ("trial",) and back.dt == traj.dt
    np.testing.assert_array_equal(back.rate, traj.rate)
    assert back.to_pandas().equals(traj.to_pandas())
