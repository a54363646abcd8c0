"""What :func:`spikejax.gfr.simulate` returns: :class:`GFRTrajectory`, and :func:`plot_rates`."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import numpy as np

from ..core.results import Trajectory, get_ax, tidy

__all__ = ["GFRTrajectory", "plot_rates"]


def _unit_axes(n_batch: int, layer: bool) -> tuple[str, ...]:
    """Names of the axes after time: batch axes (``trial``, or ``batch<k>`` when several), then ``neuron``."""
    batch = ("trial",) if n_batch == 1 else tuple(f"batch{k}" for k in range(n_batch))
    return batch + (("neuron",) if layer else ())


class GFRTrajectory(Trajectory):
    """Rates of a GFR neuron (or layer) driven by a current, time-major.

    Attributes
    ----------
    rate : array (T, ...)
        Firing rate per bin, spikes/ms (``to_pandas`` gives ``rate_hz``, Hz).
    current : array (T, ...)
        The input current per bin, pA (same shape as ``rate``).
    state : ``(h, f)`` or None
        The final state (traces ``h`` (..., n) and last rate ``f`` (...)) when ``simulate`` was called
        with ``record_state=True``; ``None`` otherwise.
    dt : float (static)
        Bin width, ms (the model's ``dt``).
    axes : tuple of str (static)
        Names of the axes after time: ``trial`` (or ``batch<k>``) for batch axes of the current, then
        ``neuron`` for a :class:`~spikejax.gfr.GFRLayer`.
    """

    rate: jax.Array
    current: jax.Array
    state: Any = None
    axes: tuple[str, ...] = eqx.field(static=True, default=(), kw_only=True, converter=tuple)

    @property
    def n_steps(self) -> int:
        """Number of time bins."""
        return int(self.rate.shape[0])

    @property
    def time_ms(self) -> np.ndarray:
        """Bin start times, ms."""
        return self.times_ms(self.n_steps)

    def to_pandas(self):
        """Long table: ``time_ms``, the unit axes (``trial``, ``neuron``), ``rate_hz``, ``current_pa``."""
        rate = np.asarray(self.rate)
        names = self.axes if len(self.axes) == rate.ndim - 1 else _unit_axes(rate.ndim - 1, False)
        cur = np.broadcast_to(np.asarray(self.current), rate.shape)
        return tidy(self.time_ms, {"rate_hz": rate * 1000.0, "current_pa": cur}, axes=names)

    def plot(self, *, ax: Any = None) -> Any:
        """Rates (Hz) against time (ms); see :func:`plot_rates`."""
        return plot_rates(self, ax=ax)


def plot_rates(trajectory: GFRTrajectory, *, ax: Any = None, max_lines: int = 20) -> Any:
    """Draw the rates (Hz) of a :class:`GFRTrajectory` against time (ms) on ``ax`` (new Axes by default).

    Every unit (trial / neuron) is one line, at most ``max_lines`` of them. Returns the Axes.
    """
    ax = get_ax(ax)
    rate = np.asarray(trajectory.rate) * 1000.0
    flat = rate.reshape(rate.shape[0], -1)
    t = trajectory.time_ms
    for j in range(min(flat.shape[1], int(max_lines))):
        ax.plot(t, flat[:, j], lw=1)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("rate (Hz)")
    return ax
