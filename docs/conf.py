"""Sphinx configuration for spikejax (MyST markdown + myst-nb, API pages from NumPy docstrings)."""

import os
import sys

sys.path.insert(0, os.path.abspath("../src"))

project = "spikejax"
author = "spikejax developers"
copyright = "2026, spikejax developers"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
autosummary_generate = True
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
nb_execution_mode = "off"  # guides are executed as examples in CI, not at doc-build time
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
html_title = "spikejax"
try:
    import sphinx_book_theme  # noqa: F401

    html_theme = "sphinx_book_theme"
except ImportError:  # pragma: no cover
    html_theme = "alabaster"
suppress_warnings = ["myst.header"]
