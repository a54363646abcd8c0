"""V1 layer-5 rate network (CS / CC / PV / SST) with plasticity, selectivity analysis and tuning.

A JAX port of the firing-rate model of Jieran-S/L5Neuron_RateModel (see ``docs/l5.md``):
network construction from the Campagnola 2022 type-level matrices, the counter-phase grating,
faithful (bugs included) and corrected plasticity rules, the exact selectivity metrics, the
original's output tables and TPE search, plus gradient-based tuning and vmapped sweeps.
"""

from . import metrics
from .constrained import Constraints, constraint_terms, plot_validation, tpe_constrained, tune_constrained, validate_tuned
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
from .network import Network, build_network, head_type_weights, sample_connectivity, spectral_normalize
from .outputs import L5Result, evaluate, head_loss, meta_data, run, selectivity_df, summary_info, weight_df
from .params import indegree, load_input_table, load_params, w_compare
from .search import SPACE, tpe_search
from .simulate import L5Params, SimOutput, Spec, apply_gain, make_spec, replace_params, simulate, simulate_config
from .sweep import random_settings, sweep_settings
from .tune import TuneParams, TuneResult, check_tuned, soft_relative_indices, tune

__all__ = [
    "metrics", "INTEGRATORS", "NEURON_MODES", "NONLINEARITIES", "PHASE_KEYS", "RULES", "STIMULI", "TYPES",
    "VARIANTS", "L5Config", "debug_config", "load_config", "phase_list_of", "Network", "build_network",
    "head_type_weights", "sample_connectivity", "spectral_normalize", "L5Result", "evaluate", "head_loss",
    "meta_data", "run", "selectivity_df", "summary_info", "weight_df", "indegree", "load_input_table",
    "load_params", "w_compare", "SPACE", "tpe_search", "L5Params", "SimOutput", "Spec", "apply_gain",
    "make_spec", "replace_params", "simulate", "simulate_config", "random_settings", "sweep_settings",
    "TuneParams", "TuneResult", "check_tuned", "soft_relative_indices", "tune",
    "Constraints", "constraint_terms", "tune_constrained", "tpe_constrained", "validate_tuned", "plot_validation",
]
