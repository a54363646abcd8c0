"""Population-based training (AutoLFADS) with the whole population in one compiled program.

Workers are the members of a :func:`spikejax.core.fit_population` run: stacked along a leading
axis, each with its own minibatch order, injected learning rate and ``HParams`` (array leaves of
shape (workers,)), trained by the same loss as :func:`spikejax.lfads.train` and validated after
every epoch inside the program, ``vmap``-ped and sharded over the local devices. One generation is
one chunk of ``epochs_per_generation`` epochs; exploit, explore and the stopping rule run in the
``between_chunks`` hook, changing array values only, so nothing recompiles between generations.

Between generations, on the host (spec §4):

* **exploit** (``exploit_method="binarytournament"``, lfads-torch): shuffle the workers, pair them,
  the loser of each pair copies the winner's weights, optimiser state, hyperparameters and
  smoothed metric; a NaN metric always loses.
* **explore** the losers' hyperparameters: ``explore_method="perturb"`` multiplies by
  ``1 + 2·p·u``, ``u ~ U(-½, ½)``, ``|u| >= 0.001`` (factor in ``(1 - p, 1 + p)``, p =
  ``explore_param``), clipped to the range when ``enforce_limits``, else kept >= 0;
  ``"resample"`` redraws from the initial distribution with probability ``resample_prob``.
* **stop** (improvement-ratio stopper): after the burn-in, record the population best each
  generation; with ``num_no_best_to_stop`` = N records, stop when
  ``(best N generations ago − best now) / mean(|last N bests|) <= percent_change_to_stop``
  (a fraction, 5e-4 as in lfads-torch), or after ``max_generations``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError
from ..core.population import fit_population
from ..core.sweep import stack
from .data import check_dataset
from .loss import lfads_loss
from .model import LFADS, HParams, LFADSConfig
from .train import TrainConfig, _compiled, _fit_loss, device_splits

__all__ = ["SearchParam", "PBTConfig", "PBTResult", "DEFAULT_SEARCH_SPACE", "pbt", "perturb", "explore_value", "exploit_binary_tournament",
           "improvement_ratio_stop"]


@dataclasses.dataclass(frozen=True)
class SearchParam:
    """One searched hyperparameter (pbt_opt ``add_hp`` vocabulary).

    ``name``: ``lr_init`` or an :class:`HParams` field. ``low``/``high``: range. ``sampling``:
    ``"logrand"`` or ``"rand"`` (initial distribution). ``init``: fixed initial value (else sampled).
    ``explore_param``: perturbation width p (``None``: the PBT config's). ``enforce_limits``: clip
    explored values to the range. ``explore_method``: ``None`` (the config's), ``"perturb"`` or
    ``"resample"``.
    """

    name: str
    low: float
    high: float
    sampling: str = "logrand"
    init: float | None = None
    explore_param: float | None = None
    enforce_limits: bool = True
    explore_method: str | None = None

    def __post_init__(self):
        if not (self.low <= self.high):
            raise ConfigError(f"search range of {self.name!r}: need low <= high, got [{self.low}, {self.high}]")
        if self.sampling not in ("logrand", "rand"):
            raise ConfigError(f"sampling of {self.name!r} must be 'logrand' or 'rand', got {self.sampling!r}")
        if self.sampling == "logrand" and self.low <= 0:
            raise ConfigError(f"log-uniform sampling of {self.name!r} needs low > 0, got {self.low}")
        if self.init is not None and not (self.low <= self.init <= self.high):
            raise ConfigError(f"init of {self.name!r} ({self.init}) lies outside [{self.low}, {self.high}]")
        if self.explore_method not in (None, "perturb", "resample"):
            raise ConfigError(f"explore_method of {self.name!r} must be 'perturb' or 'resample'")
        if self.name != "lr_init" and self.name not in HParams.__dataclass_fields__:
            raise ConfigError(f"unknown searched hyperparameter {self.name!r}; use lr_init or one of "
                              f"{sorted(HParams.__dataclass_fields__)}")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.sampling == "logrand":
            return np.exp(rng.uniform(math.log(self.low), math.log(self.high), n))
        return rng.uniform(self.low, self.high, n)


#: The AutoLFADS search space (lfads-torch / autolfads-tf2 / NLB'21, spec §4.1).
DEFAULT_SEARCH_SPACE = (
    SearchParam("lr_init", 1e-5, 5e-3, "logrand", init=4e-3, explore_param=0.3, enforce_limits=True),
    SearchParam("dropout_rate", 0.0, 0.6, "rand", explore_param=0.3, enforce_limits=True),
    SearchParam("cd_rate", 0.01, 0.7, "rand", init=0.5, explore_param=0.3, enforce_limits=True),
    SearchParam("kl_co_scale", 1e-6, 1e-4, "logrand", explore_param=0.8, enforce_limits=False),
    SearchParam("kl_ic_scale", 1e-6, 1e-3, "logrand", explore_param=0.8, enforce_limits=False),
    SearchParam("l2_gen_scale", 1e-4, 1.0, "logrand", explore_param=0.8, enforce_limits=False),
    SearchParam("l2_con_scale", 1e-4, 1.0, "logrand", explore_param=0.8, enforce_limits=False),
)


@dataclasses.dataclass(frozen=True)
class PBTConfig:
    """PBT settings in the pbt_opt / lfads-torch vocabulary (spec §4)."""

    num_workers: int = 20
    epochs_per_generation: int = 25
    max_generations: int = 40
    burn_in_epochs: int | None = None  # default: end of the KL/L2 ramps + one generation
    num_no_best_to_stop: int = 4
    percent_change_to_stop: float = 5e-4
    exploit_method: str = "binarytournament"
    explore_method: str = "perturb"
    explore_param: float = 0.8
    resample_prob: float = 1.0
    metric: str = "valid/recon_smth"  # or "valid/recon_heldout" (sample validation, RADICaL era)
    smoothing: float = 0.7
    shard: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.num_workers < 2:
            raise ConfigError(f"num_workers must be >= 2, got {self.num_workers}")
        if self.epochs_per_generation < 1 or self.max_generations < 1 or self.num_no_best_to_stop < 1:
            raise ConfigError("epochs_per_generation, max_generations and num_no_best_to_stop must be >= 1")
        if self.exploit_method != "binarytournament":
            raise ConfigError(f"exploit_method must be 'binarytournament', got {self.exploit_method!r}")
        if self.explore_method not in ("perturb", "resample"):
            raise ConfigError(f"explore_method must be 'perturb' or 'resample', got {self.explore_method!r}")
        if not 0 < self.explore_param < 1:
            raise ConfigError(f"explore_param must be in (0, 1), got {self.explore_param}")
        if self.metric not in ("valid/recon_smth", "valid/recon_heldout"):
            raise ConfigError(f"metric must be 'valid/recon_smth' or 'valid/recon_heldout', got {self.metric!r}")
        if self.percent_change_to_stop < 0:
            raise ConfigError("percent_change_to_stop must be >= 0")


@dataclasses.dataclass
class PBTResult:
    """Outcome of :func:`pbt`: best model, its hyperparameters, per-generation records, the population."""

    model: LFADS
    hp: HParams
    lr: float
    best_worker: int
    history: dict[str, np.ndarray]
    n_generations: int
    stop_reason: str
    seconds: float
    population: Any = None


def perturb(value: float, p: float, rng: np.random.Generator, *, low: float | None = None, high: float | None = None,
            enforce_limits: bool = True) -> float:
    """pbt_opt perturbation: ``value · (1 + 2·p·u)``, ``u ~ U(-½, ½)``, ``|u| >= 0.001``; clipped when enforced."""
    while True:
        u = rng.uniform(-0.5, 0.5)
        if abs(u) >= 0.001:
            break
    new = value * (1.0 + 2.0 * p * u)
    if enforce_limits and low is not None:
        new = min(max(new, low), high)
    return max(new, 0.0)


def explore_value(param: SearchParam, old: float, pc: PBTConfig, rng: np.random.Generator) -> float:
    """New value of one searched hyperparameter of an exploiting worker (its own or the config's method)."""
    method = param.explore_method or pc.explore_method
    p = param.explore_param if param.explore_param is not None else pc.explore_param
    if method == "perturb":
        new = perturb(old, p, rng, low=param.low, high=param.high, enforce_limits=param.enforce_limits)
    else:
        new = float(param.sample(rng, 1)[0]) if rng.random() < pc.resample_prob else old
    if param.name in ("dropout_rate", "cd_rate", "cd_pass_rate"):
        new = min(new, 0.99)
    return float(new)


def exploit_binary_tournament(metric: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Source index for every worker: losers of random pairs take their winner's index (min is better)."""
    n = len(metric)
    src = np.arange(n)
    perm = rng.permutation(n)
    score = np.where(np.isfinite(metric), metric, np.inf)
    for a, b in zip(perm[0::2], perm[1::2]):
        if score[b] < score[a]:
            src[a] = b
        else:
            src[b] = a
    return src


def improvement_ratio_stop(bests: list[float], patience: int, threshold: float) -> bool:
    """lfads-torch ``ImprovementRatioStopper``: stop when the last ``patience`` bests improved too little."""
    if len(bests) < patience:
        return False
    w = np.asarray(bests[-patience:], dtype=float)
    denom = np.mean(np.abs(w))
    if not np.isfinite(denom) or denom == 0:
        return False
    return (w[0] - w.min()) / denom <= threshold


def _hp_get(hp_stack: HParams, lr, name):
    return np.asarray(lr if name == "lr_init" else getattr(hp_stack, name), dtype=float)


def pbt(model_config: LFADSConfig, train_data: dict[str, Any], valid_data: dict[str, Any], *,
        hp: HParams | None = None, train_config: TrainConfig | None = None, pbt_config: PBTConfig | None = None,
        search_space=DEFAULT_SEARCH_SPACE, key: jax.Array, sbtt: bool = False, callback=None,
        progress: bool = False) -> PBTResult:
    """Run synchronous PBT of ``num_workers`` LFADS models in one vmapped (and sharded) program.

    The population trains on :func:`spikejax.core.fit_population` (one chunk of epochs = one
    generation; each worker its own minibatch order, learning rate and hyperparameters); exploit,
    explore and the stopping rule run in its ``between_chunks`` hook.

    Parameters
    ----------
    model_config : LFADSConfig shared by all workers (sizes cannot be searched).
    train_data, valid_data : split dicts (see :func:`spikejax.lfads.train`).
    hp : base HParams (searched fields are overwritten per worker).
    train_config : optimiser settings; ``lr_init`` is searched when in the search space, the plateau
        LR scheduler is off under PBT (PBT owns the learning rate).
    pbt_config : PBTConfig.
    search_space : sequence of :class:`SearchParam`.
    key : PRNG key (model inits, minibatches, posterior samples).
    callback : ``callback(generation, record) -> stop?``.

    Returns
    -------
    PBTResult (best worker by the final metric).
    """
    tc = train_config or TrainConfig()
    pc = pbt_config or PBTConfig()
    base = hp if hp is not None else HParams.create()
    names = [s.name for s in search_space]
    if len(set(names)) != len(names):
        raise ConfigError(f"search_space names must be unique, got {names}")
    check_dataset(train_data, model_config, sbtt=sbtt, name="train_data")
    check_dataset(valid_data, model_config, sbtt=sbtt, name="valid_data")
    if pc.metric == "valid/recon_heldout" and tc.sv_rate <= 0:
        raise ConfigError("metric 'valid/recon_heldout' needs sample validation: set TrainConfig.sv_rate > 0")
    rng = np.random.default_rng(pc.seed)
    W = pc.num_workers
    E = pc.epochs_per_generation
    k_init, k_run = jax.random.split(key)
    models = [LFADS(model_config, key=k) for k in jax.random.split(k_init, W)]
    dtype = models[0].ic_prior_mean.dtype
    static = eqx.partition(models[0], eqx.is_inexact_array)[1]

    # initial hyperparameters (array leaves of shape (W,): exploit/explore never recompiles)
    init_vals = {}
    for s in search_space:
        init_vals[s.name] = np.full(W, s.init, float) if s.init is not None else s.sample(rng, W)
    hp_stack = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (W,)), base)
    for n_, v in init_vals.items():
        if n_ != "lr_init":
            hp_stack = eqx.tree_at(lambda h: getattr(h, n_), hp_stack, jnp.asarray(v, dtype))
    lr = init_vals.get("lr_init", np.full(W, tc.lr_init))
    optimizer, _ = _compiled(model_config, (tc.max_grad_norm, tc.adam_beta1, tc.adam_beta2, tc.adam_epsilon))

    tr, va = device_splits(train_data, valid_data, dtype, tc)
    n_train = tr["data"].shape[0]
    bs = min(tc.batch_size, n_train)
    n_batches = max(n_train // bs, 1)
    hp_keys = [n_ for n_ in names if n_ != "lr_init"]
    ramp_end = float(max(float(base.kl_start_epoch) + float(base.kl_increase_epoch),
                         float(base.l2_start_epoch) + float(base.l2_increase_epoch)))
    burn_in = pc.burn_in_epochs if pc.burn_in_epochs is not None else int(ramp_end) + E
    records: dict[str, list] = {"generation": [], "epoch": [], "metric": [], "best": [], "source": [],
                                "train_loss": []}
    for n_ in names:
        records[f"hp/{n_}"] = []
    bests: list[float] = []
    stop_reason = ["max_generations"]

    def between_generations(state, history):
        """Record the generation, test the stopping rule, then exploit (binary tournament) and explore."""
        epoch = state.epoch
        gen = epoch // E
        if pc.metric == "valid/recon_smth":
            metric = np.asarray(state.val_smth, float).copy()
        else:
            metric = np.asarray(history["val/recon_heldout"][epoch - 1], float)
        lr_now = np.asarray(state.hyperparam("learning_rate"), float)
        hp_now = state.args[0]
        records["generation"].append(gen)
        records["epoch"].append(epoch)
        records["metric"].append(metric.tolist())
        records["train_loss"].append(np.asarray(history["loss"][epoch - 1], float).tolist())
        for n_ in names:
            records[f"hp/{n_}"].append(_hp_get(hp_now, lr_now, n_).tolist())
        best_now = float(np.nanmin(metric)) if np.isfinite(metric).any() else math.inf
        records["best"].append(best_now)
        stop = False
        if epoch >= burn_in:
            bests.append(best_now)
            if improvement_ratio_stop(bests, pc.num_no_best_to_stop, pc.percent_change_to_stop):
                stop, stop_reason[0] = True, "improvement_ratio"
        if callback is not None and callback(gen, {k: v[-1] for k, v in records.items()}):
            stop, stop_reason[0] = True, "callback"
        if stop or gen >= pc.max_generations:
            records["source"].append(list(range(W)))
            return state.stop() if stop else None
        # exploit: losers copy their winner (weights, optimiser state, hyperparameters, smoothed metric)
        src = exploit_binary_tournament(metric, rng)
        records["source"].append(src.tolist())
        state = state.take(src)
        lr_new = np.asarray(state.hyperparam("learning_rate"), float).copy()
        hp_src = state.args[0]
        hp_new = {n_: np.asarray(getattr(hp_src, n_), float).copy() for n_ in hp_keys}
        # explore the losers' hyperparameters
        for w in np.flatnonzero(src != np.arange(W)):
            for s in search_space:
                new = explore_value(s, lr_new[w] if s.name == "lr_init" else hp_new[s.name][w], pc, rng)
                if s.name == "lr_init":
                    lr_new[w] = new
                else:
                    hp_new[s.name][w] = new
        for n_ in hp_keys:
            hp_src = eqx.tree_at(lambda h: getattr(h, n_), hp_src, jnp.asarray(hp_new[n_], dtype))
        state = dataclasses.replace(state, args=(hp_src, state.args[1]))
        return state.with_hyperparam("learning_rate", lr_new)

    t0 = time.perf_counter()
    res = fit_population(
        stack(models), _fit_loss, tr, optimizer=optimizer, key=k_run, n_epochs=E * pc.max_generations,
        batch_size=bs, shared_batches=False, has_aux=True, with_step=True,
        args=(hp_stack, jnp.full((W,), n_batches, jnp.int32)),
        hyperparams={"learning_rate": lr, "weight_decay": tc.weight_decay},
        val_fn=_pbt_val, val_data=va, val_smoothing=pc.smoothing, nan_guard=False,
        epochs_per_chunk=E, between_chunks=between_generations, shard=pc.shard, progress=progress, desc="lfads pbt",
    )
    final_metric = np.asarray(records["metric"][-1])
    best_w = int(np.nanargmin(np.where(np.isfinite(final_metric), final_metric, np.inf)))
    params = eqx.filter(res.population, eqx.is_inexact_array)
    hp_final = res.state.args[0]
    lr_final = np.asarray(res.state.hyperparam("learning_rate"), float)
    best_params = jax.tree_util.tree_map(lambda a: a[best_w], params)
    best_hp = jax.tree_util.tree_map(lambda a: a[best_w], hp_final)
    hist = {k: np.asarray(v) for k, v in records.items()}
    return PBTResult(eqx.combine(best_params, static), best_hp, float(lr_final[best_w]), best_w,
                     hist, len(records["generation"]), stop_reason[0], time.perf_counter() - t0,
                     population={"params": params, "opt_state": res.state.opt_state, "hp": hp_final, "static": static})


def _pbt_val(model, data, key, *, step, args):
    """Validation of one worker after an epoch (posterior samples, no dropout): recon and held-out recon."""
    hp, steps_per_epoch = args
    epoch = (step // steps_per_epoch - 1).astype(model.ic_prior_mean.dtype)
    _, aux = lfads_loss(model, data, hp, epoch, key=jax.random.fold_in(key, 7), training=False)
    return {"val": aux["recon"], "recon_heldout": aux["recon_heldout"]}
