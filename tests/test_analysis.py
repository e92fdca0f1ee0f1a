"""The figure scripts and the report: what they plot equals the numbers the runs logged.

The synthetic runs (tests/fixtures_runs.py) log closed forms of a per-run `base` and the step,
so every expected value below is computed by hand from those forms.
"""

from __future__ import annotations

import importlib
import math
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from fixtures_runs import make_dln_sweep, make_norms_sweep, make_vgg_sweep  # noqa: E402

from smoothbench.results import (  # noqa: E402
    MissingMetricError,
    load_runs,
    load_surfaces,
    load_wandb_runs,
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
    # the report falls back on recorded layers when the paper's are absent (a smaller net)
    common = script("_common")
    assert common.layers_for_report(vgg, "act/layer{}/quantiles", (3, 16)) == [3]
    assert common.layers_for_report(vgg, "act/layer{}/quantiles", (14, 16)) == [2, 13]


def test_make_figure_raises_missing_metric(sweeps):
    df = load_runs(sweeps["dln"])
    with pytest.raises(MissingMetricError, match="'ics/layer5/l2'"):
        script("fig3").make_figure(df, layers=[5])


# --- report ------------------------------------------------------------------------------------


def test_report(sweeps, tmp_path):
    report = script("report")
    path = report.write_report(
        [str(sweeps["vgg"]), str(sweeps["dln"])], tmp_path, figures=("fig3", "fig2", "surfaces")
    )
    page = path.read_text()
    # none at lr 0.1, finished seeds: train acc 0.15, 0.25; test acc 0.6, 0.7 (ddof = 1)
    std = math.sqrt(2 * 0.05**2)
    assert f"<td>{0.2:.4f} ± {std:.4f}</td>" in page
    assert f"<td>{0.65:.4f} ± {std:.4f}</td>" in page
    # batch at lr 0.1: one finished run (0.35, 0.8), the diverged one only counted
    assert "<td>0.3500</td>" in page and "<td>0.8000</td>" in page
    statuses = page.split("<h2>Run statuses</h2>")[1].split("<h3>Every run</h3>")[0]
    counts = dict(re.findall(r"<td>(\w+)</td>\s*<td>(\d+)</td>", statuses))
    assert counts == {"finished": "7", "diverged": "1", "running": "1", "failed": "1"}
    assert "RuntimeError: out of memory" in page
    assert "smoothbench-train --multirun hydra.sweep.dir=multirun/test experiment=fig10 " in page
    assert "norm=none,batch seed=0,1" in page
    assert page.count('src="data:image/png;base64,') == 2  # fig3 and surfaces
    assert "<b>fig2</b>: missing runs: no loaded run has norm.name noisy_batch" in page
    assert "<script" not in page and "http" not in page.split("<body>")[1]


def test_report_main(sweeps, tmp_path, capsys):
    report = script("report")
    assert report.main([str(sweeps["dln"]), "--out", str(tmp_path), "--figures", "fig3"]) == 0
    assert (tmp_path / "report.html").is_file()
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.html")
