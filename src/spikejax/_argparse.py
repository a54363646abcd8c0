"""The parser class, help formatter and argument types of the ``spikejax`` command (private).

One command-line style for every family:

* long options are kebab-case (``--save-path``); an old snake_case spelling listed in the *same*
  ``add_argument`` call (``add_argument("--save-path", "--save_path", ...)``) is a deprecated alias:
  it still works for one release, prints a deprecation message to stderr and is hidden from
  ``--help``;
* every option's help shows its default (``(default: ...)``) unless the help text already says it;
* numbers that must be positive or non-negative use :func:`positive_int`, :func:`positive_float`,
  :func:`non_negative_int`, :func:`non_negative_float` as ``type=``, so the error names the flag;
* a usage error ends as ``spikejax: error: ...`` with exit status 2, like every other user mistake.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import re
import sys
import tempfile
from pathlib import Path

__all__ = [
    "SpikejaxParser",
    "HelpFormatter",
    "positive_int",
    "non_negative_int",
    "positive_float",
    "non_negative_float",
    "probability",
    "check_output_path",
    "deprecated_aliases",
]


def kebab(option: str) -> str:
    """``--save_path`` -> ``--save-path`` (the prefix dashes are kept)."""
    stripped = option.lstrip("-")
    return option[: len(option) - len(stripped)] + stripped.replace("_", "-")


def deprecated_aliases(action: argparse.Action) -> frozenset[str]:
    """The hidden, deprecated option strings of ``action`` (empty for most actions)."""
    return getattr(action, "deprecated_aliases", frozenset())


_DEPRECATING: dict[type, type] = {}


def _deprecating(cls: type) -> type:
    """A subclass of the action class ``cls`` that warns when called through a deprecated alias."""
    if cls not in _DEPRECATING:

        def __call__(self, parser, namespace, values, option_string=None):
            if option_string in deprecated_aliases(self):
                print(
                    f"spikejax: warning: {option_string} is deprecated and will be removed in the next release; "
                    f"use {kebab(option_string)}",
                    file=sys.stderr,
                )
            return cls.__call__(self, parser, namespace, values, option_string)

        _DEPRECATING[cls] = type(f"Deprecating{cls.__name__}", (cls,), {"__call__": __call__})
    return _DEPRECATING[cls]


_SAYS_DEFAULT = re.compile(r"%\(default\)|\(default\b|\bdefault:", re.IGNORECASE)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` after every option's help (unless the help says it already) and
    hides deprecated aliases."""

    def _get_help_string(self, action):
        text = action.help or ""
        if _SAYS_DEFAULT.search(text):
            return text
        if action.default is argparse.SUPPRESS or action.nargs == 0 or action.required:  # flags, --help, --version
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text  # a required positional has no default
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"

    def _format_action_invocation(self, action):
        hidden = deprecated_aliases(action)
        if hidden:
            action = copy.copy(action)
            action.option_strings = [s for s in action.option_strings if s not in hidden]
        return super()._format_action_invocation(action)


_ALIASES_IN_MESSAGE = re.compile(r"(--?[A-Za-z0-9][\w-]*)(?:/--?[A-Za-z0-9][\w-]*)+")


class SpikejaxParser(argparse.ArgumentParser):
    """``ArgumentParser`` with the spikejax conventions (see the module docstring); its sub-parsers
    are of the same class."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        strings = [a for a in args if isinstance(a, str)]
        old = {s for s in strings if s.startswith("--") and "_" in s and kebab(s) in strings}
        if old:  # the kebab-case spelling first: it gives the dest and the usage line
            args = tuple(s for s in args if s not in old) + tuple(s for s in args if s in old)
        action = super().add_argument(*args, **kwargs)
        if old:
            action.deprecated_aliases = frozenset(old)
            action.__class__ = _deprecating(type(action))
        return action

    def _get_option_tuples(self, option_string):
        # an abbreviation (``--save``) matching an option and its deprecated alias is not ambiguous
        seen, out = set(), []
        for t in super()._get_option_tuples(option_string):
            if id(t[0]) not in seen:
                seen.add(id(t[0]))
                out.append(t)
        return out

    def error(self, message):
        """Usage line, then ``spikejax: error: <command>: <message>``; exit status 2."""
        self.print_usage(sys.stderr)
        # argparse names an option by all its spellings (--n-obs/--n_obs): name it by the first one
        message = _ALIASES_IN_MESSAGE.sub(r"\1", message)
        where = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        self.exit(2, f"spikejax: error: {where}{message}\n")


# --------------------------------------------------------------------------- argument types
def _number(kind, text):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """``type=`` for counts that must be >= 1."""
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (>= 1), got {text}")
    return value


def non_negative_int(text: str) -> int:
    """``type=`` for counts that may be 0."""
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer (>= 0), got {text}")
    return value


def positive_float(text: str) -> float:
    """``type=`` for durations, rates, learning rates: finite and > 0."""
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number (> 0), got {text}")
    return value


def non_negative_float(text: str) -> float:
    """``type=`` for finite numbers >= 0."""
    value = _number(float, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number (>= 0), got {text}")
    return value


def probability(text: str) -> float:
    """``type=`` for a number in [0, 1]."""
    value = _number(float, text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


# --------------------------------------------------------------------------- output paths
def check_output_path(path: str | os.PathLike, *, option: str = "--out", kind: str = "dir") -> Path:
    """Check, before any work, that ``path`` can be written: a folder (``kind='dir'``) or a file
    (``kind='file'``) whose nearest existing ancestor is a writable folder.

    Raises :class:`~spikejax.core.errors.SpikejaxError` naming ``option`` and the path. Nothing is
    created.
    """
    from .core.errors import SpikejaxError

    p = Path(path).expanduser()
    if p.exists():
        if kind == "dir" and not p.is_dir():
            raise SpikejaxError(f"{option} {path}: expected a folder, but it is an existing file")
        if kind == "file" and p.is_dir():
            raise SpikejaxError(f"{option} {path}: expected a file name, but it is an existing folder")
        probe = p if p.is_dir() else p.parent
    else:
        probe = p.absolute().parent
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise SpikejaxError(f"{option} {path}: cannot be created because {probe} is a file, not a folder")
    try:  # os.access says yes to root on a read-only file system; a real probe does not
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise SpikejaxError(f"{option} {path}: cannot write under {probe} ({exc.strerror or exc})") from None
    return p
