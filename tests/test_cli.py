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


# ---------------------------------------------------------------------------- one command-line style
def _walk(parser, path=()):
    """(command path, parser) for the main parser and every sub-command's parser, recursively."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def test_every_option_of_every_subcommand_has_help_a_shown_default_and_one_kebab_spelling():
    import argparse

    from spikejax._argparse import deprecated_aliases, kebab

    problems, n_parsers, n_options = [], 0, 0
    for path, parser in _walk(cli.build_parser()):
        n_parsers += 1
        where = " ".join(("spikejax", *path))
        formatter = parser._get_formatter()
        visible, strings = {}, []
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            hidden = action.help == argparse.SUPPRESS
            strings += action.option_strings
            if hidden:
                continue
            n_options += 1
            name = action.option_strings[0] if action.option_strings else action.dest
            if not action.help or not action.help.strip():
                problems.append(f"{where} {name}: no help text")
            shown = formatter._get_help_string(action) or ""
            takes_value = action.nargs != 0 and not isinstance(action, argparse._VersionAction)
            if takes_value and not action.required and (action.option_strings or action.nargs in ("?", "*")) and "default" not in shown.lower():
                problems.append(f"{where} {name}: help shows no default")
            for s in action.option_strings:
                if s.startswith("--") and "_" in s and s not in deprecated_aliases(action):
                    problems.append(f"{where} {s}: snake_case flag (use {kebab(s)}; keep {s} only as a hidden deprecated alias)")
            for s in deprecated_aliases(action):
                if kebab(s) not in action.option_strings:
                    problems.append(f"{where} {s}: deprecated alias without its kebab-case form")
            key = action.dest.removesuffix("_pos").replace("_", "-").lower()
            if key in visible:
                problems.append(f"{where} {name}: listed twice (also as {visible[key]})")
            visible[key] = name
        duplicated = {s for s in strings if strings.count(s) > 1}
        if duplicated:
            problems.append(f"{where}: option strings defined twice: {sorted(duplicated)}")
        text = parser.format_help()
        for s in {s for a in parser._actions for s in deprecated_aliases(a)}:
            if f"{s} " in text or f"{s}\n" in text or f"{s}," in text or f"[{s}" in text:
                problems.append(f"{where}: deprecated alias {s} shown in --help")
    assert n_parsers >= 20 and n_options >= 100, (n_parsers, n_options)
    assert not problems, "\n".join(problems)


def test_deprecated_snake_case_flag_still_works_and_warns(capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["gfr", "preprocess", "--save_path", "x", "--bin_sizes", "20"])
    assert args.save_path == "x" and args.bin_sizes == [20]
    err = capsys.readouterr().err
    assert "--save_path is deprecated" in err and "use --save-path" in err
    args = parser.parse_args(["gfr", "preprocess", "--save-path", "x"])
    assert args.save_path == "x" and "deprecated" not in capsys.readouterr().err
    # an abbreviation that matches an option and its alias is not ambiguous
    assert parser.parse_args(["gfr", "preprocess", "--save-p", "y"]).save_path == "y"


def test_version_and_usage_errors(capsys):
    from spikejax import __version__

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["glm", "simulate", "--networks", "-1"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "spikejax: error: glm simulate: argument --networks: must be a positive integer" in err


@pytest.mark.parametrize("args, code, stream, text", [
    (["--version"], 0, "stdout", "spikejax "),
    (["demo", "--only", "nope", "--out", "{tmp}/o"], 2, "stderr", "spikejax: error: --only must name families"),
    (["glm", "simulate", "--networks", "-1"], 2, "stderr", "spikejax: error: glm simulate: argument --networks"),
    # a parallel demo's workers start before parsing; a usage error shuts them down cleanly
    (["demo", "--no-such-flag", "--out", "{tmp}/o"], 2, "stderr", "unrecognized arguments: --no-such-flag"),
])
def test_the_command_runs_exit_handlers_flushes_and_keeps_its_exit_status(tmp_path, args, code, stream, text):
    """``python -m spikejax`` (the console script's ``console_main``) ends with ``os._exit`` to skip
    Python's slow finalisation: the ``atexit`` handlers still run, output is flushed, the status kept."""
    import subprocess
    import sys

    marker = tmp_path / "atexit-ran"
    prog = (f"import atexit, pathlib, sys; atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes'); "
            f"from spikejax.cli import console_main; sys.argv = ['spikejax'] + sys.argv[1:]; console_main()")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = subprocess.run([sys.executable, "-c", prog, *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode == code, out.stderr
    assert text in getattr(out, stream)
    assert "Traceback" not in out.stderr
    assert marker.read_text() == "yes"


@pytest.mark.parametrize("argv, n", [
    (["demo"], 1), (["--x64", "demo", "--quick"], 1), (["demo", "--jobs", "3"], 2), (["demo", "--jobs=1"], 0),
    (["demo", "--only", "glm"], 0), (["demo", "--only=glm,meso", "--jobs", "4"], 1), (["demo", "--jobs", "x"], 0),
    (["demo", "--help"], 0), (["glm", "simulate"], 0), ([], 0),
])
def test_the_demo_workers_are_guessed_from_the_command_line_before_parsing(argv, n, monkeypatch):
    monkeypatch.setattr(cli, "_default_jobs", lambda: 2)
    assert cli._demo_workers_wanted(argv) == n


def test_the_demo_orders_its_parts_by_the_last_run_with_the_same_cache(tmp_path, monkeypatch):
    times = tmp_path / cli._DEMO_TIMES_FILE
    monkeypatch.setattr(cli, "_demo_times_path", lambda: times)
    assert cli._demo_costs("default") == (cli._DEMO_COST, False)  # no earlier run: the first-run table
    cli._save_demo_times("default", {"glm": 5.5, "l5": 15.8})
    cli._save_demo_times("quick", {"glm": 1.0})
    costs, learned = cli._demo_costs("default")
    assert learned and costs["glm"] == 5.5 and costs["l5"] == 15.8 and costs["meso"] == cli._DEMO_COST["meso"]
    assert cli._demo_costs("quick")[0]["glm"] == 1.0 and cli._demo_costs("full") == (cli._DEMO_COST, False)
    for junk in ("{not json", "[1, 2]", '{"default": {"glm": "fast", "l5": -1, "meso": NaN}}'):
        times.write_text(junk)
        assert cli._demo_costs("default") == (cli._DEMO_COST, False)  # never an error, the defaults
    monkeypatch.setattr(cli, "_demo_times_path", lambda: None)  # cache off: nothing kept
    cli._save_demo_times("default", {"glm": 1.0})
    assert cli._demo_costs("default") == (cli._DEMO_COST, False)
