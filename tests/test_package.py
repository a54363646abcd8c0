"""Package metadata (issue 24, item 5): one version, CITATION.cff, Project-URLs and classifiers."""

import tomllib
from pathlib import Path

import yaml

import spikejax

ROOT = Path(__file__).resolve().parents[1]


def test_citation_cff_names_the_package_version_and_repository():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    assert str(cff["version"]) == spikejax.__version__  # the version lives in _version.py; keep the copy in step
    for key in ("message", "title", "authors", "license", "repository-code"):
        assert cff.get(key), key


def test_pyproject_has_project_urls_and_classifiers():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert {"Homepage", "Documentation", "Source", "Changelog", "Issues"} <= set(project["urls"])
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert project["urls"]["Source"] == cff["repository-code"]
    assert any(c.startswith("Programming Language :: Python :: 3.11") for c in project["classifiers"])
    assert project["license"] == cff["license"]
