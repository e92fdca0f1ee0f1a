"""Which figure is drawn from which experiment preset: the one table that reproduce.sh and the
report both read.

Each entry names the figure (its output name), the script in analysis/ that draws it, the
preset (`experiment=`) whose sweep it is drawn from, extra script arguments, and the conditions
the runs must hold for the figure to say what the paper's figure says (e.g. Fig. 1 compares two
learning rates: runs at one lr cannot show it).

    python analysis/figures.py presets          # the presets to train, in order
    python analysis/figures.py draws            # "figure<TAB>script<TAB>preset<TAB>args" lines
    python analysis/figures.py                  # the table, readable
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Requirement:
    """The runs of a figure must hold these values of `key` (all of `values`), or at least
    `at_least` distinct values of it. `why` says what the figure compares."""

    key: str
    values: tuple[Any, ...] = ()
    at_least: int = 0
    why: str = ""

    def unmet(self, present: Sequence[Any]) -> str | None:
        """The reason the runs cannot show the figure, or None when they can."""
        have = sorted({_plain(v) for v in present}, key=str)
        shown = ", ".join(_fmt(v) for v in have) or "none"
        missing = [v for v in self.values if not any(_same(v, h) for h in have)]
        if missing:
            return (
                f"{self.why}: no run has {self.key} {', '.join(map(_fmt, missing))} "
                f"(the runs have {self.key} {shown})"
            )
        if len(have) < self.at_least:
            return (
                f"{self.why}: needs runs at {self.at_least} or more values of {self.key} "
                f"(the runs have {self.key} {shown} only)"
            )
        return None


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the reproduction: output name, script, source preset, arguments."""

    name: str
    script: str
    preset: str
    args: tuple[str, ...] = ()
    requires: tuple[Requirement, ...] = field(default_factory=tuple)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    return str(a) == str(b)


BN_VS_STANDARD = Requirement(
    "norm.name", ("none", "batch"), why="it compares nets with and without BatchNorm"
)

FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        "fig1",
        "fig1",
        "fig1",
        requires=(
            BN_VS_STANDARD,
            Requirement(
                "optim.lr", at_least=2, why="it compares learning rates (paper: 0.1 and 0.5)"
            ),
        ),
    ),
    FigureSpec(
        "fig2",
        "fig2",
        "fig2",
        requires=(
            Requirement(
                "norm.name",
                ("none", "batch", "noisy_batch"),
                why="it compares standard, BatchNorm and noisy BatchNorm nets",
            ),
        ),
    ),
    FigureSpec(
        "fig8",
        "fig8",
        "fig2",
        requires=(
            Requirement(
                "norm.name",
                ("none", "batch", "noisy_batch"),
                why="it compares standard, BatchNorm and noisy BatchNorm nets",
            ),
        ),
    ),
    FigureSpec("fig3", "fig3", "fig3", requires=(BN_VS_STANDARD,)),
    FigureSpec(
        "fig3_dln", "fig3", "fig3_dln", args=("--layers", "9", "17"), requires=(BN_VS_STANDARD,)
    ),
    FigureSpec("fig4", "fig4", "fig4", requires=(BN_VS_STANDARD,)),
    FigureSpec("fig10", "fig10", "fig10", requires=(BN_VS_STANDARD,)),
    FigureSpec(
        "lp",
        "lp",
        "lp",
        requires=(Requirement("norm.name", ("batch",), why="it compares ℓp norms with BatchNorm"),),
    ),
    FigureSpec("lp_dln", "lp", "lp_dln"),
    FigureSpec("hessian", "hessian", "hessian"),
    FigureSpec("eos", "hessian", "eos"),
    FigureSpec("surfaces", "surfaces", "surfaces"),
    FigureSpec("surfaces_fig4", "surfaces", "fig4"),
)
# presets trained for no figure of their own
EXTRA_PRESETS: tuple[str, ...] = ()


def presets(figures: Sequence[FigureSpec] = FIGURES) -> list[str]:
    """The presets to train, in the order of the table (each once)."""
    return list(dict.fromkeys([f.preset for f in figures] + list(EXTRA_PRESETS)))


def by_name(names: Sequence[str] | None = None) -> list[FigureSpec]:
    """The specs of the named figures (all when None), in table order; ValueError for a name
    not in the table."""
    if names is None:
        return list(FIGURES)
    known = {f.name for f in FIGURES}
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown figure {bad[0]!r}; choose from: {', '.join(sorted(known))}")
    return [f for f in FIGURES if f.name in set(names)]


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
        print(f"{'figure':<14}{'script':<10}{'preset':<10}arguments")
        for f in FIGURES:
            print(f"{f.name:<14}{f.script:<10}{f.preset:<10}{' '.join(f.args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
