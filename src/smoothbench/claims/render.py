"""The claims table as text (terminal), HTML (the report) and Markdown (docs/claims.md).

`text_table` and `to_html` take the verdicts of `smoothbench.claims.evaluate`, or the entries
of a claims.json (`read_json`), so a report can be drawn without re-reading the runs.

Verdicts are per scale (config `scale`: smoke, cpu, paper). The agreement table
(`agreement_rows`, `agreement_table`, `agreement_html`) sets each claim's cpu verdict beside
its paper-scale verdict: cpu verdicts are meant to match the paper's, and a claim known not to
carries a `scale_note` saying why. Smoke verdicts are plumbing only and never agree or differ.

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

from smoothbench.claims.registry import CLAIMS, CLAIMS_BY_ID, Claim
from smoothbench.claims.statistics import UNKNOWN_SCALE, Verdict, scale_order

COLUMNS = (
    "claim",
    "paper's direction",
    "effect per seed",
    "mean [uncorrected CI]",
    "Holm p",
    "verdict",
    "25/50/75/100%",
    "robust",
    "why",
)
WIDTHS = (38, 24, 30, 24, 7, 12, 13, 6, 56)
# The tables of one scale, in order: findings first; checks and sensitivities never count.
KIND_TITLES = {
    "paper": "paper claims (Holm-corrected across these)",
    "sensitivity": "sensitivity (other settings of a paper claim; not counted)",
    "check": "checks of the measurement (follow from the construction; never findings)",
}
BUDGET_WORDS = {"holds": "H", "fails": "F", "inconclusive": "?", "not run": "-"}
VERDICT_CLASSES = {
    "holds": "holds",
    "fails": "fails",
    "inconclusive": "inconclusive",
    "not run": "not-run",
}
DECIDED = ("holds", "fails")
SMOKE_WORDS = "plumbing only: smoke verdicts say nothing about the claims"
# The agreement table: cpu beside paper (smoke, when given, as a column of its own).
AGREEMENT_SCALES = ("cpu", "paper")
AGREEMENT_WIDTHS = {"claim": 32, "scale": 12, "agreement": 9, "scale note": 60}
OPEN_WORDS = "open: one scale is undecided or not run"
NO_NOTE = "—"
UNSTATED = "differs without a stated reason"


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


def why_words(entry: Mapping[str, Any], known_words: str | None = None) -> str:
    """The why of an entry, with the claim's note quoted where the data decided the verdict
    (`known`); `known_words` replaces the note's text (e.g. a pointer, for a compact table)."""
    why = entry["why"] + matched_words(entry)
    known = entry.get("known")
    if not known:
        return why
    return f"{why}. Known: {known_words or known}"


def summary_words(entries: Sequence[Mapping[str, Any]]) -> str:
    """'12 holds, 3 fails, 9 inconclusive, 8 not run (7 robust)' over the paper claims, then
    the checks' count (an entry without a kind is a paper claim)."""
    counts = {v: 0 for v in VERDICT_CLASSES}
    papers = [e for e in entries if e.get("kind", "paper") == "paper"]
    for entry in papers:
        counts[entry["verdict"]] = counts.get(entry["verdict"], 0) + 1
    words = ", ".join(f"{n} {v}" for v, n in counts.items())
    robust = sum(1 for e in papers if e.get("robust"))
    if any(e.get("budgets") for e in papers):
        words += f" ({robust} robust)"
    checks = [e for e in entries if e.get("kind") == "check"]
    if checks:
        passed = sum(1 for e in checks if e["verdict"] == "holds")
        words += f"; checks: {passed} of {len(checks)} pass"
    return words


def budget_words(entry: Mapping[str, Any]) -> str:
    """'H H ? H': the verdict at each budget (H holds, F fails, ? inconclusive, - not run)."""
    budgets = entry.get("budgets") or {}
    return " ".join(BUDGET_WORDS.get(v, v) for v in budgets.values())


def robust_word(entry: Mapping[str, Any]) -> str:
    robust = entry.get("robust")
    return "—" if robust is None else ("yes" if robust else "no")


def p_words(entry: Mapping[str, Any]) -> str:
    p = entry.get("p_adjusted")
    return "" if p is None else f"{p:.2g}"


def matched_words(entry: Mapping[str, Any]) -> str:
    """'; at matched training loss 0.61 [0.5, 0.74]' for landscape claims, else ''."""
    matched = entry.get("matched")
    if not matched or matched.get("mean") is None:
        return ""
    return f"; at matched training loss: {matched['interval']}"


def row_cells(entry: Mapping[str, Any], why: str | None = None) -> tuple[str, ...]:
    """The cells of one entry in COLUMNS order (`why` replaces the why cell)."""
    return (
        entry["id"],
        entry["direction"],
        effects_words(entry),
        interval_words(entry),
        p_words(entry),
        entry["verdict"],
        budget_words(entry),
        robust_word(entry),
        why if why is not None else why_words(entry),
    )


def by_kind(entries: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Entries grouped by kind in KIND_TITLES order (paper claims first); empty kinds absent."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for entry in entries:
        groups.setdefault(entry.get("kind") or "paper", []).append(entry)
    return {kind: groups[kind] for kind in KIND_TITLES if kind in groups}


def _fixed_columns(rows: Sequence[Sequence[Any]], widths: Sequence[int]) -> list[str]:
    """Lines of a text table: the first row is the header, underlined; long cells wrap."""
    lines = []
    for index, row in enumerate(rows):
        cells = [textwrap.wrap(str(c), w) or [""] for c, w in zip(row, widths, strict=True)]
        for k in range(max(len(c) for c in cells)):
            parts = [
                (c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths, strict=True)
            ]
            lines.append(" ".join(parts).rstrip())
        if index == 0:
            lines.append(" ".join("-" * w for w in widths))
    return lines


def text_table(verdicts: Sequence[Verdict | Mapping[str, Any]]) -> str:
    """The claims table for a terminal: fixed columns, long cells wrapped."""
    entries = verdict_dicts(verdicts)
    lines: list[str] = []
    for kind, group in by_kind(entries).items():
        lines.append(KIND_TITLES[kind])
        lines += _fixed_columns([COLUMNS] + [row_cells(e) for e in group], WIDTHS)
        lines.append("")
    lines.append(summary_words(entries))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# scales


def entries_by_scale(
    verdicts: Sequence[Verdict | Mapping[str, Any]],
) -> dict[str, list[dict[str, Any]]]:
    """claims.json entries grouped by their "scale", smoke, cpu, paper first.

    Entries without a scale (from `evaluate` on unlabelled runs, or a claims.json written
    before verdicts were per scale) go under "unknown".
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in verdict_dicts(verdicts):
        groups.setdefault(entry.get("scale") or UNKNOWN_SCALE, []).append(entry)
    return {scale: groups[scale] for scale in scale_order(groups)}


def scale_heading(scale: str, runs: int | None = None) -> str:
    """'scale=cpu: 58 runs', with the smoke caveat; without a count: 'scale=cpu'."""
    words = f"scale={scale}" + (f": {runs} run{'s' if runs != 1 else ''}" if runs else "")
    if scale == "smoke":
        words += f" ({SMOKE_WORDS})"
    elif scale == UNKNOWN_SCALE:
        words += " (the runs' config has no scale)"
    return words


def agreement_of(cpu: str, paper: str) -> str:
    """'agree' or 'differ' when both verdicts are decided (holds/fails), else 'open'."""
    if cpu in DECIDED and paper in DECIDED:
        return "agree" if cpu == paper else "differ"
    return "open"


def _scale_note(claim_id: str, entries: Sequence[Mapping[str, Any]]) -> str | None:
    # entries carry the note they were evaluated with; an older claims.json has none: registry
    for entry in entries:
        if "scale_note" in entry:
            return entry["scale_note"]
    claim = CLAIMS_BY_ID.get(claim_id)
    return claim.scale_note if claim else None


def agreement_rows(
    by_scale: Mapping[str, Sequence[Verdict | Mapping[str, Any]]],
) -> list[dict[str, Any]]:
    """One row per claim: its verdict at cpu and at paper scale and whether they agree.

    `by_scale` is what `evaluate_by_scale` returns (or `entries_by_scale` of claims.json
    entries). A row: {"id", ["smoke",] "cpu", "paper", "agreement", "scale_note", "note"}; a
    scale without runs, or a claim absent from one, reads "not run" there. "smoke" is a column
    only when smoke runs were given, and never part of the agreement (plumbing only). "note"
    is the cell: the claim's scale_note, "—" without one, or "differs without a stated
    reason" when the verdicts differ and no note explains it (a finding, not an error).
    """
    groups = {
        scale: {e["id"]: e for e in verdict_dicts(verdicts)} for scale, verdicts in by_scale.items()
    }
    columns = (["smoke"] if "smoke" in groups else []) + list(AGREEMENT_SCALES)
    ids = dict.fromkeys(cid for group in groups.values() for cid in group)
    rows = []
    for cid in ids:
        row: dict[str, Any] = {"id": cid}
        for scale in columns:
            entry = groups.get(scale, {}).get(cid)
            row[scale] = entry["verdict"] if entry else "not run"
        row["agreement"] = agreement_of(row["cpu"], row["paper"])
        note = _scale_note(cid, [g[cid] for g in groups.values() if cid in g])
        row["scale_note"] = note
        row["note"] = note or (UNSTATED if row["agreement"] == "differ" else NO_NOTE)
        rows.append(row)
    return rows


def _rows(
    by_scale_or_rows: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
) -> list[Mapping[str, Any]]:
    if isinstance(by_scale_or_rows, Mapping):
        return list(agreement_rows(by_scale_or_rows))
    return list(by_scale_or_rows)


def _agreement_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    smoke = ["smoke"] if any("smoke" in r for r in rows) else []
    return smoke + list(AGREEMENT_SCALES)


def agreement_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """'3 agree, 1 differ, 20 open'."""
    counts = {a: 0 for a in ("agree", "differ", "open")}
    for row in rows:
        counts[row["agreement"]] += 1
    return ", ".join(f"{n} {a}" for a, n in counts.items())


def agreement_table(
    by_scale: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
) -> str:
    """The agreement table for a terminal: claim | [smoke |] cpu | paper | agreement | note.

    Takes what `evaluate_by_scale` returns, or the rows of `agreement_rows` (claims.json's
    "agreement")."""
    rows = _rows(by_scale)
    scales = _agreement_columns(rows)
    header = ("claim", *scales, "agreement", "scale note")
    widths = [AGREEMENT_WIDTHS["claim"]] + [AGREEMENT_WIDTHS["scale"]] * len(scales)
    widths += [AGREEMENT_WIDTHS["agreement"], AGREEMENT_WIDTHS["scale note"]]
    table = [header] + [
        (r["id"], *(r.get(s, "not run") for s in scales), r["agreement"], r["note"]) for r in rows
    ]
    lines = _fixed_columns(table, widths)
    lines += ["", agreement_summary(rows), OPEN_WORDS]
    return "\n".join(lines) + "\n"


def agreement_html(
    by_scale: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    figure_links: Mapping[str, str] | None = None,
) -> str:
    """The agreement table as an HTML fragment (<table class="claims agreement">).

    Takes what `agreement_table` takes. Rows carry the class of their agreement (agree,
    differ, open); claims link as in `to_html` (the figure is the registry's)."""
    links = dict(figure_links or {})
    rows = _rows(by_scale)
    scales = _agreement_columns(rows)
    header = ("claim", *scales, "agreement", "scale note")
    out = ['<table class="claims agreement">', "<thead><tr>"]
    out += [f"<th>{html.escape(c)}</th>" for c in header]
    out += ["</tr></thead>", "<tbody>"]
    for r in rows:
        name = html.escape(r["id"])
        claim = CLAIMS_BY_ID.get(r["id"])
        link = links.get(r["id"]) or (links.get(claim.figure) if claim else None)
        if link:
            name = f'<a href="{html.escape(link, quote=True)}">{name}</a>'
        cells = [f"<td>{name}</td>"]
        cells += [
            f'<td class="{VERDICT_CLASSES.get(r.get(s, "not run"), "")}">'
            f"{html.escape(r.get(s, 'not run'))}</td>"
            for s in scales
        ]
        cells += [
            f'<td class="agreement">{html.escape(r["agreement"])}</td>',
            f"<td>{html.escape(r['note'])}</td>",
        ]
        out.append(f'<tr class="{html.escape(r["agreement"])}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    summary = f"{agreement_summary(rows)}; {OPEN_WORDS}"
    out.append(f'<p class="claims-summary">{html.escape(summary)}</p>')
    return "\n".join(out)


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
    groups = entries_by_scale(entries)
    out = ['<table class="claims">', "<thead><tr>"]
    out += [f"<th>{html.escape(c)}</th>" for c in COLUMNS]
    out.append("</tr></thead>")
    out.append("<tbody>")
    for scale, group in groups.items():
        if len(groups) > 1:  # several scales: a heading row above each scale's rows
            heading = f"{scale_heading(scale)}: {summary_words(group)}"
            out.append(
                f'<tr class="scale-heading"><th colspan="{len(COLUMNS)}">'
                f"{html.escape(heading)}</th></tr>"
            )
        for kind, rows in by_kind(group).items():
            if kind != "paper":
                out.append(
                    f'<tr class="kind-heading"><th colspan="{len(COLUMNS)}">'
                    f"{html.escape(KIND_TITLES[kind])}</th></tr>"
                )
            out += [_html_row(e, links) for e in rows]
    out.append("</tbody></table>")
    if len(groups) > 1:
        summary = "; ".join(f"{s}: {summary_words(g)}" for s, g in groups.items())
    else:
        summary = summary_words(entries)
    out.append(f'<p class="claims-summary">{html.escape(summary)}</p>')
    return "\n".join(out)


def _html_row(e: Mapping[str, Any], links: Mapping[str, str]) -> str:
    """One verdict's <tr>: the claim links to its figure, the row carries the verdict's class."""
    link = links.get(e["id"]) or links.get(e["figure"])
    name = html.escape(e["id"])
    if link:
        name = f'<a href="{html.escape(link, quote=True)}">{name}</a>'
    title = html.escape(f"{e['statement']} ({e['source']})", quote=True)
    cls = VERDICT_CLASSES.get(e["verdict"], "")
    values = row_cells(e)
    cells = [f'<td title="{title}">{name}</td>']
    for column, value in zip(COLUMNS[1:], values[1:], strict=True):
        css = ' class="verdict"' if column == "verdict" else ""
        cells.append(f"<td{css}>{html.escape(value)}</td>")
    return f'<tr class="{cls}">' + "".join(cells) + "</tr>"


CLAIMS_CSS = """
table.claims { border-collapse: collapse; font-size: 0.85em; }
table.claims th, table.claims td { border: 1px solid #ccc; padding: 2px 6px; text-align: left;
  vertical-align: top; }
table.claims tr.holds td.verdict { background: #d4edda; }
table.claims tr.fails td.verdict { background: #f8d7da; }
table.claims tr.inconclusive td.verdict { background: #fff3cd; }
table.claims tr.not-run td.verdict { background: #e2e3e5; }
table.claims tr.scale-heading th { background: #f0f0f0; }
table.claims.agreement td.holds { background: #d4edda; }
table.claims.agreement td.fails { background: #f8d7da; }
table.claims.agreement tr.agree td.agreement { background: #d4edda; }
table.claims.agreement tr.differ td.agreement { background: #f8d7da; }
"""


def json_payload(verdicts: Sequence[Verdict | Mapping[str, Any]], **extra: Any) -> dict[str, Any]:
    """What claims.json holds: {"summary", "scales", **extra, "agreement", "claims"}.

    "claims" holds the entries of every scale (each with its "scale"); "scales" maps each
    scale to its summary words; "agreement" is `agreement_rows` of the entries. "summary" is
    the summary words of the one scale, or "smoke: ...; cpu: ..." for several.
    """
    entries = verdict_dicts(verdicts)
    groups = entries_by_scale(entries)
    scales = {scale: summary_words(group) for scale, group in groups.items()}
    if len(scales) > 1:
        summary = "; ".join(f"{scale}: {words}" for scale, words in scales.items())
    else:
        summary = summary_words(entries)
    return {
        "summary": summary,
        "scales": scales,
        **extra,
        "agreement": agreement_rows(groups),
        "claims": entries,
    }


def write_json(
    verdicts: Sequence[Verdict | Mapping[str, Any]], path: str | os.PathLike, **extra: Any
) -> Path:
    """claims.json (`json_payload` of the verdicts of every scale, and `extra`); the path."""
    path = Path(path)
    payload = json_payload(verdicts, **extra)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return path


def read_json(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The claim entries of a claims.json, every scale's (for `text_table` / `to_html`)."""
    return list(json.loads(Path(path).read_text())["claims"])


def read_agreement(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The agreement rows of a claims.json (computed from its entries when it has none)."""
    payload = json.loads(Path(path).read_text())
    if "agreement" in payload:
        return list(payload["agreement"])
    return agreement_rows(entries_by_scale(payload["claims"]))


# ---------------------------------------------------------------------------------------------
# docs


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# A Markdown table points to the claim's note instead of quoting it (notes run to a paragraph).
KNOWN_POINTER = "the claim's note in docs/claims.md"


def verdicts_markdown(
    by_scale: Mapping[str, Sequence[Verdict | Mapping[str, Any]]],
    runs: Mapping[str, int] | None = None,
) -> str:
    """The verdict tables as Markdown (claims.md beside claims.json: for a README or a draft).

    One table per scale under its heading (`scale_heading`), the verdict in bold, then the
    agreement table of cpu and paper verdicts with each claim's scale note.
    """
    runs = runs or {}
    lines: list[str] = []
    for scale, verdicts in by_scale.items():
        entries = verdict_dicts(verdicts)
        lines += [f"**{scale_heading(scale, runs.get(scale))}**", ""]
        for kind, group in by_kind(entries).items():
            lines += [f"*{KIND_TITLES[kind]}*", ""]
            lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
            for e in group:
                cells = list(row_cells(e, why=why_words(e, known_words=KNOWN_POINTER)))
                cells[0], cells[5] = f"`{e['id']}`", f"**{e['verdict']}**"
                lines.append("| " + " | ".join(_cell(str(c)) for c in cells) + " |")
            lines.append("")
        lines += [summary_words(entries), ""]
    rows = agreement_rows(by_scale)
    columns = _agreement_columns(rows)
    lines += ["**Scale agreement** (smoke verdicts are plumbing only)", ""]
    lines.append("| claim | " + " | ".join(columns) + " | agreement | scale note |")
    lines.append("|" + "---|" * (len(columns) + 3))
    for row in rows:
        cells = [f"`{row['id']}`", *(row[c] for c in columns), row["agreement"], row["note"]]
        lines.append("| " + " | ".join(_cell(str(c)) for c in cells) + " |")
    lines += ["", agreement_summary(rows)]
    return "\n".join(lines) + "\n"


# docs/claims.md opens with how a verdict is reached and read; the rest is generated per claim.
DOCS_INTRO = """\
`smoothbench-claims SWEEP_DIR...` checks each claim below on the runs of a sweep (or of
`scripts/reproduce.sh`, one sweep per preset) and prints one table per scale: the
paper's direction, the effect per seed, its mean with a t interval across seeds, and a
verdict. It writes claims.json (every number of every verdict), claims.txt (the
printed tables) and claims.md (the same tables in Markdown) to `--out` (default: the
first SWEEP_DIR); `analysis/report.py` opens its page with the same tables.

- **holds**: the interval lies on the paper's side of the null (or inside the band),
  and the claim survives Holm's correction across the scale's paper claims.
- **fails**: the interval lies on the other side, and survives Holm's correction.
- **inconclusive**: a precondition failed (e.g. a net never left chance, a run did not
  finish), the interval straddles the null, the uncorrected interval decides but the
  Holm-adjusted p does not (the why says so), or there are fewer than 3 seeds
  (`--min-seeds`; a 95 % t interval on 2 seeds has one degree of freedom, t = 12.7).
- **not run**: the preset, the compared condition or the metric is absent.

**Three kinds of claim.** *Paper* claims are findings of a paper, decided by data;
they are the family counted in the summary and corrected for multiplicity. *Checks*
test the measurement itself (an algebraic identity of the BN backward, noise that is
injected by design): their outcome follows from the construction, so they have a table
of their own and never count as findings. *Sensitivities* re-evaluate a paper claim at
another setting of the protocol (the DLN at half and twice the mapped paper lr): they
are reported beside the primary verdict, never replacing it.

**Multiplicity (Holm).** Each paper claim is a one-sided t-test of its per-seed
effects in the claim's direction and against it; its p-value is twice the smaller of
the two (the uncorrected interval clears the null exactly when p < 1 − confidence).
Holm's step-down procedure adjusts the p-values of every tested paper claim of a
scale; a claim is decided only when its adjusted p is below 1 − confidence. Holm
controls the family-wise error rate under any dependence between claims (many read
the same runs) and is uniformly more powerful than Bonferroni. The uncorrected
interval stays in the table; the Holm p stands beside it.

**Budget robustness.** Every run is also cut to its first 25, 50, 75 % of steps (a
constant-lr run's prefix is a shorter run; a step-schedule run's prefix is the run
before its later lr drops) and every claim is evaluated again, Holm included. The
table shows the verdict at each budget (H holds, F fails, ? inconclusive, - not run);
a claim is **robust** when its verdict is the same at 50, 75 and 100 %.

**Matched training loss.** For the landscape claims (loss variation, gradient change,
β-smoothness) the why also gives the effect at matched training loss: each net's
metric at the step where its smoothed running-minimum training loss reaches a level,
interpolated between probe steps, compared over 21 levels across the losses both nets
pass through after warm-up (median log ratio). A net that trains faster is then not
compared with one still in its slow start.

**The protocol.** Each scale's steps, lrs and seeds are fixed in docs/protocol.md,
with the date they were fixed; claims.json records the protocol version the verdicts
were computed under.

Verdicts are computed per scale; smoke verdicts are plumbing only; cpu verdicts are
meant to match paper verdicts, and a claim known not to is marked with its scale note.
Runs of different scales (config `scale`: smoke, cpu, paper) are never pooled: the
command prints one table per scale, then an agreement table setting each claim's cpu
verdict beside its paper-scale verdict (agree, differ, or open when one is undecided
or not run). `--scale NAME` evaluates one scale only.

How effects are formed: runs are read by preset (config `experiment`); the two arms
differ in one config key (usually `norm`); a treatment run is paired with the control
run of the same model, lr, shortcut and seed. The effect of a pair is the ratio
(intervals on the log scale, means geometric) or the difference of their statistics;
a seed's effect is the mean over its pairs. Every read run must have finished (a
diverged run counts only where a claim says so, at chance accuracy). A statistic needs
its minimum number of points, or the claim is inconclusive.

Where a claim sits: its figure is the row of the figure table,
`src/smoothbench/paper.py`, that lists its id (the same table names the figure's
preset, analysis script and W&B sections), and a claim reads that figure's preset
unless it names others. What smoothbench measured about a claim (the notes at the
end) is data, `src/smoothbench/claims/notes.yaml`, each note with the scale, preset,
seeds and protocol version it was measured at and the command that reproduces it.
"""
DOCS_COLUMNS = (
    "id",
    "kind",
    "figure",
    "statement",
    "source",
    "presets",
    "statistic",
    "comparison",
    "preconditions",
)


def claims_markdown(claims: Sequence[Claim] = CLAIMS) -> str:
    """docs/claims.md: every claim of the registry, generated (a test keeps them equal)."""
    lines = [
        "# The claims smoothbench tests",
        "",
        "<!-- generated from src/smoothbench/claims/registry.py, notes.yaml beside it and "
        "src/smoothbench/paper.py by "
        "`smoothbench-claims --markdown > docs/claims.md`; do not edit -->",
        "",
        *DOCS_INTRO.split("\n"),
        "| " + " | ".join(DOCS_COLUMNS) + " |",
        "|" + "---|" * len(DOCS_COLUMNS),
    ]
    lines += [_claim_row(c) for c in claims]
    needing = [c for c in claims if c.needs]
    if needing:
        lines += ["", "## Claims the shipped presets and probes do not measure yet", ""]
        lines += [f"- `{c.id}` needs {c.needs}." for c in needing]
    lines += _notes_section(
        {c.id: c.note for c in claims if c.note},
        "What is known about verdicts other than holds",
        "Measured findings that explain why a claim fails or stays inconclusive in",
        "smoothbench's setting; a failing or inconclusive verdict quotes its note in the why:",
    )
    lines += _notes_section(
        {c.id: c.scale_note for c in claims if c.scale_note},
        "Scale-dependent claims",
        "Claims whose verdict at the small scales (smoke, cpu) is expected to differ from",
        "the paper scale, and why:",
    )
    return "\n".join(lines) + "\n"


def _claim_row(c: Claim) -> str:
    """One claim's row of the docs table, in DOCS_COLUMNS order."""
    where = f" ({c.where_words()})" if c.where else ""
    cells = (
        f"`{c.id}`",
        c.kind,
        c.figure,
        c.statement,
        c.source,
        ", ".join(c.presets) + where,
        f"{c.statistic.describe()}; ≥ {c.statistic.min_points} point(s)",
        c.direction_words(),
        "; ".join(p.describe() for p in c.preconditions) or "—",
    )
    return "| " + " | ".join(_cell(x) for x in cells) + " |"


def _notes_section(notes: Mapping[str, str], title: str, *intro: str) -> list[str]:
    """A docs section listing claim ids with their notes; none without notes."""
    if not notes:
        return []
    return ["", f"## {title}", "", *intro, ""] + [
        f"- `{cid}`: {_cell(note)}" for cid, note in notes.items()
    ]
