"""Microscopic generator: LIF neurons with exponential escape noise, all-to-all mean-field coupling.

The network of neuLVM's data generator (δ = 0.2 ms), for any number of populations, sizes and
connectivity mask. Every neuron of population α receives the same input
(all-to-all coupling with weight ``J_eff/N`` per spike), so finite-size noise comes only from
the escape noise. One micro step:

* ``s_β ← e^{−δα_s} s_β + (1 − e^{−δα_s}) A_β(previous step)`` (Hz; traces start at 0);
* ``I_α = Σ_β J_eff[β, α] s_β + ε I_ext,α``;
* ``u ← (1 − e^{−δα_m}) μ + e^{−δα_m} u + δ I`` (leak exact, input Euler);
* ``u = 0`` while the time since the last spike is below t_ref (integer counters: 20 steps);
* spike with probability ``1 − exp(−λδ)``, ``λ = exp(u − θ)`` Hz (0 while refractory); reset u = 0;
* ``A_α = (number of spikes)/(N_α δ)``.

Initial condition ("stationary"): neuron ages drawn on [0, 0.5 s] from the density ∝ S0(a) of a
population at constant rates A0, potentials ``u = h(1 − e^{−α_m a})`` (0 within t_ref).

The whole run is one ``lax.scan`` over bins of ``record_every`` micro steps (an inner scan over
the micro steps of a bin), so only per-bin population counts and recorded spikes are stored.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import check_allocation, check_array, check_scalar
from ..core.random import check_key
from .params import MesoParams

__all__ = ["MicroResult", "simulate_micro", "stationary_ages", "pulse_input", "MICRO_DT_MS"]

MICRO_DT_MS = 0.2  # ms


class MicroResult(NamedTuple):
    """Output of :func:`simulate_micro` (time-major, one row per recorded bin).

    Attributes
    ----------
    counts : (T, M) int32
        Spikes of each population per recorded bin of ``dt`` ms.
    spikes : (T, M, n_record) uint8
        Spike counts of the recorded neurons per bin (0/1 when ``record_every == 1``).
    dt : float
        Bin width in ms (``record_every * 0.2``).
    N : tuple of int
        Population sizes.
    """

    counts: jax.Array
    spikes: jax.Array
    dt: float
    N: tuple

    @property
    def A(self) -> np.ndarray:
        """Population activity in Hz per bin (T, M)."""
        return np.asarray(self.counts) / (np.asarray(self.N)[None, :] * (self.dt / 1000.0))

    @property
    def Z(self) -> np.ndarray:
        """Fraction of each population firing per bin (T, M)."""
        return np.asarray(self.counts) / np.asarray(self.N, dtype=float)[None, :]


def _stationary_survival(params: MesoParams, A0, dt: float, n: int):
    """log S0 on the grid a = 0, dt, …, (n−1)dt for constant rates A0 (Hz); also h (M,)."""
    h = params.mu + (A0 @ params.J_eff) / params.amem
    a = jnp.arange(n, dtype=params.amem.dtype)[None, :] * dt
    V = h[:, None] * (1.0 - jnp.exp(-params.amem[:, None] * a))
    lam = jnp.where(a < params.t_ref_s - 1e-12, 0.0, jnp.exp(V - params.theta[:, None]))
    cum = jnp.concatenate([jnp.zeros_like(lam[:, :1]), jnp.cumsum(0.5 * (lam[:, 1:] + lam[:, :-1]) * dt, 1)], 1)
    return -cum, h


def stationary_ages(
    params: MesoParams, A0, n_per_pop: int, *, key: jax.Array, dt: float = MICRO_DT_MS, max_age: float = 500.0
) -> jax.Array:
    """Ages (in steps of ``dt`` ms) drawn from the stationary density ∝ S0(a) on [0, ``max_age``] ms.

    Returns an int32 array (M, n_per_pop).
    """
    key = check_key(key)
    return _stationary_ages(params, A0, n_per_pop, key=key, dt=float(dt) / 1000.0, max_age=float(max_age) / 1000.0)


def _stationary_ages(params, A0, n_per_pop, *, key, dt, max_age):
    """:func:`stationary_ages` in s (``dt``, ``max_age``)."""
    n = int(round(max_age / dt)) + 1
    logS, _ = _stationary_survival(params, jnp.asarray(A0, params.amem.dtype), dt, n)
    return jax.random.categorical(key, logS[:, None, :], axis=-1, shape=(params.M, n_per_pop)).astype(jnp.int32)


def pulse_input(n_steps: int, dt: float, M: int, pulses) -> np.ndarray:
    """External input (n_steps, M) in Δu/s made of rectangular pulses (optogenetic-like).

    Parameters
    ----------
    n_steps, dt
        Number of bins and bin width in ms (micro: 0.2, meso: 4).
    M
        Number of populations.
    pulses
        Iterable of ``(population, start, duration, amplitude)``: start and duration in ms, amplitude in Δu/s
        (a constant input I shifts the stationary potential by ``I/α_m``, e.g. 100/s → +2 Δu).
    """
    n_steps = int(check_scalar(n_steps, "n_steps", low=1, integer=True))
    check_scalar(dt, "dt", low=0.0, low_inclusive=False)
    check_scalar(M, "M", low=1, integer=True)
    check_allocation((4.0 * int(M) + 16.0) * n_steps, argument="n_steps", what=f"an input of {n_steps} x {int(M)} steps")
    out = np.zeros((n_steps, M), dtype=np.float32)
    t = np.arange(n_steps) * dt
    for i, pulse in enumerate(pulses):
        if len(pulse) != 4:
            raise ValueError(f"pulses[{i}] must be (population, start_ms, duration_ms, amplitude), got {pulse!r}")
        pop, start, dur, amp = pulse
        if not 0 <= int(pop) < M:
            raise ValueError(f"pulses[{i}]: population must be in [0, {M}), got {pop!r}")
        check_scalar(dur, f"pulses[{i}] duration", low=0.0)
        check_scalar(amp, f"pulses[{i}] amplitude")
        out[(t >= start - 1e-12) & (t < start + dur - 1e-12), int(pop)] += amp
    return out


def simulate_micro(
    params: MesoParams,
    n_steps: int,
    *,
    key: jax.Array,
    A0=(5.0, 20.0, 25.0),
    I_ext=None,
    n_record: int = 30,
    record_every: int = 1,
    dt: float = MICRO_DT_MS,
    max_age: float = 500.0,
) -> MicroResult:
    """Simulate the microscopic LIF escape-noise network.

    Parameters
    ----------
    params
        Network parameters (any M; sizes ``params.N``; connectivity ``conmat * J``).
    n_steps
        Number of micro steps of ``dt`` (must be a multiple of ``record_every``).
    key
        PRNG key (one ``fold_in`` per output bin).
    A0
        (M,) rates in Hz defining the stationary initial ages (neuLVM: 5, 20, 25 Hz).
    I_ext
        Optional (n_steps, M) external input in Δu/s (see :func:`pulse_input`).
    n_record
        Number of recorded neurons per population (the first ones; neurons are exchangeable).
    record_every
        Micro steps per output bin: 1 keeps the 0.2-ms resolution, 20 gives 4-ms bins
        (counts summed, recorded spikes counted per bin).
    dt
        Micro time step in ms (0.2 ms).
    max_age
        Support of the initial age distribution in ms.

    Returns
    -------
    MicroResult
        Counts and recorded spikes per bin of ``dt * record_every`` ms.
    """
    key = check_key(key)
    if not isinstance(params, MesoParams):
        raise TypeError(f"params must be a MesoParams, got {type(params).__name__}")
    params = params.validate()
    M = params.M
    n_steps = int(check_scalar(n_steps, "n_steps", low=1, integer=True))
    record_every = int(check_scalar(record_every, "record_every", low=1, integer=True))
    check_scalar(dt, "dt", low=0.0, low_inclusive=False)
    check_scalar(max_age, "max_age", low=0.0, low_inclusive=False)
    n_rec = int(check_scalar(n_record, "n_record", low=0, integer=True))
    itemsize = jnp.dtype(params.amem.dtype).itemsize
    # recorded counts (int32) and spikes (uint8) per output bin, one block of uniforms per bin, the neurons' state
    n_bins = n_steps // record_every
    nbytes = 2.0 * n_bins * M * (4 + n_rec) + 2.0 * record_every * M * max(params.N) * itemsize
    if I_ext is not None:
        nbytes += 2.0 * n_steps * M * itemsize
    check_allocation(nbytes, argument="n_steps", what=f"a microscopic run of {n_steps} steps ({n_bins} output bins)")
    if n_steps % record_every:
        raise ValueError(f"n_steps ({n_steps}) must be a multiple of record_every ({record_every})")
    n_record = int(check_scalar(n_record, "n_record", low=0, high=min(params.N), integer=True))
    dtype = params.amem.dtype
    A0 = check_array(A0, "A0", (M,), low=0.0).astype(dtype)
    if I_ext is not None:
        I_ext = check_array(I_ext, "I_ext", (n_steps, M)).astype(dtype)
        I_ext = I_ext.reshape(n_steps // record_every, record_every, M)
    return _run(params, key, A0, I_ext, n_steps=n_steps, n_record=n_record, record_every=record_every,
                dt=float(dt) / 1000.0, max_age=float(max_age) / 1000.0)


@functools.partial(jax.jit, static_argnames=("n_steps", "n_record", "record_every", "dt", "max_age"))
def _run(params, key, A0, I_ext, *, n_steps, n_record, record_every, dt, max_age):
    M, N = params.M, params.N
    Nmax = max(N)
    dtype = params.amem.dtype
    mask = jnp.arange(Nmax)[None, :] < jnp.asarray(N)[:, None]
    ref_steps = int(round(params.t_ref_s / dt))
    k_age, k_run = jax.random.split(key)
    ages = _stationary_ages(params, A0, Nmax, key=k_age, dt=dt, max_age=max_age)
    _, h = _stationary_survival(params, A0, dt, 1)
    a_s = ages.astype(dtype) * dt
    u0 = jnp.where(a_s < params.t_ref_s - 1e-12, 0.0, h[:, None] * (1.0 - jnp.exp(-params.amem[:, None] * a_s)))
    refr0 = jnp.maximum(ref_steps - 1 - ages, 0).astype(jnp.int32)
    em = jnp.exp(-params.amem * dt)[:, None]
    es = jnp.exp(-params.asyn * dt)
    Nf = jnp.asarray(N, dtype)
    J_eff = params.J_eff

    def micro(carry, x):
        u, refr, syn, A_prev = carry
        rnd, It = x
        syn = es * syn + (1.0 - es) * A_prev
        I = syn @ J_eff
        if It is not None:
            I = I + params.eps * It
        u = (1.0 - em) * params.mu[:, None] + em * u + dt * I[:, None]
        is_ref = refr > 0
        u = jnp.where(is_ref, 0.0, u)
        lam = jnp.where(is_ref, 0.0, jnp.exp(u - params.theta[:, None]))
        p = -jnp.expm1(-lam * dt)
        spike = (rnd < p) & mask
        u = jnp.where(spike, 0.0, u)
        refr = jnp.where(spike, ref_steps - 1, jnp.maximum(refr - 1, 0))
        count = spike.sum(1)
        A_prev = count.astype(dtype) / (Nf * dt)
        return (u, refr, syn, A_prev), (count, spike[:, :n_record])

    def macro(carry, x):
        tb, Ib = x
        rnd = jax.random.uniform(jax.random.fold_in(k_run, tb), (record_every, M, Nmax), dtype)
        carry, (counts, spikes) = jax.lax.scan(micro, carry, (rnd, Ib))
        return carry, (counts.sum(0).astype(jnp.int32), spikes.sum(0).astype(jnp.uint8))

    zeros = jnp.zeros((M,), dtype)
    init = (u0, refr0, zeros, zeros)
    n_bins = n_steps // record_every
    _, (counts, spikes) = jax.lax.scan(macro, init, (jnp.arange(n_bins), I_ext))
    return MicroResult(counts=counts, spikes=spikes, dt=1000.0 * dt * record_every, N=tuple(N))
