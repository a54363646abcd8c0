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

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core.errors import ConfigError, DataFormatError, ShapeError, check_array, check_choice, check_keys, is_traced
from ..core.scan import scan
from ..core.training import fit, trainable
from .model import GFRLayer, default_layer

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
    "evaluate",
    "train_network",
    "NetworkResult",
    "resample_neurons",
    "save_network",
    "load_network",
]

#: Number of digit classes.
N_CLASSES = 10
#: Zero-input readout steps used for evaluation (the "vote" sums their softmax).
N_READOUT = 5

_INPUT_MODES = ("plain", "scaled", "centered")


def _float_dtype():
    return jnp.result_type(float)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _linear_layers(key, n, n_in, n_out, dtype, w_in_init):
    """``(W_in, b_in, W_rec, b_rec, W_out, b_out)`` with PyTorch's ``nn.Linear`` initialisation
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)); ``w_in_init="normal"`` draws ``W_in`` from N(1.5, 3^2)
    instead (GRNN's biological network). One uniform draw is cut into the six arrays (one
    random-bits kernel to compile instead of six)."""
    shapes = [((n, n_in), n_in), ((n,), n_in), ((n, n), n), ((n,), n), ((n_out, n), n), ((n_out,), n)]
    sizes = [math.prod(shape) for shape, _ in shapes]
    k_uniform, k_normal = jax.random.split(key)
    u = jax.random.uniform(k_uniform, (sum(sizes),), dtype, -1.0, 1.0)
    out, start = [], 0
    for (shape, fan_in), size in zip(shapes, sizes):
        out.append(u[start : start + size].reshape(shape) / math.sqrt(fan_in))
        start += size
    if w_in_init == "normal":
        out[0] = 1.5 + 3.0 * jax.random.normal(k_normal, (n, n_in), dtype)
    return tuple(out)


def _check_size(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class _LinearRNN(eqx.Module):
    """The read-in, recurrent and read-out weights shared by the networks of this module."""

    w_in: jax.Array
    b_in: jax.Array
    w_rec: jax.Array
    b_rec: jax.Array
    w_out: jax.Array
    b_out: jax.Array

    @property
    def n_inputs(self) -> int:
        return int(self.w_in.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.w_out.shape[0])


class VanillaRNN(_LinearRNN):
    """Vanilla (Elman) RNN baseline with the same protocol as :class:`GFRNetwork`.

    ``r_t = phi(W_in x_t + b_in + W_rec r_{t-1} + b_rec)``, ``logits_t = W_out r_t + b_out``, with
    ``phi = relu(tanh(.))`` (``activation="relu_tanh"``, the GRNN baseline, i.e. the default GFR
    neuron's ``g`` without its traces) or ``phi = tanh``. Trainable parameters:
    ``H**2 + (n_inputs + n_classes + 2) H + n_classes``.

    Attributes
    ----------
    w_in : (H, n_inputs); b_in : (H,); w_rec : (H, H); b_rec : (H,); w_out : (n_classes, H);
    b_out : (n_classes,); activation : static str.
    """

    activation: str = eqx.field(static=True, default="relu_tanh")

    def __init__(
        self,
        n_hidden: int,
        *,
        key: jax.Array,
        n_inputs: int = 28,
        n_classes: int = N_CLASSES,
        activation: str = "relu_tanh",
    ):
        h = _check_size(n_hidden, "n_hidden")
        n_in = _check_size(n_inputs, "n_inputs")
        n_out = _check_size(n_classes, "n_classes")
        check_choice(activation, "activation", ("relu_tanh", "tanh"))
        weights = _linear_layers(key, h, n_in, n_out, jnp.dtype(_float_dtype()), "uniform")
        self.w_in, self.b_in, self.w_rec, self.b_rec, self.w_out, self.b_out = weights
        self.activation = activation

    @property
    def n_hidden(self) -> int:
        return int(self.w_rec.shape[0])

    def init_state(self, batch_shape: Sequence[int] = ()) -> jax.Array:
        """Zero hidden state of shape ``(*batch_shape, H)``."""
        return jnp.zeros((*batch_shape, self.n_hidden), self.w_in.dtype)

    def rates(self, state: jax.Array) -> jax.Array:
        """Hidden activity ``r_t`` of a state."""
        return state

    def advance(self, state: jax.Array, x: jax.Array) -> jax.Array:
        """One step: input row ``x`` (``(*batch, n_inputs)``) -> new state."""
        pre = x @ self.w_in.T + self.b_in + state @ self.w_rec.T + self.b_rec
        out = jnp.tanh(pre)
        return jax.nn.relu(out) if self.activation == "relu_tanh" else out

    def readout(self, state: jax.Array) -> jax.Array:
        """Logits ``(*batch, n_classes)``."""
        return state @ self.w_out.T + self.b_out


class GFRNetwork(_LinearRNN):
    """Recurrent network of GFR neurons (GRNN's GFR-RNN) for sequence classification.

    Parameters
    ----------
    n_nodes
        Number of hidden GFR neurons ``N`` (ignored when ``neurons`` is given).
    key
        PRNG key for the linear weights.
    neurons
        A :class:`~spikejax.gfr.model.GFRLayer` of ``N`` neurons. Default:
        ``default_layer(n_nodes, kappa=1)`` (the default "random" neuron of the newer GRNN revision).
    input_mode
        ``"plain"`` (default neurons), ``"scaled"`` or ``"centered"`` (biological neurons; see the
        module docstring). ``sigma`` (pA) and, for ``"centered"``, the threshold ``b`` (pA) are the
        neurons' own.
    w_in_init
        ``"uniform"`` (PyTorch's ``nn.Linear`` default) or ``"normal"`` (N(1.5, 3^2), GRNN's
        ``BiologicalGFRNetwork``). Default: ``"normal"`` for ``input_mode="scaled"``, else
        ``"uniform"``.
    n_inputs, n_classes
        Input row width (28 for L-MNIST) and number of classes.

    Attributes
    ----------
    w_in : (N, n_inputs); b_in : (N,); w_rec : (N, N); b_rec : (N,); w_out : (n_classes, N);
    b_out : (n_classes,); neurons : GFRLayer; input_mode : static str.

    Notes
    -----
    The state is the GFR layer's ``(h, f)`` (traces ``(*batch, N, n)`` and rates ``(*batch, N)``,
    spikes/ms); the recurrent input uses the previous rates ``f``.
    """

    neurons: GFRLayer
    input_mode: str = eqx.field(static=True, default="plain")

    def __init__(
        self,
        n_nodes: int = 64,
        *,
        key: jax.Array,
        neurons: GFRLayer | None = None,
        input_mode: str = "plain",
        w_in_init: str | None = None,
        n_inputs: int = 28,
        n_classes: int = N_CLASSES,
    ):
        check_choice(input_mode, "input_mode", _INPUT_MODES)
        if neurons is None:
            neurons = default_layer(_check_size(n_nodes, "n_nodes"), kappa=1.0)
        elif not isinstance(neurons, GFRLayer):
            raise TypeError(f"neurons must be a spikejax.gfr.GFRLayer, got {type(neurons).__name__}")
        n = neurons.n_neurons
        n_in = _check_size(n_inputs, "n_inputs")
        n_out = _check_size(n_classes, "n_classes")
        if w_in_init is None:
            w_in_init = "normal" if input_mode == "scaled" else "uniform"
        check_choice(w_in_init, "w_in_init", ("uniform", "normal"))
        weights = _linear_layers(key, n, n_in, n_out, jnp.dtype(neurons.alpha.dtype), w_in_init)
        self.w_in, self.b_in, self.w_rec, self.b_rec, self.w_out, self.b_out = weights
        self.neurons = neurons
        self.input_mode = input_mode

    @property
    def n_nodes(self) -> int:
        return self.neurons.n_neurons

    def init_state(self, batch_shape: Sequence[int] = ()) -> tuple[jax.Array, jax.Array]:
        """Zero state ``(h, f)``: traces ``(*batch_shape, N, n)`` and rates ``(*batch_shape, N)``."""
        return self.neurons.init_state(batch_shape)

    def rates(self, state) -> jax.Array:
        """Hidden rates ``r_t`` (spikes/ms) of a state."""
        return state[1]

    def current(self, state, x: jax.Array) -> jax.Array:
        """Input current ``u_t`` (pA) to the neurons for input row ``x`` given the previous state."""
        ff = x @ self.w_in.T + self.b_in
        rec = state[1] @ self.w_rec.T + self.b_rec
        if self.input_mode == "plain":
            return ff + rec
        sigma = jax.lax.stop_gradient(self.neurons.g.max_current)
        if self.input_mode == "scaled":
            return sigma * ff + rec
        return self.neurons.g.b + sigma * (ff + rec)

    def advance(self, state, x: jax.Array):
        """One step: input row ``x`` (``(*batch, n_inputs)``) -> new state."""
        state, _ = self.neurons.step(state, self.current(state, x))
        return state

    def readout(self, state) -> jax.Array:
        """Logits ``(*batch, n_classes)``."""
        return state[1] @ self.w_out.T + self.b_out

    @classmethod
    def biological(
        cls,
        n_nodes: int = 64,
        *,
        key: jax.Array,
        records: Any = None,
        input_mode: str = "scaled",
        min_test_evr: float = 0.7,
        kappa: float = 1000.0,
        w_in_init: str | None = None,
        n_inputs: int = 28,
        n_classes: int = N_CLASSES,
    ) -> GFRNetwork:
        """A GFR-RNN of biological neurons drawn with replacement from fitted (20, 20) cells.

        ``records`` as in :func:`biological_layer` (default: the bundled 8-cell excerpt);
        ``input_mode`` ``"scaled"`` (variant 1) or ``"centered"`` (variant 2).
        """
        if input_mode not in ("scaled", "centered"):
            raise ConfigError(f"input_mode for biological neurons must be 'scaled' or 'centered', got {input_mode!r}")
        k_layer, k_net = jax.random.split(key)
        layer, _ = biological_layer(n_nodes, key=k_layer, records=records, min_test_evr=min_test_evr, kappa=kappa)
        return cls(
            key=k_net,
            neurons=layer,
            input_mode=input_mode,
            w_in_init=w_in_init,
            n_inputs=n_inputs,
            n_classes=n_classes,
        )


def biological_layer(
    n_nodes: int,
    *,
    key: jax.Array,
    records: Any = None,
    min_test_evr: float = 0.7,
    bin_size: int = 20,
    activation_bin_size: int = 20,
    kappa: float = 1000.0,
) -> tuple[GFRLayer, np.ndarray]:
    """``n_nodes`` fitted GFR cells drawn with replacement (the GFR-RNN's biological neurons).

    Parameters
    ----------
    n_nodes
        Number of neurons to draw.
    key
        PRNG key of the draw.
    records
        GFR records in the ``gfr_dataset.json`` layout: a list of dicts, or a path to such a JSON
        file. Default: the bundled excerpt ``gfr/gfr_params_20_20_excerpt.json`` (8 cells at
        (20, 20); 5 of them have Noise-2 EVR > 0.7).
    min_test_evr
        Keep cells with ``test_evr`` (Noise-2 EVR) strictly above this (0.7 as in GRNN).
    bin_size, activation_bin_size
        The (Delta t, Delta t') configuration to draw from (GRNN uses (20, 20): n = 8 traces).
    kappa
        Feedback scale of the neurons (1000, ``bio_units=True``, needed by the released parameters).

    Returns
    -------
    (layer, cell_ids): the :class:`GFRLayer` and the cell id of each of its neurons.
    """
    n = _check_size(n_nodes, "n_nodes")
    from .records import gfr_from_params, load_records

    recs = load_records(records)
    pool = [
        r
        for r in recs
        if int(r["bin_size"]) == int(bin_size)
        and int(r["actv_bin_size"]) == int(activation_bin_size)
        and r["test_evr"] is not None
        and float(r["test_evr"]) > float(min_test_evr)
    ]
    if not pool:
        raise ConfigError(
            f"no record at (bin_size, activation_bin_size) = ({bin_size}, {activation_bin_size}) has test_evr > "
            f"{min_test_evr} among {len(recs)} record(s); lower min_test_evr or give more records"
        )
    cells = [gfr_from_params(r["params"], kappa=kappa) for r in pool]
    idx = np.asarray(jax.random.choice(key, len(pool), (n,), replace=True))
    layer = GFRLayer.from_neurons([cells[i] for i in idx])
    return layer, np.asarray([int(pool[i]["cell_id"]) for i in idx], dtype=np.int64)


def resample_neurons(model: GFRNetwork, *, key: jax.Array) -> GFRNetwork:
    """Redraw the network's neurons with replacement from its own neurons (linear weights kept).

    This is GRNN's ``freeze_neurons`` experiment (load a trained network, resample its neurons with
    replacement, then retrain only the linear weights with ``freeze_neurons=True``); GRNN used 256
    hard-coded indices, here the draw comes from ``key``.
    """
    if not isinstance(model, GFRNetwork):
        raise TypeError(f"model must be a GFRNetwork, got {type(model).__name__}")
    n = model.n_nodes
    idx = jax.random.choice(key, n, (n,), replace=True)
    layer = model.neurons
    g = eqx.tree_at(
        lambda g: (g.poly_coeff, g.b, g.max_current, g.max_firing_rate),
        layer.g,
        (layer.g.poly_coeff[idx], layer.g.b[idx], layer.g.max_current[idx], layer.g.max_firing_rate[idx]),
    )
    new_layer = eqx.tree_at(lambda m: (m.alpha, m.beta, m.g), layer, (layer.alpha[idx], layer.beta[idx], g))
    return eqx.tree_at(lambda m: m.neurons, model, new_layer)


# ---------------------------------------------------------------------------------------------
# Freezing and parameter counts
# ---------------------------------------------------------------------------------------------


def network_filter_spec(model: Any, *, freeze_neurons: bool = False, freeze_activations: bool = True) -> Any:
    """Which leaves of a network train (a filter spec for :func:`spikejax.core.fit`).

    For a :class:`GFRNetwork`: ``lambda`` (decay), ``sigma`` (max_current) and ``gamma``
    (max_firing_rate) never train; ``freeze_activations`` also freezes ``g``'s coefficients and
    threshold ``b``; ``freeze_neurons`` freezes the whole GFR layer (``alpha``, ``beta`` and ``g``),
    leaving only ``W_in, b_in, W_rec, b_rec, W_out, b_out``. For a :class:`VanillaRNN` every
    weight trains (the flags must be left at their defaults or False).
    """
    if isinstance(model, VanillaRNN):
        if freeze_neurons:
            raise ConfigError("freeze_neurons applies to a GFRNetwork, not to a VanillaRNN")
        return trainable(model)
    if not isinstance(model, GFRNetwork):
        raise TypeError(f"model must be a GFRNetwork or VanillaRNN, got {type(model).__name__}")

    def frozen(m):
        nrn = m.neurons
        leaves = [nrn.decay, nrn.g.max_current, nrn.g.max_firing_rate]
        if freeze_activations or freeze_neurons:
            leaves += [nrn.g.poly_coeff, nrn.g.b]
        if freeze_neurons:
            leaves += [nrn.alpha, nrn.beta]
        return tuple(leaves)

    return trainable(model, frozen=frozen)


def count_parameters(model: Any, filter_spec: Any = None) -> int:
    """Number of trainable scalars of ``model`` under ``filter_spec`` (default: every inexact array)."""
    if filter_spec is None:
        filter_spec = trainable(model)
    params, _ = eqx.partition(model, filter_spec)
    return int(sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params) if eqx.is_array(x)))


def gfr_network_size(
    n_nodes: int,
    *,
    n_traces: int = 4,
    degree: int = 1,
    freeze_neurons: bool = False,
    freeze_activations: bool = True,
    n_inputs: int = 28,
    n_classes: int = N_CLASSES,
) -> int:
    """Trainable parameters of a GFR-RNN, from the formula (no model built).

    Linear layers: ``N (n_inputs + 1) + N (N + 1) + n_classes (N + 1)``; plus ``2 n N`` for
    ``alpha, beta`` unless ``freeze_neurons``; plus ``(degree + 2) N`` for ``g``'s coefficients and
    threshold unless frozen. The paper setting (N = 64, n = 4, frozen ``g``) has 6,666 + 512 = 7,178.
    """
    n = _check_size(n_nodes, "n_nodes")
    total = n * (n_inputs + 1) + n * (n + 1) + n_classes * (n + 1)
    if not freeze_neurons:
        total += 2 * n_traces * n
        if not freeze_activations:
            total += (degree + 2) * n
    return total


def rnn_parameter_count(n_hidden: int, *, n_inputs: int = 28, n_classes: int = N_CLASSES) -> int:
    """Trainable parameters of a :class:`VanillaRNN`: ``H**2 + (n_inputs + n_classes + 2) H + n_classes``."""
    h = _check_size(n_hidden, "n_hidden")
    return h * h + (n_inputs + n_classes + 2) * h + n_classes


def matching_rnn_size(n_params: int, *, n_inputs: int = 28, n_classes: int = N_CLASSES) -> int:
    """Hidden size ``H`` of the :class:`VanillaRNN` whose parameter count is closest to ``n_params``.

    (GRNN matched a 65-node GFR-RNN with a 68-unit RNN; the 64-node paper setting's 7,178
    parameters give H = 67, i.e. 7,179 parameters.)
    """
    target = _check_size(n_params, "n_params")
    b = n_inputs + n_classes + 2
    h0 = max(1, int((-b + math.sqrt(b * b + 4 * max(target - n_classes, 0))) / 2))
    cands = [h for h in (h0 - 1, h0, h0 + 1, h0 + 2) if h >= 1]
    return min(cands, key=lambda h: (abs(rnn_parameter_count(h, n_inputs=n_inputs, n_classes=n_classes) - target), h))


# ---------------------------------------------------------------------------------------------
# Running, loss, evaluation
# ---------------------------------------------------------------------------------------------


def _check_images(model: Any, images: Any, name: str = "images") -> jax.Array:
    if not isinstance(model, (GFRNetwork, VanillaRNN)):
        raise TypeError(f"model must be a GFRNetwork or VanillaRNN, got {type(model).__name__}")
    x = check_array(images, name, ndim=(2, 3), finite=not is_traced(images))
    if x.shape[-1] != model.n_inputs:
        raise ShapeError(
            f"{name} must have shape (batch, T, {model.n_inputs}) (one row of {model.n_inputs} inputs per "
            f"time step), got {tuple(x.shape)}"
        )
    if x.shape[-2] < 1:
        raise ShapeError(f"{name} must have at least one time step, got shape {tuple(x.shape)}")
    return x.astype(model.w_in.dtype)


def _check_labels(labels: Any, n: int, n_classes: int) -> jax.Array:
    y = check_array(labels, "labels", (n,), integer=True, low=0, high=n_classes - 1)
    return y.astype(jnp.int32)


def _forward(model, x, n_readout: int):
    xs = jnp.moveaxis(x, -2, 0)  # (T, *batch, n_inputs)
    state = model.init_state(xs.shape[1:-1])
    state, _ = scan(lambda s, row: (model.advance(s, row), None), state, xs)
    zero = jnp.zeros(xs.shape[1:], xs.dtype)

    def readout_step(s, _):
        s = model.advance(s, zero)
        return s, model.readout(s)

    _, logits = scan(readout_step, state, None, length=n_readout)
    return logits


_forward_jit = eqx.filter_jit(_forward)


def forward(model: GFRNetwork | VanillaRNN, images: Any, *, n_readout: int = N_READOUT) -> jax.Array:
    """Logits of the zero-input readout steps after feeding the sequence.

    Parameters
    ----------
    model
        A :class:`GFRNetwork` or :class:`VanillaRNN`.
    images
        Input sequences ``(batch, T, n_inputs)`` or one sequence ``(T, n_inputs)``; for L-MNIST
        ``T = 28`` rows of 28 pixels in [0, 1] (row 0, the top row, first).
    n_readout
        Number of zero-input readout steps (>= 1).

    Returns
    -------
    logits of shape ``(n_readout, batch, n_classes)`` (or ``(n_readout, n_classes)``).
    """
    if isinstance(n_readout, bool) or not isinstance(n_readout, (int, np.integer)) or n_readout < 1:
        raise ConfigError(f"n_readout must be a positive integer, got {n_readout!r}")
    x = _check_images(model, images)
    return _forward_jit(model, x, int(n_readout))


def network_loss(model: Any, batch: tuple[jax.Array, jax.Array], key: jax.Array | None = None):
    """Mean cross-entropy of the first readout step's logits; ``(loss, {"accuracy": ...})``.

    ``batch = (images (B, T, n_inputs), labels (B,))``; the signature fits
    :func:`spikejax.core.fit` (``has_aux=True``). ``key`` is unused (the model is deterministic).
    """
    images, labels = batch
    logits = _forward(model, images.astype(model.w_in.dtype), 1)[0]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    acc = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, {"accuracy": acc}


@eqx.filter_jit
def _eval_batch(model, x, y, valid, n_readout: int):
    logits = _forward(model, x, n_readout)  # (K, B, C)
    correct_steps = jnp.sum((jnp.argmax(logits, axis=-1) == y[None, :]) & valid, axis=-1)  # (K,)
    votes = jnp.sum(jax.nn.softmax(logits, axis=-1), axis=0)
    correct_vote = jnp.sum((jnp.argmax(votes, axis=-1) == y) & valid)
    loss = jnp.sum(jnp.where(valid, optax.softmax_cross_entropy_with_integer_labels(logits[0], y), 0.0))
    return correct_steps, correct_vote, loss


def evaluate(
    model: GFRNetwork | VanillaRNN,
    images: Any,
    labels: Any,
    *,
    n_readout: int = N_READOUT,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Accuracy of each readout step and of the vote, as GRNN reports them.

    The sequences are evaluated in chunks of ``batch_size`` (the last one padded and masked).

    Returns
    -------
    dict with ``step1`` (accuracy of the first zero-input step, the one trained), ``vote``
    (arg-max of the softmax summed over the ``n_readout`` steps), ``step_accuracy`` (list, one per
    readout step), ``loss`` (mean cross-entropy of step 1) and ``n`` (number of images). Accuracies
    are fractions in [0, 1].
    """
    x = _check_images(model, images)
    if x.ndim != 3:
        raise ShapeError(f"images must have shape (batch, T, {model.n_inputs}) for evaluate, got {tuple(x.shape)}")
    n = int(x.shape[0])
    y = _check_labels(labels, n, int(model.w_out.shape[0]))
    if isinstance(n_readout, bool) or not isinstance(n_readout, (int, np.integer)) or n_readout < 1:
        raise ConfigError(f"n_readout must be a positive integer, got {n_readout!r}")
    bs = _check_size(batch_size, "batch_size")
    steps = np.zeros(int(n_readout))
    vote = 0.0
    loss = 0.0
    # Every chunk is padded to ``bs`` sequences (masked), so one compilation serves any data size.
    pad = -n % bs
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
        y = jnp.concatenate([y, jnp.zeros(pad, y.dtype)])
    valid = jnp.arange(n + pad) < n
    for start in range(0, n, bs):
        sl = slice(start, start + bs)
        c_steps, c_vote, l_sum = _eval_batch(model, x[sl], y[sl], valid[sl], int(n_readout))
        steps += np.asarray(c_steps)
        vote += float(c_vote)
        loss += float(l_sum)
    return {
        "step1": float(steps[0] / n),
        "vote": float(vote / n),
        "step_accuracy": [float(s / n) for s in steps],
        "loss": float(loss / n),
        "n": n,
    }


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class NetworkResult:
    """What :func:`train_network` returns.

    Attributes
    ----------
    model : the trained network.
    history : :func:`spikejax.core.fit` history (per epoch: ``step``, ``loss``, ``accuracy`` (train,
        step 1, on the minibatches) and ``val`` (test step-1 accuracy) when test data were given).
    train : :func:`evaluate` on the training set; test : on the test set (or ``None``).
    n_params : trainable parameters; epochs : epochs run; train_seconds : wall time of the fit
        (including compilation); filter_spec : the filter spec used.
    """

    model: Any
    history: dict[str, np.ndarray]
    train: dict[str, Any]
    test: dict[str, Any] | None
    n_params: int
    epochs: int
    train_seconds: float
    filter_spec: Any

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (accuracies, parameter count, epochs, time)."""
        out = {
            "n_params": self.n_params,
            "epochs": self.epochs,
            "train_seconds": round(self.train_seconds, 2),
            "final_train_loss": float(self.history["loss"][-1]) if len(self.history.get("loss", [])) else None,
            "train_step1": self.train["step1"],
            "train_vote": self.train["vote"],
        }
        if self.test is not None:
            out.update(
                test_step1=self.test["step1"],
                test_vote=self.test["vote"],
                test_step_accuracy=self.test["step_accuracy"],
                test_loss=self.test["loss"],
            )
        return out


def train_network(
    model: GFRNetwork | VanillaRNN,
    train_data: tuple[Any, Any],
    *,
    key: jax.Array,
    lr: float = 1e-3,
    epochs: int = 300,
    batch_size: int = 128,
    freeze_neurons: bool = False,
    freeze_activations: bool = True,
    clip_norm: float = 5.0,
    test_data: tuple[Any, Any] | None = None,
    track_test: bool = False,
    progress: bool | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    callback: Callable[..., Any] | None = None,
) -> NetworkResult:
    """Train a GFR-RNN (or the RNN baseline) on sequences with GRNN's protocol.

    Adam (``lr``) on the cross-entropy of the first zero-input readout step, gradients clipped to a
    global norm of ``clip_norm`` (``optax.chain``), shuffled minibatches of ``batch_size`` (the
    remainder of each epoch is dropped), all through :func:`spikejax.core.fit` (one compiled call
    per epoch, ``lax.scan`` over time steps).

    Parameters
    ----------
    model
        :class:`GFRNetwork` or :class:`VanillaRNN`.
    train_data
        ``(images (N, T, n_inputs), labels (N,))``, e.g. from :func:`spikejax.gfr.mnist.load_mnist`.
    key
        PRNG key of the minibatch order.
    lr, epochs, batch_size
        Adam learning rate, number of epochs, minibatch size (GRNN's paper setting: 1e-3, 300, 128).
    freeze_neurons, freeze_activations
        See :func:`network_filter_spec` (paper setting: False, True).
    clip_norm
        Global gradient-norm clip (5 as in GRNN).
    test_data
        Optional ``(images, labels)`` evaluated at the end (and after every epoch with ``track_test``,
        recorded as ``history["val"]``, the test step-1 accuracy).
    progress, checkpoint_dir, callback
        Passed to :func:`spikejax.core.fit` (checkpoint every epoch and resume exactly).
    """
    if not isinstance(model, (GFRNetwork, VanillaRNN)):
        raise TypeError(f"model must be a GFRNetwork or VanillaRNN, got {type(model).__name__}")
    if not (isinstance(lr, (int, float, np.floating)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr must be a positive finite number, got {lr!r}")
    if not (isinstance(clip_norm, (int, float, np.floating)) and math.isfinite(clip_norm) and clip_norm > 0):
        raise ConfigError(f"clip_norm must be a positive finite number, got {clip_norm!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ConfigError(f"epochs must be a non-negative integer, got {epochs!r}")
    if not isinstance(train_data, (tuple, list)) or len(train_data) != 2:
        raise ConfigError("train_data must be a pair (images, labels)")
    x = _check_images(model, train_data[0], "train_data[0] (images)")
    if x.ndim != 3:
        raise ShapeError(f"train_data[0] (images) must have shape (N, T, {model.n_inputs}), got {tuple(x.shape)}")
    y = _check_labels(train_data[1], int(x.shape[0]), int(model.w_out.shape[0]))
    bs = _check_size(batch_size, "batch_size")
    if bs > x.shape[0]:
        raise ConfigError(f"batch_size must be at most the {x.shape[0]} training sequences, got {bs}")
    if test_data is not None:
        if not isinstance(test_data, (tuple, list)) or len(test_data) != 2:
            raise ConfigError("test_data must be a pair (images, labels) or None")
        xt = _check_images(model, test_data[0], "test_data[0] (images)")
        yt = _check_labels(test_data[1], int(xt.shape[0]), int(model.w_out.shape[0]))

    spec = network_filter_spec(model, freeze_neurons=freeze_neurons, freeze_activations=freeze_activations)
    optimizer = optax.chain(
        optax.clip_by_global_norm(float(clip_norm)),
        optax.inject_hyperparams(optax.adam)(learning_rate=jnp.asarray(lr, dtype=x.dtype)),
    )
    val_fn = None
    if test_data is not None and track_test:
        val_fn = lambda m: evaluate(m, xt, yt, n_readout=1)["step1"]  # noqa: E731
    t0 = time.perf_counter()
    res = fit(
        model,
        network_loss,
        (x, y),
        optimizer=optimizer,
        key=key,
        n_epochs=int(epochs),
        batch_size=bs,
        filter_spec=spec,
        has_aux=True,
        val_fn=val_fn,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        callback=callback,
        desc="gfr network",
    )
    jax.block_until_ready(jax.tree_util.tree_leaves(eqx.filter(res.model, eqx.is_array)))
    seconds = time.perf_counter() - t0
    train_eval = evaluate(res.model, x, y)
    test_eval = evaluate(res.model, xt, yt) if test_data is not None else None
    n_batches = int(x.shape[0]) // bs
    return NetworkResult(
        model=res.model,
        history=res.history,
        train=train_eval,
        test=test_eval,
        n_params=count_parameters(model, spec),
        epochs=res.n_steps // max(n_batches, 1),
        train_seconds=seconds,
        filter_spec=spec,
    )


# ---------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------


def _network_metadata(model: Any) -> dict[str, Any]:
    if isinstance(model, VanillaRNN):
        return {
            "kind": "VanillaRNN",
            "n_hidden": model.n_hidden,
            "n_inputs": model.n_inputs,
            "n_classes": int(model.w_out.shape[0]),
            "activation": model.activation,
        }
    if isinstance(model, GFRNetwork):
        nrn = model.neurons
        return {
            "kind": "GFRNetwork",
            "n_nodes": model.n_nodes,
            "n_inputs": model.n_inputs,
            "n_classes": int(model.w_out.shape[0]),
            "input_mode": model.input_mode,
            "n_traces": nrn.n_traces,
            "degree": int(nrn.g.poly_coeff.shape[-1]) - 1,
            "bin_size": nrn.bin_size,
            "activation_bin_size": nrn.g.bin_size,
            "kappa": nrn.kappa,
        }
    raise TypeError(f"model must be a GFRNetwork or VanillaRNN, got {type(model).__name__}")


def save_network(path: str | os.PathLike, model: GFRNetwork | VanillaRNN, **extra: Any) -> Path:
    """Save a network with :func:`spikejax.core.save_model` (leaves) plus a JSON sidecar
    ``<path>.json`` holding what :func:`load_network` needs to rebuild it (and ``extra``)."""
    from ..core.io import save_model

    meta = _network_metadata(model)
    meta.update(extra)
    return save_model(path, model, metadata=meta)


def load_network(path: str | os.PathLike) -> GFRNetwork | VanillaRNN:
    """Load a network written by :func:`save_network` (needs its ``<path>.json`` sidecar)."""
    from ..core.io import load_json, load_model
    from .model import PolynomialActivation

    path = Path(path)
    meta_path = path.with_suffix(path.suffix + ".json")
    if not path.is_file():
        raise FileNotFoundError(f"no such network file: {path}")
    if not meta_path.is_file():
        raise FileNotFoundError(f"no metadata sidecar {meta_path} next to {path} (write networks with save_network)")
    meta = load_json(meta_path)
    check_keys(meta, str(meta_path), ("kind", "n_inputs", "n_classes"))
    key = jax.random.PRNGKey(0)
    if meta["kind"] == "VanillaRNN":
        check_keys(meta, str(meta_path), ("n_hidden", "activation"))
        like = VanillaRNN(
            int(meta["n_hidden"]),
            key=key,
            n_inputs=int(meta["n_inputs"]),
            n_classes=int(meta["n_classes"]),
            activation=meta["activation"],
        )
    elif meta["kind"] == "GFRNetwork":
        check_keys(meta, str(meta_path), ("n_nodes", "input_mode", "n_traces", "degree", "bin_size", "activation_bin_size", "kappa"))
        n, nt, d = int(meta["n_nodes"]), int(meta["n_traces"]), int(meta["degree"])
        dt = _float_dtype()
        g = PolynomialActivation(
            jnp.zeros((n, d + 1), dt), jnp.zeros(n, dt), jnp.ones(n, dt), jnp.ones(n, dt), meta["activation_bin_size"]
        )
        layer = GFRLayer(jnp.zeros((n, nt), dt), jnp.zeros((n, nt), dt), jnp.zeros(nt, dt), g, meta["bin_size"], meta["kappa"])
        like = GFRNetwork(
            key=key,
            neurons=layer,
            input_mode=meta["input_mode"],
            n_inputs=int(meta["n_inputs"]),
            n_classes=int(meta["n_classes"]),
        )
    else:
        raise DataFormatError(f"{meta_path}: unknown network kind {meta['kind']!r} (expected 'GFRNetwork' or 'VanillaRNN')")
    return load_model(path, like)
