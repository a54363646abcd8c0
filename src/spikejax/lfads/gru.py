"""The LFADS clipped "reset-before" GRU cell and bidirectional sequence helpers.

The cell (spec §1.2) is

* ``z = sigmoid(W_z u + U_z h + b_z)``, ``r = sigmoid(W_r u + U_r h + b_r)``
* ``n = tanh(W_n u + U_n (r * h) + b_n)`` (reset applied to ``h`` *before* the recurrent matmul)
* ``h' = clip(z * h + (1 - z) * n, -c, c)``

with input-side biases only (``b_z = b_r = 1``, ``b_n = 0`` at initialisation) and no recurrent
bias. This differs from the cuDNN/PyTorch/flax "reset-after" cell.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.precision import precise
from . import rng

__all__ = ["ClippedGRUCell", "gru_scan", "gru_scan_tm", "bidirectional_gru"]


class ClippedGRUCell(eqx.Module):
    """LFADS GRU cell.

    Attributes
    ----------
    w_in : (3H, I) input kernel, rows ordered (z, r, n).
    b_in : (3H,) input-side bias.
    u_zr : (2H, H) recurrent kernel of the update/reset gates.
    u_n : (H, H) recurrent kernel of the candidate (applied to ``r * h``).
    clip : hidden-state clip value ``c`` (static).
    """

    w_in: jax.Array
    b_in: jax.Array
    u_zr: jax.Array
    u_n: jax.Array
    clip: float = eqx.field(static=True)

    def __init__(self, input_size: int, hidden_size: int, *, key: jax.Array, clip: float = 5.0,
                 init: str = "encoder", dtype=None):
        """Initialise with the LFADS scheme.

        ``init="encoder"``: both kernels ~ N(0, 1/(input + hidden)); ``init="decoder"``: input kernel
        ~ N(0, 1/input), recurrent kernel ~ N(0, 1/hidden). Gate biases 1, candidate bias 0.
        """
        dtype = dtype or jnp.zeros(()).dtype
        k1, k2, k3 = jax.random.split(key, 3)
        h, i = int(hidden_size), int(input_size)
        if init == "encoder":
            fan_w = fan_u = i + h
        elif init == "decoder":
            fan_w, fan_u = i, h
        else:
            raise ValueError(f"init must be 'encoder' or 'decoder', got {init!r}")
        sw = 1.0 / jnp.sqrt(max(fan_w, 1))
        su = 1.0 / jnp.sqrt(max(fan_u, 1))
        self.w_in = rng.init_normal(k1, (3 * h, i), mul=sw).astype(dtype)
        self.b_in = jnp.concatenate([jnp.ones(2 * h), jnp.zeros(h)]).astype(dtype)
        self.u_zr = rng.init_normal(k2, (2 * h, h), mul=su).astype(dtype)
        self.u_n = rng.init_normal(k3, (h, h), mul=su).astype(dtype)
        self.clip = float(clip)

    @property
    def hidden_size(self) -> int:
        return self.u_n.shape[0]

    def input_projection(self, u: jax.Array) -> jax.Array:
        """``W u + b`` for ``u`` of shape (..., I) -> (..., 3H); precompute it for whole sequences."""
        return u @ self.w_in.T + self.b_in

    def step_projected(self, xp: jax.Array, h: jax.Array) -> jax.Array:
        """One step from a precomputed input projection ``xp`` (3H,) and state ``h`` (H,)."""
        hs = self.hidden_size
        zr = jax.nn.sigmoid(xp[: 2 * hs] + self.u_zr @ h)
        z, r = zr[:hs], zr[hs:]
        n = jnp.tanh(xp[2 * hs:] + self.u_n @ (r * h))
        h_new = z * h + (1.0 - z) * n
        return jnp.clip(h_new, -self.clip, self.clip)

    def __call__(self, u: jax.Array, h: jax.Array) -> jax.Array:
        """One step: input ``u`` (I,), state ``h`` (H,) -> new state (H,)."""
        return self.step_projected(self.input_projection(u), h)

    def recurrent_l2(self) -> tuple[jax.Array, int]:
        """(½‖U‖_F², numel(U)) of the hidden-to-hidden kernel (the LFADS L2 penalty's terms)."""
        sq = 0.5 * (jnp.sum(self.u_zr**2) + jnp.sum(self.u_n**2))
        return sq, int(self.u_zr.size + self.u_n.size)


def _gru_step(xp, h, u_zr, u_n, clip):
    """One step for a batch: ``xp`` (B, 3H) input projection, ``h`` (B, H) -> (h', z, r, n)."""
    hs = u_n.shape[0]
    zr = jax.nn.sigmoid(xp[..., : 2 * hs] + h @ u_zr.T)
    z, r = zr[..., :hs], zr[..., hs:]
    n = jnp.tanh(xp[..., 2 * hs:] + (r * h) @ u_n.T)
    return jnp.clip(z * h + (1.0 - z) * n, -clip, clip), z, r, n


def _gru_run(xp, h0, u_zr, u_n, clip, reverse):
    def body(h, x):
        h, z, r, n = _gru_step(x, h, u_zr, u_n, clip)
        return h, (h, jnp.concatenate([z, r, n], axis=-1))

    _, (hs, zrn) = jax.lax.scan(body, h0, xp, reverse=reverse)
    return hs, zrn


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
@precise
def _gru_seq(xs, w_in, b_in, h0, u_zr, u_n, clip, reverse):
    """All states (T, B, H) of the clipped GRU over a time-major batch ``xs`` (T, B, I) from ``h0`` (B, H)."""
    return _gru_run(xs @ w_in.T + b_in, h0, u_zr, u_n, clip, reverse)[0]


@precise
def _gru_seq_fwd(xs, w_in, b_in, h0, u_zr, u_n, clip, reverse):
    hs, zrn = _gru_run(xs @ w_in.T + b_in, h0, u_zr, u_n, clip, reverse)
    return hs, (xs, w_in, h0, u_zr, u_n, hs, zrn)


@precise
def _gru_seq_bwd(clip, reverse, res, g_hs):
    """Backward pass: per step only the state cotangent (two small GEMMs); all kernel gradients
    afterwards as one GEMM each over the (time, batch) pairs.

    The per-step gate cotangents are written gate-major, into a (3H, T, B) buffer, so that those
    GEMMs contract over the operands' natural (row-major) axes: with (T, B, 3H) storage XLA CPU
    transposes each operand (a few MB) before the GEMM, which cost more than the GEMM.
    """
    xs, w_in, h0, u_zr, u_n, hs, zrn = res
    n_t, n_b, nh = hs.shape
    if reverse:
        h_prev = jnp.concatenate([hs[1:], h0[None]], axis=0)
    else:
        h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)

    def body(carry, inp):
        dh, d_all = carry
        t, g, h, hp, gates = inp
        z, r, n = gates[..., :nh], gates[..., nh:2 * nh], gates[..., 2 * nh:]
        dh = jnp.where((h > -clip) & (h < clip), dh + g, 0.0)  # clip: no gradient where it binds
        da_n = dh * (1.0 - z) * (1.0 - n * n)
        d_rh = da_n @ u_n
        da_zr = jnp.concatenate([dh * (hp - n) * z * (1.0 - z), d_rh * hp * r * (1.0 - r)], axis=-1)
        dh_prev = dh * z + d_rh * r + da_zr @ u_zr
        da = jnp.concatenate([da_zr, da_n], axis=-1).T  # (3H, B)
        d_all = jax.lax.dynamic_update_slice_in_dim(d_all, da[:, None, :], t, axis=1)
        return (dh_prev, d_all), None

    d0 = jnp.zeros((3 * nh, n_t, n_b), hs.dtype)
    (dh0, d_all), _ = jax.lax.scan(body, (jnp.zeros_like(h0), d0), (jnp.arange(n_t), g_hs, hs, h_prev, zrn),
                                   reverse=not reverse)
    flat = d_all.reshape(3 * nh, n_t * n_b)  # gate cotangents, (3H, T·B)
    rows = lambda a: a.reshape(n_t * n_b, a.shape[-1])  # noqa: E731
    d_w = flat @ rows(xs)
    d_b = jnp.sum(flat, axis=1)
    d_uzr = flat[: 2 * nh] @ rows(h_prev)
    d_un = flat[2 * nh:] @ rows(zrn[..., nh:2 * nh] * h_prev)
    d_xs = jnp.einsum("kn,ki->ni", flat, w_in).reshape(xs.shape)  # dropped by XLA when xs is data
    return d_xs, d_w, d_b, dh0, d_uzr, d_un


_gru_seq.defvjp(_gru_seq_fwd, _gru_seq_bwd)


def gru_scan_tm(cell: ClippedGRUCell, xs: jax.Array, h0: jax.Array, *, reverse: bool = False) -> jax.Array:
    """Run ``cell`` over a time-major batch ``xs`` (T, B, I) from ``h0`` (H,) or (B, H); returns (T, B, H).

    The input projection of all steps is one GEMM before the scan; the scan has a hand-written
    VJP (:func:`_gru_seq`) that keeps the gates (one array) instead of autodiff's per-operation
    residuals and forms the kernel gradients as one GEMM each after the backward loop.
    ``reverse=True`` runs from the last step back (``out[t]`` has seen ``xs[t:]``).
    """
    h0 = jnp.broadcast_to(h0, (xs.shape[1], cell.hidden_size)).astype(xs.dtype)
    return _gru_seq(xs, cell.w_in, cell.b_in, h0, cell.u_zr, cell.u_n, cell.clip, reverse)


def gru_scan(cell: ClippedGRUCell, xs: jax.Array, h0: jax.Array, *, reverse: bool = False) -> jax.Array:
    """Run ``cell`` over a sequence ``xs`` (T, I) from ``h0``; returns all states (T, H).

    With ``reverse=True`` the sequence is processed from the last step back and the outputs are
    returned in the original time order (``out[t]`` has seen ``xs[t:]``).
    """
    return gru_scan_tm(cell, xs[:, None], h0[None], reverse=reverse)[:, 0]


def bidirectional_gru(fwd: ClippedGRUCell, bwd: ClippedGRUCell, xs: jax.Array, h0_fwd: jax.Array,
                      h0_bwd: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Forward and backward state sequences, in original time order: (T, H) each for ``xs`` (T, I),
    (T, B, H) each for a time-major batch ``xs`` (T, B, I).

    The two directions are two scans: stacking them into one scan of batched GEMMs (kernels
    (2, ., H)) was measured 1.6-3x slower per epoch on XLA CPU (batched dots are not its fast path).
    """
    scan = gru_scan if xs.ndim == 2 else gru_scan_tm
    return scan(fwd, xs, h0_fwd), scan(bwd, xs, h0_bwd, reverse=True)
