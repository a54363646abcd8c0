"""Notebooks first-class: a small notebook run in a real Jupyter kernel (nbclient + ipykernel) shows the
trainer's progress bar, an inline figure and a result table, and no warning."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

SRC = str(Path(__file__).resolve().parents[1] / "src")

FIT = """\
import jax, jax.numpy as jnp, optax
from spikejax import core

target = jnp.array([0.5, 0.25])
loss = lambda p, batch, key: jnp.sum((p - target) ** 2)
res = core.fit(jnp.array([2.0, -1.0]), loss, optimizer=optax.adam(0.1), key=jax.random.key(0),
               n_steps=20, steps_per_call=5)
print(res.stop_reason.value)
"""

PLOT = "ax = res.plot()"

TABLE = "res"

# without ipywidgets (made unimportable here) the plain text bar, and still no "IProgress not found" warning
NO_WIDGETS = """\
import sys
sys.modules["ipywidgets"] = None
res2 = core.fit(jnp.array([2.0, -1.0]), loss, optimizer=optax.adam(0.1), key=jax.random.key(0),
                n_steps=20, steps_per_call=5, desc="text bar")
"""


def _kernel_for_this_python(folder: Path) -> str:
    """A kernelspec that starts ipykernel with this interpreter (found through JUPYTER_PATH)."""
    spec = folder / "kernels" / "spikejax-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "spikejax test", "language": "python",
    }))
    return "spikejax-test"


def test_notebook_shows_progress_bar_inline_figure_and_table(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    name = _kernel_for_this_python(tmp_path / "jupyter")
    monkeypatch.setenv("PYTHONPATH", SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own inline backend
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(FIT), nbformat.v4.new_code_cell(PLOT), nbformat.v4.new_code_cell(TABLE),
                nbformat.v4.new_code_cell(NO_WIDGETS)]
    client = nbclient.NotebookClient(nb, kernel_name=name, timeout=240, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells for o in c.outputs]
    stderr = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stderr")
    assert "IProgress" not in stderr and "Warning" not in stderr, stderr
    fit_out = nb.cells[0].outputs
    widget = [o for o in fit_out if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    fit_err = "".join(o.get("text", "") for o in fit_out if o.output_type == "stream" and o.name == "stderr")
    assert widget or "fit: 100%" in fit_err, fit_out  # the widget bar with ipywidgets, else the text bar
    import importlib.util

    if importlib.util.find_spec("ipywidgets") is not None:
        assert widget, fit_out
    text = [o for o in nb.cells[3].outputs if o.output_type == "stream" and o.name == "stderr"]
    assert text and "text bar: 100%" in "".join(o.text for o in text), nb.cells[3].outputs
    assert not [o for o in nb.cells[3].outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert any(o.get("text", "").strip() == "completed" for o in fit_out if o.output_type == "stream")
    images = [o for o in nb.cells[1].outputs if "image/png" in o.get("data", {})]
    assert images, nb.cells[1].outputs
    html = [o for o in nb.cells[2].outputs if "text/html" in o.get("data", {})]
    assert html and "<table" in html[0]["data"]["text/html"], nb.cells[2].outputs
