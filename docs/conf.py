"""Sphinx configuration for spikejax (MyST markdown + myst-nb, API pages from NumPy docstrings)."""

import logging
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
# The tutorials (docs/tutorials/*.md, MyST notebooks) are executed at build time; results are cached
# in docs/_build/.jupyter_cache and re-used while a notebook's code is unchanged. The prose guides
# have no code cells (their code is shown as plain fenced blocks), so only the tutorials execute.
nb_execution_mode = "cache"
nb_execution_cache_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_build", ".jupyter_cache")
nb_execution_timeout = 1200  # s per notebook (quick settings take a few minutes on 2 cores)
nb_execution_raise_on_error = True  # a failing cell fails the build
nb_execution_show_tb = True
nb_merge_streams = True
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
html_title = "spikejax"
try:
    import sphinx_book_theme  # noqa: F401

    html_theme = "sphinx_book_theme"
except ImportError:  # pragma: no cover
    html_theme = "alabaster"

# --- warnings-as-errors hygiene (the build runs with -W) -------------------------------------
# Short type names such as ``N`` or ``T`` in docstrings match attributes of several classes; the
# ambiguity is harmless (Sphinx links the first), so these cross-reference notes are not errors.
suppress_warnings = ["myst.header", "ref.python"]


def _escape_bars(app, what, name, obj, options, lines):
    """Docstrings write |x| for absolute values; reST would read ``|...|`` as a substitution.

    Bars outside inline literals are escaped (table rows, starting with | or +, are left alone).
    """
    import re

    for i, line in enumerate(lines):
        if "|" not in line or line.lstrip().startswith(("|", "+")):
            continue
        parts = re.split(r"(``.*?``)", line)
        lines[i] = "".join(p if p.startswith("``") else re.sub(r"(?<!\\)\|", r"\\|", p) for p in parts)


class _SameAttributeTwice(logging.Filter):
    """An attribute listed in a class's NumPy "Attributes" section that autodoc also documents (a
    property or a dataclass field) is described twice on the API page; that note is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("duplicate object description of spikejax.")


def setup(app):
    app.connect("autodoc-process-docstring", _escape_bars)
    logging.getLogger("sphinx.sphinx.domains.python").addFilter(_SameAttributeTwice())
