"""Spiking GLM / LNP / synaptic-activation cascade networks on graphs (spikeometric in JAX).

Models (:class:`BernoulliGLM`, :class:`PoissonGLM`, :class:`RectifiedLNP`, :class:`RectifiedSAM`,
:class:`ThresholdSAM`, or a subclass of :class:`GLMModel`), networks (:func:`from_dense`,
:func:`from_edges`, :func:`batch_networks`, :func:`stack_networks`), generators, stimuli,
:func:`simulate` (a :class:`GLMTrajectory`), the objective :func:`loss` (on a :class:`RateTarget`),
:func:`tune` (a :class:`GLMTuneResult`, settings in :class:`TuneConfig`), connectivity inference
:func:`fit_connectivity` (a :class:`GLMFitResult`) on the streamed likelihood :func:`spike_log_likelihood` and analysis helpers. See
``docs/glm.md``.
"""

from .analysis import (
    firing_rates,
    isi_distribution,
    mean_field_gain,
    mean_field_rate,
    mean_field_rate_homogeneous,
    mean_field_theta,
    mean_field_theta_homogeneous,
    mean_isi,
    plot_isi_histogram,
    plot_raster,
    population_rate,
)
from .fit_result import GLMFitResult
from .generators import (
    MexicanHatGenerator,
    NormalGenerator,
    UniformGenerator,
    combine_all,
    load_connectivity,
    mexican_hat,
    save_connectivity,
)
from .inference import CONNECTIVITY_SOLVERS, OBSERVATIONS, fit_connectivity, spike_log_likelihood
from .kernels import BACKENDS, Coupler, LagKernel, choose_backend, make_coupler
from .models import MODELS, BernoulliGLM, GLMModel, PoissonGLM, RectifiedLNP, RectifiedSAM, SAModel, ThresholdSAM, sample_poisson
from .network import Network, batch_keys, batch_networks, from_dense, from_edges, stack_networks, to_dense, unbatch_raster
from .objective import RateTarget, log_likelihood, loss
from .results import GLMTuneResult, model_spec
from .simulation import SimState, conditional_intensity, conditional_rate, input_from_window, simulate, state_from_window
from .stimulus import LoadedStimulus, PoissonStimulus, RegularStimulus, SinStimulus, Stimulus, batch_masks
from .trajectory import GLMTrajectory, trajectory_from_spikes
from .tuning import TuneConfig, resolve_tunable, tune

__all__ = [
    # verbs
    "simulate",
    "loss",
    "tune",
    "fit_connectivity",
    # results, data and configs
    "GLMTrajectory",
    "trajectory_from_spikes",
    "GLMTuneResult",
    "GLMFitResult",
    "TuneConfig",
    "RateTarget",
    "SimState",
    "model_spec",
    # models
    "GLMModel",
    "SAModel",
    "BernoulliGLM",
    "PoissonGLM",
    "RectifiedLNP",
    "RectifiedSAM",
    "ThresholdSAM",
    "MODELS",
    "sample_poisson",
    "resolve_tunable",
    # networks and kernels
    "Network",
    "from_dense",
    "from_edges",
    "to_dense",
    "batch_networks",
    "stack_networks",
    "unbatch_raster",
    "batch_keys",
    "LagKernel",
    "Coupler",
    "make_coupler",
    "choose_backend",
    "BACKENDS",
    # connectivity generators
    "MexicanHatGenerator",
    "NormalGenerator",
    "UniformGenerator",
    "mexican_hat",
    "combine_all",
    "load_connectivity",
    "save_connectivity",
    # stimuli
    "Stimulus",
    "RegularStimulus",
    "PoissonStimulus",
    "SinStimulus",
    "LoadedStimulus",
    "batch_masks",
    # teacher-forced intensities and likelihood
    "log_likelihood",
    "spike_log_likelihood",
    "OBSERVATIONS",
    "CONNECTIVITY_SOLVERS",
    "conditional_intensity",
    "conditional_rate",
    "input_from_window",
    "state_from_window",
    # analysis and plots
    "firing_rates",
    "population_rate",
    "isi_distribution",
    "mean_isi",
    "plot_raster",
    "plot_isi_histogram",
    "mean_field_gain",
    "mean_field_rate",
    "mean_field_theta",
    "mean_field_rate_homogeneous",
    "mean_field_theta_homogeneous",
]
