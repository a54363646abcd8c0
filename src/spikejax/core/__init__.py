"""What every spikejax family shares: time stepping, likelihoods, metrics, training, sweeps, IO, errors."""

import jax

from .cache import cache_dir, default_cache_dir, disable_compilation_cache, enable_compilation_cache
from .errors import (
    ConfigError,
    DataFormatError,
    NonFiniteError,
    ShapeError,
    SizeError,
    SpikejaxError,
    TargetMissedWarning,
    TrainingDivergedError,
    check_allocation,
    check_array,
    check_binary,
    check_choice,
    check_finite,
    check_keys,
    check_positive,
    check_range,
    check_scalar,
    check_shape,
    is_traced,
    memory_limit_bytes,
)
from .config import Config, option
from .io import (atomic_open, atomic_path, json_ready, load_h5, load_json, load_model, save_figure, save_h5, save_json,
                 save_model, short_float)
from .nwb import (
    SpikeTrains,
    as_spike_trains,
    bin_spikes,
    rates_from_pynapple,
    rates_to_pynapple,
    read_processing,
    read_units,
    write_processing,
    write_units,
)
from .likelihoods import (
    bernoulli_nll,
    gaussian_nll,
    poisson_nll,
    poisson_nll_log_rate,
    reduce_masked,
    zig_mean,
    zig_nll,
)
from .metrics import (
    bits_per_spike,
    ev_ceiling,
    evr,
    explained_variance,
    firing_rate,
    isi,
    mean_isi,
    pearson_r,
    r2_score,
)
from .precision import kernel_precision, matmul_precision, on_cpu
from .random import check_key, is_key
from .results import Record, Result, StopReason, Trajectory, get_ax, history_frame, tidy
from .population import STATUS_NAMES, PopulationResult, PopulationState, fit_population
from .scan import chunked_scan, scan, step_keys
from .sweep import (DEFAULT_MEMORY_FRACTION, batch_size_of, gather, is_multiprocess, plan_chunks, program_memory, replicate,
                    shard_batch, stack, sweep, sweep_devices, unstack)
from .training import (
    Batching,
    Checkpointing,
    EarlyStopping,
    FixedBatches,
    MemberData,
    Progress,
    Validation,
    FitResult,
    PlateauDecay,
    fit,
    get_hyperparam,
    load_checkpoint,
    make_train_step,
    save_checkpoint,
    set_hyperparam,
    trainable,
)

__all__ = sorted(
    name for name, obj in list(globals().items())
    if not name.startswith("_") and not isinstance(obj, type(jax)) and name not in ("annotations",)
)
