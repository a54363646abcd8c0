"""The training configuration of GFR fitting (GRNN's ``configs/default.json`` plus the pipeline arguments)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import optax

from ..core.errors import ConfigError
from ..core.io import load_json
from .model import KAPPA_BIO, check_config

__all__ = ["FitConfig", "ADAM", "NO_KEY"]

#: GRNN's optimiser (Adam) with the learning rate as an injected hyperparameter: one value per
#: member of a population (``fit_population(hyperparams={"learning_rate": ...})``). One module-level
#: object, so repeated fits reuse their compiled programs.
ADAM = optax.inject_hyperparams(optax.adam)(learning_rate=1.0)
#: The (unused) PRNG key of the fits: the GFR losses draw no random numbers (a host array: no device op).
NO_KEY = np.zeros(2, np.uint32)


@dataclasses.dataclass
class FitConfig:
    """Training configuration (GRNN's ``configs/default.json`` plus the pipeline arguments).

    Attributes
    ----------
    bin_size, activation_bin_size : ms (``--bin_size``, ``--activation_bin_size``).
    degree : polynomial degree of ``g`` (``--degree``, default 1).
    C : the "L0" penalty weight; it has **no effect** on training (zero gradient), kept for parity.
    eps : Poisson NLL epsilon.
    activation_lr, activation_epochs, activation_repeats : stage 1.
    hparams : ``((lr, epochs), ...)`` stage-2 restarts from the same initialisation.
    patience : early stopping when the epoch loss is identical this many epochs in a row.
    kappa : feedback scale (1000 = ``bio_units``).
    seed : initialisation draws and the shuffled type-batch order.
    bptt_checkpoint : gradient checkpointing of the time scan (False, True or a block length).
    round_counts : score the EVR on the model's expected counts rounded to whole numbers
        (``round(m dt) / dt``), GRNN's off-by-default option.
    """

    bin_size: int = 20
    activation_bin_size: int = 20
    degree: int = 1
    C: float = 0.0
    eps: float = 1e-8
    activation_lr: float = 0.05
    activation_epochs: int = 1000
    activation_repeats: int = 3
    hparams: tuple[tuple[float, int], ...] = ((1e-2, 200), (1e-3, 200), (1e-4, 200))
    patience: int = 3
    kappa: float = KAPPA_BIO
    seed: int = 0
    bptt_checkpoint: bool | int = False
    train_stimuli: tuple[str, ...] = ("Long Square", "Ramp", "Noise 1")
    activation_stimulus: str = "Long Square"
    val_stimulus: str = "Noise 1"
    test_stimulus: str = "Noise 2"
    round_counts: bool = False

    def __post_init__(self) -> None:
        check_config(self.bin_size, self.activation_bin_size)
        self.bin_size, self.activation_bin_size = int(self.bin_size), int(self.activation_bin_size)
        if int(self.degree) < 1:
            raise ConfigError(f"degree must be >= 1, got {self.degree!r}")
        if not self.hparams:
            raise ConfigError("hparams must hold at least one (lr, epochs) entry")
        hp = []
        for entry in self.hparams:
            if isinstance(entry, dict):
                entry = (entry.get("lr"), entry.get("epochs"))
            lr, ep = entry
            if not (isinstance(lr, (int, float)) and lr > 0 and isinstance(ep, (int, np.integer)) and ep >= 0):
                raise ConfigError(f"hparams entries must be (lr > 0, epochs >= 0), got {entry!r}")
            hp.append((float(lr), int(ep)))
        self.hparams = tuple(hp)
        for name in ("activation_epochs", "activation_repeats", "patience"):
            if int(getattr(self, name)) < (1 if name != "activation_epochs" else 0):
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        self.train_stimuli = tuple(self.train_stimuli)

    @classmethod
    def from_json(cls, path: str | os.PathLike, **overrides: Any) -> FitConfig:
        """Read a GRNN-style config (``hparams`` as ``[{"lr":..., "epochs":...}]``, ``eps``,
        ``activation_epochs``, ``activation_repeats`` ...); unknown keys (``finetune``,
        ``retrain_model``, ``freeze_activation``) are accepted and ignored; ``overrides`` win."""
        raw = load_json(path)
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a JSON object, got {type(raw).__name__}")
        if raw.get("freeze_activation") is False:
            raise ConfigError(f"{path}: freeze_activation=false is not supported (stage 2 trains alpha and beta only)")
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in fields}
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hparams"] = [{"lr": lr, "epochs": ep} for lr, ep in self.hparams]
        return d

