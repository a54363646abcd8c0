"""One test looping over all families for the shared API (as dynamax does for its models)."""

import importlib
import inspect

import pytest

from spikejax import cli

FAMILIES = [f for f in cli.FAMILIES if cli._family_module(f, "cli") is not None]


@pytest.mark.parametrize("family", FAMILIES)
def test_public_api_resolves(family):
    mod = importlib.import_module(f"spikejax.{family}")
    assert mod.__doc__, f"spikejax.{family} needs a module docstring"
    names = getattr(mod, "__all__", None)
    assert names, f"spikejax.{family} must declare __all__"
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, missing
    undocumented = [n for n in names if callable(getattr(mod, n)) and not inspect.getdoc(getattr(mod, n))]
    assert not undocumented, f"public callables without docstrings: {undocumented}"


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_and_demo_entry_points(family, capsys):
    parser = cli.build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([family, "--help"])
    assert exc.value.code == 0
    assert family in capsys.readouterr().out
    demo = importlib.import_module(f"spikejax.{family}.demo")
    sig = inspect.signature(demo.run)
    params = sig.parameters
    assert list(params)[0] in ("out_dir", "out"), sig
    assert params["quick"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["seed"].kind is inspect.Parameter.KEYWORD_ONLY
