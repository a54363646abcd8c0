"""Mesoscopic LIF populations with hidden neurons: simulation, likelihood and EM fitting (neuLVM).

* :func:`simulate_micro` – the microscopic LIF escape-noise network (δ = 0.2 ms) that generated
  the data; :func:`pulse_input` builds optogenetic-like input pulses.
* :func:`predict`, :func:`loss`, :func:`simulate` – the mesoscopic age-structured renewal model
  (Schwalger et al. 2017 without adaptation) at Δ = 4 ms, its neuLVM objective and free runs.
* :func:`fit_em` – maximum marginal likelihood (default; hard EM as its initialiser, or alone)
  with vmapped random restarts; :class:`FitResults` with ``.to_pandas()`` and plots;
  :func:`posterior_Z` and :func:`fit_params_given_Z` – the ceilings (posterior of Z at given
  parameters, the M-step given the true Z).
* :class:`MesoData`, :func:`load_npz`, :func:`load_bundled` – data and loaders;
  :func:`simulate_observed` – a trial drawn from the mesoscopic model itself (no model mismatch).
"""

from .data import (
    MesoData,
    bundled_path,
    dominance_durations,
    load_activity,
    load_bundled,
    load_npz,
    load_params_json,
    rebin_counts,
    rebin_spikes,
    winner_loser_rates,
)
from .fit import INIT_EM, EMConfig, SEMConfig, fit_em, fit_em_sequential, fit_params_given_Z, init_Z, objective
from .marginal import MarginalConfig
from .synthetic import simulate_observed
from .smc import PosteriorZ, particle_filter, posterior_Z, sample_posterior
from .micro import MICRO_DT, MicroResult, pulse_input, simulate_micro, stationary_ages
from .model import (
    DT,
    HIST_BINS,
    N_AGE,
    LossParts,
    MesoConfig,
    MesoState,
    init_state,
    initial_age,
    loss,
    observed_logits,
    observed_nll,
    population_nll,
    predict,
    simulate,
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
from .results import (FitResults, plot_activity, plot_convergence, plot_dominance, plot_free_run, plot_loss_curves,
                      plot_posterior_Z)

__all__ = [name for name in dir() if not name.startswith("_")]
