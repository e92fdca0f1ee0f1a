"""Paper Fig. 4: BatchNorm makes the loss smoother (VGG; Fig. 10 is the same for the DLN).

Measured along the gradient at each probed step (science.md §4): (a) loss landscape, the range
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
from _common import draw_smoothness, require_smoothness, run_script, smoothness_caption

from smoothbench.plotting import legend_below
from smoothbench.results import MissingMetricError

NAME = "fig4"
DLN = "dln"
METRICS = ["landscape/*"]  # what the figure reads (fnmatch patterns)


def select_model(df: pd.DataFrame, model: str | None) -> tuple[pd.DataFrame, str]:
    """Rows of one model ("all" keeps every run; None: every model except the DLN)."""
    if model == "all":
        return df, ""
    if model is None:
        return df[df["model.name"] != DLN], "with a model other than dln"
    return df[df["model.name"] == model], f"with model {model}"


def make_figure(
    df: pd.DataFrame,
    model: str | None = None,
    band: str = "minmax",
    logy: bool = False,
) -> plt.Figure:
    """Three panels: loss landscape, gradient predictiveness, effective β-smoothness."""
    rows, what = select_model(df, model)
    if rows.empty:
        raise MissingMetricError(f"missing metric 'landscape/losses': no loaded run {what}")
    require_smoothness(rows, what)
    fig, axes = plt.subplots(1, 3, figsize=(7.0, 2.4), layout="constrained")
    draw_smoothness(axes, rows, band, logy=logy)
    legend_below(fig, list(axes), caption=smoothness_caption(band))
    return fig


def add_arguments(parser, default_model: str | None = None, default_logy: bool = False) -> None:
    parser.add_argument(
        "--model",
        default=default_model,
        help="model.name to show; 'all' for every run "
        f"(default: {default_model or 'every model except dln'})",
    )
    parser.add_argument(
        "--logy",
        action=argparse.BooleanOptionalAction,
        default=default_logy,
        help=f"log-scale y axes (default: {'on' if default_logy else 'off'})",
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(
        NAME,
        argv,
        __doc__,
        lambda df, args: make_figure(df, args.model, args.band, args.logy),
        add_arguments,
        metrics=METRICS,
    )


if __name__ == "__main__":
    sys.exit(main())
