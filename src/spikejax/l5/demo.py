"""The L5 part of ``spikejax demo``: the original's debug configuration, one gradient tuning toward
os_rel < 0 and ds_rel > 0 (checked on fresh seeds with the exact metrics), and figures."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from ..core.io import save_figure, save_json

__all__ = ["run"]


def _tune_figure(history, before, after):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(history["step"], history["os_rel_soft"], label="os_rel (soft)")
    axes[0].plot(history["step"], history["ds_rel_soft"], label="ds_rel (soft)")
    axes[0].axhline(0, color="k", lw=0.5)
    axes[0].set_xlabel("Adam step")
    axes[0].legend()
    axes[0].set_title("gradient tuning (training seeds)")
    x = np.arange(2)
    for i, (name, res) in enumerate((("initial", before), ("tuned", after))):
        axes[1].bar(x + 0.35 * i, [res["os_rel"], res["ds_rel"]], 0.35,
                    yerr=[res["os_rel_sd"], res["ds_rel_sd"]], capsize=5, label=name)
    axes[1].set_xticks(x + 0.175, ["os_rel", "ds_rel"])
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].legend()
    axes[1].set_title("exact indices, fresh seeds (error bar: s.d. across seeds)")
    fig.tight_layout()
    return fig


def run(out_dir: Path, *, quick: bool = False, seed: int = 0) -> dict:
    """Run the L5 demo into ``out_dir`` and return a JSON-able summary."""
    from .config import debug_config
    from .outputs import run as run_config
    from .plots import save_figures
    from .tuning import check_tuned, tune

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if quick:
        cfg = debug_config(N=[9, 55, 9, 7], sim_number=2, Ttau=80, number_steps_before_learning=200, seed=seed)
        tcfg = cfg.replace(learning_rule="None", threshold_filter="ema", sim_number=1)
        n_tune, n_check = 3, 2
    else:
        cfg = debug_config(seed=seed)
        tcfg = cfg.replace(learning_rule="None", threshold_filter="ema", sim_number=2, Ttau=80)
        n_tune, n_check = 15, 5  # the debug configuration meets os_rel < 0, ds_rel > 0 from about 10 steps
    res = run_config(cfg, key=jax.random.PRNGKey(seed))  # the demo's seed made a key explicitly
    res.save(out_dir / "debug_config")
    save_figures(res, out_dir / "debug_config")
    after = res.selectivity_df.loc["after"]

    tuned = tune(tcfg, key=jax.random.PRNGKey(seed + 1), n_epochs=n_tune, learning_rate=0.05, margin=0.35)
    fresh = jax.random.PRNGKey(seed + 12345)
    from .model import L5Params
    from .network import build_network

    fresh_net = build_network(tcfg.replace(sim_number=n_check), key=fresh)  # both checks on the same networks
    before = check_tuned(tcfg, L5Params.from_config(tcfg), key=fresh, net=fresh_net)
    check = check_tuned(tcfg, tuned.params, key=fresh, net=fresh_net)
    if not check["target_met"]:
        from ..core.errors import warn_target_missed

        warn_target_missed(f"l5 demo{' (quick run)' if quick else ''}: the tuned network misses os_rel < 0 and "
                           f"ds_rel > 0 on fresh seeds (os_rel {check['os_rel']:.3g}, ds_rel {check['ds_rel']:.3g})",
                           stacklevel=2)
    save_json(out_dir / "tuning.json", {"params": tuned.summary(), "history": tuned.history.to_dict(orient="list"),
                                        "initial_fresh_seeds": before, "tuned_fresh_seeds": check})
    save_figure(_tune_figure(tuned.history, before, check), out_dir / "tuning.png")
    r = lambda x: round(float(x), 4)  # noqa: E731
    return {
        "debug_config": {
            "mean_act": [r(x) for x in after.loc["Mean_act"]],
            "OS": [r(x) for x in after.loc["Mean_of_OS"]],
            "DS": [r(x) for x in after.loc["Mean_of_DS"]],
            "os_rel": res.summary_info["Real_OS"],
            "ds_rel": res.summary_info["Real_DS"],
            "nan_counter": res.summary_info["nan_counter"],
        },
        "tuned_fresh_seeds": {"os_rel": r(check["os_rel"]), "os_rel_sd": r(check["os_rel_sd"]),
                              "ds_rel": r(check["ds_rel"]), "ds_rel_sd": r(check["ds_rel_sd"])},
        "tuned_amplitude": tuned.summary()["amplitude"],
        "target_met": bool(check["target_met"]),
    }
