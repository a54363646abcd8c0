"""Evaluation: ridge maps to true latents, rate R², and the NLB'21 metrics (nlb_tools formulas).

R² conventions (spec §9.10) — each function states which one it uses:

* :func:`ridge_r2`: RADICaL tutorial — ridge (α, unpenalised intercept) from features to latents
  fitted on training trials, ``R² = 1 − SS_res/SS_tot`` **per latent dimension** on held-out trials
  over all their time points.
* :func:`rate_r2`: scikit-learn ``r2_score`` uniform average over neurons of flattened
  (trials × time) rates (lfads-torch, sbtt-demo).
* :func:`calibrated_rate_r2`: per-neuron affine map (fitted on training trials) from inferred rates
  to true rates, then :func:`rate_r2` on held-out trials; used when the inferred quantity is in
  other units (ZIG event rate vs true spikes/s).
* NLB: :func:`co_bps`, :func:`fp_bps` (Poisson bits/spike with exact lgamma, rates ≤ 0 → 1e-9,
  null = each neuron's mean count, NaN targets ignored), :func:`velocity_r2` (ridge with 5-fold CV
  over ``logspace(-4, 0, 9)``, uniform R² over velocity dims), :func:`psth_r2`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln

from ..core.errors import ShapeError

__all__ = ["ridge_fit", "ridge_predict", "ridge_r2", "r2_per_dim", "rate_r2", "calibrated_rate_r2",
           "poisson_ll", "bits_per_spike", "co_bps", "fp_bps", "velocity_r2", "psth_r2"]


def _flat(a):
    a = np.asarray(a, dtype=float)
    return a.reshape(-1, a.shape[-1])


def ridge_fit(x, y, alpha: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression ``y ≈ x W + b`` with an unpenalised intercept; all-zero feature columns dropped.

    ``x``: (..., features), ``y``: (..., outputs), flattened over the leading axes. Returns (W, b).
    """
    x, y = _flat(x), _flat(y)
    if x.shape[0] != y.shape[0]:
        raise ShapeError(f"ridge_fit: x has {x.shape[0]} samples but y has {y.shape[0]}")
    keep = np.any(x != 0, axis=0)
    xm, ym = x[:, keep].mean(0), y.mean(0)
    xc, yc = x[:, keep] - xm, y - ym
    a = xc.T @ xc + alpha * np.eye(xc.shape[1])
    w = np.zeros((x.shape[1], y.shape[1]))
    w[keep] = np.linalg.solve(a, xc.T @ yc)
    b = ym - xm @ w[keep]
    return w, b


def ridge_predict(x, w, b) -> np.ndarray:
    """Apply a ridge map from :func:`ridge_fit`: ``x @ w + b`` (x of shape (samples, features))."""
    x = np.asarray(x, dtype=float)
    return x @ w + b


def r2_per_dim(y_true, y_pred) -> np.ndarray:
    """``1 − SS_res/SS_tot`` per output column over all flattened samples."""
    yt, yp = _flat(y_true), _flat(y_pred)
    return 1.0 - ((yt - yp) ** 2).sum(0) / ((yt - yt.mean(0)) ** 2).sum(0)


def ridge_r2(x_train, y_train, x_test, y_test, *, alpha: float = 0.01) -> np.ndarray:
    """Held-out R² per latent dimension of a ridge map fitted on the training trials (RADICaL tutorial)."""
    w, b = ridge_fit(x_train, y_train, alpha)
    return r2_per_dim(y_test, ridge_predict(_flat(x_test), w, b))


def rate_r2(pred, true) -> float:
    """scikit-learn ``r2_score`` (uniform average over neurons) of flattened trials × time."""
    r2 = r2_per_dim(true, pred)
    return float(np.mean(r2))


def calibrated_rate_r2(pred_train, true_train, pred_test, true_test) -> float:
    """Per-neuron affine calibration on training trials, then :func:`rate_r2` on test trials."""
    pt, tt = _flat(pred_train), _flat(true_train)
    pv, tv = _flat(pred_test), _flat(true_test)
    out = np.empty_like(pv)
    for n in range(pt.shape[1]):
        a = np.stack([pt[:, n], np.ones(len(pt))], 1)
        coef = np.linalg.lstsq(a, tt[:, n], rcond=None)[0]
        out[:, n] = coef[0] * pv[:, n] + coef[1]
    return rate_r2(out, tv)


def poisson_ll(rates, counts) -> float:
    """Total Poisson log-likelihood with exact ``lgamma`` over non-NaN entries (nlb_tools)."""
    r, c = np.asarray(rates, dtype=float), np.asarray(counts, dtype=float)
    if r.shape != c.shape:
        raise ShapeError(f"rates {r.shape} and counts {c.shape} must have the same shape")
    m = ~np.isnan(c)
    r = np.where(r <= 0, 1e-9, r)
    return float(np.sum((c * np.log(r) - r - gammaln(c + 1))[m]))


def bits_per_spike(rates, counts) -> float:
    """NLB bits/spike: ``(LL(model) − LL(null)) / (n_spikes · ln 2)``, null = per-neuron mean count."""
    r, c = np.asarray(rates, dtype=float), np.asarray(counts, dtype=float)
    n = c.shape[-1]
    c2 = c.reshape(-1, n)
    null = np.nanmean(c2, axis=0, keepdims=True) * np.ones_like(c2)
    total = np.nansum(c2)
    return (poisson_ll(r.reshape(-1, n), c2) - poisson_ll(null, c2)) / (total * math.log(2))


def co_bps(eval_rates_heldout, eval_spikes_heldout) -> float:
    """Co-smoothing bits/spike on held-out neurons (trials × time × neurons, counts per bin)."""
    return bits_per_spike(eval_rates_heldout, eval_spikes_heldout)


def fp_bps(eval_rates_forward, eval_spikes_forward) -> float:
    """Forward-prediction bits/spike (held-in and held-out neurons concatenated)."""
    return bits_per_spike(eval_rates_forward, eval_spikes_forward)


def _kfold_ridge_score(x, y, alpha, n_folds=5):
    n = len(x)
    edges = np.linspace(0, n, n_folds + 1).astype(int)
    scores = []
    for i in range(n_folds):
        te = np.zeros(n, bool)
        te[edges[i]:edges[i + 1]] = True
        w, b = ridge_fit(x[~te], y[~te], alpha)
        scores.append(np.mean(r2_per_dim(y[te], ridge_predict(x[te], w, b))))
    return float(np.mean(scores))


def velocity_r2(train_rates, train_vel, eval_rates, eval_vel, *, alphas=None, n_folds: int = 5) -> float:
    """NLB velocity decoding: ridge from rates to velocity, α by K-fold CV on train, R² on eval.

    Rates (trials × time × neurons, held-in and held-out concatenated) and velocities (trials ×
    time × 2) are flattened over trials × time (the behavioural lag is applied by the caller).
    """
    alphas = np.logspace(-4, 0, 9) if alphas is None else np.asarray(alphas)
    xt, yt = _flat(train_rates), _flat(train_vel)
    xe, ye = _flat(eval_rates), _flat(eval_vel)
    best = max(alphas, key=lambda a: _kfold_ridge_score(xt, yt, a, n_folds))
    w, b = ridge_fit(xt, yt, best)
    return float(np.mean(r2_per_dim(ye, ridge_predict(xe, w, b))))


def psth_r2(eval_rates, cond_ids, true_psth) -> float:
    """NLB psth R²: mean predicted rates per condition vs reference PSTHs, uniform R² over neurons.

    ``eval_rates``: (trials, time, neurons); ``cond_ids``: (trials,) integers indexing ``true_psth``
    (conditions, time, neurons).
    """
    eval_rates = np.asarray(eval_rates, float)
    true_psth = np.asarray(true_psth, float)
    cond_ids = np.asarray(cond_ids)
    pred = np.stack([eval_rates[cond_ids == c].mean(0) for c in range(true_psth.shape[0])])
    return rate_r2(pred, true_psth)
