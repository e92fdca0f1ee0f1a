"""Curvature over training (PyHessian-style; docs/science.md §4): sharper without BN or shortcuts.

(a) the largest Hessian eigenvalue λ_max over steps with the edge of stability 2/lr (dashed;
Cohen et al. 2021); (b) the Hutchinson trace with a ±1 standard-error band; (c) the spectral
density (stochastic Lanczos quadrature, log-scale y) of one run per condition at a few steps.
Every panel says which BN statistics the Hessian used (hessian/bn_mode).

    python analysis/hessian.py multirun/hessian/<date> --out figures/
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from _common import BATCH_STAT_NORMS, band_caption, finish, first_seed_run, run_script

from smoothbench.plotting import (
    ConditionStyles,
    condition_keys,
    conditions,
    plot_band,
    plot_metric,
    select,
    step_axis,
)
from smoothbench.results import metric_arrays, metric_frame, require_metrics

NAME = "hessian"
DENSITY_COLUMNS = 3
METRICS = ["hessian/*", "train/lr"]  # what the figure reads (fnmatch patterns)


def bn_modes(df: pd.DataFrame) -> str | None:
    """The BN statistics the Hessians of the nets with batch statistics used ("train", "eval";
    "unrecorded"); None when no loaded net has batch statistics (the mode means nothing)."""
    rows = df[df["norm.name"].astype(str).isin(BATCH_STAT_NORMS)]
    if rows.empty:
        return None
    modes = sorted(set(map(str, rows.loc[rows["metric"] == "hessian/bn_mode", "value"])))
    return "/".join(modes) if modes else "unrecorded"


def bn_note(mode: str | None) -> str:
    return "" if mode is None else f" (BN nets: {mode} statistics)"


def edge_of_stability(ax, df: pd.DataFrame, conds) -> None:
    """Dashed 2/lr per distinct learning-rate trajectory (train/lr if recorded, else optim.lr)."""
    lines: dict[tuple, tuple] = {}
    for condition in conds:
        part = select(df, condition)
        if "train/lr" in set(part["metric"]):
            lr = first_seed_run(metric_frame(part, "train/lr"))
            steps, values = lr["step"].to_numpy(), lr["value"].to_numpy(dtype=float)
        else:
            steps = np.asarray([part["step"].min(), part["step"].max()])
            values = np.full(2, float(condition.get("optim.lr", math.nan)))
        # runs of one lr that stopped at different steps share one line: the longest
        key = tuple(np.unique(np.round(values, 12)))
        if key not in lines or len(steps) > len(lines[key][0]):
            lines[key] = (steps, values)
    for steps, values in lines.values():
        with np.errstate(divide="ignore"):
            edge = 2.0 / values
        (line,) = ax.plot(
            steps, edge, linestyle="--", color="0.35", lw=0.9, label="2/lr (edge of stability)"
        )
        line.set_gid("2/lr")
        ax.annotate(
            f"2/lr = {edge[-1]:g}",
            (steps[-1], edge[-1]),
            fontsize=6,
            color="0.35",
            ha="right",
            va="bottom",
        )


def draw_trace(ax, df: pd.DataFrame, styles: ConditionStyles) -> None:
    """Mean trace over seeds; band ± the standard error of that mean, sqrt(Σ se²) / n."""
    trace = metric_frame(df, "hessian/trace")
    stderr = metric_frame(df, "hessian/trace_stderr")[["run", "step", "value"]]
    both = trace.merge(stderr.rename(columns={"value": "stderr"}), on=["run", "step"], how="left")
    both["value"] = both["value"].astype(float)
    both["var"] = both["stderr"].astype(float) ** 2
    for condition in conditions(both, condition_keys(df)):
        part = select(both, condition).groupby("step")
        mean = part["value"].mean()
        se = np.sqrt(part["var"].sum(min_count=1)) / part["value"].count()
        plot_band(ax, mean.index, mean, mean - se, mean + se, **styles(condition))


def pick_steps(available: Sequence[int], wanted: Sequence[int] | None) -> list[int]:
    """The available steps nearest to the wanted ones (default: first, middle and last)."""
    available = sorted(available)
    if not wanted:
        return sorted({available[0], available[len(available) // 2], available[-1]})
    return sorted({min(available, key=lambda s, w=w: abs(s - w)) for w in wanted})


def draw_density(ax, runs: pd.DataFrame, steps: Sequence[int] | None, title: str) -> None:
    grids = metric_arrays(runs, "hessian/density_grid").set_index("step")["value"]
    densities = metric_arrays(runs, "hessian/density").set_index("step")["value"]
    chosen = pick_steps([s for s in densities.index if s in grids.index], steps)
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(chosen)))
    for step, color in zip(chosen, colors, strict=True):
        (line,) = ax.semilogy(
            grids[step], densities[step], color=color, lw=1.0, label=f"step {step}"
        )
        line.set_gid(f"density@{step}")
    ax.set_title(title, fontsize=7)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log scale)")
    ax.legend(fontsize=6, frameon=False)


def make_figure(
    df: pd.DataFrame,
    band: str = "minmax",
    density_steps: Sequence[int] | None = None,
    logy: bool = False,
) -> plt.Figure:
    """λ_max and trace panels on top; one density panel per condition below (when recorded)."""
    require_metrics(df, ["hessian/lambda_max"])
    rows = df[df["metric"].str.startswith("hessian/") | (df["metric"] == "train/lr")]
    present = set(rows["metric"].unique())
    has_trace = {"hessian/trace", "hessian/trace_stderr"} <= present
    has_density = {"hessian/density", "hessian/density_grid"} <= present
    conds = conditions(rows[rows["metric"] == "hessian/lambda_max"], condition_keys(df))
    styles = ConditionStyles(conds)
    n_density = (
        sum("hessian/density" in set(select(rows, c)["metric"]) for c in conds)
        if has_density
        else 0
    )
    density_rows = math.ceil(n_density / DENSITY_COLUMNS)
    fig = plt.figure(figsize=(7.0, 3.3 + 2.0 * density_rows), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.3, max(2.0 * density_rows, 1e-3)])
    axes = top.subplots(1, 2 if has_trace else 1, squeeze=False)[0]
    mode = bn_modes(rows)
    plot_metric(axes[0], rows, "hessian/lambda_max", band=band, styles=styles)
    edge_of_stability(axes[0], rows, conds)
    axes[0].set_title(f"(a) largest eigenvalue{bn_note(mode)}")
    axes[0].set_ylabel(r"$\lambda_{\max}$")
    if has_trace:
        draw_trace(axes[1], rows, styles)
        axes[1].set_title(f"(b) trace, band ±1 s.e.{bn_note(mode)}")
        axes[1].set_ylabel("Hessian trace")
    for ax in axes:
        step_axis(ax)
        if logy:
            ax.set_yscale("log")
    if n_density:
        dens_axes = bottom.subplots(density_rows, DENSITY_COLUMNS, squeeze=False).ravel()
        used = 0
        for condition in conds:
            runs = select(rows, condition)
            if "hessian/density" not in set(runs["metric"]):
                continue
            one = first_seed_run(runs)
            title = f"(c) {styles(condition)['label']}\nseed {one['seed'].iloc[0]}"
            draw_density(dens_axes[used], one, density_steps, title)
            used += 1
        for ax in dens_axes[used:]:
            ax.set_visible(False)
    caption = band_caption(band, rows[rows["metric"] == "hessian/lambda_max"])
    probes = ["hessian/lambda_max"]
    return finish(fig, rows, list(axes), caption, probe_metrics=probes)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--density-steps",
        type=int,
        nargs="+",
        default=None,
        metavar="STEP",
        help="steps whose spectral density is shown, nearest recorded "
        "(default: first, middle, last)",
    )
    parser.add_argument("--logy", action="store_true", help="log-scale λ_max and trace")


def build(df, args) -> plt.Figure:
    """The figure from the loaded runs and the parsed command line (also used by the report)."""
    return make_figure(df, args.band, args.density_steps, args.logy)


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
