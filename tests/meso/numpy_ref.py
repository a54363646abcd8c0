"""Float64 NumPy reference of the neuLVM objective, written from the spec in the original's loop style.

One Python loop over time bins, numpy arrays over (population, age) — the way the neuLVM code
evaluates its loss for the M-step. Used by the tests (equations) and by ``benchmarks/meso.py``
(loss evaluations per second against the JAX implementation).
"""

from __future__ import annotations

import math

import numpy as np


def stationary(amem, J_eff, mu, theta, A0, t_ref, dt, n, sub=4):
    h = mu + (J_eff.T @ A0) / amem
    ages = np.arange(n) * dt
    V = np.where(ages[None, :] < t_ref - 1e-12, 0.0, h[:, None] * (1 - np.exp(-amem[:, None] * ages[None, :])))
    logS = np.zeros((len(h), n))
    dr = dt / sub
    for m in range(len(h)):
        r = np.arange((n - 1) * sub + 1) * dr
        Vr = h[m] * (1 - np.exp(-amem[m] * r))
        lam = np.where(r < t_ref - 1e-12, 0.0, np.exp(Vr - theta[m]))
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (lam[1:] + lam[:-1]) * dr)])
        logS[m] = -cum[::sub]
    return V, logS, h


def neulvm_loss(x, asyn, conmat, N, Z, y, y_hist, I_ext=None, *, dt=0.004, t_ref=0.004, n_age=250,
                free_bin=False, integrator="exact", return_zbar=False):
    """neuLVM objective (L_y + L_Z per population and bin) for the 12-vector ``x``.

    Z (T, M), y (T, M, n), y_hist (K, M, n) binary. ``free_bin`` keeps ages beyond ``n_age`` in
    one bin (Schwalger), else they are dropped (neuLVM).
    """
    M = len(N)
    amem, J, mu, theta = (np.asarray(x[i * M:(i + 1) * M], float) for i in range(4))
    N = np.asarray(N, float)
    J_eff = np.asarray(conmat, float) * J[:, None]
    T = Z.shape[0]
    K = n_age
    A0 = y_hist.mean(axis=(0, 2)) / dt
    a = np.exp(-amem * dt) if integrator == "exact" else 1 - amem * dt
    es = np.exp(-np.asarray(asyn) * dt)
    ref = int(math.ceil(t_ref / dt - 1e-9))
    H = max(K + 1, 250)
    V_all, logS_all, h = stationary(amem, J_eff, mu, theta, A0, t_ref, dt, H)
    V = V_all[:, :K].copy()
    logS = logS_all[:, :K].copy()
    Zh = np.tile((A0 * dt)[:, None], (1, K))
    if free_bin:
        S_old = np.exp(logS_all[:, K:250])
        x_f = (A0 * dt * S_old.sum(1)) if K < 250 else np.zeros(M)
        z_f = (A0 * dt * (S_old * (1 - S_old)).sum(1)) if K < 250 else np.zeros(M)
        V_f = V_all[:, K].copy()
    syn = A0.copy()
    # observed neurons
    n = y.shape[2]
    age = np.zeros((M, n), int)
    for m in range(M):
        for i in range(n):
            idx = np.flatnonzero(y_hist[::-1, m, i])
            age[m, i] = idx[0] if idx.size else 0
    Vo = np.where(age * dt < t_ref - 1e-12, 0.0, h[:, None] * (1 - np.exp(-amem[:, None] * age * dt)))
    L_Z = 0.0
    L_y = 0.0
    zbars = np.zeros((T, M))
    for t in range(T):
        if t > 0:
            syn = es * syn + (1 - es) * Z[t - 1] / dt
        I = J_eff.T @ syn
        if I_ext is not None:
            I = I + I_ext[t]
        c = mu + I / amem
        # population
        V = a[:, None] * V + ((1 - a) * c)[:, None]
        V[:, :ref] = 0.0
        lam = np.exp(V - theta[:, None])
        lam[:, :ref] = 1e-8
        P = np.where(lam * dt < 0.01, lam * dt, 1 - np.exp(-lam * dt)) if integrator == "euler" else 1 - np.exp(-lam * dt)
        S = np.exp(logS)
        m_ = S * Zh
        v_ = (1 - S) * m_
        sm, spm, sv, spv = m_.sum(1), (P * m_).sum(1), v_.sum(1), (P * v_).sum(1)
        if free_bin:
            V_f = a * V_f + (1 - a) * c
            lf = np.exp(V_f - theta)
            Pf = np.where(lf * dt < 0.01, lf * dt, 1 - np.exp(-lf * dt)) if integrator == "euler" else 1 - np.exp(-lf * dt)
            sm, spm, sv, spv = sm + x_f, spm + Pf * x_f, sv + z_f, spv + Pf * z_f
        Lam = np.where(sv > 0, spv / np.where(sv > 0, sv, 1), 0.0)
        zbar = np.clip(spm + Lam * (1 - sm), 0, 1)
        zbars[t] = zbar
        var = zbar / N + 0.1 * dt / N
        L_Z += np.sum(0.5 * (Z[t] - zbar) ** 2 / var + 0.5 * np.log(var) + 0.5 * np.log(2 * np.pi))
        # observed neurons
        Vo = a[:, None] * Vo + ((1 - a) * c)[:, None]
        Vo[age < ref] = 0.0
        lo = np.where(age < ref, 1e-8, np.exp(Vo - theta[:, None]))
        xo = lo * dt
        log_p1 = np.log(-np.expm1(-xo))
        L_y -= np.sum(np.where(y[t] > 0, log_p1, -xo))
        age = age + 1
        age[y[t] > 0] = 0
        Vo[y[t] > 0] = 0.0
        # shift the age axis
        logS_new = logS - lam * dt
        if free_bin:
            S_e = np.exp(logS_new[:, -1])
            m_e = S_e * Zh[:, -1]
            kept = (1 - Pf) * x_f
            x_new = kept + m_e
            z_f = (1 - Pf) ** 2 * z_f + Pf * x_f + (1 - S_e) * m_e
            V_f = np.where(x_new > 0, (kept * V_f + m_e * V[:, -1]) / np.where(x_new > 0, x_new, 1), V_f)
            x_f = x_new
        V = np.concatenate([np.zeros((M, 1)), V[:, :-1]], 1)
        logS = np.concatenate([np.zeros((M, 1)), logS_new[:, :-1]], 1)
        Zh = np.concatenate([Z[t][:, None], Zh[:, :-1]], 1)
    out = (L_y / (M * T) + L_Z / (M * T), L_y / (M * T), L_Z / (M * T))
    return (out, zbars) if return_zbar else out
