"""GFR-RNN: a recurrent network of GFR neurons trained on line-by-line MNIST (L-MNIST).

Architecture (one time step = one 28-pixel image row ``x_t``)::

    u_t      = W_in x_t + b_in + W_rec r_{t-1} + b_rec        (input current, one per neuron)
    r_t      = GFR_layer(u_t)                                 (rates of the N GFR neurons)
    logits_t = W_out r_t + b_out

After the 28 rows the network gets zero-input *readout* steps. Training uses the cross-entropy
of the logits of the first readout step; evaluation runs 5 readout steps and reports the
accuracy of each step ("step 1" is the first) and the *vote*: the arg-max of the softmax
probabilities summed over the 5 readout steps. This is the protocol of AllenInstitute/GRNN's
network pipeline (see ``shared/spec/gfr.md`` section 9).

Hidden neurons are either the *default* ("random") GFR neuron of
:func:`spikejax.gfr.model.default_neuron` (kappa = 1, the newer GRNN revision's ``bio_units=False``)
or *biological* neurons drawn with replacement from fitted (20 ms, 20 ms) cells (kappa = 1000),
with two ways of feeding them current:

* ``input_mode="scaled"`` (GRNN's ``BiologicalGFRNetwork``): ``u = sigma * (W_in x + b_in) +
  W_rec r + b_rec``, ``W_in`` initialised from N(1.5, 3^2);
* ``input_mode="centered"`` (the "biological style" of the bio-init study): ``u = b + sigma *
  (W_in x + b_in + W_rec r + b_rec)``, centred on each cell's threshold ``b`` (pA).

``sigma`` is each neuron's ``max_current`` (pA). Freezing (``freeze_neurons``,
``freeze_activations``) is a filter spec (:func:`network_filter_spec`), never a copy; the decay
grid ``lambda``, ``sigma`` and ``gamma`` are always frozen. :class:`VanillaRNN` is the baseline
with the same read-in / read-out protocol.
"""

from .network_model import (
    N_CLASSES,
    N_READOUT,
    GFRNetwork,
    VanillaRNN,
    biological_layer,
    count_parameters,
    gfr_network_size,
    matching_rnn_size,
    network_filter_spec,
    resample_neurons,
    rnn_parameter_count,
)
from .network_train import GFRNetworkResult, evaluate_network, forward, load_network, network_loss, save_network, train_network

__all__ = [
    "N_CLASSES",
    "N_READOUT",
    "GFRNetwork",
    "VanillaRNN",
    "biological_layer",
    "network_filter_spec",
    "count_parameters",
    "gfr_network_size",
    "rnn_parameter_count",
    "matching_rnn_size",
    "forward",
    "network_loss",
    "evaluate_network",
    "train_network",
    "GFRNetworkResult",
    "resample_neurons",
    "save_network",
    "load_network",
]
