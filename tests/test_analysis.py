"""The figure scripts and the report: what they plot equals the numbers the runs logged.

The synthetic runs (tests/fixtures_runs.py) log closed forms of a per-run `base` and the step,
so every expected value below is computed by hand from those forms.
"""

from __future__ import annotations

import argparse
import html
import importlib
import json
import math
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from fixtures_runs import (  # noqa: E402
    config,
    make_dln_sweep,
    make_norms_sweep,
    make_vgg_sweep,
    vgg_record,
    write_run,
)

from smoothbench.results import (  # noqa: E402
    MissingMetricError,
    load_runs,
    load_surfaces,
    load_wandb_runs,
    read_runs,
)

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"
SCRIPTS = ("fig1", "fig2", "fig3", "fig4", "fig8", "fig10", "lp", "hessian", "surfaces")


def script(name: str):
    if str(ANALYSIS) not in sys.path:
        sys.path.insert(0, str(ANALYSIS))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {
        "vgg": make_vgg_sweep(root),
        "dln": make_dln_sweep(root),
        "norms": make_norms_sweep(root),
    }


@pytest.fixture(scope="module")
def vgg(sweeps):
    return load_runs(sweeps["vgg"])


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def axis_titled(fig, pattern: str):
    matches = [ax for ax in fig.axes if re.search(pattern, ax.get_title())]
    assert len(matches) == 1, [ax.get_title() for ax in fig.axes]
    return matches[0]


def line(ax, label: str | None = None, gid: str | None = None, index: int = 0):
    found = [
        ln
        for ln in ax.lines
        if (label is None or ln.get_label() == label) and (gid is None or ln.get_gid() == gid)
    ]
    assert found, [(ln.get_label(), ln.get_gid()) for ln in ax.lines]
    return found[index]


def xy(ln):
    return np.asarray(ln.get_xdata(), dtype=float), np.asarray(ln.get_ydata(), dtype=float)


# --- plotted data -------------------------------------------------------------------------------


@pytest.mark.slow
def test_fig1_accuracy_means_over_seeds_and_ridges(vgg):
    fig = script("fig1").make_figure(vgg)
    train = axis_titled(fig, "^training accuracy$")
    # Standard lr 0.1: seeds with base 0.1 and 0.2 -> mean 0.15 + 0.01 step
    x, y = xy(line(train, "Standard, lr 0.1"))
    assert x.tolist() == [0, 1, 2, 3, 4, 5]
    assert y == pytest.approx([0.15, 0.16, 0.17, 0.18, 0.19, 0.20])
    # BN lr 0.1: bases 0.3 and 0.4 (diverged after step 4), so step 5 is base 0.3 alone
    _, y = xy(line(train, "Standard + BatchNorm, lr 0.1"))
    assert y == pytest.approx([0.35, 0.36, 0.37, 0.38, 0.39, 0.35])
    # BN lr 0.5: the running run, steps 0..3
    x, y = xy(line(train, "Standard + BatchNorm, lr 0.5"))
    assert x.tolist() == [0, 1, 2, 3] and y == pytest.approx([0.5, 0.51, 0.52, 0.53])
    test = axis_titled(fig, "^test accuracy$")
    x, y = xy(line(test, "Standard, lr 0.1"))
    # eval at 0, 3, 5 (base + 0.02 step) and the final line at 6 (base + 0.5)
    assert x.tolist() == [0, 3, 5, 6] and y == pytest.approx([0.15, 0.21, 0.25, 0.65])
    # ridges of the seed-0 run at lr 0.1: median = base + step + layer
    ridge = axis_titled(fig, r"^Standard\nlayer #11")
    x, y = xy(line(ridge, gid="median"))
    assert x.tolist() == [0, 2, 4] and y == pytest.approx([11.1, 13.1, 15.1])
    ridge = axis_titled(fig, r"^Standard \+ BatchNorm\nlayer #3")
    # outermost band 0..100 % = median -+ 4 * 0.1 * layer
    band = ridge.collections[0].get_paths()[0].vertices
    at0 = band[np.isclose(band[:, 0], 0.0), 1]
    assert at0.min() == pytest.approx(3.3 - 1.2) and at0.max() == pytest.approx(3.3 + 1.2)


@pytest.mark.slow
def test_fig2_compares_noisy_batchnorm(sweeps):
    df = load_runs(sweeps["norms"])
    fig = script("fig2").make_figure(df, layers=(2, 13))
    train = axis_titled(fig, r"^\(a\) training accuracy$")
    assert {ln.get_label() for ln in train.lines} == {
        "Standard",
        "Standard + BatchNorm",
        'Standard + "Noisy" BatchNorm',
    }
    _, y = xy(line(train, 'Standard + "Noisy" BatchNorm'))
    assert y == pytest.approx([0.3 + 0.01 * s for s in range(6)])
    _, y = xy(line(axis_titled(fig, r"Noisy.*\nlayer #13"), gid="median"))
    assert y == pytest.approx([0.3 + s + 13 for s in (0, 2, 4)])


@pytest.mark.slow
def test_fig3_ics_per_layer(vgg):
    fig = script("fig3").make_figure(vgg, layers=[5])
    l2 = axis_titled(fig, r"layer #5: \$\\ell_2")
    # l2 = base + 0.01 k + 0.1 step; mean base of seeds 0.15
    x, y = xy(line(l2, "Standard, lr 0.1"))
    assert x.tolist() == [0, 2, 4] and y == pytest.approx([0.2, 0.4, 0.6])
    cosine = axis_titled(fig, "layer #5: cosine")
    _, y = xy(line(cosine, "Standard + BatchNorm, lr 0.1"))
    assert y == pytest.approx([1 - 0.35, 1 - 0.35 - 0.02, 1 - 0.35 - 0.04])


def test_fig4_ranges_and_smoothness(vgg):
    fig = script("fig4").make_figure(vgg)
    loss = axis_titled(fig, "loss landscape")
    # losses = L + (0, .3, -.2, .5), L = 2 - base - 0.1 step: range L - 0.2 .. L + 0.5
    x, lo = xy(line(loss, gid="lo", index=0))
    _, hi = xy(line(loss, gid="hi", index=0))
    assert x.tolist() == [0, 2, 4]
    assert lo == pytest.approx([1.65, 1.45, 1.25]) and hi == pytest.approx([2.35, 2.15, 1.95])
    grad = axis_titled(fig, "gradient predictiveness")
    _, lo = xy(line(grad, "Standard + BatchNorm, lr 0.1", gid="lo"))
    assert lo == pytest.approx([0.35, 0.55, 0.75])
    _, y = xy(line(axis_titled(fig, "smoothness"), "Standard, lr 0.1", gid="mean"))
    assert y == pytest.approx([1.5, 3.5, 5.5])  # 10 base + step


def test_fig10_shows_the_dln_on_log_axes(sweeps):
    df = load_runs([sweeps["vgg"], sweeps["dln"]])
    fig = script("fig10").make_figure(df)
    loss = axis_titled(fig, "loss landscape")
    assert loss.get_yscale() == "log"
    # DLN: losses = L (1, 2, 0.5, 4), L = base 10^-step; bases 1 and 2 for the standard net
    _, lo = xy(line(loss, "Standard", gid="lo"))
    assert lo == pytest.approx([0.75 * 10**-s for s in (0, 2, 4)])
    # fig4 on the same frame leaves the DLN out
    grad = axis_titled(script("fig4").make_figure(df), "gradient predictiveness")
    assert all("dln" not in str(ln.get_label()) for ln in grad.lines)
    assert len([ln for ln in grad.lines if ln.get_gid() == "lo"]) == 4  # the 4 VGG conditions


def test_fig8_moment_changes(vgg):
    fig = script("fig8").make_figure(vgg, layers=(2,))
    mean = axis_titled(fig, "change in mean")
    x, y = xy(line(mean, "Standard, lr 0.1"))
    assert x.tolist() == [2, 4] and y == pytest.approx([0.154, 0.158])
    _, y = xy(line(axis_titled(fig, "change in variance"), "Standard, lr 0.1"))
    assert y == pytest.approx([0.308, 0.316])


def test_lp_training_and_smoothness(sweeps):
    df = load_runs(sweeps["norms"])
    fig = script("lp").make_figure(df)
    train = axis_titled(fig, "^training accuracy$")  # one model: no model prefix
    labels = [ln.get_label() for ln in train.lines]
    assert "Standard + $\\ell_\\infty$ norm" in labels
    assert 'Standard + "Noisy" BatchNorm' not in labels
    _, y = xy(line(train, "Standard + $\\ell_2$ norm"))
    assert y == pytest.approx([0.5 + 0.01 * s for s in range(6)])
    beta = axis_titled(fig, "smoothness")
    _, y = xy(line(beta, "Standard + $\\ell_1$ norm"))
    assert y == pytest.approx([4 + s for s in (0, 2, 4)])


def test_lp_uses_the_loss_for_a_model_without_accuracy(sweeps):
    df = load_runs([sweeps["norms"], sweeps["dln"]])
    fig = script("lp").make_figure(df)
    loss = axis_titled(fig, "^dln: training loss$")
    # DLN train/loss = base 10^-step, standard-net bases 1 and 2
    _, y = xy(line(loss, "Standard, dln, lr 1e-06, experiment=fig10"))
    assert y == pytest.approx([1.5 * 10.0**-s for s in range(6)])
    assert axis_titled(fig, "^vgg11: training accuracy$")


def wandb_frame():
    """A W&B-shaped frame: the mirror keeps scalars only (no landscape/losses list)."""

    class Run:
        def __init__(self, run_id, norm, base):
            self.id, self.path, self.state, self.summary = (
                run_id,
                ["e", "p", run_id],
                "finished",
                {},
            )
            self.config = {
                "seed": 0,
                "model": {"name": "vgg11"},
                "norm": {"name": norm},
                "optim": {"lr": 0.1},
            }
            self.base = base

        def scan_history(self):
            for step in (0, 2):
                yield {
                    "_step": step,
                    "landscape/loss_variation": self.base + step,
                    "landscape/grad_pred_min": self.base,
                    "landscape/grad_pred_max": 2.0,
                    "landscape/beta_smoothness": 3.0,
                    "act/layer3/hist": {"_type": "histogram"},
                }

    class Api:
        def runs(self, path, filters=None):
            return [Run("a", "none", 0.5), Run("b", "batch", 0.1)]

    return load_wandb_runs("e/p", api=Api())


@pytest.mark.slow
def test_fig4_from_wandb_falls_back_on_the_variation(tmp_path, monkeypatch, capsys):
    fig = script("fig4").make_figure(wandb_frame())
    loss = axis_titled(fig, "loss landscape")
    assert loss.get_ylabel().startswith("loss variation")
    _, y = xy(line(loss, "Standard", gid="mean"))
    assert y == pytest.approx([0.5, 2.5])
    # the command line reads the same frame through --wandb
    common = script("_common")
    monkeypatch.setattr(common, "load_wandb_runs", lambda *a, **k: wandb_frame())
    argv = ["--wandb", "e/p", "--group", "g", "--out", str(tmp_path)]
    assert script("fig4").main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / "fig4.png").is_file()
    assert script("fig1").main(argv) == 2
    assert "missing metric 'train/acc'" in capsys.readouterr().err


@pytest.mark.slow
def test_hessian_lambda_max_trace_and_density(vgg):
    fig = script("hessian").make_figure(vgg)
    lam = axis_titled(fig, "largest eigenvalue")
    x, y = xy(line(lam, "Standard, lr 0.1"))
    assert x.tolist() == [0, 2, 4] and y == pytest.approx([1.5, 3.5, 5.5])
    edges = sorted(float(ln.get_ydata()[0]) for ln in lam.lines if ln.get_gid() == "2/lr")
    assert edges == pytest.approx([4.0, 20.0])
    trace = axis_titled(fig, "trace")
    _, y = xy(line(trace, "Standard, lr 0.1"))
    assert y == pytest.approx([15.0, 17.0, 19.0])
    # band: mean -+ sqrt(se_0^2 + se_1^2) / 2 with se = 0.5 + 0.1 step for both seeds
    band = trace.collections[0].get_paths()[0].vertices
    at0 = band[np.isclose(band[:, 0], 0.0), 1]
    se = math.sqrt(2 * 0.5**2) / 2
    assert at0.min() == pytest.approx(15 - se) and at0.max() == pytest.approx(15 + se)
    density = axis_titled(fig, r"^\(c\) Standard, lr 0.1\n")
    assert density.get_yscale() == "log"
    x, y = xy(line(density, gid="density@4"))
    assert x == pytest.approx([-1, 2, 5, 8, 11]) and y == pytest.approx([0.5, 1, 2, 1, 0.5])


def test_surfaces_plot_the_stored_arrays(sweeps):
    fig = script("surfaces").make_figure(load_surfaces(sweeps["vgg"]))
    curve = axis_titled(fig, "line")
    x, y = xy(line(curve, gid="losses"))
    assert x == pytest.approx([-1, -0.5, 0, 0.5, 1]) and y == pytest.approx(1 + x**2)
    # BN statistics are named for a net that has them, not for the standard one
    assert "BN statistics" not in curve.get_title()
    plane = axis_titled(fig, r"BatchNorm\nplane")
    assert "(BN statistics: eval)" in plane.get_title()
    mesh = next(c for c in plane.collections if c.get_gid() == "losses")
    alphas, betas = np.linspace(-1, 1, 4), np.linspace(-1, 1, 3)
    expected = 1 + alphas[None, :] ** 2 + 2 * betas[:, None] ** 2  # rows: beta, columns: alpha
    assert np.asarray(mesh.get_array()).reshape(3, 4) == pytest.approx(expected)


# --- command line ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_script_writes_pdf_and_png(name, sweeps, tmp_path, capsys):
    paths = [str(sweeps["norms"])] if name in ("fig2", "lp") else [str(sweeps["vgg"])]
    if name == "fig10":
        paths = [str(sweeps["dln"])]
    # few panels keep this fast: the data checks above cover the full layouts
    extra = {
        "fig1": ["--layers", "3"],
        "fig2": ["--layers", "2"],
        "fig3": ["--layers", "5"],
        "fig8": ["--layers", "2"],
        "lp": ["--norms", "none", "l2"],
    }
    argv = paths + ["--out", str(tmp_path), "--status", "finished"] + extra.get(name, [])
    assert script(name).main(argv) == 0, capsys.readouterr().err
    pdf, png = tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("hessian", "'hessian/lambda_max'"),
        ("fig1", "'train/acc'"),
        ("fig8", "'act/layer2/mean_change'"),
        ("fig4", "'landscape/losses'"),
        ("surfaces", "surfaces/\\*.npz"),
    ],
)
def test_script_without_its_data_exits_nonzero(name, missing, sweeps, tmp_path, capsys):
    assert script(name).main([str(sweeps["dln"]), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"{name}: missing")
    assert re.search(missing, err), err
    assert not list(tmp_path.iterdir())


def test_script_without_runs_says_so(tmp_path, capsys):
    assert script("fig3").main([str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert "no directory matches" in capsys.readouterr().err


def test_missing_layer_names_the_recorded_ones(vgg):
    with pytest.raises(MissingMetricError, match=r"'act/layer4/quantiles'.*layers 2, 3, 9, 11, 13"):
        script("fig1").make_figure(vgg, layers=(3, 4))
    # without --layers: the paper's layers when all are recorded, else every recorded layer
    # (a smaller net, e.g. VGG-11 at scale=cpu, records other layer numbers)
    common = script("_common")
    recorded = [2, 3, 9, 11, 13]
    assert common.layers_for_report(vgg, "act/layer{}/quantiles", (3, 11)) == [3, 11]
    assert common.layers_for_report(vgg, "act/layer{}/quantiles", (3, 16)) == recorded
    assert common.layers_for_report(vgg, "act/layer{}/quantiles", (14, 16)) == recorded


def test_scripts_without_layers_draw_the_recorded_ones(vgg, tmp_path):
    # the paper's fig1 layers are #3 and #11; runs recording only #2 and #13 still draw
    only = vgg[~vgg["metric"].str.match(r"act/layer(3|9|11)/")]
    args = argparse.Namespace(
        layers=None, layer_defaults=[3, 11], layer_metric="act/layer{}/quantiles"
    )
    script("_common").resolve_layers(args, only)
    assert args.layers == [2, 13]
    fig = script("fig1").make_figure(only, layers=args.layers)
    assert any("layer #13" in ax.get_title() for ax in fig.axes)


def test_make_figure_raises_missing_metric(sweeps):
    df = load_runs(sweeps["dln"])
    with pytest.raises(MissingMetricError, match="'ics/layer5/l2'"):
        script("fig3").make_figure(df, layers=[5])


# --- report ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_page(sweeps, tmp_path_factory):
    """The report of a fig1 sweep (vgg), a fig10 sweep (dln) and a fig2 sweep (norms, as fig2)."""
    root = tmp_path_factory.mktemp("presets")
    make_norms_sweep(root, experiment="fig2", name="fig2")
    (root / "figures").mkdir()  # what reproduce.sh writes beside the sweeps: not a run dir
    (root / "figures" / "fig2.png").write_bytes(b"png")
    out = tmp_path_factory.mktemp("page")
    paths = [str(sweeps["vgg"]), str(sweeps["dln"]), str(root)]
    figures = ("fig1", "fig2", "fig3", "fig10", "surfaces")
    page = script("report").write_report(paths, out, figures=figures).read_text()
    return page


@pytest.mark.slow
def test_report_accuracy_tables_per_preset(report_page):
    page = report_page
    fig1 = page.split("<h3>fig1</h3>")[1].split("</table>")[0]
    # fig1, none at lr 0.1, finished seeds: train acc 0.15, 0.25; test acc 0.6, 0.7 (ddof = 1)
    std = math.sqrt(2 * 0.05**2)
    assert f"<td>{0.2:.4f} ± {std:.4f}</td>" in fig1
    assert f"<td>{0.65:.4f} ± {std:.4f}</td>" in fig1
    # batch at lr 0.1: one finished run (0.35, 0.8), the diverged one only counted
    assert "<td>0.3500</td>" in fig1 and "<td>0.8000</td>" in fig1
    # only the swept keys head the table, then the results
    heads = re.findall(r"<th>([^<]*)</th>", fig1)
    assert heads[:3] == ["norm", "lr", "final train acc"]
    for bookkeeping in ("keep_checkpoints", "probes", "experiment", "scale", "model", "seed"):
        assert bookkeeping not in heads
    fig2 = page.split("<h3>fig2</h3>")[1].split("</table>")[0]
    assert re.findall(r"<th>([^<]*)</th>", fig2)[:2] == ["norm", "final train acc"]
    statuses = page.split("<h2>Run statuses</h2>")[1].split("<h3>Every run</h3>")[0]
    counts = dict(re.findall(r"<td>(\w+)</td>\s*<td>(\d+)</td>", statuses))
    assert counts == {"finished": "13", "diverged": "1", "running": "1", "failed": "1"}
    assert "RuntimeError: out of memory" in page
    assert "smoothbench-train --multirun experiment=fig10 " in page
    assert "norm=none,batch seed=0,1" in page
    assert "<script" not in page and "http" not in page.split("<body>")[1]


def test_report_draws_each_figure_from_its_own_preset(report_page, sweeps, tmp_path):
    page = report_page
    drawn = re.findall(r'<figure id="(\w+)">', page)
    assert drawn == ["fig1", "fig2", "fig10"]
    # fig1 from the fig1 sweep (two lrs), fig2 from the fig2 sweep: the presets are named
    assert "<b>fig1</b> (preset <code>fig1</code>)" in page
    # a caption is the script's whole first paragraph, never cut mid-sentence
    assert (
        "though its activation distributions are less stable than those of the standard net."
        in page
    )
    # fig3 has no preset among the runs: listed once, not drawn from another preset's runs
    assert "Figures of presets not among these runs: <code>fig3</code>" in page
    # surfaces of the fig1 runs belong to no figure of the table
    assert 'id="surfaces"' not in page
    # Runs from: the sweep dirs only
    sources = page.split("Runs from: ")[1].split("</p>")[0]
    assert sources.count("<code>") == 3 and "figures" not in sources
    # the fig1 figure holds the fig1 runs only: both lrs, no noisy BatchNorm
    report = script("report")
    runs = read_runs(sweeps["vgg"])
    spec = next(f for f in script("figures").FIGURES if f.name == "fig1")
    fig = report.draw(spec, runs, "minmax")
    labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert labels == {
        "Standard, lr 0.1",
        "Standard, lr 0.5",
        "Standard + BatchNorm, lr 0.1",
        "Standard + BatchNorm, lr 0.5",
    }


def test_report_lists_an_undrawable_figure_with_the_reason(sweeps, tmp_path):
    """fig1 compares learning rates: its preset's runs at lr 0.1 alone cannot show it."""
    one_lr = make_norms_sweep(tmp_path, experiment="fig1", name="fig1")
    page = script("report").write_report([str(one_lr)], tmp_path / "out", figures=["fig1"])
    page = page.read_text()
    assert 'src="data:image/png' not in page
    block = page.split('<div class="notdrawable" id="fig1">')[1].split("</div>")[0]
    assert "it compares learning rates (paper: 0.1 and 0.5)" in block
    assert "needs runs at 2 or more values of optim.lr (the runs have optim.lr 0.1 only)" in block


def test_report_opens_with_provenance_and_claims(report_page, tmp_path):
    page = report_page
    body = page.split("<body>")[1]
    banner = body.split('<table class="banner" id="provenance">')[1].split("</table>")[0]
    rows = dict(re.findall(r"<tr><th>([^<]+)</th><td>(.*?)</td></tr>", banner))
    assert rows["scale"] == "smoke" and rows["steps"] == "6" and rows["seeds"] == "0, 1"
    assert rows["models"] == "vgg11 (width 0.25), dln"
    assert rows["device"] == "cpu"
    assert "numpy " in rows["packages (this report)"]
    assert "git commit" in rows
    # the claims table comes right after the banner, before the figures
    assert (
        body.index('id="provenance"')
        < body.index('<h2 id="claims">')
        < body.index("<h2>Figures</h2>")
    )
    claims = body.split('<h2 id="claims">')[1].split("</table>")[0]
    assert '<a href="#fig1">' in claims


@pytest.mark.slow
def test_report_wall_times_from_timings(sweeps, tmp_path):
    root = tmp_path / "repro"
    sweep = make_norms_sweep(root, experiment="fig2", name="fig2")
    (root / "timings.tsv").write_text("step\tseconds\ntrain:fig2\t90\nfigure:fig2\t30\n")
    page = script("report").write_report([str(sweep)], tmp_path / "out", figures=["fig2"])
    banner = page.read_text().split('id="provenance"')[1].split("</table>")[0]
    assert "2.0 min in all (train 90 s, figure 30 s)" in banner


# --- layout: nothing overflows a 1400 px window -------------------------------------------------

CHAR_PX = 7.5  # a 0.85 em system-ui character at 16 px, generously
CELL_PAD_PX = 18


class _Tables(HTMLParser):
    """Per table, per column: the longest word of any cell (the width a browser cannot wrap)."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell, self._col, self._in_pre = [], None, 0, False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({})
        elif tag == "tr":
            self._col = 0
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            words = " ".join(self._cell).split()
            longest = max((len(w) for w in words), default=0)
            widths = self.tables[-1]
            widths[self._col] = max(widths.get(self._col, 0), longest)
            self._col += 1
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def overflow_problems(page: str, window_px: int = 1400) -> list[str]:
    """What would overflow a window `window_px` wide: a table whose unbreakable words add up to
    more than the content width, a <pre> that does not wrap, an image not fitted to the page."""
    style = page.split("<style>")[1].split("</style>")[0]
    width = int(re.search(r"body \{[^}]*max-width: (\d+)px", style).group(1))
    problems = []
    if width > window_px - 40:
        problems.append(f"body max-width {width}px leaves no margin in {window_px}px")
    if "<pre" in page and not re.search(r"pre \{[^}]*white-space: pre-wrap", style):
        problems.append("<pre> does not wrap")
    if "<img" in page and not re.search(r"img \{[^}]*max-width: 100%", style):
        problems.append("images are not fitted to the page width")
    if not re.search(r"pre \{[^}]*overflow-wrap: break-word", style):
        problems.append("long words (paths, commands) do not wrap")
    parser = _Tables()
    parser.feed(page)
    for index, columns in enumerate(parser.tables):
        needed = sum(CHAR_PX * n + CELL_PAD_PX for n in columns.values())
        # words in table cells are never broken (no overflow-wrap: anywhere): a table needing
        # more than the page overflows it
        if needed > width:
            problems.append(f"table {index} needs {needed:.0f}px of {width}px")
    return problems


def test_report_fits_a_1400px_window(report_page):
    assert overflow_problems(report_page) == []


def test_overflow_check_catches_a_wide_table():
    """The check fails on what the old report did: 16 columns of config keys."""
    page = script("report").render_html(
        ["sweep"],
        [],
        (None, ""),
        [],
        [
            (
                "fig2",
                pd.DataFrame({f"probes.layer{k}.schedule.every": [50] for k in range(16)}),
            )
        ],
        pd.DataFrame({"status": ["finished"], "runs": [1]}),
        pd.DataFrame({"run": ["0"]}),
        [],
    )
    problems = overflow_problems(page)
    assert len(problems) == 1 and problems[0].startswith("table 1 needs")


LAYOUT_PROBE = """<script>
window.addEventListener('load', () => {
  const inner = window.innerWidth;
  const over = [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > inner + 0.5)
    .map(e => e.tagName + (e.id ? '#' + e.id : ''));
  const images = [...document.images].map(i => [i.naturalWidth, i.getBoundingClientRect().width]);
  const out = {scroll: document.documentElement.scrollWidth, inner, over, images};
  const pre = document.createElement('pre');
  pre.id = 'layout-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.slow
def test_report_in_headless_chromium_at_1400px(report_page, tmp_path):
    """The real thing where Chromium is installed (apt: chromium-headless-shell): no element
    reaches past a 1400 px window, no horizontal scroll, every figure shown whole."""
    browser = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    if browser is None:
        pytest.skip("no headless Chromium (apt-get install chromium-headless-shell)")
    page = tmp_path / "page.html"
    page.write_text(report_page.replace("</body>", LAYOUT_PROBE + "</body>"))
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"]
        + ["--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="layout-check">([^<]*)</pre>', proc.stdout)
    assert found, proc.stderr[-2000:]
    layout = json.loads(html.unescape(found.group(1)))
    assert layout["over"] == [] and layout["scroll"] <= layout["inner"], layout
    assert len(layout["images"]) == 3  # fig1, fig2, fig10
    for natural, shown in layout["images"]:
        assert 0 < shown <= natural + 0.5  # never blown up, never cut: scaled down at most


# --- what every figure says about its data -------------------------------------------------------


def texts(fig, gid: str) -> str:
    return "\n".join(t.get_text() for t in fig.texts if t.get_gid() == gid)


def test_footer_states_scale_steps_width_data_lr_and_eta(vgg):
    fig = script("fig1").make_figure(vgg)
    assert texts(fig, "footer") == (
        "scale smoke · 6 steps · vgg11 (width 0.25) · data digits · lr 0.1, 0.5 · seeds 0, 1"
    )
    footer = texts(script("fig4").make_figure(vgg), "footer")
    assert "· η 0.05–0.2 ·" in footer  # landscape/step_sizes of the runs


def test_warnings_for_few_probe_points_one_seed_and_a_diverged_run(vgg, sweeps, tmp_path):
    warnings = texts(script("fig8").make_figure(vgg, layers=(2,)), "warnings")
    # moment changes at steps 2 and 4 only, at 2 alone for the run stopped at step 3; the
    # diverged seed 1 of BN at lr 0.1; the failed run at lr 0.5 ended at test acc 0.05 (chance
    # 0.1 on the digits)
    assert "Warning: a run has only 1 probe point (act/layer2/mean_change)" in warnings
    assert "Warning: diverged: Standard + BatchNorm, lr 0.1, seed 1" in warnings
    assert "Warning: at chance (test/acc < 15%): Standard, lr 0.5, seed 0" in warnings
    assert "Warning: some conditions have a single seed" in warnings
    assert (
        "Warning: not finished (failed, running): Standard + BatchNorm, lr 0.5, seed 0; "
        "Standard, lr 0.5, seed 0" in warnings
    )
    one_seed = texts(script("fig3").make_figure(load_runs(sweeps["norms"]), layers=[5]), "warnings")
    assert "Warning: a single seed per condition: differences may be noise" in one_seed
    assert "diverged" not in one_seed and "probe point" not in one_seed


def test_warning_for_a_loss_that_blew_up(tmp_path):
    """A run whose test loss ends at 7812 (its status says finished) is flagged as diverged."""
    records = [vgg_record(0.3, s) for s in range(6)]
    for record in records:
        record["train/lr"] = 0.5
    records[-1]["test/loss"] = 7812.0
    write_run(
        tmp_path / "s" / "0",
        config=config("vgg11", "batch", 0.5, 0),
        records=records,
        status={"state": "finished", "step": 6},
    )
    df = load_runs(tmp_path / "s")
    warnings = texts(script("fig3").make_figure(df, layers=[5]), "warnings")
    assert "Warning: diverged: Standard + BatchNorm" in warnings


def test_band_notes_are_true_to_the_seeds(vgg, sweeps):
    fig = script("fig3").make_figure(load_runs(sweeps["norms"]), layers=[5])
    assert (
        fig.legends[0].get_title().get_text() == "line: one run (seed) per condition; no seed band"
    )
    assert all(not ax.collections for ax in fig.axes)  # no band drawn for one seed
    fig = script("fig3").make_figure(vgg[vgg["optim.lr"] == 0.1], layers=[5])
    note = fig.legends[0].get_title().get_text()
    assert note == "line: mean over 2 seeds; band: min–max over seeds"


def test_lines_carry_distinct_markers(vgg):
    fig = script("fig3").make_figure(vgg, layers=[5])
    ax = axis_titled(fig, r"layer #5: \$\\ell_2")
    markers = [ln.get_marker() for ln in ax.lines if ln.get_gid() == "mean"]
    assert len(markers) == 4 and len(set(markers)) == 4 and "None" not in markers


def test_legend_shows_only_swept_keys(tmp_path):
    """Runs that differ in probes and kept checkpoints too: the legend names the norm alone."""
    probes = {"activations": {"layers": [2, 13], "schedule": {"kind": "every", "every": 50}}}
    sweep = make_norms_sweep(tmp_path, experiment="fig2", probes=probes)
    fig = script("fig2").make_figure(load_runs(sweep), layers=(2,))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["Standard", "Standard + BatchNorm", 'Standard + "Noisy" BatchNorm']


def test_step_ticks_are_whole_numbers(sweeps):
    """One probe point per run (the running job stopped at step 3): no fractional step ticks."""
    one = load_runs(Path(sweeps["vgg"]) / "4")
    fig = script("fig8").make_figure(one, layers=(2,))
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = ax.get_xticks()
        assert len(ticks) >= 1 and np.allclose(ticks, np.round(ticks)), ticks


def test_distributions_share_y_per_layer(vgg):
    fig = script("fig1").make_figure(vgg, layers=(3, 11))
    for layer in (3, 11):
        panels = [ax for ax in fig.axes if f"layer #{layer} " in ax.get_title()]
        assert len(panels) == 2
        assert panels[0].get_ylim() == panels[1].get_ylim()
    # Standard (base 0.1) and BN (base 0.3) ridges differ: separate axes when asked
    fig = script("fig1").make_figure(vgg, layers=(3,), sharey=False)
    panels = [ax for ax in fig.axes if "layer #3 " in ax.get_title()]
    assert panels[0].get_ylim() != panels[1].get_ylim()


def test_surfaces_share_one_colour_scale(sweeps):
    fig = script("surfaces").make_figure(load_surfaces(sweeps["vgg"]))
    meshes = [c for ax in fig.axes for c in ax.collections if c.get_gid() == "losses"]
    assert len(meshes) == 2
    # 1 + α² + 2β² on α in ±1, ±1/3 and β in -1, 0, 1: one scale from 1 + 1/9 to 4 for both
    for mesh in meshes:
        assert (mesh.norm.vmin, mesh.norm.vmax) == pytest.approx((1 + 1 / 9, 4.0))
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 1


def test_report_main(sweeps, tmp_path, capsys):
    report = script("report")
    assert report.main([str(sweeps["dln"]), "--out", str(tmp_path), "--figures", "fig3"]) == 0
    assert (tmp_path / "report.html").is_file()
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.html")


# --- the figure table, the end-of-sweep summary, the preset list, --help -----------------------

REPO = ANALYSIS.parent


def test_figure_table_names_real_scripts_and_presets():
    figures = script("figures")
    presets = {p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")}
    for spec in figures.FIGURES:
        assert (ANALYSIS / f"{spec.script}.py").is_file(), spec
        assert spec.preset in presets, spec
    # reproduce.sh trains exactly the table's presets, each once
    out = subprocess.run(
        [sys.executable, str(ANALYSIS / "figures.py"), "presets"], capture_output=True, text=True
    )
    assert out.stdout.split() == figures.presets()
    assert len(set(figures.presets())) == len(figures.presets())
    assert "python analysis/figures.py draws" in (REPO / "scripts" / "reproduce.sh").read_text()


def test_requirement_reasons():
    figures = script("figures")
    fig1 = next(f for f in figures.FIGURES if f.name == "fig1")
    assert (
        figures.unmet_requirements(fig1, {"norm.name": ["none", "batch"], "optim.lr": [0.1, 0.5]})
        == []
    )
    reasons = figures.unmet_requirements(fig1, {"norm.name": ["batch"], "optim.lr": [0.1, 0.1]})
    assert reasons == [
        "it compares nets with and without BatchNorm: no run has norm.name none "
        "(the runs have norm.name batch)",
        "it compares learning rates (paper: 0.1 and 0.5): needs runs at 2 or more values of "
        "optim.lr (the runs have optim.lr 0.1 only)",
    ]


def test_summary_lists_each_job_and_the_next_commands(sweeps, capsys):
    summary = script("summary")
    sweep = Path(sweeps["vgg"])
    assert summary.main([str(sweep), "--out", "repro"]) == 1  # not every job finished
    out = capsys.readouterr().out.splitlines()
    assert f"  finished  {sweep / '0'}  (step 6)" in out
    assert f"  failed    {sweep / '5'}  (step 2; RuntimeError: out of memory)" in out
    assert f"  diverged  {sweep / '3'}  (step 4; non-finite loss at step 4)" in out
    assert "  = 3 finished, 1 diverged, 1 failed, 1 running  [preset fig1]" in out
    assert f"  next: python analysis/fig1.py {sweep} --out repro/figures/fig1" in out
    assert out[-2] == f"report: python analysis/report.py {sweep} --out repro/report"
    assert out[-1].startswith("rerun the same sweep command to resume")
    assert summary.main([str(Path(sweeps["dln"]))]) == 0
    assert summary.main([str(sweep / "missing")]) == 2


def test_preset_list_describes_every_preset():
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "list_experiments.py")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    blocks = re.split(r"\n(?=\S)", proc.stdout.strip())
    names = [b.splitlines()[0] for b in blocks]
    assert names == sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
    for block in blocks:
        assert len(block.splitlines()) >= 2 and "(no description)" not in block, block
    fig1 = next(b for b in blocks if b.startswith("fig1\n"))
    assert "BatchNorm" in fig1


@pytest.mark.slow
def test_train_help_has_examples_and_the_presets():
    proc = subprocess.run(
        [sys.executable, "-m", "smoothbench.train", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "== Examples ==" in proc.stdout
    assert "smoothbench-train -m experiment=fig1 scale=cpu" in proc.stdout
    assert re.search(r"^experiment: .*fig1, .*fig4", proc.stdout, re.M)
    # every preset on a line of its own, with what it shows (from the preset's header)
    for path in (REPO / "conf" / "experiment").glob("*.yaml"):
        assert re.search(rf"^  {path.stem} +\S", proc.stdout, re.M), path.stem
    assert re.search(r"^  fig4 +Figure 4", proc.stdout, re.M)
    assert "python scripts/list_experiments.py" in proc.stdout
    assert "Powered by Hydra" not in proc.stdout  # not Hydra's default page


@pytest.mark.slow
def test_report_banner_links_wandb(tmp_path):
    """Online runs: the group page; offline runs: the `wandb sync` command of their files."""
    sweep = make_norms_sweep(tmp_path, experiment="fig2", name="fig2")
    (sweep / "0" / "wandb" / "offline-run-20260101_000000-abc").mkdir(parents=True)
    cfg = config("vgg11", "batch", 0.1, 0, experiment="fig2")
    cfg["logger"].update(name="wandb", entity="me", project="sb", group="fig2-smoke")
    write_run(sweep / "9", config=cfg, records=[vgg_record(0.2, 0)], status={"state": "finished"})
    page = script("report").write_report([str(sweep)], tmp_path / "out", figures=["fig2"])
    banner = page.read_text().split('id="provenance"')[1].split("</table>")[0]
    row = re.search(r"<tr><th>W&amp;B</th><td>(.*?)</td></tr>", banner).group(1)
    assert '<a href="https://wandb.ai/me/sb/groups/fig2-smoke">' in row
    assert (
        f"<code>wandb sync {sweep / '0' / 'wandb' / 'offline-run-20260101_000000-abc'}</code>"
        in row
    )


# --- a damaged run in a sweep: skipped with one line naming it, or refused with --strict -------


@pytest.mark.slow
def test_a_damaged_run_is_skipped_by_figures_and_report_and_refused_with_strict(
    sweeps, tmp_path, capsys, caplog
):
    sweep = Path(shutil.copytree(sweeps["vgg"], tmp_path / "sweep"))
    damaged = sweep / "1" / ".hydra" / "config.yaml"
    damaged.write_text("model: {name: [vgg\n")  # a torn write
    report = script("report")
    for main, args in (
        (script("fig1").main, [str(sweep), "--out", str(tmp_path / "fig")]),
        (report.main, [str(sweep), "--out", str(tmp_path / "report"), "--figures", "fig1"]),
    ):
        caplog.clear()
        assert main(args) == 0
        skipped = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
        assert len(skipped) == 1 and str(sweep / "1") in skipped[0]
        assert ".hydra/config.yaml cannot be read (" in skipped[0]
        capsys.readouterr()
        assert main([*args, "--strict"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ".hydra/config.yaml cannot be read" in err


def test_report_banner_reads_the_runs_provenance(tmp_path):
    """Runs that recorded provenance.json: the banner shows their commit, packages and threads,
    not the report process's."""
    sweep = make_norms_sweep(tmp_path, experiment="fig2", name="fig2")
    record = {
        "threads": 1,
        "git_commit": "0123456789abcdef",
        "git_dirty": True,
        "versions": {"torch": "2.9.0", "numpy": "2.1.0"},
    }
    for run_dir in sorted(p for p in sweep.iterdir() if (p / "metrics.jsonl").is_file()):
        (run_dir / "provenance.json").write_text(json.dumps(record))
    rows = dict(script("report").banner_rows([str(sweep)], read_runs([str(sweep)])))
    assert rows["git commit (runs)"] == "0123456789ab (with uncommitted changes)"
    assert rows["packages (runs)"] == "torch 2.9.0, numpy 2.1.0"
    assert rows["torch threads (runs)"] == "1"


# --- figures for a paper: --band, --format, --width, --no-warnings -----------------------------


def test_seed_bands_against_numpy_and_scipy():
    """sem = s / sqrt(n), ci95 = t(0.975, n - 1) s / sqrt(n), none = no band; one seed: none."""
    from scipy import stats

    from smoothbench.plotting import seed_band

    values = [1.0, 2.0, 4.0, 7.0]
    frame = pd.DataFrame(
        {"c": ["a"] * 4 + ["b"], "step": [0] * 5, "value": values + [3.0], "run": list("pqrst")}
    )
    s = np.std(values, ddof=1)
    sem = s / math.sqrt(4)
    half = {"sem": sem, "ci95": stats.t.ppf(0.975, 3) * sem, "none": 0.0, "std": s}
    for band, width in half.items():
        out = seed_band(frame, ["c"], band=band).set_index("c")
        assert out.loc["a", "mean"] == pytest.approx(3.5)
        assert out.loc["a", "hi"] - out.loc["a", "mean"] == pytest.approx(width)
        assert out.loc["a", "mean"] - out.loc["a", "lo"] == pytest.approx(width)
        assert out.loc["b", "lo"] == out.loc["b", "hi"] == 3.0  # one seed: no spread
    with pytest.raises(ValueError, match="choose one of: minmax, std, sem, ci95, none"):
        seed_band(frame, ["c"], band="iqr")


def test_band_is_named_in_the_legend(vgg):
    fig = script("fig3").make_figure(vgg, layers=[5], band="ci95")
    assert fig.legends[0].get_title().get_text() == (
        "line: mean over 1–2 seeds; band: 95 % t-interval of the mean over seeds "
        "(none for a single seed)"
    )
    fig = script("fig3").make_figure(vgg, layers=[5], band="none")
    assert fig.legends[0].get_title().get_text() == "line: mean over 1–2 seeds; no band"
    assert all(not ax.collections for ax in fig.axes)


def test_no_warnings_moves_them_to_the_caption_file(sweeps, tmp_path, capsys):
    from PIL import Image

    argv = [str(sweeps["vgg"]), "--out", str(tmp_path), "--layers", "5", "--band", "sem"]
    argv += ["--no-warnings", "--format", "svg", "--format", "pdf,png", "--width", "column"]
    assert script("fig3").main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out.split()
    assert [Path(p).name for p in printed] == [
        "fig3.svg",
        "fig3.pdf",
        "fig3.png",
        "fig3.caption.txt",
    ]
    caption = (tmp_path / "fig3.caption.txt").read_text().splitlines()
    assert caption[0] == (
        "line: mean over 1–2 seeds; band: ±1 standard error of the mean over seeds "
        "(none for a single seed)"
    )
    assert "Warning: diverged: Standard + BatchNorm, lr 0.1, seed 1" in caption
    assert "Warning:" not in (tmp_path / "fig3.svg").read_text()  # not on the image
    # column width (3.25 in at savefig.dpi 200); the fonts keep their point sizes
    assert Image.open(tmp_path / "fig3.png").size[0] == pytest.approx(650, abs=2)


def test_figures_keep_their_warnings_by_default(vgg):
    common = script("_common")
    with common.presenting(common.Presentation(warnings_on_figure=False)) as shown:
        quiet = script("fig3").make_figure(vgg, layers=[5])
    assert texts(quiet, "warnings") == ""
    assert any(line.startswith("Warning: diverged") for line in shown.caption)
    assert "Warning: diverged" in texts(script("fig3").make_figure(vgg, layers=[5]), "warnings")


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("--band", "iqr", "'minmax', 'std', 'sem', 'ci95', 'none'"),
        ("--format", "jpg", "pdf, png, svg"),
        ("--width", "wide", "'column', 'page'"),
    ],
)
def test_bad_figure_options_are_one_line_and_status_2(option, value, allowed, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        script("fig4").main([str(tmp_path), option, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"fig4: error: argument {option}")
    assert allowed in err


# --- the report for a paper ----------------------------------------------------------------------


def test_report_never_shows_none_as_a_reason(tmp_path):
    """Finished runs have a null reason: the column is empty, not "None"."""
    runs = make_norms_sweep(tmp_path, experiment="fig2", name="fig2")
    page = script("report").write_report([str(runs)], tmp_path / "out", figures=[]).read_text()
    every_run = page.split("<h3>Every run</h3>")[1].split("</table>")[0]
    assert "finished" in every_run
    assert "None" not in every_run and "nan" not in every_run


def test_report_commands_leave_out_hydra_plumbing(report_page):
    commands = report_page.split("Commands that produced the runs</h2>")[1]
    assert "smoothbench-train --multirun" in commands
    assert "hydra." not in commands  # hydra.sweep.dir=..., hydra.mode=..., hydra.output_subdir


def test_report_breaks_lines_between_words(report_page):
    """No mid-word breaks ("inconclusiv/e"): nothing breaks words anywhere; only paths and
    commands (<code>, <pre>, links) may break a word that is longer than the line."""
    style = report_page.split("<style>")[1].split("</style>")[0]
    assert "anywhere" not in style and "break-all" not in style
    assert "hyphens: manual" in style
    for rule in re.findall(r"([^{}]+)\{[^}]*overflow-wrap: break-word", style):
        assert set(rule.replace(",", " ").split()) <= {"pre", "code", "a"}, rule


def test_report_captions_state_the_paper_claim_and_the_verdict(report_page):
    from smoothbench.claims import CLAIMS_BY_ID

    caption = report_page.split('<figure id="fig1">')[1].split("</figure>")[0]
    claimed = caption.split('<ul class="claimed">')[1]
    items = re.findall(r"<li>(.*?)</li>", claimed)
    assert len(items) == len(script("figures").by_name(["fig1"])[0].claims)
    statement = html.escape(CLAIMS_BY_ID["bn_trains_faster"].statement)
    item = next(i for i in items if statement in i)
    assert item.startswith(f"The paper: {statement}")
    assert re.search(r'— <span class="measured [\w-]+">measured( \(\w+\))?: <b>[\w ]+</b>', item)
