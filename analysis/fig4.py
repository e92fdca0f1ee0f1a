"""Paper Fig. 4: BatchNorm makes the loss smoother (VGG; Fig. 10 is the same for the DLN).

Measured along the gradient at each probed step (docs/science.md §4): (a) loss landscape, the range
of the loss over the step sizes; (b) gradient predictiveness, the range of ‖g_η − g‖₂;
(c) effective β-smoothness. Shaded ranges show min..max over step sizes (means over seeds of
each edge); the β-smoothness line is the mean over seeds with a seed band. By default runs of
every model except the DLN (which fig10 shows).

    python analysis/fig4.py multirun/fig4/<date> --out figures/
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from _common import add_smoothness_arguments, run_script, smoothness_figure

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
