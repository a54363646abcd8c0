"""The command line's part of the bad-input catalogue (issue 23 item 3, issue 24 item 3).

Every case is a user's mistake on the ``spikejax`` command; each must end with exit status 2, a
``spikejax: error: ...`` message naming the flag, key or file, and no traceback
(:func:`harness.run_cli`). Most run in-process through ``spikejax.cli.main`` and fail in the parser
or before any model is built; one runs ``python -m spikejax`` as a user would (an interpreter
start with jax costs seconds).
"""

from __future__ import annotations

import atexit
import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from .harness import CliError, Mistake, check, cli_mistake, params

_ROOT = Path(tempfile.mkdtemp(prefix="spikejax-cli-catalogue-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


def _file(name: str, text: str = "") -> str:
    """A file under the catalogue's temporary folder (written when the case runs)."""
    p = _ROOT / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return str(p)


def _under_a_file(option: str = "--out"):
    """``option FILE/sub``: an output path whose parent is a file."""
    return lambda: (option, str(Path(_file("a_file.txt", "x")) / "sub"))


def _existing_folder(option: str = "--out"):
    def setup():
        d = _ROOT / "a_folder"
        d.mkdir(parents=True, exist_ok=True)
        return (option, str(d))

    return setup


def _json(name: str, obj) -> callable:
    return lambda: (_file(name, json.dumps(obj)),)


def _yaml(name: str, text: str) -> callable:
    return lambda: (_file(name, text),)


class _NoOptuna:
    """Runs a CLI case as if optuna were not installed (``import optuna`` raises ImportError)."""

    def __enter__(self):
        self.saved = sys.modules.get("optuna", None)
        sys.modules["optuna"] = None
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            sys.modules.pop("optuna", None)
        else:
            sys.modules["optuna"] = self.saved


def _l5_search_without_optuna():
    from .harness import run_cli

    with _NoOptuna():
        run_cli(["l5", "search", "--trials", "2", "--out", str(_ROOT / "l5_search")])


def _lfads_train(config_text: str, name: str):
    return lambda: (_file(name, config_text), "bundled", "--out", str(_ROOT / f"lfads_{name}"))


def _gfr_out(name: str):
    return lambda: ("--save-path", str(_ROOT / name))


OUT = str(_ROOT / "out")

MISTAKES = [
    # ---- counts and durations: argparse types name the flag (no model is built)
    cli_mistake("glm-simulate-networks-negative", ["glm", "simulate", "--networks", "-1", "--out", OUT],
                r"argument --networks: must be a positive integer .*-1"),
    cli_mistake("glm-simulate-networks-zero", ["glm", "simulate", "--networks", "0", "--out", OUT],
                r"--networks: must be a positive integer"),
    cli_mistake("glm-simulate-steps-zero", ["glm", "simulate", "--steps", "0", "--out", OUT], r"--steps: must be a positive"),
    cli_mistake("glm-simulate-steps-fraction", ["glm", "simulate", "--steps", "2.5", "--out", OUT],
                r"--steps: expected an integer, got '2.5'"),
    cli_mistake("glm-simulate-equilibration-negative", ["glm", "simulate", "--equilibration", "-1", "--out", OUT],
                r"--equilibration: must be a non-negative integer"),
    cli_mistake("glm-tune-rate-negative", ["glm", "tune", "--rate", "-5", "--out", OUT], r"--rate: must be a positive number"),
    cli_mistake("glm-tune-rate-nan", ["glm", "tune", "--rate", "nan", "--out", OUT], r"--rate: expected a finite number"),
    cli_mistake("glm-tune-rate-missing", ["glm", "tune", "--out", OUT], r"required: --rate"),
    cli_mistake("glm-generate-networks-zero", ["glm", "generate", "--networks", "0", "--out", OUT], r"--networks: must be a positive"),
    cli_mistake("l5-sweep-n-negative", ["l5", "sweep", "--n", "-5", "--out", OUT], r"argument --n: must be a positive integer .*-5"),
    cli_mistake("l5-sweep-chunk-zero", ["l5", "sweep", "--chunk", "0", "--out", OUT], r"--chunk: must be a positive integer"),
    cli_mistake("l5-tune-epochs-zero", ["l5", "tune", "--epochs", "0", "--out", OUT], r"--epochs: must be a positive integer"),
    cli_mistake("l5-tune-learning-rate-negative", ["l5", "tune", "--learning-rate", "-0.1", "--out", OUT],
                r"--learning-rate: must be a positive number"),
    cli_mistake("meso-generate-seconds-negative", ["meso", "generate", "--seconds", "-1", "--out", str(_ROOT / "m.npz")],
                r"argument --seconds: must be a positive number"),
    cli_mistake("meso-generate-seconds-below-one-bin", ["meso", "generate", "--seconds", "0.001", "--out", str(_ROOT / "m.npz")],
                r"--seconds must cover at least one 4-ms bin"),
    cli_mistake("meso-simulate-seconds-zero", ["meso", "simulate", "--seconds", "0", "--out", OUT], r"--seconds: must be a positive"),
    cli_mistake("meso-fit-n-obs-zero", ["meso", "fit", "--n-obs", "0", "--out", OUT], r"--n-obs: must be a positive integer"),
    cli_mistake("meso-fit-restarts-negative", ["meso", "fit", "--restarts", "-2", "--out", OUT], r"--restarts: must be a positive"),
    cli_mistake("lfads-infer-n-samples-zero", ["lfads", "infer", "model.eqx", "bundled", "--n-samples", "0"],
                r"--n-samples: must be a positive integer"),
    cli_mistake("lfads-evaluate-conversion-factor-zero", ["lfads", "evaluate", "r.h5", "bundled", "--conversion-factor", "0"],
                r"--conversion-factor: must be a positive number"),
    cli_mistake("gfr-simulate-duration-negative", ["gfr", "simulate", "--duration", "-5"], r"--duration: must be a positive number"),
    cli_mistake("gfr-simulate-duration-below-one-bin", ["gfr", "simulate", "--duration", "1"], r"--duration must cover at least one"),
    cli_mistake("gfr-fit-dt-zero", ["gfr", "fit", "--data", "d", "--save-path", OUT, "--dt", "0"], r"--dt: must be a positive integer"),
    cli_mistake("gfr-network-lr-negative", ["gfr", "network", "--lr", "-1", "--save-path", OUT], r"--lr: must be a positive number"),
    cli_mistake("gfr-network-freeze-not-bool", ["gfr", "network", "--freeze-neurons", "maybe", "--save-path", OUT],
                r"--freeze-neurons: expected True or False, got 'maybe'"),
    # ---- sizes refused up front, with the figure and the flag (before compiling)
    cli_mistake("gfr-simulate-duration-huge", ["gfr", "simulate", "--duration", "1e15"], r"--duration too large: .*would need about",
                kind="size"),
    cli_mistake("glm-simulate-steps-huge", ["glm", "simulate", "--steps", "1000000000000", "--out", OUT],
                r"--steps too large: .*would need about", kind="size"),
    cli_mistake("meso-generate-seconds-huge", ["meso", "generate", "--seconds", "1e12", "--out", str(_ROOT / "m.npz")],
                r"--seconds too large", kind="size"),
    cli_mistake("meso-simulate-seconds-huge", ["meso", "simulate", "--seconds", "1e12", "--out", OUT], r"--seconds too large",
                kind="size"),
    # ---- parser: unknown choices, options, commands, missing arguments
    cli_mistake("unknown-command", ["nope"], r"invalid choice: 'nope'"),
    cli_mistake("unknown-option", ["glm", "simulate", "--bogus", "1", "--out", OUT], r"unrecognized arguments: --bogus"),
    cli_mistake("glm-model-unknown", ["glm", "simulate", "--model", "Nope", "--out", OUT], r"--model: invalid choice: 'Nope'"),
    cli_mistake("lfads-layout-unknown", ["lfads", "infer", "m.eqx", "bundled", "--layout", "tnt"], r"--layout: invalid choice"),
    cli_mistake("gfr-fit-save-path-missing", ["gfr", "fit", "--data", "d"], r"required: --save-path"),
    cli_mistake("lfads-train-data-missing", ["lfads", "train", "c.yaml"], r"required: data"),
    # ---- values that reach the handlers: named, before any work
    cli_mistake("glm-set-without-value", ["glm", "simulate", "--set", "T", "--out", OUT], r"--set takes name=value, got 'T'"),
    cli_mistake("glm-set-not-a-number", ["glm", "simulate", "--set", "T=abc", "--out", OUT], r"--set T: value must be a number"),
    cli_mistake("glm-set-unknown-parameter", ["glm", "simulate", "--set", "thet=1", "--out", OUT],
                r"--set thet: RectifiedLNP has no parameter 'thet'.*did you mean 'theta'"),
    cli_mistake("glm-connectivity-folder-missing", ["glm", "simulate", str(_ROOT / "missing"), "--out", OUT],
                r"no such connectivity folder: .*missing"),
    cli_mistake("glm-generate-odd-neurons", ["glm", "generate", "--neurons", "3", "--out", str(_ROOT / "nets")],
                r"n_neurons must be even"),
    cli_mistake("glm-generate-sparsity-out-of-range", ["glm", "generate", "--sparsity", "0.2", "--out", str(_ROOT / "nets")],
                r"sparsity"),
    cli_mistake("l5-set-misspelt-key", ["l5", "run", "--set", "learnig_rule=None", "--out", OUT],
                r"unknown L5 config key 'learnig_rule'.*did you mean 'learning_rule'"),
    cli_mistake("l5-json-misspelt-key", ["l5", "run", "--out", OUT], r"unknown L5 config key 'learnig_rule'.*did you mean 'learning_rule'",
                setup=_json("l5_typo.json", {"learnig_rule": "None"})),
    cli_mistake("l5-set-wrong-type", ["l5", "run", "--set", "learning_rule=5", "--out", OUT],
                r"learning_rule must be a string, got int"),
    cli_mistake("l5-yaml-wrong-type", ["l5", "run", "--out", OUT], r"sim_number must be an integer, got str",
                setup=_yaml("l5_str.yaml", 'sim_number: "3"\n')),
    cli_mistake("l5-set-without-value", ["l5", "run", "--set", "sim_number", "--out", OUT], r"--set expects KEY=VALUE"),
    cli_mistake("l5-config-missing", ["l5", "run", str(_ROOT / "missing.json"), "--out", OUT], r"no such L5 config file"),
    cli_mistake("l5-config-wrong-suffix", ["l5", "run", "--out", OUT], r"must end in \.py, \.json, \.yaml",
                setup=lambda: (_file("cfg.txt", "{}"),)),
    cli_mistake("meso-pulse-malformed", ["meso", "generate", "--pulse", "bad", "--out", str(_ROOT / "m.npz")],
                r"--pulse 'bad' must be pop:start_s:duration_s:amplitude"),
    cli_mistake("meso-simulate-A0-too-short", ["meso", "simulate", "--A0", "1", "2", "--out", OUT],
                r"--A0 takes one initial rate per population \(3\), got 2"),
    cli_mistake("meso-fit-data-missing", ["meso", "fit", "--data", str(_ROOT / "nope.npz"), "--out", OUT], r"no such data file"),
    cli_mistake("lfads-yaml-misspelt-key", ["lfads", "train"], r"gen_dims", setup=_lfads_train("gen_dims: 8\n", "typo.yaml")),
    cli_mistake("lfads-yaml-string-number", ["lfads", "train"], r"batch_size must be an integer, got str",
                setup=_lfads_train('batch_size: "64"\n', "str.yaml")),
    cli_mistake("lfads-data-missing", ["lfads", "train", "--out", OUT], r"no LFADS h5 file",
                setup=lambda: (_file("ok.yaml", "n_epochs: 1\n"), str(_ROOT / "missing.h5"))),
    cli_mistake("gfr-preprocess-no-input", ["gfr", "preprocess"], r"give NWB files", setup=_gfr_out("gfr_pre")),
    cli_mistake("gfr-simulate-unknown-cell", ["gfr", "simulate", "--cell-id", "1"], r"cell_id 1 is not in"),
    cli_mistake("demo-only-unknown-family", ["demo", "--only", "nope", "--out", OUT], r"--only must name families"),
    Mistake("l5-search-without-optuna", lambda: _l5_search_without_optuna(), CliError, r"needs optuna.*pip install spikejax\[l5\]",
            kind="cli"),
    # ---- unwritable outputs, refused before the work starts
    cli_mistake("lfads-train-out-under-a-file", ["lfads", "train"], r"--out .*a_file\.txt.* is a file",
                setup=lambda: (_file("ok.yaml", "n_epochs: 1\n"), "bundled", *_under_a_file()())),
    cli_mistake("glm-generate-out-under-a-file", ["glm", "generate"], r"--out .*is a file", setup=_under_a_file()),
    cli_mistake("gfr-network-save-path-under-a-file", ["gfr", "network"], r"--save-path .*is a file",
                setup=_under_a_file("--save-path")),
    cli_mistake("meso-generate-out-is-a-folder", ["meso", "generate"], r"--out .*expected a file name",
                setup=_existing_folder()),
    cli_mistake("gfr-simulate-out-is-a-folder", ["gfr", "simulate"], r"--out .*expected a file name", setup=_existing_folder()),
    cli_mistake("l5-run-out-is-a-file", ["l5", "run"], r"--out .*expected a folder, but it is an existing file",
                setup=lambda: ("--out", _file("a_file.txt", "x"))),
    # ---- as a user runs it: python -m spikejax
    cli_mistake("subprocess-glm-simulate-networks-negative", ["glm", "simulate", "--networks", "-1", "--out", OUT],
                r"^usage: spikejax glm simulate.*spikejax: error: glm simulate: argument --networks", subprocess_run=True),
]


@pytest.mark.parametrize("mistake", params(MISTAKES))
def test_cli_mistake(mistake):
    check(mistake)

