"""What :func:`~spikejax.glm.tune` returns: :class:`GLMTuneResult` (a :class:`spikejax.core.Result`).

``save(path)`` / ``GLMTuneResult.load(path)`` round-trip the result through one HDF5 file. The tuned
model is rebuilt from ``model_spec`` (its class and constructor arguments, stored beside it) under
``equinox.filter_eval_shape``. The tuned stimulus is not written (a stimulus holds masks and callables
that a file cannot rebuild): its tuned values are in ``params`` (``"stimulus.<name>"``), and
:meth:`GLMTuneResult.tuned_stimulus` applies them to the stimulus you tuned.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import numpy as np

from ..core.errors import DataFormatError
from ..core.results import Result, _write, get_ax

__all__ = ["GLMTuneResult", "model_spec"]


def model_spec(model: Any) -> dict[str, Any]:
    """``{"cls": "module:Class", "init": {argument: JSON value}}``: enough to rebuild ``model``'s structure.

    The constructor arguments are read back from the model's attributes (``T`` from ``T_steps``); ``init``
    is ``None`` when an argument cannot be found (the result then saves but cannot be loaded).
    """
    cls = type(model)
    init: dict[str, Any] | None = {}
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        sig = None
    if sig is None:
        init = None
    else:
        for name, p in list(sig.parameters.items())[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name == "key":
                continue
            attr = name if hasattr(model, name) else f"{name}_steps"
            if not hasattr(model, attr):
                if p.default is inspect.Parameter.empty:
                    init = None
                    break
                continue
            value = getattr(model, attr)
            if isinstance(value, (bool, int, float, str)) or value is None:
                init[name] = value
            else:
                try:
                    init[name] = np.asarray(value).tolist()
                except Exception:  # noqa: BLE001 - a non-array argument: no template
                    init = None
                    break
    return {"cls": f"{cls.__module__}:{cls.__qualname__}", "init": init}


def _build(spec: Mapping[str, Any]) -> Any:
    from ..core.results import _import

    if spec.get("init") is None:
        raise DataFormatError(f"cannot rebuild a {spec.get('cls')} model: its constructor arguments were not recorded")
    cls = _import(spec["cls"])
    return eqx.filter_eval_shape(lambda: cls(**spec["init"]))


class GLMTuneResult(Result):
    """Result of :func:`~spikejax.glm.tune`.

    Attributes
    ----------
    model
        The tuned model.
    history
        DataFrame, one row per epoch: ``epoch``, ``loss`` (squared rate error, Hz²), ``rate_hz`` (the
        epoch's estimated rate, before its update) and the tuned parameters' values after the update.
    stop_reason
        ``StopReason.COMPLETED`` (every epoch ran; a divergence raises ``TrainingDivergedError``).
    seconds
        Wall time in s (compilation included).
    stimulus
        The tuned stimulus (``None`` without a stimulus, and after :meth:`load`).
    params
        The tuned values ``{name: value}`` (``"stimulus.<name>"`` for stimulus parameters).
    target_rate_hz
        The target population rate (Hz).
    config
        The :class:`~spikejax.glm.TuneConfig` used.
    model_spec
        The model's class and constructor arguments (see :func:`model_spec`), for loading.
    """

    stimulus: Any
    params: dict
    target_rate_hz: float
    config: Any
    model_spec: dict

    @property
    def rate_hz(self) -> float:
        """The last epoch's estimated rate (Hz)."""
        return float(self.history["rate_hz"].to_numpy()[-1])

    @property
    def final_rate_hz(self) -> float:
        """The rate reached (Hz): the mean estimate over the last ``average_last`` fraction of the epochs
        (at least one), less noisy than :attr:`rate_hz`."""
        rates = self.history["rate_hz"].to_numpy()
        frac = float(getattr(self.config, "average_last", 0.25) or 0.0)
        n = max(1, int(round(frac * len(rates))))
        return float(np.mean(rates[-n:]))

    @property
    def target_met(self) -> bool:
        """Whether :attr:`final_rate_hz` is within ``config.rate_tolerance`` (relative, at least 0.5 Hz)
        of :attr:`target_rate_hz`."""
        tol = float(getattr(self.config, "rate_tolerance", 0.1))
        miss = abs(self.final_rate_hz - self.target_rate_hz)
        return bool(np.isfinite(miss) and miss <= max(tol * abs(self.target_rate_hz), 0.5))

    def tuned_stimulus(self, stimulus: Any) -> Any:
        """``stimulus`` with the tuned ``"stimulus.<name>"`` values of :attr:`params` put in."""
        from .tuning import _set

        values = {n: v for n, v in self.params.items() if n.startswith("stimulus.")}
        if not values:
            return stimulus
        import jax.numpy as jnp

        values = {n: jnp.asarray(v, jnp.asarray(getattr(stimulus, n[len("stimulus."):])).dtype) for n, v in values.items()}
        return _set((None, stimulus), values)[1]

    def plot(self, *, ax: Any = None) -> Any:
        """The estimated rate (Hz) per epoch and the target; returns the Axes."""
        ax = get_ax(ax)
        df = self.history
        ax.plot(df["epoch"].to_numpy(), df["rate_hz"].to_numpy(), label="estimated rate")
        ax.axhline(self.target_rate_hz, color="k", ls="--", label=f"target {self.target_rate_hz:g} Hz")
        ax.set_xlabel("epoch")
        ax.set_ylabel("rate (Hz)")
        ax.legend()
        return ax

    @classmethod
    def _template(cls, field: str, header: Mapping[str, Any]) -> Any:
        if field == "model":
            return _build(header["model_spec"])
        return super()._template(field, header)

    def _write_into(self, group: Any) -> dict[str, Any]:
        import dataclasses

        fields = {}
        for f in dataclasses.fields(self):
            value = None if f.name == "stimulus" else getattr(self, f.name)
            fields[f.name] = _write(group, f.name, value)
        return {"cls": f"{type(self).__module__}:{type(self).__qualname__}", "fields": fields}
