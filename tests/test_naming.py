"""One name per concept (docs/design.md, "Names and units"), checked over the public API.

Collects the parameter names of every public function and method-less callable and the field names
of every public Result / Trajectory / Config class in ``spikejax.core`` and the five families (their
``__all__``), then fails on

(a) a ``key`` parameter that is not keyword-only;
(b) two spellings of one concept from a known synonym group (e.g. ``lr`` beside ``learning_rate``);
(c) a ``num_<things>`` count (the library spells counts ``n_<things>``).

As nemos' ``scripts/check_parameter_naming.py`` does. A short allow-list names the exceptions, each
with its reason.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest

from spikejax.core import Config, Result, Trajectory

FAMILIES = ["gfr", "glm", "meso", "l5", "lfads"]

#: Near-duplicate spellings of one concept; the first is the contract's name.
SYNONYMS = [
    {"dt", "bin_size", "delta_t", "bin_ms"},
    {"learning_rate", "lr", "lr_init", "e_lr"},
    {"n_epochs", "max_epochs", "epochs"},
    {"n_iter", "max_em", "n_iterations"},
    {"config", "cfg"},
    {"seconds", "wall_time", "elapsed", "wall_s"},
    {"n_steps", "num_steps", "steps"},
    {"batch_size", "bs"},
    {"n_neurons", "num_neurons"},
    {"record_state", "return_state"},
    {"n_trials", "num_trials"},
]

#: (where, name) -> reason. At most 5 entries.
ALLOW = {
    ("spikejax.core.PopulationResult", "epochs"):
        "per-member count of epochs trained (an outcome), not the training length n_epochs",
    ("spikejax.core.check_key", "key"): "validates the key it is given as its subject; draws no random numbers",
    ("spikejax.core.step_keys", "key"): "derives keys from its subject like jax.random.fold_in(key, data), positional as there",
    ("spikejax.core.step_keys", "steps"): "an array of step indices, not a number of steps",
}
assert len(ALLOW) <= 5


def _public(modname: str):
    mod = importlib.import_module(modname)
    names = getattr(mod, "__all__", None)
    assert names is not None, f"{modname} has no __all__"
    for name in names:
        yield f"{modname}.{name}", getattr(mod, name)


def _names(obj) -> list[tuple[str, inspect.Parameter | None]]:
    """Parameters of a function, fields of a Result/Trajectory/Config class."""
    if inspect.isclass(obj):
        if issubclass(obj, (Result, Trajectory, Config)) and dataclasses.is_dataclass(obj):
            return [(f.name, None) for f in dataclasses.fields(obj) if not f.name.startswith("_")]
        return []
    if callable(obj) and (inspect.isfunction(obj) or inspect.isbuiltin(obj) or hasattr(obj, "__wrapped__")):
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            return []
        return [(p.name, p) for p in sig.parameters.values() if not p.name.startswith("_")]
    return []


def _collect(modnames):
    out = []
    for modname in modnames:
        for where, obj in _public(modname):
            for name, param in _names(obj):
                out.append((where, name, param))
    return out


def _problems(modnames) -> list[str]:
    found = _collect(modnames)
    problems = []
    for where, name, param in found:
        if name == "key" and param is not None and param.kind != inspect.Parameter.KEYWORD_ONLY and (where, name) not in ALLOW:
            problems.append(f"{where}: parameter 'key' must be keyword-only")
    for where, name, _ in found:
        if name.startswith("num_") and (where, name) not in ALLOW:
            problems.append(f"{where}: {name!r} — counts are spelled n_<things> ({'n_' + name[4:]!r})")
    for group in SYNONYMS:
        used: dict[str, list[str]] = {}
        for where, name, _ in found:
            if name in group and (where, name) not in ALLOW:
                used.setdefault(name, []).append(where)
        if len(used) > 1:
            detail = "; ".join(f"{n}: {', '.join(sorted(set(w))[:4])}" for n, w in sorted(used.items()))
            problems.append(f"one concept, {len(used)} names {sorted(used)} ({detail})")
    return problems


def test_core_names():
    assert _problems(["spikejax.core"]) == []


@pytest.mark.parametrize("family", FAMILIES)
def test_family_names(family):
    problems = _problems(["spikejax.core", f"spikejax.{family}"])
    assert problems == [], "\n".join(problems)


def test_names_across_the_library():
    problems = _problems(["spikejax.core"] + [f"spikejax.{f}" for f in FAMILIES])
    assert problems == [], "\n".join(problems)


def test_the_checker_finds_what_it_should(monkeypatch):
    import types

    mod = types.ModuleType("fake_api")

    def simulate(model, n_steps, key):  # key positional
        return None

    def tune(model, *, lr, n_steps, key):
        return None

    def train(model, *, learning_rate, key):
        return None

    mod.simulate, mod.tune, mod.train = simulate, tune, train
    mod.__all__ = ["simulate", "tune", "train"]
    monkeypatch.setitem(__import__("sys").modules, "fake_api", mod)
    problems = _problems(["fake_api"])
    assert any("'key' must be keyword-only" in p and "simulate" in p for p in problems)
    assert any("learning_rate" in p and "lr" in p for p in problems)
    mod.count = lambda *, num_neurons: None
    mod.count.__doc__ = "x"
    mod.__all__ = ["count"]
    assert any("'num_neurons'" in p for p in _problems(["fake_api"]))
