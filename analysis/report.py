"""One self-contained HTML page for the sweeps of a reproduction.

It opens with a provenance banner (scale, steps, width, data, seeds, git commit, package
versions, device, wall times from timings.tsv, W&B links), then the claims table when the runs
have one, then every figure of the figure table (smoothbench.paper), each drawn only from
the runs of its own preset; a figure whose runs lack what it compares is listed as not
drawable, with the reason. Then final accuracies per preset (the swept keys and the results),
run statuses and the commands that produced the runs.

    python analysis/report.py multirun/reproduce-cpu/fig1 multirun/reproduce-cpu/fig2 --out report
"""

from __future__ import annotations

import argparse
import base64
import html
import importlib
import io
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from _common import make_parser, resolve_layers
from _notes import HEALTH_METRICS
from figures import FIGURES, FigureSpec, by_name, unmet_requirements

from smoothbench.plotting import SAVE_OPTIONS, SEED_BANDS, save_figure, set_style, swept_keys
from smoothbench.results import (
    STATES,
    MissingMetricError,
    RunRecord,
    damaged_runs,
    read_runs,
    run_command,
    run_table,
    surface_frame,
    sweep_command,
    tidy_frame,
)

PNG_DPI = 110
PAGE_WIDTH_PX = 1400  # the page must fit a window this wide: nothing cropped, no overflow
CONTENT_WIDTH_PX = 1240  # body max-width below
NO_PRESET = "(no preset)"
VERSIONED = ("smoothbench", "torch", "numpy", "pandas", "matplotlib", "hydra-core", "wandb")


@dataclass
class FigureResult:
    """A figure of the page: drawn (png) or not drawable (reasons)."""

    name: str
    preset: str
    title: str
    script: str
    args: tuple[str, ...] = ()  # the script's arguments for this figure (its table row's)
    png: bytes | None = None
    reasons: list[str] = field(default_factory=list)
    claims: tuple[str, ...] = ()  # the ids of the paper's claims it backs (its table row's)


# ---------------------------------------------------------------------------------------------
# figures


def figure_module(script: str) -> Any:
    """A figure script beside this file, imported as a module."""
    return importlib.import_module(script)


def figure_title(module: Any) -> str:
    """The first paragraph of the script's docstring: whole sentences, never cut."""
    doc = (module.__doc__ or module.NAME).strip()
    return " ".join(doc.split("\n\n")[0].split())


def script_args(module: Any, spec_args: Sequence[str], band: str) -> argparse.Namespace:
    """The script's own command-line defaults, with the table's arguments for this figure."""
    parser = make_parser(module.NAME, None)
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    return parser.parse_args(["--band", band, *spec_args])


def draw(spec: FigureSpec, runs: Sequence[RunRecord], band: str) -> plt.Figure:
    """The figure of one spec from its preset's runs (MissingMetricError when it cannot)."""
    module = figure_module(spec.script)
    args = script_args(module, spec.args, band)
    if spec.script == "surfaces":
        return module.build(surface_frame(runs), args)
    metrics = list(getattr(module, "METRICS", [])) + list(HEALTH_METRICS)
    df = tidy_frame(runs, metrics=metrics)
    if df.empty:
        raise MissingMetricError("missing metrics: the runs recorded nothing yet")
    resolve_layers(args, df)
    return module.build(df, args)


def requirement_values(runs: Sequence[RunRecord]) -> dict[str, list[Any]]:
    """Per config key, the values of the runs that recorded something."""
    values: dict[str, list[Any]] = {}
    for run in runs:
        if not run.records:
            continue
        for key, value in run.config.items():
            values.setdefault(key, []).append(value)
    return values


def build_figures(
    groups: dict[str, list[RunRecord]],
    specs: Sequence[FigureSpec],
    band: str = "minmax",
    save_to: Path | None = None,
) -> list[FigureResult]:
    """Each spec whose preset has runs: drawn, or not drawable with the reasons. Runs without a
    preset (ad hoc sweeps) get every drawing of the table (a script with its arguments) that
    can draw them, named by the first figure drawn so."""
    results = []
    for spec in specs:
        runs = groups.get(spec.preset)
        if not runs:
            continue
        results.append(_one_figure(spec, runs, band, save_to))
    adhoc = groups.get(NO_PRESET)
    if adhoc:
        drawings: dict[tuple[str, tuple[str, ...]], FigureSpec] = {}
        for spec in specs:
            drawings.setdefault((spec.script, spec.args), spec)
        for spec in drawings.values():
            # the table's requirements are about its presets' sweeps, not about ad hoc runs
            spec = replace(spec, preset=NO_PRESET, requires=())
            result = _one_figure(spec, adhoc, band, save_to)
            if result.png is not None:
                results.append(result)
    return results


def _one_figure(
    spec: FigureSpec, runs: Sequence[RunRecord], band: str, save_to: Path | None
) -> FigureResult:
    module = figure_module(spec.script)
    result = FigureResult(
        spec.name, spec.preset, figure_title(module), spec.script, spec.args, claims=spec.claims
    )
    result.reasons = [r for r in unmet_requirements(spec, requirement_values(runs)) if r]
    if result.reasons:
        return result
    try:
        fig = draw(spec, runs, band)
    except MissingMetricError as err:
        result.reasons = [str(err)]
        return result
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI, **SAVE_OPTIONS)
    if save_to is not None:
        save_figure(fig, save_to, spec.name)
    plt.close(fig)
    result.png = buffer.getvalue()
    return result


# ---------------------------------------------------------------------------------------------
# tables


def preset_of(run: RunRecord) -> str:
    return str(run.config.get("experiment") or NO_PRESET)


def group_runs(runs: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """Runs per preset (config `experiment`), in the order first seen."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(preset_of(run), []).append(run)
    return groups


def mean_std(values: pd.Series) -> str:
    """Mean ± sample std (ddof=1), "0.8312 ± 0.0045"; the mean alone for one value; "–" for none."""
    values = values.dropna()
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def table_keys(table: pd.DataFrame) -> list[str]:
    """The swept keys of a run table (config keys that differ between its runs), seed aside."""
    return [k for k in swept_keys(table) if k != "seed"]


def accuracy_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (swept keys, seeds pooled): final accuracies over finished runs, counts."""
    keys = table_keys(table)
    frame = table.astype({k: object for k in keys})
    groups = frame.groupby(keys, dropna=False, sort=True) if keys else [((), frame)]
    rows = []
    for values, part in groups:
        values = values if isinstance(values, tuple) else (values,)
        finished = part[part["status"] == "finished"]
        row = {short_key(k): v for k, v in zip(keys, values, strict=True)}
        row["final train acc"] = mean_std(finished["final_train_acc"])
        row["final test acc"] = mean_std(finished["final_test_acc"])
        row["final test loss"] = mean_std(finished["final_test_loss"])
        row["seeds"] = part["seed"].nunique()
        row["finished"] = len(finished)
        row["diverged"] = int((part["status"] == "diverged").sum())
        row["other"] = len(part) - row["finished"] - row["diverged"]
        rows.append(row)
    return pd.DataFrame(rows)


def short_key(key: str) -> str:
    """ "norm.name" -> "norm", "optim.lr" -> "lr", "model.shortcut" -> "shortcut"."""
    return {"norm.name": "norm", "model.name": "model"}.get(key, key.split(".")[-1])


def status_counts(table: pd.DataFrame) -> pd.DataFrame:
    counts = table["status"].value_counts()
    order = [s for s in STATES if s in counts] + [s for s in counts.index if s not in STATES]
    return pd.DataFrame({"status": order, "runs": [int(counts[s]) for s in order]})


def per_run_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run: preset, run, status, final step, reason and its swept values."""
    keys = table_keys(table)
    out = pd.DataFrame(
        {
            "run": table["run"],
            "status": table["status"],
            "final step": table["final_step"],
            "condition": [
                ", ".join(f"{short_key(k)}={_fmt(row[k])}" for k in keys)
                for _, row in table.iterrows()
            ],
            "seed": table["seed"],
            "reason": table["reason"].map(reason_words),
        }
    )
    return out


def reason_words(reason: Any) -> str:
    """A run's reason as shown: empty for none (never "None" or "nan")."""
    if reason is None or (isinstance(reason, float) and reason != reason):
        return ""
    text = str(reason).strip()
    return "" if text in ("None", "nan", "null") else text


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def sweep_commands(runs: Sequence[RunRecord]) -> list[tuple[str, list[str]]]:
    """(sweep dir, commands) per parent dir: one --multirun line for a full grid, else per run."""
    by_parent: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_parent.setdefault(str(Path(run.run_dir).parent), []).append(run)
    out = []
    for parent, group in by_parent.items():
        grid = sweep_command(group) if len(group) > 1 else None
        commands = [grid] if grid else [c for c in map(run_command, group) if c]
        out.append((parent, [shown_command(c) for c in commands]))
    return out


# overrides of Hydra's own keys (output dirs, the sweeper's batching): plumbing of the launch,
# not part of what was trained; the sweep dir heads the commands already
INTERNAL_OVERRIDE = re.compile(r"^[+~]{0,2}hydra\.[\w.]+=")


def shown_command(command: str) -> str:
    """The command without internal `hydra.*=` overrides (the words kept as they were)."""
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: shown as recorded
        return command
    kept = [w for w in words if not INTERNAL_OVERRIDE.match(w)]
    if len(kept) == len(words):
        return command
    return shlex.join(kept)


# ---------------------------------------------------------------------------------------------
# provenance


def _distinct(runs: Sequence[RunRecord], key: str) -> list[Any]:
    values = [r.config.get(key) for r in runs if r.config.get(key) is not None]
    return sorted(
        set(values),
        key=lambda v: (
            not isinstance(v, int | float),
            str(v) if not isinstance(v, int | float) else v,
        ),
    )


def _config_value(runs: Sequence[RunRecord], pattern: str) -> list[str]:
    """Distinct values of config keys matching a regex (e.g. a recorded git commit)."""
    found = []
    for run in runs:
        for key, value in run.config.items():
            if re.search(pattern, key) and value not in (None, "") and str(value) not in found:
                found.append(str(value))
    return found


def _provenance_values(runs: Sequence[RunRecord], words: Callable[[dict], str]) -> list[str]:
    """Distinct words of the runs' provenance.json records (runs without one are skipped)."""
    found: list[str] = []
    for run in runs:
        record = getattr(run, "provenance", None)
        text = words(record) if isinstance(record, dict) else ""
        if text and text not in found:
            found.append(text)
    return found


def _commit_words(record: dict) -> str:
    commit = record.get("git_commit")
    if not commit:
        return ""
    return str(commit)[:12] + (" (with uncommitted changes)" if record.get("git_dirty") else "")


def _versions_words(record: dict) -> str:
    versions = record.get("versions") or {}
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def report_commit() -> str | None:
    """The git commit of the checkout this report is written from (None outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent,
    ).stdout.strip()
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def find_timings(paths: Sequence[str], runs: Sequence[RunRecord]) -> list[Path]:
    """timings.tsv files (written by scripts/reproduce.sh) in or above the loaded sweep dirs."""
    candidates: list[Path] = []
    for path in [Path(p) for p in paths] + [Path(r.run_dir).parent for r in runs]:
        for where in (path, path.parent):
            tsv = where / "timings.tsv"
            if tsv.is_file() and tsv.resolve() not in candidates:
                candidates.append(tsv.resolve())
    return candidates


def read_timings(paths: Sequence[Path]) -> pd.DataFrame:
    """Wall times: one row per step of reproduce.sh (its last time when it ran more than once)."""
    frames = []
    for path in paths:
        try:
            frame = pd.read_csv(path, sep="\t")
        except (OSError, ValueError, pd.errors.ParserError):
            continue
        if {"step", "seconds"} <= set(frame.columns):
            frames.append(frame[["step", "seconds"]])
    if not frames:
        return pd.DataFrame(columns=["step", "seconds"])
    return pd.concat(frames).drop_duplicates("step", keep="last").reset_index(drop=True)


def wandb_lines(runs: Sequence[RunRecord]) -> list[str]:
    """W&B links (online runs: the group page) and `wandb sync` commands (offline runs)."""
    lines = []
    for run in runs:
        entity, project = run.config.get("logger.entity"), run.config.get("logger.project")
        group = run.config.get("logger.group")
        if run.config.get("logger.name") == "wandb" and entity and project:
            url = f"https://wandb.ai/{entity}/{project}" + (f"/groups/{group}" if group else "")
            if url not in lines:
                lines.append(url)
        offline = sorted(Path(run.run_dir).glob("wandb/offline-run-*"))
        if offline:
            lines.append(f"wandb sync {offline[-1]}")
    return lines


def device_of(runs: Sequence[RunRecord]) -> list[str]:
    """Devices the runs used: from their train.log when it says, else the config's `device`."""
    found = []
    for run in runs:
        device = None
        log = Path(run.run_dir) / "train.log"
        if log.is_file():
            match = re.search(r"\bdevice[:= ]+([\w:]+)", log.read_text(errors="replace"))
            device = match.group(1) if match else None
        device = device or run.config.get("device")
        if device is not None and str(device) not in found:
            found.append(str(device))
    return found


def banner_rows(paths: Sequence[str], runs: Sequence[RunRecord]) -> list[tuple[str, str]]:
    """(label, HTML) rows of the provenance banner."""
    e = html.escape
    joined = lambda values: ", ".join(_fmt(v) for v in values) or "unrecorded"  # noqa: E731
    models = []
    for run in runs:
        text = str(run.config.get("model.name"))
        if run.config.get("model.width") is not None and text != "dln":  # no width to scale
            text += f" (width {_fmt(run.config['model.width'])})"
        if text not in models:
            models.append(text)
    rows = [
        ("scale", e(joined(_distinct(runs, "scale")))),
        ("steps", e(joined(_distinct(runs, "steps")))),
        ("models", e(", ".join(models))),
        ("data", e(joined(_distinct(runs, "data.name")))),
        ("seeds", e(joined(_distinct(runs, "seed")))),
        ("presets", e(", ".join(group_runs(runs)))),
        ("runs", f"{len(runs)} in {len({str(Path(r.run_dir).parent) for r in runs})} sweep dirs"),
    ]
    commits = _provenance_values(runs, _commit_words) or _config_value(
        runs, r"(^|\.)(git_?commit|commit)$"
    )
    if commits:
        rows.append(("git commit (runs)", e(", ".join(commits))))
    else:
        here = report_commit()
        rows.append(
            ("git commit", e(f"{here or 'unknown'} (of this report; the runs record none)"))
        )
    versions = _provenance_values(runs, _versions_words) or _config_value(
        runs, r"(^|\.)versions?\."
    )
    shown = versions or [f"{k} {v}" for k, v in package_versions().items()]
    label = "packages (runs)" if versions else "packages (this report)"
    rows.append((label, e(", ".join(shown))))
    threads = _provenance_values(runs, lambda p: str(p.get("threads", "")))
    if threads:
        rows.append(("torch threads (runs)", e(", ".join(threads))))
    rows.append(("device", e(joined(device_of(runs)))))
    timings = read_timings(find_timings(paths, runs))
    if not timings.empty:
        seconds = pd.to_numeric(timings["seconds"], errors="coerce")
        parts = timings["step"].astype(str).str.split(":").str[0]
        totals = seconds.groupby(parts, sort=False).sum()
        text = ", ".join(f"{kind} {_duration(s)}" for kind, s in totals.items())
        rows.append(("wall time", e(f"{_duration(seconds.sum())} in all ({text})")))
    links = wandb_lines(runs)
    if links:
        items = [
            f'<a href="{e(x)}">{e(x)}</a>' if x.startswith("https://") else f"<code>{e(x)}</code>"
            for x in links[:6]
        ]
        more = f" and {len(links) - 6} more" if len(links) > 6 else ""
        rows.append(("W&B", "<br>".join(items) + more))
    return rows


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------------------------------------
# claims


def find_claims(paths: Sequence[str], out: Path) -> Path | None:
    """claims.json beside the report or in or above a loaded sweep dir (the first found)."""
    for where in [out] + [Path(p) for p in paths] + [Path(p).parent for p in paths]:
        if (where / "claims.json").is_file():
            return where / "claims.json"
    return None


@dataclass
class ClaimVerdicts:
    """The claims' verdicts on these runs: claims.json entries (every scale's), the cpu/paper
    agreement rows and a note on where they come from; `entries` empty when none."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    agreement: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


def load_claims(path: Path | None, paths: Sequence[str]) -> ClaimVerdicts:
    """From claims.json (written by `smoothbench-claims`) when one is found, else evaluated
    here with the claims registry."""
    try:
        from smoothbench import claims
        from smoothbench.claims.render import verdict_dicts
    except ImportError:
        return ClaimVerdicts()
    if path is not None:
        entries = claims.read_json(path)
        return ClaimVerdicts(entries, claims.read_agreement(path), f"from {path}")
    try:
        verdicts = claims.evaluate_paths(list(paths))  # per scale, never pooled
    except (OSError, ValueError, KeyError) as err:
        return ClaimVerdicts(note=f"claims not evaluated: {err}")
    entries = verdict_dicts(verdicts)
    note = "evaluated on these runs (smoothbench-claims writes the same table to claims.json)"
    return ClaimVerdicts(entries, claims.agreement_rows(claims.entries_by_scale(verdicts)), note)


def claims_html(verdicts: ClaimVerdicts, figure_ids: Sequence[str]) -> tuple[str | None, str]:
    """(the claims table as an HTML block, or None; a note on where it comes from). Each row
    links to its figure on this page."""
    if not verdicts.entries:
        return None, verdicts.note
    from smoothbench import claims

    links = {name: f"#{name}" for name in figure_ids}
    # the verdicts first (one block per scale), then whether cpu and paper scale agree
    table = claims.to_html(verdicts.entries, figure_links=links)
    agreement = claims.agreement_html(verdicts.agreement, links)
    return f"{table}\n<h3>cpu and paper scale</h3>\n{agreement}", verdicts.note


# how a figure's caption introduces each kind of claim (smoothbench.claims.registry)
CLAIM_PREFIX = {
    "paper": "The paper",
    "sensitivity": "The paper, at another setting",
    "check": "Check of the measurement",
}


def claim_caption(claim_ids: Sequence[str], entries: Sequence[dict[str, Any]]) -> str:
    """Under a figure, per claim it backs: "The paper: <statement>" and beside it the verdict
    measured on these runs at each scale ("not evaluated" without one); HTML."""
    try:
        from smoothbench.claims import CLAIMS_BY_ID
    except ImportError:
        return ""
    e = html.escape
    items = []
    for claim_id in claim_ids:
        claim = CLAIMS_BY_ID.get(claim_id)
        if claim is None:
            continue
        found = [x for x in entries if x.get("id") == claim_id]
        verdicts = [_measured(x) for x in found] or ['<span class="measured">not evaluated</span>']
        items.append(
            f"<li>{CLAIM_PREFIX.get(claim.kind, 'The paper')}: {e(claim.statement)} "
            f"({e(claim.source)}) — " + "; ".join(verdicts) + "</li>"
        )
    return f'<ul class="claimed">{"".join(items)}</ul>' if items else ""


def _measured(entry: dict[str, Any]) -> str:
    """ "measured (cpu): holds, 0.217 [0.195, 0.238]" as HTML, the verdict styled by its kind."""
    verdict = str(entry.get("verdict") or "not run")
    scale = f" ({entry['scale']})" if entry.get("scale") else ""
    interval = f", {entry['interval']}" if entry.get("interval") else ""
    css = verdict.replace(" ", "-")
    return (
        f'<span class="measured {html.escape(css)}">measured{html.escape(scale)}: '
        f"<b>{html.escape(verdict)}</b>{html.escape(interval)}</span>"
    )


def claims_css() -> str:
    try:
        from smoothbench.claims import CLAIMS_CSS
    except ImportError:
        return ""
    return CLAIMS_CSS


# ---------------------------------------------------------------------------------------------
# the page


def _table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, na_rep="", border=0, classes="table")


STYLE = f"""
body {{ font-family: system-ui, sans-serif; max-width: {CONTENT_WIDTH_PX}px; margin: 2em auto;
  padding: 0 1em; color: #222; hyphens: manual; }}
h1 {{ font-size: 1.5em; }} h2 {{ margin-top: 2em; border-bottom: 1px solid #ccc; }}
table.table {{ border-collapse: collapse; font-size: 0.85em; max-width: 100%; }}
table.table th, table.table td {{ padding: 2px 8px; border-bottom: 1px solid #eee;
  text-align: left; vertical-align: top; }}
table.banner {{ border-collapse: collapse; font-size: 0.9em; background: #f4f7fb; width: 100%;
  table-layout: fixed; }}
table.banner th {{ text-align: left; padding: 2px 10px; width: 11em; vertical-align: top; }}
table.banner td {{ padding: 2px 10px; }}
code, a {{ overflow-wrap: break-word; }}
pre {{ background: #f6f6f6; padding: 0.6em; font-size: 0.85em; white-space: pre-wrap;
  overflow-wrap: break-word; }}
figure {{ margin: 1.5em 0; }} figure img {{ max-width: 100%; height: auto; }}
figcaption {{ font-size: 0.9em; color: #444; }}
ul.claimed {{ margin: 0.3em 0 0 0; padding-left: 1.2em; }}
ul.claimed li {{ margin: 0.15em 0; }}
.measured {{ padding: 0 0.3em; border-radius: 3px; background: #e2e3e5; white-space: nowrap; }}
.measured.holds {{ background: #d4edda; }} .measured.fails {{ background: #f8d7da; }}
.measured.inconclusive {{ background: #fff3cd; }}
.notdrawable {{ border-left: 3px solid #b00000; padding: 0.3em 0.8em; background: #fbf3f3; }}
"""


def render_html(
    sources: Sequence[str],
    banner: Sequence[tuple[str, str]],
    claims: tuple[str | None, str],
    figures: Sequence[FigureResult],
    accuracy: Sequence[tuple[str, pd.DataFrame]],
    counts: pd.DataFrame,
    per_run: pd.DataFrame,
    commands: Sequence[tuple[str, list[str]]],
    missing_presets: Sequence[str] = (),
    verdicts: Sequence[dict[str, Any]] = (),
) -> str:
    """The page: banner, claims, figures (each captioned with the paper's claims it backs and
    their `verdicts` here), accuracies, statuses, commands."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>smoothbench report</title><style>{STYLE}{claims_css()}</style></head><body>",
        "<h1>smoothbench report</h1>",
        '<table class="banner" id="provenance">',
    ]
    parts += [f"<tr><th>{e(label)}</th><td>{value}</td></tr>" for label, value in banner]
    parts += [
        "</table>",
        "<p>Runs from: "
        + ", ".join(f"<code>{e(s)}</code>" for s in sources)
        + ". Written "
        + e(datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
        + ".</p>",
    ]
    table, note = claims
    if table:
        parts += ['<h2 id="claims">Claims</h2>', f"<p>The paper's findings, {e(note)}.</p>", table]
    elif note:
        parts.append(f"<p>{e(note)}</p>")
    parts.append("<h2>Figures</h2>")
    for figure in figures:
        where = f"preset <code>{e(figure.preset)}</code>"
        command = e(" ".join(["python", f"analysis/{figure.script}.py", *figure.args]))
        if figure.png is None:
            parts.append(
                f'<div class="notdrawable" id="{e(figure.name)}"><b>{e(figure.name)}</b> '
                f"({where}) is not drawable from these runs: "
                + "; ".join(e(r) for r in figure.reasons)
                + "</div>"
            )
            continue
        data = base64.b64encode(figure.png).decode("ascii")
        parts.append(
            f'<figure id="{e(figure.name)}"><img alt="{e(figure.name)}" '
            f'src="data:image/png;base64,{data}"><figcaption><b>{e(figure.name)}</b> '
            f"({where}): {e(figure.title)} (<code>{command}</code>)"
            f"{claim_caption(figure.claims, verdicts)}</figcaption></figure>"
        )
    if missing_presets:
        parts.append(
            "<p>Figures of presets not among these runs: "
            + ", ".join(f"<code>{e(p)}</code>" for p in missing_presets)
            + ".</p>"
        )
    parts += [
        "<h2>Final accuracy per configuration</h2>",
        "<p>Per preset, the swept keys and mean ± sample standard deviation (ddof = 1) over the "
        "finished runs (seeds) of each configuration: the last recorded training-batch and test "
        "accuracy and test loss. Diverged and other runs are counted, not averaged.</p>",
    ]
    for preset, table in accuracy:
        parts += [f"<h3>{e(preset)}</h3>", _table_html(table)]
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
    figures: Sequence[str] | None = None,
) -> Path:
    """Write `<out>/report.html` for the runs under `paths` (only the named figures); returns it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = by_name(figures)
    runs = read_runs(paths, status=status)
    groups = group_runs(runs)
    results = build_figures(groups, specs, band=band, save_to=out if save_figures else None)
    accuracy = []
    for preset, group in groups.items():
        accuracy.append((preset, accuracy_table(run_table(group))))
    per_run = pd.concat([per_run_table(run_table(g)) for g in groups.values()], ignore_index=True)
    missing = sorted({s.preset for s in specs if s.preset not in groups})
    verdicts = load_claims(find_claims(paths, out), paths)
    page = render_html(
        sorted({str(Path(r.run_dir).parent) for r in runs}),
        banner_rows(paths, runs),
        claims_html(verdicts, [r.name for r in results]),
        results,
        accuracy,
        status_counts(run_table(runs)),
        per_run,
        sweep_commands(runs),
        missing,
        verdicts.entries,
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
        choices=SEED_BANDS,
        default="minmax",
        help="band around the mean over seeds (default: minmax; see the figure scripts' --band)",
    )
    parser.add_argument(
        "--status", nargs="+", choices=STATES, help="keep only runs in these states"
    )
    parser.add_argument(
        "--figures",
        nargs="+",
        choices=[f.name for f in FIGURES],
        default=None,
        help="figures to try (default: every figure of the table, analysis/figures.py)",
    )
    parser.add_argument(
        "--save-figures",
        action="store_true",
        help="also write every figure as PDF and PNG beside the page",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 on a damaged run dir (default: skip it with a line naming the damage)",
    )
    args = parser.parse_args(argv)
    set_style()
    try:
        with damaged_runs(strict=args.strict):
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
