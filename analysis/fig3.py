"""Paper Fig. 3: BatchNorm does not reduce internal covariate shift.

ICS of chosen layers over steps, with and without BatchNorm: the ℓ2 distance ‖G − G′‖₂ and the
cosine similarity cos(G, G′) between a layer's gradient before and after the layers below it
are updated (docs/science.md §4). Paper: VGG at lr 0.01, layers #5 and #10; DLN at lr 1e-6 and
1e-7, layers #9 and #17. Without --layers, every layer the runs record.

    python analysis/fig3.py multirun/fig3/<date> --out figures/
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from _common import add_layers, band_caption, finish, layers_with, run_script

from smoothbench.plotting import (
    ConditionStyles,
    condition_keys,
    conditions,
    plot_metric,
    step_axis,
)
from smoothbench.results import MissingMetricError, require_metrics

NAME = "fig3"
MEASURES = (("l2", r"$\ell_2$ difference $\|G - G'\|_2$"), ("cosine", r"cosine $\cos(G, G')$"))
METRICS = ["ics/*"]  # what the figure reads (fnmatch patterns)


def make_figure(
    df: pd.DataFrame,
    layers: Sequence[int] | None = None,
    band: str = "minmax",
    logy: bool = False,
) -> plt.Figure:
    """Rows: layers; columns: ℓ2 difference and cosine; a line per condition."""
    if layers is None:
        layers = layers_with(df, "ics/layer{}/l2")
        if not layers:
            raise MissingMetricError("missing metric 'ics/layerK/l2': no loaded run records ICS")
    require_metrics(df, [f"ics/layer{k}/{m}" for k in layers for m, _ in MEASURES])
    ics = df[df["metric"].str.startswith("ics/")]
    styles = ConditionStyles(conditions(ics, condition_keys(df)))
    fig, axes = plt.subplots(
        len(layers), 2, figsize=(7.0, 0.6 + 2.0 * len(layers)), squeeze=False, layout="constrained"
    )
    for row, layer in enumerate(layers):
        for col, (measure, label) in enumerate(MEASURES):
            ax = axes[row, col]
            plot_metric(ax, df, f"ics/layer{layer}/{measure}", band=band, styles=styles)
            ax.set_title(f"layer #{layer}: {label}")
            step_axis(ax)
            ax.set_ylabel(label)
            if logy and measure == "l2":
                ax.set_yscale("log")
    drawn = [f"ics/layer{k}/{m}" for k in layers for m, _ in MEASURES]
    return finish(fig, df, list(axes.ravel()), band_caption(band, ics), probe_metrics=drawn)


def add_arguments(parser) -> None:
    add_layers(parser, None, "ICS (default: every recorded layer)")
    parser.add_argument("--logy", action="store_true", help="log scale for the ℓ2 difference")


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
