"""Population-based training (AutoLFADS) with the whole population in one compiled program.

Workers are the members of a :func:`spikejax.core.fit_population` run: stacked along a leading
axis, each with its own minibatch order, injected learning rate and ``HParams`` (array leaves of
shape (workers,)), trained by the same loss as :func:`spikejax.lfads.train` and validated after
every epoch inside the program, ``vmap``-ped and sharded over the devices (every process's after
``jax.distributed.initialize()``: docs/howto/distributed.md). One generation is
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
  generation; with ``n_no_best_to_stop`` = N records, stop when
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

from ..core.config import Config, option
from ..core.errors import ConfigError
from ..core.population import fit_population
from ..core.random import check_key
from ..core.sweep import stack
from .data import check_dataset
from .model import LFADS, HParams, LFADSConfig
from .objective import loss_terms
from .records import LFADSPBTResult, _stop
from .rng import numpy_seed
from .training import TrainConfig, _compiled, _fit_loss, device_splits, sv_seed

__all__ = ["SearchParam", "PBTConfig", "DEFAULT_SEARCH_SPACE", "pbt", "perturb", "explore_value", "exploit_binary_tournament",
           "improvement_ratio_stop"]


@dataclasses.dataclass(frozen=True)
class SearchParam(Config):
    """One searched hyperparameter (pbt_opt ``add_hp`` vocabulary).

    ``name``: ``learning_rate`` or an :class:`HParams` field. ``low``/``high``: range. ``sampling``:
    ``"logrand"`` or ``"rand"`` (initial distribution). ``init``: fixed initial value (else sampled).
    ``explore_param``: perturbation width p (``None``: the PBT config's). ``enforce_limits``: clip
    explored values to the range. ``explore_method``: ``None`` (the config's), ``"perturb"`` or
    ``"resample"``.
    """

    name: str = option(help="learning_rate or an HParams field")
    low: float = option(help="lower end of the range")
    high: float = option(help="upper end of the range")
    sampling: str = option("logrand", choices=("logrand", "rand"), help="initial distribution")
    init: float | None = option(None, help="fixed initial value (else sampled)")
    explore_param: float | None = option(None, gt=0, lt=1, help="perturbation width (None: the PBT config's)")
    enforce_limits: bool = option(True, help="clip explored values to the range")
    explore_method: str | None = option(None, choices=(None, "perturb", "resample"),
                                        help="None (the PBT config's), perturb or resample")

    def validate(self) -> None:
        if self.name == "lr_init":
            raise self.error("name", "'lr_init' was renamed: use 'learning_rate'")
        if self.name != "learning_rate" and self.name not in HParams.__dataclass_fields__:
            raise self.error("name", f"{self.name!r} is an unknown searched hyperparameter; use learning_rate or one "
                             f"of {sorted(HParams.__dataclass_fields__)}")
        if not (self.low <= self.high):
            raise self.error("low", f"search range of {self.name!r}: need low <= high, got [{self.low}, {self.high}]")
        if self.sampling == "logrand" and self.low <= 0:
            raise self.error("low", f"log-uniform sampling of {self.name!r} needs low > 0, got {self.low}")
        if self.init is not None and not (self.low <= self.init <= self.high):
            raise self.error("init", f"of {self.name!r} ({self.init}) lies outside [{self.low}, {self.high}]")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.sampling == "logrand":
            return np.exp(rng.uniform(math.log(self.low), math.log(self.high), n))
        return rng.uniform(self.low, self.high, n)


#: The AutoLFADS search space (lfads-torch / autolfads-tf2 / NLB'21, spec §4.1).
DEFAULT_SEARCH_SPACE = (
    SearchParam("learning_rate", 1e-5, 5e-3, "logrand", init=4e-3, explore_param=0.3, enforce_limits=True),
    SearchParam("dropout_rate", 0.0, 0.6, "rand", explore_param=0.3, enforce_limits=True),
    SearchParam("cd_rate", 0.01, 0.7, "rand", init=0.5, explore_param=0.3, enforce_limits=True),
    SearchParam("kl_co_scale", 1e-6, 1e-4, "logrand", explore_param=0.8, enforce_limits=False),
    SearchParam("kl_ic_scale", 1e-6, 1e-3, "logrand", explore_param=0.8, enforce_limits=False),
    SearchParam("l2_gen_scale", 1e-4, 1.0, "logrand", explore_param=0.8, enforce_limits=False),
    SearchParam("l2_con_scale", 1e-4, 1.0, "logrand", explore_param=0.8, enforce_limits=False),
)


@dataclasses.dataclass(frozen=True)
class PBTConfig(Config):
    """PBT settings in the pbt_opt / lfads-torch vocabulary (spec §4). The host-side random numbers
    (initial values, pairings, perturbations) come from the ``key`` of :func:`pbt`."""

    n_workers: int = option(20, ge=2, help="population size")
    epochs_per_generation: int = option(25, ge=1, help="epochs between exploit/explore steps", unit="epochs")
    max_generations: int = option(40, ge=1, help="generations at most")
    burn_in_epochs: int | None = option(None, ge=0, unit="epochs",
                                        help="epochs before the stopper counts (default: end of the ramps + one generation)")
    n_no_best_to_stop: int = option(4, ge=1, help="generations in the improvement-ratio window")
    percent_change_to_stop: float = option(5e-4, ge=0, help="stop below this relative improvement (a fraction)")
    exploit_method: str = option("binarytournament", choices=("binarytournament",), help="exploit rule")
    explore_method: str = option("perturb", choices=("perturb", "resample"), help="explore rule")
    explore_param: float = option(0.8, gt=0, lt=1, help="perturbation width p")
    resample_prob: float = option(1.0, ge=0, le=1, help="probability of a resample (explore_method='resample')")
    metric: str = option("valid/recon_smth", choices=("valid/recon_smth", "valid/recon_heldout"),
                         help="the metric that ranks workers")
    smoothing: float = option(0.7, gt=0, le=1, help="weight of the newest validation recon in its smoothing")
    shard: bool = option(True, help="shard the population over the devices (all processes' after jax.distributed.initialize())")


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
    return np.asarray(lr if name == "learning_rate" else getattr(hp_stack, name), dtype=float)


def pbt(model_config: LFADSConfig, train_data: dict[str, Any], valid_data: dict[str, Any], *,
        hp: HParams | None = None, train_config: TrainConfig | None = None, pbt_config: PBTConfig | None = None,
        search_space=DEFAULT_SEARCH_SPACE, key: jax.Array, sbtt: bool = False, callback=None,
        progress: bool = False) -> LFADSPBTResult:
    """Run synchronous PBT of ``n_workers`` LFADS models in one vmapped (and sharded) program.

    The population trains on :func:`spikejax.core.fit_population` (one chunk of epochs = one
    generation; each worker its own minibatch order, learning rate and hyperparameters); exploit,
    explore and the stopping rule run in its ``between_chunks`` hook.

    Parameters
    ----------
    model_config : LFADSConfig shared by all workers (sizes cannot be searched).
    train_data, valid_data : split dicts (see :func:`spikejax.lfads.train`).
    hp : base HParams (searched fields are overwritten per worker).
    train_config : optimiser settings; ``learning_rate`` is searched when in the search space, the plateau
        LR scheduler is off under PBT (PBT owns the learning rate).
    pbt_config : PBTConfig.
    search_space : sequence of :class:`SearchParam`.
    key : PRNG key (model inits, minibatches, posterior samples, and the host-side initial values,
        pairings and perturbations).
    callback : ``callback(generation, record) -> stop?``.

    Returns
    -------
    LFADSPBTResult (best worker by the final metric).
    """
    key = check_key(key)
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
    rng = np.random.default_rng(numpy_seed(key))
    W = pc.n_workers
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
        if n_ != "learning_rate":
            hp_stack = eqx.tree_at(lambda h: getattr(h, n_), hp_stack, jnp.asarray(v, dtype))
    lr = init_vals.get("learning_rate", np.full(W, tc.learning_rate))
    optimizer, _ = _compiled(model_config, (tc.max_grad_norm, tc.adam_beta1, tc.adam_beta2, tc.adam_epsilon))

    tr, va = device_splits(train_data, valid_data, dtype, tc, seed=sv_seed(key))
    n_train = tr["data"].shape[0]
    bs = min(tc.batch_size, n_train)
    n_batches = max(n_train // bs, 1)
    hp_keys = [n_ for n_ in names if n_ != "learning_rate"]
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
            if improvement_ratio_stop(bests, pc.n_no_best_to_stop, pc.percent_change_to_stop):
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
                new = explore_value(s, lr_new[w] if s.name == "learning_rate" else hp_new[s.name][w], pc, rng)
                if s.name == "learning_rate":
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
    history, workers = pbt_tables(records, names)
    return LFADSPBTResult(model=eqx.combine(best_params, static), history=history, stop_reason=_stop(stop_reason[0]),
                          seconds=max(time.perf_counter() - t0, 1e-9), workers=workers, hp=best_hp,
                          learning_rate=float(lr_final[best_w]), best_worker=best_w,
                          n_generations=len(records["generation"]), population=eqx.combine(params, static),
                          model_config=model_config, pbt_config=pc)


def pbt_tables(records: dict[str, list], names) -> tuple[Any, Any]:
    """(history: one row per generation, workers: one row per generation and worker) from the records."""
    import pandas as pd

    history = pd.DataFrame({k: np.asarray(records[k]) for k in ("generation", "epoch", "best")})
    rows = []
    for i, gen in enumerate(records["generation"]):
        for w, m in enumerate(records["metric"][i]):
            row = {"generation": gen, "worker": w, "metric": m, "train_loss": records["train_loss"][i][w],
                   "source": records["source"][i][w]}
            row.update({f"hp/{n_}": records[f"hp/{n_}"][i][w] for n_ in names})
            rows.append(row)
    cols = ["generation", "worker", "metric", "train_loss", "source"] + [f"hp/{n_}" for n_ in names]
    return history, pd.DataFrame(rows, columns=cols)


def _pbt_val(model, data, key, *, step, args):
    """Validation of one worker after an epoch (posterior samples, no dropout): recon and held-out recon."""
    hp, steps_per_epoch = args
    epoch = (step // steps_per_epoch - 1).astype(model.ic_prior_mean.dtype)
    _, aux = loss_terms(model, data, hp, epoch, key=jax.random.fold_in(key, 7), training=False)
    return {"val": aux["recon"], "recon_heldout": aux["recon_heldout"]}
