"""Free runs of the mesoscopic model: :func:`simulate` and the :class:`MesoTrajectory` it returns."""

from __future__ import annotations

import functools
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError, check_allocation, check_array, check_choice, check_scalar
from ..core.random import check_key
from ..core.results import Trajectory, get_ax, tidy
from .model import MesoConfig, init_state, step
from .params import MesoParams

__all__ = ["MesoTrajectory", "simulate"]


class MesoTrajectory(Trajectory):
    """What :func:`simulate` returns: the population activity of a free run (time-major).

    Attributes
    ----------
    Z : (T, M) array
        Sampled fraction of each population firing per bin (spikes/neuron/bin).
    zbar : (T, M) array
        Expected fraction ``Z̄(t)`` given the past.
    dt : float (static)
        Bin size in ms.
    populations : tuple of str (static)
        Population names (the model's ``names``, else ``"0", "1", …``).
    """

    Z: jax.Array
    zbar: jax.Array
    populations: tuple = eqx.field(static=True, kw_only=True, default=())

    @property
    def rate_hz(self) -> jax.Array:
        """Population activity in Hz (T, M): ``Z / dt``."""
        return self.Z / (float(self.dt) / 1000.0)

    @property
    def expected_rate_hz(self) -> jax.Array:
        """Expected activity in Hz (T, M): ``zbar / dt``."""
        return self.zbar / (float(self.dt) / 1000.0)

    @property
    def n_steps(self) -> int:
        """Number of bins."""
        return int(self.Z.shape[-2])

    def to_pynapple(self, *, start: float = 0.0):
        """The activity in Hz (``rate_hz``) as a pynapple ``TsdFrame``, one column per population,
        timestamps at the bin centres in s from ``start`` (s)."""
        from ..core.nwb import rates_to_pynapple

        Z = np.asarray(self.rate_hz)
        if Z.ndim != 2:
            raise ConfigError(f"to_pynapple needs one trajectory (T, M); this one has shape {Z.shape} (index it first)")
        names = list(self.populations) if len(self.populations) == Z.shape[1] else None
        return rates_to_pynapple(Z, dt=self.dt, start=start, columns=names)

    def to_pandas(self):
        """Long table: ``time_ms``, ``population`` (names), ``rate_hz``, ``expected_rate_hz``."""
        Z = np.asarray(self.Z)
        if Z.ndim != 2:
            raise ConfigError(f"to_pandas needs one trajectory (T, M); this one has shape {Z.shape} (index it first)")
        names = list(self.populations) if len(self.populations) == Z.shape[1] else None
        return tidy(self.times_ms(Z.shape[0]), {"rate_hz": np.asarray(self.rate_hz),
                                                 "expected_rate_hz": np.asarray(self.expected_rate_hz)},
                    axes=("population",), labels={"population": names} if names else None)

    def plot(self, *, ax: Any = None) -> Any:
        """Rates (Hz) of every population against time (ms)."""
        ax = get_ax(ax, figsize=(8, 2.5))
        R = np.asarray(self.rate_hz)
        t = self.times_ms(R.shape[0])
        names = list(self.populations) if len(self.populations) == R.shape[1] else [str(i) for i in range(R.shape[1])]
        for i in range(R.shape[1]):
            ax.plot(t, R[:, i], lw=0.8, label=names[i])
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("rate (Hz)")
        ax.legend(fontsize=7)
        return ax


def simulate(
    model: MesoParams,
    I_ext: jax.Array | None = None,
    *,
    n_steps: int | None = None,
    key: jax.Array,
    A0: jax.Array | None = None,
    noise: Literal["gaussian", "binomial"] = "gaussian",
    config: MesoConfig = MesoConfig(),
) -> MesoTrajectory:
    """Free simulation of the mesoscopic model for ``n_steps`` bins of Δ = ``config.dt`` ms.

    At each bin ``Z ~ N(Z̄, Z̄/N)`` truncated at 0 (neuLVM, ``noise="gaussian"``) or
    ``Z = Binomial(N, Z̄)/N`` (``noise="binomial"``), and Z is fed back as history. Binomial counts
    are the documented choice for comparisons with a spiking network (closer dominance durations
    and loser rates; measured in docs/meso.md); Gaussian stays the default, as in neuLVM.

    Parameters
    ----------
    model
        Model parameters (:class:`MesoParams`).
    I_ext
        Optional (n_steps, M) external input in Δu/s (e.g. from :func:`spikejax.meso.pulse_input`);
        it sets ``n_steps`` when given.
    n_steps
        Number of bins of Δ to simulate (required without ``I_ext``).
    key
        PRNG key (``fold_in(key, t)`` per bin, so runs of different length share their start).
    A0
        (M,) initial rates in Hz for the stationary start (default 1 Hz everywhere, as neuLVM).
    noise
        ``"gaussian"`` (default) or ``"binomial"``.
    config
        Static model options (:class:`MesoConfig`; ``config.dt`` in ms).

    Returns
    -------
    MesoTrajectory
        ``Z`` and ``zbar`` (n_steps, M) fractions per bin; ``rate_hz`` in Hz; ``dt`` in ms.
    """
    key = check_key(key)
    if not isinstance(model, MesoParams):
        raise TypeError(f"model must be a MesoParams (e.g. meso.ground_truth()), got {type(model).__name__}")
    model.validate()
    if not isinstance(config, MesoConfig):
        raise ConfigError(f"config must be a MesoConfig, got {type(config).__name__}")
    if I_ext is not None and np.ndim(I_ext) == 0:
        raise ConfigError(f"the second argument of simulate is the input I_ext (n_steps, M); for a number of bins "
                          f"pass n_steps={I_ext!r}")
    check_choice(noise, "noise", ("gaussian", "binomial"))
    M = model.M
    dtype = model.amem.dtype
    if I_ext is not None:
        I_ext = check_array(I_ext, "I_ext", (None, M), ndim=2).astype(dtype)
        if n_steps is None:
            n_steps = int(I_ext.shape[0])
    if n_steps is None:
        raise ConfigError("n_steps is required (the number of bins to simulate) when no input I_ext is given")
    n_steps = int(check_scalar(n_steps, "n_steps", low=1, integer=True))
    # Z and zbar (n_steps, M), the scanned step index and input, and the returned copies
    check_allocation(4.0 * n_steps * (M + 1) * jnp.dtype(dtype).itemsize, argument="n_steps",
                     what=f"a free run of {n_steps} bins of {config.dt:g} ms")
    if I_ext is not None and I_ext.shape[0] != n_steps:
        raise ConfigError(f"I_ext has {I_ext.shape[0]} bins, n_steps is {n_steps}")
    A0 = jnp.ones((M,), dtype) if A0 is None else check_array(A0, "A0", (M,), low=0.0).astype(dtype)
    Z, zbar = _simulate(model, key, A0, I_ext, n_bins=n_steps, noise=noise, cfg=config)
    return MesoTrajectory(Z, zbar, dt=float(config.dt), populations=model.population_names)


@functools.partial(jax.jit, static_argnames=("n_bins", "noise", "cfg"))
def _simulate(params, key, A0, I_ext, *, n_bins, noise, cfg):
    N = params.N_array
    state = init_state(params, A0, cfg)

    def body(st, x):
        t, It = x
        zbar, adv = step(params, st, It, cfg)
        k = jax.random.fold_in(key, t)
        if noise == "gaussian":
            Zt = jnp.maximum(zbar + jnp.sqrt(zbar / N) * jax.random.normal(k, zbar.shape, zbar.dtype), 0.0)
        else:
            Zt = jax.random.binomial(k, N, zbar).astype(zbar.dtype) / N
        return adv(Zt), (Zt, zbar)

    _, (Z, zbar) = jax.lax.scan(body, state, (jnp.arange(n_bins), I_ext), unroll=cfg.unroll)
    return Z, zbar
