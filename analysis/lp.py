"""ℓp normalizations match BatchNorm (paper §3.3, Figs 12 and 13).

For standard, BatchNorm, ℓ1, ℓ2 and ℓ∞ nets, one row per model (VGG, DLN): the training curve
(accuracy, or loss for a model without accuracy such as the DLN), then, when the runs probe
the landscape, Fig. 4's loss landscape, gradient predictiveness and effective β-smoothness.

    python analysis/lp.py multirun/lp/<date> --out figures/
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from _common import SMOOTHNESS_METRICS, band_caption, draw_smoothness, finish, run_script

from smoothbench.plotting import (
    ConditionStyles,
    condition_keys,
    conditions,
    plot_metric,
    step_axis,
)
from smoothbench.results import MissingMetricError

NAME = "lp"
NORMS = ("none", "batch", "l1", "l2", "linf")
LP_NORMS = ("l1", "l2", "linf")
METRICS = ["train/acc", "train/loss", "landscape/*"]  # what the figure reads (fnmatch patterns)


def training_metric(rows: pd.DataFrame) -> str | None:
    present = set(rows["metric"].unique())
    return next((m for m in ("train/acc", "train/loss") if m in present), None)


def make_figure(
    df: pd.DataFrame,
    norms: Sequence[str] = NORMS,
    band: str = "minmax",
    logy: bool = False,
) -> plt.Figure:
    """Rows: models; columns: training curve, then the three smoothness panels when probed."""
    rows = df[df["norm.name"].isin(list(norms))]
    if not rows["norm.name"].isin(LP_NORMS).any():
        raise MissingMetricError(
            f"missing runs: no loaded run has norm.name in {', '.join(LP_NORMS)}"
        )
    models = sorted(rows["model.name"].dropna().unique(), key=str)
    models = [m for m in models if training_metric(rows[rows["model.name"] == m])]
    if not models:
        raise MissingMetricError("missing metric 'train/acc' (or 'train/loss'): no run records it")
    smooth = set(SMOOTHNESS_METRICS) <= set(rows["metric"].unique())
    ncols = 4 if smooth else 1
    fig, axes = plt.subplots(
        len(models),
        ncols,
        figsize=(7.0 if smooth else 3.5, 1.3 + 2.2 * len(models)),
        squeeze=False,
        layout="constrained",
    )
    styles = ConditionStyles(conditions(rows, condition_keys(rows)))
    for row, model in enumerate(models):
        part = rows[rows["model.name"] == model]
        metric = training_metric(part)
        ax = axes[row, 0]
        plot_metric(ax, part, metric, band=band, styles=styles)
        what = "accuracy" if metric == "train/acc" else "loss"
        prefix = f"{model}: " if len(models) > 1 else ""
        ax.set_title(f"{prefix}training {what}", fontsize=8)
        step_axis(ax)
        ax.set_ylabel(f"training {what}")
        if metric == "train/loss" and logy:
            ax.set_yscale("log")
        if smooth and set(SMOOTHNESS_METRICS) <= set(part["metric"].unique()):
            draw_smoothness(axes[row, 1:], part, band, logy=logy, styles=styles)
            for ax in axes[row, 1:]:  # narrow panels: the model is named once, on the left
                ax.set_title(ax.get_title(), fontsize=7)
    caption = band_caption(band, rows)
    if smooth:
        caption += ";\nloss landscape and gradient predictiveness: shaded min–max over step sizes η"
    probes = ["landscape/beta_smoothness"] if smooth else []
    return finish(fig, rows, list(axes.ravel()), caption, probe_metrics=probes, eta=smooth)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--norms",
        nargs="+",
        default=list(NORMS),
        help=f"normalizations to show (default: {' '.join(NORMS)})",
    )
    parser.add_argument("--logy", action="store_true", help="log-scale losses and smoothness")


def build(df, args) -> plt.Figure:
    """The figure from the loaded runs and the parsed command line (also used by the report)."""
    return make_figure(df, args.norms, args.band, args.logy)


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
