"""Generalized firing-rate (GFR) neurons of AllenInstitute/GRNN, fitted to Allen cell-types recordings.

Model (:mod:`spikejax.gfr.model`), parameter records (:mod:`spikejax.gfr.records`), NWB
preprocessing (:mod:`spikejax.gfr.preprocess`), the synthetic Allen-like cell bank
(:mod:`spikejax.gfr.synthetic`) and fitting many cells at once (:mod:`spikejax.gfr.fit`).
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
    simulate_rates,
)
from .trajectory import GFRTrajectory, plot_rates
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
from .fit import (
    FitCellsResult,
    FitConfig,
    evaluate,
    fit_alpha_beta,
    fit_cell,
    fit_cells,
    masked_evr,
    prepare_cell,
    selection_criteria,
)

try:  # the GFR-RNN (L-MNIST) network part; see spikejax.gfr.network
    from .mnist import load_mnist
    from .network import (
        GFRNetwork,
        NetworkResult,
        VanillaRNN,
        biological_layer,
        load_network,
        network_filter_spec,
        save_network,
        train_network,
    )
except ImportError:  # pragma: no cover - the network module is optional in a partial install
    pass

__all__ = [name for name in dir() if not name.startswith("_")]
