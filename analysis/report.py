"""One self-contained HTML page for one or more sweeps.

Every figure the runs support (figures embedded as PNG; the others listed with the metric they
lack), final accuracies per configuration (mean ± sample std over the finished seeds), run
statuses (counts and one row per run) and the commands that produced the runs.

    python analysis/report.py multirun/fig1/<date> --out reports/fig1
"""

from __future__ import annotations

import argparse
import base64
import html
import importlib
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from _common import layers_for_report

from smoothbench.plotting import condition_keys, save_figure, set_style
from smoothbench.results import (
    STATES,
    MissingMetricError,
    RunRecord,
    read_runs,
    run_command,
    run_table,
    surface_frame,
    sweep_command,
    tidy_frame,
)

FIGURES = ("fig1", "fig2", "fig3", "fig4", "fig8", "fig10", "lp", "hessian", "surfaces")
PNG_DPI = 110


@dataclass
class FigureResult:
    name: str
    title: str
    png: bytes | None = None
    skipped: str | None = None


def figure_modules(names: Sequence[str] = FIGURES) -> list:
    """The figure scripts beside this file, imported as modules."""
    return [importlib.import_module(name) for name in names]


def build_figures(
    df: pd.DataFrame,
    surfaces: pd.DataFrame,
    band: str = "minmax",
    save_to: Path | None = None,
    names: Sequence[str] = FIGURES,
) -> list[FigureResult]:
    """Each figure with its defaults; a figure whose data is absent is skipped with the reason."""
    results = []
    for module in figure_modules(names):
        title = (module.__doc__ or module.NAME).strip().splitlines()[0]
        try:
            if module.NAME == "surfaces":
                fig = module.make_figure(surfaces)
            elif hasattr(module, "LAYER_METRIC"):  # a smaller net may lack the paper's layers
                layers = layers_for_report(df, module.LAYER_METRIC, module.LAYERS)
                fig = module.make_figure(df, layers=layers, band=band)
            else:
                fig = module.make_figure(df, band=band)
        except MissingMetricError as err:
            results.append(FigureResult(module.NAME, title, skipped=str(err)))
            continue
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=PNG_DPI)
        if save_to is not None:
            save_figure(fig, save_to, module.NAME)
        plt.close(fig)
        results.append(FigureResult(module.NAME, title, png=buffer.getvalue()))
    return results


def mean_std(values: pd.Series) -> str:
    """Mean ± sample std (ddof=1), "0.8312 ± 0.0045"; the mean alone for one value; "–" for none."""
    values = values.dropna()
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def accuracy_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (config minus seed): final accuracies over finished runs, and counts."""
    keys = condition_keys(table)
    groups = table.groupby(keys, dropna=False, sort=True) if keys else [((), table)]
    rows = []
    for values, part in groups:
        values = values if isinstance(values, tuple) else (values,)
        finished = part[part["status"] == "finished"]
        row = dict(zip(keys, values, strict=True))
        row["final train acc"] = mean_std(finished["final_train_acc"])
        row["final test acc"] = mean_std(finished["final_test_acc"])
        row["finished"] = len(finished)
        row["diverged"] = int((part["status"] == "diverged").sum())
        row["other"] = len(part) - row["finished"] - row["diverged"]
        rows.append(row)
    return pd.DataFrame(rows)


def status_counts(table: pd.DataFrame) -> pd.DataFrame:
    counts = table["status"].value_counts()
    order = [s for s in STATES if s in counts] + [s for s in counts.index if s not in STATES]
    return pd.DataFrame({"status": order, "runs": [int(counts[s]) for s in order]})


def per_run_table(table: pd.DataFrame, runs: Sequence[RunRecord]) -> pd.DataFrame:
    commands = {r.run: run_command(r) for r in runs}
    columns = ["run", "status", "final_step", "reason"] + condition_keys(table) + ["seed"]
    out = table[list(dict.fromkeys(columns))].copy()
    out["command"] = out["run"].map(commands)
    return out


def sweep_commands(runs: Sequence[RunRecord]) -> list[tuple[str, list[str]]]:
    """(sweep dir, commands) per parent dir: one --multirun line for a full grid, else per run."""
    by_parent: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_parent.setdefault(str(Path(run.run_dir).parent), []).append(run)
    out = []
    for parent, group in by_parent.items():
        grid = sweep_command(group) if len(group) > 1 else None
        commands = [grid] if grid else [c for c in map(run_command, group) if c]
        out.append((parent, commands))
    return out


def _table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, na_rep="", border=0, classes="table")


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table.table { border-collapse: collapse; font-size: 0.85em; }
table.table th, table.table td { padding: 2px 8px; border-bottom: 1px solid #eee; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; }
figcaption { font-size: 0.9em; color: #444; }
"""


def render_html(
    sources: Sequence[str],
    figures: Sequence[FigureResult],
    accuracy: pd.DataFrame,
    counts: pd.DataFrame,
    per_run: pd.DataFrame,
    commands: Sequence[tuple[str, list[str]]],
) -> str:
    """The page: header, accuracies, figures, statuses, commands."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>smoothbench report</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>smoothbench report</h1>",
        "<p>Runs from: "
        + ", ".join(f"<code>{e(s)}</code>" for s in sources)
        + ". Written "
        + e(datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
        + ".</p>",
        "<h2>Final accuracy per configuration</h2>",
        "<p>Mean ± sample standard deviation (ddof = 1) over the finished runs (seeds) of each "
        "configuration: the last recorded training-batch and test accuracy. Diverged and other "
        "runs are counted, not averaged.</p>",
        _table_html(accuracy),
        "<h2>Figures</h2>",
    ]
    for figure in figures:
        if figure.png is None:
            continue
        data = base64.b64encode(figure.png).decode("ascii")
        parts.append(
            f'<figure id="{e(figure.name)}"><img alt="{e(figure.name)}" '
            f'src="data:image/png;base64,{data}"><figcaption><b>{e(figure.name)}</b>: '
            f"{e(figure.title)} (<code>python analysis/{e(figure.name)}.py</code>)"
            "</figcaption></figure>"
        )
    skipped = [f for f in figures if f.png is None]
    if skipped:
        parts.append("<p>Not shown (the runs lack their data):</p><ul>")
        parts += [f"<li><b>{e(f.name)}</b>: {e(f.skipped or '')}</li>" for f in skipped]
        parts.append("</ul>")
    parts += [
        "<h2>Run statuses</h2>",
        _table_html(counts),
        "<h3>Every run</h3>",
        _table_html(per_run),
        "<h2>Commands that produced the runs</h2>",
    ]
    for parent, lines in commands:
        parts.append(f"<h3><code>{e(parent)}</code></h3>")
        parts.append("<pre>" + e("\n".join(lines) or "(no .hydra/ files)") + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    paths: Sequence[str],
    out: str | Path,
    band: str = "minmax",
    status: Sequence[str] | None = None,
    save_figures: bool = False,
    figures: Sequence[str] = FIGURES,
) -> Path:
    """Write `<out>/report.html` for the runs under `paths` (only the named figures); returns it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = sorted({p for m in figure_modules(figures) for p in getattr(m, "METRICS", [])})
    runs = read_runs(paths, status=status)
    df = tidy_frame(runs, metrics=metrics)
    table = run_table(runs)
    results = build_figures(
        df, surface_frame(runs), band=band, save_to=out if save_figures else None, names=figures
    )
    page = render_html(
        [str(p) for p in paths],
        results,
        accuracy_table(table),
        status_counts(table),
        per_run_table(table, runs),
        sweep_commands(runs),
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", help="sweep dirs, run dirs or glob patterns")
    parser.add_argument("--out", default="report", help="output dir (default: report)")
    parser.add_argument(
        "--band",
        choices=("minmax", "std"),
        default="minmax",
        help="band around the mean over seeds (default: minmax)",
    )
    parser.add_argument(
        "--status", nargs="+", choices=STATES, help="keep only runs in these states"
    )
    parser.add_argument(
        "--figures",
        nargs="+",
        choices=FIGURES,
        default=list(FIGURES),
        help="figures to try (default: all)",
    )
    parser.add_argument(
        "--save-figures",
        action="store_true",
        help="also write every figure as PDF and PNG beside the page",
    )
    args = parser.parse_args(argv)
    set_style()
    try:
        path = write_report(
            args.paths, args.out, args.band, args.status, args.save_figures, args.figures
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"report: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
