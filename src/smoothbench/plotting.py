"""The shared look of every figure: colours per normalization, labels, bands, ridges, saving.

Every figure script draws conditions (one set of config values, averaged over seeds) with the
helpers here, so a normalization has the same colour and name in every figure of the project.
"""

from __future__ import annotations

import logging
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; no display is ever needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from smoothbench.models.norms import NORM_NAMES, NORMS  # noqa: E402
from smoothbench.results import (  # noqa: E402
    CONTEXT_COLUMNS,
    aggregate_seeds,
    config_keys,
    metric_frame,
)

# fontTools logs a harmless warning about the embedded fonts' timestamps on every PDF it subsets
logging.getLogger("fontTools").setLevel(logging.ERROR)

# Labels and colours come from the one table of normalizations, so every figure agrees.
NORM_ORDER = NORM_NAMES
NORM_COLORS: dict[str, tuple[float, float, float]] = {
    name: to_rgb(info.color) for name, info in NORMS.items()
}
NORM_LABELS = {name: info.label for name, info in NORMS.items()}
LINESTYLES = ("-", "--", ":", "-.")
# one marker per condition, so that lines drawn on top of each other all stay visible
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
MARKERS_PER_LINE = 8  # at most about this many markers on one line
BAND_CAPTIONS = {
    "minmax": "line: mean over seeds; band: min–max over seeds",
    "std": "line: mean over seeds; band: ±1 std over seeds",
    "sem": "line: mean over seeds; band: ±1 standard error of the mean over seeds",
    "ci95": "line: mean over seeds; band: 95 % t-interval of the mean over seeds",
    "none": "line: mean over seeds; no band",
}
SEED_BANDS = tuple(BAND_CAPTIONS)
# figure widths of a two-column paper, inches: one column, the whole text width
FIGURE_WIDTHS = {"column": 3.25, "page": 6.75}
FIGURE_FORMATS = ("pdf", "png", "svg")
# Config keys that never define a condition: they change what is recorded or where, not the
# training (probes are bitwise neutral), so runs differing only in them are the same condition.
BOOKKEEPING_KEYS = (
    "probes.*",
    "logger.*",
    "keep_checkpoints",
    "checkpoint_every",
    "eval_every",
    "eval_batch_size",
    "progress",
    "resume",
    "data.root",
    "data.download",
    "device",
    "hydra.*",
)
# quantile pairs of act/layerK/quantiles (0,5,15,30,50,70,85,95,100 %) shaded from wide to narrow
RIDGE_PAIRS = ((0, 8), (1, 7), (2, 6), (3, 5))
RIDGE_ALPHAS = (0.15, 0.25, 0.35, 0.5)
MEDIAN_INDEX = 4


def set_style() -> None:
    """Seaborn's paper theme with fonts readable at the paper's column width, fonts embedded."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)
    plt.rcParams.update(
        {
            "pdf.fonttype": 42,
            "ps.fonttype": 42,
            "axes.titlesize": 9,
            "axes.labelsize": 8,
            "legend.fontsize": 7,
            "xtick.labelsize": 7,
            "ytick.labelsize": 7,
            "figure.dpi": 100,
            "savefig.dpi": 200,
        }
    )


def norm_color(name: str | None) -> Any:
    """The colour of a normalization; grey for names outside NORM_COLORS."""
    return NORM_COLORS.get(str(name), (0.4, 0.4, 0.4))


def norm_label(name: str | None) -> str:
    return NORM_LABELS.get(str(name), str(name))


def save_figure(
    fig: matplotlib.figure.Figure,
    out_dir: str | os.PathLike,
    name: str,
    formats: Sequence[str] = ("pdf", "png"),
) -> list[Path]:
    """Write `<out_dir>/<name>.<format>` for each format (default PDF and PNG) at the figure's
    own size; returns the paths.

    Figures use constrained layout (legends and notes included), so nothing is cropped or lost.
    """
    unknown = [f for f in formats if f not in FIGURE_FORMATS]
    if unknown:
        raise ValueError(f"unknown format {unknown[0]!r}; choose from: {', '.join(FIGURE_FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.{f}" for f in dict.fromkeys(formats)]
    for path in paths:
        fig.savefig(path, **SAVE_OPTIONS)
    return paths


# every file of a figure (PDF, PNG, the report's PNG) is saved the same way: the figure's size
SAVE_OPTIONS: dict[str, Any] = {}


def fit_width(fig: matplotlib.figure.Figure, width: float | None) -> None:
    """Make the figure `width` inches wide (None: leave it). Fonts keep their point sizes, so
    text stays as readable as at full width and the panels give up the room; the height
    shrinks by the fourth root of the width's ratio, so narrowed panels do not become slivers,
    and long panel-group titles break over lines. A figure already that wide is left alone."""
    old = fig.get_figwidth()
    if width is None or math.isclose(old, width, rel_tol=1e-3):
        return
    fig.set_size_inches(width, fig.get_figheight() * (width / old) ** 0.25)
    for title in _figure_titles(fig):
        title.set_text(wrap_to_width(fig, title.get_text(), title.get_fontsize()))
    for ax in fig.get_axes():  # a panel's title fits over its panel
        inches = ax.get_position().width * width
        ax.title.set_text(wrap_to_width(inches, ax.title.get_text(), ax.title.get_fontsize()))
        locator = ax.xaxis.get_major_locator()
        if inches < NARROW_PANEL_IN and isinstance(locator, MaxNLocator):
            locator.set_params(nbins=3)  # "0 500 1000" would run together


def wrap_to_width(fig: matplotlib.figure.Figure | float, text: str, fontsize: float) -> str:
    """`text` broken at spaces into lines that fit the figure's width (or a width in inches)
    at `fontsize` points."""
    inches = fig if isinstance(fig, int | float) else fig.get_figwidth()
    chars = max(12, int(inches * 72 / (CHAR_EM * fontsize)))
    return "\n".join(
        textwrap.fill(line, chars, break_long_words=False, break_on_hyphens=False)
        for line in text.split("\n")
    )


CHAR_EM = 0.55  # a character's mean width in font sizes (DejaVu Sans, with a margin)
NARROW_PANEL_IN = 1.5  # a panel narrower than this gets fewer step ticks


def _figure_titles(fig: Any) -> list[Any]:
    titles = [fig._suptitle] if getattr(fig, "_suptitle", None) is not None else []
    for sub in getattr(fig, "subfigs", []):
        titles += _figure_titles(sub)
    return titles


# ---------------------------------------------------------------------------------------------
# conditions: the config values a line stands for


def is_bookkeeping(key: str) -> bool:
    """Whether a config key only changes what is recorded (see BOOKKEEPING_KEYS)."""
    return any(
        key == pattern or (pattern.endswith(".*") and key.startswith(pattern[:-1]))
        for pattern in BOOKKEEPING_KEYS
    )


def _varies(df: pd.DataFrame, key: str) -> bool:
    return df[key].astype(object).map(repr).nunique() > 1


def condition_keys(df: pd.DataFrame) -> list[str]:
    """Config columns that define a condition: the loaded config columns except the seed and
    bookkeeping keys; context keys (experiment, scale, steps, ...) only where they vary."""
    return [
        k
        for k in config_keys(df)
        if k != "seed" and not is_bookkeeping(k) and (k not in CONTEXT_COLUMNS or _varies(df, k))
    ]


def swept_keys(df: pd.DataFrame) -> list[str]:
    """The condition keys whose value differs between the loaded runs (what a sweep varied)."""
    return [k for k in condition_keys(df) if _varies(df, k)]


def _sort_value(value: Any) -> tuple:
    if isinstance(value, str) and value in NORM_ORDER:
        return (0, NORM_ORDER.index(value), "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def conditions(df: pd.DataFrame, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The distinct conditions of a frame, ordered by normalization, then lr, then the rest."""
    keys = list(keys if keys is not None else condition_keys(df))
    if df.empty:
        return []
    unique = df[keys].astype(object).drop_duplicates()
    rows = [dict(zip(keys, row, strict=True)) for row in unique.itertuples(index=False)]
    order = ["norm.name", "optim.lr"] + [k for k in keys if k not in ("norm.name", "optim.lr")]
    return sorted(rows, key=lambda c: [_sort_value(c.get(k)) for k in order if k in c])


def select(df: pd.DataFrame, condition: Mapping[str, Any]) -> pd.DataFrame:
    """Rows of one condition (None/NaN match each other)."""
    mask = pd.Series(True, index=df.index)
    for key, value in condition.items():
        column = df[key]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            mask &= column.isna()
        elif isinstance(value, tuple):  # == would compare element-wise against the tuple
            mask &= column.map(lambda v, value=value: v == value).astype(bool)
        else:
            mask &= column.astype(object) == value
    return df[mask]


def condition_label(condition: Mapping[str, Any], varying: Sequence[str] | None = None) -> str:
    """The norm's name, then the other keys that vary: "Standard + BatchNorm, lr 0.1"."""
    parts = [norm_label(condition.get("norm.name"))]
    for key, value in condition.items():
        if key == "norm.name" or (varying is not None and key not in varying):
            continue
        if key == "optim.lr":
            parts.append(f"lr {value:g}" if isinstance(value, int | float) else f"lr {value}")
        elif key == "model.name":
            parts.append(str(value))
        elif key == "model.shortcut":
            parts.append("shortcut" if value else "no shortcut")
        else:
            parts.append(f"{key.split('.')[-1]}={value}")
    return ", ".join(parts)


def varying_keys(conds: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys whose value differs between the given conditions."""
    if not conds:
        return []
    return [k for k in conds[0] if len({repr(c.get(k)) for c in conds}) > 1]


class ConditionStyles:
    """Colour by normalization, line style by the position of the rest of the condition."""

    def __init__(self, conds: Sequence[Mapping[str, Any]]):
        self.keys = list(dict.fromkeys(k for c in conds for k in c))
        self.varying = varying_keys(conds)
        others = []
        for c in conds:
            rest = tuple(repr(c.get(k)) for k in self.varying if k != "norm.name")
            if rest not in others:
                others.append(rest)
        self._others = others

        self._all = [tuple(repr(c.get(k)) for k in self.varying) for c in conds]

    def __call__(self, condition: Mapping[str, Any]) -> dict[str, Any]:
        rest = tuple(repr(condition.get(k)) for k in self.varying if k != "norm.name")
        index = self._others.index(rest) if rest in self._others else 0
        whole = tuple(repr(condition.get(k)) for k in self.varying)
        position = self._all.index(whole) if whole in self._all else 0
        return {
            "color": norm_color(condition.get("norm.name")),
            "linestyle": LINESTYLES[index % len(LINESTYLES)],
            "marker": MARKERS[position % len(MARKERS)],
            "label": condition_label(condition, self.varying),
        }


# ---------------------------------------------------------------------------------------------
# drawing


class StepLocator(MaxNLocator):
    """At most 5 round, whole-number ticks. MaxNLocator(integer=True) falls back on fractional
    ticks when the axis spans less than a step (one probe point); those are dropped here."""

    def __init__(self) -> None:
        super().__init__(nbins=5, integer=True, steps=[1, 2, 5, 10])

    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
        ticks = super().tick_values(vmin, vmax)
        return ticks[np.isclose(ticks, np.round(ticks))]


def step_axis(ax: matplotlib.axes.Axes) -> None:
    """Label the x axis as training steps, with whole-number ticks."""
    ax.set_xlabel("training step")
    ax.xaxis.set_major_locator(StepLocator())  # panels are narrow: few ticks


def markevery(n: int) -> int:
    """Every how many points a line of n points carries a marker (about MARKERS_PER_LINE)."""
    return max(1, math.ceil(n / MARKERS_PER_LINE))


def plot_band(
    ax: matplotlib.axes.Axes,
    steps: Sequence[float],
    mean: Sequence[float],
    lo: Sequence[float] | None = None,
    hi: Sequence[float] | None = None,
    *,
    color: Any,
    label: str | None = None,
    linestyle: str = "-",
    marker: str = "o",
    alpha: float = 0.2,
) -> matplotlib.lines.Line2D:
    """A mean line (gid "mean") over a shaded lo..hi band; returns the line.

    Markers (hollow, one shape per condition) keep lines that lie on top of each other visible.
    No band is drawn where lo == hi everywhere (one seed): there is no spread to show.
    """
    (line,) = ax.plot(
        steps,
        mean,
        color=color,
        linestyle=linestyle,
        label=label,
        lw=1.2,
        marker=marker,
        ms=3.5,
        mfc="none",
        mew=0.9,
        markevery=markevery(len(steps)),
    )
    line.set_gid("mean")
    if lo is not None and hi is not None:
        lo_values = np.asarray(lo, dtype=float)
        hi_values = np.asarray(hi, dtype=float)
        if np.nanmax(np.abs(hi_values - lo_values), initial=0.0) > 0:
            ax.fill_between(steps, lo_values, hi_values, color=color, alpha=alpha, lw=0)
    return line


def plot_metric(
    ax: matplotlib.axes.Axes,
    df: pd.DataFrame,
    metric: str,
    *,
    keys: Sequence[str] | None = None,
    band: str = "minmax",
    styles: ConditionStyles | None = None,
) -> list[matplotlib.lines.Line2D]:
    """One mean line with a seed band per condition for a scalar metric; returns the lines."""
    rows = metric_frame(df, metric)
    if keys is None:  # the styles' keys, so that every label names what the figure varies
        keys = styles.keys if styles is not None and styles.keys else condition_keys(df)
    conds = conditions(rows, list(keys))
    styles = styles or ConditionStyles(conds)
    lines = []
    for condition in conds:
        agg = seed_band(select(rows, condition), list(condition), band=band)
        if agg["mean"].notna().sum() == 0:
            continue
        lines.append(
            plot_band(ax, agg["step"], agg["mean"], agg["lo"], agg["hi"], **styles(condition))
        )
    return lines


def seed_band(
    frame: pd.DataFrame, by: Sequence[str], band: str = "minmax", value: str = "value"
) -> pd.DataFrame:
    """aggregate_seeds with every band of SEED_BANDS: "minmax", "std" (± sample std), "sem"
    (± std / sqrt(n)), "ci95" (± t_0.975,n−1 · std / sqrt(n), the 95 % t-interval of the
    mean), "none" (lo = hi = mean). One run has no spread: lo = hi = mean for every band."""
    if band not in SEED_BANDS:
        raise ValueError(f"unknown band {band!r}; choose one of: {', '.join(SEED_BANDS)}")
    if band in ("minmax", "std"):
        return aggregate_seeds(frame, by, band=band, value=value)
    out = aggregate_seeds(frame, by, band="std", value=value)
    std = (out["hi"] - out["lo"]) / 2
    n = out["n"].astype(float)
    if band == "none":
        half = std * 0.0
    else:
        half = std / np.sqrt(n.clip(lower=1.0))
        if band == "ci95":
            from scipy import stats

            t = stats.t.ppf(0.975, (n - 1).clip(lower=1.0))
            half = half * np.where(n > 1, t, 0.0)
    out["lo"], out["hi"] = out["mean"] - half, out["mean"] + half
    return out


def plot_range_band(
    ax: matplotlib.axes.Axes,
    steps: Sequence[float],
    lo: Sequence[float],
    hi: Sequence[float],
    *,
    color: Any,
    label: str | None = None,
    linestyle: str = "-",
    marker: str = "o",
    alpha: float = 0.3,
) -> None:
    """A shaded range lo..hi per step with thin edge lines (gids "lo" and "hi"; the legend
    entry is the lower edge, so it shows the condition's line style and marker)."""
    ax.fill_between(steps, lo, hi, color=color, alpha=alpha, lw=0)
    for gid, values in (("lo", lo), ("hi", hi)):
        (edge,) = ax.plot(
            steps,
            values,
            color=color,
            linestyle=linestyle,
            lw=0.8,
            marker=marker,
            ms=3,
            mfc="none",
            mew=0.8,
            markevery=markevery(len(steps)),
            label=label if gid == "lo" else None,
        )
        edge.set_gid(gid)


def plot_ridges(
    ax: matplotlib.axes.Axes,
    steps: Sequence[float],
    quantiles: np.ndarray,
    *,
    color: Any,
    label: str | None = None,
) -> matplotlib.lines.Line2D:
    """Activation-distribution "ridges": nested quantile bands over steps and the median line.

    `quantiles` is (steps, 9): the 0, 5, 15, 30, 50, 70, 85, 95, 100 % quantiles.
    """
    quantiles = np.asarray(quantiles, dtype=float)
    if quantiles.ndim != 2 or quantiles.shape[1] != 9:
        raise ValueError(f"quantiles must be (steps, 9), got shape {quantiles.shape}")
    for (low, high), alpha in zip(RIDGE_PAIRS, RIDGE_ALPHAS, strict=True):
        ax.fill_between(
            steps, quantiles[:, low], quantiles[:, high], color=color, alpha=alpha, lw=0
        )
    (median,) = ax.plot(steps, quantiles[:, MEDIAN_INDEX], color=color, lw=1.0, label=label)
    median.set_gid("median")
    return median


def legend_columns(fig: matplotlib.figure.Figure, labels: Sequence[str]) -> int:
    """As many legend columns as fit the figure's width (at most 4): a label of n characters
    takes about 0.55 n font sizes, plus the handle."""
    size = plt.rcParams["legend.fontsize"]
    size = size if isinstance(size, int | float) else 7.0
    width_pt = fig.get_figwidth() * 72
    entry_pt = 0.55 * size * max(len(label) for label in labels) + 4 * size
    return max(1, min(len(labels), 4, int(width_pt // entry_pt)))


def legend_below(
    fig: matplotlib.figure.Figure,
    axes: Sequence[matplotlib.axes.Axes],
    caption: str | None = None,
    outside: bool = True,
) -> matplotlib.legend.Legend | None:
    """One legend for the whole figure (handles of all axes, de-duplicated), below the panels.

    `outside`: constrained layout makes room for it below the panels. Without, the legend is
    left for the caller to place (e.g. in a strip it reserves, above a footer).
    """
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if not handles:
        return None
    return fig.legend(
        handles,
        labels,
        loc="outside lower center" if outside else "upper center",
        ncol=legend_columns(fig, labels),
        frameon=False,
        title=caption,
        title_fontsize=7,
    )
