"""What :func:`~spikejax.glm.simulate` returns: one :class:`GLMTrajectory` (a :class:`spikejax.core.Trajectory`).

The spike counts are time-major: ``spikes`` has shape ``(n_steps, N)`` for one network or a
block-diagonal batch (:func:`~spikejax.glm.batch_networks`) and ``(n_steps, B, N)`` for a stacked
batch (:func:`~spikejax.glm.stack_networks`). ``dt`` (ms) is static, so ``jit`` and ``vmap`` of
``simulate`` return a trajectory too. :attr:`GLMTrajectory.raster` gives the neuron-major raster
``(N, n_steps)`` (``(B, N, n_steps)`` stacked) that spikeometric returns and the analysis helpers
(:func:`~spikejax.glm.firing_rates`, :func:`~spikejax.glm.plot_raster`, …) also take.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.results import Trajectory, tidy

__all__ = ["GLMTrajectory", "trajectory_from_spikes"]


class GLMTrajectory(Trajectory):
    """Spike counts of a simulated cascade network (``dt`` in ms).

    Attributes
    ----------
    spikes
        Counts per step, time-major: ``(n_steps, N)``, or ``(n_steps, B, N)`` for stacked networks, in
        ``simulate``'s ``store_as_dtype``.
    state
        The final :class:`~spikejax.glm.SimState` (to continue a run) when ``simulate(..., record_state=True)``,
        else ``None``. ``save`` writes it, but ``load`` cannot rebuild it (its shapes depend on the model and
        network): save trajectories without a state.
    block_sizes
        Sizes of the networks of a block-diagonal batch (static), else ``None``.
    dt
        Time step in ms (static).
    """

    spikes: jax.Array
    state: Any = None
    block_sizes: tuple[int, ...] | None = eqx.field(static=True, default=None)

    def __init__(self, spikes: jax.Array, state: Any = None, block_sizes=None, *, dt: float):
        self.spikes = spikes
        self.state = state
        self.block_sizes = None if block_sizes is None else tuple(int(b) for b in block_sizes)  # hashable after load
        self.dt = float(dt)

    # ---- views ------------------------------------------------------------------------------------
    @property
    def n_steps(self) -> int:
        """Number of recorded steps."""
        return int(self.spikes.shape[0])

    @property
    def n_neurons(self) -> int:
        """Neurons per network (all networks of a block-diagonal batch together)."""
        return int(self.spikes.shape[-1])

    @property
    def raster(self) -> jax.Array:
        """Neuron-major raster ``(N, n_steps)`` (``(B, N, n_steps)`` for stacked networks), spikeometric's layout."""
        return jnp.moveaxis(self.spikes, 0, -1)

    @property
    def time_ms(self) -> np.ndarray:
        """Start time (ms) of every recorded step."""
        return self.times_ms(self.n_steps)

    # ---- the contract -----------------------------------------------------------------------------
    def to_pandas(self):
        """Long table: ``time_ms``, ``network`` (batches only), ``neuron``, ``spikes_count``.

        For a block-diagonal batch ``neuron`` counts within its network; for one network it is the
        neuron index. One row per step and neuron.
        """
        x = np.asarray(self.spikes)
        if x.dtype == np.bool_:
            x = x.astype(np.int32)
        if x.ndim == 3:
            return tidy(self.time_ms, {"spikes_count": x}, axes=("network", "neuron"))
        if x.ndim != 2:
            raise ValueError(f"GLMTrajectory.to_pandas: spikes of shape {x.shape}; index a batch of trajectories first")
        df = tidy(self.time_ms, {"spikes_count": x}, axes=("neuron",))
        if self.block_sizes is not None:
            sizes = np.asarray(self.block_sizes)
            block = np.repeat(np.arange(sizes.size), sizes)
            offset = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            idx = df["neuron"].to_numpy()
            df.insert(1, "network", block[idx])
            df["neuron"] = idx - offset[block[idx]]
        return df

    def to_pynapple(self, *, start: float = 0.0):
        """The counts as a pynapple ``TsdFrame`` (one column per neuron; a ``TsdTensor`` for stacked
        networks), timestamps at the bin centres in s from ``start`` (s). :func:`trajectory_from_spikes`
        takes it back unchanged."""
        from ..core.nwb import rates_to_pynapple

        return rates_to_pynapple(np.asarray(self.spikes), dt=self.dt, start=start)

    def plot(self, *, ax: Any = None, max_neurons: int | None = None, title: str | None = None) -> Any:
        """Raster plot (the first network of a stacked batch); returns the Axes."""
        from .analysis import plot_raster

        raster = np.asarray(self.raster)
        if raster.ndim == 3:
            raster = raster[0]
        return plot_raster(raster, self.dt, ax=ax, max_neurons=max_neurons, title=title)


def trajectory_from_spikes(spikes: Any, *, dt: float | None = None, start: float | None = None,
                           stop: float | None = None) -> GLMTrajectory:
    """Observed spike trains as a :class:`GLMTrajectory` (counts ``(n_steps, N)`` in bins of ``dt`` ms).

    ``spikes``: an NWB 2 file path, :class:`~spikejax.core.SpikeTrains` or a pynapple ``TsGroup``
    (binned from ``start`` to ``stop``, s; ``dt`` required), or a pynapple ``TsdFrame`` of counts per
    bin on a regular grid (what :meth:`GLMTrajectory.to_pynapple` gives; ``dt`` is read from its
    timestamps). The result goes where the family takes observed spikes:
    :func:`~spikejax.glm.log_likelihood`, :func:`~spikejax.glm.firing_rates`, :func:`~spikejax.glm.plot_raster`, …
    """
    from ..core.errors import ConfigError, DataFormatError
    from ..core.nwb import _is_pynapple, bin_spikes, rates_from_pynapple

    if _is_pynapple(spikes, "TsdFrame", "TsdTensor"):
        counts, width = rates_from_pynapple(spikes)
        if dt is not None and not np.isclose(float(dt), width, rtol=1e-6):
            raise ConfigError(f"dt={dt} ms disagrees with the TsdFrame's bin width {width} ms")
        c = np.asarray(counts)
        if c.size and (np.any(c < 0) or np.any(c != np.round(c))):
            raise DataFormatError("spikes: a TsdFrame given as spikes must hold counts (whole numbers >= 0) per bin")
        return GLMTrajectory(jnp.asarray(c.astype(np.int32)), dt=width)
    if dt is None:
        raise ConfigError("dt (ms) is required to bin spike trains")
    counts = bin_spikes(spikes, dt=dt, start=start, stop=stop)
    return GLMTrajectory(jnp.asarray(counts), dt=float(dt))
