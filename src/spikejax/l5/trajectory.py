"""What :func:`spikejax.l5.simulate` returns: :class:`L5Trajectory` (block-mean rates and weights)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import numpy as np
from jaxtyping import Array

from ..core.results import Trajectory, get_ax, tidy
from .config import TYPES
from .network import type_index

__all__ = ["L5Trajectory"]


class L5Trajectory(Trajectory):
    """Outputs of :func:`~spikejax.l5.simulate` (leading axes: S networks, D directions, then time).

    Attributes
    ----------
    rates : (S, D, n_blocks, N)
        Block-mean rates (dimensionless, the original's unit: ``rate_au`` in tables).
    w_trace : (S, D, n_blocks, 4, 4) or None
        Type-level mean weights [post, pre] at each block end (``record_weights``).
    W_final : (S, D, N, N) or None
        Mean W over the last 25 blocks (``record_weights``).
    W_init : (S, N, N)
        Initial W (after type-level gains).
    r_steps, W_steps : per-step rates (S, D, T, N) and weights (S, D, T, N, N), or None
        Filled only with ``record_states``.
    degree : (D,)
        Stimulus directions (degrees).
    dt : float (static)
        Integration step (ms; the model's time unit); a block of ``block`` steps lasts ``block * dt``.
    block : int (static)
        Steps per block mean.
    N : tuple (static)
        Population sizes (CS, CC, PV, SST).

    The networks and directions lead the arrays (the metrics reduce over them); time is the third axis.
    """

    rates: Array
    w_trace: Array | None
    W_final: Array | None
    W_init: Array
    r_steps: Array | None
    W_steps: Array | None
    degree: Array
    block: int = eqx.field(static=True, kw_only=True)
    N: tuple = eqx.field(static=True, kw_only=True)

    @property
    def times_block_ms(self) -> np.ndarray:
        """End time (ms) of every block of :attr:`rates`."""
        return (np.arange(np.shape(self.rates)[-2]) + 1) * self.block * float(self.dt)

    def to_pandas(self):
        """Long table: ``time_ms`` (block end), ``network``, ``direction_deg``, ``neuron``, ``type``, ``rate_au``."""
        r = np.asarray(self.rates)
        if r.ndim != 4:
            raise ValueError(f"to_pandas needs rates of shape (S, D, n_blocks, N), got {r.shape} (a vmapped trajectory?)")
        df = tidy(self.times_block_ms, {"rate_au": np.transpose(r, (2, 0, 1, 3))},
                  axes=("network", "direction_deg", "neuron"),
                  labels={"direction_deg": [float(d) for d in np.asarray(self.degree)]})
        df["direction_deg"] = df["direction_deg"].astype(float)
        df.insert(4, "type", np.asarray(TYPES, dtype=object)[type_index(self.N)[df["neuron"].to_numpy()]])
        return df

    def plot(self, *, ax: Any = None, network: int = 0, direction: int = 0) -> Any:
        """Type-averaged block-mean rates against time for one network and direction."""
        from .plots import plot_activity

        return plot_activity(self.rates, self.N, sim=network, direction=direction, block_steps=self.block,
                             dt=float(self.dt), ax=get_ax(ax))
