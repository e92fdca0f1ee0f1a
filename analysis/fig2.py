"""Paper Fig. 2: "noisy" BatchNorm trains nearly as well as BatchNorm, though its activation
distributions are less stable than those of the standard net.

(a) training accuracy over steps for standard, BatchNorm and noisy BatchNorm nets (paper: lr
0.1), and the standard net with the same noise but no BatchNorm (norm=noise) when the runs have
it; (b) activation distributions of layers #2, #9 and #13, one column per net.

    python analysis/fig2.py multirun/fig2/<date> --out figures/
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

from smoothbench.results import MissingMetricError, require_metrics

NAME = "fig2"
LAYERS = (2, 9, 13)
NORMS = ("none", "batch", "noisy_batch", "noise")
LAYER_METRIC = "act/layer{}/quantiles"  # the per-layer metric that --layers selects
METRICS = ["train/acc", "act/*/quantiles"]  # what the figure reads (fnmatch patterns)


def make_figure(
    df: pd.DataFrame,
    layers: Sequence[int] = LAYERS,
    band: str = "minmax",
    dist_lr: float | None = None,
    norms: Sequence[str] = NORMS,
    sharey: bool = True,
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
    fig = plt.figure(figsize=(7.0, 2.9 + 1.5 * len(layers)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.9, 1.5 * len(layers)])
    axes = draw_accuracy(top, df, band, ["train/acc"])
    axes[0].set_title("(a) training accuracy")
    draw_distributions(bottom, df, layers, lr=dist_lr, sharey=sharey)
    bottom.suptitle(
        "(b) activation distributions (shaded: quantiles 0–100, 5–95, 15–85, 30–70 % over "
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
    parser.add_argument(
        "--norms",
        nargs="+",
        default=list(NORMS),
        help=f"normalizations to show (default: {' '.join(NORMS)})",
    )
    add_sharey(parser)


def build(df, args) -> plt.Figure:
    """The figure from the loaded runs and the parsed command line (also used by the report)."""
    return make_figure(df, args.layers, args.band, args.dist_lr, args.norms, args.sharey)


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
