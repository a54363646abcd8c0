"""Generalized firing-rate (GFR) neurons of AllenInstitute/GRNN, fitted to Allen cell-types recordings.

The family's verbs: :func:`simulate` (returns a :class:`GFRTrajectory`), :func:`loss` (the stage-2
objective of one cell, data from :func:`loss_data`), :func:`fit_cells` / :func:`fit_cell` (return
a :class:`GFRFitResult`), :func:`fit_alpha_beta` (:class:`GFRFitAlphaBetaResult`) and
:func:`train_network` (:class:`GFRNetworkResult`); the configuration is :class:`FitConfig`.
Released parameters become models with :func:`model_from_dataset`; NWB recordings become cells with
:func:`preprocess_nwb`; :func:`make_cell_bank` writes a synthetic Allen-like bank.
Conventions follow the original code: pA in, spikes/ms out (Hz in tables), time step ``dt`` in ms
(the model's ``bin_size``), feedback scale kappa = 1000, ``(z - b)/sigma`` inside the
activation's powers, zero initial state.
"""

from .model import (
    BIN_SIZES,
    CONFIGS,
    DEFAULT_DECAY,
    GFR,
    KAPPA_BIO,
    TAUS_MS,
    GFRLayer,
    PolynomialActivation,
    check_config,
    check_model,
    decay_rates,
    default_layer,
    default_neuron,
    kernels,
    linear_drive,
    simulate,
    simulate_feedforward,
    simulate_rates,
)
from .trajectory import GFRTrajectory, plot_rates
from .records import (
    dataset_to_records,
    gfr_from_params,
    load_dataset,
    load_gamma_values,
    load_metadata,
    load_records,
    load_species_labels,
    make_record,
    model_from_dataset,
    params_to_layout,
    save_records,
    selection_mask,
)
from .preprocess import (
    STIMULI,
    BinnedSweep,
    CellData,
    RawSweep,
    bin_sweep,
    load_cell,
    load_cells,
    max_firing_rate,
    preprocess_files,
    preprocess_nwb,
    read_nwb,
    save_cell,
    sweep_window,
)
from .synthetic import draw_cells, make_cell_bank, simulate_neurons, stimulus_protocol, write_nwb
from .config import FitConfig
from .results import GFRFitAlphaBetaResult, GFRFitResult, GFRNetworkResult
from .fit import (
    evaluate,
    fit_alpha_beta,
    fit_cell,
    fit_cells,
    loss,
    loss_data,
    masked_evr,
    prepare_cell,
    selection_criteria,
)
from .mnist import load_mnist
from .network import (
    GFRNetwork,
    VanillaRNN,
    biological_layer,
    count_parameters,
    evaluate_network,
    forward,
    gfr_network_size,
    load_network,
    matching_rnn_size,
    network_filter_spec,
    network_loss,
    resample_neurons,
    rnn_parameter_count,
    save_network,
    train_network,
)

__all__ = [
    # models and simulation
    "GFR",
    "GFRLayer",
    "PolynomialActivation",
    "GFRTrajectory",
    "simulate",
    "simulate_rates",
    "simulate_feedforward",
    "kernels",
    "linear_drive",
    "decay_rates",
    "check_config",
    "check_model",
    "default_neuron",
    "default_layer",
    "plot_rates",
    # objective and fitting
    "loss",
    "loss_data",
    "FitConfig",
    "fit_cells",
    "fit_cell",
    "fit_alpha_beta",
    "GFRFitResult",
    "GFRFitAlphaBetaResult",
    "prepare_cell",
    "evaluate",
    "masked_evr",
    "selection_criteria",
    # released parameters
    "model_from_dataset",
    "gfr_from_params",
    "load_dataset",
    "load_records",
    "save_records",
    "make_record",
    "dataset_to_records",
    "params_to_layout",
    "selection_mask",
    "load_gamma_values",
    "load_species_labels",
    "load_metadata",
    # recordings
    "RawSweep",
    "BinnedSweep",
    "CellData",
    "read_nwb",
    "sweep_window",
    "bin_sweep",
    "max_firing_rate",
    "preprocess_nwb",
    "preprocess_files",
    "save_cell",
    "load_cell",
    "load_cells",
    "draw_cells",
    "make_cell_bank",
    "simulate_neurons",
    "stimulus_protocol",
    "write_nwb",
    # GFR-RNN on L-MNIST
    "GFRNetwork",
    "VanillaRNN",
    "biological_layer",
    "network_filter_spec",
    "train_network",
    "evaluate_network",
    "forward",
    "network_loss",
    "resample_neurons",
    "count_parameters",
    "gfr_network_size",
    "rnn_parameter_count",
    "matching_rnn_size",
    "GFRNetworkResult",
    "save_network",
    "load_network",
    "load_mnist",
]
