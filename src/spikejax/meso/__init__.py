"""Mesoscopic LIF populations with hidden neurons: simulation, likelihood and EM fitting (neuLVM).

* :func:`simulate_micro` – the microscopic LIF escape-noise network (δ = 0.2 ms) that generated
  the data; :func:`pulse_input` builds optogenetic-like input pulses.
* :func:`simulate` – free runs of the mesoscopic age-structured renewal model (Schwalger et al. 2017
  without adaptation) at Δ = 4 ms, returning a :class:`MesoTrajectory`; :func:`predict` – its
  expected activity given the activity; :func:`loss` – the neuLVM objective ``loss(model, data)``.
* :func:`fit_em` – maximum marginal likelihood (default; hard EM as its initialiser, or alone)
  with vmapped random restarts, returning a :class:`MesoFitResult`; settings in
  :class:`MesoFitConfig`; :func:`posterior_Z` / :func:`posterior_table` and
  :func:`fit_params_given_Z` – the ceilings (posterior of Z at given parameters, the M-step given
  the true Z).
* :class:`MesoData`, :func:`load_npz`, :func:`load_bundled`, :func:`data_from_spikes` – data and loaders;
  :func:`simulate_observed` – a trial drawn from the mesoscopic model itself (no model mismatch).

Time is in ms in every public argument and table (``dt``, ``t_ref``, durations); the model computes
in s internally. The membrane and synaptic rates ``amem``/``asyn`` are in 1/s.
"""

from .data import (
    MesoData,
    bundled_path,
    dominance_durations,
    load_activity,
    load_bundled,
    data_from_spikes,
    load_npz,
    load_params_json,
    rebin_counts,
    rebin_spikes,
    winner_loser_rates,
)
from .fit import MesoFitConfig, fit_em, fit_em_sequential, fit_params_given_Z
from .hard_em import INIT_EM, EMConfig, init_Z
from .likelihood import loss
from .marginal import MarginalConfig
from .micro import MICRO_DT_MS, MicroResult, pulse_input, simulate_micro, stationary_ages
from .model import (
    DT_MS,
    HIST_BINS,
    N_AGE,
    MesoConfig,
    MesoState,
    init_state,
    initial_age,
    observed_logits,
    predict,
    stationary_state,
    step,
)
from .params import (
    BOX_HIGH,
    BOX_LOW,
    THETA_REF,
    MesoParams,
    box_bounds,
    check_in_box,
    from_vector,
    ground_truth,
    param_names,
    sample_in_box,
    to_vector,
)
from .plots import (
    plot_activity,
    plot_convergence,
    plot_dominance,
    plot_free_run,
    plot_loss_curves,
    plot_parameter_trace,
    plot_posterior_Z,
)
from .results import MesoFitResult, posterior_table
from .sem import SEMConfig
from .simulation import MesoTrajectory, simulate
from .smc import PosteriorZ, particle_filter, posterior_Z, sample_posterior
from .synthetic import simulate_observed

__all__ = [
    # verbs
    "simulate",
    "loss",
    "fit_em",
    "fit_em_sequential",
    "fit_params_given_Z",
    "simulate_micro",
    "simulate_observed",
    "predict",
    "posterior_Z",
    "posterior_table",
    "sample_posterior",
    "particle_filter",
    # results, data, configs
    "MesoTrajectory",
    "MesoFitResult",
    "MicroResult",
    "PosteriorZ",
    "MesoData",
    "MesoParams",
    "MesoState",
    "MesoConfig",
    "MesoFitConfig",
    "EMConfig",
    "MarginalConfig",
    "SEMConfig",
    # model pieces
    "init_state",
    "initial_age",
    "observed_logits",
    "stationary_state",
    "step",
    "init_Z",
    # parameters and the fitting box
    "ground_truth",
    "param_names",
    "to_vector",
    "from_vector",
    "box_bounds",
    "check_in_box",
    "sample_in_box",
    # data
    "load_npz",
    "load_bundled",
    "data_from_spikes",
    "load_activity",
    "load_params_json",
    "bundled_path",
    "rebin_counts",
    "rebin_spikes",
    "pulse_input",
    "stationary_ages",
    "dominance_durations",
    "winner_loser_rates",
    # plots
    "plot_activity",
    "plot_free_run",
    "plot_dominance",
    "plot_loss_curves",
    "plot_convergence",
    "plot_parameter_trace",
    "plot_posterior_Z",
    # constants
    "DT_MS",
    "MICRO_DT_MS",
    "HIST_BINS",
    "N_AGE",
    "BOX_LOW",
    "BOX_HIGH",
    "THETA_REF",
    "INIT_EM",
]
