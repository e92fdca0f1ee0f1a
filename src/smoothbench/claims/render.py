"""The claims table as text (terminal), HTML (the report) and Markdown (docs/claims.md).

`text_table` and `to_html` take the verdicts of `smoothbench.claims.evaluate`, or the entries
of a claims.json (`read_json`), so a report can be drawn without re-reading the runs.

    smoothbench-claims --markdown > docs/claims.md    # regenerate the claims docs
"""

from __future__ import annotations

import html
import json
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from smoothbench.claims.registry import CLAIMS, Claim
from smoothbench.claims.statistics import Verdict

COLUMNS = ("claim", "paper's direction", "effect per seed", "mean [CI]", "verdict", "why")
WIDTHS = (30, 26, 34, 26, 12, 60)
VERDICT_CLASSES = {
    "holds": "holds",
    "fails": "fails",
    "inconclusive": "inconclusive",
    "not run": "not-run",
}


def verdict_dicts(verdicts: Sequence[Verdict | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """claims.json entries of verdicts (dicts pass through)."""
    return [v.to_dict() if isinstance(v, Verdict) else dict(v) for v in verdicts]


def _num(value: Any) -> str:
    return "nan" if value is None else f"{value:.3g}"


def effects_words(entry: Mapping[str, Any]) -> str:
    """'s0: 0.41, s1: 0.38' from a claims.json entry; '' without effects."""
    return ", ".join(f"s{e['seed']}: {_num(e['effect'])}" for e in entry.get("effects") or [])


def interval_words(entry: Mapping[str, Any]) -> str:
    """The mean with its interval, '1 seed: no interval', or ''."""
    return entry.get("interval") or ""


def summary_words(entries: Sequence[Mapping[str, Any]]) -> str:
    """'12 holds, 3 fails, 9 inconclusive, 8 not run'."""
    counts = {v: 0 for v in VERDICT_CLASSES}
    for entry in entries:
        counts[entry["verdict"]] = counts.get(entry["verdict"], 0) + 1
    return ", ".join(f"{n} {v}" for v, n in counts.items())


def text_table(verdicts: Sequence[Verdict | Mapping[str, Any]]) -> str:
    """The claims table for a terminal: fixed columns, long cells wrapped."""
    entries = verdict_dicts(verdicts)
    rows = [COLUMNS] + [
        (
            e["id"],
            e["direction"],
            effects_words(e),
            interval_words(e),
            e["verdict"],
            e["why"],
        )
        for e in entries
    ]
    lines = []
    for index, row in enumerate(rows):
        cells = [textwrap.wrap(str(c), w) or [""] for c, w in zip(row, WIDTHS, strict=True)]
        for k in range(max(len(c) for c in cells)):
            parts = [
                (c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, WIDTHS, strict=True)
            ]
            lines.append(" ".join(parts).rstrip())
        if index == 0:
            lines.append(" ".join("-" * w for w in WIDTHS))
    lines.append("")
    lines.append(summary_words(entries))
    return "\n".join(lines) + "\n"


def to_html(
    verdicts: Sequence[Verdict | Mapping[str, Any]],
    figure_links: Mapping[str, str] | None = None,
) -> str:
    """The claims table as an HTML fragment (a <table class="claims">) for the report page.

    Each row's claim links to its figure: `figure_links` maps a claim id, or a figure name
    (claim.figure, e.g. "fig4"), to a URL or anchor; ids win. Rows carry the class of their
    verdict (holds, fails, inconclusive, not-run) for styling; `CLAIMS_CSS` is a default style.
    """
    links = dict(figure_links or {})
    entries = verdict_dicts(verdicts)
    out = ['<table class="claims">', "<thead><tr>"]
    out += [f"<th>{html.escape(c)}</th>" for c in COLUMNS]
    out.append("</tr></thead>")
    out.append("<tbody>")
    for e in entries:
        link = links.get(e["id"]) or links.get(e["figure"])
        name = html.escape(e["id"])
        if link:
            name = f'<a href="{html.escape(link, quote=True)}">{name}</a>'
        title = html.escape(f"{e['statement']} ({e['source']})", quote=True)
        cls = VERDICT_CLASSES.get(e["verdict"], "")
        cells = [
            f'<td title="{title}">{name}</td>',
            f"<td>{html.escape(e['direction'])}</td>",
            f"<td>{html.escape(effects_words(e))}</td>",
            f"<td>{html.escape(interval_words(e))}</td>",
            f'<td class="verdict">{html.escape(e["verdict"])}</td>',
            f"<td>{html.escape(e['why'])}</td>",
        ]
        out.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    out.append(f'<p class="claims-summary">{html.escape(summary_words(entries))}</p>')
    return "\n".join(out)


CLAIMS_CSS = """
table.claims { border-collapse: collapse; font-size: 0.85em; }
table.claims th, table.claims td { border: 1px solid #ccc; padding: 2px 6px; text-align: left;
  vertical-align: top; }
table.claims tr.holds td.verdict { background: #d4edda; }
table.claims tr.fails td.verdict { background: #f8d7da; }
table.claims tr.inconclusive td.verdict { background: #fff3cd; }
table.claims tr.not-run td.verdict { background: #e2e3e5; }
"""


def write_json(
    verdicts: Sequence[Verdict | Mapping[str, Any]], path: str | os.PathLike, **extra: Any
) -> Path:
    """claims.json: {"claims": [entry, ...], "summary": ..., **extra}; returns the path."""
    path = Path(path)
    entries = verdict_dicts(verdicts)
    payload = {"summary": summary_words(entries), **extra, "claims": entries}
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return path


def read_json(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The claim entries of a claims.json (for `text_table` / `to_html`)."""
    return list(json.loads(Path(path).read_text())["claims"])


# ---------------------------------------------------------------------------------------------
# docs


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def claims_markdown(claims: Sequence[Claim] = CLAIMS) -> str:
    """docs/claims.md: every claim of the registry, generated (a test keeps them equal)."""
    lines = [
        "# The claims smoothbench tests",
        "",
        "<!-- generated from src/smoothbench/claims/registry.py by "
        "`smoothbench-claims --markdown > docs/claims.md`; do not edit -->",
        "",
        "`smoothbench-claims SWEEP_DIR...` checks each claim below on the runs of a sweep (or of",
        "`scripts/reproduce.sh`, one sweep per preset) and prints one table: the paper's",
        "direction, the effect per seed, its mean with a t interval across seeds, and a verdict.",
        "",
        "- **holds**: the interval lies on the paper's side of the null (or inside the band).",
        "- **fails**: the interval lies on the other side.",
        "- **inconclusive**: a precondition failed (e.g. a net never left chance, a run did not",
        "  finish), the interval straddles the null, or there is one seed (no interval; ask",
        "  for a point-estimate verdict with `--min-seeds 1`).",
        "- **not run**: the preset, the compared condition or the metric is absent.",
        "",
        "How effects are formed: runs are read by preset (config `experiment`); the two arms",
        "differ in one config key (usually `norm`); a treatment run is paired with the control",
        "run of the same model, lr, shortcut and seed. The effect of a pair is the ratio",
        "(intervals on the log scale, means geometric) or the difference of their statistics;",
        "a seed's effect is the mean over its pairs. Every read run must have finished (a",
        "diverged run counts only where a claim says so, at chance accuracy). A statistic needs",
        "its minimum number of points, or the claim is inconclusive.",
        "",
        "| id | figure | statement | source | presets | statistic | comparison | preconditions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in claims:
        where = f" ({c.where_words()})" if c.where else ""
        pre = "; ".join(p.describe() for p in c.preconditions) or "—"
        lines.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    f"`{c.id}`",
                    c.figure,
                    c.statement,
                    c.source,
                    ", ".join(c.presets) + where,
                    f"{c.statistic.describe()}; ≥ {c.statistic.min_points} point(s)",
                    c.direction_words(),
                    pre,
                )
            )
            + " |"
        )
    needing = [c for c in claims if c.needs]
    if needing:
        lines += ["", "## Claims the shipped presets and probes do not measure yet", ""]
        lines += [f"- `{c.id}` needs {c.needs}." for c in needing]
    return "\n".join(lines) + "\n"
