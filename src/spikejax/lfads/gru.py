"""The LFADS clipped "reset-before" GRU cell and bidirectional sequence helpers.

The cell (spec §1.2) is

* ``z = sigmoid(W_z u + U_z h + b_z)``, ``r = sigmoid(W_r u + U_r h + b_r)``
* ``n = tanh(W_n u + U_n (r * h) + b_n)`` (reset applied to ``h`` *before* the recurrent matmul)
* ``h' = clip(z * h + (1 - z) * n, -c, c)``

with input-side biases only (``b_z = b_r = 1``, ``b_n = 0`` at initialisation) and no recurrent
bias. This differs from the cuDNN/PyTorch/flax "reset-after" cell.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["ClippedGRUCell", "gru_scan", "bidirectional_gru"]


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
        self.w_in = (sw * jax.random.normal(k1, (3 * h, i))).astype(dtype)
        self.b_in = jnp.concatenate([jnp.ones(2 * h), jnp.zeros(h)]).astype(dtype)
        self.u_zr = (su * jax.random.normal(k2, (2 * h, h))).astype(dtype)
        self.u_n = (su * jax.random.normal(k3, (h, h))).astype(dtype)
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


def gru_scan(cell: ClippedGRUCell, xs: jax.Array, h0: jax.Array, *, reverse: bool = False) -> jax.Array:
    """Run ``cell`` over a sequence ``xs`` (T, I) from ``h0``; returns all states (T, H).

    With ``reverse=True`` the sequence is processed from the last step back and the outputs are
    returned in the original time order (``out[t]`` has seen ``xs[t:]``).
    """
    xp = cell.input_projection(xs)

    def body(h, x):
        h = cell.step_projected(x, h)
        return h, h

    _, hs = jax.lax.scan(body, h0, xp, reverse=reverse)
    return hs


def bidirectional_gru(fwd: ClippedGRUCell, bwd: ClippedGRUCell, xs: jax.Array, h0_fwd: jax.Array,
                      h0_bwd: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Forward and backward state sequences (T, H) each, in original time order."""
    return gru_scan(fwd, xs, h0_fwd), gru_scan(bwd, xs, h0_bwd, reverse=True)

