"""What a figure says about its own data: the band note, the provenance footer, the warnings.

Every figure states what its lines and bands are (a seed band only where there are seeds to
spread), what produced them (one footer line: scale, steps, width, data, lr, η range, seeds),
and, drawn on the figure in red, what a reader must not miss: fewer than 3 probe points, a
single seed, a diverged run or one that never left chance. For a paper (`--no-warnings`) the
warnings leave the image for the figure's caption lines instead (see Presentation).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from smoothbench.plotting import (
    BAND_CAPTIONS,
    condition_keys,
    condition_label,
    fit_width,
    swept_keys,
    wrap_to_width,
)

# scalars read for the warnings whatever the figure draws
HEALTH_METRICS = ("train/loss", "test/loss", "train/acc", "test/acc")
MIN_PROBE_POINTS = 3
# a final loss this many times the run's first loss (or non-finite) looks diverged
DIVERGED_LOSS_FACTOR = 10.0
# a final accuracy below this multiple of chance has not trained
CHANCE_FACTOR = 1.5
NUM_CLASSES = {"digits": 10, "cifar10": 10, "cifar100": 100, "imagefolder": None}
WARNING_COLOR = "#b00000"
MAX_NAMED = 3  # runs named per warning; the rest are counted
WARNING_LINE_IN = 0.14  # height of one warning line (7 pt text), inches
FOOTER_LINE_IN = 0.12  # height of the footer line (6.5 pt text), inches
NOTE_PAD_IN = 0.08


@dataclass
class Presentation:
    """How the figures of one script run are laid out for print (the command line's --width and
    --no-warnings); `caption` collects the notes of the last figure annotated: what its band
    is, its provenance footer and its warnings, one line each."""

    warnings_on_figure: bool = True
    width_in: float | None = None  # None: the figure's own width
    caption: list[str] = field(default_factory=list)


_PRESENTATION: ContextVar[Presentation | None] = ContextVar("presentation", default=None)


@contextmanager
def presenting(presentation: Presentation) -> Iterator[Presentation]:
    """Figures annotated inside the block follow `presentation` (outside: drawn as by default,
    warnings on the image at the figure's own width)."""
    token = _PRESENTATION.set(presentation)
    try:
        yield presentation
    finally:
        _PRESENTATION.reset(token)


def presentation() -> Presentation:
    """The presentation in force (a default one outside `presenting`)."""
    return _PRESENTATION.get() or Presentation()


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return str(value)


def _values(df: pd.DataFrame, key: str) -> list[Any]:
    if key not in df:
        return []
    values = [v for v in df[key].drop_duplicates().tolist() if v is not None and v == v]
    return sorted(
        values,
        key=lambda v: (not isinstance(v, int | float), v if isinstance(v, int | float) else str(v)),
    )


def _joined(values: Sequence[Any]) -> str:
    return ", ".join(_fmt(v) for v in values)


def seeds_per_condition(df: pd.DataFrame) -> list[int]:
    """Number of runs (seeds) of each condition of the frame."""
    if df.empty:
        return []
    keys = condition_keys(df)
    runs = df.drop_duplicates("run")
    if not keys:
        return [len(runs)]
    counts = runs.astype({k: object for k in keys}).groupby(keys, dropna=False, observed=True)
    return [int(n) for n in counts["run"].nunique().tolist()]


def band_note(df: pd.DataFrame, band: str) -> str:
    """What a line and its band are, true to the seeds the frame holds."""
    counts = seeds_per_condition(df)
    if not counts or max(counts) <= 1:
        return "line: one run (seed) per condition; no seed band"
    note = BAND_CAPTIONS[band].replace("over seeds", f"over {_seed_count(counts)} seeds", 1)
    if min(counts) == 1 and band != "none":
        note += " (none for a single seed)"
    return note


def _seed_count(counts: Sequence[int]) -> str:
    return str(max(counts)) if min(counts) == max(counts) else f"{min(counts)}–{max(counts)}"


def provenance_line(df: pd.DataFrame, eta: bool = True) -> str:
    """One line: scale, steps, model and width, data, lr, η range (when probed), seeds."""
    parts = []
    if scales := _values(df, "scale"):
        parts.append(f"scale {_joined(scales)}")
    if steps := _values(df, "steps"):
        parts.append(f"{_joined(steps)} steps")
    models = _joined(_values(df, "model.name"))
    scaled = df[df["model.name"].astype(str) != "dln"] if "model.name" in df else df
    if widths := _values(scaled, "model.width"):  # the DLN has no width to scale
        models += f" (width {_joined(widths)})"
    if models:
        parts.append(models)
    if data := _values(df, "data.name"):
        parts.append(f"data {_joined(data)}")
    if lrs := _values(df, "optim.lr"):
        parts.append(f"lr {_joined(lrs)}")
    if eta and "metric" in df and (df["metric"] == "landscape/step_sizes").any():
        sizes = np.concatenate(
            [
                np.atleast_1d(np.asarray(v, dtype=float))
                for v in df.loc[df["metric"] == "landscape/step_sizes", "value"]
            ]
        )
        sizes = sizes[np.isfinite(sizes)]
        if sizes.size:
            parts.append(f"η {sizes.min():.3g}–{sizes.max():.3g}")
    if seeds := _values(df, "seed"):
        parts.append(f"seed{'s' if len(seeds) > 1 else ''} {_joined(seeds)}")
    return " · ".join(parts)


def _run_labels(df: pd.DataFrame, runs: Iterable[str]) -> list[str]:
    keys = swept_keys(df)
    first = df.drop_duplicates("run").set_index("run")
    labels = []
    for run in runs:
        row = first.loc[run]
        condition = {k: row[k] for k in keys if k != "seed"}
        if "norm.name" not in condition:
            condition = {"norm.name": row.get("norm.name"), **condition}
        label = condition_label(condition, list(condition))
        if df["seed"].nunique() > 1:
            label += f", seed {row['seed']}"
        labels.append(label)
    return labels


def _named(labels: Sequence[str]) -> str:
    shown = "; ".join(labels[:MAX_NAMED])
    return shown + (f" and {len(labels) - MAX_NAMED} more" if len(labels) > MAX_NAMED else "")


def _last(rows: pd.DataFrame, metric: str) -> pd.Series:
    part = rows[rows["metric"] == metric]
    if part.empty:
        return pd.Series(dtype=float)
    part = part.sort_values("step")
    return pd.to_numeric(part.groupby("run", observed=True)["value"].last(), errors="coerce")


def _first(rows: pd.DataFrame, metric: str) -> pd.Series:
    part = rows[rows["metric"] == metric].sort_values("step")
    if part.empty:
        return pd.Series(dtype=float)
    return pd.to_numeric(part.groupby("run", observed=True)["value"].first(), errors="coerce")


def data_warnings(df: pd.DataFrame, probe_metrics: Sequence[str] = ()) -> list[str]:
    """Short sentences about what makes the figure weak: few probe points, one seed, diverged
    or never-trained runs. `probe_metrics` are the metrics the figure draws over steps."""
    if df.empty:
        return []
    out = []
    fewest = None
    for metric in probe_metrics:
        rows = df[df["metric"] == metric]
        if rows.empty:
            continue
        n = int(rows.groupby("run", observed=True)["step"].nunique().min())
        if fewest is None or n < fewest[0]:
            fewest = (n, metric)
    if fewest is not None and fewest[0] < MIN_PROBE_POINTS:
        n, metric = fewest
        out.append(f"a run has only {n} probe point{'s' if n != 1 else ''} ({metric})")
    counts = seeds_per_condition(df)
    if counts and max(counts) == 1:
        out.append("a single seed per condition: differences may be noise")
    elif counts and min(counts) == 1:
        out.append("some conditions have a single seed")
    statuses = df.drop_duplicates("run").set_index("run")["status"].astype(str)
    diverged = [r for r, s in statuses.items() if s == "diverged"]
    for metric in ("test/loss", "train/loss"):
        last, first = _last(df, metric), _first(df, metric)
        for run in last.index:
            value = last[run]
            start = first.get(run, math.nan)
            blown = not np.isfinite(value) or (
                np.isfinite(start) and value > DIVERGED_LOSS_FACTOR * max(abs(start), 1e-12)
            )
            if blown and run not in diverged:
                diverged.append(run)
    if diverged:
        out.append(f"diverged: {_named(_run_labels(df, diverged))}")
    unfinished = [r for r, s in statuses.items() if s in ("running", "failed", "unknown")]
    if unfinished:
        states = sorted({statuses[r] for r in unfinished})
        out.append(f"not finished ({', '.join(states)}): {_named(_run_labels(df, unfinished))}")
    chance = _chance(df)
    if chance is not None:
        metric = "test/acc" if (df["metric"] == "test/acc").any() else "train/acc"
        last = _last(df, metric)
        stuck = [r for r in last.index if r not in diverged and last[r] < CHANCE_FACTOR * chance]
        if stuck:
            out.append(
                f"at chance ({metric} < {CHANCE_FACTOR * chance:.0%}): "
                f"{_named(_run_labels(df, stuck))}"
            )
    return out


def _chance(df: pd.DataFrame) -> float | None:
    names = _values(df, "data.name")
    classes = {NUM_CLASSES.get(str(n)) for n in names}
    if len(classes) != 1 or None in classes:
        return None
    return 1.0 / classes.pop()


def annotate(
    fig: plt.Figure,
    df: pd.DataFrame,
    probe_metrics: Sequence[str] = (),
    eta: bool = True,
    warn: bool = True,
    legend: Any = None,
) -> None:
    """Draw the warnings (red, above the panels), the legend (below them) and the provenance
    footer (at the bottom); under a presentation without warnings on the figure, the warnings
    go to its caption lines only.

    The figure grows by the height of these notes and the constrained layout keeps the panels
    out of the strips they use (its `rect`), so nothing collides or is cut off.
    """
    shown = presentation()
    fit_width(fig, shown.width_in)
    warnings = [f"Warning: {w}" for w in data_warnings(df, probe_metrics)] if warn else []
    footer = provenance_line(df, eta=eta)
    band = legend.get_title().get_text().replace("\n", " ") if legend is not None else ""
    shown.caption = [line for line in (band, footer, *warnings) if line]
    drawn = warnings if shown.warnings_on_figure else []
    warning_lines = _wrapped(fig, drawn, 7)
    footer_lines = _wrapped(fig, [footer] if footer else [], 6.5)
    legend_in = 0.0
    if legend is not None:
        extent = legend.get_window_extent(fig.canvas.get_renderer())
        legend_in = extent.height / fig.dpi + NOTE_PAD_IN
    top = (len(warning_lines) * WARNING_LINE_IN + NOTE_PAD_IN) if warning_lines else 0.0
    footer_in = (len(footer_lines) * FOOTER_LINE_IN + NOTE_PAD_IN) if footer_lines else 0.0
    bottom = footer_in + legend_in
    height = fig.get_figheight() + top + bottom
    fig.set_figheight(height)
    engine = fig.get_layout_engine()
    if engine is not None and hasattr(engine, "set"):
        engine.set(rect=(0.0, bottom / height, 1.0, 1.0 - (top + bottom) / height))
    if legend is not None:
        legend.set_bbox_to_anchor((0.5, bottom / height), transform=fig.transFigure)
    if warning_lines:
        fig.text(
            0.5,
            1.0 - NOTE_PAD_IN / 2 / height,
            "\n".join(warning_lines),
            color=WARNING_COLOR,
            fontsize=7,
            ha="center",
            va="top",
        ).set_gid("warnings")
    if footer_lines:
        fig.text(
            0.5,
            NOTE_PAD_IN / 2 / height,
            "\n".join(footer_lines),
            fontsize=6.5,
            color="0.3",
            ha="center",
            va="bottom",
        ).set_gid("footer")


def _wrapped(fig: plt.Figure, lines: Sequence[str], fontsize: float) -> list[str]:
    """The lines broken at spaces to fit the figure's width at `fontsize` points."""
    return [part for line in lines for part in wrap_to_width(fig, line, fontsize).split("\n")]
