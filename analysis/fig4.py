"""Paper Figs 4 and 10: BatchNorm makes the loss smoother (Fig. 4: VGG; Fig. 10: the DLN).

Measured along the gradient at each probed step (docs/science.md §4): (a) loss landscape, the range
of the loss over the step sizes; (b) gradient predictiveness, the range of ‖g_η − g‖₂;
(c) effective β-smoothness. Shaded ranges show min..max over step sizes (means over seeds of
each edge); the β-smoothness line is the mean over seeds with a seed band. By default runs of
every model except the DLN; Fig. 10 is this figure with `--model dln --logy --name fig10` (its
row in smoothbench.paper), the DLN's losses spanning decades.

    python analysis/fig4.py multirun/fig4/<date> --out figures/
    python analysis/fig4.py multirun/fig10/<date> --out figures/ --model dln --logy --name fig10
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from _common import add_smoothness_arguments, make_parser, run_script, smoothness_figure

NAME = "fig4"
METRICS = ["landscape/*"]  # what the figure reads (fnmatch patterns)


def make_figure(
    df: pd.DataFrame,
    model: str | None = None,
    band: str = "minmax",
    logy: bool = False,
) -> plt.Figure:
    """Three panels: loss landscape, gradient predictiveness, effective β-smoothness."""
    return smoothness_figure(df, model, band, logy)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_smoothness_arguments(parser, default_model=None, default_logy=False)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The command line `argv` as this script reads it (no runs needed: `paths` may be empty)."""
    parser = make_parser(NAME, __doc__)
    add_arguments(parser)
    return parser.parse_args(argv)


def build(df, args) -> plt.Figure:
    """The figure from the loaded runs and the parsed command line (also used by the report)."""
    return make_figure(df, args.model, args.band, args.logy)


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(
        NAME,
        argv,
        __doc__,
        build,
        add_arguments,
        metrics=METRICS,
    )


if __name__ == "__main__":
    sys.exit(main())
