"""LFADS / AutoLFADS / RADICaL: sequential VAEs for neural population dynamics (spec: shared/spec/lfads.md).

Public API
----------
Model: :class:`LFADSConfig`, :class:`HParams`, :class:`LFADS`, :class:`ClippedGRUCell`, observation
models :class:`PoissonReadout`, :class:`ZIGReadout`.
Objective: :func:`lfads_loss`, :func:`ramp`, :func:`kl_ic`, :func:`kl_co_ar1`, :func:`kl_co_gaussian`.
Training: :class:`TrainConfig`, :func:`train` (on :func:`spikejax.core.fit`); inference :func:`infer`;
PBT :func:`pbt` (one vmapped program) and :func:`pbt_ray` (Ray Tune, extra ``ray``).
Data: :func:`load_lfads_h5`, :func:`save_lfads_h5`, :func:`load_lorenz_tutorial`,
:func:`generate_lorenz_dataset`, :func:`generate_calcium_dataset`.
Evaluation: :func:`ridge_fit`, :func:`ridge_r2`, :func:`rate_r2`, NLB metrics.
"""

from .data import (
    check_dataset,
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
from .gru import ClippedGRUCell, bidirectional_gru, gru_scan
from .infer import infer
from .loss import lfads_loss, prepare_inputs, ramp, recon_cost
from .model import LFADS, HParams, LFADSConfig, kl_co_ar1, kl_co_gaussian, kl_ic
from .observation import PoissonReadout, ZIGReadout
from .pbt import (
    DEFAULT_SEARCH_SPACE,
    PBTConfig,
    PBTResult,
    SearchParam,
    exploit_binary_tournament,
    explore_value,
    improvement_ratio_stop,
    pbt,
    perturb,
)
from .pbt_ray import pbt_ray
from .train import TrainConfig, TrainResult, make_optimizer, train

__all__ = [name for name in dir() if not name.startswith("_")]
