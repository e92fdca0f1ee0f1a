"""Paper Fig. 1: BatchNorm trains faster and tolerates a larger learning rate.

(a) training and (b) test accuracy over steps, with and without BatchNorm, at every loaded
learning rate (paper: 0.1 and 0.5); (c) activation distributions ("ridges": nested quantile
bands 0-100, 5-95, 15-85, 30-70 % and the median) of layers #3 and #11 at the smallest lr.

    python analysis/fig1.py multirun/fig1/<date> --out figures/
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from _common import (
    add_layers,
    add_sharey,
    band_caption,
    draw_accuracy,
    draw_distributions,
    finish,
    require_layers,
    run_script,
)

from smoothbench.results import require_metrics

NAME = "fig1"
LAYERS = (3, 11)
ACCURACY = ("train/acc", "test/acc")
LAYER_METRIC = "act/layer{}/quantiles"  # the per-layer metric that --layers selects
METRICS = list(ACCURACY) + ["act/*/quantiles"]  # what the figure reads (fnmatch patterns)


def make_figure(
    df: pd.DataFrame,
    layers: Sequence[int] = LAYERS,
    band: str = "minmax",
    dist_lr: float | None = None,
    sharey: bool = True,
) -> plt.Figure:
    """Accuracy panels on top, activation ridges (rows: layers, columns: conditions) below."""
    require_metrics(df, ACCURACY)
    require_layers(df, LAYER_METRIC, layers)
    fig = plt.figure(figsize=(7.0, 2.9 + 1.7 * len(layers)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.9, 1.7 * len(layers)])
    axes = draw_accuracy(top, df, band, ACCURACY)
    top.suptitle("(a, b) accuracy", fontsize=9)
    draw_distributions(bottom, df, layers, lr=dist_lr, sharey=sharey)
    bottom.suptitle(
        "(c) activation distributions (shaded: quantiles 0–100, 5–95, 15–85, 30–70 % over "
        "sampled units; line: median)",
        fontsize=8,
    )
    quantiles = [LAYER_METRIC.format(k) for k in layers]
    return finish(fig, df, axes, band_caption(band, df), probe_metrics=quantiles)


def add_arguments(parser) -> None:
    add_layers(parser, LAYERS, "the activation distributions", metric=LAYER_METRIC)
    parser.add_argument(
        "--dist-lr",
        type=float,
        default=None,
        help="learning rate of the runs whose distributions are shown (default: the smallest)",
    )
    add_sharey(parser)


def build(df, args) -> plt.Figure:
    """The figure from the loaded runs and the parsed command line (also used by the report)."""
    return make_figure(df, args.layers, args.band, args.dist_lr, args.sharey)


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
