"""Small bundled data excerpts (each sub-folder has a README with provenance and licence).

Use :func:`path` to locate a bundled file, e.g. ``spikejax.data.path("gfr/gfr_params_20_20_excerpt.json")``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def path(name: str) -> Path:
    """Absolute path of a bundled data file (``name`` relative to ``spikejax/data``)."""
    p = Path(str(resources.files("spikejax.data").joinpath(name)))
    if not p.exists():
        raise FileNotFoundError(f"no bundled data file {name!r} (looked in {p.parent})")
    return p
