"""The low-rank weight carry (faithful BCM / Slide_BCM, Euler) against the dense N x N carry,
and the stimulus split u(t) = c(t) @ B against the closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spikejax.l5 import L5Model, L5Params, build_network, debug_config, make_spec, simulate
from spikejax.l5.network import type_index
from spikejax.l5.stimulus import stimulus_at, stimulus_basis, thalamic_gain

TINY = dict(N=[4, 6, 3, 3], sim_number=1, Ttau=6, block=5, eval_steps=10, number_steps_before_learning=12,
            tau_learn=5.0, tau_threshold=0.09, degree=[0.0, 90.0, 180.0, 270.0])


@pytest.mark.requires_x64
@pytest.mark.parametrize("kind", ["counterphase", "semicircle", "drifting", "thalamic"])
def test_stimulus_basis_matches_closed_form(kind):
    N = [4, 6, 3, 3]
    tid = type_index(N)
    rng = np.random.default_rng(0)
    amp = jnp.asarray([6.0, 5.0, 10.0, 5.0])[tid]
    steady = jnp.asarray([0.0, 1.0, 0.0, 1.0])[tid]
    s = jnp.asarray(rng.uniform(-1, 1, tid.size))
    gain = thalamic_gain(tid, N, jnp.deg2rad(90.0), jnp.deg2rad(90.0), (0.5, 0.5), 1.3, 1.7) if kind == "thalamic" else None
    B, c = stimulus_basis(kind, amp, steady, s, 10.0, 50.0, 1.0, gain)
    for t in (0, 1, 7, 123, 2499):
        want = stimulus_at(kind, amp, steady, s, jnp.asarray(t), 10.0, 50.0, 1.0, gain)
        np.testing.assert_allclose(np.asarray(c(jnp.asarray(t)) @ B), np.asarray(want), rtol=1e-12, atol=1e-12)


def _both(**changes):
    cfg = debug_config(**{**TINY, **changes})
    net = build_network(cfg, key=jax.random.PRNGKey(5))
    p = L5Params.from_config(cfg)
    lo = make_spec(cfg, record_states=True)
    assert lo.low_rank
    a = simulate(L5Model(p, net, lo))
    b = simulate(L5Model(p, net, make_spec(cfg, record_states=True, dense_weights=True)))
    return a, b


@pytest.mark.requires_x64
@pytest.mark.parametrize(
    "changes",
    [
        dict(learning_rule="Slide_BCM", stimulus="drifting", phase_key="CC_CS_Alter", steady_input=[0, 1, 0, 0]),
        dict(learning_rule="BCM", neurons="excit_only", stimulus="thalamic", thal_scalar_preferred=1.5),
    ],
)
def test_low_rank_equals_dense(changes):
    a, b = _both(**changes)
    for name in ("rates", "w_trace", "W_final", "r_steps", "W_steps"):
        np.testing.assert_allclose(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), rtol=1e-9, atol=1e-12)
    assert float(jnp.max(jnp.abs(a.W_steps[0, 0, -1] - a.W_init[0]))) > 1e-6  # the weights did move


def test_low_rank_used_only_where_exact():
    assert make_spec(debug_config()).low_rank
    for ch in (dict(variant="corrected"), dict(integrator="runge_kutta"), dict(learning_rule="Cov"),
               dict(learning_rule="Oja"), dict(learning_rule="None")):
        assert not make_spec(debug_config(**ch)).low_rank, ch
