"""Independent float64 NumPy reference of the faithful L5 model (written from the spec, section 2-4).

One run = one network, one direction. The history of rates is kept explicitly and the threshold
windows are re-integrated every step (the slow, literal way), so this checks the recursive
filters of the JAX implementation as well as the dynamics and the rules.
"""

from __future__ import annotations

import numpy as np

PHASES = {
    "No_Alter": ["all"] * 10,
    "CC_CS_Alter": ["CS"] * 10 + ["CC"] * 10 + ["Rest"] * 10,
    "All_Alter": ["CS"] * 10 + ["CC"] * 10 + ["PV"] * 10 + ["SST"] * 10 + ["Rest"] * 10,
}


def reference_run(*, W0, r0, a, b, theta, N, amplitude, steady, tau, dt, steps, n_before, tau_learn,
                  tau_threshold, rule, integrator, neurons="all", phase_key="No_Alter", spatialF=10.0,
                  temporalF=50.0, spatialPhase=1.0, lo=0.01, hi=500.0):
    N = list(N)
    n = sum(N)
    types = np.concatenate([[k] * N[k] for k in range(4)])
    sgn = np.where(types < 2, 1.0, -1.0)
    amp = np.asarray(amplitude, float)[types]
    std = np.asarray(steady, float)[types]
    s = a * np.cos(theta) + b * np.sin(theta)
    L = int(-1 * (tau_threshold / dt) * np.log(0.1))

    def u_of(t):
        temporal = np.where(std == 1, np.cos(temporalF), np.cos(temporalF * t))
        return amp * np.cos(spatialF * s - spatialPhase) * temporal

    def f_rate(r, W, u):
        return (-r + np.clip(W @ r + u, lo, hi)) / tau

    # training mask of the neurons mode (faithful)
    exc = types < 2
    if neurons == "all":
        M = np.ones((n, n))
    elif neurons == "excit_only":
        M = np.outer(exc, exc).astype(float)
    else:  # the original's mis-sliced inhibit_only
        M = np.ones((n, n))
        M[:, exc] = 0.0
        M[:80, :] = 0.0
    phases = PHASES[phase_key]

    hist = [r0.copy()]
    W = W0.copy()
    rs, Ws = [], []
    for t in range(steps):
        u = u_of(t)
        r = hist[-1]
        if integrator == "forward_euler":
            r_new = r + dt * f_rate(r, W, u)
        else:
            k1 = f_rate(r, W, u)
            k2 = f_rate(r + 0.5 * k1 * dt, W, u)
            k3 = f_rate(r + 0.5 * k2 * dt, W, u)
            k4 = f_rate(r + k3 * dt, W, u)
            r_new = np.clip(r + dt * (k1 / 6 + k2 / 3 + k3 / 3 + k4 / 6), 0, None)
        hist.append(r_new)
        mode = phases[t % len(phases)]
        if t >= n_before and mode != "Rest":
            win = np.asarray(hist[-L:])
            if mode in ("CS", "CC"):
                k = 0 if mode == "CS" else 1
                rowmask = (types == k).astype(float)[:, None]
            else:  # 'all', and 'PV'/'SST' are unimplemented in the original
                rowmask = np.ones((n, 1))
            mask = M * rowmask

            def rule_fn(Wc):
                if rule == "None":
                    G = np.zeros_like(Wc)
                elif rule == "BCM":
                    th = np.var(win, axis=0) + np.mean(win, axis=0) ** 2
                    G = np.outer(r_new * (r_new - th), u) / th[:, None]
                elif rule == "Slide_BCM":
                    m = len(win)
                    w = np.exp(-np.arange(m)[::-1] * dt / tau_threshold)  # newest sample weight 1
                    th = (dt / tau_threshold) * np.sum(w[:, None] * win**2, axis=0)
                    G = np.outer(r_new * (r_new - th), u) / th[:, None] * sgn[None, :]
                elif rule == "Oja":
                    G = np.outer(r_new, r_new + u - Wc @ r_new) * sgn[None, :]
                elif rule == "Cov":
                    d = r_new - win.mean(axis=0)
                    G = np.outer(d, d) * sgn[None, :]
                return mask * G / tau_learn

            if integrator == "forward_euler":
                W = W + dt * rule_fn(W)
            else:
                k1 = rule_fn(W)
                k2 = rule_fn(W + 0.5 * k1 * dt)
                k3 = rule_fn(W + 0.5 * k2 * dt)
                k4 = rule_fn(W + k3 * dt)
                W = np.clip(W + dt * (k1 / 6 + k2 / 3 + k3 / 3 + k4 / 6), 0, None)
        rs.append(r_new)
        Ws.append(W.copy())
    return np.asarray(rs), np.asarray(Ws)


def reference_selectivity(rbar):
    """Exact OS, DS, OS_p from mean rates (4 directions x N), per neuron, by explicit loops."""
    n = rbar.shape[1]
    out = np.zeros((3, n))
    for i in range(n):
        r = rbar[:, i]
        p = int(np.argmax(r))
        pref, opp = r[p], r[(p + 2) % 4]
        orth = 0.5 * (r[(p + 1) % 4] + r[(p + 3) % 4])
        pori = 0.5 * (pref + opp)
        out[:, i] = [(pori - orth) / (pori + orth), (pref - opp) / (pref + opp), (pref - orth) / (pref + orth)]
    return out
