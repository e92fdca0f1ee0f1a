"""Paper Fig. 2: "noisy" BatchNorm trains nearly as well as BatchNorm, though its activation
distributions are less stable than those of the standard net.

(a) training accuracy over steps for standard, BatchNorm and noisy BatchNorm nets (paper: lr
0.1); (b) activation distributions of layers #2, #9 and #13, one column per net.

    python analysis/fig2.py multirun/fig2/<date> --out figures/
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from _common import add_layers, band_caption, draw_distributions, require_layers, run_script
from fig1 import draw_accuracy

from smoothbench.plotting import legend_below
from smoothbench.results import MissingMetricError, require_metrics

NAME = "fig2"
LAYERS = (2, 9, 13)
NORMS = ("none", "batch", "noisy_batch")
LAYER_METRIC = "act/layer{}/quantiles"  # the per-layer metric that --layers selects
METRICS = ["train/acc", "act/*/quantiles"]  # what the figure reads (fnmatch patterns)


def make_figure(
    df: pd.DataFrame,
    layers: Sequence[int] = LAYERS,
    band: str = "minmax",
    dist_lr: float | None = None,
    norms: Sequence[str] = NORMS,
) -> plt.Figure:
    """Training accuracy on top, activation ridges (rows: layers, columns: nets) below."""
    df = df[df["norm.name"].isin(list(norms))]
    if not (df["norm.name"] == "noisy_batch").any():
        raise MissingMetricError(
            "missing runs: no loaded run has norm.name noisy_batch (fig2 compares it with "
            "none and batch; fig1 shows the others)"
        )
    require_metrics(df, ["train/acc"])
    require_layers(df, LAYER_METRIC, layers)
    fig = plt.figure(figsize=(7.0, 2.4 + 1.5 * len(layers)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.4, 1.5 * len(layers)])
    axes = draw_accuracy(top, df, band, metrics=["train/acc"])
    draw_distributions(bottom, df, layers, lr=dist_lr)
    bottom.suptitle(
        "(b) activation distributions (quantiles 0–100, 5–95, 15–85, 30–70 %, median)", fontsize=9
    )
    legend_below(fig, axes, caption=band_caption(band))
    return fig


def add_arguments(parser) -> None:
    add_layers(parser, LAYERS, "the activation distributions")
    parser.add_argument(
        "--dist-lr",
        type=float,
        default=None,
        help="learning rate of the runs whose distributions are shown (default: the smallest)",
    )
    parser.add_argument(
        "--norms",
        nargs="+",
        default=list(NORMS),
        help=f"normalizations to show (default: {' '.join(NORMS)})",
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(
        NAME,
        argv,
        __doc__,
        lambda df, args: make_figure(df, args.layers, args.band, args.dist_lr, args.norms),
        add_arguments,
        metrics=METRICS,
    )


if __name__ == "__main__":
    sys.exit(main())
