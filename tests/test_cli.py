"""The top-level command: help, family discovery, demo orchestration and error reporting."""

import json

import pytest

from spikejax import cli


def test_help_lists_demo(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_demo_rejects_unknown_family(capsys, tmp_path):
    assert cli.main(["demo", "--out", str(tmp_path), "--only", "nope"]) == 2
    assert "--only must name families" in capsys.readouterr().err


def test_every_available_family_registers_a_subcommand():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for family in cli.FAMILIES:
        if cli._family_module(family, "cli") is not None:
            assert family in sub.choices, family
