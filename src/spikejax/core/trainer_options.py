"""The small objects that choose the trainer's behaviour (instead of boolean flags).

Each is a frozen dataclass, validated at construction (a mistake raises
:class:`~spikejax.core.ConfigError` naming the class and the field), hashable (the compiled
program is cached by them) and carries only its own settings:

* :class:`Batching` — minibatches: ``Batching(batch_size=None, shuffle=True, shared=True)``
  (``None``: one full-batch step per epoch; ``shared=False``: each member its own permutation).
* :class:`MemberData` — the data holds one data set per member (leading member axis), or, with
  ``index``, member ``i`` uses row ``index[i]``.
* :class:`FixedBatches` — a fixed sequence of minibatches (shapes may differ), one step on each
  per epoch, in order.
* :class:`Validation` — ``Validation(fn, data=None, smoothing=None, on_host=False)``: evaluated after
  every round (an epoch, or ``fit``'s ``steps_per_call`` steps); in the compiled program by default,
  or on the host (``on_host=True``: any Python, e.g. a numpy evaluation).
* :class:`EarlyStopping` — stop a member when its monitored value stops improving.
* :class:`PlateauDecay` — multiply an injected optimiser hyperparameter (the learning rate) when the
  monitored value plateaus.
* :class:`Checkpointing` — ``Checkpointing(dir, every=None, resume=True)``: save the whole training
  state every ``every`` rounds and resume exactly.
* :class:`Progress` — ``Progress(enabled=None, desc="fit")``: the tqdm bar (default: on when stderr
  is a terminal or the code runs in IPython/Jupyter; in a Jupyter kernel the widget bar when
  ipywidgets is installed, a text bar otherwise).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError

__all__ = ["Batching", "MemberData", "FixedBatches", "Validation", "EarlyStopping", "PlateauDecay", "Checkpointing",
           "Progress"]

_MONITORS = ("val", "val_smth", "train")
_RULES = ("no_improvement", "unchanged")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def check_int(value: Any, name: str, *, low: int | None = None, optional: bool = False) -> int | None:
    """``value`` as a Python int; a :class:`ConfigError` naming ``name`` for a float (``2.5``, ``100.0``),
    a string, a bool or a value below ``low`` (``None`` passes with ``optional=True``)."""
    if value is None and optional:
        return None
    if not _is_int(value):
        raise ConfigError(f"{name} must be an int{'' if low is None else f' >= {low}'}, got "
                          f"{type(value).__name__} {value!r}")
    if low is not None and value < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def check_trainer_call(loss_fn: Any, optimizer: Any, key: Any) -> Any:
    """The checks every trainer entry point makes first: a callable loss, an optax optimiser, a PRNG key."""
    from .random import check_key

    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (loss_fn(model, batch, key) -> loss), got {type(loss_fn).__name__} "
                        f"{loss_fn!r}"[:300])
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"optimizer must be an optax GradientTransformation (e.g. optax.adam(1e-3)), got "
                        f"{type(optimizer).__name__} {optimizer!r}"[:300])
    return check_key(key)


def _check_monitoring(obj) -> None:
    """Shared checks of EarlyStopping / PlateauDecay (patience, mode, monitor, min_steps, min_delta)."""
    name = type(obj).__name__
    if not _is_int(obj.patience) or obj.patience < 1:
        raise ConfigError(f"{name}.patience must be an int >= 1, got {obj.patience!r}")
    if obj.mode not in ("min", "max"):
        raise ConfigError(f"{name}.mode must be 'min' or 'max', got {obj.mode!r}")
    prefixed = isinstance(obj.monitor, str) and obj.monitor.startswith(("train/", "val/")) and len(obj.monitor.split("/", 1)[1]) > 0
    if obj.monitor not in _MONITORS and not prefixed:
        raise ConfigError(f"{name}.monitor must be one of {_MONITORS}, 'train/<aux key>' or 'val/<key>', got {obj.monitor!r}")
    if not _is_int(obj.min_steps) or obj.min_steps < 0:
        raise ConfigError(f"{name}.min_steps must be an int >= 0, got {obj.min_steps!r}")
    if not _is_number(obj.min_delta) or not math.isfinite(obj.min_delta) or obj.min_delta < 0:
        raise ConfigError(f"{name}.min_delta must be a finite number >= 0, got {obj.min_delta!r}")


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    if mode == "min":
        return value < best - min_delta
    return value > best + min_delta


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """Stop when the monitored metric has not improved by ``min_delta`` for ``patience`` evaluations.

    ``monitor`` is ``"val"`` (the value of the :class:`Validation`), ``"val_smth"`` (its exponential
    smoothing), ``"train"`` (the mean training loss of the round), ``"train/<key>"`` (the mean of the
    loss's aux entry ``<key>``) or ``"val/<key>"`` (an entry of a dict-valued validation); ``mode`` is
    ``"min"`` or ``"max"``. Evaluations without improvement are counted only from global step
    ``min_steps`` on (e.g. once KL ramps end); the best value is tracked throughout.

    ``rule="unchanged"`` stops instead when the monitored value has been *identical* for
    ``patience`` evaluations in a row (GRNN's criterion; ``min_delta`` and ``mode`` then only
    affect the best value that is tracked).
    """

    patience: int = 10
    min_delta: float = 0.0
    monitor: str = "val"
    mode: str = "min"
    min_steps: int = 0
    rule: str = "no_improvement"

    def __post_init__(self) -> None:
        _check_monitoring(self)
        if self.rule not in _RULES:
            raise ConfigError(f"EarlyStopping.rule must be one of {_RULES}, got {self.rule!r}")

    def improved(self, value: float, best: float | None) -> bool:
        """Whether ``value`` improves on ``best`` (``None``/non-finite: any finite value does)."""
        return _improved(value, best, self.mode, self.min_delta)


@dataclasses.dataclass(frozen=True)
class PlateauDecay:
    """Multiply an injected optimiser hyperparameter by ``factor`` when the monitored metric plateaus.

    After ``patience`` evaluations without an improvement by ``min_delta`` the hyperparameter
    ``name`` of an ``optax.inject_hyperparams`` state (anywhere inside the optimiser state) is
    multiplied by ``factor``, never below ``min_value``, and the counter restarts
    (``torch.optim.lr_scheduler.ReduceLROnPlateau`` semantics without cooldown). Counting starts at
    global step ``min_steps``. It runs in the compiled program, per member; the value stays an
    array leaf of the same dtype, so nothing recompiles. Its value is logged under ``name``.
    """

    factor: float = 0.95
    patience: int = 6
    min_value: float = 0.0
    monitor: str = "val"
    mode: str = "min"
    min_delta: float = 0.0
    min_steps: int = 0
    name: str = "learning_rate"

    def __post_init__(self) -> None:
        if not _is_number(self.factor) or not 0 < self.factor <= 1:
            raise ConfigError(f"PlateauDecay.factor must be a number in (0, 1], got {type(self.factor).__name__} "
                              f"{self.factor!r}")
        if not _is_number(self.min_value) or not math.isfinite(self.min_value) or self.min_value < 0:
            raise ConfigError(f"PlateauDecay.min_value must be a finite number >= 0, got {type(self.min_value).__name__} "
                              f"{self.min_value!r}")
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"PlateauDecay.name must name an injected hyperparameter, got {self.name!r}")
        _check_monitoring(self)


@dataclasses.dataclass(frozen=True)
class Batching:
    """Minibatches drawn from a per-epoch permutation of the samples (``fold_in(data_key, epoch)``).

    ``batch_size=None``: one full-batch step per epoch. Otherwise an epoch is ``n_samples //
    batch_size`` steps (the remainder is dropped). ``shuffle=False`` takes the batches in order;
    ``shared=False`` gives each member of a population its own permutation.
    """

    batch_size: int | None = None
    shuffle: bool = True
    shared: bool = True

    def __post_init__(self) -> None:
        if self.batch_size is not None and (not _is_int(self.batch_size) or self.batch_size < 1):
            raise ConfigError(f"Batching.batch_size must be None or an int >= 1, got {self.batch_size!r}")
        for f in ("shuffle", "shared"):
            if not isinstance(getattr(self, f), (bool, np.bool_)):
                raise ConfigError(f"Batching.{f} must be True or False, got {getattr(self, f)!r}")


@dataclasses.dataclass(frozen=True)
class MemberData:
    """The data holds one data set per member: every leaf has the member axis first, then the samples.

    With ``index`` (one int per member), member ``i`` uses row ``index[i]`` of the data instead
    (e.g. several learning rates per cell without copying the cell's data).
    """

    index: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.index is not None:
            idx = np.asarray(self.index)
            if idx.ndim != 1 or idx.dtype.kind not in "iu" or (idx.size and idx.min() < 0):
                raise ConfigError(f"MemberData.index must be a sequence of ints >= 0, one per member, got {self.index!r}")
            object.__setattr__(self, "index", tuple(int(i) for i in idx))


@dataclasses.dataclass(frozen=True, eq=False)
class FixedBatches:
    """A fixed sequence of minibatches (pytrees that may differ in shape): one step on each per epoch,
    in order (the steps are unrolled in the program). Per member like the data with :class:`MemberData`."""

    batches: tuple[Any, ...]

    def __post_init__(self) -> None:
        if isinstance(self.batches, (str, bytes)) or not isinstance(self.batches, Sequence):
            raise ConfigError(f"FixedBatches.batches must be a sequence of minibatches, got {type(self.batches).__name__}")
        object.__setattr__(self, "batches", tuple(self.batches))
        if not self.batches:
            raise ConfigError("FixedBatches.batches must hold at least one minibatch")


@dataclasses.dataclass(frozen=True, eq=False)
class Validation:
    """A validation function evaluated after every round (an epoch, or ``fit``'s ``steps_per_call`` steps).

    In the compiled program (default): ``fn(model, data, key, *, step=…, args=…)`` per member,
    returning a scalar or a dict with the monitored value under ``"val"`` (other entries are logged
    as ``"val/<name>"``). ``step`` (global steps done, traced) is passed when ``fn`` declares a
    ``step`` parameter, ``args`` when the trainer has ``args``. ``key`` is
    ``fold_in(fold_in(val_key, round), member)``.

    ``on_host=True``: ``fn(model)`` or ``fn(model, step=…)`` runs on the host between rounds (any
    Python code: numpy, printing); the trainer then runs one round per compiled call. ``data`` is
    not used then (close over it).

    ``smoothing=a`` logs ``val_smth = (1 − a)·val_smth + a·val`` (LFADS: 0.7); monitor it with
    ``EarlyStopping(monitor="val_smth")`` / ``PlateauDecay(monitor="val_smth")``.
    """

    fn: Callable[..., Any]
    data: Any = None
    smoothing: float | None = None
    on_host: bool = False
    pass_step: bool | None = None  #: pass ``step=`` (default: when ``fn`` declares it)

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ConfigError(f"Validation.fn must be callable, got {type(self.fn).__name__}")
        if self.smoothing is not None and (not _is_number(self.smoothing) or not 0 < self.smoothing <= 1):
            raise ConfigError(f"Validation.smoothing must be None or a number in (0, 1], got {self.smoothing!r}")
        if not isinstance(self.on_host, (bool, np.bool_)):
            raise ConfigError(f"Validation.on_host must be True or False, got {self.on_host!r}")
        if self.on_host and self.data is not None:
            raise ConfigError("Validation(on_host=True) takes no data= (close over it in fn)")
        if self.pass_step is None:
            object.__setattr__(self, "pass_step", accepts(self.fn, "step"))


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """Save the whole training state into folder ``dir`` every ``every`` rounds (default: every chunk
    of rounds) and, with ``resume=True``, continue from the checkpoint found there: the resumed run
    equals an uninterrupted one (step keys ``fold_in(key, step)``, permutations ``fold_in(key, epoch)``,
    early-stopping, smoothing and plateau counters are part of the state). Files are written to
    temporary names and renamed (:func:`spikejax.core.save_checkpoint`)."""

    dir: str | Path
    every: int | None = None
    resume: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.dir, (str, Path)) or not str(self.dir):
            raise ConfigError(f"Checkpointing.dir must be a folder path, got {self.dir!r}")
        if self.every is not None and (not _is_int(self.every) or self.every < 1):
            raise ConfigError(f"Checkpointing.every must be None or an int >= 1 (rounds), got {self.every!r}")
        if not isinstance(self.resume, (bool, np.bool_)):
            raise ConfigError(f"Checkpointing.resume must be True or False, got {self.resume!r}")


def in_notebook() -> bool:
    """Whether the code runs in an IPython shell or a Jupyter kernel (``get_ipython()`` answers)."""
    import sys

    ipy = sys.modules.get("IPython")
    if ipy is None:
        return False
    try:
        return ipy.get_ipython() is not None
    except Exception:  # noqa: BLE001
        return False


def _in_kernel() -> bool:
    import sys

    if not in_notebook():
        return False
    try:
        shell = sys.modules["IPython"].get_ipython()
        return "IPKernelApp" in getattr(shell, "config", {}) or type(shell).__name__ == "ZMQInteractiveShell"
    except Exception:  # noqa: BLE001
        return False


def progress_bar(**kwargs: Any) -> Any:
    """A tqdm bar: the notebook widget in a Jupyter kernel with ipywidgets, else the text bar.

    Never tqdm's "IProgress not found" warning: without ipywidgets (or outside a kernel) the plain
    text bar is used.
    """
    if _in_kernel() and not kwargs.get("disable"):
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(**kwargs)
        except Exception:  # noqa: BLE001 - no ipywidgets, or an old one: the text bar
            pass
    from tqdm.std import tqdm

    return tqdm(**kwargs)


@dataclasses.dataclass(frozen=True)
class Progress:
    """A tqdm bar over rounds: ``enabled=None`` shows it when stderr is a terminal or in IPython/Jupyter
    (a widget in a Jupyter kernel with ipywidgets, the text bar otherwise)."""

    enabled: bool | None = None
    desc: str = "fit"

    def __post_init__(self) -> None:
        if self.enabled is not None and not isinstance(self.enabled, (bool, np.bool_)):
            raise ConfigError(f"Progress.enabled must be None, True or False, got {self.enabled!r}")
        if not isinstance(self.desc, str):
            raise ConfigError(f"Progress.desc must be a string, got {self.desc!r}")

    @property
    def shown(self) -> bool:
        if self.enabled is not None:
            return bool(self.enabled)
        if in_notebook():
            return True
        import sys

        try:
            return sys.stderr.isatty()
        except Exception:  # noqa: BLE001
            return False


def accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` declares a parameter ``name`` (``**kwargs`` does not count)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    p = params.get(name)
    return p is not None and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)


def _options(*, batching, member_data, batches, validation, checkpointing, progress, batch_size, shuffle, shared_batches,
             data_index, val_fn, val_data, val_smoothing, checkpoint_dir, checkpoint_every, resume, desc):
    """The one translation of the keyword arguments of earlier versions into the behaviour objects."""

    def both(new, old, what):
        if new is not None and old:
            raise ConfigError(f"pass either {what[0]} or {what[1]}, not both")

    both(batching, batch_size is not None or shuffle is not True or shared_batches is not True,
         ("batching=Batching(...)", "batch_size=/shuffle=/shared_batches="))
    if batching is None:
        batching = Batching(batch_size=check_int(batch_size, "batch_size", low=1, optional=True), shuffle=shuffle,
                            shared=shared_batches)
    if isinstance(member_data, (bool, np.bool_)):
        if data_index is not None and not member_data:
            raise ConfigError("data_index needs member_data=True")
        member_data = MemberData(index=None if data_index is None else tuple(np.asarray(data_index).tolist())) if member_data else None
    elif member_data is not None:
        if not isinstance(member_data, MemberData):
            raise ConfigError(f"member_data must be a MemberData (or True/False), got {type(member_data).__name__}")
        both(member_data.index, data_index is not None, ("MemberData(index=)", "data_index="))
    if batches is not None and not isinstance(batches, FixedBatches):
        batches = FixedBatches(batches)
    both(validation, val_fn is not None or val_data is not None or val_smoothing is not None,
         ("validation=Validation(...)", "val_fn=/val_data=/val_smoothing="))
    if validation is None and val_fn is not None:
        validation = Validation(val_fn, data=val_data, smoothing=val_smoothing)
    elif validation is None and val_smoothing is not None and (not _is_number(val_smoothing) or not 0 < val_smoothing <= 1):
        raise ConfigError(f"val_smoothing must be in (0, 1], got {val_smoothing}")
    both(checkpointing, checkpoint_dir is not None, ("checkpointing=Checkpointing(...)", "checkpoint_dir="))
    if checkpointing is None and checkpoint_dir is not None:
        checkpointing = Checkpointing(checkpoint_dir, every=checkpoint_every, resume=resume)
    if not isinstance(progress, Progress):
        progress = Progress(enabled=progress, desc=desc)
    return batching, member_data, batches, validation, checkpointing, progress


def _check_monitor(what: str, obj: Any, validation: Validation | None) -> None:
    if obj is None:
        return
    if obj.monitor.startswith("val") and validation is None:
        raise ConfigError(f"{what}(monitor={obj.monitor!r}) needs a validation: pass validation=Validation(fn) (or val_fn=)")
    if obj.monitor == "val_smth" and validation.smoothing is None:
        raise ConfigError(f"{what}(monitor='val_smth') needs Validation(smoothing=) (or val_smoothing=)")
