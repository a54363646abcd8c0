"""The ``spikejax`` command: one subcommand per family, plus ``demo``.

Each family contributes ``spikejax/<family>/cli.py`` with ``register(subparsers)`` that adds
its own sub-command tree (e.g. ``spikejax gfr fit ...``), and ``spikejax/<family>/demo.py``
with ``run(out_dir: Path, *, quick: bool, seed: int) -> dict`` that writes that family's part
of the main demo into ``out_dir`` and returns a small summary dict. Families are discovered
from :data:`FAMILIES`; one that is not installed yet is skipped.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import inspect
import os
import sys
import threading
import time
from pathlib import Path

from ._argparse import SpikejaxParser, check_output_path
from .core.errors import SpikejaxError

FAMILIES = ("gfr", "glm", "meso", "l5", "lfads")


def _family_module(family: str, name: str):
    try:
        return importlib.import_module(f"spikejax.{family}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name in (f"spikejax.{family}", f"spikejax.{family}.{name}"):
            return None
        raise


# cold wall time of each demo part, two parts at once on 2 cores (s): the parallel demo starts the longest first.
# A run with the compilation cache on keeps its own part times next to the cache (_DEMO_TIMES_FILE), and the
# next run orders its parts by those: with a warm cache the parts' times change, and so does the best order.
_DEMO_COST = {"lfads": 24.0, "l5": 28.0, "meso": 27.0, "glm": 20.0, "gfr": 11.0}
_DEMO_TIMES_FILE = "spikejax-demo-parts.json"


def _demo_mode(quick: bool, full: bool, x64: bool) -> str:
    return ("quick" if quick else "full" if full else "default") + ("-x64" if x64 else "")


def _demo_times_path() -> Path | None:
    from .core.cache import cache_dir

    folder = cache_dir()
    return None if folder is None else folder / _DEMO_TIMES_FILE


def _read_demo_times() -> dict:
    """The kept part times (``{mode: {family: seconds}}``); ``{}`` when missing, unreadable or not a mapping."""
    from .core.io import load_json

    path = _demo_times_path()
    try:
        data = load_json(path) if path is not None else {}
    except (OSError, ValueError):  # missing or unreadable; DataFormatError is a ValueError
        data = {}
    return data if isinstance(data, dict) else {}


def _demo_costs(mode: str) -> tuple[dict[str, float], bool]:
    """Each part's expected seconds for ``mode`` and whether they come from an earlier run with this cache
    (else :data:`_DEMO_COST`). A missing, unreadable or foreign file means the defaults, never an error."""
    import math

    costs = dict(_DEMO_COST)
    learned = _read_demo_times().get(mode)
    if not isinstance(learned, dict):
        return costs, False
    used = False
    for family, seconds in learned.items():
        if family in costs and isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0:
            costs[family] = float(seconds)
            used = True
    return costs, used


def _save_demo_times(mode: str, seconds: dict[str, float]) -> None:
    """Keep this run's part times for the next run's order (next to the compilation cache, atomically)."""
    from .core.io import save_json

    path = _demo_times_path()
    if path is None or not seconds:
        return
    data = _read_demo_times()
    entry = data.get(mode) if isinstance(data.get(mode), dict) else {}
    entry.update({f: round(float(s), 2) for f, s in seconds.items()})
    data[mode] = entry
    try:
        save_json(path, data)
    except OSError:  # a read-only cache folder: the next run uses the default order
        pass


# seconds this process spent in XLA compilation that the persistent cache saves a next run (compiling,
# not loading from the cache), summed by a jax.monitoring listener installed once per process
_compile_seconds = [0.0]


def _count_compile_seconds() -> None:
    import jax

    if getattr(_count_compile_seconds, "installed", False):
        return

    def listener(event: str, duration: float, **_: object) -> None:
        if event == "/jax/core/compile/backend_compile_duration":  # compile or cache read
            _compile_seconds[0] += duration
        elif event == "/jax/compilation_cache/cache_retrieval_time_sec":  # the cache read: not saved
            _compile_seconds[0] -= duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    _count_compile_seconds.installed = True


def _demo_part(family: str, out: Path, quick: bool, seed: int, full: bool, x64: bool) -> tuple[float, dict]:
    """Run one family's demo part (in this process or in a worker process); ``(seconds, summary)``.

    The summary gets ``compile_seconds``: the part's time in XLA compilation, which a second run with
    the same compilation cache does not spend."""
    import jax

    if x64:
        jax.config.update("jax_enable_x64", True)
    _count_compile_seconds()
    mod = _family_module(family, "demo")
    t0, c0 = time.perf_counter(), _compile_seconds[0]
    print(f"[spikejax demo] {family}: running ...", flush=True)
    kwargs = {"full": True} if full and "full" in inspect.signature(mod.run).parameters else {}
    result = dict(mod.run(out / family, quick=quick, seed=seed, **kwargs) or {})
    result.setdefault("compile_seconds", round(max(0.0, _compile_seconds[0] - c0), 1))
    return time.perf_counter() - t0, result


def _run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    only = [f.strip() for f in args.only.split(",")] if args.only else list(FAMILIES)
    unknown = [f for f in only if f not in FAMILIES]
    if unknown:
        raise SpikejaxError(f"--only must name families among {', '.join(FAMILIES)}; got {unknown}")
    if args.quick and args.full:
        raise SpikejaxError("--quick and --full exclude each other: choose one")
    jobs = getattr(args, "jobs", 1)
    if not isinstance(jobs, int) or jobs < 1:
        raise SpikejaxError(f"--jobs must be a positive integer, got {jobs!r}")
    families = [f for f in only if _family_module(f, "demo") is not None]
    summary: dict[str, dict] = {}
    t_total = time.perf_counter()
    part_args = (out, bool(args.quick), args.seed, bool(args.full), bool(getattr(args, "x64", False)))
    mode = _demo_mode(bool(args.quick), bool(args.full), bool(getattr(args, "x64", False)))

    def report(family: str, dt: float, result: dict) -> None:
        # the part's wall time and the run's size come first and win over a same-named key of the part
        entry = {"seconds": round(dt, 1), "quick": bool(args.quick)}
        entry.update({k: v for k, v in result.items() if k not in entry})
        summary[family] = entry
        parts = result.get("part_seconds")
        detail = f" ({', '.join(f'{k} {v:.1f} s' for k, v in parts.items())})" if parts else ""
        print(f"[spikejax demo] {family}: done in {dt:.1f} s{detail} -> {out / family}", flush=True)

    jobs = min(jobs, len(families))
    if jobs <= 1:
        for family in families:
            report(family, *_demo_part(family, *part_args))
    else:
        # independent parts run at once: this process takes parts itself (its JAX is already imported)
        # while a feeder thread per worker process (spawned: no forked JAX state) hands parts to
        # `jobs - 1` workers; every runner takes the next part as soon as it is free, longest first.
        # The compilation cache is shared, so a second run loads every program either way.
        import collections
        import concurrent.futures
        import multiprocessing

        costs, learned = _demo_costs(mode)
        pending = collections.deque(sorted(families, key=lambda f: costs.get(f, 0.0), reverse=True))
        print(f"[spikejax demo] {jobs} processes, parts longest first "
              f"({'by the last run with this cache' if learned else 'by typical first-run times'}): "
              f"{', '.join(pending)}", flush=True)
        lock = threading.Lock()
        failures: list[BaseException] = []

        def take() -> str | None:
            with lock:
                return pending.popleft() if pending and not failures else None

        def feed(pool) -> None:
            while (family := take()) is not None:
                try:
                    dt, result = pool.submit(_demo_part, family, *part_args).result()
                except BaseException as exc:  # re-raised in the main thread below
                    with lock:
                        failures.append(exc)
                    return
                with lock:
                    report(family, dt, result)

        pool = _take_early_pool(jobs - 1) or concurrent.futures.ProcessPoolExecutor(
            max_workers=jobs - 1, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_fast_at_shutdown)
        with pool:
            feeders = [threading.Thread(target=feed, args=(pool,), daemon=True) for _ in range(jobs - 1)]
            for t in feeders:
                t.start()
            try:
                while (family := take()) is not None:
                    dt, result = _demo_part(family, *part_args)
                    with lock:
                        report(family, dt, result)
            except BaseException:
                with lock:
                    pending.clear()
                raise
            for t in feeders:
                t.join()
        if failures:
            raise failures[0]
    # what the next run with this cache should take: this run's time less the compilation it saves
    _save_demo_times(mode, {f: summary[f]["seconds"] - summary[f].get("compile_seconds", 0.0)
                            for f in families if f in summary})
    summary = {f: summary[f] for f in families if f in summary}
    out.mkdir(parents=True, exist_ok=True)
    from .core.io import save_json

    save_json(out / "summary.json", summary)
    print((out / "summary.json").read_text(encoding="utf-8"))
    print(f"[spikejax demo] total {time.perf_counter() - t_total:.1f} s ({jobs} process{'es' if jobs > 1 else ''})",
          flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = SpikejaxParser(
        prog="spikejax",
        description="Differentiable models of neurons and neural populations in JAX.",
    )
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"spikejax {__version__}")
    parser.add_argument("--x64", action="store_true", help="run in float64 (jax_enable_x64)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the library's main job on bundled data and write figures/tables")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--quick", action="store_true", help="smallest sizes (smoke test)")
    demo.add_argument("--full", action="store_true",
                      help="full-size fits where the default is a light one (meso: the marginal-likelihood fit_em, "
                           "about 5 minutes on 2 cores, instead of hard EM alone)")
    demo.add_argument("--jobs", type=int, default=_default_jobs(),
                      help="parts run at once, each in its own process (default: 2, or 1 on one core; "
                           "1 runs them one after the other in this process)")
    demo.add_argument("--only", default=None, help="comma-separated families to run (default: all)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the PRNG key of every family's run (default: 0)")
    demo.set_defaults(func=_run_demo)
    for family in FAMILIES:
        mod = _family_module(family, "cli")
        if mod is not None:
            mod.register(sub)
    return parser


def _default_jobs() -> int:
    return min(2, os.cpu_count() or 1)


# The demo's worker processes, started by `console_main` before the command line is parsed (see there).
_early_pool: tuple[int, object] | None = None


def _demo_workers_wanted(argv: list[str]) -> int:
    """Worker processes ``spikejax <argv>`` will ask for if it is a parallel demo, else 0.

    A cheap guess made before the real parser is built: a wrong guess costs nothing but the early
    start (the demo shuts a pool of the wrong size down and starts its own)."""
    words = [a for a in argv if a != "--x64"]
    if not words or words[0] != "demo" or any(a in ("-h", "--help", "--version") for a in words):
        return 0
    jobs, n_parts = _default_jobs(), len(FAMILIES)
    for i, word in enumerate(words[1:], start=1):
        name, eq, value = word.partition("=")
        if not eq:
            value = words[i + 1] if i + 1 < len(words) else ""
        if name == "--jobs":
            try:
                jobs = int(value)
            except ValueError:
                return 0
        elif name == "--only":
            n_parts = len([f for f in value.split(",") if f.strip()])
    return max(0, min(jobs, n_parts) - 1)


def _warm_worker() -> None:
    """A demo worker's first task: the imports every part needs, while the main process parses and imports."""
    import jax.numpy  # noqa: F401
    import matplotlib.pyplot  # noqa: F401

    from . import core  # noqa: F401


def _start_early_pool(n_workers: int) -> None:
    """Spawn the demo's workers now, so their 2-3 s of start-up (Python, JAX, matplotlib) overlaps the main
    process's own instead of following it."""
    global _early_pool
    import concurrent.futures
    import multiprocessing

    pool = concurrent.futures.ProcessPoolExecutor(max_workers=n_workers, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=_exit_fast_at_shutdown)
    for _ in range(n_workers):
        pool.submit(_warm_worker)
    _early_pool = (n_workers, pool)


def _take_early_pool(n_workers: int):
    """The early-started pool if it has ``n_workers`` workers (it is then the caller's), else ``None``."""
    global _early_pool
    if _early_pool is None:
        return None
    n, pool = _early_pool
    _early_pool = None
    if n == n_workers:
        return pool
    pool.shutdown(wait=True, cancel_futures=True)
    return None


def _discard_early_pool() -> None:
    """Shut down an early-started pool nobody took (a usage error before the demo ran, say)."""
    _take_early_pool(-1)  # no pool has -1 workers: a pool still there is shut down


def _exit_fast_at_shutdown() -> None:
    """Make this process skip Python's finalisation once its ``atexit`` handlers have run (see
    :func:`console_main`); the demo's worker processes call it when they start."""
    atexit.register(_hard_exit, 0)


def _hard_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def console_main() -> None:
    """The ``spikejax`` console script and ``python -m spikejax``: :func:`main`, then a fast exit.

    A process that has loaded JAX and XLA programs spends 0.7-1.2 s in Python's finalisation
    (destroying modules, executables and the XLA client) after its last ``atexit`` handler; nothing
    a command wrote depends on it. So the command runs the ``atexit`` handlers itself, flushes its
    streams and ends with ``os._exit``. :func:`main` (what tests and scripts call) returns normally.

    For ``spikejax demo`` with two or more jobs it also spawns the worker processes before anything
    else (:func:`_start_early_pool`), so their start-up runs beside the main process's.
    """
    n_workers = _demo_workers_wanted(sys.argv[1:])
    if n_workers:
        _start_early_pool(n_workers)
    try:
        code = main()
    except SystemExit as exc:  # argparse's exit for --help, --version and usage errors
        code = exc.code
    finally:
        _discard_early_pool()
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    shutdown = getattr(threading, "_shutdown", None)  # private: what the interpreter calls at exit
    if shutdown is not None:
        shutdown()  # join non-daemon threads as the interpreter would
    atexit._run_exitfuncs()
    _hard_exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        _check_outputs(args)
        return int(args.func(args) or 0)
    except _USER_ERRORS as exc:
        if os.environ.get("SPIKEJAX_DEBUG"):
            raise
        print(f"spikejax: error: {_describe(exc)}", file=sys.stderr)
        return 2


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse an unwritable output path before any work starts (the parser's ``out_kind`` default
    says whether ``--out`` names a folder or a file)."""
    for dest, option in (("out", "--out"), ("save_path", "--save-path")):
        value = getattr(args, dest, None)
        if value:
            check_output_path(value, option=option, kind=getattr(args, "out_kind", "dir"))


# A user's mistake (bad input, config, missing file or extra, unwritable output) ends as one line and
# exit status 2, never a traceback; SPIKEJAX_DEBUG=1 shows the traceback instead.
_USER_ERRORS = (SpikejaxError, ValueError, TypeError, OSError, ImportError, KeyError, MemoryError, OverflowError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ImportError) and not isinstance(exc, ModuleNotFoundError | SpikejaxError):
        return str(exc)
    if isinstance(exc, ModuleNotFoundError):
        return f"{exc} (install the extra that provides it, e.g. pip install 'spikejax[l5]')"
    if isinstance(exc, OSError) and getattr(exc, "filename", None):
        return f"{exc.strerror or exc}: {exc.filename}"
    if isinstance(exc, KeyError):
        return f"missing key {exc}"
    if isinstance(exc, MemoryError | OverflowError) and not isinstance(exc, SpikejaxError):
        return f"the request is too large for this machine ({type(exc).__name__}: {exc}); reduce the sizes given"
    return str(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
