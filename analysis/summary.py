"""End-of-sweep summary: each job's status and run dir, then the commands that come next.

Reads the status.json of every run under the given sweep dirs (no metrics, no torch: fast on a
login node) and prints, per sweep, one line per job, the counts, and the figure and report
commands of the figure table (analysis/figures.py) for that preset.

    python analysis/summary.py multirun/reproduce-cpu/fig1 multirun/reproduce-cpu/fig2
    python analysis/summary.py multirun/reproduce-cpu/*/ --out multirun/reproduce-cpu

Exit status 0 when every job finished, 1 when some did not (diverged, failed, running,
unknown), 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from figures import FIGURES

STATES_ORDER = ("finished", "diverged", "failed", "running", "unknown")


def _natural(path: Path) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name)]


def job_dirs(sweep: Path) -> list[Path]:
    """The run dirs of a sweep (status.json, metrics.jsonl or .hydra/), or the dir itself."""

    def is_run(path: Path) -> bool:
        return any((path / n).exists() for n in ("status.json", "metrics.jsonl", ".hydra"))

    if is_run(sweep):
        return [sweep]
    return sorted((d for d in sweep.iterdir() if d.is_dir() and is_run(d)), key=_natural)


def job_status(run_dir: Path) -> tuple[str, str]:
    """(state, detail): detail is the step reached and the reason, when status.json says."""
    try:
        status = json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return "unknown", "no readable status.json (never started, or killed before it wrote one)"
    state = str(status.get("state", "unknown"))
    detail = f"step {status['step']}" if status.get("step") is not None else ""
    if status.get("reason"):
        detail += f"; {status['reason']}" if detail else str(status["reason"])
    return state, detail


def preset_of(run_dir: Path) -> str | None:
    """The experiment preset of a run, from its .hydra/config.yaml (a plain line scan)."""
    config = run_dir / ".hydra" / "config.yaml"
    if not config.is_file():
        return None
    match = re.search(r"^experiment:\s*(\S+)\s*$", config.read_text(), re.M)
    return match.group(1).strip("'\"") if match and match.group(1) != "null" else None


def next_commands(sweep: Path, preset: str | None, out: Path) -> list[str]:
    """The figure commands of the table for this preset (all scripts' when it has none)."""
    specs = [f for f in FIGURES if f.preset == preset]
    commands = []
    for spec in specs:
        args = [
            f"analysis/{spec.script}.py",
            str(sweep),
            "--out",
            str(out / "figures" / spec.preset),
        ]
        commands.append("python " + " ".join(shlex.quote(a) for a in args + list(spec.args)))
    return commands


def summarize(sweeps: Sequence[Path], out: Path | None = None) -> tuple[str, Counter]:
    """The summary text and the counts of job states over all sweeps."""
    lines: list[str] = []
    total: Counter = Counter()
    for sweep in sweeps:
        jobs = job_dirs(sweep)
        if not jobs:
            lines.append(f"{sweep}: no jobs (no run dirs yet)")
            continue
        counts: Counter = Counter()
        preset = None
        lines.append(f"{sweep}:")
        for job in jobs:
            state, detail = job_status(job)
            counts[state] += 1
            preset = preset or preset_of(job)
            lines.append(f"  {state:<9} {job}" + (f"  ({detail})" if detail else ""))
        shown = ", ".join(f"{counts[s]} {s}" for s in STATES_ORDER if counts[s])
        lines.append(f"  = {shown}" + (f"  [preset {preset}]" if preset else ""))
        for command in next_commands(sweep, preset, out or sweep.parent):
            lines.append(f"  next: {command}")
        total += counts
    paths = " ".join(shlex.quote(str(s)) for s in sweeps)
    report_out = shlex.quote(str((out or sweeps[0].parent) / "report"))
    lines.append(f"report: python analysis/report.py {paths} --out {report_out}")
    if any(total[s] for s in ("failed", "running", "unknown")):
        lines.append(
            "rerun the same sweep command to resume: finished jobs are kept, the others continue "
            "from their checkpoints"
        )
    return "\n".join(lines), total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="summary", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweeps", nargs="+", help="sweep dirs (or run dirs)")
    parser.add_argument(
        "--out", default=None, help="where the next commands write figures and the report"
    )
    args = parser.parse_args(argv)
    sweeps = [Path(s) for s in args.sweeps]
    for sweep in sweeps:
        if not sweep.is_dir():
            print(f"summary: sweep dir {str(sweep)!r} does not exist", file=sys.stderr)
            return 2
    text, total = summarize(sweeps, Path(args.out) if args.out else None)
    print(text)
    return 0 if set(total) <= {"finished"} else 1


if __name__ == "__main__":
    sys.exit(main())
