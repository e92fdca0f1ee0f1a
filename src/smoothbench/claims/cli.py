"""`smoothbench-claims`: the verdict of every claim on a sweep, per scale, and claims.json.

Runs of different scales (config `scale`) are never pooled: one table per scale, then the
agreement table (each claim's cpu verdict beside its paper-scale verdict).

    smoothbench-claims multirun/reproduce-cpu                 # one sweep per preset below it
    smoothbench-claims multirun/reproduce-cpu multirun/reproduce-paper
    smoothbench-claims multirun/mixed --scale cpu             # only the runs of one scale
    smoothbench-claims multirun/fig4/2026-01-01 multirun/fig1/2026-01-02
    smoothbench-claims --wandb my-entity/smoothbench --out claims/
    smoothbench-claims multirun/reproduce-cpu --json          # claims.json on stdout as well
    smoothbench-claims --markdown > docs/claims.md            # the list of claims (docs)

Exit 0 when it printed a table; 2 with one line on stderr for bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PROG = "smoothbench-claims"


class InputError(ValueError):
    """Bad input: reported as one line on stderr, exit code 2."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check every claim of the registry on the runs of one or more sweeps.",
    )
    parser.add_argument(
        "sweep_dirs",
        nargs="*",
        metavar="SWEEP_DIR",
        help="a sweep dir, a reproduce dir (one sweep per preset) or run dirs",
    )
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from W&B")
    parser.add_argument("--group", help="with --wandb: only this W&B group")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="where claims.json, claims.txt and claims.md go "
        "(default: the first SWEEP_DIR; . with --wandb)",
    )
    parser.add_argument("--json", action="store_true", help="also print claims.json to stdout")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 on a damaged run dir (default: skip it with a line naming the damage)",
    )
    parser.add_argument("--confidence", type=float, default=0.95, help="interval level (0.95)")
    parser.add_argument(
        "--min-seeds",
        type=int,
        default=3,
        help="seeds a verdict needs (3: a 95 %% t interval on 2 seeds has t = 12.7)",
    )
    parser.add_argument("--claims", nargs="+", metavar="ID", help="only these claims")
    parser.add_argument(
        "--scale", metavar="NAME", help="only the runs of this scale (smoke, cpu, paper, ...)"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the list of claims (docs/claims.md) and exit"
    )
    return parser.parse_args(argv)


def _check(args: argparse.Namespace) -> None:
    from smoothbench.claims.registry import CLAIMS_BY_ID

    if not args.sweep_dirs and not args.wandb:
        raise InputError("SWEEP_DIR: none given; pass sweep dirs or --wandb ENTITY/PROJECT")
    if args.sweep_dirs and args.wandb:
        raise InputError("--wandb: give either SWEEP_DIRs or --wandb, not both")
    if args.wandb is not None and len([p for p in args.wandb.split("/") if p]) != 2:
        raise InputError(f"--wandb {args.wandb!r}: expected ENTITY/PROJECT")
    for path in args.sweep_dirs:
        if not os.path.isdir(path):
            raise InputError(f"SWEEP_DIR {path!r} does not exist or is not a directory")
    if not 0 < args.confidence < 1:
        raise InputError(f"--confidence {args.confidence!r}: must be in (0, 1)")
    if args.min_seeds < 1:
        raise InputError(f"--min-seeds {args.min_seeds!r}: must be >= 1")
    for claim in args.claims or []:
        if claim not in CLAIMS_BY_ID:
            raise InputError(f"--claims {claim!r}: unknown; choose from: {', '.join(CLAIMS_BY_ID)}")
    if args.out is not None and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InputError(f"--out {args.out!r} exists and is not a directory")


def run(argv: Sequence[str] | None = None) -> int:
    """The command; returns the exit code."""
    args = parse_args(argv)
    if args.markdown:
        from smoothbench.claims.render import claims_markdown

        print(claims_markdown(), end="")
        return 0
    try:
        _check(args)
        from smoothbench.claims.registry import CLAIMS, CLAIMS_BY_ID
        from smoothbench.claims.statistics import evaluate_by_scale, runs_by_scale

        runs, source = _load(args)
        groups = runs_by_scale(runs)
        if args.scale is not None:
            # checked against the runs, not a fixed list: a sweep names the scales it has
            if args.scale not in groups:
                raise InputError(
                    f"--scale {args.scale!r}: no runs of that scale; scales found: "
                    + ", ".join(groups)
                )
            groups = {args.scale: groups[args.scale]}
            runs = groups[args.scale]
    except InputError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2

    from smoothbench.claims.render import json_payload, verdicts_markdown, write_json
    from smoothbench.protocol import protocol_record

    claims = [CLAIMS_BY_ID[c] for c in args.claims] if args.claims else list(CLAIMS)
    by_scale = evaluate_by_scale(runs, claims, confidence=args.confidence, min_seeds=args.min_seeds)
    counts = {scale: len(group) for scale, group in groups.items()}
    text = tables_text(by_scale, counts)
    out = Path(args.out) if args.out else Path(args.sweep_dirs[0] if args.sweep_dirs else ".")
    out.mkdir(parents=True, exist_ok=True)
    extra = {
        "source": source,
        "runs": len(runs),
        "runs_by_scale": counts,
        "confidence": args.confidence,
        "min_seeds": args.min_seeds,
        "correction": "holm",
        "protocol": protocol_record(),
    }
    verdicts = [v for scale_verdicts in by_scale.values() for v in scale_verdicts]
    write_json(verdicts, out / "claims.json", **extra)
    (out / "claims.txt").write_text(text)
    (out / "claims.md").write_text(verdicts_markdown(by_scale, counts))
    protocol = extra["protocol"]
    print(
        f"claims on {len(runs)} runs of {source} (interval: {args.confidence:.0%} t across seeds; "
        f"Holm across each scale's paper claims; protocol v{protocol['version']} of "
        f"{protocol['fixed']}"
        + ("" if protocol["matches_version"] else ", but the presets have changed since")
        + ")"
    )
    print(text, end="")
    print(f"wrote {out / 'claims.json'}, claims.txt and claims.md")
    if args.json:
        print(json.dumps(json_payload(verdicts, **extra), ensure_ascii=False))
    return 0


def _load(args: argparse.Namespace) -> tuple[list[Any], str]:
    """(the runs, where they came from in words); InputError when there are none."""
    from smoothbench.claims.statistics import load_paths, load_wandb

    if args.wandb:
        runs = load_wandb(args.wandb, group=args.group)
        if not runs:
            raise InputError(f"--wandb {args.wandb!r}: the project has no runs")
        return runs, f"wandb:{args.wandb}"
    from smoothbench.results import damaged_runs

    try:
        with damaged_runs(strict=args.strict):
            runs = load_paths(args.sweep_dirs)
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"SWEEP_DIR: {error}") from None
    return runs, " ".join(args.sweep_dirs)


def tables_text(by_scale: Mapping[str, Sequence[Any]], runs: Mapping[str, int]) -> str:
    """One claims table per scale under its heading, then the agreement table (always: a
    cpu-only sweep shows its paper column "not run")."""
    from smoothbench.claims.render import agreement_table, scale_heading, text_table

    parts = [
        f"{scale_heading(scale, runs.get(scale))}\n{text_table(verdicts)}"
        for scale, verdicts in by_scale.items()
    ]
    parts.append(f"agreement of cpu and paper verdicts\n{agreement_table(by_scale)}")
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `smoothbench-claims`."""
    sys.exit(run(argv))


if __name__ == "__main__":  # pragma: no cover
    main()
