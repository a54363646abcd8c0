"""A synthetic Allen-like cell bank: adaptive spiking neurons written as Allen-style NWB files.

No Allen recording can be downloaded here, so the preprocessing and fitting pipelines are
exercised on synthetic cells whose parameters are drawn to match rows of Allen's cell-types
metadata (``ef__tau``, ``ef__ri``, ``ef__threshold_i_long_square``, ``ef__f_i_curve_slope``,
``ef__vrest``).

Neuron (adaptive leaky integrate-and-fire with escape noise, simulated with ``lax.scan`` at the
sampling interval ``dt``)::

    tau dV/dt = E_L - V + R (I - w) / 1000          (V, E_L in mV; R in MOhm; I, w in pA)
    tau_w dw/dt = -w
    hazard rho = rho_0 exp((V - theta) / delta_V)   (spike with probability 1 - exp(-rho dt))
    on a spike: V -> V_reset, w -> w + Delta_w, refractory for t_ref

Matching the metadata: ``theta - E_L = R I_rh / 1000`` (rheobase ``I_rh``), the unadapted high-current
slope ``R / (tau (theta - V_reset))`` is twice the Allen f-I slope and the adaptation
``Delta_w tau_w`` brings the adapted slope down to it (approximations, not exact inversions).

Stimuli (pA, scaled by each cell's rheobase; every sweep starts with a -20 pA, 10 ms test pulse
outside the experiment epoch): **Long Square** 1 s steps at rheobase + (-40 .. +160) pA,
**Ramp** rising to 2.5 x rheobase (the recording stops shortly after the peak), and frozen pink
noise **Noise 1** / **Noise 2** (different seeds, identical in every repeat): three 1 s blocks at
0.75, 1.0 and 1.5 x rheobase with coefficient of variation 0.2, repeated ``n_repeats`` times.

Files are written with :func:`write_nwb` in the layout that :func:`spikejax.gfr.preprocess.read_nwb`
reads (the Allen NWB v1 layout), so a synthetic file goes through the same code path as a real one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..core.errors import ConfigError, check_allocation, check_scalar
from ..core.random import check_key
from ..core.io import atomic_path

__all__ = [
    "NeuronParams",
    "params_from_metadata",
    "draw_cells",
    "stimulus_protocol",
    "simulate_neurons",
    "write_nwb",
    "make_cell_bank",
]

_FEATURES = ("ef__tau", "ef__ri", "ef__threshold_i_long_square", "ef__f_i_curve_slope", "ef__vrest")


@dataclasses.dataclass
class NeuronParams:
    """Parameters of the adaptive LIF (arrays of shape (cells,); mV, ms, MOhm, pA)."""

    cell_id: np.ndarray
    tau: np.ndarray
    resistance: np.ndarray
    e_l: np.ndarray
    theta: np.ndarray
    v_reset: np.ndarray
    delta_w: np.ndarray
    tau_w: np.ndarray
    rheobase: np.ndarray
    delta_v: float = 1.0
    rho_0: float = 0.5
    t_ref: float = 2.0

    def __len__(self) -> int:
        return int(self.cell_id.size)


def params_from_metadata(rows: pd.DataFrame, *, tau_w: float = 100.0) -> NeuronParams:
    """Derive adaptive-LIF parameters from Allen metadata rows (see the module docstring)."""
    missing = [c for c in _FEATURES + ("specimen__id",) if c not in rows.columns]
    if missing:
        raise ConfigError(f"metadata rows miss column(s) {missing}")
    tau = np.clip(rows["ef__tau"].to_numpy(float), 5.0, 60.0)
    r = np.clip(rows["ef__ri"].to_numpy(float), 30.0, 800.0)
    i_rh = np.clip(rows["ef__threshold_i_long_square"].to_numpy(float), 20.0, 600.0)
    slope = np.clip(rows["ef__f_i_curve_slope"].to_numpy(float), 0.02, 1.5) / 1000.0  # spikes/ms per pA
    e_l = np.clip(rows["ef__vrest"].to_numpy(float), -85.0, -55.0)
    theta = e_l + r * i_rh / 1000.0
    s0 = 2.0 * slope
    dv_reset = np.clip(r / 1000.0 / (tau * s0), 3.0, 30.0)
    s0 = r / 1000.0 / (tau * dv_reset)
    delta_w = np.maximum(s0 / slope - 1.0, 0.0) / s0 / tau_w
    return NeuronParams(
        cell_id=rows["specimen__id"].to_numpy(np.int64),
        tau=tau,
        resistance=r,
        e_l=e_l,
        theta=theta,
        v_reset=theta - dv_reset,
        delta_w=delta_w,
        tau_w=np.full_like(tau, tau_w),
        rheobase=i_rh,
    )


def _key_seed(key: Any) -> int:
    """The 64 bits of a (threefry) key as one integer: the seed of a numpy generator. ``key(s)`` and
    ``PRNGKey(s)`` give ``s``, so a bank drawn with ``key=jax.random.key(s)`` is the old ``seed=s`` bank."""
    key = check_key(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    bits = [int(v) for v in np.ravel(np.asarray(key))]
    out = 0
    for b in bits:
        out = (out << 32) | (b & 0xFFFFFFFF)
    return out


def draw_cells(n_cells: int, *, key: Any, metadata: pd.DataFrame | None = None, species: str | None = "Mus musculus") -> NeuronParams:
    """Draw ``n_cells`` metadata rows (without replacement, complete features only; the rows are drawn by
    a numpy generator seeded with the key's bits) and derive parameters."""
    from .records import load_metadata

    check_scalar(n_cells, "n_cells", low=1, integer=True)
    meta = load_metadata() if metadata is None else metadata
    ok = meta.dropna(subset=list(_FEATURES))
    if species is not None and "donor__species" in ok:
        ok = ok[ok["donor__species"] == species]
    if int(n_cells) < 1 or int(n_cells) > len(ok):
        raise ConfigError(f"n_cells must be in [1, {len(ok)}] (complete metadata rows), got {n_cells!r}")
    rng = np.random.default_rng(_key_seed(key))
    idx = np.sort(rng.choice(len(ok), size=int(n_cells), replace=False))
    return params_from_metadata(ok.iloc[idx])


def _pink_noise(n: int, seed: int) -> np.ndarray:
    """Unit-variance 1/f noise of ``n`` samples (frozen by ``seed``)."""
    rng = np.random.default_rng(seed)
    spec = rng.normal(size=n // 2 + 1) + 1j * rng.normal(size=n // 2 + 1)
    f = np.arange(n // 2 + 1, dtype=float)
    f[0] = 1.0
    spec = spec / np.sqrt(f)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return x / x.std()


def _protocol_samples(sampling_rate: float, *, n_repeats: int = 3, short: bool = False) -> float:
    """Samples of all sweeps of one cell's :func:`stimulus_protocol` (for size checks before allocating)."""
    scale = 0.5 if short else 1.0
    frame_ms = 260.0  # test pulse and lead (160 ms) plus the 100-ms tail
    total_ms = 9 * (frame_ms + 1000 * scale) + (frame_ms + 2000 * scale) + 2 * int(n_repeats) * (frame_ms + 3600 * scale)
    return total_ms * float(sampling_rate) / 1000.0


def stimulus_protocol(rheobase: float, sampling_rate: float, *, n_repeats: int = 3, short: bool = False) -> list[tuple[str, np.ndarray, int, int]]:
    """The sweeps of one cell: list of ``(stimulus_name, current (pA), exp_start, exp_stop)``.

    ``exp_start``/``exp_stop`` delimit the experiment epoch (after the test pulse). ``short``
    halves the durations (for quick runs).
    """
    check_scalar(rheobase, "rheobase")
    check_scalar(sampling_rate, "sampling_rate", low=0.0, low_inclusive=False)
    check_scalar(n_repeats, "n_repeats", low=0, integer=True)
    sr = float(sampling_rate)
    ms = lambda t: int(round(t * sr / 1000.0))  # noqa: E731
    scale = 0.5 if short else 1.0
    check_allocation(8.0 * _protocol_samples(sr, n_repeats=n_repeats, short=short), argument="sampling_rate",
                     what=f"the stimulus protocol at {sr:g} Hz")
    pre = ms(60)  # test pulse 10..20 ms, experiment starts at 40 ms

    def frame(body: np.ndarray, lead: int = ms(100)) -> tuple[np.ndarray, int, int]:
        cur = np.zeros(pre + lead + body.size + ms(100))
        cur[ms(10) : ms(20)] = -20.0
        cur[pre + lead : pre + lead + body.size] = body
        return cur, ms(40), cur.size - 1

    sweeps = []
    step_len = ms(1000 * scale)
    for amp in (-40, -20, 0, 20, 40, 60, 80, 120, 160):
        cur, a, b = frame(np.full(step_len, rheobase + amp))
        sweeps.append(("Long Square", cur, a, b))
    ramp_len = ms(2000 * scale)
    ramp = np.linspace(0.0, 2.5 * rheobase, ramp_len)
    cur, a, b = frame(ramp)
    sweeps.append(("Ramp", cur, a, b))
    block = ms(1000 * scale)
    rest = ms(300 * scale)
    for name, seed in (("Noise 1", 101), ("Noise 2", 202)):
        noise = _pink_noise(block, seed)
        body = np.zeros(3 * block + 2 * rest)
        for k, level in enumerate((0.75, 1.0, 1.5)):
            s = k * (block + rest)
            body[s : s + block] = level * rheobase * (1.0 + 0.2 * noise)
        for _ in range(int(n_repeats)):
            cur, a, b = frame(body)
            sweeps.append((name, cur.copy(), a, b))
    return sweeps


def simulate_neurons(params: NeuronParams, currents: np.ndarray, sampling_rate: float, *, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """Simulate cells on currents of shape (cells, sweeps, samples) (pA).

    Returns ``(spikes, voltage)``: 0/1 spike indicators and membrane voltage (mV), same shape.
    """
    dt = 1000.0 / float(sampling_rate)
    c = len(params)
    currents = jnp.asarray(currents, dtype=jnp.float32)
    if currents.ndim != 3 or currents.shape[0] != c:
        raise ConfigError(f"currents must have shape (cells={c}, sweeps, samples), got {currents.shape}")
    p = {k: jnp.asarray(getattr(params, k), jnp.float32)[:, None] for k in ("tau", "resistance", "e_l", "theta", "v_reset", "delta_w", "tau_w")}
    n_ref = int(round(params.t_ref / dt))
    shape = currents.shape[:2]

    def step(carry, x):
        v, w, ref = carry
        i_t, u = x
        dv = dt / p["tau"] * (p["e_l"] - v + p["resistance"] * (i_t - w) / 1000.0)
        v = jnp.where(ref > 0, p["v_reset"], v + dv)
        w = w * jnp.exp(-dt / p["tau_w"])
        hazard = params.rho_0 * jnp.exp(jnp.minimum((v - p["theta"]) / params.delta_v, 30.0))
        spike = (u < -jnp.expm1(-hazard * dt)) & (ref <= 0)
        v_out = jnp.where(spike, 20.0, v)
        v = jnp.where(spike, p["v_reset"], v)
        w = w + spike * p["delta_w"]
        ref = jnp.where(spike, n_ref, ref - 1)
        return (v, w, ref), (spike.astype(jnp.uint8), v_out)

    init = (jnp.broadcast_to(p["e_l"], shape), jnp.zeros(shape), jnp.zeros(shape, jnp.int32))
    u = jax.random.uniform(key, (currents.shape[2],) + shape)

    @jax.jit
    def run(init, cur, u):
        _, (s, v) = jax.lax.scan(step, init, (jnp.moveaxis(cur, -1, 0), u))
        return jnp.moveaxis(s, 0, -1), jnp.moveaxis(v, 0, -1)

    s, v = run(init, currents, u)
    return np.asarray(s), np.asarray(v)


def write_nwb(
    path: str | os.PathLike,
    cell_id: int,
    sweeps: Sequence[dict[str, Any]],
    sampling_rate: float,
) -> Path:
    """Write sweeps in the Allen NWB v1 layout read by :func:`spikejax.gfr.preprocess.read_nwb` (atomically).

    Each sweep dict has ``stimulus_name``, ``current`` (pA), ``voltage`` (mV), ``spike_times`` (s),
    ``exp_range`` (experiment epoch, inclusive sample indices). Current is stored in A and voltage
    in V with ``conversion`` 1.0, as Allen's files.
    """
    import h5py

    path = Path(path)
    with atomic_path(path, suffix=".nwb") as tmp:
        with h5py.File(tmp, "w") as fh:
            fh.attrs["nwb_version"] = "NWB-1.0.5 (spikejax synthetic)"
            fh.create_dataset("general/specimen_id", data=np.int64(cell_id))
            offset = 0
            for k, sw in enumerate(sweeps, start=1):
                name = f"Sweep_{k}"
                cur = np.asarray(sw["current"], dtype=np.float32) * np.float32(1e-12)
                n = cur.size
                for grp_name, data, unit in (
                    (f"stimulus/presentation/{name}", cur, "Amps"),
                    (f"acquisition/timeseries/{name}", np.asarray(sw["voltage"], np.float32) * np.float32(1e-3), "Volts"),
                ):
                    g = fh.create_group(grp_name)
                    d = g.create_dataset("data", data=data, compression="gzip", compression_opts=4, shuffle=True)
                    d.attrs["conversion"] = 1.0
                    d.attrs["unit"] = unit
                    t0 = g.create_dataset("starting_time", data=offset / float(sampling_rate))
                    t0.attrs["rate"] = float(sampling_rate)
                    g.create_dataset("aibs_stimulus_name", data=sw["stimulus_name"])
                    g.create_dataset("num_samples", data=np.int64(n))
                ep = fh.create_group(f"epochs/{name}/stimulus")
                ep.create_dataset("idx_start", data=np.int64(0))  # indices relative to the sweep's own data (as Allen's files)
                ep.create_dataset("count", data=np.int64(n))
                ep["timeseries"] = h5py.SoftLink(f"/stimulus/presentation/{name}")
                a, b = sw["exp_range"]
                ex = fh.create_group(f"epochs/Experiment_{k}/stimulus")
                ex.create_dataset("idx_start", data=np.int64(a))
                ex.create_dataset("count", data=np.int64(b - a + 1))
                fh.create_dataset(f"analysis/spike_times/{name}", data=np.asarray(sw["spike_times"], np.float64))
                offset += n
    return path


def make_cell_bank(
    out_dir: str | os.PathLike,
    n_cells: int,
    *,
    key: Any,
    sampling_rate: float = 10_000.0,
    n_repeats: int = 3,
    short: bool = False,
    metadata: pd.DataFrame | None = None,
    chunk_cells: int = 16,
) -> list[Path]:
    """Draw ``n_cells`` Allen-like neurons, drive them with the protocol and write ``<cell_id>.nwb`` files.

    Returns the written paths (sorted by cell id). Deterministic given ``key`` (the cells are drawn with
    :func:`draw_cells`, the spikes with ``fold_in(key, first cell of the chunk)``).
    """
    key = check_key(key)
    check_scalar(n_cells, "n_cells", low=1, integer=True)
    check_scalar(chunk_cells, "chunk_cells", low=1, integer=True)
    check_scalar(sampling_rate, "sampling_rate", low=0.0, low_inclusive=False)
    check_scalar(n_repeats, "n_repeats", low=0, integer=True)
    chunk_cells = int(chunk_cells)
    # a chunk's currents, voltages and spikes (float64): about 3 x chunk_cells x the protocol's samples
    check_allocation(3 * 8.0 * min(chunk_cells, max(int(n_cells), 1)) * _protocol_samples(sampling_rate, n_repeats=n_repeats, short=short),
                     argument="sampling_rate and chunk_cells", what="one chunk of simulated sweeps")
    params = draw_cells(n_cells, key=key, metadata=metadata)
    out_dir = Path(out_dir)
    paths = []
    for c0 in range(0, len(params), chunk_cells):
        sub = NeuronParams(**{f.name: (getattr(params, f.name)[c0 : c0 + chunk_cells] if isinstance(getattr(params, f.name), np.ndarray) else getattr(params, f.name)) for f in dataclasses.fields(params)})
        protos = [stimulus_protocol(float(rh), sampling_rate, n_repeats=n_repeats, short=short) for rh in sub.rheobase]
        n_sw = len(protos[0])
        t_max = max(cur.size for pr in protos for _, cur, _, _ in pr)
        cur = np.zeros((len(sub), n_sw, t_max))
        for i, pr in enumerate(protos):
            for j, (_, c, _, _) in enumerate(pr):
                cur[i, j, : c.size] = c
        spikes, volt = simulate_neurons(sub, cur, sampling_rate, key=jax.random.fold_in(key, c0))
        for i, pr in enumerate(protos):
            sweeps = []
            for j, (name, c, a, b) in enumerate(pr):
                n = c.size
                v = volt[i, j, :n].astype(np.float64)
                if name == "Ramp":
                    stop_rec = int(np.argmax(c)) + int(round(0.05 * sampling_rate))
                    v[stop_rec:] = 0.0  # the recording stops shortly after the ramp peak
                st = np.flatnonzero(spikes[i, j, :n]) / float(sampling_rate)
                if name == "Ramp":
                    st = st[st * sampling_rate < int(np.argmax(c)) + int(round(0.05 * sampling_rate))]
                sweeps.append({"stimulus_name": name, "current": c, "voltage": v, "spike_times": st, "exp_range": (a, b)})
            cid = int(sub.cell_id[i])
            paths.append(write_nwb(out_dir / f"{cid}.nwb", cid, sweeps, sampling_rate))
        key = jax.random.fold_in(key, 10_000 + c0)
    return sorted(paths, key=lambda p: int(p.stem))
