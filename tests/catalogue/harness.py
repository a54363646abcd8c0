"""Shared pieces of the bad-input catalogue."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

#: the classes a mistake's error is sorted into in the closing note
CLASSES = ("shape", "type", "value", "nonfinite", "config", "size", "file", "cli")


@dataclass(frozen=True)
class Mistake:
    """One user mistake and the error it must give.

    ``call`` makes the mistake; ``error`` is the exception type (or tuple) it must raise;
    ``match`` is a regular expression the message must contain -- it must name the argument
    (or the file, or the option) and say what was expected. ``kind`` is one of :data:`CLASSES`.
    """

    id: str
    call: Callable[[], Any]
    error: type[BaseException] | tuple[type[BaseException], ...]
    match: str
    kind: str
    marks: tuple = field(default=())

    def __post_init__(self):
        if self.kind not in CLASSES:
            raise ValueError(f"kind must be one of {CLASSES}, got {self.kind!r}")
        if not self.match:
            raise ValueError(f"mistake {self.id!r}: match must name the argument")


def params(mistakes: list[Mistake]) -> list:
    """``pytest.param`` objects for ``@pytest.mark.parametrize('mistake', params(MISTAKES))``."""
    return [pytest.param(m, id=m.id, marks=m.marks) for m in mistakes]


def check(mistake: Mistake) -> None:
    """Run one mistake: it must raise ``mistake.error`` with a message matching ``mistake.match``."""
    with pytest.raises(mistake.error) as info:
        mistake.call()
    message = str(info.value)
    assert re.search(mistake.match, message, flags=re.IGNORECASE | re.DOTALL), (
        f"{mistake.id}: message does not match {mistake.match!r}: {message!r}"
    )


def cli(*args: str, cwd=None, env=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m spikejax`` (the ``spikejax`` command) with ``args``; never raises on failure."""
    return subprocess.run(
        [sys.executable, "-m", "spikejax", *args], capture_output=True, text=True, cwd=cwd, env=env,
        timeout=timeout,
    )
