"""Stimuli: pure functions of the integer step ``t`` with per-network masks and batches.

A stimulus is any callable ``t -> input`` (``t`` a JAX integer scalar; the result is a scalar or an
``(N,)`` vector, or ``(N, C)`` for multi-channel plans that a model's ``stimulus_filter`` mixes).
The built-in ones are :class:`equinox.Module` s whose numeric parameters are array leaves, tunable
by :func:`~spikejax.glm.tune` as ``"stimulus.<name>"``.

Masks and batches
-----------------
``stimulus_masks`` is a list of boolean ``(N,)`` masks or an ``(n_networks, N)`` array, one per
network; with ``batch_size = k`` the masks of networks ``ik .. ik+k-1`` are concatenated to match a
block-diagonal batch of those k networks. ``next_batch()``, ``set_batch(i)`` and ``reset()`` return
a *new* stimulus (modules are immutable) — spikeometric advances its stimulus in place inside
``simulate``; in spikejax you advance it explicitly. Evaluated at a vector of steps, a stimulus
returns ``(N, len(t))``.
"""

from __future__ import annotations

import abc
import math
from pathlib import Path
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError, DataFormatError, ShapeError, check_scalar
from ..core.random import check_key

__all__ = ["Stimulus", "RegularStimulus", "PoissonStimulus", "SinStimulus", "LoadedStimulus", "batch_masks"]


def _nonneg(value, name):
    check_scalar(value, name)
    if float(value) < 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")
    return value


def _fparam(value, name):
    check_scalar(value, name)
    return jnp.asarray(value, jnp.result_type(float))


def batch_masks(stimulus_masks, batch_size: int) -> tuple[np.ndarray, ...]:
    """Concatenated masks per batch: boolean ``(batch_size * N,)`` arrays (the last may be shorter), frozen."""
    if stimulus_masks is None:
        raise ConfigError("stimulus_masks must be a list of (N,) masks or an (n_networks, N) array, got None")
    if hasattr(stimulus_masks, "detach"):
        stimulus_masks = stimulus_masks.detach().cpu().numpy()
    if isinstance(stimulus_masks, (list, tuple)):
        masks = [np.asarray(m.detach().cpu().numpy() if hasattr(m, "detach") else m) for m in stimulus_masks]
    else:
        arr = np.asarray(stimulus_masks)
        if arr.ndim == 1:
            masks = [arr]
        elif arr.ndim == 2:
            masks = list(arr)
        else:
            raise ShapeError(f"stimulus_masks must be (N,) or (n_networks, N), got shape {arr.shape}")
    if not masks:
        raise ConfigError("stimulus_masks must hold at least one mask")
    for i, m in enumerate(masks):
        if m.ndim != 1:
            raise ShapeError(f"stimulus_masks[{i}] must be a 1-D (N,) mask, got shape {m.shape}")
        if m.dtype != bool and not np.all((m == 0) | (m == 1)):
            raise ConfigError(f"stimulus_masks[{i}] must be boolean (0/1), got values outside {{0, 1}}")
    check_scalar(batch_size, "batch_size", low=1, integer=True)
    batch_size = int(batch_size)
    if batch_size > len(masks):
        raise ConfigError(f"batch_size ({batch_size}) must be <= the number of networks/masks ({len(masks)})")
    n_batches = math.ceil(len(masks) / batch_size)
    return tuple(_Frozen(np.concatenate(masks[i * batch_size : (i + 1) * batch_size]).astype(bool)) for i in range(n_batches))


class Stimulus(eqx.Module):
    """Base of the stimuli: the input to every neuron per step, for one of several batches of networks."""

    masks: tuple = eqx.field(static=True)
    batch: int = eqx.field(static=True)

    tunable: ClassVar[tuple[str, ...]] = ()

    @property
    def n_batches(self) -> int:
        return len(self.masks)

    @property
    def mask(self) -> jax.Array:
        """Boolean mask of the current batch, ``(batch_size * N,)``."""
        return jnp.asarray(self.masks[self.batch].array)

    @abc.abstractmethod
    def __call__(self, t) -> jax.Array:
        """The input to every neuron at step ``t`` (``(N,)``), or at steps ``t`` (``(N, len(t))``)."""

    def set_batch(self, idx: int) -> "Stimulus":
        if isinstance(idx, bool) or int(idx) != idx or not 0 <= idx < self.n_batches:
            raise ConfigError(f"batch index must be in [0, {self.n_batches}), got {idx!r}")
        return _replace_static(self, batch=int(idx))

    def next_batch(self) -> "Stimulus":
        if self.n_batches == 1:
            raise ConfigError("next_batch: there is only one batch")
        return _replace_static(self, batch=(self.batch + 1) % self.n_batches)

    def reset(self) -> "Stimulus":
        return _replace_static(self, batch=0)

    def params(self) -> dict[str, jax.Array]:
        return {name: getattr(self, name) for name in self.tunable}


class _ProfileStimulus(Stimulus):
    """A stimulus that is a time profile ``value(t)`` times the current batch's mask."""

    @abc.abstractmethod
    def value(self, t: jax.Array) -> jax.Array:
        """The time profile at step(s) ``t`` (before the batch mask)."""

    def __call__(self, t) -> jax.Array:
        t = jnp.asarray(t)
        v = self.value(t)
        m = self.mask.astype(v.dtype)
        if t.ndim == 0:
            return v * m
        return m[:, None] * v[None, :]


def _replace_static(obj, **changes):
    new = object.__new__(type(obj))
    for f in obj.__dataclass_fields__:
        object.__setattr__(new, f, changes.get(f, getattr(obj, f)))
    return new


class RegularStimulus(_ProfileStimulus):
    """``strength * [t mod period < tau] * [start <= t < stop]`` (steps). Tunable: ``strength``."""

    strength: jax.Array
    period: int = eqx.field(static=True)
    tau: int = eqx.field(static=True)
    stop: int = eqx.field(static=True)
    start: int = eqx.field(static=True)
    dt: float = eqx.field(static=True)

    tunable: ClassVar[tuple[str, ...]] = ("strength",)

    def __init__(self, strength, period, tau, stop, stimulus_masks, batch_size=1, start=0, dt=1.0):
        _nonneg(period, "period")
        _nonneg(tau, "tau")
        _nonneg(stop, "stop")
        _nonneg(start, "start")
        check_scalar(period, "period", low=0.0, low_inclusive=False, integer=True)
        check_scalar(tau, "tau", integer=True)
        check_scalar(dt, "dt", low=0.0, low_inclusive=False)
        self.strength = _fparam(strength, "strength")
        self.period, self.tau, self.stop, self.start, self.dt = int(period), int(tau), int(stop), int(start), float(dt)
        self.masks = batch_masks(stimulus_masks, batch_size)
        self.batch = 0

    def value(self, t):
        on = ((t % self.period) < self.tau) & (t >= self.start) & (t < self.stop)
        return self.strength * on.astype(self.strength.dtype)


class PoissonStimulus(_ProfileStimulus):
    """Pulses of length ``tau`` at Poisson event times; ``strength`` while a pulse is on. Tunable: ``strength``.

    Event times are drawn once, at construction, from ``key``: integer intervals ~ Poisson(mean_interval)
    summed cumulatively from 0, kept below ``duration``, then shifted by ``start``.
    """

    strength: jax.Array
    events: jax.Array
    tau: int = eqx.field(static=True)
    duration: int = eqx.field(static=True)
    start: int = eqx.field(static=True)

    tunable: ClassVar[tuple[str, ...]] = ("strength",)

    def __init__(self, strength, mean_interval, duration, stimulus_masks, batch_size=1, tau=1, dt=1.0, start=0, *, key):
        _nonneg(mean_interval, "mean_interval")
        _nonneg(duration, "duration")
        _nonneg(tau, "tau")
        _nonneg(start, "start")
        check_scalar(dt, "dt", low=0.0, low_inclusive=False)
        self.strength = _fparam(strength, "strength")
        self.tau, self.duration, self.start = int(tau), int(duration), int(start)
        d = max(int(duration), 1)
        intervals = np.asarray(jax.random.poisson(check_key(key), float(mean_interval), (d,)))
        times = np.cumsum(np.concatenate([[0], intervals]))
        times = times[times < int(duration)] + int(start)
        self.events = jnp.asarray(times, jnp.int32)
        self.masks = batch_masks(stimulus_masks, batch_size)
        self.batch = 0

    def value(self, t):
        dtime = t[..., None] - self.events
        on = jnp.any((dtime >= 0) & (dtime < self.tau), axis=-1)
        return self.strength * on.astype(self.strength.dtype)


class SinStimulus(_ProfileStimulus):
    """``(amplitude sin(2 pi (t - start) dt / period + phase) + baseline) * [start <= t < duration]``.

    Tunable: ``amplitude``, ``period``, ``phase``, ``baseline``.
    """

    amplitude: jax.Array
    period: jax.Array
    phase: jax.Array
    baseline: jax.Array
    duration: int = eqx.field(static=True)
    start: float = eqx.field(static=True)
    dt: float = eqx.field(static=True)

    tunable: ClassVar[tuple[str, ...]] = ("amplitude", "period", "phase", "baseline")

    def __init__(self, amplitude, period, duration, stimulus_masks, batch_size=1, phase=0.0, baseline=0.0, start=0.0, dt=1.0):
        _nonneg(amplitude, "amplitude")
        _nonneg(duration, "duration")
        check_scalar(period, "period", low=0.0, low_inclusive=False)
        check_scalar(dt, "dt", low=0.0, low_inclusive=False)
        self.amplitude = _fparam(amplitude, "amplitude")
        self.period = _fparam(period, "period")
        self.phase = _fparam(phase, "phase")
        self.baseline = _fparam(baseline, "baseline")
        self.duration, self.start, self.dt = int(duration), float(start), float(dt)
        self.masks = batch_masks(stimulus_masks, batch_size)
        self.batch = 0

    def value(self, t):
        tf = t.astype(self.amplitude.dtype)
        on = (tf >= self.start) & (t < self.duration)
        v = self.amplitude * jnp.sin(2 * jnp.pi * (tf - self.start) * self.dt / self.period + self.phase) + self.baseline
        return jnp.where(on, v, 0.0)


class LoadedStimulus(Stimulus):
    """A stored plan: ``(N, n_steps)``, ``(N, n_steps, n_networks)`` or ``(N, n_steps, C, n_networks)``.

    The value at step ``t`` is the plan's column ``t`` for ``0 <= t < n_steps`` and zero outside. Batches
    concatenate the networks' plans along the neuron axis. Multi-channel plans return ``(N, C)`` per step
    (mix them with the model's ``stimulus_filter``). ``plan`` may be an array or a path to ``.npy``
    (or ``.pt``, read with torch if installed). Not tunable.
    """

    plans: tuple = eqx.field(static=True)
    n_steps: int = eqx.field(static=True)

    def __init__(self, plan, batch_size=1):
        if isinstance(plan, (str, Path)):
            plan = _load_plan(Path(plan))
        if hasattr(plan, "detach"):
            plan = plan.detach().cpu().numpy()
        arr = np.asarray(plan, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim not in (3, 4):
            raise ShapeError(f"plan must be (N, n_steps), (N, n_steps, n_networks) or (N, n_steps, C, n_networks), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ConfigError("plan must be finite (no NaN/inf)")
        n_net = arr.shape[-1]
        check_scalar(batch_size, "batch_size", low=1, integer=True)
        if batch_size > n_net:
            raise ConfigError(f"batch_size ({batch_size}) must be <= the number of networks in the plan ({n_net})")
        nb = math.ceil(n_net / batch_size)
        plans = []
        for i in range(nb):
            parts = [arr[..., j] for j in range(i * batch_size, min((i + 1) * batch_size, n_net))]
            plans.append(_Frozen(np.concatenate(parts, axis=0)))
        self.plans = tuple(plans)
        self.n_steps = int(arr.shape[1])
        self.masks = tuple(_Frozen(np.ones(p.array.shape[0], bool)) for p in plans)
        self.batch = 0

    @property
    def plan(self) -> jax.Array:
        """The current batch's plan, ``(N, n_steps)`` or ``(N, n_steps, C)``."""
        return jnp.asarray(self.plans[self.batch].array)

    def __call__(self, t):
        t = jnp.asarray(t)
        plan = self.plan
        idx = jnp.clip(t, 0, self.n_steps - 1)
        inside = (t >= 0) & (t < self.n_steps)
        col = jnp.take(plan, idx, axis=1)  # (N, [len t], [C])
        if t.ndim == 0:
            return jnp.where(inside, col, 0.0)
        shape = (1, -1) + (1,) * (col.ndim - 2)
        return jnp.where(inside.reshape(shape), col, 0.0)


class _Frozen:
    """A hashable holder of a numpy array (static field)."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.array.setflags(write=False)

    def __hash__(self):
        return hash((self.array.shape, self.array.tobytes()[:4096], self.array.tobytes()[-4096:]))

    def __eq__(self, other):
        return isinstance(other, _Frozen) and self.array.shape == other.array.shape and np.array_equal(self.array, other.array)


def _load_plan(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"no such stimulus plan: {path}")
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DataFormatError(f"{path} could not be read as .npy: {exc}") from None
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        raise DataFormatError(f"{path}: reading .pt plans needs torch") from None
    return torch.load(path, map_location="cpu", weights_only=True).numpy()
