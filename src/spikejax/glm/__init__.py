"""Spiking GLM / LNP / synaptic-activation cascade networks on graphs (spikeometric in JAX)."""

from .kernels import BACKENDS, Coupler, LagKernel, choose_backend, make_coupler
from .models import MODELS, BernoulliGLM, GLMModel, PoissonGLM, RectifiedLNP, RectifiedSAM, SAModel, ThresholdSAM, sample_poisson
from .network import Network, batch_keys, batch_networks, from_dense, from_edges, stack_networks, to_dense, unbatch_raster
from .simulate import SimState, simulate

__all__ = [name for name in dir() if not name.startswith("_")]
