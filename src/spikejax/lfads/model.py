"""The LFADS model: encoders, controller, generator, kernel-normalised factors, readouts, priors.

Shapes follow lfads-torch: one trial is ``(time, neurons)``; batches are vmapped over trials.
``encod_seq_len`` bins of ``data_dim`` channels are encoded; ``recon_seq_len`` (>= encod) bins of
``recon_dim`` channels are reconstructed (the extra bins are forward prediction).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import Config, option
from ..core.errors import ConfigError
from ..core.precision import precise
from . import rng
from .gru import ClippedGRUCell, bidirectional_gru
from .observation import ObservationModel, make_observation

__all__ = ["LFADSConfig", "HParams", "LFADS", "Linear", "dropout", "kl_ic", "kl_co_ar1", "kl_co_gaussian"]


@dataclasses.dataclass(frozen=True)
class LFADSConfig(Config):
    """Static architecture of an LFADS model (sizes and structural switches; never traced).

    Names follow the LFADS/lfads-torch hyperparameter vocabulary (spec §1.1, §1.9); ``dt`` is the
    bin width in ms (it sets the time axis and the Hz rates of :func:`~spikejax.lfads.simulate`).
    ``recon_dim`` and ``recon_seq_len`` default to ``data_dim`` and ``encod_seq_len``.
    """

    data_dim: int = option(help="input channels (neurons) per bin", ge=1)
    encod_seq_len: int = option(help="encoded bins per trial", ge=1)
    recon_dim: int | None = option(None, ge=1, help="reconstructed channels (default data_dim)")
    recon_seq_len: int | None = option(None, ge=1, help="reconstructed bins (default encod_seq_len)")
    ext_input_dim: int = option(0, ge=0, help="external input channels")
    ic_enc_dim: int = option(64, ge=1, help="IC encoder GRU units (each direction)")
    ci_enc_dim: int = option(64, ge=0, help="controller-input encoder GRU units (0: no controller)")
    con_dim: int = option(64, ge=0, help="controller GRU units (0: no controller)")
    co_dim: int = option(4, ge=0, help="inferred input dimensions (0: no controller)")
    ic_dim: int = option(64, ge=1, help="initial-condition dimensions")
    gen_dim: int = option(200, ge=1, help="generator GRU units")
    fac_dim: int = option(100, ge=1, help="factors")
    ci_lag: int = option(1, ge=0, help="controller-input lag", unit="bins")
    cell_clip: float = option(5.0, gt=0, help="GRU state clip")
    ic_post_var_min: float = option(1e-4, ge=0, help="floor of the IC posterior variance")
    ic_prior_var: float = option(0.1, gt=0, help="IC prior variance")
    co_prior: str = option("ar1", choices=("ar1", "gaussian"), help="prior of the inferred inputs")
    co_prior_tau: float = option(10.0, gt=0, help="AR(1) prior time constant", unit="bins")
    co_prior_nvar: float = option(0.1, gt=0, help="AR(1) prior innovation variance")
    co_prior_var: float = option(0.1, gt=0, help="Gaussian prior variance")
    reconstruction: str = option("poisson", choices=("poisson", "zig", "zig_torch"),
                                 help="observation model: Poisson, ZIG (RADICaL) or ZIG (lfads-torch)")
    s_min: float = option(0.1, ge=0, help="ZIG event offset")
    gamma_prior: float = option(20.0, gt=0, help="ZIG scale prior")
    l2_gamma_distance_scale: float = option(1e-4, ge=0, help="ZIG scale penalty")
    recon_reduce_mean: bool = option(True, help="mean (lfads-torch) or sum over time and neurons (ELBO)")
    dt: float = option(10.0, gt=0, unit="ms", help="bin width")

    def __post_init__(self):
        # the two size defaults are resolved at construction (before validation), never later
        if self.recon_dim is None and isinstance(self.data_dim, int):
            object.__setattr__(self, "recon_dim", self.data_dim)
        if self.recon_seq_len is None and isinstance(self.encod_seq_len, int):
            object.__setattr__(self, "recon_seq_len", self.encod_seq_len)
        super().__post_init__()

    def validate(self) -> None:
        if self.recon_dim < self.data_dim:
            raise self.error("recon_dim", f"({self.recon_dim}) must be >= data_dim ({self.data_dim})")
        if self.recon_seq_len < self.encod_seq_len:
            raise self.error("recon_seq_len", f"({self.recon_seq_len}) must be >= encod_seq_len ({self.encod_seq_len})")
        use = [self.ci_enc_dim > 0, self.con_dim > 0, self.co_dim > 0]
        if any(use) and not all(use):
            raise self.error(
                "co_dim", "the controller needs ci_enc_dim, con_dim and co_dim all > 0 (or all 0 for no inferred "
                f"inputs); got ci_enc_dim={self.ci_enc_dim}, con_dim={self.con_dim}, co_dim={self.co_dim}")
        if self.ci_lag >= self.encod_seq_len:
            raise self.error("ci_lag", f"({self.ci_lag}) must be < encod_seq_len ({self.encod_seq_len})")

    @property
    def use_con(self) -> bool:
        return self.co_dim > 0


class HParams(eqx.Module):
    """Hyperparameters that may change during training (array leaves: changing them never recompiles).

    Searched by PBT (spec §4): ``lr`` lives in the optimiser state; these live here.
    """

    dropout_rate: jax.Array
    cd_rate: jax.Array
    cd_pass_rate: jax.Array
    kl_ic_scale: jax.Array
    kl_co_scale: jax.Array
    l2_gen_scale: jax.Array
    l2_con_scale: jax.Array
    l2_ic_enc_scale: jax.Array
    l2_ci_enc_scale: jax.Array
    kl_start_epoch: jax.Array
    kl_increase_epoch: jax.Array
    l2_start_epoch: jax.Array
    l2_increase_epoch: jax.Array
    loss_scale: jax.Array

    @classmethod
    def create(cls, *, dropout_rate=0.05, cd_rate=0.0, cd_pass_rate=0.0, kl_ic_scale=1e-4, kl_co_scale=1e-4,
               l2_gen_scale=1e-4, l2_con_scale=1e-4, l2_ic_enc_scale=0.0, l2_ci_enc_scale=0.0,
               kl_start_epoch=0, kl_increase_epoch=80, l2_start_epoch=0, l2_increase_epoch=80,
               loss_scale=1e4, dtype=None) -> "HParams":
        """Build from Python numbers, validating ranges (``ConfigError`` naming the field)."""
        vals = dict(locals())
        vals.pop("cls")
        dtype = vals.pop("dtype") or jnp.zeros(()).dtype
        for name, v in vals.items():
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) and not (
                    hasattr(v, "shape") and np.ndim(v) == 0):
                hint = ""
                if isinstance(v, str):
                    try:
                        float(v)
                        hint = " (write the number without quotes; YAML reads 1e-4 without a dot as a string: 1.0e-4)"
                    except ValueError:
                        pass
                raise ConfigError(f"HParams.{name} must be a number, got {type(v).__name__} {v!r}{hint}")
        for name in ("dropout_rate", "cd_rate", "cd_pass_rate"):
            v = float(vals[name])
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"HParams.{name} must be in [0, 1), got {v}")
        for name, v in vals.items():
            if not math.isfinite(float(v)) or float(v) < 0:
                raise ConfigError(f"HParams.{name} must be a finite number >= 0, got {v}")
        if float(vals["loss_scale"]) <= 0:
            raise ConfigError(f"HParams.loss_scale must be > 0, got {vals['loss_scale']}")
        return cls(**{k: jnp.asarray(float(v), dtype) for k, v in vals.items()})

    def replace(self, **kw) -> "HParams":
        out = self
        for k, v in kw.items():
            old = getattr(out, k)
            out = eqx.tree_at(lambda h: getattr(h, k), out, jnp.full_like(old, v))
        return out


class Linear(eqx.Module):
    """Dense layer with LFADS initialisation ``W ~ N(0, 1/fan_in)``, bias 0."""

    weight: jax.Array
    bias: jax.Array | None

    def __init__(self, n_in: int, n_out: int, *, key, bias: bool = True, dtype=None):
        dtype = dtype or jnp.zeros(()).dtype
        self.weight = rng.init_normal(key, (n_out, n_in), div=math.sqrt(max(n_in, 1))).astype(dtype)
        self.bias = jnp.zeros(n_out, dtype) if bias else None

    def __call__(self, x):
        y = x @ self.weight.T
        return y if self.bias is None else y + self.bias


class KernelNormalizedLinear(eqx.Module):
    """Bias-free linear map whose rows (one per output) are renormalised to unit L2 norm on every call."""

    weight: jax.Array

    def __init__(self, n_in: int, n_out: int, *, key, dtype=None):
        dtype = dtype or jnp.zeros(()).dtype
        self.weight = rng.init_normal(key, (n_out, n_in), div=math.sqrt(n_in)).astype(dtype)

    def normalized(self):
        return self.weight / jnp.sqrt(jnp.sum(self.weight**2, axis=1, keepdims=True) + 1e-12)

    def __call__(self, x):
        return x @ self.normalized().T


def dropout(x: jax.Array, rate: jax.Array, key: jax.Array | None) -> jax.Array:
    """Inverted dropout with a (possibly traced) rate; identity when ``key`` is None (eval mode)."""
    if key is None:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))


def kl_ic(mean: jax.Array, std: jax.Array, prior_mean: jax.Array, prior_var: float) -> jax.Array:
    """Analytic KL(N(mean, std²) || N(prior_mean, prior_var)) summed over the last axis (nats)."""
    var = std**2
    return 0.5 * jnp.sum(jnp.log(prior_var) - jnp.log(var) + (var + (mean - prior_mean) ** 2) / prior_var - 1.0, axis=-1)


def _normal_logpdf(x, mean, var):
    return -0.5 * (jnp.log(2 * jnp.pi * var) + (x - mean) ** 2 / var)


def kl_co_ar1(u: jax.Array, mean: jax.Array, std: jax.Array, log_tau: jax.Array, log_nvar: jax.Array) -> jax.Array:
    """One-sample Monte-Carlo KL of the inferred inputs against the AR(1) prior (nats, summed).

    ``u``, ``mean``, ``std``: (T, co_dim) sample and diagonal posterior. Prior per dimension:
    ``u_1 ~ N(0, s²/(1-α²))``, ``u_t | u_{t-1} ~ N(α u_{t-1}, s²)`` with ``α = exp(-1/τ)``,
    ``s² = exp(log_nvar)`` the innovation variance.
    """
    alpha = jnp.exp(-1.0 / jnp.exp(log_tau))
    nvar = jnp.exp(log_nvar)
    log_q = _normal_logpdf(u, mean, std**2)
    lp_first = _normal_logpdf(u[:1], 0.0, nvar / (1.0 - alpha**2))
    lp_rest = _normal_logpdf(u[1:], alpha * u[:-1], nvar)
    return jnp.sum(log_q) - jnp.sum(lp_first) - jnp.sum(lp_rest)


def kl_co_gaussian(mean: jax.Array, std: jax.Array, prior_var: float) -> jax.Array:
    """Analytic KL of the inferred inputs against an i.i.d. N(0, prior_var) prior (nats, summed)."""
    return jnp.sum(kl_ic(mean, std, 0.0, prior_var))


def parameter_counts(c: LFADSConfig) -> dict[str, int]:
    """Number of parameters of each part of an LFADS model, keyed by the config field that sizes it most."""
    enc_in = c.data_dim
    counts = {
        "ic_enc_dim": 2 * 3 * c.ic_enc_dim * (enc_in + c.ic_enc_dim + 2) + 2 * c.ic_enc_dim * 2 * c.ic_dim,
        "ci_enc_dim": (2 * 3 * c.ci_enc_dim * (enc_in + c.ci_enc_dim + 2)) if c.use_con else 0,
        "con_dim": (3 * c.con_dim * (2 * c.ci_enc_dim + c.fac_dim + c.con_dim + 2) + 2 * c.co_dim * c.con_dim)
        if c.use_con else 0,
        "gen_dim": 3 * c.gen_dim * (c.co_dim + c.ext_input_dim + c.gen_dim + 2) + c.ic_dim * c.gen_dim,
        "fac_dim": c.fac_dim * c.gen_dim + 3 * c.recon_dim * (c.fac_dim + 1),
    }
    return counts


def check_parameter_size(c: LFADSConfig, dtype=None) -> int:
    """Refuse (:class:`~spikejax.core.SizeError`, naming the largest size field) a model whose parameters,
    with the optimiser's two Adam moments and the gradient (four copies), exceed the memory limit."""
    from ..core.errors import check_allocation

    itemsize = jnp.dtype(dtype or jnp.zeros(()).dtype).itemsize
    counts = parameter_counts(c)
    n = sum(counts.values())
    biggest = max(counts, key=counts.get)
    return check_allocation(4 * n * itemsize, argument=biggest,
                            what=f"an LFADS model with {n:,} parameters ({biggest}={getattr(c, biggest)}) and its "
                                 "optimiser state")


class LFADS(eqx.Module):
    """Latent factor analysis via dynamical systems (sequential VAE), lfads-torch architecture.

    Build with ``LFADS(config, key=key)``; call :meth:`forward` on one trial.
    """

    config: LFADSConfig = eqx.field(static=True)
    ic_enc_fwd: ClippedGRUCell
    ic_enc_bwd: ClippedGRUCell
    ic_enc_h0: jax.Array
    ic_linear: Linear
    ci_enc_fwd: ClippedGRUCell | None
    ci_enc_bwd: ClippedGRUCell | None
    ci_enc_h0: jax.Array | None
    con_cell: ClippedGRUCell | None
    con_h0: jax.Array | None
    co_linear: Linear | None
    ic_to_g0: Linear
    gen_cell: ClippedGRUCell
    factors: KernelNormalizedLinear
    readout: ObservationModel
    ic_prior_mean: jax.Array
    co_prior_log_tau: jax.Array | None
    co_prior_log_nvar: jax.Array | None

    def __init__(self, config: LFADSConfig, *, key: jax.Array, dtype=None):
        if not isinstance(config, LFADSConfig):
            raise TypeError(f"config must be an LFADSConfig (LFADSConfig(data_dim=..., encod_seq_len=...) or "
                            f"LFADSConfig.from_dict(...)), got {type(config).__name__}")
        c = config
        dtype = dtype or jnp.zeros(()).dtype
        check_parameter_size(c, dtype)
        ks = iter(jax.random.split(key, 16))
        self.config = c
        self.ic_enc_fwd = ClippedGRUCell(c.data_dim, c.ic_enc_dim, key=next(ks), clip=c.cell_clip, dtype=dtype)
        self.ic_enc_bwd = ClippedGRUCell(c.data_dim, c.ic_enc_dim, key=next(ks), clip=c.cell_clip, dtype=dtype)
        self.ic_enc_h0 = jnp.zeros((2, c.ic_enc_dim), dtype)
        self.ic_linear = Linear(2 * c.ic_enc_dim, 2 * c.ic_dim, key=next(ks), dtype=dtype)
        if c.use_con:
            self.ci_enc_fwd = ClippedGRUCell(c.data_dim, c.ci_enc_dim, key=next(ks), clip=c.cell_clip, dtype=dtype)
            self.ci_enc_bwd = ClippedGRUCell(c.data_dim, c.ci_enc_dim, key=next(ks), clip=c.cell_clip, dtype=dtype)
            self.ci_enc_h0 = jnp.zeros((2, c.ci_enc_dim), dtype)
            self.con_cell = ClippedGRUCell(2 * c.ci_enc_dim + c.fac_dim, c.con_dim, key=next(ks), clip=c.cell_clip,
                                           init="decoder", dtype=dtype)
            self.con_h0 = jnp.zeros((c.con_dim,), dtype)
            self.co_linear = Linear(c.con_dim, 2 * c.co_dim, key=next(ks), dtype=dtype)
            self.co_prior_log_tau = jnp.full((c.co_dim,), math.log(c.co_prior_tau), dtype)
            self.co_prior_log_nvar = jnp.full((c.co_dim,), math.log(c.co_prior_nvar), dtype)
        else:
            self.ci_enc_fwd = self.ci_enc_bwd = self.ci_enc_h0 = None
            self.con_cell = self.con_h0 = self.co_linear = None
            self.co_prior_log_tau = self.co_prior_log_nvar = None
        self.ic_to_g0 = Linear(c.ic_dim, c.gen_dim, key=next(ks), dtype=dtype)
        self.gen_cell = ClippedGRUCell(c.co_dim + c.ext_input_dim, c.gen_dim, key=next(ks), clip=c.cell_clip,
                                       init="decoder", dtype=dtype)
        self.factors = KernelNormalizedLinear(c.gen_dim, c.fac_dim, key=next(ks), dtype=dtype)
        self.readout = make_observation(c, key=next(ks), dtype=dtype)
        self.ic_prior_mean = jnp.zeros((c.ic_dim,), dtype)

    # ------------------------------------------------------------------ pieces
    def _ic_from_states(self, fwd: jax.Array, bwd: jax.Array, keep: jax.Array | None):
        """IC posterior from time-major encoder states (T, ..., H): final forward and first backward state."""
        h = jnp.concatenate([fwd[-1], bwd[0]], axis=-1)
        if keep is not None:
            h = h * keep
        out = self.ic_linear(h)
        mean, logvar = out[..., : self.config.ic_dim], out[..., self.config.ic_dim:]
        std = jnp.sqrt(jnp.exp(logvar) + self.config.ic_post_var_min)
        return mean, std

    def _ci_from_states(self, fwd: jax.Array, bwd: jax.Array) -> jax.Array:
        """Lagged, padded controller inputs (T_r, ..., 2·ci_enc_dim) from time-major encoder states."""
        c = self.config
        lag = c.ci_lag
        if lag > 0:
            fwd = jnp.concatenate([jnp.zeros((lag, *fwd.shape[1:]), fwd.dtype), fwd[:-lag]])
            bwd = jnp.concatenate([bwd[lag:], jnp.zeros((lag, *bwd.shape[1:]), bwd.dtype)])
        ci = jnp.concatenate([fwd, bwd], axis=-1)
        pad = c.recon_seq_len - c.encod_seq_len
        if pad:
            ci = jnp.concatenate([ci, jnp.zeros((pad, *ci.shape[1:]), ci.dtype)])
        return ci

    def _encode_ic_tm(self, xt: jax.Array, keep: jax.Array | None = None):
        fwd, bwd = bidirectional_gru(self.ic_enc_fwd, self.ic_enc_bwd, xt, self.ic_enc_h0[0], self.ic_enc_h0[1])
        return self._ic_from_states(fwd, bwd, keep)

    def _encode_ci_tm(self, xt: jax.Array) -> jax.Array:
        fwd, bwd = bidirectional_gru(self.ci_enc_fwd, self.ci_enc_bwd, xt, self.ci_enc_h0[0], self.ci_enc_h0[1])
        return self._ci_from_states(fwd, bwd)

    def encode_ic(self, x: jax.Array, keep: jax.Array | None = None):
        """IC posterior (mean, std), each (ic_dim,), from one input trial ``x`` (T_e, N).

        ``keep``: optional dropout multiplier (2·ic_enc_dim,) for the concatenated final states.
        """
        return self._encode_ic_tm(x, keep)

    def encode_ci(self, x: jax.Array) -> jax.Array:
        """Lagged controller inputs (T_r, 2·ci_enc_dim): forward delayed, backward advanced by ``ci_lag``."""
        return self._encode_ci_tm(x)

    def noise_shapes(self) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
        """Shapes of the uniform (dropout) and standard-normal (posterior) noise one trial needs."""
        c = self.config
        T = c.recon_seq_len
        n_con_in = 2 * c.ci_enc_dim + c.fac_dim if c.use_con else 0
        uni = {"in": (c.encod_seq_len, c.data_dim), "ic": (2 * c.ic_enc_dim,), "g0": (c.gen_dim,),
               "con": (T, n_con_in), "ext": (T, c.ext_input_dim), "gen": (T, c.gen_dim)}
        nrm = {"z0": (c.ic_dim,), "u": (T, c.co_dim)}
        return uni, nrm

    def draw_noise(self, key: jax.Array, batch: tuple[int, ...] = ()) -> dict[str, jax.Array]:
        """All random numbers of a forward pass for ``batch`` trials in two RNG calls (cheap to compile)."""
        uni, nrm = self.noise_shapes()
        dt = self.ic_prior_mean.dtype
        ku, kn = rng.split(key)
        out = {}
        for shapes, draw, k, pre in ((uni, rng.uniform, ku, "u_"), (nrm, rng.normal, kn, "n_")):
            sizes = [math.prod(v) for v in shapes.values()]
            flat = draw(k, (*batch, max(sum(sizes), 1)), dt)
            off = 0
            for (name, shp), size in zip(shapes.items(), sizes):
                out[pre + name] = flat[..., off:off + size].reshape(*batch, *shp)
                off += size
        return out

    @precise  # full float32 products unless the user chose a precision (core.matmul_precision)
    def forward(self, x: jax.Array, hp: HParams, *, key: jax.Array | None = None, noise: dict | None = None,
                ext: jax.Array | None = None, sample_posteriors: bool = True,
                training: bool = True) -> dict[str, jax.Array]:
        """Run one trial.

        Parameters
        ----------
        x : (encod_seq_len, data_dim) input (NaN-free; zero-fill missing entries first).
        hp : hyperparameters (dropout rate used when ``training``).
        key : PRNG key for posterior samples and dropout (or pass ``noise`` from :meth:`draw_noise`).
        ext : optional external inputs (recon_seq_len, ext_input_dim).
        sample_posteriors : draw z0 and u_t from the posteriors (else use their means).
        training : apply dropout.

        Returns
        -------
        dict with ``params`` (recon_seq_len, n_params·recon_dim) readout outputs, ``factors``,
        ``gen_states``, ``ic_mean``, ``ic_std``, ``co_means``, ``co_stds``, ``con_inputs`` (u), ``z0``.
        """
        if noise is None:
            if key is None:
                raise TypeError("forward needs key= or noise=")
            noise = self.draw_noise(key)
        add = lambda t: jax.tree_util.tree_map(lambda a: a[None], t)  # noqa: E731
        out = self.forward_batch(x[None], hp, noise=add(noise), ext=None if ext is None else ext[None],
                                 sample_posteriors=sample_posteriors, training=training)
        return jax.tree_util.tree_map(lambda a: a[0], out)

    @precise
    def forward_batch(self, x: jax.Array, hp: HParams, *, noise: dict, ext: jax.Array | None = None,
                      sample_posteriors: bool = True, training: bool = True) -> dict[str, jax.Array]:
        """:meth:`forward` for a batch: ``x`` (B, encod_seq_len, data_dim), ``noise`` from
        ``draw_noise(key, (B,))``, ``ext`` (B, recon_seq_len, ext_input_dim); outputs have a leading B.

        The encoders run on the whole batch (time-major GRU scans with hand-written VJPs, input
        projections as one GEMM); the controller/generator recurrence is vmapped over trials.
        """
        c = self.config
        dt = x.dtype
        if training:
            keep = lambda name: ((noise["u_" + name] < 1.0 - hp.dropout_rate).astype(dt)  # noqa: E731
                                 / (1.0 - hp.dropout_rate))
        else:
            keep = lambda name: jnp.ones(noise["u_" + name].shape, dt)  # noqa: E731
        x = x * keep("in")
        xt = jnp.swapaxes(x, 0, 1)  # (T_e, B, N)
        ic_mean, ic_std = self._encode_ic_tm(xt, keep("ic") if training else None)
        z0 = ic_mean + ic_std * noise["n_z0"] if sample_posteriors else ic_mean
        T = c.recon_seq_len
        ci = jnp.swapaxes(self._encode_ci_tm(xt), 0, 1) if c.use_con else None  # (B, T_r, 2·ci_enc_dim)
        if ext is None:
            ext = jnp.zeros((x.shape[0], T, c.ext_input_dim), dt)
        w_fac = self.factors.normalized()  # the kernel normalisation, once per batch, not once per step
        decode = functools.partial(self._decode, w_fac=w_fac, sample_posteriors=sample_posteriors)
        gs, fs, co_means, co_stds, us = jax.vmap(decode)(z0, ci, ext, noise["n_u"], keep("con"), keep("ext"),
                                                         keep("gen"), keep("g0"))
        return {
            "params": self.readout.params(fs),
            "factors": fs,
            "gen_states": gs,
            "ic_mean": ic_mean,
            "ic_std": ic_std,
            "z0": z0,
            "co_means": co_means,
            "co_stds": co_stds,
            "con_inputs": us,
        }

    def _decode(self, z0, ci, ext, eps_u, m_con, m_ext, m_gen, m_g0, *, w_fac, sample_posteriors):
        """Controller + generator + factors for one trial (T_r steps)."""
        c = self.config
        dt = z0.dtype
        T = c.recon_seq_len
        g0 = self.ic_to_g0(z0)
        f0 = (g0 * m_g0) @ w_fac.T
        h_con0 = self.con_h0 if c.use_con else jnp.zeros((0,), dt)
        if c.use_con:
            # the controller's input is [ci_t, f_{t-1}] (with dropout): the ci part of its input
            # projection does not depend on the recurrence and is computed for all steps at once
            n_ci = 2 * c.ci_enc_dim
            w_ci, w_f = self.con_cell.w_in[:, :n_ci], self.con_cell.w_in[:, n_ci:]
            con_xp = (ci * m_con[:, :n_ci]) @ w_ci.T + self.con_cell.b_in
            m_con_f = m_con[:, n_ci:]
        else:
            con_xp = m_con_f = jnp.zeros((T, 0), dt)

        def step(carry, inp):
            g, h_con, f = carry
            xp_t, mcf, ext_t, eps_t, me, mg = inp
            if c.use_con:
                h_con = self.con_cell.step_projected(xp_t + (f * mcf) @ w_f.T, h_con)
                co = self.co_linear(h_con)
                co_mean, co_logvar = co[: c.co_dim], co[c.co_dim:]
                co_std = jnp.exp(0.5 * co_logvar)
                u = co_mean + co_std * eps_t if sample_posteriors else co_mean
            else:
                co_mean = co_std = u = jnp.zeros((0,), dt)
            g = self.gen_cell(jnp.concatenate([u, ext_t * me]), g)
            f = (g * mg) @ w_fac.T
            return (g, h_con, f), (g, f, co_mean, co_std, u)

        _, outs = jax.lax.scan(step, (g0, h_con0, f0), (con_xp, m_con_f, ext, eps_u, m_ext, m_gen))
        return outs

    # ------------------------------------------------------------------ loss terms
    def kl_terms(self, out: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """(KL_ic, KL_co) for one trial's forward output, in nats."""
        c = self.config
        kic = kl_ic(out["ic_mean"], out["ic_std"], self.ic_prior_mean, c.ic_prior_var)
        if not c.use_con:
            return kic, jnp.zeros((), kic.dtype)
        if c.co_prior == "ar1":
            kco = kl_co_ar1(out["con_inputs"], out["co_means"], out["co_stds"], self.co_prior_log_tau,
                            self.co_prior_log_nvar)
        else:
            kco = kl_co_gaussian(out["co_means"], out["co_stds"], c.co_prior_var)
        return kic, kco

    def l2_penalty(self, hp: HParams) -> jax.Array:
        """Σ λ_j ½‖U_j‖² / Σ_{λ_j>0} numel(U_j) over recurrent kernels (+ RADICaL's gamma-scale penalty)."""
        terms = [(hp.l2_gen_scale, self.gen_cell.recurrent_l2()),
                 (hp.l2_ic_enc_scale, self.ic_enc_fwd.recurrent_l2()),
                 (hp.l2_ic_enc_scale, self.ic_enc_bwd.recurrent_l2())]
        if self.config.use_con:
            terms += [(hp.l2_con_scale, self.con_cell.recurrent_l2()),
                      (hp.l2_ci_enc_scale, self.ci_enc_fwd.recurrent_l2()),
                      (hp.l2_ci_enc_scale, self.ci_enc_bwd.recurrent_l2())]
        num = sum(lam * sq for lam, (sq, _) in terms)
        den = sum(jnp.where(lam > 0, float(n), 0.0) for lam, (_, n) in terms)
        extra = self.readout.l2_inside()
        if extra is not None:
            sq, n = extra
            num = num + sq
            den = den + float(n)
        return num / jnp.maximum(den, 1.0)
