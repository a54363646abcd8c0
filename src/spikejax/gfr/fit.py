"""Fitting GFR neurons to preprocessed cells, as the GRNN training pipeline does, many cells at once.

Stage 1 (activation ``g``): the Long Square onset pairs ``(I_k, f_k)`` at ``activation_bin_size``
(first bin after step onset of every Long Square sweep); ``sigma = max |I_k|``, ``gamma`` = the
cell's max 1/ISI; data-driven initialisation (``b`` = the current just below the first point whose
rate exceeds 0.01/ms, ``a_1 = |slope * sigma|`` with the slope between that point and the point of
maximum rate, other coefficients ~ N(0, 0.1^2)); loss = sum over sweeps of the torch-convention
Poisson NLL of ``g(I_k) dt'`` against ``f_k dt'``; full-batch Adam (lr 0.05, 1000 epochs);
3 restarts, the lowest final loss kept.

Stage 2 (``alpha``, ``beta``; ``g`` frozen by a filter spec, ``lambda`` fixed): sweeps grouped by
stimulus type (Long Square, Ramp, Noise 1), each a zero-padded batch; the order of the
type-batches is shuffled once; one Adam step per type-batch per epoch; loss per batch = mean over
sweeps of the sum over bins of the Poisson NLL of ``f_hat dt`` against ``f dt`` (eps 1e-8, padded
bins count) + ``C (||alpha||_0 + ||beta||_0)`` (no gradient: ``C`` has no effect, as in the
original); the logged loss is divided by the padded length and averaged over the epoch's batches.
Independent restarts from the same initialisation per learning rate (default 1e-2, 1e-3, 1e-4,
200 epochs each), early stopping when the epoch loss is identical ``patience`` = 3 epochs in a row;
the run with the best Noise-1 EVR is kept and its Noise-2 EVR reported.

:func:`fit_cells` runs all of this for many cells in **one compiled program**: cells are stacked
and padded (sweeps, bins and activation pairs) with masks so that each cell's loss equals its own
unpadded loss; restarts and learning rates are a second batch axis; early stopping freezes a
member's parameters. :func:`fit_cell` is the one-cell reference built on :func:`spikejax.core.fit`
(with its checkpoint/resume); both give the same parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from ..core.errors import ConfigError, DataFormatError, NonFiniteError
from ..core.io import load_json, save_json
from ..core.likelihoods import poisson_nll
from ..core.training import fit as core_fit, load_checkpoint, make_train_step, save_checkpoint, trainable
from .model import GFR, KAPPA_BIO, PolynomialActivation, check_config, decay_rates, simulate
from .preprocess import CellData
from .records import make_record

__all__ = [
    "FitConfig",
    "PreparedCell",
    "FitCellsResult",
    "prepare_cell",
    "init_activation",
    "activation_loss",
    "stage2_loss",
    "masked_evr",
    "evaluate",
    "fit_cells",
    "fit_cell",
    "fit_alpha_beta",
    "selection_criteria",
]


@dataclasses.dataclass
class FitConfig:
    """Training configuration (GRNN's ``configs/default.json`` plus the pipeline arguments).

    Attributes
    ----------
    bin_size, activation_bin_size : ms (``--bin_size``, ``--activation_bin_size``).
    degree : polynomial degree of ``g`` (``--degree``, default 1).
    C : the "L0" penalty weight; it has **no effect** on training (zero gradient), kept for parity.
    eps : Poisson NLL epsilon.
    activation_lr, activation_epochs, activation_repeats : stage 1.
    hparams : ``((lr, epochs), ...)`` stage-2 restarts from the same initialisation.
    patience : early stopping when the epoch loss is identical this many epochs in a row.
    kappa : feedback scale (1000 = ``bio_units``).
    seed : initialisation draws and the shuffled type-batch order.
    bptt_checkpoint : gradient checkpointing of the time scan (False, True or a block length).
    round_counts : score the EVR on the model's expected counts rounded to whole numbers
        (``round(m dt) / dt``), GRNN's off-by-default option.
    """

    bin_size: int = 20
    activation_bin_size: int = 20
    degree: int = 1
    C: float = 0.0
    eps: float = 1e-8
    activation_lr: float = 0.05
    activation_epochs: int = 1000
    activation_repeats: int = 3
    hparams: tuple[tuple[float, int], ...] = ((1e-2, 200), (1e-3, 200), (1e-4, 200))
    patience: int = 3
    kappa: float = KAPPA_BIO
    seed: int = 0
    bptt_checkpoint: bool | int = False
    train_stimuli: tuple[str, ...] = ("Long Square", "Ramp", "Noise 1")
    activation_stimulus: str = "Long Square"
    val_stimulus: str = "Noise 1"
    test_stimulus: str = "Noise 2"
    round_counts: bool = False

    def __post_init__(self) -> None:
        check_config(self.bin_size, self.activation_bin_size)
        self.bin_size, self.activation_bin_size = int(self.bin_size), int(self.activation_bin_size)
        if int(self.degree) < 1:
            raise ConfigError(f"degree must be >= 1, got {self.degree!r}")
        if not self.hparams:
            raise ConfigError("hparams must hold at least one (lr, epochs) entry")
        hp = []
        for entry in self.hparams:
            if isinstance(entry, dict):
                entry = (entry.get("lr"), entry.get("epochs"))
            lr, ep = entry
            if not (isinstance(lr, (int, float)) and lr > 0 and isinstance(ep, (int, np.integer)) and ep >= 0):
                raise ConfigError(f"hparams entries must be (lr > 0, epochs >= 0), got {entry!r}")
            hp.append((float(lr), int(ep)))
        self.hparams = tuple(hp)
        for name in ("activation_epochs", "activation_repeats", "patience"):
            if int(getattr(self, name)) < (1 if name != "activation_epochs" else 0):
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        self.train_stimuli = tuple(self.train_stimuli)

    @classmethod
    def from_json(cls, path: str | os.PathLike, **overrides: Any) -> FitConfig:
        """Read a GRNN-style config (``hparams`` as ``[{"lr":..., "epochs":...}]``, ``eps``,
        ``activation_epochs``, ``activation_repeats`` ...); unknown keys (``finetune``,
        ``retrain_model``, ``freeze_activation``) are accepted and ignored; ``overrides`` win."""
        raw = load_json(path)
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a JSON object, got {type(raw).__name__}")
        if raw.get("freeze_activation") is False:
            raise ConfigError(f"{path}: freeze_activation=false is not supported (stage 2 trains alpha and beta only)")
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in fields}
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hparams"] = [{"lr": lr, "epochs": ep} for lr, ep in self.hparams]
        return d


@dataclasses.dataclass
class PreparedCell:
    """Numpy arrays of one cell ready for fitting (see :func:`prepare_cell`)."""

    cell_id: int
    gamma: float
    sigma: float
    act_current: np.ndarray
    act_rate: np.ndarray
    groups: dict[str, tuple[np.ndarray, np.ndarray]]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def _pad_stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    t = max(a.size for a in arrays)
    out = np.zeros((len(arrays), t))
    for i, a in enumerate(arrays):
        out[i, : a.size] = a
    return out


def _check_sweep(cell_id, sw, b, cur, rate):
    where = f"cell {cell_id}, sweep {sw.number} ({sw.stimulus_name}), bin size {b} ms"
    if not (np.all(np.isfinite(cur)) and np.all(np.isfinite(rate))):
        raise NonFiniteError(f"{where}: current and rate must be finite")
    if np.any(rate < 0):
        raise DataFormatError(f"{where}: rates must be >= 0 spikes/ms, got minimum {rate.min()!r}")


def prepare_cell(cell: CellData, config: FitConfig) -> PreparedCell:
    """Select and pad one cell's sweeps for fitting (raises DataFormatError when something is missing)."""
    b, ab = config.bin_size, config.activation_bin_size

    def binned(sw, size):
        if size not in sw.binned:
            raise DataFormatError(f"cell {cell.cell_id}: sweep {sw.number} has no {size} ms binning (have {sorted(sw.binned)})")
        cur, rate = (np.asarray(x, dtype=np.float64) for x in sw.binned[size])
        _check_sweep(cell.cell_id, sw, size, cur, rate)
        return cur, rate

    ls = [binned(sw, ab) for sw in cell.by_stimulus(config.activation_stimulus)]
    ls = [(c, r) for c, r in ls if c.size > 0]
    if len(ls) < 2:
        raise DataFormatError(
            f"cell {cell.cell_id}: stage 1 needs at least 2 '{config.activation_stimulus}' sweeps, got {len(ls)}"
        )
    act_i = np.asarray([c[0] for c, _ in ls])
    act_f = np.asarray([r[0] for _, r in ls])
    if not np.isfinite(cell.gamma) or cell.gamma <= 0:
        raise DataFormatError(f"cell {cell.cell_id}: gamma (max 1/ISI) must be > 0 spikes/ms, got {cell.gamma!r}")
    groups = {}
    for name in config.train_stimuli:
        sws = [binned(sw, b) for sw in cell.by_stimulus(name)]
        sws = [(c, r) for c, r in sws if c.size > 0]
        if sws:
            groups[name] = (_pad_stack([c for c, _ in sws]), _pad_stack([r for _, r in sws]))
    if not groups:
        raise DataFormatError(f"cell {cell.cell_id}: no training sweeps among {config.train_stimuli}")

    def trials(name):
        sws = [binned(sw, b) for sw in cell.by_stimulus(name)]
        sws = [(c, r) for c, r in sws if c.size > 0]
        if not sws:
            raise DataFormatError(
                f"cell {cell.cell_id}: no '{name}' sweeps; models exist only for cells with both Noise 1 and Noise 2"
            )
        cur = _pad_stack([c for c, _ in sws])
        return cur[0], _pad_stack([r for _, r in sws])

    sigma = float(np.max(np.abs(act_i)))
    if sigma <= 0:
        raise DataFormatError(f"cell {cell.cell_id}: the activation currents are all zero (sigma = 0)")
    return PreparedCell(int(cell.cell_id), float(cell.gamma), sigma, act_i, act_f, groups, trials(config.val_stimulus), trials(config.test_stimulus))


# --------------------------------------------------------------------------------------------
# stage 1
# --------------------------------------------------------------------------------------------


def init_activation(prep: PreparedCell, config: FitConfig, restart: int) -> PolynomialActivation:
    """GRNN's data-driven initialisation of ``g`` (see the module docstring); ``restart`` varies the random draws."""
    order = np.argsort(prep.act_current, kind="stable")
    cur, rate = prep.act_current[order], prep.act_rate[order]
    above = np.flatnonzero(rate > 0.01)
    if above.size:
        first = int(above[0])
        b = cur[first - 1] if first > 0 else cur[first]
        top = int(np.argmax(rate))
        di = cur[top] - cur[first]
        slope = (rate[top] - rate[first]) / di if di != 0 else rate[first] / max(cur[first] - b, 1.0)
    else:
        first, b = len(cur) - 1, cur[-1]
        slope = 0.0
    a1 = abs(slope * prep.sigma)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(config.seed), prep.cell_id % (2**31 - 1)), restart)
    coeff = np.array(0.1 * jax.random.normal(key, (config.degree + 1,)), dtype=np.float64)
    coeff[1] = a1
    dt = jnp.result_type(float)
    return PolynomialActivation(
        jnp.asarray(coeff, dt), jnp.asarray(b, dt), jnp.asarray(prep.sigma, dt), jnp.asarray(prep.gamma, dt), config.activation_bin_size
    )


def activation_loss(g: PolynomialActivation, batch: dict[str, jax.Array], eps: float = 1e-8) -> jax.Array:
    """Stage-1 loss: sum over the (masked) Long Square pairs of the torch Poisson NLL of counts."""
    dt = batch["dt"]
    return poisson_nll(g(batch["current"]) * dt, batch["rate"] * dt, mask=batch["mask"], convention="torch", eps=eps, reduction="sum")


def _activation_spec(g: PolynomialActivation) -> Any:
    return trainable(g, frozen=lambda m: (m.max_current, m.max_firing_rate))


def _gfr_spec(model: GFR) -> Any:
    return trainable(model, frozen=lambda m: (m.decay, m.g))


# --------------------------------------------------------------------------------------------
# stage 2
# --------------------------------------------------------------------------------------------


def stage2_loss(model: GFR, batch: dict[str, jax.Array], *, eps: float = 1e-8, C: float = 0.0, checkpoint: bool | int = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Loss of one type-batch: mean over sweeps of the summed Poisson NLL (padded bins inside the
    cell's batch length count; bins/sweeps beyond it — cross-cell padding — are masked).

    ``batch``: ``current``/``rate`` (S, T), ``n_sweeps``, ``n_bins`` (the cell's own padded batch
    shape) and ``dt``. Returns ``(loss, {"per_bin": loss / n_bins})`` (the logged quantity).
    """
    cur, rate = batch["current"], batch["rate"]
    s, t = cur.shape
    mask = (jnp.arange(s)[:, None] < batch["n_sweeps"]) & (jnp.arange(t)[None, :] < batch["n_bins"])
    pred = simulate(model, cur, checkpoint=checkpoint)
    dt = batch["dt"]
    nll = poisson_nll(pred * dt, rate * dt, mask=mask, convention="torch", eps=eps, reduction="sum")
    n_s = jnp.maximum(batch["n_sweeps"], 1)
    loss = nll / n_s
    per_bin = loss / jnp.maximum(batch["n_bins"], 1)
    # GRNN's "L0" penalty: a count of non-zero weights, whose gradient is zero (C has no effect on training).
    penalty = C * jax.lax.stop_gradient(jnp.count_nonzero(model.alpha) + jnp.count_nonzero(model.beta)).astype(loss.dtype)
    return loss + penalty, {"per_bin": per_bin}


def masked_evr(model_trace: jax.Array, trials: jax.Array, trial_mask: jax.Array, n_bins: jax.Array) -> jax.Array:
    """EVR over the first ``n_bins`` bins and the trials with ``trial_mask`` (equals
    :func:`spikejax.core.evr` on the unpadded arrays). ``model_trace`` (T,), ``trials`` (K, T)."""
    t = trials.shape[-1]
    tm = (jnp.arange(t) < n_bins).astype(trials.dtype)
    nt = jnp.maximum(jnp.sum(tm), 1.0)

    def var(x):
        mu = jnp.sum(x * tm, -1, keepdims=True) / nt
        return jnp.sum(((x - mu) * tm) ** 2, -1) / nt

    def ev(x, y):
        vx, vy, vd = var(x), var(y), var(x - y)
        den = vx + vy
        return jnp.where(den > 0, (den - vd) / jnp.where(den > 0, den, 1.0), jnp.nan)

    km = trial_mask.astype(trials.dtype)
    nk = jnp.maximum(jnp.sum(km), 1.0)
    psth = jnp.sum(trials * km[:, None], 0) / nk
    ev_d = jnp.sum(jnp.where(km > 0, ev(trials, psth[None, :]), 0.0)) / nk
    ev_m = jnp.sum(jnp.where(km > 0, ev(trials, model_trace[None, :]), 0.0)) / nk
    return ev_m / ev_d


def _eval_member(model: GFR, ev: dict[str, jax.Array], eps: float) -> dict[str, jax.Array]:
    """Noise-1 (val) and Noise-2 (test) EVR and per-bin NLL of the response to the first trial's current."""
    out = {}
    for name in ("val", "test"):
        d = ev[name]
        m = simulate(model, d["current"])
        scored = jnp.where(d["round"], jnp.round(m * d["dt"]) / d["dt"], m) if "round" in d else m
        out[f"{name}_evr"] = masked_evr(scored, d["trials"], d["trial_mask"], d["n_bins"])
        k, t = d["trials"].shape
        mask = d["trial_mask"][:, None] & (jnp.arange(t)[None, :] < d["n_bins"])
        nll = poisson_nll(jnp.broadcast_to(m, (k, t)) * d["dt"], d["trials"] * d["dt"], mask=mask, convention="torch", eps=eps, reduction="sum")
        out[f"{name}_loss"] = nll / jnp.maximum(jnp.sum(d["trial_mask"]), 1) / jnp.maximum(d["n_bins"], 1)
    return out


# --------------------------------------------------------------------------------------------
# batching many cells
# --------------------------------------------------------------------------------------------


def _group_order(config: FitConfig) -> list[str]:
    rng = np.random.default_rng(config.seed)
    return [config.train_stimuli[i] for i in rng.permutation(len(config.train_stimuli))]


def _shapes(preps: Sequence[PreparedCell], config: FitConfig) -> dict[str, Any]:
    """Padded sizes covering all ``preps`` (so chunks of cells share one compiled program)."""
    names = [n for n in _group_order(config) if any(n in p.groups for p in preps)]
    group = {n: (max(p.groups[n][0].shape[0] for p in preps if n in p.groups), max(p.groups[n][0].shape[1] for p in preps if n in p.groups)) for n in names}
    out = {"k_act": max(p.act_current.size for p in preps), "names": names, "group": group,
           "s": max(v[0] for v in group.values()), "t": max(v[1] for v in group.values())}
    for name in ("val", "test"):
        out[name] = (max(getattr(p, name)[1].shape[0] for p in preps), max(getattr(p, name)[1].shape[1] for p in preps))
    return out


def _stack_cells(preps: Sequence[PreparedCell], config: FitConfig, shapes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pad and stack cells (numpy, then one transfer): activation pairs (C, K); the type-batches in
    the shuffled order, padded to one common shape (G, C, S, T) with each cell's own batch shape in
    ``n_sweeps``/``n_bins`` (G, C); val/test trials (C, K, T). ``shapes`` (:func:`_shapes`) fixes
    the padded sizes."""
    shapes = shapes or _shapes(preps, config)
    dtype = jnp.result_type(float)
    c = len(preps)
    k = shapes["k_act"]
    act = {"current": np.zeros((c, k)), "rate": np.zeros((c, k)), "mask": np.zeros((c, k), bool)}
    for i, p in enumerate(preps):
        n = p.act_current.size
        act["current"][i, :n], act["rate"][i, :n], act["mask"][i, :n] = p.act_current, p.act_rate, True
    act["dt"] = np.full(c, float(config.activation_bin_size))
    names = shapes["names"]
    s_max, t_max = shapes["s"], shapes["t"]
    g_ = len(names)
    groups = {"current": np.zeros((g_, c, s_max, t_max)), "rate": np.zeros((g_, c, s_max, t_max)),
              "n_sweeps": np.zeros((g_, c), np.int32), "n_bins": np.zeros((g_, c), np.int32),
              "dt": np.full((g_, c), float(config.bin_size))}
    for j, name in enumerate(names):
        for i, p in enumerate(preps):
            if name in p.groups:
                cur, rate = p.groups[name]
                groups["current"][j, i, : cur.shape[0], : cur.shape[1]] = cur
                groups["rate"][j, i, : cur.shape[0], : cur.shape[1]] = rate
                groups["n_sweeps"][j, i], groups["n_bins"][j, i] = cur.shape
    ev = {}
    for name in ("val", "test"):
        k_max, tm = shapes[name]
        e = {"current": np.zeros((c, tm)), "trials": np.zeros((c, k_max, tm)), "trial_mask": np.zeros((c, k_max), bool),
             "n_bins": np.zeros(c, np.int32), "dt": np.full(c, float(config.bin_size)), "round": np.full(c, bool(config.round_counts))}
        for i, p in enumerate(preps):
            cur, tr = getattr(p, name)
            e["current"][i, : cur.size] = cur
            e["trials"][i, : tr.shape[0], : tr.shape[1]] = tr
            e["trial_mask"][i, : tr.shape[0]] = True
            e["n_bins"][i] = tr.shape[1]
        ev[name] = e
    conv = lambda d: {k: jnp.asarray(v, dtype if v.dtype.kind == "f" else None) for k, v in d.items()}  # noqa: E731
    return {"act": conv(act), "group_names": names, "group_shapes": [shapes["group"][n] for n in names], "groups": conv(groups),
            "ev": {k: conv(v) for k, v in ev.items()}}


def _where_tree(active, new, old):
    def pick(a, b):
        m = active.reshape(active.shape + (1,) * (a.ndim - active.ndim))
        return jnp.where(m, a, b)

    return jax.tree_util.tree_map(pick, new, old)


def _member_loss(kind: str, bptt_checkpoint: bool | int):
    """The per-member loss ``(model, batch, key) -> (loss, {"per_bin": ...})`` of a stage; ``eps``
    and ``C`` travel in the batch as arrays (no recompilation when they change)."""
    if kind == "activation":

        def loss(g, batch, key):
            value = activation_loss(g, batch, batch["eps"])
            return value, {"per_bin": value}

    else:

        def loss(model, batch, key):
            return stage2_loss(model, batch, eps=batch["eps"], C=batch["C"], checkpoint=bptt_checkpoint)

    return loss


@functools.partial(jax.jit, static_argnames=("kind", "bptt_checkpoint", "patience", "epochs_per_call"))
def _run_epochs(state, epoch0, frozen, lrs, groups, n_epochs, hyper, *, kind, bptt_checkpoint, patience, epochs_per_call):
    """``epochs_per_call`` epochs of the (cells, members) grid; one Adam step per type-batch.

    ``groups`` has leaves (G, C, ...); ``lrs`` and ``n_epochs`` (members,); module level and
    jitted with static configuration, so repeated fits of the same shapes compile once.
    """
    loss_fn = _member_loss(kind, bptt_checkpoint)
    dummy_key = jax.random.PRNGKey(0)
    c, m = state["stopped"].shape
    dtype = state["last_loss"].dtype

    def member_step(p, s, fz, batch, lr):
        step = make_train_step(loss_fn, optax.adam(lr), fz, has_aux=True)
        p2, s2, _, aux = step(p, s, {**batch, **hyper}, dummy_key)
        return p2, s2, aux["per_bin"]

    vstep = jax.vmap(jax.vmap(member_step, in_axes=(0, 0, 0, None, 0)), in_axes=(0, 0, 0, 0, None))

    def present_of(g, lead):
        return g["n_sweeps"] > 0 if "n_sweeps" in g else jnp.ones(g["current"].shape[:lead], bool)

    def epoch(st, e):
        budget = (epoch0 + e) < n_epochs[None, :]
        was_active = ~st["stopped"] & budget

        def group_step(carry, xs):
            params, opt_state, total, count = carry
            batch, present = xs
            p2, s2, per_bin = vstep(params, opt_state, frozen, batch, lrs)
            act = was_active & present[:, None]
            params = _where_tree(act, p2, params)
            opt_state = _where_tree(act, s2, opt_state)
            total = total + jnp.where(present[:, None], per_bin, 0.0)
            count = count + present[:, None]
            return (params, opt_state, total, count), None

        init = (st["params"], st["opt_state"], jnp.zeros((c, m), dtype), jnp.zeros((c, m), dtype))
        if isinstance(groups, tuple):  # one padded shape per type-batch, unrolled (less padding, longer compile)
            carry = init
            for g in groups:
                carry, _ = group_step(carry, (g, present_of(g, 1)))
            params, opt_state, total, count = carry
        else:  # one common padded shape, scanned over type-batches (one compiled step body)
            (params, opt_state, total, count), _ = jax.lax.scan(group_step, init, (groups, present_of(groups, 2)))
        loss = total / jnp.maximum(count, 1)
        if patience:
            same = jnp.all(st["recent"] == loss[..., None], axis=-1) & (st["n_done"] + 1 >= patience)
        else:
            same = jnp.zeros_like(was_active)
        recent = jnp.where(was_active[..., None], jnp.concatenate([st["recent"][..., 1:], loss[..., None]], -1), st["recent"])
        new = {
            "params": params,
            "opt_state": opt_state,
            "stopped": st["stopped"] | (was_active & same),
            "recent": recent,
            "n_done": st["n_done"] + was_active,
            "last_loss": jnp.where(was_active, loss, st["last_loss"]),
        }
        return new, jnp.where(was_active, loss, jnp.nan)

    return jax.lax.scan(epoch, state, jnp.arange(epochs_per_call))


@jax.jit
def _init_opt_state(params):
    return jax.vmap(jax.vmap(optax.adam(1.0).init))(params)


def _train_members(
    params: Any,
    frozen: Any,
    lrs: jax.Array,
    groups: dict[str, jax.Array],
    kind: str,
    hyper: dict[str, jax.Array],
    n_epochs: jax.Array,
    max_epochs: int,
    patience: int | None,
    *,
    bptt_checkpoint: bool | int = False,
    epochs_per_call: int,
    checkpoint_dir: Path | None,
    checkpoint_every: int | None,
    resume: bool,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train a (cells, members) grid of models, one Adam step per type-batch per epoch, with
    per-member learning rates ``lrs`` (members,), epoch budgets ``n_epochs`` (members,) and early
    stopping (``patience`` identical epoch losses freeze a member).

    ``params``/``frozen`` are the two halves of ``eqx.partition`` with leaves of leading shape
    (cells, members). Returns the final state, the per-member last epoch loss, epochs run and the
    loss history (epochs, cells, members). Checkpoints use :func:`spikejax.core.save_checkpoint`.
    """
    c, m = jax.tree_util.tree_leaves(params)[0].shape[:2]
    p_hist = max(int(patience or 1) - 1, 1)
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    state = {
        "params": params,
        "opt_state": _init_opt_state(params),
        "stopped": jnp.zeros((c, m), bool),
        "recent": jnp.full((c, m, p_hist), jnp.nan, dtype),
        "n_done": jnp.zeros((c, m), jnp.int32),
        "last_loss": jnp.full((c, m), jnp.nan, dtype),
    }
    history: list[np.ndarray] = []
    done = 0
    if checkpoint_dir is not None and resume:
        found = load_checkpoint(checkpoint_dir, state)
        if found is not None:
            done, state, meta = found
            history = [np.asarray(h, dtype=float) for h in meta["history"]]
    budgets = np.asarray(n_epochs)
    calls = 0
    while done < max_epochs:
        if bool(np.all(np.asarray(state["stopped"]) | (done >= budgets[None, :]))):
            break
        state, hist = _run_epochs(
            state, jnp.asarray(done), frozen, lrs, groups, n_epochs, hyper,
            kind=kind, bptt_checkpoint=bptt_checkpoint, patience=patience, epochs_per_call=epochs_per_call,
        )
        hist = np.asarray(hist)
        history.extend(list(hist[: min(epochs_per_call, max_epochs - done)]))
        done += epochs_per_call
        calls += 1
        if checkpoint_dir is not None and (done >= max_epochs or not checkpoint_every or done % checkpoint_every == 0):
            save_checkpoint(checkpoint_dir, min(done, max_epochs), state, {"history": [np.asarray(h).tolist() for h in history]})
        if stop_after is not None and calls >= stop_after:
            raise _Interrupted(f"interrupted after {done} epochs (test hook)")
    if not all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(state["params"])):
        raise NonFiniteError(
            "a parameter became NaN/inf while fitting; lower the learning rates or enable float64 "
            "(jax.config.update('jax_enable_x64', True))"
        )
    hist_arr = np.stack(history) if history else np.zeros((0, c, m))
    return {**state, "history": hist_arr, "epochs_run": min(done, max_epochs)}


@jax.jit
def _final_activation_loss(g, act, eps):
    return jax.vmap(jax.vmap(lambda gg, b: activation_loss(gg, b, eps), in_axes=(0, None)))(g, act)


@jax.jit
def _evaluate_grid(models, ev, eps):
    return jax.vmap(jax.vmap(lambda mdl, e: _eval_member(mdl, e, eps), in_axes=(0, None)))(models, ev)


@dataclasses.dataclass
class FitCellsResult:
    """What :func:`fit_cells` returns.

    Attributes
    ----------
    models : one fitted :class:`GFR` per cell (the learning rate with the best Noise-1 EVR).
    table : DataFrame with one row per cell: ``cell_id``, ``val_evr``, ``test_evr``, ``train_loss``,
        ``test_loss``, ``best_lr``, ``epochs``, ``selected`` (release criteria), ``activation_loss``
        and ``val_evr@lr`` / ``test_evr@lr`` columns for every learning rate.
    records : the fitted models in the ``gfr_dataset.json`` record layout.
    history : stage-2 per-bin loss history, array (epochs, cells, learning rates) (NaN after stopping).
    """

    models: list[GFR]
    table: pd.DataFrame
    records: list[dict[str, Any]]
    history: np.ndarray
    activation_history: np.ndarray


def selection_criteria(val_evr: Any, train_loss: Any, *, min_val_evr: float = 0.5, max_train_loss: float = 0.45) -> np.ndarray:
    """GRNN's release selection: ``val_evr > 0.5`` and ``train_loss < 0.45`` (NaN fails)."""
    v = np.asarray(val_evr, dtype=float)
    lo = np.asarray(train_loss, dtype=float)
    return (v > min_val_evr) & (lo < max_train_loss)


def _ckpt(root: Path | None, sub: str) -> Path | None:
    return None if root is None else Path(root) / sub


def fit_cells(
    cells: Sequence[CellData],
    config: FitConfig | None = None,
    *,
    epochs_per_call: int = 50,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    cre_lines: dict[int, str] | None = None,
    shared_padding: bool | None = None,
    chunk_size: int | None = None,
    _stop_after: int | None = None,
) -> FitCellsResult:
    """Fit GFR models to many cells in one compiled program (stage 1 then stage 2).

    Parameters
    ----------
    cells
        Preprocessed cells (:func:`spikejax.gfr.preprocess.load_cells`), binned at
        ``config.bin_size`` and ``config.activation_bin_size``.
    config
        :class:`FitConfig` (defaults as GRNN's ``configs/default.json``).
    epochs_per_call
        Epochs per compiled call (checkpoints happen between calls).
    checkpoint_dir, checkpoint_every, resume
        Save the training state every ``checkpoint_every`` epochs (a multiple of
        ``epochs_per_call``; default every call) under ``checkpoint_dir/stage1`` and ``.../stage2``;
        a later call with ``resume=True`` continues from there and gives the same result.
    cre_lines
        Optional ``{cell_id: cre line}`` for the records.
    shared_padding
        ``True``: pad all type-batches to one common (sweeps, bins) shape and scan over them (one
        compiled step, fastest to compile; best for small fits). ``False``: pad each type-batch
        only to its own largest shape and unroll the steps (about 2-3x longer compilation, much
        less padded work when sweep lengths differ; best for many cells). ``None`` (default):
        ``True`` below 32 cells. Results are identical.
    chunk_size
        Fit at most this many cells per compiled call (host loop over chunks, all padded to the
        same shapes so the program compiles once; checkpoints under ``checkpoint_dir/chunk_<k>``).
        Bounds memory and keeps the arrays cache-sized on CPU for thousands of cells.
    """
    config = config or FitConfig()
    if not cells:
        raise ConfigError("fit_cells needs at least one cell")
    if checkpoint_every is not None and checkpoint_every % epochs_per_call:
        raise ConfigError(f"checkpoint_every ({checkpoint_every}) must be a multiple of epochs_per_call ({epochs_per_call})")
    ids = [c.cell_id for c in cells]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"cell ids must be unique, got duplicates in {ids}")
    preps = [prepare_cell(c, config) for c in cells]
    n_all = len(preps)
    ckpt_root = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_root is not None:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        cfg_file = ckpt_root / "config.json"
        cfg = {"config": config.to_dict(), "cells": ids, "chunk_size": chunk_size}
        if resume and cfg_file.is_file():
            if json.loads(json.dumps(cfg)) != load_json(cfg_file):
                raise ConfigError(f"{cfg_file} was written for another configuration or cell list; use a fresh checkpoint_dir")
        else:
            save_json(cfg_file, cfg)
    if shared_padding is None:
        shared_padding = min(n_all, chunk_size or n_all) < 32
    shapes = _shapes(preps, config)
    size = n_all if not chunk_size or chunk_size >= n_all else int(chunk_size)
    parts = []
    for k, start in enumerate(range(0, n_all, size)):
        chunk = preps[start : start + size]
        n_real = len(chunk)
        chunk = chunk + [chunk[-1]] * (size - n_real)  # pad the last chunk: one compiled program for all
        sub = ckpt_root if (ckpt_root is None or size == n_all) else ckpt_root / f"chunk_{k:05d}"
        parts.append((n_real, _fit_block(
            chunk, config, shapes, ckpt_root=sub, epochs_per_call=epochs_per_call, checkpoint_every=checkpoint_every,
            resume=resume, shared_padding=shared_padding, _stop_after=_stop_after,
        )))
    models = [m for n, part in parts for m in part["models"][:n]]
    table = pd.concat([part["table"].iloc[:n] for n, part in parts], ignore_index=True)
    table.insert(0, "cell_id", ids)
    records = [
        make_record(
            mdl, cell_id=cid, cre_line=(cre_lines or {}).get(cid),
            val_evr=float(table.at[i, "val_evr"]), test_evr=float(table.at[i, "test_evr"]),
            train_loss=float(table.at[i, "train_loss"]), test_loss=float(table.at[i, "test_loss"]),
        )
        for i, (cid, mdl) in enumerate(zip(ids, models))
    ]
    history = np.concatenate([part["history"][:, :n] for n, part in parts], axis=1)
    act_history = np.concatenate([part["activation_history"][:, :n] for n, part in parts], axis=1)
    return FitCellsResult(models, table, records, history, act_history)


def _fit_block(
    preps: Sequence[PreparedCell],
    config: FitConfig,
    shapes: dict[str, Any],
    *,
    ckpt_root: Path | None,
    epochs_per_call: int,
    checkpoint_every: int | None,
    resume: bool,
    shared_padding: bool,
    _stop_after: int | None,
) -> dict[str, Any]:
    """Stage 1 + stage 2 + evaluation of one block of cells in one compiled program."""
    data = _stack_cells(preps, config, shapes)
    n_cells = len(preps)
    # ---- stage 1: (cells, restarts); parameters built in numpy (no eager device ops)
    r = config.activation_repeats
    dt = jnp.result_type(float)
    inits = [[init_activation(p, config, k) for k in range(r)] for p in preps]
    leaf = lambda name: np.asarray([[np.asarray(getattr(g, name)) for g in row] for row in inits])  # noqa: E731
    g_stack = PolynomialActivation(
        jnp.asarray(leaf("poly_coeff"), dt), jnp.asarray(leaf("b"), dt), jnp.asarray(leaf("max_current"), dt),
        jnp.asarray(leaf("max_firing_rate"), dt), config.activation_bin_size,
    )
    p1, f1 = eqx.partition(g_stack, _activation_spec(g_stack))
    hyper = {"eps": jnp.asarray(config.eps, dt), "C": jnp.asarray(config.C, dt)}
    act_groups = jax.tree_util.tree_map(lambda a: a[None], data["act"])
    res1 = _train_members(
        p1, f1, jnp.full(r, config.activation_lr, dt), act_groups, "activation", hyper,
        jnp.full(r, config.activation_epochs, jnp.int32), config.activation_epochs, None,
        epochs_per_call=min(max(epochs_per_call, 100), max(config.activation_epochs, 1)) if ckpt_root is None else epochs_per_call,
        checkpoint_dir=_ckpt(ckpt_root, "stage1"), checkpoint_every=checkpoint_every, resume=resume,
    )
    g_fit = eqx.combine(res1["params"], f1)
    final1 = np.asarray(_final_activation_loss(g_fit, data["act"], hyper["eps"]))
    final1 = np.where(np.isfinite(final1), final1, np.inf)
    best_r = np.argmin(final1, axis=1)
    rows_ = np.arange(n_cells)
    g_host = {k: np.asarray(getattr(g_fit, k))[rows_, best_r] for k in ("poly_coeff", "b", "max_current", "max_firing_rate")}

    # ---- stage 2: (cells, learning rates), the same initialisation for every learning rate
    n_l = len(config.hparams)
    lrs = jnp.asarray([lr for lr, _ in config.hparams], dt)
    budgets = jnp.asarray([ep for _, ep in config.hparams], jnp.int32)
    lam = decay_rates(config.bin_size)
    n = lam.size
    rep = lambda a: np.repeat(np.asarray(a)[:, None], n_l, axis=1)  # noqa: E731
    alpha0 = np.zeros((n_cells, n_l, n))
    alpha0[..., 0] = n
    g2 = PolynomialActivation(*(jnp.asarray(rep(g_host[k]), dt) for k in ("poly_coeff", "b", "max_current", "max_firing_rate")), config.activation_bin_size)
    stack2 = GFR(jnp.asarray(alpha0, dt), jnp.zeros((n_cells, n_l, n), dt), jnp.asarray(np.broadcast_to(lam, (n_cells, n_l, n)), dt), g2, config.bin_size, config.kappa)
    p2, f2 = eqx.partition(stack2, _gfr_spec(stack2))
    groups = data["groups"]
    if not shared_padding:
        host_groups = {k: np.asarray(v) for k, v in groups.items()}
        split = []
        for j in range(host_groups["current"].shape[0]):
            s_j, t_j = data["group_shapes"][j]
            split.append({k: jnp.asarray(v[j, :, :s_j, :t_j] if v.ndim == 4 else v[j]) for k, v in host_groups.items()})
        groups = tuple(split)
    res2 = _train_members(
        p2, f2, lrs, groups, "stage2", hyper, budgets, int(max(ep for _, ep in config.hparams)),
        config.patience, bptt_checkpoint=config.bptt_checkpoint, epochs_per_call=epochs_per_call,
        checkpoint_dir=_ckpt(ckpt_root, "stage2"), checkpoint_every=checkpoint_every, resume=resume, stop_after=_stop_after,
    )
    fitted = eqx.combine(res2["params"], f2)
    ev = {k: np.asarray(v) for k, v in _evaluate_grid(fitted, data["ev"], hyper["eps"]).items()}
    val = np.where(np.isfinite(ev["val_evr"]), ev["val_evr"], -np.inf)
    best = np.argmax(val, axis=1)
    host = {k: np.asarray(v)[rows_, best] for k, v in (("alpha", fitted.alpha), ("beta", fitted.beta), ("decay", fitted.decay))}
    models = [
        GFR(host["alpha"][i], host["beta"][i], host["decay"][i],
            PolynomialActivation(*(g_host[k][i] for k in ("poly_coeff", "b", "max_current", "max_firing_rate")), config.activation_bin_size),
            config.bin_size, config.kappa)
        for i in range(n_cells)
    ]
    train_loss = np.asarray(res2["last_loss"])[rows_, best]
    table = pd.DataFrame(
        {
            "val_evr": ev["val_evr"][rows_, best],
            "test_evr": ev["test_evr"][rows_, best],
            "train_loss": train_loss,
            "test_loss": ev["test_loss"][rows_, best],
            "best_lr": np.asarray([lr for lr, _ in config.hparams], dtype=float)[best],
            "epochs": np.asarray(res2["n_done"])[rows_, best],
            "activation_loss": final1[rows_, best_r],
        }
    )
    table["selected"] = selection_criteria(table["val_evr"], table["train_loss"])
    for j, (lr, _) in enumerate(config.hparams):
        table[f"val_evr@{lr:g}"] = ev["val_evr"][:, j]
        table[f"test_evr@{lr:g}"] = ev["test_evr"][:, j]
    return {"models": models, "table": table, "history": np.asarray(res2["history"]), "activation_history": np.asarray(res1["history"])}


class _Interrupted(Exception):
    """Raised by the test hook ``_stop_after`` to simulate an interruption after a checkpoint."""


def evaluate(model: GFR, cell: CellData, config: FitConfig | None = None) -> dict[str, float]:
    """Noise-1 / Noise-2 EVR and per-bin Poisson NLL of a model on one cell."""
    config = config or FitConfig(bin_size=model.bin_size, activation_bin_size=model.g.bin_size)
    data = _stack_cells([prepare_cell(cell, config)], config)
    ev = _eval_member(model, jax.tree_util.tree_map(lambda a: a[0], data["ev"]), config.eps)
    return {k: float(v) for k, v in ev.items()}


# --------------------------------------------------------------------------------------------
# one cell with core.fit (the reference per-cell loop, with checkpoint / resume)
# --------------------------------------------------------------------------------------------


def fit_cell(
    cell: CellData,
    config: FitConfig | None = None,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = False,
    _stop_after: int | None = None,
) -> tuple[GFR, dict[str, Any]]:
    """Fit one cell with :func:`spikejax.core.fit` (stage 1 restarts, then one fit per learning rate).

    The same computation as :func:`fit_cells` for one cell, one fit at a time (GRNN's loop).
    ``checkpoint_dir`` enables core.fit's checkpointing and exact resume (stage 1 every 100 steps,
    stage 2 every ``checkpoint_every`` epochs, default every epoch). Returns ``(model, summary dict)``.
    """
    config = config or FitConfig()
    prep = prepare_cell(cell, config)
    data = _stack_cells([prep], config)
    act = jax.tree_util.tree_map(lambda a: a[0], data["act"])
    ev_data = jax.tree_util.tree_map(lambda a: a[0], data["ev"])
    stacked = jax.tree_util.tree_map(lambda a: a[:, 0], data["groups"])  # (G, S, T): one type-batch per step
    eps = config.eps
    root = Path(checkpoint_dir) if checkpoint_dir is not None else None

    def act_loss(g, batch, key):
        return activation_loss(g, act, eps)

    best_g, best_loss = None, np.inf
    for k in range(config.activation_repeats):
        g0 = init_activation(prep, config, k)
        res = core_fit(
            g0, act_loss, None, optimizer=optax.adam(config.activation_lr), key=jax.random.PRNGKey(0),
            n_steps=config.activation_epochs, filter_spec=_activation_spec(g0), progress=progress,
            checkpoint_dir=_ckpt(root, f"stage1_{k}"), resume=resume,
            desc=f"cell {prep.cell_id} activation {k}",
        )
        final = float(act_loss(res.model, None, None))
        if np.isfinite(final) and final < best_loss:
            best_g, best_loss = res.model, final
    if best_g is None:
        raise NonFiniteError(f"cell {prep.cell_id}: every activation restart ended with a non-finite loss")

    n_groups = int(stacked["current"].shape[0])
    model0 = GFR.init(best_g, config.bin_size, kappa=config.kappa)
    spec = _gfr_spec(model0)

    def loss2(model, batch, key):
        b = jax.tree_util.tree_map(lambda a: a[0], batch)
        return stage2_loss(model, b, eps=eps, C=config.C, checkpoint=config.bptt_checkpoint)

    runs = []
    for j, (lr, epochs) in enumerate(config.hparams):
        sub = _ckpt(root, f"stage2_{j}")
        losses: list[float] = []
        if sub is not None and resume and (sub / "latest.json").is_file():
            info = load_json(sub / "latest.json")
            losses = [float(v) for v in info.get("meta", info).get("history", {}).get("per_bin", [])]

        def stop_rule(step, model, logs, losses=losses, j=j):
            if _stop_after is not None and j == 0 and step > _stop_after * n_groups:
                raise _Interrupted(f"interrupted at step {step} (test hook)")
            losses.append(float(logs["per_bin"]))
            return len(losses) >= config.patience and len(set(losses[-config.patience:])) == 1

        res = core_fit(
            model0, loss2, stacked, optimizer=optax.adam(lr), key=jax.random.PRNGKey(0), n_epochs=epochs,
            batch_size=1, shuffle=False, filter_spec=spec, has_aux=True, steps_per_call=n_groups,
            callback=stop_rule, checkpoint_dir=sub, checkpoint_every=None if checkpoint_every is None else checkpoint_every * n_groups,
            resume=resume, progress=progress, desc=f"cell {prep.cell_id} lr {lr:g}",
        )
        ev = {k: float(v) for k, v in _eval_member(res.model, ev_data, eps).items()}
        runs.append((res.model, ev, losses[-1] if losses else float("nan"), len(losses)))
    vals = [r[1]["val_evr"] if np.isfinite(r[1]["val_evr"]) else -np.inf for r in runs]
    j = int(np.argmax(vals))
    model, ev, train_loss, n_ep = runs[j]
    summary = {"cell_id": prep.cell_id, **ev, "train_loss": train_loss, "best_lr": config.hparams[j][0], "epochs": n_ep,
               "activation_loss": best_loss, "selected": bool(selection_criteria(ev["val_evr"], train_loss))}
    return model, summary


def fit_alpha_beta(
    model: GFR,
    current: jax.Array,
    rate: jax.Array,
    *,
    lr: float = 1e-2,
    n_epochs: int = 200,
    eps: float = 1e-8,
    optimizer: optax.GradientTransformation | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    progress: bool = False,
    bptt_checkpoint: bool | int = False,
    method: str = "adam",
    tol: float = 1e-10,
) -> Any:
    """Stage 2 on given sweeps: train ``alpha`` and ``beta`` of ``model`` (``g`` and ``lambda``
    frozen by a filter spec) on ``current``/``rate`` of shape (sweeps, T) (pA, spikes/ms) on the
    torch-convention Poisson NLL of counts (mean over sweeps, sum over bins).

    ``method="adam"`` (GRNN's optimiser; full batch, :func:`spikejax.core.fit`, ``n_epochs`` steps)
    or ``"bfgs"`` (optimistix BFGS on the 2n parameters, at most ``n_epochs`` iterations, tolerance
    ``tol``; converges far more tightly on small problems, e.g. parameter recovery).
    Returns :class:`spikejax.core.FitResult` (``history["per_bin"]``: per-bin NLL).
    """
    from ..core.errors import check_array

    cur = check_array(current, "current", ndim=2)
    r = check_array(rate, "rate", shape=cur.shape, low=0.0)
    batch = {"current": cur, "rate": r, "n_sweeps": jnp.asarray(cur.shape[0]), "n_bins": jnp.asarray(cur.shape[1]),
             "dt": jnp.asarray(float(model.bin_size), cur.dtype)}

    def loss(m, _batch, key):
        return stage2_loss(m, batch, eps=eps, checkpoint=bptt_checkpoint)

    if method == "bfgs":
        import optimistix as optx

        from ..core.training import FitResult

        def objective(y, _):
            m = eqx.tree_at(lambda m: (m.alpha, m.beta), model, y)
            return stage2_loss(m, batch, eps=eps, checkpoint=bptt_checkpoint)[1]["per_bin"]

        sol = optx.minimise(objective, optx.BFGS(rtol=tol, atol=tol), (model.alpha, model.beta), max_steps=max(int(n_epochs), 1), throw=False)
        fitted = eqx.tree_at(lambda m: (m.alpha, m.beta), model, sol.value)
        final = float(objective(sol.value, None))
        if not np.isfinite(final):
            raise NonFiniteError("fit_alpha_beta(method='bfgs') ended with a non-finite loss; try float64 or Adam")
        steps = int(sol.stats["num_steps"])
        reason = "completed" if sol.result == optx.RESULTS.successful else "max_steps"
        return FitResult(fitted, None, {"step": np.asarray([steps]), "per_bin": np.asarray([final])}, steps, reason)
    if method != "adam":
        raise ConfigError(f"method must be 'adam' or 'bfgs', got {method!r}")
    return core_fit(
        model, loss, None, optimizer=optimizer or optax.adam(lr), key=jax.random.PRNGKey(0), n_steps=n_epochs,
        filter_spec=_gfr_spec(model), has_aux=True, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
        progress=progress, desc="fit_alpha_beta",
    )
