"""What the figure scripts share: the command line, loading runs, panels used by several figures.

Every script runs as `python analysis/<fig>.py RUN_OR_SWEEP_DIR... --out figures/` or
`python analysis/<fig>.py --wandb entity/project --group G --out figures/`, writes
`<out>/<fig>.pdf` and `.png` (`--format`), and exits with status 2 and one line naming the
missing metric when the runs do not record what the figure needs. For a paper: `--width
column|page`, `--band ci95|sem|none`, and `--no-warnings` (the warnings go to
`<out>/<fig>.caption.txt` instead of onto the image); a bad value is one line and status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _notes import (
    HEALTH_METRICS,
    Presentation,
    annotate,
    band_note,
    presentation,
    presenting,
)

from smoothbench.plotting import (
    FIGURE_FORMATS,
    FIGURE_WIDTHS,
    SEED_BANDS,
    ConditionStyles,
    condition_keys,
    conditions,
    fit_width,
    legend_below,
    plot_metric,
    plot_range_band,
    plot_ridges,
    save_figure,
    select,
    set_style,
    step_axis,
    wrap_to_width,
)
from smoothbench.results import (
    STATES,
    MissingMetricError,
    aggregate_seeds,
    damaged_runs,
    load_runs,
    load_wandb_runs,
    metric_arrays,
    metric_frame,
    require_metrics,
)

EXIT_MISSING = 2
# normalizations that normalize with batch statistics and keep running ones for eval: only for
# these nets does "BN statistics: train/eval" mean anything
BATCH_STAT_NORMS = ("batch", "noisy_batch", "l1", "l2", "linf")
LEGEND_TITLE_PT = 7  # the legend title's font size (legend_below)


class FigureParser(argparse.ArgumentParser):
    """An argument parser whose error is one line (`fig1: error: ...`) and status 2."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_MISSING, f"{self.prog}: error: {message} (see --help)\n")


def formats(text: str) -> list[str]:
    """`--format` values: one format or a comma list ("svg", "pdf,png")."""
    names = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in names if f not in FIGURE_FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown format {(unknown or [text])[0]!r}; choose from: {', '.join(FIGURE_FORMATS)}"
        )
    return names


def make_parser(name: str, description: str | None) -> argparse.ArgumentParser:
    parser = FigureParser(prog=name, description=description)
    parser.add_argument("paths", nargs="*", help="run dirs, sweep dirs or glob patterns")
    parser.add_argument("--out", default="figures", help="output dir (default: figures)")
    parser.add_argument(
        "--name",
        default=name,
        help=f"output file name, <out>/<name>.pdf and .png (default: {name}; a figure drawn by "
        "another figure's script is saved under its own name)",
    )
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read runs from W&B instead")
    parser.add_argument("--group", help="W&B group to read (with --wandb)")
    parser.add_argument(
        "--status", nargs="+", choices=STATES, help="keep only runs in these states"
    )
    parser.add_argument(
        "--band",
        choices=SEED_BANDS,
        default="minmax",
        help="band around the mean over seeds: min-max (default), ±1 std, ±1 standard error "
        "(sem), the 95%% t-interval of the mean (ci95) or none; the legend says which",
    )
    parser.add_argument(
        "--format",
        dest="formats",
        type=formats,
        action="append",
        metavar="FMT",
        help=f"file format, repeatable or a comma list, of: {', '.join(FIGURE_FORMATS)} "
        "(default: pdf and png)",
    )
    parser.add_argument(
        "--width",
        choices=tuple(FIGURE_WIDTHS),
        default=None,
        help="figure width for a two-column paper: column (3.25 in) or page (6.75 in); fonts "
        "keep their size (default: the figure's own, 7 in)",
    )
    parser.add_argument(
        "--warnings",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="draw the warnings (one seed, a net at chance, ...) in red on the figure "
        "(default); --no-warnings writes them to <out>/<name>.caption.txt instead",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 on a damaged run dir (default: skip it with a line naming the damage)",
    )
    return parser


def load_frame(args: argparse.Namespace, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """The tidy frame of the runs named on the command line (paths or a W&B project)."""
    if metrics is not None:  # the warnings read the losses and accuracies of every figure
        metrics = list(metrics) + list(HEALTH_METRICS)
    if args.wandb:
        df = load_wandb_runs(args.wandb, group=args.group, metrics=metrics)
        return df[df["status"].isin(args.status)] if args.status else df
    if not args.paths:
        raise ValueError("no runs given: pass run or sweep dirs, or --wandb ENTITY/PROJECT")
    return load_runs(args.paths, status=args.status, metrics=metrics)


def run_script(
    name: str,
    argv: Sequence[str] | None,
    description: str | None,
    build: Callable[[pd.DataFrame, argparse.Namespace], Any],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    metrics: Iterable[str] | None = None,
    load: Callable[[argparse.Namespace], Any] | None = None,
) -> int:
    """Parse, load, build the figure, save it; one line on stderr and status 2 when it cannot."""
    parser = make_parser(name, description)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    name = args.name
    set_style()
    try:
        with damaged_runs(strict=args.strict):
            data = load(args) if load is not None else load_frame(args, metrics=metrics)
    except (FileNotFoundError, ValueError) as err:
        print(f"{name}: {err}", file=sys.stderr)
        return EXIT_MISSING
    if isinstance(data, pd.DataFrame):
        resolve_layers(args, data)
    shown = presentation_of(args)
    try:
        with presenting(shown):
            fig = build(data, args)
    except MissingMetricError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return EXIT_MISSING
    for path in save_figure(fig, args.out, name, chosen_formats(args)):
        print(path)
    if not shown.warnings_on_figure:
        caption = Path(args.out) / f"{name}.caption.txt"
        caption.write_text("\n".join(shown.caption) + "\n", encoding="utf-8")
        print(caption)
    return 0


def chosen_formats(args: argparse.Namespace) -> list[str]:
    """The --format values in order, each once (default: pdf and png)."""
    chosen = [f for group in (getattr(args, "formats", None) or []) for f in group]
    return list(dict.fromkeys(chosen)) or ["pdf", "png"]


def presentation_of(args: argparse.Namespace) -> Presentation:
    """The layout the command line asks for (--width, --warnings)."""
    width = FIGURE_WIDTHS.get(getattr(args, "width", None) or "")
    return Presentation(warnings_on_figure=getattr(args, "warnings", True), width_in=width)


def add_layers(
    parser: argparse.ArgumentParser,
    default: Sequence[int] | None,
    what: str,
    metric: str | None = None,
) -> None:
    """`--layers K...`; without it, the paper's `default` layers when the runs record them all,
    else every layer the runs record `metric` for (a smaller net numbers its layers otherwise)."""
    parser.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=None,
        metavar="K",
        help=f"layer numbers (1 = nearest the input) for {what}"
        + (f" (default: {' '.join(map(str, default))}, or the recorded ones)" if default else ""),
    )
    parser.set_defaults(layer_defaults=list(default or ()), layer_metric=metric)


def resolve_layers(args: argparse.Namespace, df: pd.DataFrame) -> None:
    """Fill `args.layers` from the runs when the command line gave none (see add_layers)."""
    if getattr(args, "layers", "unset") is None and getattr(args, "layer_metric", None):
        args.layers = layers_for_report(df, args.layer_metric, args.layer_defaults) or None


def layers_with(df: pd.DataFrame, template: str) -> list[int]:
    """Layer numbers K for which some run records `template.format(K)` (e.g. "ics/layer{}/l2")."""
    prefix, suffix = template.split("{}")
    found = set()
    for name in df["metric"].unique():
        name = str(name)
        if name.startswith(prefix) and name.endswith(suffix):
            middle = name[len(prefix) : len(name) - len(suffix)]
            if middle.isdigit():
                found.add(int(middle))
    return sorted(found)


def require_layers(df: pd.DataFrame, template: str, layers: Sequence[int]) -> None:
    """Raise MissingMetricError naming the first absent layer and the layers that are recorded."""
    available = layers_with(df, template)
    for layer in layers:
        if layer not in available:
            recorded = ", ".join(map(str, available)) or "none"
            raise MissingMetricError(
                f"missing metric {template.format(layer)!r}: the runs record it for layers "
                f"{recorded} (choose with --layers)"
            )


def layers_for_report(df: pd.DataFrame, template: str, defaults: Sequence[int]) -> list[int]:
    """The default layers when the runs record them all; else every recorded layer."""
    available = layers_with(df, template)
    if all(k in available for k in defaults) or not available:
        return list(defaults)
    return available


def band_caption(band: str, df: pd.DataFrame) -> str:
    """What lines and bands are, true to the number of seeds in `df`."""
    return band_note(df, band)


def smoothness_caption(band: str, df: pd.DataFrame) -> str:
    counts = df.drop_duplicates("run")
    edges = "each edge averaged over seeds" if counts["seed"].nunique() > 1 else "one seed"
    return f"(a, b) shaded: min–max over the step sizes η ({edges}); (c) {band_note(df, band)}"


def finish(
    fig: Any,
    df: pd.DataFrame,
    axes: Sequence[Any],
    caption: str,
    probe_metrics: Sequence[str] = (),
    eta: bool = False,
) -> Any:
    """The legend (with the band caption) below the panels, the provenance footer under it and
    the warnings on top (see _notes.annotate); returns the figure."""
    fit_width(fig, presentation().width_in)  # before the legend chooses its columns
    caption = wrap_to_width(fig, caption, LEGEND_TITLE_PT)
    legend = legend_below(fig, axes, caption=caption, outside=False)
    annotate(fig, df, probe_metrics, eta=eta, legend=legend)
    return fig


# ---------------------------------------------------------------------------------------------
# selections shared by several figures

DLN = "dln"


def select_model(df: pd.DataFrame, model: str | None) -> tuple[pd.DataFrame, str]:
    """Rows of one model ("all" keeps every run; None: every model except the DLN)."""
    if model == "all":
        return df, ""
    if model is None:
        return df[df["model.name"] != DLN], "with a model other than dln"
    return df[df["model.name"] == model], f"with model {model}"


# ---------------------------------------------------------------------------------------------
# panels shared by several figures


def first_seed_run(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of the run with the smallest seed (then the first run id): one trajectory to show."""
    runs = rows[["run", "seed"]].drop_duplicates("run")
    runs = runs.assign(_seed=pd.to_numeric(runs["seed"], errors="coerce")).sort_values(
        ["_seed", "run"], na_position="last"
    )
    return rows[rows["run"] == runs["run"].iloc[0]]


ACCURACY_TITLES = {"train/acc": "training accuracy", "test/acc": "test accuracy"}


def draw_accuracy(subfig: Any, df: pd.DataFrame, band: str, metrics: Sequence[str]) -> list[Any]:
    """One panel per accuracy metric, a line per condition (mean over seeds with a band)."""
    axes = subfig.subplots(1, len(metrics), squeeze=False, sharey=True)[0]
    styles = ConditionStyles(conditions(df[df["metric"].isin(list(metrics))], condition_keys(df)))
    for ax, metric in zip(axes, metrics, strict=True):
        plot_metric(ax, df, metric, band=band, styles=styles)
        ax.set_title(ACCURACY_TITLES.get(metric, metric))
        step_axis(ax)
    axes[0].set_ylabel("accuracy")
    return list(axes)


def draw_distributions(
    subfig: Any,
    df: pd.DataFrame,
    layers: Sequence[int],
    lr: float | None = None,
    sharey: bool = True,
) -> list[Any]:
    """Activation "ridges" of one run per condition: rows = layers, columns = conditions.

    Only conditions at learning rate `lr` (default: the smallest lr that records the first
    layer's quantiles). Each panel shows the run with the smallest seed. With `sharey` the
    panels of one layer share their y axis, so the nets' scales compare at a glance (the
    paper's point); without it each panel has its own (for scales that differ by decades).
    """
    metrics = [f"act/layer{k}/quantiles" for k in layers]
    require_metrics(df, metrics)
    rows = df[df["metric"].isin(metrics)]
    if lr is None:
        lr = float(pd.to_numeric(rows["optim.lr"], errors="coerce").min())
    rows = rows[np.isclose(pd.to_numeric(rows["optim.lr"], errors="coerce"), lr)]
    if rows.empty:
        raise MissingMetricError(
            f"missing metric {metrics[0]!r}: no loaded run at lr {lr:g} has it"
        )
    keys = [k for k in condition_keys(rows) if k != "optim.lr"]
    conds = conditions(rows, keys)
    styles = ConditionStyles(conds)
    axes = subfig.subplots(
        len(layers), len(conds), squeeze=False, sharex=True, sharey="row" if sharey else False
    )
    for col, condition in enumerate(conds):
        runs = first_seed_run(select(rows, condition))
        seed = runs["seed"].iloc[0]
        for row, (layer, metric) in enumerate(zip(layers, metrics, strict=True)):
            ax = axes[row, col]
            if metric in set(runs["metric"]):
                quantiles = metric_arrays(runs, metric)
                plot_ridges(
                    ax,
                    quantiles["step"].to_numpy(),
                    np.stack(quantiles["value"].to_list()),
                    color=styles(condition)["color"],
                )
            ax.set_title(
                f"{styles(condition)['label']}\nlayer #{layer} (seed {seed}, lr {lr:g})", fontsize=7
            )
            if row == len(layers) - 1:
                step_axis(ax)
            if col == 0:
                ax.set_ylabel("activation value")
    return list(axes.ravel())


def add_sharey(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sharey",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one y axis per layer across nets, as the paper compares them (default: on; "
        "--no-sharey when the scales differ by decades)",
    )


def range_frame(df: pd.DataFrame, lo_metric: str, hi_metric: str | None = None) -> pd.DataFrame:
    """Per (run, step): lo and hi, from two scalar metrics or from the min/max of a list metric."""
    if hi_metric is None:
        rows = metric_arrays(df, lo_metric)
        out = rows.drop(columns=["value"]).copy()
        out["lo"] = [np.nanmin(v) if np.isfinite(v).any() else np.nan for v in rows["value"]]
        out["hi"] = [np.nanmax(v) if np.isfinite(v).any() else np.nan for v in rows["value"]]
        return out
    lo = metric_frame(df, lo_metric)
    hi = metric_frame(df, hi_metric)[["run", "step", "value"]].rename(columns={"value": "hi"})
    out = lo.rename(columns={"value": "lo"}).merge(hi, on=["run", "step"])
    return out.drop(columns=["metric"])


def draw_range(
    ax: Any,
    df: pd.DataFrame,
    lo_metric: str,
    hi_metric: str | None = None,
    styles: ConditionStyles | None = None,
) -> None:
    """Shaded range per step for each condition; the edges are the means over seeds of lo, hi."""
    ranges = range_frame(df, lo_metric, hi_metric)
    keys = styles.keys if styles is not None and styles.keys else condition_keys(df)
    conds = conditions(ranges, keys)
    styles = styles or ConditionStyles(conds)
    for condition in conds:
        part = select(ranges, condition)
        lo = aggregate_seeds(part, list(condition), value="lo")
        hi = aggregate_seeds(part, list(condition), value="hi")
        plot_range_band(ax, lo["step"], lo["mean"], hi["mean"], **styles(condition))


def draw_smoothness(
    axes: Sequence[Any],
    df: pd.DataFrame,
    band: str,
    logy: bool = False,
    styles: ConditionStyles | None = None,
) -> None:
    """Paper Fig. 4's three panels: loss landscape, gradient predictiveness, β-smoothness.
    `styles`: the figure's, when its other panels show more conditions (labels must agree)."""
    present = set(df["metric"].unique())
    if styles is None:
        conds = conditions(df[df["metric"].str.startswith("landscape/")], condition_keys(df))
        styles = ConditionStyles(conds)
    loss_ax, grad_ax, beta_ax = axes
    if "landscape/losses" in present:
        draw_range(loss_ax, df, "landscape/losses", styles=styles)
        loss_ax.set_ylabel(r"loss $L(\theta - \eta g)$")
        loss_ax.set_title("(a) loss landscape")
    else:  # the W&B mirror keeps scalars only: fall back on the span itself
        plot_metric(loss_ax, df, "landscape/loss_variation", band=band, styles=styles)
        loss_ax.set_ylabel("loss variation (max − min over η)")
        loss_ax.set_title("(a) loss landscape")
    draw_range(grad_ax, df, "landscape/grad_pred_min", "landscape/grad_pred_max", styles=styles)
    grad_ax.set_ylabel(r"$\ell_2$ change in gradient $\|g_\eta - g\|_2$")
    grad_ax.set_title("(b) gradient predictiveness")
    plot_metric(beta_ax, df, "landscape/beta_smoothness", band=band, styles=styles)
    beta_ax.set_ylabel(r"effective $\beta$-smoothness")
    beta_ax.set_title(r"(c) effective $\beta$-smoothness")
    for ax in axes:
        step_axis(ax)
        if logy:
            ax.set_yscale("log")


SMOOTHNESS_METRICS = (
    "landscape/grad_pred_min",
    "landscape/grad_pred_max",
    "landscape/beta_smoothness",
)


def smoothness_figure(
    df: pd.DataFrame, model: str | None, band: str = "minmax", logy: bool = False
) -> Any:
    """Fig. 4 (and Fig. 10): loss landscape, gradient predictiveness, effective β-smoothness of
    one model's runs (see select_model)."""
    import matplotlib.pyplot as plt

    rows, what = select_model(df, model)
    if rows.empty:
        raise MissingMetricError(f"missing metric 'landscape/losses': no loaded run {what}")
    require_smoothness(rows, what)
    fig, axes = plt.subplots(1, 3, figsize=(7.0, 2.9), layout="constrained")
    draw_smoothness(axes, rows, band, logy=logy)
    probes = ["landscape/beta_smoothness"]
    return finish(
        fig, rows, list(axes), smoothness_caption(band, rows), probe_metrics=probes, eta=True
    )


def add_smoothness_arguments(
    parser: argparse.ArgumentParser, default_model: str | None, default_logy: bool
) -> None:
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


def require_smoothness(df: pd.DataFrame, what: str = "") -> None:
    present = set(df["metric"].unique())
    if "landscape/losses" not in present:
        require_metrics(df, ["landscape/loss_variation"], what)
    require_metrics(df, SMOOTHNESS_METRICS, what)
