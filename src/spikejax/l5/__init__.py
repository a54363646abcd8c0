"""V1 layer-5 rate network (CS / CC / PV / SST) with plasticity, selectivity analysis and tuning.

A JAX port of the firing-rate model of Jieran-S/L5Neuron_RateModel (see ``docs/l5.md``):
network construction from the Campagnola 2022 type-level matrices, the counter-phase grating,
faithful (bugs included) and corrected plasticity rules, the exact selectivity metrics, the
original's output tables and TPE search, plus gradient-based tuning and vmapped sweeps.

The family contract (``docs/design.md``): ``model = build_model(config, key=key)``;
``simulate(model) -> L5Trajectory``; ``loss(model, L5Target(...))`` is what :func:`tune`
minimises; :func:`tune` -> :class:`L5TuneResult`, :func:`tune_constrained` /
:func:`tpe_constrained` -> :class:`L5ConstrainedResult`.
"""

from .config import (
    INTEGRATORS,
    NEURON_MODES,
    NONLINEARITIES,
    PHASE_KEYS,
    RULES,
    STIMULI,
    TYPES,
    VARIANTS,
    L5Config,
    debug_config,
    load_config,
    phase_list_of,
)
from .constrained import (
    Constraints,
    L5ConstrainedResult,
    constraint_terms,
    plot_validation,
    tpe_constrained,
    tune_constrained,
    validate_tuned,
)
from .engine import apply_gain, simulate
from .model import L5Model, L5Params, Spec, build_model, make_spec, replace_params
from .network import L5Network, build_network, head_type_weights, sample_connectivity, spectral_normalize
from .objective import L5Target, loss, soft_relative_indices
from .outputs import L5RunResult, evaluate, head_loss, meta_data, run, selectivity_df, summary_info, weight_df
from .params import indegree, load_input_table, load_params, w_compare
from .plots import plot_activity, save_figures, plot_selectivity, plot_weight_traces, plot_weights_vs_target
from .search import SPACE, tpe_search
from .sweep import random_settings, sweep_settings
from .trajectory import L5Trajectory
from .tuning import L5TuneResult, TuneParams, check_tuned, tune

__all__ = [
    # the contract: model, simulate, loss, fitting verbs, their results, configs
    "L5Config", "L5Model", "L5Params", "Spec", "L5Network", "L5Target", "L5Trajectory", "L5RunResult", "L5TuneResult",
    "L5ConstrainedResult", "Constraints", "TuneParams",
    "build_model", "simulate", "loss", "run", "tune", "tune_constrained", "tpe_constrained", "tpe_search",
    "sweep_settings", "random_settings", "check_tuned", "validate_tuned",
    # configs and constants
    "INTEGRATORS", "NEURON_MODES", "NONLINEARITIES", "PHASE_KEYS", "RULES", "STIMULI", "TYPES", "VARIANTS", "SPACE",
    "debug_config", "load_config", "phase_list_of",
    # building blocks
    "build_network", "head_type_weights", "sample_connectivity", "spectral_normalize", "make_spec", "apply_gain",
    "replace_params", "soft_relative_indices", "constraint_terms",
    # the original's tables
    "evaluate", "head_loss", "meta_data", "selectivity_df", "summary_info", "weight_df",
    "indegree", "load_input_table", "load_params", "w_compare",
    # plots
    "plot_activity", "plot_selectivity", "plot_weight_traces", "plot_weights_vs_target", "plot_validation", "save_figures",
]
