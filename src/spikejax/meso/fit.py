"""Fitting the mesoscopic model to a few observed neurons: :func:`fit_em` (hard EM, then maximum marginal
likelihood by default) and :func:`fit_params_given_Z` (the M-step given the activity, a ceiling).

The stages live in :mod:`.hard_em` (neuLVM's hard EM: BFGS M-steps, projected-Adam E-steps),
:mod:`.marginal` (stochastic approximation with the Fisher identity through the particle filter)
and :mod:`.sem` (stochastic EM). Settings: one :class:`MesoFitConfig` holding the stage configs.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import Config, option
from ..core.errors import ConfigError, TrainingDivergedError, check_array, check_scalar
from ..core.random import check_key
from .data import MesoData
from .hard_em import INIT_EM, EMConfig, _em_batch, _from_box, _to_box, bfgs_box, init_Z
from .marginal import MarginalConfig, marginal_stage, screen_log_lik
from .model import MesoConfig, _loss_parts
from .params import MesoParams, box_bounds, check_in_box, from_vector, ground_truth, sample_in_box, to_vector
from .results import MesoFitResult, _make_result
from .sem import SEMConfig, _sem_batch

__all__ = ["MesoFitConfig", "fit_em", "fit_em_sequential", "fit_params_given_Z"]


@dataclasses.dataclass(frozen=True)
class MesoFitConfig(Config):
    """Settings of :func:`fit_em`: the method and the configs of its stages.

    Attributes
    ----------
    method : {"marginal", "hard", "sem"}
        Maximum marginal likelihood (default; hard EM as its initialiser), neuLVM's hard EM alone, or
        stochastic EM after hard EM.
    em : EMConfig or None
        Hard-EM settings; ``None`` (default): :data:`INIT_EM` as the initialiser of the marginal/SEM
        stage, ``EMConfig()`` for ``method="hard"`` (:attr:`em_settings`).
    marginal : MarginalConfig
        Settings of the marginal-likelihood stage.
    sem : SEMConfig
        Settings of ``method="sem"``.
    model : MesoConfig
        Options of the mesoscopic model (bin size ``dt`` in ms, age bins, integrator).
    init_hard_em : bool
        ``method="marginal"`` only: start the marginal stage from the hard-EM estimates (default) or
        directly from the starting points (with the data-driven Z for the first information estimate).
    """

    method: str = option("marginal", choices=("marginal", "hard", "sem"), help="fitting method")
    em: EMConfig | None = option(None, help="hard-EM settings (None: INIT_EM, or EMConfig() for method='hard')")
    marginal: MarginalConfig = option(default_factory=MarginalConfig, help="marginal-likelihood stage")
    sem: SEMConfig = option(default_factory=SEMConfig, help="stochastic-EM stage (method='sem')")
    model: MesoConfig = option(default_factory=MesoConfig, help="options of the mesoscopic model")
    init_hard_em: bool = option(True, help="start the marginal stage from the hard-EM estimates")

    @property
    def em_settings(self) -> EMConfig:
        """The hard-EM settings in use (``em``, or the method's default)."""
        if self.em is not None:
            return self.em
        return EMConfig() if self.method == "hard" else INIT_EM


def fit_em(
    data: MesoData,
    *,
    key: jax.Array,
    config: MesoFitConfig = MesoFitConfig(),
    model: MesoParams | None = None,
    reference: MesoParams | None = None,
    x0=None,
    truth: MesoParams | None = None,
    _first_restart: int = 0,
) -> MesoFitResult:
    """Fit the mesoscopic model to the observed neurons of ``data`` (vmapped random restarts).

    ``config.method="marginal"`` (default) maximises the marginal likelihood ``log p(y | Θ)``: hard EM
    (``config.em``, short, 10 random starts by default) gives the restarts their starts, the
    ``marginal.n_continue`` hard-EM estimates with the highest particle ``log p̂(y | Θ)`` are
    continued (screening), and the stochastic approximation of :mod:`spikejax.meso.marginal`
    (Fisher's identity through the particle filter, EM-gradient steps with heavy-ball momentum,
    decreasing gains and Polyak averaging; ``config.marginal``) converges to a stationary point
    of ``log p(y | Θ)``; at ``marginal.cut_at`` only the ``marginal.n_keep`` restarts of highest
    recent ``log p̂`` continue, with a less noisy score (``late_runs`` independent filter runs);
    restarts are ranked by the particle estimate of ``log p(y | Θ)``. ``method="hard"`` is neuLVM's
    hard EM alone (the joint mode of ``p(y, Z | Θ)``, biased; its gradient steps minimise
    :func:`~spikejax.meso.loss`); ``method="sem"`` the earlier stochastic-EM refinement.

    Parameters
    ----------
    data
        One trial (:class:`~spikejax.meso.MesoData`); ``data.Z`` is never used for fitting.
    key
        PRNG key for the random starting points and the particle filters (the fit is a pure
        function of it).
    config
        :class:`MesoFitConfig` (method, stage settings, model options).
    model
        Fixed parameters (α_s, conmat, N, t_ref, ε, names); default the neuLVM ground truth with
        ``N = data.N``. Its fitted parameters are ignored (the starts are drawn in the box).
    reference
        Centre of the box ``[0.4, 2.0] × reference`` (default ground truth with θ = 3.7).
    x0
        Optional (n_restarts, 12) starting points inside the box (default: uniform draws).
    truth
        Ground truth for the results table (default: the neuLVM ground truth when sizes match).

    Returns
    -------
    MesoFitResult
        ``model`` (the best restart's parameters), ``history`` (per iteration of the last stage),
        ``runs`` (per restart: ``x``, ``Z``, ``loss``, ``log_lik``, traces), ``hard_em`` (the
        hard-EM stage's result for the marginal and SEM methods), ``seconds``, ``stage_seconds``.
    """
    key = check_key(key)
    if not isinstance(config, MesoFitConfig):
        raise ConfigError(f"config must be a MesoFitConfig, got {type(config).__name__}")
    if not isinstance(data, MesoData):
        raise TypeError(f"data must be a MesoData, got {type(data).__name__}")
    method, em, marginal, cfg = config.method, config.em_settings, config.marginal, config.model
    dtype = data.y.dtype
    base = model
    if base is None:
        base = dataclasses.replace(ground_truth(dtype=dtype), N=tuple(data.N))
    if not isinstance(base, MesoParams):
        raise TypeError(f"model must be a MesoParams or None, got {type(base).__name__}")
    base.validate()
    if len(base.N) != data.M or tuple(base.N) != tuple(data.N):
        raise ConfigError(f"model.N {base.N} must equal data.N {data.N}")
    if base.names is not None and len(base.names) != data.M:
        base = dataclasses.replace(base, names=None)
    lo, hi = box_bounds(reference)
    lo, hi = lo.astype(dtype), hi.astype(dtype)
    if lo.shape[0] != 4 * data.M:
        raise ConfigError(f"the box has {lo.shape[0]} entries, expected {4 * data.M}")
    if x0 is None:
        x0s = sample_in_box(lo, hi, em.n_restarts, key=key)
    else:
        x0s = check_array(x0, "x0", (None, 4 * data.M)).astype(dtype)
        for i in range(x0s.shape[0]):
            check_in_box(from_vector(base, x0s[i]), lo, hi, name=f"x0[{i}]")
    Z0 = init_Z(data, em.smooth_bins)
    arrays = {"y": data.y, "A0": data.A0, "age0": data.age0, "I_ext": data.I_ext}
    if truth is None and tuple(data.N) == (400, 400, 200):
        truth = ground_truth(dtype=dtype)
    truth_x = None if truth is None else np.asarray(to_vector(truth))
    common = {"x0": np.asarray(x0s), "Z0": np.asarray(Z0), "base": base, "lo": np.asarray(lo), "hi": np.asarray(hi),
              "config": config, "truth_x": truth_x}
    t0 = time.perf_counter()
    if method == "marginal" and not config.init_hard_em:
        out = {"x": np.asarray(x0s), "Z": np.broadcast_to(np.asarray(Z0), (x0s.shape[0],) + Z0.shape).copy(),
               "loss": np.zeros(x0s.shape[0], np.asarray(Z0).dtype), "n_em": np.zeros(x0s.shape[0], np.int32)}
    else:
        out = _em_batch(x0s, Z0, base, arrays, lo, hi, cfg=cfg, em=em)
        out = jax.tree_util.tree_map(np.asarray, jax.device_get(out))
    seconds = time.perf_counter() - t0
    if not np.all(np.isfinite(out["loss"])):
        bad = np.flatnonzero(~np.isfinite(out["loss"])).tolist()
        raise TrainingDivergedError(
            f"EM restart(s) {bad} ended with a non-finite objective; try jax_enable_x64 or a smaller "
            "EMConfig.learning_rate")
    if method == "hard":
        return _make_result("hard", out, seconds=seconds, **common)
    if method == "marginal":
        stage_key = jax.random.fold_in(key, 2)
        t1 = time.perf_counter()
        n_all = x0s.shape[0]
        keep = np.arange(n_all)
        if config.init_hard_em and 0 < marginal.n_continue < n_all:
            # screening: continue the hard-EM estimates with the highest particle log p(y | theta)
            skeys = jnp.stack([jax.random.fold_in(jax.random.fold_in(key, 3), _first_restart + i) for i in range(n_all)])
            sll = np.asarray(_screen_batch(jnp.asarray(out["x"]), skeys, base, arrays, cfg=cfg,
                                           n_particles=marginal.n_particles, n_runs=marginal.n_final))
            out["screen_log_lik"] = sll
            keep = np.sort(np.argsort(-np.where(np.isfinite(sll), sll, -np.inf), kind="stable")[: marginal.n_continue])
        ref = marginal_stage(out, keep, stage_key, _first_restart, base, arrays, lo, hi, cfg=cfg, mc=marginal)
        if "cut_score" in ref:  # the selection at the switch, for every continued restart
            out["cut_score"] = np.full(n_all, np.nan, ref["cut_score"].dtype)
            out["cut_score"][keep] = ref.pop("cut_score")
            tr = ref.pop("cut_log_lik_trace")
            out["cut_log_lik_trace"] = np.full((n_all, tr.shape[1]), np.nan, tr.dtype)
            out["cut_log_lik_trace"][keep] = tr
        keep = ref["restart"]
        t2 = time.perf_counter()
        if not np.all(np.isfinite(ref["log_lik"])):
            raise TrainingDivergedError("the marginal-likelihood stage ended with a non-finite log p(y | theta) "
                                        "estimate; try more particles (MarginalConfig.final_particles) or x64")
        ref["n_em"] = out["n_em"][keep]
        hard = _make_result("hard", out, seconds=seconds, **common)
        return _make_result("marginal", ref, seconds=seconds + t2 - t1, hard_em=hard,
                            stage_seconds={"hard_em": seconds, "marginal": t2 - t1},
                            **{**common, "x0": np.asarray(x0s)[keep]})
    hard = _make_result("hard", out, seconds=seconds, **common)
    x_start = out["x"]
    keys = jax.random.split(jax.random.fold_in(key, 1), x_start.shape[0])
    t0 = time.perf_counter()
    ref = _sem_batch(jnp.asarray(x_start), keys, base, arrays, lo, hi, cfg=cfg, sem=config.sem)
    ref = jax.tree_util.tree_map(np.asarray, jax.device_get(ref))
    if not np.all(np.isfinite(ref["log_lik"])):
        raise TrainingDivergedError("stochastic EM ended with a non-finite marginal likelihood estimate; "
                                    "try more particles (SEMConfig.n_particles)")
    ref["n_em"] = out["n_em"]
    t_sem = time.perf_counter() - t0
    return _make_result("sem", ref, seconds=seconds + t_sem, hard_em=hard,
                        stage_seconds={"hard_em": seconds, "sem": t_sem}, **common)


@functools.partial(jax.jit, static_argnames=("cfg", "n_particles", "n_runs"))
def _screen_batch(xs, keys, base, arrays, *, cfg, n_particles, n_runs):
    return jax.vmap(lambda x, k: screen_log_lik(x, k, base, arrays, n_particles=n_particles, n_runs=n_runs,
                                                cfg=cfg))(xs, keys)


def fit_em_sequential(data: MesoData, *, x0, key: jax.Array, config: MesoFitConfig = MesoFitConfig(),
                      model: MesoParams | None = None) -> list[MesoFitResult]:
    """Run the restarts of :func:`fit_em` one after the other (for checking the vmapped program).

    Restart ``i`` gets the same starting point and the same random numbers as restart ``i`` of
    ``fit_em(data, key=key, x0=x0, config=config)``. Every restart is continued (one at a time there
    is nothing to screen or cut), as ``fit_em`` does with ``MarginalConfig(n_continue=0)`` and
    ``n_keep`` at least the number of restarts; with the cut, each survivor of ``fit_em`` equals its
    run here.
    """
    key = check_key(key)
    one = config.replace(em=config.em_settings.replace(n_restarts=1))
    x0 = np.asarray(x0)
    return [fit_em(data, key=key, config=one, model=model, x0=x0[i : i + 1], _first_restart=i)
            for i in range(x0.shape[0])]


@functools.partial(jax.jit, static_argnames=("cfg", "maxiter", "tol"))
def _mstep_batch(x0s, Z, base, arrays, lo, hi, *, cfg, maxiter, tol):
    y, A0, age0, I_ext = arrays["y"], arrays["A0"], arrays["age0"], arrays["I_ext"]

    def one(x0):
        def fun(u):
            return _loss_parts(from_vector(base, _from_box(u, lo, hi)), Z, y, A0, age0, I_ext, cfg).total, None

        u, f, n = bfgs_box(fun, _to_box(x0, lo, hi), maxiter=maxiter, tol=tol)
        return _from_box(u, lo, hi), f, n

    return jax.vmap(one)(x0s)


def fit_params_given_Z(
    data: MesoData,
    Z=None,
    *,
    key: jax.Array,
    n_starts: int = 5,
    n_iter: int = 300,
    tol: float = 1e-7,
    config: MesoConfig = MesoConfig(),
    model: MesoParams | None = None,
    reference: MesoParams | None = None,
    x0=None,
    truth: MesoParams | None = None,
) -> MesoFitResult:
    """The M-step given the latent activity: minimise :func:`~spikejax.meso.loss` over the 12 parameters in the box.

    With ``Z = data.Z`` (the default, the *true* activity) this is the information ceiling of the
    parameters: what a fit could reach if the population activity were observed. Projected BFGS
    with exact gradients (as the M-step of :func:`fit_em`, at most ``n_iter`` iterations) from
    ``n_starts`` uniform box draws (or ``x0``), vmapped; the start with the lowest objective wins.

    Returns a :class:`MesoFitResult` (``method="given_Z"``): ``model`` the best estimate, ``runs``
    per start ``x``, ``loss`` and ``n_accepted``.
    """
    key = check_key(key)
    if not isinstance(data, MesoData):
        raise TypeError(f"data must be a MesoData, got {type(data).__name__}")
    dtype = data.y.dtype
    base = model
    if base is None:
        base = dataclasses.replace(ground_truth(dtype=dtype), N=tuple(data.N))
    if tuple(base.N) != tuple(data.N):
        raise ConfigError(f"model.N {base.N} must equal data.N {data.N}")
    if Z is None:
        if data.Z is None:
            raise ConfigError("Z is required when the data hold no true activity")
        Z = data.Z
    Z = check_array(Z, "Z", (data.T, data.M), low=0.0, high=1.0).astype(dtype)
    n_starts = int(check_scalar(n_starts, "n_starts", low=1, integer=True))
    n_iter = int(check_scalar(n_iter, "n_iter", low=1, integer=True))
    check_scalar(tol, "tol", low=0.0, low_inclusive=False)
    lo, hi = box_bounds(reference)
    lo, hi = lo.astype(dtype), hi.astype(dtype)
    if x0 is None:
        x0s = sample_in_box(lo, hi, n_starts, key=key)
    else:
        x0s = check_array(x0, "x0", (None, 4 * data.M)).astype(dtype)
        for i in range(x0s.shape[0]):
            check_in_box(from_vector(base, x0s[i]), lo, hi, name=f"x0[{i}]")
    arrays = {"y": data.y, "A0": data.A0, "age0": data.age0, "I_ext": data.I_ext}
    t0 = time.perf_counter()
    xs, fs, ns = jax.device_get(_mstep_batch(x0s, Z, base, arrays, lo, hi, cfg=config, maxiter=n_iter,
                                             tol=float(tol)))
    seconds = time.perf_counter() - t0
    fs = np.asarray(fs)
    runs = {"x": np.asarray(xs), "loss": np.where(np.isfinite(fs), fs, np.inf), "n_accepted": np.asarray(ns),
            "Z": np.broadcast_to(np.asarray(Z), (fs.shape[0],) + tuple(Z.shape)).copy()}
    if truth is None and tuple(data.N) == (400, 400, 200):
        truth = ground_truth(dtype=dtype)
    return _make_result("given_Z", runs, seconds=seconds, x0=np.asarray(x0s), Z0=np.asarray(Z), base=base,
                        lo=np.asarray(lo), hi=np.asarray(hi), config=MesoFitConfig(method="hard", model=config),
                        truth_x=None if truth is None else np.asarray(to_vector(truth)))
