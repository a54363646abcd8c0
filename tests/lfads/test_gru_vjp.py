"""The GRU scan's hand-written VJP (gru._gru_seq) against autodiff of the plain scan, float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from spikejax.lfads.gru import ClippedGRUCell, _gru_run, _gru_seq, gru_scan, gru_scan_tm


def _inputs(clip, seed=0, T=6, B=3, H=4, I=5):
    cell = ClippedGRUCell(I, H, key=jax.random.PRNGKey(seed), clip=clip)
    rs = np.random.default_rng(seed)
    xs = jnp.asarray(rs.normal(size=(T, B, I)) * 2.0)
    h0 = jnp.asarray(rs.normal(size=(B, H)) * 0.3)
    return cell, xs, h0


def _plain(xs, w_in, b_in, h0, u_zr, u_n, clip, reverse):
    return _gru_run(xs @ w_in.T + b_in, h0, u_zr, u_n, clip, reverse)[0]  # autodiff through the scan


@pytest.mark.requires_x64
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("clip", [5.0, 0.4])  # 0.4: the clip binds on many entries
def test_custom_vjp_matches_autodiff(reverse, clip):
    cell, xs, h0 = _inputs(clip)
    args = (xs, cell.w_in, cell.b_in, h0, cell.u_zr, cell.u_n)
    w = jnp.asarray(np.random.default_rng(1).normal(size=(xs.shape[0], xs.shape[1], 4)))
    f_custom = lambda *a: jnp.sum(w * jnp.sin(_gru_seq(*a, clip, reverse)))  # noqa: E731
    f_plain = lambda *a: jnp.sum(w * jnp.sin(_plain(*a, clip, reverse)))  # noqa: E731
    np.testing.assert_allclose(f_custom(*args), f_plain(*args), rtol=1e-14)
    g_custom = jax.grad(f_custom, argnums=tuple(range(6)))(*args)
    g_plain = jax.grad(f_plain, argnums=tuple(range(6)))(*args)
    for a, b in zip(g_custom, g_plain):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    if clip > 1:  # finite differences need a smooth function: no entry sitting at the clip
        check_grads(lambda *a: _gru_seq(*a, clip, reverse), args, order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.requires_x64
def test_batched_and_single_trial_scans_agree_under_vmap_and_jit():
    cell, xs, h0 = _inputs(5.0, seed=2)
    tm = gru_scan_tm(cell, xs, h0, reverse=True)
    one = jax.jit(jax.vmap(lambda x, h: gru_scan(cell, x, h, reverse=True), in_axes=(1, 0), out_axes=1))(xs, h0)
    np.testing.assert_allclose(tm, one, rtol=1e-13)
    # gradients w.r.t. the cell through the vmapped single-trial path == batched path
    loss_tm = lambda c: jnp.sum(gru_scan_tm(c, xs, h0) ** 2)  # noqa: E731
    loss_v = lambda c: jnp.sum(jax.vmap(lambda x, h: gru_scan(c, x, h), in_axes=(1, 0))(xs, h0) ** 2)  # noqa: E731
    ga = jax.grad(loss_tm)(cell)
    gb = jax.grad(loss_v)(cell)
    for a, b in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
