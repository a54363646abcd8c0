"""Shared pieces of the bad-input catalogue."""

from __future__ import annotations

import os
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


def with_memory_limit(nbytes: int, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run as on a device with ``nbytes`` of memory (``SPIKEJAX_MAX_BYTES``, restored after)."""

    def call():
        old = os.environ.get("SPIKEJAX_MAX_BYTES")
        os.environ["SPIKEJAX_MAX_BYTES"] = str(int(nbytes))
        try:
            return fn()
        finally:
            if old is None:
                del os.environ["SPIKEJAX_MAX_BYTES"]
            else:
                os.environ["SPIKEJAX_MAX_BYTES"] = old

    return call


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


# --------------------------------------------------------------------------- command-line mistakes
class CliError(Exception):
    """What a CLI mistake's ``call`` raises when the command ended as it must: exit status 2,
    ``spikejax: error: ...`` on stderr and no traceback. The message is the stderr text, so
    ``Mistake.match`` is checked against what the user sees."""


def run_cli(args, *, subprocess_run: bool = False, env: dict | None = None, setup: Callable[[], Any] | None = None):
    """Run ``spikejax ARGS`` and raise :class:`CliError` with its stderr if it failed as a user's
    mistake must; any other outcome (exit 0, another status, a traceback, an exception escaping
    ``main``) fails the test with an ``AssertionError`` or that exception.

    In-process (``spikejax.cli.main``, the default) is as good as a subprocess for everything the
    parser and the handlers do and costs no interpreter start; ``subprocess_run=True`` runs
    ``python -m spikejax`` for the end-to-end cases. ``setup`` (called first) builds files and may
    return extra arguments (a tuple) appended to ``args``; ``args`` may also be a callable returning them.
    """
    import contextlib
    import io

    args = list(args() if callable(args) else args)
    if setup is not None:
        args += list(setup() or ())
    if subprocess_run:
        res = cli(*args, env=env)
        code, err = res.returncode, res.stderr
    else:
        from spikejax.cli import main

        buf_err, buf_out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(buf_err), contextlib.redirect_stdout(buf_out):
            try:
                code = main(args)
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code
        err = buf_err.getvalue()
    assert "Traceback" not in err, f"spikejax {' '.join(args)} showed a traceback:\n{err}"
    assert code == 2, f"spikejax {' '.join(args)} exited with {code!r}, not 2; stderr:\n{err}"
    assert "spikejax: error:" in err, f"spikejax {' '.join(args)}: no 'spikejax: error:' line in stderr:\n{err}"
    raise CliError(err.strip())


def cli_mistake(id: str, args, match: str, *, subprocess_run: bool = False, env: dict | None = None,
                setup: Callable[[], Any] | None = None, marks: tuple = (), kind: str = "cli") -> Mistake:
    """A :class:`Mistake` of kind ``cli``: ``spikejax ARGS`` must fail cleanly with a message matching ``match``."""
    import functools

    call = functools.partial(run_cli, args, subprocess_run=subprocess_run, env=env, setup=setup)
    return Mistake(id, call, CliError, match, kind=kind, marks=marks)
