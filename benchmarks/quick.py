"""`make bench-quick`: one quick row per family against its peer, written as the summary table at the top of
benchmarks/RESULTS.md.

Each family benchmark is run in its own process with ``--quick --summary ROWS.json``; it writes a JSON
list of rows with the keys ``workload``, ``peer``, ``peer_figure``, ``spikejax_figure``, ``ratio``
(peer time / spikejax time, ``null`` when the peer could not run) and ``compile_s`` (cold compile of
spikejax's program, persistent cache off). This script collects the rows, prints the table and
replaces the block between the ``bench-quick`` markers in RESULTS.md (atomic write).

``python benchmarks/quick.py [--only gfr,l5] [--results benchmarks/RESULTS.md] [--timeout 600]``
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
START, END = "<!-- bench-quick:start -->", "<!-- bench-quick:end -->"

# family -> (script, extra arguments for its quick row)
RUNS: dict[str, tuple[str, list[str]]] = {
    "gfr": ("gfr_fit.py", ["--quick", "--out", "/dev/null"]),
    "glm": ("glm.py", ["--quick", "--no-sim", "--out", "/dev/null"]),
    "meso": ("meso.py", ["--quick", "--only", "loss", "--out", "/dev/null"]),
    "l5": ("l5.py", ["--skip-sweep"]),
    "lfads": ("lfads_anchor.py", ["--quick"]),
}
COLUMNS = ("family", "workload", "peer", "peer_figure", "spikejax_figure", "ratio", "compile_s", "wall_s")


def _fmt(key: str, v) -> str:
    if v is None:
        return "-"
    if key == "ratio" and isinstance(v, (int, float)):
        return f"{v:.1f}x"
    if key in ("compile_s", "wall_s") and isinstance(v, (int, float)):
        return f"{v:.1f}"
    return str(v).replace("|", "/")


def run_family(family: str, timeout: float) -> tuple[list[dict], float, str]:
    script, extra = RUNS[family]
    with tempfile.TemporaryDirectory() as tmp:
        rows_path = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(HERE / script), *extra, "--summary", str(rows_path)]
        t0 = time.perf_counter()
        try:
            env = {**os.environ, "SPIKEJAX_CACHE_DIR": "off"}  # compile_s is a cold compile
            out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return [], time.perf_counter() - t0, f"timed out after {timeout:.0f} s"
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
            return [], wall, "failed: " + " / ".join(tail)
        if not rows_path.exists():
            return [], wall, "the script wrote no summary rows"
        return json.loads(rows_path.read_text()), wall, ""


def render(rows: list[dict], header: str) -> str:
    lines = [START, header, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(k, r.get(k)) for k in COLUMNS) + " |")
    lines += ["", END]
    return "\n".join(lines)


def write_results(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if START in text and END in text:
        pre, rest = text.split(START, 1)
        post = rest.split(END, 1)[1]
        new = pre + block + post
    else:  # first run: after the title line
        head, _, tail = text.partition("\n")
        new = head + "\n\n" + block + "\n" + tail
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".md")
    with os.fdopen(fd, "w") as f:
        f.write(new)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(RUNS), help="comma-separated families")
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per family")
    a = ap.parse_args(argv)
    families = [f.strip() for f in a.only.split(",") if f.strip()]
    unknown = sorted(set(families) - set(RUNS))
    if unknown:
        ap.error(f"--only: unknown families {unknown}; expected some of {sorted(RUNS)}")
    rows, t_all = [], time.perf_counter()
    for fam in families:
        print(f"[bench-quick] {fam}: {RUNS[fam][0]} {' '.join(RUNS[fam][1])} ...", flush=True)
        got, wall, err = run_family(fam, a.timeout)
        if err:
            print(f"[bench-quick] {fam}: {err}", flush=True)
            rows.append({"family": fam, "workload": RUNS[fam][0], "peer": err, "wall_s": wall})
        for r in got:
            rows.append({"family": fam, **r, "wall_s": wall})
        print(f"[bench-quick] {fam}: {len(got)} row(s) in {wall:.0f} s", flush=True)
    import jax  # after the subprocesses: only for the machine line

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    header = (f"**Quick summary** (`make bench-quick`, {_dt.date.today().isoformat()}, "
              f"{time.perf_counter() - t_all:.0f} s in all): {platform.machine()}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}, jax {jax.__version__} on {jax.devices()[0].platform}; load average "
              f"at the end {load}. Ratio = peer time / spikejax time in the same run (> 1: spikejax faster); "
              "compile_s = cold compile of spikejax's program (persistent cache off); wall_s = the whole family "
              "script, peers included.")
    block = render(rows, header)
    print(block)
    write_results(Path(a.results), block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
