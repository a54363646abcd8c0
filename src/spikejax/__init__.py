"""spikejax: differentiable models of neurons and neural populations in JAX.

Families (subpackages): ``gfr`` (generalized firing-rate neurons, GRNN), ``glm`` (spiking GLM
networks on graphs, spikeometric), ``meso`` (mesoscopic LIF populations, neuLVM), ``l5`` (V1
layer-5 rate network), ``lfads`` (LFADS / RADICaL sequential VAEs). Shared machinery lives in
:mod:`spikejax.core`.
"""

from . import core
from ._version import __version__
from .core.cache import configure_from_env as _configure_cache
from .core.errors import (ConfigError, DataFormatError, NonFiniteError, ShapeError, SpikejaxError, TargetMissedWarning,
                          TrainingDivergedError)

# Persistent compilation cache on by default (SPIKEJAX_CACHE_DIR=off disables it): see core/cache.py.
_configure_cache()


__all__ = [
    "core",
    "SpikejaxError",
    "ShapeError",
    "NonFiniteError",
    "ConfigError",
    "DataFormatError",
    "TrainingDivergedError",
    "TargetMissedWarning",
    "__version__",
]
