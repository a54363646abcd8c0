"""Generalized firing-rate (GFR) neurons of AllenInstitute/GRNN, fitted to Allen cell-types recordings.

Model (:mod:`spikejax.gfr.model`), parameter records (:mod:`spikejax.gfr.records`).
Conventions follow the original code: pA in, spikes/ms out, feedback scale kappa = 1000, no
bin-size factor, ``(z - b)/sigma`` inside the activation's powers, zero initial state.
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
    decay_rates,
    default_layer,
    default_neuron,
    kernels,
    linear_drive,
    simulate,
    simulate_feedforward,
)
from .records import (
    dataset_to_records,
    gfr_from_params,
    load_dataset,
    load_gamma_values,
    load_metadata,
    load_model,
    load_records,
    load_species_labels,
    make_record,
    params_to_layout,
    save_records,
    selection_mask,
)

__all__ = [name for name in dir() if not name.startswith("_")]
