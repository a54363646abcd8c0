"""The catalogue's size and hygiene (issue 23 asks for at least 150 cases over every area)."""

import collections
import importlib
import pkgutil

import tests.catalogue as catalogue

from .harness import CLASSES


def _all_mistakes():
    found = {}
    for info in pkgutil.iter_modules(catalogue.__path__):
        if not info.name.startswith("test_") or info.name == "test_count":
            continue
        module = importlib.import_module(f"tests.catalogue.{info.name}")
        found[info.name[len("test_"):]] = list(getattr(module, "MISTAKES", []))
    return found


def test_catalogue_has_at_least_150_cases_with_unique_ids():
    found = _all_mistakes()
    ids = [m.id for ms in found.values() for m in ms]
    duplicated = [i for i, n in collections.Counter(ids).items() if n > 1]
    assert not duplicated, f"duplicated mistake ids: {duplicated}"
    assert len(ids) >= 150, {area: len(ms) for area, ms in found.items()}


def test_every_area_is_covered():
    found = _all_mistakes()
    for area in ("core", "cli", "gfr", "glm", "meso", "l5", "lfads"):
        assert found.get(area), f"no catalogue module tests/catalogue/test_{area}.py with MISTAKES"
    kinds = {m.kind for ms in found.values() for m in ms}
    assert kinds <= set(CLASSES)
