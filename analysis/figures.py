"""Which figure is drawn from which experiment preset, by which script: the figure table of
`smoothbench.paper` on the command line, as scripts/reproduce.sh reads it.

Each row names the figure (its output name), the script in analysis/ that draws it, the preset
(`experiment=`) whose sweep it is drawn from, extra script arguments, and the conditions the
runs must hold for the figure to say what the paper's figure says (e.g. Fig. 1 compares two
learning rates: runs at one lr cannot show it). The table itself, with each figure's W&B
sections and claims, is `src/smoothbench/paper.py`.

    python analysis/figures.py presets          # the presets to train, in order
    python analysis/figures.py draws            # "figure<TAB>script<TAB>preset<TAB>args" lines
    python analysis/figures.py                  # the table, readable
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from smoothbench import paper

FigureSpec = paper.Figure
FIGURES: tuple[FigureSpec, ...] = paper.FIGURES


def presets(figures: Sequence[FigureSpec] = FIGURES) -> list[str]:
    """The presets to train, in the order of the table (each once)."""
    return paper.presets(figures)


def by_name(names: Sequence[str] | None = None) -> list[FigureSpec]:
    """The specs of the named figures (all when None), in table order; ValueError for a name
    not in the table."""
    if names is None:
        return list(FIGURES)
    wanted = {paper.figure(n).name for n in names}
    return [f for f in FIGURES if f.name in wanted]


def unmet_requirements(spec: FigureSpec, values: Mapping[str, Sequence[Any]]) -> list[str]:
    """Reasons the runs (their values per config key) cannot show the figure; [] when they can."""
    reasons = []
    for requirement in spec.requires:
        reason = requirement.unmet(values.get(requirement.key, ()))
        if reason:
            reasons.append(reason)
    return reasons


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="figures", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", nargs="?", choices=("table", "presets", "draws"), default="table")
    args = parser.parse_args(argv)
    if args.what == "presets":
        print(" ".join(presets()))
    elif args.what == "draws":
        for f in FIGURES:
            print("\t".join([f.name, f.script, f.preset, " ".join(f.args)]))
    else:
        print(f"{'figure':<14}{'script':<10}{'preset':<10}{'arguments':<38}title")
        for f in FIGURES:
            print(f"{f.name:<14}{f.script:<10}{f.preset:<10}{' '.join(f.args):<38}{f.title}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
