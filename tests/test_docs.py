"""The executed tutorials (docs/tutorials/*.md, MyST notebooks).

Fast: every tutorial parses as a notebook (myst-nb's reader when the ``docs`` extra is installed,
otherwise a small reader of the same MyST text format), has a ``QUICK = True`` switch in its first
code cell, every cell compiles, its imports resolve, and every ``<family>.<name>`` it uses exists in
the public API. Slow: ``sphinx -W`` builds the whole documentation, executing the tutorials.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
FAMILIES = ("gfr", "glm", "meso", "l5", "lfads")

_FENCE = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", re.S | re.M)


def _code_cells(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    try:
        from myst_nb.core.read import read_myst_markdown_notebook
    except ImportError:  # the docs extra is not installed: parse the MyST text format directly
        assert text.startswith("---\n"), f"{path.name}: no YAML front matter"
        header = text.split("---\n", 2)[1]
        assert "format_name: myst" in header and "kernelspec" in header, f"{path.name}: not a MyST notebook header"
        cells = _FENCE.findall(text)
    else:
        nb = read_myst_markdown_notebook(text, path=str(path))
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernelspec"
        cells = [c.source for c in nb.cells if c.cell_type == "code"]
    # drop cell-option lines (":tags: ...") that the raw fence reader keeps
    return ["\n".join(line for line in c.splitlines() if not line.startswith(":")) for c in cells]


def test_one_tutorial_per_family():
    assert sorted(p.stem for p in TUTORIALS) == sorted(FAMILIES)
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for fam in FAMILIES:
        assert f"tutorials/{fam}" in index, f"docs/index.md has no toctree entry for tutorials/{fam}"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_parses_and_imports_resolve(path: Path):
    cells = _code_cells(path)
    assert len(cells) >= 4, f"{path.name}: expected a notebook with several code cells"
    assert re.search(r"^QUICK\s*=\s*True\b", cells[0], re.M), f"{path.name}: the first cell must set QUICK = True"
    n_figures = sum(c.count("plt.subplots(") for c in cells)
    assert n_figures >= 2, f"{path.name}: at least two figures are expected, found {n_figures}"

    aliases: dict[str, str] = {}
    for i, src in enumerate(cells):
        tree = ast.parse(src, filename=f"{path.name}[cell {i}]")  # SyntaxError fails the test
        compile(tree, f"{path.name}[cell {i}]", "exec")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    assert importlib.util.find_spec(a.name) is not None, f"{path.name}: cannot import {a.name}"
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mod = importlib.import_module(node.module)
                for a in node.names:
                    if hasattr(mod, a.name):
                        obj = getattr(mod, a.name)
                        if isinstance(obj, type(sys)):
                            aliases[a.asname or a.name] = obj.__name__
                    else:
                        assert importlib.util.find_spec(f"{node.module}.{a.name}") is not None, (
                            f"{path.name}: {node.module} has no {a.name}"
                        )
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    # names re-bound by an assignment are not module aliases any more
    for src in cells:
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            aliases.pop(n.id, None)
    # every attribute used on an imported spikejax module exists (catches renamed public API)
    for i, src in enumerate(cells):
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                target = aliases.get(node.value.id)
                if target and target.startswith("spikejax"):
                    mod = importlib.import_module(target)
                    assert hasattr(mod, node.attr), f"{path.name}[cell {i}]: {target} has no attribute {node.attr!r}"


@pytest.mark.slow
def test_docs_build_executes_tutorials(tmp_path: Path):
    """``sphinx -W`` on the whole docs (as ``make docs``); each tutorial page shows >= 2 built figures."""
    pytest.importorskip("myst_nb")
    pytest.importorskip("sphinx_book_theme")
    out = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for fam in FAMILIES:
        page = (out / "tutorials" / f"{fam}.html").read_text(encoding="utf-8")
        n_img = len(re.findall(r'<img[^>]+src="\.\./_images/', page))
        assert n_img >= 2, f"tutorials/{fam}.html shows {n_img} built figures"
        assert "Traceback" not in page, f"tutorials/{fam}.html contains a traceback"
    shutil.rmtree(out, ignore_errors=True)
