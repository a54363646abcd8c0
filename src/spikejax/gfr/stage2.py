"""Stage 2 of GFR fitting: the current and feedback weights ``alpha``, ``beta`` (``g`` frozen by a
filter spec, the decay rates ``lambda`` fixed).

Sweeps are grouped by stimulus type (Long Square, Ramp, Noise 1), each a zero-padded batch; the
order of the type-batches is shuffled once; one Adam step per type-batch per epoch. The loss of a
batch (:func:`stage2_loss`) is the mean over sweeps of the sum over bins of the Poisson NLL of
``f_hat dt`` against ``f dt`` (eps 1e-8, padded bins inside the cell's batch count) plus
``C (||alpha||_0 + ||beta||_0)``, which has no gradient (``C`` has no effect, as in the original);
the logged loss is divided by the padded length and averaged over the epoch's batches. The
gradient comes from the hand-written adjoint of the GFR recursion (:mod:`spikejax.gfr.adjoint`,
the same numbers as autodiff to rounding, 1.6x faster per epoch); ``bptt_checkpoint`` set selects
autodiff of :func:`~spikejax.gfr.model.simulate` with gradient checkpointing instead.
Independent restarts from the same initialisation per learning rate (default 1e-2, 1e-3, 1e-4,
200 epochs each); early stopping when the epoch loss is identical ``patience`` = 3 epochs in a row.

:func:`fit_weights` trains every (cell, learning rate) pair as one member of a
:func:`spikejax.core.fit_population` run; :func:`fit_alpha_beta` fits one model to given sweeps.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core.errors import ConfigError, NonFiniteError
from ..core.likelihoods import poisson_nll
from ..core.population import fit_population
from ..core.training import EarlyStopping, fit as core_fit, trainable
from .adjoint import simulate_adjoint
from .config import ADAM, NO_KEY, FitConfig
from .model import GFR, PolynomialActivation, decay_rates, simulate_rates

__all__ = ["loss", "loss_data", "stage2_loss", "gfr_spec", "fit_weights", "fit_alpha_beta"]


class _Interrupted(Exception):
    """Raised by the test hook ``_stop_after`` to simulate an interruption after a checkpoint."""


def gfr_spec(model: GFR) -> Any:
    """Filter spec of stage 2: ``alpha`` and ``beta`` trainable, ``decay`` and ``g`` frozen."""
    return trainable(model, frozen=lambda m: (m.decay, m.g))


def stage2_loss(model: GFR, batch: dict[str, jax.Array], *, eps: float = 1e-8, C: float = 0.0, checkpoint: bool | int = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Loss of one type-batch: mean over sweeps of the summed Poisson NLL (padded bins inside the
    cell's batch length count; bins/sweeps beyond it — cross-cell padding — are masked).
    ``checkpoint`` false: rates from :func:`~spikejax.gfr.adjoint.simulate_adjoint` (reverse-mode
    only); otherwise autodiff of ``simulate`` with that checkpointing.

    ``batch``: ``current``/``rate`` (S, T), ``n_sweeps``, ``n_bins`` (the cell's own padded batch
    shape) and ``dt``. Returns ``(loss, {"per_bin": loss / n_bins})`` (the logged quantity).
    """
    cur, rate = batch["current"], batch["rate"]
    s, t = cur.shape
    mask = (jnp.arange(s)[:, None] < batch["n_sweeps"]) & (jnp.arange(t)[None, :] < batch["n_bins"])
    pred = simulate_rates(model, cur, checkpoint=checkpoint) if checkpoint else simulate_adjoint(model, cur)
    dt = batch["dt"]
    nll = poisson_nll(pred * dt, rate * dt, mask=mask, convention="torch", eps=eps, reduction="sum")
    n_s = jnp.maximum(batch["n_sweeps"], 1)
    loss = nll / n_s
    per_bin = loss / jnp.maximum(batch["n_bins"], 1)
    # GRNN's "L0" penalty: a count of non-zero weights, whose gradient is zero (C has no effect on training).
    penalty = C * jax.lax.stop_gradient(jnp.count_nonzero(model.alpha) + jnp.count_nonzero(model.beta)).astype(loss.dtype)
    return loss + penalty, {"per_bin": per_bin}


def loss(model: GFR, data: dict[str, Any], *, key: jax.Array | None = None) -> jax.Array:
    """The objective stage 2 of :func:`~spikejax.gfr.fit_cells` minimises for one cell (``alpha``, ``beta``).

    The sum over the cell's stimulus-type batches (Long Square, Ramp, Noise 1) of the batch loss:
    the mean over the batch's sweeps of the summed Poisson NLL (torch convention, ``eps``) of the
    expected counts ``f_hat dt`` against ``f dt`` — one epoch of the fit takes one Adam step per
    type-batch on these terms. Pure and differentiable (reverse mode: the gradient is the
    hand-written adjoint of :mod:`spikejax.gfr.adjoint`); usable inside ``jax.grad``/``jit``/``vmap``.

    Parameters
    ----------
    model
        A :class:`~spikejax.gfr.GFR`.
    data
        The cell's training sweeps as :func:`loss_data` builds them: ``current`` (pA) and ``rate``
        (spikes/ms) of shape ``(G, S, T)`` (type-batches, sweeps, bins; zero-padded) or ``(S, T)``
        (one batch); optional ``n_sweeps``/``n_bins`` ``(G,)`` (each batch's own padded shape; bins
        and sweeps beyond it are masked), ``dt`` (ms, default ``model.dt``) and ``eps`` (1e-8).
    key
        Unused (the objective draws no random numbers); accepted for the common signature.

    Returns
    -------
    scalar (nats).
    """
    cur, rate = _check_loss_inputs(model, data)
    if cur.ndim == 2:
        cur, rate = cur[None], rate[None]
    g_, s, t = cur.shape
    n_sweeps = jnp.broadcast_to(jnp.asarray(data.get("n_sweeps", s)), (g_,))
    n_bins = jnp.broadcast_to(jnp.asarray(data.get("n_bins", t)), (g_,))
    dt = jnp.asarray(data.get("dt", float(model.dt)), cur.dtype)
    eps = data.get("eps", 1e-8)
    total = jnp.zeros((), cur.dtype)
    for j in range(g_):
        batch = {"current": cur[j], "rate": rate[j], "n_sweeps": n_sweeps[j], "n_bins": n_bins[j], "dt": dt}
        total = total + stage2_loss(model, batch, eps=eps)[0]
    return total


def _check_loss_inputs(model: Any, data: Any) -> tuple[jax.Array, jax.Array]:
    """Validate the arguments of :func:`loss` (shapes always; values only outside ``jit``)."""
    from ..core.errors import DataFormatError, check_array
    from .model import check_model

    check_model(model)
    if not isinstance(model, GFR):
        raise TypeError(f"model must be a single GFR neuron, got {type(model).__name__}")
    if not isinstance(data, dict):
        raise TypeError(f"data must be a dict as loss_data builds it (current, rate, ...), got {type(data).__name__}")
    missing = [k for k in ("current", "rate") if k not in data]
    if missing:
        raise DataFormatError(f"data is missing required key(s) {missing} (see loss_data); it has {sorted(data)}")
    dims: dict[str, int] = {}
    cur = check_array(data["current"], "data['current']", ndim=(2, 3))
    shape = ("G", "S", "T")[3 - cur.ndim:]
    check_array(cur, "data['current']", shape, dims=dims)
    rate = check_array(data["rate"], "data['rate']", shape, dims=dims, low=0.0)
    for k in ("n_sweeps", "n_bins"):
        if k in data:
            check_array(data[k], f"data[{k!r}]", low=0, integer=True)
    if "dt" in data:
        check_array(data["dt"], "data['dt']", (), low=0.0)
    if "eps" in data:
        check_array(data["eps"], "data['eps']", (), low=0.0)
    return cur, rate


def loss_data(cell: Any, config: FitConfig | None = None) -> dict[str, Any]:
    """The data of :func:`loss` for one preprocessed cell (:class:`~spikejax.gfr.CellData`): its
    training sweeps at ``config.dt``, grouped by stimulus type and zero-padded, as ``fit_cells`` uses them."""
    from .cells import prepare_cell, stack_cells

    config = config or FitConfig()
    prep = prepare_cell(cell, config)
    groups = stack_cells([prep], config)["groups"]
    out = {k: groups[k][:, 0] for k in ("current", "rate", "n_sweeps", "n_bins")}
    out["dt"] = jnp.asarray(float(config.dt), out["current"].dtype)
    out["eps"] = float(config.eps)
    return out


@functools.lru_cache(maxsize=None)
def _member_loss(sampled: bool, bptt_checkpoint: bool | int):
    """The loss of one (cell, learning rate) member on one type-batch; ``eps`` and ``C`` are traced
    per-member arguments. ``sampled``: the batch carries a leading axis of one type-batch (the
    common-shape layout). Cached, so that repeated fits reuse their compiled program."""

    def loss(model, batch, key, *, args):
        if sampled:
            batch = jax.tree_util.tree_map(lambda a: a[0], batch)
        return stage2_loss(model, batch, eps=args["eps"], C=args["C"], checkpoint=bptt_checkpoint)

    return loss


def _absent(batch) -> jax.Array:
    """A cell without sweeps of this stimulus type skips the step (no Adam update)."""
    return batch["n_sweeps"] == 0


def _absent_sampled(batch) -> jax.Array:
    return batch["n_sweeps"][0] == 0


def fit_weights(
    g_host: dict[str, np.ndarray],
    config: FitConfig,
    data: dict[str, Any],
    *,
    shared_padding: bool,
    epochs_per_chunk: int,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Fit ``alpha``/``beta`` of every (cell, learning rate) pair from the same initialisation.

    ``g_host``: the fitted activations (numpy leaves with a leading cell axis, see
    :func:`spikejax.gfr.activation_fit.fit_activations`); ``data``: :func:`spikejax.gfr.cells.stack_cells`.
    ``shared_padding``: all type-batches padded to one shape and scanned over, else each padded to
    its own shape and the steps unrolled. Returns the fitted ``models`` (a GFR with leaves (cells,
    learning rates, ...)), ``history`` (epochs, cells, learning rates) of the per-bin loss (NaN
    after a member stopped), ``epochs``, ``last_loss`` and ``status`` (cells, learning rates).
    """
    n_cells, n_l = int(np.shape(g_host["b"])[0]), len(config.learning_rates)
    m = n_cells * n_l  # member = cell * n_l + learning rate
    dt = jnp.result_type(float)
    lam = decay_rates(config.dt)
    n = lam.size
    host_dt = np.dtype(dt)
    rep = lambda a: np.repeat(np.asarray(a), n_l, axis=0).astype(host_dt)  # noqa: E731
    alpha0 = np.zeros((m, n), host_dt)
    alpha0[:, 0] = n
    g = PolynomialActivation(*(rep(g_host[k]) for k in ("poly_coeff", "b", "max_current", "max_firing_rate")), config.activation_dt)
    stack = GFR(alpha0, np.zeros((m, n), host_dt), np.broadcast_to(np.asarray(lam, host_dt), (m, n)).copy(), g, config.dt, config.kappa)
    groups = data["groups"]  # leaves (G, C, ...)
    host = {k: np.asarray(v) for k, v in groups.items()}  # re-laid out on the host: no device programs
    if shared_padding:  # (C, G, S, T): one type-batch per step, scanned
        layout = dict(data={k: jnp.asarray(np.moveaxis(v, 0, 1)) for k, v in host.items()}, batch_size=1, shuffle=False)
        loss, skip = _member_loss(True, config.bptt_checkpoint), _absent_sampled
    else:  # one (C, S_j, T_j) batch per type, unrolled
        batches = []
        for j, (s_j, t_j) in enumerate(data["group_shapes"]):
            batches.append({k: jnp.asarray(v[j, :, :s_j, :t_j] if v.ndim == 4 else v[j]) for k, v in host.items()})
        layout = dict(batches=batches)
        loss, skip = _member_loss(False, config.bptt_checkpoint), _absent
    hook = None
    if stop_after is not None:
        calls = []

        def hook(state, history):
            calls.append(state.epoch)
            if len(calls) > stop_after:  # the checkpoints of the first stop_after chunks are written
                raise _Interrupted(f"interrupted after {state.epoch} epochs (test hook)")

    budgets = np.tile(np.asarray(config.n_epochs, np.int64), n_cells)
    res = fit_population(
        stack, loss, optimizer=ADAM, key=NO_KEY, n_epochs=budgets, member_data=True,
        data_index=np.repeat(np.arange(n_cells, dtype=np.int32), n_l), skip_step=skip, has_aux=True,
        filter_spec=gfr_spec(stack), args={"eps": np.full(m, config.eps, host_dt), "C": np.full(m, config.C, host_dt)},
        hyperparams={"learning_rate": np.tile(config.learning_rates, n_cells)},
        early_stopping=EarlyStopping(patience=config.patience, monitor="train/per_bin", rule="unchanged"),
        epochs_per_chunk=epochs_per_chunk, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
        resume=resume, between_chunks=hook, progress=False, **layout,
    )
    if np.any(res.status == "diverged"):
        bad = sorted({int(i) // n_l for i in np.flatnonzero(res.status == "diverged")})
        if len(bad) and np.all((res.status == "diverged").reshape(n_cells, n_l)[bad], axis=1).any():
            raise NonFiniteError(
                "a parameter became NaN/inf while fitting (every learning rate of a cell diverged); lower the learning "
                "rates or enable float64 (jax.config.update('jax_enable_x64', True))"
            )
    grid = lambda a: np.asarray(a).reshape((n_cells, n_l) + np.shape(a)[1:])  # noqa: E731
    models = jax.tree_util.tree_map(lambda a: grid(a) if eqx.is_array(a) else a, res.population)
    hist = res.curves["per_bin"][: res.n_epochs]
    epochs = np.asarray(res.epochs)
    last = hist[np.maximum(epochs - 1, 0), np.arange(m)] if len(hist) else np.full(m, np.nan)
    last = np.where(epochs > 0, last, np.nan)
    return {"models": models, "history": hist.reshape(len(hist), n_cells, n_l), "epochs": grid(epochs),
            "last_loss": grid(last), "status": grid(res.status)}


def fit_alpha_beta(
    model: GFR,
    current: jax.Array,
    rate: jax.Array,
    *,
    learning_rate: float = 1e-2,
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

    ``method="adam"`` (GRNN's optimiser, step size ``learning_rate``; full batch, :func:`spikejax.core.fit`, ``n_epochs`` steps)
    or ``"bfgs"`` (optimistix BFGS on the 2n parameters, at most ``n_epochs`` iterations, tolerance
    ``tol``; converges far more tightly on small problems, e.g. parameter recovery).
    Returns :class:`~spikejax.gfr.GFRFitAlphaBetaResult` (``history``: ``step``, ``loss``, ``per_bin``
    (per-bin NLL)). No random numbers are drawn (full batch, deterministic init).
    """
    import time

    from ..core.errors import check_array
    from ..core.results import StopReason, history_frame
    from .results import GFRFitAlphaBetaResult, gfr_structure

    t0 = time.perf_counter()

    from ..core.errors import check_scalar
    from .model import check_model

    check_model(model)
    if not isinstance(model, GFR):
        raise TypeError(f"model must be a single GFR neuron, got {type(model).__name__}")
    if method not in ("adam", "bfgs"):
        raise ConfigError(f"method must be 'adam' or 'bfgs', got {method!r}")
    check_scalar(learning_rate, "learning_rate", low=0.0, low_inclusive=False)
    check_scalar(n_epochs, "n_epochs", low=0, integer=True)
    check_scalar(eps, "eps", low=0.0, low_inclusive=False)
    check_scalar(tol, "tol", low=0.0, low_inclusive=False)
    cur = check_array(current, "current", ndim=2)
    r = check_array(rate, "rate", shape=cur.shape, low=0.0)
    batch = {"current": cur, "rate": r, "n_sweeps": jnp.asarray(cur.shape[0]), "n_bins": jnp.asarray(cur.shape[1]),
             "dt": jnp.asarray(float(model.dt), cur.dtype)}

    def loss(m, _batch, key):
        return stage2_loss(m, batch, eps=eps, checkpoint=bptt_checkpoint)

    if method == "bfgs":
        import optimistix as optx

        def objective(y, _):
            m = eqx.tree_at(lambda m: (m.alpha, m.beta), model, y)
            return stage2_loss(m, batch, eps=eps, checkpoint=bptt_checkpoint)[1]["per_bin"]

        sol = optx.minimise(objective, optx.BFGS(rtol=tol, atol=tol), (model.alpha, model.beta), max_steps=max(int(n_epochs), 1), throw=False)
        fitted = eqx.tree_at(lambda m: (m.alpha, m.beta), model, sol.value)
        final = float(objective(sol.value, None))
        if not np.isfinite(final):
            raise NonFiniteError("fit_alpha_beta(method='bfgs') ended with a non-finite loss; try float64 or Adam")
        steps = int(sol.stats["num_steps"])
        reason = StopReason.CONVERGED if sol.result == optx.RESULTS.successful else StopReason.COMPLETED
        hist = history_frame({"step": np.asarray([steps]), "loss": np.asarray([final]), "per_bin": np.asarray([final])}, "step")
        return GFRFitAlphaBetaResult(model=fitted, history=hist, stop_reason=reason, seconds=time.perf_counter() - t0,
                                     structure=gfr_structure(model))
    if method != "adam":
        raise ConfigError(f"method must be 'adam' or 'bfgs', got {method!r}")
    res = core_fit(
        model, loss, None, optimizer=optimizer or optax.adam(learning_rate), key=NO_KEY, n_steps=n_epochs,
        filter_spec=gfr_spec(model), has_aux=True, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
        progress=progress, desc="fit_alpha_beta",
    )
    return GFRFitAlphaBetaResult(model=res.model, history=history_frame(res.curves, "step"), stop_reason=StopReason.of(res.stop_reason),
                                 seconds=time.perf_counter() - t0, structure=gfr_structure(model))
