"""Optional Ray Tune backend for LFADS PBT across processes or hosts (extra ``ray``).

:func:`pbt_ray` runs the same search as :func:`spikejax.lfads.pbt` — same :class:`PBTConfig`
vocabulary (``n_workers``, ``epochs_per_generation``, ``max_generations``, ``explore_method``,
``explore_param``, ``n_no_best_to_stop``, ``percent_change_to_stop``, burn-in) and the same
:class:`SearchParam` search space — but with one Ray Tune trial per worker, so the population can
span several machines (``ray.init(address=...)`` before the call, or ``address=``). Each trial
trains one LFADS model on :func:`spikejax.core.fit` with the loss of :func:`spikejax.lfads.train`,
reports the smoothed validation recon once per generation and checkpoints its parameters and
optimiser state (so exploit copies both).

Mapping onto Ray Tune (``PopulationBasedTraining``, ``synch=True``, one perturbation per
generation):

* exploit: binary tournament (random pairs of live trials; each loser restores its own winner's
  checkpoint and hyperparameters), as lfads-torch's ``BinaryTournamentPBT``. Unlike the vmapped
  :func:`pbt`, trials whose metric is NaN sit out the tournament (Ray drops them).
* explore: the pbt_opt perturbation / resampling of :func:`spikejax.lfads.explore_value` applied
  to the winner's values (a ``custom_explore_fn``; Ray's own mutations are not used).
* stop: the improvement-ratio stopper of :func:`spikejax.lfads.improvement_ratio_stop` on the
  population best per generation after the burn-in, or ``max_generations``.

Randomness in Ray's scheduling (pairing, trial order) is not seeded, so runs are not bit-for-bit
reproducible the way the vmapped :func:`pbt` is. Use :func:`pbt` on one machine; use this when
the population does not fit on one.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..core.errors import ConfigError, DataFormatError
from ..core.random import check_key
from ..core.training import fit, load_checkpoint, save_checkpoint
from .data import check_dataset
from .model import LFADS, HParams, LFADSConfig
from .objective import loss_terms
from .population import DEFAULT_SEARCH_SPACE, PBTConfig, explore_value, improvement_ratio_stop
from .records import LFADSPBTResult, _stop
from .rng import numpy_seed
from .training import TrainConfig, device_splits, make_eval_fn, make_optimizer, set_lr, sv_seed

__all__ = ["pbt_ray"]


def _import_ray():
    try:
        import ray
        from ray import tune
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the Ray Tune PBT backend needs Ray: pip install 'spikejax[ray]'") from exc
    return ray, tune


def _initial_values(search_space, pc: PBTConfig, tc: TrainConfig, seed: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    cols = {s.name: (np.full(pc.n_workers, s.init, float) if s.init is not None else s.sample(rng, pc.n_workers))
            for s in search_space}
    rows = [{k: float(v[w]) for k, v in cols.items()} for w in range(pc.n_workers)]
    for w, r in enumerate(rows):
        r.setdefault("learning_rate", tc.learning_rate)
        r["_worker"] = w
    return rows


def _explore_fn(search_space, pc: PBTConfig, seed: int):
    rng = np.random.default_rng(seed + 1)

    def explore(config: dict) -> dict:
        hp = dict(config["hp"])
        for s in search_space:
            hp[s.name] = explore_value(s, hp[s.name], pc, rng)
        return {**config, "hp": hp}

    return explore


@functools.lru_cache(maxsize=4)
def _worker_fns(model_config: LFADSConfig, tc: TrainConfig):
    """The optimiser and jitted validation shared by the trial's generations (so :func:`spikejax.core.fit`
    reuses its compiled program from one generation to the next)."""
    static = eqx.partition(LFADS(model_config, key=jax.random.PRNGKey(0)), eqx.is_inexact_array)[1]
    return make_optimizer(tc), jax.jit(make_eval_fn(static))


def _trial_loss(model, batch, key, *, step, args):
    """The LFADS training loss of a trial's generation; ``args`` = (hp, steps per epoch, first epoch)."""
    hp, steps_per_epoch, epoch0 = args
    epoch = (epoch0 + step // steps_per_epoch).astype(model.ic_prior_mean.dtype)
    return loss_terms(model, batch, hp, epoch, key=key, training=True)


def _train_generation(model, opt_state, hp, tr, va, epoch0: int, smth, key, tc: TrainConfig, pc: PBTConfig):
    """One generation of one trial on :func:`spikejax.core.fit`: ``epochs_per_generation`` epochs from
    epoch ``epoch0`` (KL/L2 ramps continue), the validation recon after each, smoothed on from ``smth``."""
    optimizer, eval_fn = _worker_fns(model.config, tc)
    dtype = model.ic_prior_mean.dtype
    n_train = tr["data"].shape[0]
    bs = min(tc.batch_size, n_train)
    n_batches = max(n_train // bs, 1)
    k_val = jax.random.fold_in(key, 7)

    def val_fn(m, *, step):
        e = jnp.asarray(epoch0 + step // n_batches - 1, dtype)
        return {"val": eval_fn(eqx.filter(m, eqx.is_inexact_array), hp, va, e, k_val)["recon"]}

    res = fit(model, _trial_loss, tr, optimizer=optimizer, key=jax.random.fold_in(key, epoch0),
              n_epochs=pc.epochs_per_generation, batch_size=bs, has_aux=True, with_step=True,
              args=(hp, jnp.asarray(n_batches), jnp.asarray(epoch0)), opt_state=opt_state, val_fn=val_fn,
              nan_guard=False, progress=False, desc="lfads pbt trial")
    for rec in res.curves["val"]:
        smth = float(rec) if smth is None else (1 - pc.smoothing) * smth + pc.smoothing * float(rec)
    return res.model, res.opt_state, float(res.curves["loss"][-1]), smth


def _worker(config: dict, payload: dict) -> None:
    """One Ray Tune trial: train one LFADS model, report the smoothed validation recon per generation."""
    _, tune = _import_ray()
    cfg, tc, pc = payload["model_config"], payload["train_config"], payload["pbt_config"]
    vals = config["hp"]
    root = jnp.asarray(payload.get("key", (0, 0)), jnp.uint32)  # the caller's key (raw words)
    model = LFADS(cfg, key=jax.random.fold_in(root, int(vals["_worker"])))
    dtype = model.ic_prior_mean.dtype
    params, static = eqx.partition(model, eqx.is_inexact_array)
    tr, va = device_splits(payload["train"], payload["valid"], dtype, tc, seed=payload.get("sv_seed", 0))
    optimizer, _ = _worker_fns(cfg, tc)
    opt_state = optimizer.init(params)
    epoch, smth = 0, None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:  # first start after an exploit: the winner's weights and optimiser state
        with ckpt.as_directory() as d:
            found = load_checkpoint(d, (params, opt_state))
        if found is None:
            raise DataFormatError("the Ray Tune checkpoint handed to this trial holds no spikejax checkpoint")
        _, (params, opt_state), meta = found
        epoch, smth = meta["epoch"], meta["smth"]
    opt_state = set_lr(opt_state, vals["learning_rate"])
    hp = HParams.create(**{**payload["base_hp"], **{k: v for k, v in vals.items() if k in payload["base_hp"]}},
                        dtype=dtype)
    trial_id = tune.get_context().get_trial_id() or str(vals["_worker"])
    key = jax.random.fold_in(jax.random.fold_in(root, 1_000_003), zlib.crc32(trial_id.encode()) & 0x7FFFFFFF)
    model = eqx.combine(params, static)
    while True:
        model, opt_state, loss, smth = _train_generation(model, opt_state, hp, tr, va, epoch, smth, key, tc, pc)
        epoch += pc.epochs_per_generation
        metric = smth if math.isfinite(smth) else float("nan")
        with tempfile.TemporaryDirectory() as d:
            # core's checkpoint writer (atomic, resumable by load_checkpoint), in the folder Ray Tune keeps
            save_checkpoint(d, epoch, (eqx.filter(model, eqx.is_inexact_array), opt_state), {"epoch": epoch, "smth": metric})
            tune.report({"metric": metric, "epoch": epoch, "train_loss": loss},
                        checkpoint=tune.Checkpoint.from_directory(d))


def _binary_tournament_scheduler(tune, **kw):
    from ray.tune.schedulers import PopulationBasedTraining

    class BinaryTournamentPBT(PopulationBasedTraining):
        """Losers of random pairs restore their own winner (lfads-torch's BinaryTournamentPBT idea)."""

        _pairs: dict = {}

        def _quantiles(self):
            live = [t for t, st in self._trial_state.items()
                    if st.last_score is not None and not math.isnan(st.last_score) and not t.is_finished()]
            if len(live) <= 1:
                return [], []
            order = np.random.default_rng().permutation(len(live))
            live = [live[i] for i in order]
            losers, winners = [], []
            for a, b in zip(live[0::2], live[1::2]):  # Ray's last_score: higher is better
                w, lo = (a, b) if self._trial_state[a].last_score >= self._trial_state[b].last_score else (b, a)
                winners.append(w)
                losers.append(lo)
            self._pairs = dict(zip(losers, winners))
            return losers, winners

        def _checkpoint_or_exploit(self, trial, controller, upper_quantile, lower_quantile):
            if trial in lower_quantile:
                upper_quantile = [self._pairs[trial]]
            return super()._checkpoint_or_exploit(trial, controller, upper_quantile, lower_quantile)

    return BinaryTournamentPBT(time_attr="training_iteration", metric="metric", mode="min", perturbation_interval=1,
                               synch=True, quantile_fraction=0.5, resample_probability=0.0, **kw)


def _make_stopper(tune, pc: PBTConfig, burn_in_generations: int):
    """Improvement-ratio stopper on the population best per generation (after burn-in), or max_generations."""

    class ImprovementRatioStopper(tune.Stopper):
        def __init__(self):
            self.by_gen: dict[int, list[float]] = {}
            self.bests: list[float] = []
            self.records: list[tuple[int, float]] = []
            self.reason = "max_generations"
            self._stop = False

        def __call__(self, trial_id, result) -> bool:
            g = int(result["training_iteration"])
            self.by_gen.setdefault(g, []).append(float(result["metric"]))
            if len(self.by_gen[g]) == pc.n_workers and all(r[0] != g for r in self.records):
                best = float(np.nanmin(self.by_gen[g])) if np.isfinite(self.by_gen[g]).any() else math.inf
                self.records.append((g, best))
                if g > burn_in_generations:
                    self.bests.append(best)
                    if improvement_ratio_stop(self.bests, pc.n_no_best_to_stop, pc.percent_change_to_stop):
                        self._stop, self.reason = True, "improvement_ratio"
            return g >= pc.max_generations

        def stop_all(self) -> bool:
            return self._stop

    return ImprovementRatioStopper()


def pbt_ray(model_config: LFADSConfig, train_data: dict[str, Any], valid_data: dict[str, Any], *,
            hp: HParams | None = None, train_config: TrainConfig | None = None, pbt_config: PBTConfig | None = None,
            search_space=DEFAULT_SEARCH_SPACE, key: jax.Array, sbtt: bool = False, cpus_per_worker: float = 1.0,
            gpus_per_worker: float = 0.0, storage_path: str | Path | None = None, address: str | None = None,
            verbose: int = 0) -> LFADSPBTResult:
    """Run LFADS PBT with Ray Tune, one trial per worker (see the module docstring).

    Parameters
    ----------
    model_config, train_data, valid_data, hp, train_config, pbt_config, search_space, sbtt
        As for :func:`spikejax.lfads.pbt` (``pbt_config.metric`` must be ``"valid/recon_smth"``).
    key
        PRNG key (model inits, minibatches, posterior samples, initial values and perturbations;
        Ray's own pairing order is not seeded).
    cpus_per_worker, gpus_per_worker
        Ray resources per trial (lfads-torch: 3 CPUs, 0.5 GPU).
    storage_path
        Where Ray Tune keeps results and checkpoints (default: a temporary folder).
    address
        Ray cluster address for ``ray.init`` when Ray is not initialised yet (``None``: local).

    Returns
    -------
    LFADSPBTResult with the best trial's model (restored from its last checkpoint), its
    hyperparameters and learning rate, ``history`` (``generation``, ``best``: population best per
    generation) and ``stop_reason``; ``workers`` holds the final per-trial metrics and
    hyperparameters (one row per trial); ``population`` is None.
    """
    key = check_key(key)
    ray, tune = _import_ray()
    seed = numpy_seed(key)
    tc = train_config or TrainConfig()
    pc = pbt_config or PBTConfig()
    base = hp if hp is not None else HParams.create()
    if pc.metric != "valid/recon_smth":
        raise ConfigError("pbt_ray monitors 'valid/recon_smth' only")
    names = [s.name for s in search_space]
    if len(set(names)) != len(names):
        raise ConfigError(f"search_space names must be unique, got {names}")
    check_dataset(train_data, model_config, sbtt=sbtt, name="train_data")
    check_dataset(valid_data, model_config, sbtt=sbtt, name="valid_data")
    tc = tc.replace(lr_scheduler=False)  # PBT owns the learning rate
    ramp_end = max(float(base.kl_start_epoch) + float(base.kl_increase_epoch),
                   float(base.l2_start_epoch) + float(base.l2_increase_epoch))
    burn_in_epochs = pc.burn_in_epochs if pc.burn_in_epochs is not None else int(ramp_end) + pc.epochs_per_generation
    burn_in_gen = math.ceil(burn_in_epochs / pc.epochs_per_generation)
    payload = {"model_config": model_config, "train_config": tc, "pbt_config": pc,
               "base_hp": {f: float(getattr(base, f)) for f in HParams.__dataclass_fields__},
               "train": {k: np.asarray(v) for k, v in train_data.items()},
               "valid": {k: np.asarray(v) for k, v in valid_data.items()},
               "key": tuple(int(w) for w in np.asarray(jax.random.key_data(key) if jax.dtypes.issubdtype(
                   key.dtype, jax.dtypes.prng_key) else key).ravel()),
               "sv_seed": sv_seed(key)}
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose > 0, configure_logging=verbose > 0)
    stopper = _make_stopper(tune, pc, burn_in_gen)
    scheduler = _binary_tournament_scheduler(tune, custom_explore_fn=_explore_fn(search_space, pc, seed),
                                             burn_in_period=burn_in_gen)
    trainable = tune.with_resources(tune.with_parameters(_worker, payload=payload),
                                    {"cpu": cpus_per_worker, "gpu": gpus_per_worker})
    tmp = None
    if storage_path is None:
        tmp = tempfile.TemporaryDirectory(prefix="spikejax_pbt_ray_")
        storage_path = tmp.name
    t0 = time.perf_counter()
    try:
        tuner = tune.Tuner(
            trainable,
            param_space={"hp": tune.grid_search(_initial_values(search_space, pc, tc, seed))},
            tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=1, reuse_actors=False),
            run_config=tune.RunConfig(name="lfads_pbt", storage_path=str(Path(storage_path).resolve()),
                                      stop=stopper, verbose=verbose),
        )
        results = tuner.fit()
        best = results.get_best_result(metric="metric", mode="min", scope="last")
        # a structure template (its random initial values are overwritten by the checkpoint's)
        model = LFADS(model_config, key=jax.random.PRNGKey(0))
        params, static = eqx.partition(model, eqx.is_inexact_array)
        optimizer = make_optimizer(tc)
        with best.checkpoint.as_directory() as d:
            found = load_checkpoint(d, (params, optimizer.init(params)))
        if found is None:
            raise DataFormatError("the best Ray Tune trial left no spikejax checkpoint")
        _, (params, opt_state), _ = found
        vals = best.config["hp"]
        best_hp = HParams.create(**{**payload["base_hp"], **{k: v for k, v in vals.items() if k in payload["base_hp"]}},
                                 dtype=model.ic_prior_mean.dtype)
        workers = pd.DataFrame([{"worker": int(r.config["hp"]["_worker"]), "metric": float(r.metrics.get("metric", np.nan)),
                                 **{f"hp/{k}": v for k, v in r.config["hp"].items() if k != "_worker"}} for r in results])
    finally:
        if tmp is not None:
            tmp.cleanup()
    recs = sorted(stopper.records)
    hist = pd.DataFrame({"generation": np.asarray([g for g, _ in recs], int),
                         "epoch": np.asarray([g * pc.epochs_per_generation for g, _ in recs], int),
                         "best": np.asarray([b for _, b in recs], float)})
    n_gen = int(hist["generation"].iloc[-1]) if len(recs) else 0
    return LFADSPBTResult(model=eqx.combine(params, static), history=hist, stop_reason=_stop(stopper.reason),
                          seconds=max(time.perf_counter() - t0, 1e-9), workers=workers, hp=best_hp,
                          learning_rate=float(vals["learning_rate"]), best_worker=int(vals["_worker"]),
                          n_generations=n_gen, population=None, model_config=model_config, pbt_config=pc)
