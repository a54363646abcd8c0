"""V1 layer-5 rate network (CS / CC / PV / SST) with plasticity and selectivity analysis."""
from .config import L5Config, debug_config, load_config
from .network import Network, build_network
from .simulate import L5Params, SimOutput, Spec, make_spec, simulate, simulate_config
