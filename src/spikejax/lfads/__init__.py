"""LFADS / AutoLFADS / RADICaL: sequential VAEs for neural population dynamics (spec: shared/spec/lfads.md).

Public API
----------
Model: :class:`LFADSConfig` (bin width ``dt`` in ms), :class:`HParams`, :class:`LFADS`,
:class:`ClippedGRUCell`, observation models :class:`PoissonReadout`, :class:`ZIGReadout`.
Generative model: :func:`simulate` → :class:`LFADSTrajectory` (rates in Hz, observations).
Objective: :func:`loss` (the scalar :func:`train` minimises), :func:`loss_terms` (the same with its
terms, epoch ramps and train/eval mode), :func:`ramp`, :func:`kl_ic`, :func:`kl_co_ar1`, :func:`kl_co_gaussian`.
Training: :class:`TrainConfig`, :func:`train` → :class:`LFADSTrainResult` (on
:func:`spikejax.core.fit`); inference :func:`infer`; PBT :func:`pbt` → :class:`LFADSPBTResult`
(one vmapped program; :class:`PBTConfig`, :class:`SearchParam`) and :func:`pbt_ray` (Ray Tune, extra ``ray``).
Plots: :func:`plot_rates`, :func:`plot_factors`.
Data: :func:`load_lfads_h5`, :func:`save_lfads_h5`, :func:`load_lorenz_tutorial`,
:func:`generate_lorenz_dataset`, :func:`generate_calcium_dataset`.
Evaluation: :func:`ridge_fit`, :func:`ridge_r2`, :func:`rate_r2`, NLB metrics.
"""

from .config import load_config, load_lfads, parse_config, save_lfads
from .data import (
    check_dataset,
    dataset_from_spikes,
    generate_calcium_dataset,
    generate_lorenz_dataset,
    load_lfads_h5,
    load_lorenz_tutorial,
    lorenz_trajectories,
    make_sv_mask,
    save_lfads_h5,
)
from .evaluate import (
    bits_per_spike,
    calibrated_rate_r2,
    co_bps,
    fp_bps,
    poisson_ll,
    psth_r2,
    r2_per_dim,
    rate_r2,
    ridge_fit,
    ridge_predict,
    ridge_r2,
    velocity_r2,
)
from .generative import simulate
from .gru import ClippedGRUCell, bidirectional_gru, gru_scan
from .inference import infer
from .model import LFADS, HParams, LFADSConfig, kl_co_ar1, kl_co_gaussian, kl_ic
from .objective import loss, loss_terms, prepare_inputs, ramp, recon_cost
from .observation import PoissonReadout, ZIGReadout
from .population import (
    DEFAULT_SEARCH_SPACE,
    PBTConfig,
    SearchParam,
    exploit_binary_tournament,
    explore_value,
    improvement_ratio_stop,
    pbt,
    perturb,
)
from .ray_backend import pbt_ray
from .records import LFADSPBTResult, LFADSTrainResult, LFADSTrajectory, plot_factors, plot_rates
from .training import TrainConfig, make_optimizer, train

__all__ = [
    # verbs
    "simulate", "loss", "train", "pbt", "pbt_ray", "infer",
    # records
    "LFADSTrajectory", "LFADSTrainResult", "LFADSPBTResult",
    # configs and model
    "LFADSConfig", "TrainConfig", "PBTConfig", "SearchParam", "HParams", "LFADS", "ClippedGRUCell",
    "PoissonReadout", "ZIGReadout",
    # objective pieces
    "loss_terms", "ramp", "prepare_inputs", "recon_cost", "kl_ic", "kl_co_ar1", "kl_co_gaussian",
    "bidirectional_gru", "gru_scan", "make_optimizer",
    # PBT rules
    "exploit_binary_tournament", "explore_value", "improvement_ratio_stop", "perturb",
    # plots
    "plot_rates", "plot_factors",
    # data and configuration files
    "load_lfads_h5", "save_lfads_h5", "dataset_from_spikes", "check_dataset", "make_sv_mask", "load_lorenz_tutorial",
    "lorenz_trajectories", "generate_lorenz_dataset", "generate_calcium_dataset",
    "parse_config", "load_config", "save_lfads", "load_lfads",
    # evaluation
    "bits_per_spike", "calibrated_rate_r2", "co_bps", "fp_bps", "poisson_ll", "psth_r2", "r2_per_dim", "rate_r2",
    "ridge_fit", "ridge_predict", "ridge_r2", "velocity_r2",
]
