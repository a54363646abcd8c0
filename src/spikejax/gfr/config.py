"""The training configuration of GFR fitting (GRNN's ``configs/default.json`` plus the pipeline arguments)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import optax

from ..core.config import Config, option
from ..core.errors import ConfigError
from ..core.io import load_json
from .model import BIN_SIZES, KAPPA_BIO

__all__ = ["FitConfig", "ADAM", "NO_KEY"]

#: GRNN's optimiser (Adam) with the learning rate as an injected hyperparameter: one value per
#: member of a population (``fit_population(hyperparams={"learning_rate": ...})``). One module-level
#: object, so repeated fits reuse their compiled programs.
ADAM = optax.inject_hyperparams(optax.adam)(learning_rate=1.0)
#: The (unused) PRNG key of the training steps: the GFR losses draw no random numbers (a host array:
#: no device op). The fits' random numbers (initial coefficients, type-batch order) come from the
#: caller's ``key``.
NO_KEY = np.zeros(2, np.uint32)

#: GRNN's JSON names of the fields (``configs/default.json``) -> this config's names.
_GRNN_NAMES = {"bin_size": "dt", "activation_bin_size": "activation_dt", "activation_lr": "activation_learning_rate",
               "activation_epochs": "activation_n_epochs"}
#: GRNN keys accepted and ignored by :meth:`FitConfig.from_json`.
_GRNN_IGNORED = ("finetune", "retrain_model", "freeze_activation", "seed")


@dataclasses.dataclass(frozen=True)
class FitConfig(Config):
    """Training configuration (GRNN's ``configs/default.json`` plus the pipeline arguments).

    Frozen and validated once at construction; :meth:`replace` gives a modified copy. The random
    numbers of a fit (initial activation coefficients, the type-batch order) come from the ``key``
    of :func:`~spikejax.gfr.fit_cells`, not from the config.
    """

    dt: int = option(20, choices=BIN_SIZES, unit="ms", help="bin width of stage 2 (GRNN's bin_size)")
    activation_dt: int = option(20, choices=BIN_SIZES, unit="ms", help="bin width of stage 1 (GRNN's activation_bin_size)")
    degree: int = option(1, ge=1, help="polynomial degree of the activation g")
    C: float = option(0.0, ge=0, help="GRNN's 'L0' penalty weight; no effect on training (zero gradient), kept for parity")
    eps: float = option(1e-8, gt=0, help="Poisson NLL epsilon")
    activation_learning_rate: float = option(0.05, gt=0, help="stage-1 Adam step size")
    activation_n_epochs: int = option(1000, ge=0, help="stage-1 full-batch epochs")
    activation_repeats: int = option(3, ge=1, help="stage-1 restarts (the lowest final loss is kept)")
    learning_rates: tuple[float, ...] = option((1e-2, 1e-3, 1e-4), gt=0, help="stage-2 restarts from the same initialisation, one per learning rate")
    n_epochs: tuple[int, ...] = option((200, 200, 200), ge=0, help="stage-2 epochs, one per learning rate")
    patience: int = option(3, ge=1, help="early stopping when the epoch loss is identical this many epochs in a row")
    kappa: float = option(KAPPA_BIO, gt=0, help="feedback scale (1000 = GRNN's bio_units)")
    bptt_checkpoint: bool | int = option(False, help="gradient checkpointing of the time scan (False, True or a block length)")
    train_stimuli: tuple[str, ...] = option(("Long Square", "Ramp", "Noise 1"), help="stage-2 training stimuli")
    activation_stimulus: str = option("Long Square", help="stage-1 stimulus (onset bins)")
    val_stimulus: str = option("Noise 1", help="model selection stimulus")
    test_stimulus: str = option("Noise 2", help="held-out test stimulus")
    round_counts: bool = option(False, help="score the EVR on expected counts rounded to whole numbers (GRNN's option)")

    def validate(self) -> None:
        if not self.learning_rates:
            raise self.error("learning_rates", "must hold at least one learning rate")
        if len(self.n_epochs) != len(self.learning_rates):
            raise self.error("n_epochs", f"must hold one value per learning rate ({len(self.learning_rates)}), got {len(self.n_epochs)}")
        if not self.train_stimuli:
            raise self.error("train_stimuli", "must name at least one stimulus")

    @classmethod
    def from_json(cls, path: str | os.PathLike, **overrides: Any) -> FitConfig:
        """Read a config written by :meth:`to_json`, or a GRNN-style one (``hparams`` as
        ``[{"lr":..., "epochs":...}]``, ``bin_size``, ``activation_bin_size``, ``activation_lr``,
        ``activation_epochs``); GRNN keys without effect here (``finetune``, ``retrain_model``,
        ``freeze_activation: true``, ``seed``) are ignored; ``overrides`` (not None) win."""
        raw = load_json(path)
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a JSON object, got {type(raw).__name__}")
        if raw.get("freeze_activation") is False:
            raise ConfigError(f"{path}: freeze_activation=false is not supported (stage 2 trains alpha and beta only)")
        values = {_GRNN_NAMES.get(k, k): v for k, v in raw.items() if k not in _GRNN_IGNORED and k != "hparams"}
        if "hparams" in raw:
            values.update(_from_hparams(raw["hparams"], f"{path}: hparams"))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)


def _from_hparams(hparams: Any, where: str) -> dict[str, tuple]:
    """GRNN's ``hparams`` (``[{"lr": ..., "epochs": ...}]`` or ``[(lr, epochs)]``) as ``learning_rates`` / ``n_epochs``."""
    if not isinstance(hparams, (list, tuple)) or not hparams:
        raise ConfigError(f"{where} must be a non-empty list of {{'lr': ..., 'epochs': ...}}, got {hparams!r}")
    lrs, eps = [], []
    for entry in hparams:
        if isinstance(entry, dict):
            entry = (entry.get("lr"), entry.get("epochs"))
        try:
            lr, ep = entry
        except (TypeError, ValueError):
            raise ConfigError(f"{where} entries must be (lr > 0, epochs >= 0), got {entry!r}") from None
        ok_lr = isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0
        ok_ep = isinstance(ep, (int, np.integer)) and not isinstance(ep, bool) and ep >= 0
        if not (ok_lr and ok_ep):
            raise ConfigError(f"{where} entries must be (lr > 0, epochs >= 0), got {entry!r}")
        lrs.append(float(lr))
        eps.append(int(ep))
    return {"learning_rates": tuple(lrs), "n_epochs": tuple(eps)}
