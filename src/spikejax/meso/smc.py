"""Sequential Monte Carlo for the mesoscopic latent-variable model: posterior samples of Z given the observed neurons.

The mesoscopic model is a state-space model: the hidden state is the age structure of every
population (driven by the latent activity Z), the transition draws ``Z(t) ~ N(Z̄(t), Z̄(t)/N + 0.1Δ/N)``
(the Gaussian of the neuLVM objective, clipped to [1e-5, 1]) and the emission is the Bernoulli
likelihood of the observed neurons' spikes, whose potentials are driven by the same input. A
bootstrap particle filter with systematic resampling (when the effective sample size falls below
half the particles) gives

* an unbiased estimate of the marginal likelihood ``p(y | Θ)`` (its log is returned), the quantity
  EM ought to maximise, and
* trajectories ``Z ~ p(Z | y, Θ)`` (approximately) by tracing the ancestry of particles drawn from
  the final weights.

Since ``y(t)`` depends only on ``Z(< t)``, each step weights the particles by ``p(y(t) | past)``
*before* drawing ``Z(t)`` (a fully adapted step for this emission), and resamples in between.

Everything is pure JAX (one ``lax.scan`` over bins, particles as a leading axis), so it can be
vmapped over restarts and differentiated nowhere (sampling).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ..core.errors import ConfigError, check_allocation, check_scalar
from ..core.random import check_key
from .data import MesoData, check_params_data
from .model import (_VAR_FLOOR_HZ, MesoConfig, _decay, _free_potential, advance, init_state, ref_bins, spike_log_probs,
                    step_parts)
from .params import MesoParams

__all__ = ["observed_init", "observed_potential", "observed_reset", "observed_step", "transition_draw", "particle_filter", "sample_posterior", "posterior_Z",
           "PosteriorZ", "smoothing_weights", "trace_path"]

Z_MIN = 1e-5


def observed_init(params: MesoParams, A0: jax.Array, age0: jax.Array, dt: float):
    """Stationary start of the observed neurons: potential ``h(1 − e^{−α_m a Δ})`` at age ``a = age0`` (M, n).

    Returns ``(V, k)``: the potential "before" the first bin and the age in bins at the first bin
    (neurons of age below the refractory period start at 0, as :func:`~spikejax.meso.observed_logits`).
    """
    h = _free_potential(params, A0)[:, None]
    j0 = age0.astype(h.dtype)
    V0 = jnp.where(j0 * dt < params.t_ref_s - 1e-12, 0.0, h * (1.0 - jnp.exp(-params.amem[:, None] * j0 * dt)))
    return V0, age0.astype(jnp.int32)


def observed_potential(params: MesoParams, V: jax.Array, k: jax.Array, c: jax.Array, dt: float,
                       integrator: str = "exact"):
    """The observed neurons' potential in this bin and their ``(log P(spike), log P(no spike))``.

    ``V`` (..., M, n) potentials after the previous bin, ``k`` their ages in bins at this bin, ``c``
    (..., M) the target potential ``μ + I/α_m`` of the bin. Returns ``(V, lp1, lp0)``.
    """
    a = _decay(params, dt, integrator)
    refr = k < ref_bins(params, dt)
    V = jnp.where(refr, 0.0, a[:, None] * V + ((1.0 - a) * c)[..., None])
    lp1, lp0 = spike_log_probs(V, refr, params.theta[:, None], dt)
    return V, lp1, lp0


def observed_reset(V: jax.Array, k: jax.Array, spiked: jax.Array):
    """After the bin: a spike resets the potential to 0 and the age to 0; other ages advance."""
    return jnp.where(spiked, 0.0, V), jnp.where(spiked, 0, k + 1)


def observed_step(params: MesoParams, V: jax.Array, k: jax.Array, c: jax.Array, y_t: jax.Array, dt: float,
                  integrator: str = "exact"):
    """One bin of the observed neurons, sequentially (the recursion behind :func:`~spikejax.meso.observed_logits`).

    ``V`` (..., M, n) potentials after the previous bin, ``k`` their ages in bins at this bin,
    ``c`` (..., M) the target potential ``μ + I/α_m`` of the bin, ``y_t`` (M, n) the spikes.
    Returns ``(log p(y_t | past), V, k)`` with ``V`` reset to 0 by a spike and ``k`` advanced.
    """
    V, lp1, lp0 = observed_potential(params, V, k, c, dt, integrator)
    ll = jnp.sum(y_t * lp1 + (1.0 - y_t) * lp0, axis=(-2, -1))
    V, k = observed_reset(V, k, y_t > 0)
    return ll, V, k


def transition_draw(key: jax.Array, zbar: jax.Array, N: jax.Array, dt: float):
    """The filter's transition: ``Z ~ N(Z̄, Z̄/N + 0.1Δ/N)`` clipped to ``[Z_MIN, 1]``."""
    sd = jnp.sqrt(zbar / N + _VAR_FLOOR_HZ * dt / N)
    return jnp.clip(zbar + sd * jax.random.normal(key, zbar.shape, zbar.dtype), Z_MIN, 1.0)


def _systematic(key, w):
    P = w.shape[0]
    u = (jax.random.uniform(key, dtype=w.dtype) + jnp.arange(P, dtype=w.dtype)) / P
    return jnp.clip(jnp.searchsorted(jnp.cumsum(w), u), 0, P - 1)


def _filter(params: MesoParams, y, A0, age0, I_ext, key, *, n_particles: int, cfg: MesoConfig):
    """The bootstrap filter's forward pass, keeping the genealogy.

    Returns ``(Zs, ancs, logw, log_lik, ess)``: the particles' draws ``Zs`` (T, P, M), their
    ancestors ``ancs`` (T, P) (particle ``i`` at bin ``t`` descends from particle ``ancs[t, i]`` at
    bin ``t − 1``), the normalised final log weights (P,), ``log p̂(y | Θ)`` and the ESS per bin.
    """
    P = int(n_particles)
    T, M, _ = y.shape
    dt = cfg.dt_s
    dtype = A0.dtype
    N = params.N_array.astype(dtype)
    st0 = init_state(params, A0, cfg)
    sts = jax.tree_util.tree_map(lambda l: jnp.broadcast_to(l, (P,) + l.shape), st0)
    V0, k0 = observed_init(params, A0, age0, dt)
    carry0 = (sts, jnp.broadcast_to(V0, (P,) + V0.shape), jnp.broadcast_to(k0, (P,) + k0.shape),
              jnp.full((P,), -jnp.log(P), dtype), jnp.zeros((), dtype))
    I_seq = jnp.zeros((T, M), dtype) if I_ext is None else I_ext

    def one_step(s, I_t):
        zbar, parts = step_parts(params, s, None if I_ext is None else I_t, cfg)
        I = parts.syn @ params.J_eff
        if I_ext is not None:
            I = I + params.eps * I_t
        return zbar, parts, params.mu + I / params.amem

    def body(carry, xs):
        sts, Vo, ko, logw, loglik = carry
        t, y_t, I_t = xs
        zbar, parts, c = jax.vmap(one_step, in_axes=(0, None))(sts, I_t)
        ll, Vn, kn = observed_step(params, Vo, ko, c, y_t, dt, cfg.integrator)
        lw = logw + ll
        lse = logsumexp(lw)
        loglik = loglik + lse  # logw is normalised, so lse = log of the mean incremental weight
        wn = jnp.exp(lw - lse)
        ess = 1.0 / jnp.sum(wn**2)
        k_res, k_z = jax.random.split(jax.random.fold_in(key, t))
        do = ess < 0.5 * P
        anc = jnp.where(do, _systematic(k_res, wn), jnp.arange(P))
        logw = jnp.where(do, jnp.full((P,), -jnp.log(P), dtype), lw - lse)
        sts, parts, Vn, kn, zbar = jax.tree_util.tree_map(lambda l: l[anc], (sts, parts, Vn, kn, zbar))
        Z_t = transition_draw(k_z, zbar, N, dt)
        sts = jax.vmap(lambda s, pt, z: advance(s, pt, z, cfg))(sts, parts, Z_t)
        return (sts, Vn, kn, logw, loglik), (Z_t, anc, ess)

    (_, _, _, logw, loglik), (Zs, ancs, ess) = jax.lax.scan(body, carry0, (jnp.arange(T), y, I_seq))
    return Zs, ancs, logw, loglik, ess


def particle_filter(params: MesoParams, y, A0, age0, I_ext, *, key, n_particles: int = 256, n_paths: int = 1,
                    config: MesoConfig = MesoConfig()):
    """Bootstrap particle filter (pure; no validation — see :func:`sample_posterior`).

    Shapes: ``y`` (T, M, n) observed spikes, ``A0`` (M,) Hz, ``age0`` (M, n) bins, ``I_ext``
    (T, M) or None. Returns ``(paths, log_lik, ess)``: ``n_paths`` trajectories (n_paths, T, M)
    traced back from particles drawn from the final weights, the log of the unbiased
    marginal-likelihood estimate ``log p̂(y | Θ)`` (nats) and the effective sample size per bin.
    """
    T = y.shape[0]
    Zs, ancs, logw, loglik, ess = _filter(params, y, A0, age0, I_ext, key, n_particles=n_particles, cfg=config)
    ends = jax.random.categorical(jax.random.fold_in(key, T), logw, shape=(n_paths,))
    return jax.vmap(lambda i: trace_path(Zs, ancs, i))(ends), loglik, ess


def trace_path(Zs, ancs, i_end):
    """The trajectory (T, M) of the particle ``i_end`` at the last bin, traced through its ancestors."""
    def back(i, xs):
        Z_t, anc = xs
        return anc[i], Z_t[i]

    return jax.lax.scan(back, i_end, (Zs, ancs), reverse=True)[1]


def smoothing_weights(ancs, logw):
    """Weights (T, P) of every bin's particles under the genealogy (path-space) smoother.

    The weight of particle ``j`` at bin ``t`` is the total final weight of its descendants at the
    last bin: ``W[T−1] = w_final``, ``W[t−1, j] = Σ_{i : ancs[t, i] = j} W[t, i]``. Each row sums
    to 1; ``Σ_j W[t, j] Zs[t, j]`` is the particle estimate of ``E[Z(t) | y(1:T)]``.
    """
    P = logw.shape[0]
    w_T = jnp.exp(logw - logsumexp(logw))

    def back(w, anc):
        return jax.ops.segment_sum(w, anc, num_segments=P), w

    return jax.lax.scan(back, w_T, ancs, reverse=True)[1]


def weighted_quantiles(x, w, qs):
    """Quantiles ``qs`` of the samples ``x`` (..., P, M) with weights ``w`` (..., P), per last axis entry."""
    order = jnp.argsort(x, axis=-2)
    xs = jnp.take_along_axis(x, order, axis=-2)
    ws = jnp.take_along_axis(jnp.broadcast_to(w[..., None], x.shape), order, axis=-2)
    cw = jnp.cumsum(ws, axis=-2) - 0.5 * ws
    cw = cw / jnp.sum(ws, axis=-2, keepdims=True)

    def one(q):
        idx = jnp.sum(cw < q, axis=-2, keepdims=True)
        return jnp.take_along_axis(xs, jnp.clip(idx, 0, x.shape[-2] - 1), axis=-2)[..., 0, :]

    return jnp.stack([one(q) for q in qs])


def _check_config(config) -> None:
    if not isinstance(config, MesoConfig):
        raise ConfigError(f"config must be a MesoConfig, got {type(config).__name__}")


def sample_posterior(params: MesoParams, data: MesoData, *, key: jax.Array, n_particles: int = 256,
                     n_samples: int = 1, config: MesoConfig = MesoConfig()):
    """Draw latent trajectories ``Z ~ p(Z | y, Θ)`` and estimate ``log p(y | Θ)`` with a particle filter.

    Parameters
    ----------
    params
        Model parameters (validated).
    data
        The trial (:class:`~spikejax.meso.MesoData`); only the observed spikes are used.
    key
        PRNG key.
    n_particles
        Particles of the filter (256 by default; more give less path degeneracy).
    n_samples
        Trajectories traced back from the final weights (they share their early history).
    config
        Model options.

    Returns
    -------
    (Z, log_lik)
        ``Z`` (n_samples, T, M) fractions in [1e-5, 1]; ``log_lik`` the log marginal likelihood
        estimate in nats (unbiased in ``p``, slightly biased low in ``log p``).
    """
    if not isinstance(params, MesoParams):
        raise TypeError(f"params must be a MesoParams, got {type(params).__name__}")
    params.validate()
    if not isinstance(data, MesoData):
        raise TypeError(f"data must be a MesoData, got {type(data).__name__}")
    n_particles = int(check_scalar(n_particles, "n_particles", low=2, integer=True))
    n_samples = int(check_scalar(n_samples, "n_samples", low=1, integer=True))
    _check_config(config)
    _check_filter_size(data, n_particles, 1, config, "n_particles", f"a particle filter of {n_particles} particles", band=False)
    check_allocation(float(n_samples) * data.y.shape[0] * data.y.shape[1] * (4 + jnp.dtype(data.y.dtype).itemsize),
                     argument="n_samples", what=f"{n_samples} traced-back trajectories")
    key = check_key(key)
    paths, loglik, _ = _pf_jit(params, data.y, data.A0, data.age0, data.I_ext, key, n_particles=n_particles,
                               n_paths=n_samples, cfg=config)
    return paths, loglik


@functools.partial(jax.jit, static_argnames=("n_particles", "n_paths", "cfg"))
def _pf_jit(params, y, A0, age0, I_ext, key, *, n_particles, n_paths, cfg):
    return particle_filter(params, y, A0, age0, I_ext, key=key, n_particles=n_particles, n_paths=n_paths, config=cfg)


class PosteriorZ(NamedTuple):
    """Smoothed posterior of the latent activity given the observed neurons (fractions per bin).

    ``mean``, ``lower`` and ``upper`` are (T, M): the posterior mean ``E[Z(t) | y]`` and the bounds
    of the central credible band of ``level``; ``log_lik`` the particle estimate of
    ``log p(y | Θ)`` (log of the mean of the runs' unbiased estimates) and ``log_lik_runs`` (R,)
    the runs' own estimates.
    """

    mean: jax.Array
    lower: jax.Array
    upper: jax.Array
    log_lik: jax.Array
    log_lik_runs: jax.Array


def _filter_bytes(T: int, M: int, n_particles: int, n_runs: int = 1, *, itemsize: int = 4, n_age: int = 64,
                 band: bool = True) -> float:
    """Estimated bytes of the particle filter's largest buffers (for the size check before compiling).

    Per run the genealogy: draws ``Zs`` (T, P, M), ancestors (T, P) and the smoothing weights (T, P); the
    pooled band sorts a (T, R·P, M) copy; each particle carries an age-structured state of about
    ``6 · M · n_age`` numbers.
    """
    T, M, P, R = float(T), float(M), float(n_particles), float(n_runs)
    gene = R * T * P * (M + 1) * itemsize + T * P * 4
    band_b = 2.0 * R * T * P * M * itemsize if band else 0.0
    state = 2.0 * P * 6 * M * (n_age + 1) * itemsize
    return gene + band_b + state


def _check_filter_size(data, n_particles, n_runs, config, argument, what, band=True) -> None:
    T, M = int(data.y.shape[0]), int(data.y.shape[1])
    nbytes = _filter_bytes(T, M, n_particles, n_runs, itemsize=jnp.dtype(data.y.dtype).itemsize,
                          n_age=int(config.n_age), band=band)
    check_allocation(nbytes, argument=argument, what=f"{what} over {T} bins")


def _posterior(params, y, A0, age0, I_ext, key, *, n_particles: int, n_runs: int, level: float, band: bool,
               cfg: MesoConfig):
    """Pure core of :func:`posterior_Z` (vmappable over parameters and keys)."""
    T, M = y.shape[:2]

    def run(k):
        Zs, ancs, logw, ll, _ = _filter(params, y, A0, age0, I_ext, k, n_particles=n_particles, cfg=cfg)
        return Zs, smoothing_weights(ancs, logw), ll

    Zs, W, ll = jax.lax.map(run, jax.random.split(key, n_runs))
    mean = jnp.einsum("rtp,rtpm->tm", W, Zs) / n_runs
    log_lik = logsumexp(ll) - jnp.log(n_runs)
    if not band:
        return PosteriorZ(mean, mean, mean, log_lik, ll)
    x = jnp.moveaxis(Zs, 0, 1).reshape(T, n_runs * n_particles, M)
    w = jnp.moveaxis(W, 0, 1).reshape(T, n_runs * n_particles) / n_runs
    lower, upper = weighted_quantiles(x, w, (0.5 * (1.0 - level), 0.5 * (1.0 + level)))
    return PosteriorZ(mean, lower, upper, log_lik, ll)


@functools.partial(jax.jit, static_argnames=("n_particles", "n_runs", "level", "band", "cfg"))
def _posterior_jit(params, y, A0, age0, I_ext, key, *, n_particles, n_runs, level, band, cfg):
    return _posterior(params, y, A0, age0, I_ext, key, n_particles=n_particles, n_runs=n_runs, level=level,
                      band=band, cfg=cfg)


def posterior_Z(params: MesoParams, data: MesoData, *, key: jax.Array, n_particles: int = 256, n_runs: int = 8,
                level: float = 0.9, config: MesoConfig = MesoConfig()) -> PosteriorZ:
    """Smoothed posterior mean and credible band of Z at the parameters ``params``.

    The particle filter's genealogy smoother (:func:`smoothing_weights`: every bin's particles
    weighted by the final weight of their descendants) of ``n_runs`` independent filter runs,
    pooled with equal weights. At the ground-truth parameters, ``pearson_r(posterior.mean,
    data.Z)`` is the ceiling of what any estimator of Z from these observed neurons can reach
    (the posterior mean minimises the expected squared error).

    Forward-filtering backward-simulation does not apply here: given the past, the model's state
    (the whole age structure) moves deterministically once ``Z(t)`` is drawn, so the transition
    density between full states is degenerate; the genealogy smoother needs none. Its band is
    too narrow where the genealogies have coalesced (far from the end of the window); pooling
    independent runs widens it again.

    Parameters
    ----------
    params
        Model parameters (validated).
    data
        The trial (:class:`~spikejax.meso.MesoData`); only the observed spikes are used.
    key
        PRNG key (the result is a pure function of it).
    n_particles, n_runs
        Particles per filter run and independent runs (256 and 8 by default).
    level
        Probability of the central credible band (0.9 by default).
    config
        Model options.

    Returns
    -------
    PosteriorZ
        ``mean``, ``lower``, ``upper`` (T, M) fractions per bin (rates in Hz are ``/ (data.dt / 1000)``, ``dt`` in ms),
        ``log_lik`` and ``log_lik_runs`` in nats.
    """
    key = check_key(key)
    check_params_data(params, data)
    n_particles = int(check_scalar(n_particles, "n_particles", low=2, integer=True))
    n_runs = int(check_scalar(n_runs, "n_runs", low=1, integer=True))
    level = float(check_scalar(level, "level", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False))
    _check_config(config)
    _check_filter_size(data, n_particles, n_runs, config, "n_particles and n_runs",
                       f"{n_runs} particle-filter run(s) of {n_particles} particles")
    return _posterior_jit(params, data.y, data.A0, data.age0, data.I_ext, key, n_particles=n_particles,
                          n_runs=n_runs, level=level, band=True, cfg=config)
