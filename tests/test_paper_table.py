"""The figure table (smoothbench.paper) against what it names: the presets in conf/experiment/,
the scripts in analysis/ and their arguments, the claims, and the W&B dashboard and
analysis/figures.py that read it; and the claims' measured notes (claims/notes.yaml).

Each check is a function returning the problems it finds, run on the shipped table and on a
table with one entry broken (it must name the broken entry)."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from smoothbench import paper
from smoothbench.claims import CLAIMS, SCALES
from smoothbench.claims.notes import load_notes
from smoothbench.claims.registry import Claim

REPO = Path(__file__).resolve().parents[1]
ANALYSIS = REPO / "analysis"
SHIPPED_PRESETS = {p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")}


def analysis_module(name: str):
    if str(ANALYSIS) not in sys.path:
        sys.path.insert(0, str(ANALYSIS))
    return importlib.import_module(name)


def dashboard_script():
    path = REPO / "scripts" / "wandb_dashboard.py"
    spec = importlib.util.spec_from_file_location("wandb_dashboard", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def replace_row(name: str, **changes) -> tuple[paper.Figure, ...]:
    """The table with one row changed."""
    return tuple(dataclasses.replace(f, **changes) if f.name == name else f for f in paper.FIGURES)


# ---------------------------------------------------------------------------------------------
# the checks


def preset_problems(figures: Sequence[paper.Figure], shipped: set[str]) -> list[str]:
    """Rows whose preset is not a file of conf/experiment/, and shipped presets no row draws."""
    problems = [
        f"{f.name}: preset {f.preset!r} is not in conf/experiment/"
        for f in figures
        if f.preset not in shipped
    ]
    drawn = {f.preset for f in figures}
    problems += [f"preset {p!r} has no figure" for p in sorted(shipped - drawn)]
    return problems


def script_problems(figures: Sequence[paper.Figure]) -> list[str]:
    """Rows whose script is missing or refuses the row's arguments (argparse, no runs read)."""
    common = analysis_module("_common")
    problems = []
    for f in figures:
        if not (ANALYSIS / f"{f.script}.py").is_file():
            problems.append(f"{f.name}: no script analysis/{f.script}.py")
            continue
        module = analysis_module(f.script)
        parser = common.make_parser(module.NAME, None)
        if hasattr(module, "add_arguments"):
            module.add_arguments(parser)
        try:
            parser.parse_args(list(f.args))
        except SystemExit:
            problems.append(f"{f.name}: analysis/{f.script}.py refuses {' '.join(f.args)!r}")
    return problems


def claim_problems(figures: Sequence[paper.Figure], claims: Sequence[Claim]) -> list[str]:
    """Claims whose figure, presets or dashboard are not in the table, and ids the table lists
    that no claim has."""
    rows = {f.name: f for f in figures}
    listed: dict[str, list[str]] = {}
    for f in figures:
        for cid in f.claims:
            listed.setdefault(cid, []).append(f.name)
    presets = {f.preset for f in figures}
    problems = []
    for claim in claims:
        if claim.figure not in rows:
            problems.append(f"{claim.id}: figure {claim.figure!r} is not in the table")
            continue
        if listed.get(claim.id) != [claim.figure]:
            problems.append(
                f"{claim.id}: figure {claim.figure} must list it, and no other row "
                f"(listed by: {', '.join(listed.get(claim.id, [])) or 'none'})"
            )
        problems += [
            f"{claim.id}: preset {p!r} is no figure's preset"
            for p in claim.presets
            if p not in presets
        ]
        own = rows[claim.figure].preset
        if not any(f.dashboard for f in figures if f.preset == own):
            problems.append(f"{claim.id}: preset {own!r} of figure {claim.figure} has no dashboard")
    ids = {c.id for c in claims}
    problems += [
        f"{f}: lists unknown claim {cid!r}"
        for cid, fs in listed.items()
        for f in fs
        if cid not in ids
    ]
    return problems


# ---------------------------------------------------------------------------------------------
# the shipped table


def test_every_preset_of_the_table_is_shipped_and_every_shipped_one_drawn():
    assert preset_problems(paper.FIGURES, SHIPPED_PRESETS) == []


def test_every_script_exists_and_accepts_its_arguments():
    assert script_problems(paper.FIGURES) == []


def test_every_claim_sits_in_the_table():
    assert claim_problems(paper.FIGURES, CLAIMS) == []


def test_figure_names_and_titles():
    names = [f.name for f in paper.FIGURES]
    assert len(names) == len(set(names))
    for f in paper.FIGURES:
        assert f.title and "\n" not in f.title, f.name


# ---------------------------------------------------------------------------------------------
# a broken entry is found, and named


def test_a_preset_not_shipped_is_named():
    broken = replace_row("fig3", preset="fig3_vgg")
    assert preset_problems(broken, SHIPPED_PRESETS) == [
        "fig3: preset 'fig3_vgg' is not in conf/experiment/",
        "preset 'fig3' has no figure",
    ]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"script": "fig99"}, "fig3_dln: no script analysis/fig99.py"),
        ({"args": ("--depth", "9")}, "fig3_dln: analysis/fig3.py refuses '--depth 9'"),
    ],
)
def test_a_missing_script_or_a_refused_argument_is_named(changes, problem):
    assert script_problems(replace_row("fig3_dln", **changes)) == [problem]


def test_a_claim_no_row_lists_is_named():
    fig4 = paper.figure("fig4")
    broken = replace_row("fig4", claims=fig4.claims[1:])
    assert claim_problems(broken, CLAIMS) == [
        f"{fig4.claims[0]}: figure fig4 must list it, and no other row (listed by: none)"
    ]


def test_a_claim_listed_twice_or_unknown_is_named():
    broken = replace_row("fig8", claims=("noisy_bn_moments_change_more", "noisy_bn_trains_like_bn"))
    assert claim_problems(broken, CLAIMS) == [
        "noisy_bn_trains_like_bn: figure fig2 must list it, and no other row "
        "(listed by: fig2, fig8)"
    ]
    broken = replace_row("eos", claims=("edge_of_stability", "edge_of_chaos"))
    assert claim_problems(broken, CLAIMS) == ["eos: lists unknown claim 'edge_of_chaos'"]


def test_a_claim_figure_preset_or_dashboard_missing_from_the_table_is_named():
    eos = next(c for c in CLAIMS if c.id == "edge_of_stability")
    others = [c for c in CLAIMS if c.id != eos.id]
    moved = dataclasses.replace(eos, figure="fig11")
    assert claim_problems(paper.FIGURES, [*others, moved]) == [
        "edge_of_stability: figure 'fig11' is not in the table"
    ]
    reads_more = dataclasses.replace(eos, presets=("eos", "hessian_gd"))
    assert claim_problems(paper.FIGURES, [*others, reads_more]) == [
        "edge_of_stability: preset 'hessian_gd' is no figure's preset"
    ]
    broken = replace_row("hessian", dashboard=())
    assert claim_problems(broken, CLAIMS) == [
        f"{c.id}: preset 'hessian' of figure hessian has no dashboard"
        for c in CLAIMS
        if c.figure == "hessian"
    ]


# ---------------------------------------------------------------------------------------------
# the readers of the table


def test_figures_py_is_the_table_in_its_order():
    figures = analysis_module("figures")
    assert figures.FIGURES is paper.FIGURES
    out = subprocess.run(
        [sys.executable, str(ANALYSIS / "figures.py"), "draws"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert rows == [[f.name, f.script, f.preset, " ".join(f.args)] for f in paper.FIGURES]


def test_dashboard_sections_of_each_preset_come_from_the_table(monkeypatch):
    dash = dashboard_script()
    assert list(dash.FIGURES) == paper.presets()
    for preset, spec in dash.FIGURES.items():
        rows = paper.figures_of(preset)
        assert spec.sections == tuple(s for f in rows for s in f.dashboard), preset
        assert set(spec.group_by) == {k for f in rows for k in f.compares}, preset
        assert spec.name == f"smoothbench {preset}: {rows[0].title}"
    # a changed row changes the workspace
    section = paper.Section("Only this", (paper.one("train/loss"),))
    monkeypatch.setattr(paper, "FIGURES", replace_row("fig4", dashboard=(section,)))
    assert dash.workspace_spec("fig4").sections == (section,)


def test_fig10_is_fig4_with_its_row_arguments():
    fig10 = paper.figure("fig10")
    assert fig10.script == "fig4"
    assert analysis_module("fig10").ARGS == fig10.args
    args = analysis_module("fig4").parse(list(fig10.args))
    assert (args.model, args.logy, args.name) == ("dln", True, "fig10")


# ---------------------------------------------------------------------------------------------
# the measured notes


def test_every_note_says_where_it_was_measured():
    notes = load_notes(SCALES)
    ids = {c.id for c in CLAIMS}
    for note in notes:
        assert set(note.claims) <= ids, note.claims
        assert note.measured.preset in SHIPPED_PRESETS, note.measured.preset
        assert note.measured.preset in paper.presets()
        assert note.measured.seeds
    quoted = {c.id: c.scale_note for c in CLAIMS if c.scale_note}
    assert quoted == {cid: n.words() for n in notes if n.kind == "scale_note" for cid in n.claims}


def test_note_words_name_scale_preset_seeds_protocol_and_command(tmp_path):
    path = tmp_path / "notes.yaml"
    path.write_text(
        "- claims: [bn_trains_faster]\n"
        "  kind: note\n"
        "  text: >-\n"
        "    the standard net\n    starts slowly\n"
        "  measured: {scale: cpu, preset: fig1, seeds: [0, 1, 2, 3], protocol: 2,\n"
        "             command: smoothbench-train experiment=fig1 seed=S}\n"
    )
    (note,) = load_notes(SCALES, path)
    assert note.words() == (
        "the standard net starts slowly (measured at scale=cpu, preset fig1, seeds 0-3, "
        "protocol v2: smoothbench-train experiment=fig1 seed=S)"
    )


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("kind: finding", "kind 'finding' unknown; choose one of: note, scale_note"),
        (
            "kind: note\n  colour: red",
            "unknown field 'colour'; allowed: claims, kind, text, measured",
        ),
    ],
)
def test_a_bad_note_is_a_one_line_error_naming_it(tmp_path, entry, error):
    path = tmp_path / "notes.yaml"
    path.write_text(
        f"- claims: [bn_trains_faster]\n  {entry}\n  text: t\n"
        "  measured: {scale: cpu, preset: fig1, seeds: [0]}\n"
    )
    with pytest.raises(ValueError) as caught:
        load_notes(SCALES, path)
    assert str(caught.value) == f"notes.yaml, note 1: {error}"


def test_a_note_at_an_unknown_scale_is_refused(tmp_path):
    path = tmp_path / "notes.yaml"
    path.write_text(
        "- claims: [bn_trains_faster]\n  kind: note\n  text: t\n"
        "  measured: {scale: laptop, preset: fig1, seeds: [0]}\n"
    )
    with pytest.raises(
        ValueError, match="scale 'laptop' unknown; choose one of: smoke, cpu, paper"
    ):
        load_notes(SCALES, path)


def test_the_notes_ship_with_the_package():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "notes.yaml" in config["tool"]["setuptools"]["package-data"]["smoothbench.claims"]
