"""Running, evaluating, training and saving the GFR-RNN / vanilla RNN on L-MNIST: the forward pass
with zero-input readout steps, the first-readout cross-entropy, the 5-step accuracy and vote,
:func:`train_network` on :func:`spikejax.core.fit`, and equinox serialisation with a JSON sidecar.
The modules themselves are :mod:`spikejax.gfr.network_model`."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core.errors import ConfigError, DataFormatError, ShapeError, check_array, check_keys, is_traced
from ..core.scan import scan
from ..core.random import check_key
from ..core.results import StopReason, history_frame
from ..core.training import fit
from .model import GFRLayer
from .results import GFRNetworkResult
from .network_model import N_READOUT, GFRNetwork, VanillaRNN, _check_size, _float_dtype, count_parameters, network_filter_spec

__all__ = ["forward", "network_loss", "evaluate_network", "GFRNetworkResult", "train_network", "save_network", "load_network"]


# ---------------------------------------------------------------------------------------------
# Running, loss, evaluation
# ---------------------------------------------------------------------------------------------


def _check_images(model: Any, images: Any, name: str = "images") -> jax.Array:
    if not isinstance(model, (GFRNetwork, VanillaRNN)):
        raise TypeError(f"model must be a GFRNetwork or VanillaRNN, got {type(model).__name__}")
    if isinstance(model, GFRNetwork):
        from .model import check_model

        check_model(model.neurons, "model.neurons")
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


def network_loss(model: Any, batch: tuple[jax.Array, jax.Array], *, key: jax.Array | None = None):
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


def _network_loss_step(model: Any, batch: tuple[jax.Array, jax.Array], key: jax.Array):
    """:func:`network_loss` in the trainer's loss signature (the key comes positionally there)."""
    return network_loss(model, batch, key=key)


def evaluate_network(
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


def train_network(
    model: GFRNetwork | VanillaRNN,
    train_data: tuple[Any, Any],
    *,
    key: jax.Array,
    learning_rate: float = 1e-3,
    n_epochs: int = 300,
    batch_size: int = 128,
    freeze_neurons: bool = False,
    freeze_activations: bool = True,
    clip_norm: float = 5.0,
    test_data: tuple[Any, Any] | None = None,
    track_test: bool = False,
    progress: bool | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    callback: Callable[..., Any] | None = None,
) -> GFRNetworkResult:
    """Train a GFR-RNN (or the RNN baseline) on sequences with GRNN's protocol.

    Adam (``learning_rate``) on the cross-entropy of the first zero-input readout step, gradients clipped to a
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
    learning_rate, n_epochs, batch_size
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

    Returns
    -------
    :class:`~spikejax.gfr.GFRNetworkResult` (``model``, ``history`` DataFrame, ``train``/``test``
    scores, ``n_params``, ``n_epochs``, ``summary()``).
    """
    key = check_key(key)
    lr, epochs = learning_rate, n_epochs
    if not isinstance(model, (GFRNetwork, VanillaRNN)):
        raise TypeError(f"model must be a GFRNetwork or VanillaRNN, got {type(model).__name__}")
    if not (isinstance(lr, (int, float, np.floating)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"learning_rate must be a positive finite number, got {lr!r}")
    if not (isinstance(clip_norm, (int, float, np.floating)) and math.isfinite(clip_norm) and clip_norm > 0):
        raise ConfigError(f"clip_norm must be a positive finite number, got {clip_norm!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ConfigError(f"n_epochs must be a non-negative integer, got {epochs!r}")
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
        val_fn = lambda m: evaluate_network(m, xt, yt, n_readout=1)["step1"]  # noqa: E731
    t0 = time.perf_counter()
    res = fit(
        model,
        _network_loss_step,
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
    train_eval = evaluate_network(res.model, x, y)
    test_eval = evaluate_network(res.model, xt, yt) if test_data is not None else None
    n_batches = int(x.shape[0]) // bs
    return GFRNetworkResult(
        model=res.model,
        history=history_frame(res.curves, "step"),
        stop_reason=StopReason.of(res.stop_reason),
        seconds=seconds,
        train=train_eval,
        test=test_eval,
        n_params=count_parameters(model, spec),
        n_epochs=res.n_steps // max(n_batches, 1),
        architecture=_network_metadata(model),
        freeze_neurons=bool(freeze_neurons),
        freeze_activations=bool(freeze_activations),
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
            "bin_size": nrn.dt,
            "activation_bin_size": nrn.g.dt,
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

    path = Path(path)
    meta_path = path.with_suffix(path.suffix + ".json")
    if not path.is_file():
        raise FileNotFoundError(f"no such network file: {path}")
    if not meta_path.is_file():
        raise FileNotFoundError(f"no metadata sidecar {meta_path} next to {path} (write networks with save_network)")
    meta = load_json(meta_path)
    check_keys(meta, str(meta_path), ("kind", "n_inputs", "n_classes"))
    like = eqx.filter_eval_shape(_network_like, meta, str(meta_path))
    return load_model(path, like)


def _network_like(meta: dict[str, Any], where: str = "architecture") -> GFRNetwork | VanillaRNN:
    """A network of the structure in ``meta`` (``_network_metadata``), values arbitrary: call it under
    ``eqx.filter_eval_shape`` for a loading template (the fixed key reaches no result)."""
    from .model import PolynomialActivation

    check_keys(meta, where, ("kind", "n_inputs", "n_classes"))
    key = jax.random.PRNGKey(0)
    if meta["kind"] == "VanillaRNN":
        check_keys(meta, where, ("n_hidden", "activation"))
        return VanillaRNN(int(meta["n_hidden"]), key=key, n_inputs=int(meta["n_inputs"]), n_classes=int(meta["n_classes"]),
                          activation=meta["activation"])
    if meta["kind"] == "GFRNetwork":
        check_keys(meta, where, ("n_nodes", "input_mode", "n_traces", "degree", "bin_size", "activation_bin_size", "kappa"))
        n, nt, d = int(meta["n_nodes"]), int(meta["n_traces"]), int(meta["degree"])
        dt = _float_dtype()
        g = PolynomialActivation(jnp.zeros((n, d + 1), dt), jnp.zeros(n, dt), jnp.ones(n, dt), jnp.ones(n, dt), meta["activation_bin_size"])
        layer = GFRLayer(jnp.zeros((n, nt), dt), jnp.zeros((n, nt), dt), jnp.zeros(nt, dt), g, meta["bin_size"], meta["kappa"])
        return GFRNetwork(key=key, neurons=layer, input_mode=meta["input_mode"], n_inputs=int(meta["n_inputs"]),
                          n_classes=int(meta["n_classes"]))
    raise DataFormatError(f"{where}: unknown network kind {meta['kind']!r} (expected 'GFRNetwork' or 'VanillaRNN')")
