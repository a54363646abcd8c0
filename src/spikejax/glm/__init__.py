"""Spiking GLM / LNP / synaptic-activation cascade networks on graphs (spikeometric in JAX).

Models (:class:`BernoulliGLM`, :class:`PoissonGLM`, :class:`RectifiedLNP`, :class:`RectifiedSAM`,
:class:`ThresholdSAM`, or a subclass of :class:`GLMModel`), networks (:func:`from_dense`,
:func:`from_edges`, :func:`batch_networks`, :func:`stack_networks`), generators, stimuli,
:func:`simulate`, :func:`tune` and analysis helpers. See ``docs/glm.md``.
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
from .generators import (
    MexicanHatGenerator,
    NormalGenerator,
    UniformGenerator,
    combine_all,
    load_connectivity,
    mexican_hat,
    save_connectivity,
)
from .kernels import BACKENDS, Coupler, LagKernel, choose_backend, make_coupler
from .models import MODELS, BernoulliGLM, GLMModel, PoissonGLM, RectifiedLNP, RectifiedSAM, SAModel, ThresholdSAM, sample_poisson
from .network import Network, batch_keys, batch_networks, from_dense, from_edges, stack_networks, to_dense, unbatch_raster
from .simulate import SimState, conditional_rate, input_from_window, simulate, state_from_window
from .stimulus import LoadedStimulus, PoissonStimulus, RegularStimulus, SinStimulus, Stimulus, batch_masks
from .tune import TuneResult, resolve_tunable, tune

__all__ = [name for name in dir() if not name.startswith("_")]
