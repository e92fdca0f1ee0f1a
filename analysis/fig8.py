"""Paper Fig. 8: how much the first two moments of the activations move between measurements.

For layers #2, #9 and #13 of standard, BatchNorm and noisy BatchNorm nets: the mean over
sampled units of |Δ mean| and |Δ variance| since the previous measurement, over steps.

    python analysis/fig8.py multirun/fig2/<date> --out figures/
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from _common import add_layers, band_caption, finish, require_layers, run_script

from smoothbench.plotting import (
    ConditionStyles,
    condition_keys,
    conditions,
    plot_metric,
    step_axis,
)
from smoothbench.results import require_metrics

NAME = "fig8"
LAYERS = (2, 9, 13)
MOMENTS = (("mean_change", "change in mean"), ("var_change", "change in variance"))
LAYER_METRIC = "act/layer{}/mean_change"  # the per-layer metric that --layers selects
METRICS = ["act/*/mean_change", "act/*/var_change"]  # what the figure reads (fnmatch patterns)


def make_figure(
    df: pd.DataFrame,
    layers: Sequence[int] = LAYERS,
    band: str = "minmax",
    logy: bool = True,
) -> plt.Figure:
    """Rows: layers; columns: change of the mean and of the variance; a line per condition."""
    metrics = [f"act/layer{k}/{m}" for k in layers for m, _ in MOMENTS]
    require_layers(df, LAYER_METRIC, layers)
    require_metrics(df, metrics)
    rows = df[df["metric"].isin(metrics)]
    styles = ConditionStyles(conditions(rows, condition_keys(df)))
    fig, axes = plt.subplots(
        len(layers), 2, figsize=(7.0, 0.6 + 2.0 * len(layers)), squeeze=False, layout="constrained"
    )
    for row, layer in enumerate(layers):
        for col, (moment, label) in enumerate(MOMENTS):
            ax = axes[row, col]
            plot_metric(ax, rows, f"act/layer{layer}/{moment}", band=band, styles=styles)
            ax.set_title(f"layer #{layer}: {label}")
            step_axis(ax)
            ax.set_ylabel("mean |Δ| over units")
            if logy:
                ax.set_yscale("log")
    return finish(fig, df, list(axes.ravel()), band_caption(band, rows), probe_metrics=metrics)


def add_arguments(parser) -> None:
    add_layers(parser, LAYERS, "the moment changes", metric=LAYER_METRIC)
    parser.add_argument(
        "--logy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log-scale y axes (default: on)",
    )


def build(df, args) -> plt.Figure:
    """The figure from the loaded runs and the parsed command line (also used by the report)."""
    return make_figure(df, args.layers, args.band, args.logy)


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
