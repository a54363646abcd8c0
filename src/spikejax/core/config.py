"""One kind of configuration: immutable, validated once, at construction.

A family config is a frozen dataclass deriving from :class:`Config`::

    @dataclasses.dataclass(frozen=True)
    class TrainConfig(Config):
        learning_rate: float = option(1e-3, gt=0, help="Adam step size")
        batch_size: int = option(64, ge=1, help="trials per minibatch")
        loss: str = option("poisson", choices=("poisson", "zig"))

Construction checks every field against its annotation (``int``, ``float``, ``bool``, ``str``,
``tuple[...]``, ``X | None``, ``Literal[...]``) and its bounds, then calls :meth:`Config.validate`
for rules that tie fields together. A mistake raises :class:`~spikejax.core.errors.ConfigError`
naming the class, the field, what was expected and what came. Nothing mutates a config after
that: :meth:`Config.replace` builds (and validates) a new one. :meth:`Config.from_dict` (used by
the JSON/YAML loaders and the CLI's ``--set``) rejects unknown keys with the closest valid names.
Integers are accepted where a float is expected (and stored as floats); a float is never accepted
for an int, a bool never for a number, a string never for a number.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .errors import ConfigError

__all__ = ["Config", "option"]


def option(
    default: Any = dataclasses.MISSING,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    choices: tuple | None = None,
    finite: bool = True,
    help: str = "",
    unit: str = "",
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A config field with bounds (``gt``/``ge``/``lt``/``le``, applied to every element of a tuple),
    allowed ``choices``, a ``help`` text and a ``unit`` (both shown by the CLI and the docs)."""
    meta = {"gt": gt, "ge": ge, "lt": lt, "le": le, "choices": choices, "finite": finite, "help": help, "unit": unit}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class Config:
    """Base of every spikejax configuration (subclasses are ``@dataclasses.dataclass(frozen=True)``)."""

    _hints: ClassVar[dict[str, Any] | None] = None

    # ---- construction -------------------------------------------------------------------------
    def __post_init__(self) -> None:
        cls = type(self)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            new = self._check_field(f, hints.get(f.name, Any), value)
            if new is not value:
                object.__setattr__(self, f.name, new)
        self.validate()

    def validate(self) -> None:
        """Rules that tie several fields together (override; raise :meth:`error`)."""

    def error(self, field: str, message: str) -> ConfigError:
        """A :class:`ConfigError` naming this config class and ``field``."""
        return ConfigError(f"{type(self).__name__}.{field} {message}")

    def _check_field(self, f: dataclasses.Field, tp: Any, value: Any) -> Any:
        where = f"{type(self).__name__}.{f.name}"
        value = _coerce(where, tp, value)
        meta = f.metadata
        choices = meta.get("choices")
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where} must be one of {tuple(choices)}, got {value!r}{hint}")
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            if meta.get("finite", True) and isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{where} must be finite, got {item!r}")
            for op, bound, ok in (
                (">", meta.get("gt"), lambda a, b: a > b),
                (">=", meta.get("ge"), lambda a, b: a >= b),
                ("<", meta.get("lt"), lambda a, b: a < b),
                ("<=", meta.get("le"), lambda a, b: a <= b),
            ):
                if bound is not None and not ok(item, bound):
                    raise ConfigError(f"{where} must be {op} {bound}, got {item!r}")
        return value

    # ---- immutability helpers -------------------------------------------------------------------
    def replace(self, **changes: Any):
        """A new, validated config with ``changes`` (unknown names are refused)."""
        self._check_names(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists, nested configs dicts)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if isinstance(v, Config) else _plain(v)
        return out

    @classmethod
    def _check_names(cls, names) -> None:
        known = [f.name for f in dataclasses.fields(cls)]
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(known)}"
                raise ConfigError(f"{cls.__name__} has no field {name!r}{hint}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]):
        """Build from a mapping (JSON, YAML, ``--set``); unknown keys are refused with the closest match."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{cls.__name__} must be built from a mapping of field names, got {type(values).__name__}")
        cls._check_names(values)
        return cls(**dict(values))

    @classmethod
    def from_json(cls, path: str | Path):
        """Read a JSON file written by :meth:`to_json` (or by hand)."""
        from .io import load_json

        return cls.from_dict(load_json(path))

    def to_json(self, path: str | Path) -> Path:
        """Write the config as JSON (atomically)."""
        from .io import save_json

        return save_json(path, self.to_dict())

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """One row per field: name, type, default, unit, help (for the CLI and the docs)."""
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            rows.append({"name": f.name, "type": _type_name(hints.get(f.name, Any)), "default": default,
                         "unit": f.metadata.get("unit", ""), "help": f.metadata.get("help", "")})
        return rows


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _string_hint(value: Any, tp: type) -> str:
    """For a string that reads as a number: how to write it so that YAML/JSON give a number.

    Strings are never converted (a quoted value is a string on purpose, and guessing would hide
    typos), but PyYAML reads ``1e-3`` (no dot) as a string, so say so.
    """
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    if tp is int and number.is_integer() and "e" not in value.lower():
        return f" (the string {value!r}: write {int(number)} without quotes)"
    text = value.strip()
    if "e" in text.lower() and "." not in text.split("e")[0].split("E")[0]:
        mantissa, _, exponent = text.lower().partition("e")
        fixed = f"{mantissa}.0e{exponent}"
        return (f" (the string {value!r}: YAML reads a float without a dot as a string; write {fixed} "
                "without quotes)")
    return f" (the string {value!r}: write it without quotes)"


def _coerce(where: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widened to float where a float is expected)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(where, a, value)
            except ConfigError as exc:
                errors.append(str(exc))
        expected = " or ".join(_type_name(a) for a in args)
        numeric = next((a for a in args if a in (float, int)), None)
        hint = _string_hint(value, numeric) if numeric is not None else ""
        raise ConfigError(f"{where} must be {expected}, got {type(value).__name__} {value!r}{hint}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {args}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{where} must be a tuple, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(f"{where}[{i}]", args[0], v) for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where} must hold {len(args)} values, got {len(value)}")
        return tuple(_coerce(f"{where}[{i}]", a, v) for i, (a, v) in enumerate(zip(args, value))) if args else tuple(value)
    if isinstance(tp, type) and issubclass(tp, Config):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return tp.from_dict(value)
        raise ConfigError(f"{where} must be a {tp.__name__} or a mapping, got {type(value).__name__}")
    if tp is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise ConfigError(f"{where} must be true or false, got {type(value).__name__} {value!r}")
    if tp is int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return int(value)
        raise ConfigError(f"{where} must be an integer, got {type(value).__name__} {value!r}{_string_hint(value, int)}")
    if tp is float:
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
            return float(value)
        raise ConfigError(f"{where} must be a number, got {type(value).__name__} {value!r}{_string_hint(value, float)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} must be a string, got {type(value).__name__} {value!r}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"{where} must be a {tp.__name__}, got {type(value).__name__} {value!r}")
    return value
