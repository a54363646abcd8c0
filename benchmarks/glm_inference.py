"""Benchmark: connectivity inference, spikejax.glm.fit_connectivity vs nemos PopulationGLM, same data and basis.

Data (simulated by spikejax): a recurrent Poisson GLM of N = 100 neurons with the exponential link
(``PoissonGLM(alpha=1, beta=1, dt=1, r=1)``: ``mu = exp(g)``), 50-step exponential coupling filters
(``c(k) = exp(-k / tau)``, tau = 10 steps), 10 % connectivity (zero diagonal), a shared input ``I(t)``
with per-neuron gains, 20 000 steps. Both libraries get the first 50 steps as history only and fit the
remaining steps with the same basis (the true coupling profile, one basis function) and the input:

* nemos: ``create_convolutional_predictor`` with the (50, 1) basis on every neuron's counts, the input
  appended, ``PopulationGLM(solver_name="LBFGS")`` unregularised (its defaults otherwise);
* spikejax: ``glm.fit_connectivity(model, spikes, inputs=I, initial_window=...)`` (vmapped per-neuron BFGS).

Reported in one run: the log-likelihood at the true parameters from both (nemos ``score(...,
score_type="log-likelihood", aggregate_sample_scores=jnp.sum)`` and ``glm.spike_log_likelihood``), the
recovery correlation on true edges and the mean/sd of the estimate on absent pairs, first and warm wall
time of each fit (warm: the same call again).

Usage::

    python benchmarks/glm_inference.py [--n 100] [--steps 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from spikejax import glm

T_LAGS = 50
TAU = 10.0


def make_data(n: int, n_steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    W = np.zeros((n, n), np.float32)
    mask = rng.random((n, n)) < 0.10
    np.fill_diagonal(mask, False)
    W[mask] = rng.normal(0.0, 0.15, mask.sum()).astype(np.float32)
    gains = rng.uniform(0.2, 1.0, n).astype(np.float32)
    t = np.arange(n_steps)
    I = (0.5 * np.sin(2 * np.pi * t / 500.0) + 0.3 * rng.standard_normal(n_steps)).astype(np.float32)
    model = glm.PoissonGLM(alpha=1.0, beta=1.0, T=T_LAGS, tau=TAU, dt=1.0, r=1.0, b=-3.0)
    I_j = jnp.asarray(I)
    g_j = jnp.asarray(gains)
    traj = glm.simulate(model, glm.from_dense(W), n_steps=n_steps, key=jax.random.key(seed), stimulus=lambda s: g_j * I_j[s],
                        equilibration_steps=200)
    return model, W, gains, I, np.asarray(traj.spikes)  # spikes (n_steps, N)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    import nemos as nmo

    model, W, gains, I, x = make_data(a.n, a.steps)
    n = a.n
    total_spikes = int(x.sum())
    print(f"data: N={n}, {a.steps} steps, {total_spikes} spikes ({total_spikes / x.size:.4f} per neuron-step)", flush=True)
    c = np.exp(-np.arange(T_LAGS) / TAU).astype(np.float32)
    xs = x[T_LAGS:]  # fitted steps
    Is = I[T_LAGS:]
    init_window = x[:T_LAGS][::-1].T  # (N, T): column 0 = previous step
    off = ~np.eye(n, dtype=bool)
    edge = off & (W != 0)
    absent = off & (W == 0)
    out = {"n": n, "n_steps": a.steps, "fitted_steps": int(xs.shape[0]), "spikes": total_spikes}

    # ---- nemos -------------------------------------------------------------------------------------
    def nemos_design():
        conv = nmo.convolve.create_convolutional_predictor(c[:, None], x.astype(np.float32))  # (T, N, 1), NaN head
        X = np.concatenate([np.asarray(conv).reshape(x.shape[0], n), I[:, None]], axis=1)
        return X[T_LAGS:], x[T_LAGS:].astype(np.float32)

    def nemos_fit():
        X, y = nemos_design()
        m = nmo.glm.PopulationGLM(solver_name="LBFGS")
        m.fit(X, y)
        return m, X, y

    t0 = time.perf_counter()
    m, X, y = nemos_fit()
    out["nemos_first_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    m, X, y = nemos_fit()
    out["nemos_warm_s"] = time.perf_counter() - t0
    W_nemos = np.asarray(m.coef_)[:n, :]  # (pre, post)
    gains_nemos = np.asarray(m.coef_)[n]
    b_nemos = np.asarray(m.intercept_)
    # feature check: nemos's design equals spikejax's filtered history
    from spikejax.glm.inference import _features_jit, _initial_state

    hist, aux = _initial_state(model, n, init_window, jnp.float32)
    F, _ = _features_jit(model, jnp.asarray(xs, jnp.float32), None, hist, aux, 4096)
    out["design_max_abs_diff"] = float(np.max(np.abs(np.asarray(F) - X[:, :n])))
    # log-likelihood at the true parameters
    m.coef_ = jnp.asarray(np.concatenate([W, gains[None, :]], axis=0))
    m.intercept_ = jnp.full((n,), -3.0, jnp.float32)
    ll_nemos = float(m.score(X, y, score_type="log-likelihood", aggregate_sample_scores=jnp.sum))
    ll_sj = float(glm.spike_log_likelihood(model, W, xs.T, inputs=Is, gains=gains, initial_window=init_window))
    out["ll_true_nemos"] = ll_nemos
    out["ll_true_spikejax"] = ll_sj
    out["ll_rel_diff"] = abs(ll_nemos - ll_sj) / abs(ll_nemos)

    # ---- spikejax ----------------------------------------------------------------------------------
    def sj_fit():
        return glm.fit_connectivity(model, xs.T, inputs=Is, initial_window=init_window, true_weights=W)

    t0 = time.perf_counter()
    res = sj_fit()
    out["spikejax_first_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = sj_fit()
    out["spikejax_warm_s"] = time.perf_counter() - t0
    W_sj = np.asarray(res.weights)
    out["spikejax_iterations"] = int(res.history["iteration"].iloc[0])
    out["spikejax_converged_pct"] = float(res.history["converged_pct"].iloc[0])

    def stats(Wh):
        return {"r_edges": float(np.corrcoef(Wh[edge], W[edge])[0, 1]), "r_all_pairs": float(np.corrcoef(Wh[off], W[off])[0, 1]),
                "mean_absent": float(Wh[absent].mean()), "sd_absent": float(Wh[absent].std())}

    out["nemos"] = stats(W_nemos)
    out["spikejax"] = stats(W_sj)
    # log-likelihood at each fit's estimate (spikejax's likelihood for both)
    out["ll_fit_spikejax"] = res.log_likelihood
    out["ll_fit_nemos"] = float(glm.spike_log_likelihood(model, W_nemos, xs.T, inputs=Is, gains=gains_nemos, bias=b_nemos + 3.0,
                                                          initial_window=init_window))
    out["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, jax {jax.__version__}, nemos {nmo.__version__}"
    out["load_avg"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
