"""Persistent compilation cache: a second process doing the same work skips XLA compilation.

JAX can keep compiled executables on disk (its *persistent compilation cache*). spikejax turns it
on when it is imported, in a per-user cache folder, so a new script, notebook kernel or CLI call
that runs a program some earlier process already compiled loads it instead of compiling it again
(compilation is most of the time to a first answer on CPU: 10-130 s per family before this cache).

Where the cache lives, in order of precedence:

1. ``SPIKEJAX_CACHE_DIR=off`` (or ``0``, ``false``, ``none``, ``no``) disables it;
2. ``SPIKEJAX_CACHE_DIR=/some/folder`` uses that folder;
3. a cache folder the user already gave JAX (``jax.config.update("jax_compilation_cache_dir", ...)``
   before importing spikejax, or ``JAX_COMPILATION_CACHE_DIR``) is left as it is, with JAX's own
   thresholds;
4. otherwise the platform's per-user cache folder (``platformdirs.user_cache_dir("spikejax")``,
   e.g. ``~/.cache/spikejax/jax`` on Linux, ``~/Library/Caches/spikejax/jax`` on macOS).

When spikejax chooses the folder it also lowers JAX's minimum compile time for an entry to be kept
to zero (JAX's default, 1 s, drops most of our per-entry-point programs, which compile in 0.1-1 s, and
every eager operation compiles a small program of its own: in the demo's warm run, 89 such programs
below 0.05 s still cost 2.4 s of the L5 part alone; keeping them all made the warm demo without meso
33 s instead of 43 s, for a 4.5 MB folder of 568 entries) and
caps the folder at :data:`DEFAULT_MAX_SIZE` bytes, least-recently-used entries evicted first. A
threshold or size the user set explicitly (configuration or ``JAX_*`` environment variable) is
not changed.

The cache is trusted code: do not point it at a folder that others can write to.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import jax

__all__ = [
    "CACHE_ENV",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MIN_COMPILE_TIME",
    "cache_dir",
    "configure_from_env",
    "default_cache_dir",
    "disable_compilation_cache",
    "enable_compilation_cache",
]

#: Environment variable naming the cache folder, or ``off`` to disable the cache.
CACHE_ENV = "SPIKEJAX_CACHE_DIR"
#: Programs that took at least this long to compile (seconds) are written to the cache.
DEFAULT_MIN_COMPILE_TIME = 0.0
#: Cap on the cache folder (bytes); least-recently-used entries are evicted past it.
DEFAULT_MAX_SIZE = 2 * 1024**3

_OFF_VALUES = {"off", "0", "false", "none", "no", "disable", "disabled"}
_JAX_DEFAULT_MIN_COMPILE_TIME = 1.0


def default_cache_dir() -> Path:
    """The per-user folder spikejax uses when neither ``SPIKEJAX_CACHE_DIR`` nor JAX names one."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("spikejax", appauthor=False)) / "jax"


def cache_dir() -> Path | None:
    """The folder JAX's persistent compilation cache writes to now, or ``None`` when it is off."""
    value = jax.config.jax_compilation_cache_dir
    return Path(value) if value else None


def _reset_jax_cache() -> None:
    # A cache JAX already opened keeps its folder until reset; resetting is cheap and harmless.
    try:
        from jax.experimental.compilation_cache import compilation_cache as cc

        cc.reset_cache()
    except (ImportError, AttributeError):  # pragma: no cover - very old or very new JAX
        pass


def enable_compilation_cache(
    path: str | os.PathLike | None = None,
    *,
    min_compile_time_secs: float = DEFAULT_MIN_COMPILE_TIME,
    max_size_bytes: int | None = DEFAULT_MAX_SIZE,
) -> Path:
    """Turn JAX's persistent compilation cache on in ``path`` (default :func:`default_cache_dir`).

    Parameters
    ----------
    path
        Folder to keep compiled programs in; created if missing.
    min_compile_time_secs
        Programs whose compilation took at least this many seconds are kept (JAX's default is 1 s).
    max_size_bytes
        Cap on the folder's size in bytes (least recently used entries are evicted), ``None`` or
        ``-1`` for no cap. Eviction needs the ``filelock`` package; without it there is no cap.

    Returns
    -------
    The folder in use.
    """
    if min_compile_time_secs < 0:
        raise ValueError(f"min_compile_time_secs must be >= 0, got {min_compile_time_secs!r}")
    if max_size_bytes is not None and max_size_bytes != -1 and max_size_bytes <= 0:
        raise ValueError(f"max_size_bytes must be positive, -1 or None, got {max_size_bytes!r}")
    folder = Path(path).expanduser() if path is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    _reset_jax_cache()
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    if max_size_bytes is not None and max_size_bytes != -1:
        try:
            import filelock  # noqa: F401  (JAX's LRU eviction needs it)

            jax.config.update("jax_compilation_cache_max_size", int(max_size_bytes))
        except ImportError:  # pragma: no cover - filelock is a dependency
            pass
    return folder


def disable_compilation_cache() -> None:
    """Turn the persistent compilation cache off for this process (programs are compiled anew)."""
    _reset_jax_cache()
    jax.config.update("jax_compilation_cache_dir", None)


def configure_from_env() -> Path | None:
    """Apply the precedence in this module's docstring; called once by ``import spikejax``.

    Never raises: a folder that cannot be created gives a warning and leaves the cache off.
    """
    env = os.environ.get(CACHE_ENV)
    if env is not None and env.strip().lower() in _OFF_VALUES:
        if jax.config.jax_compilation_cache_dir is None:
            return None
        # The user's own JAX setting wins over spikejax's switch; say nothing, change nothing.
        return cache_dir()
    if (env is None or not env.strip()) and jax.config.jax_compilation_cache_dir:
        return cache_dir()  # the user configured JAX's cache: leave it and its thresholds alone
    explicit_threshold = (
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" in os.environ
        or jax.config.jax_persistent_cache_min_compile_time_secs != _JAX_DEFAULT_MIN_COMPILE_TIME
    )
    explicit_size = "JAX_COMPILATION_CACHE_MAX_SIZE" in os.environ or jax.config.jax_compilation_cache_max_size != -1
    path = env.strip() if env and env.strip() else None
    try:
        return enable_compilation_cache(
            path,
            min_compile_time_secs=(
                jax.config.jax_persistent_cache_min_compile_time_secs if explicit_threshold else DEFAULT_MIN_COMPILE_TIME
            ),
            max_size_bytes=None if explicit_size else DEFAULT_MAX_SIZE,
        )
    except OSError as exc:
        warnings.warn(
            f"spikejax: could not create the compilation cache folder ({exc}); programs will be compiled "
            f"in every process. Set {CACHE_ENV} to a writable folder, or to 'off' to silence this.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
