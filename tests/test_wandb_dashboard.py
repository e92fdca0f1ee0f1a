"""scripts/wandb_dashboard.py: the figure spec against the presets and docs/metrics.md, the CLI,
and (where wandb-workspaces is installed) the workspaces it builds, never saved."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import unicodedata
from dataclasses import asdict

import pytest
import yaml
from conftest import REPO, compose_config
from omegaconf import OmegaConf

from smoothbench.sinks import DERIVED_KEYS

PRESETS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))


def load_script():
    path = REPO / "scripts" / "wandb_dashboard.py"
    spec = importlib.util.spec_from_file_location("wandb_dashboard", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


dash = load_script()


def preset(name: str) -> dict:
    return yaml.safe_load((REPO / "conf" / "experiment" / f"{name}.yaml").read_text())


def composed(name: str, scale: str = "paper") -> dict:
    """The preset's composed config at `scale` (regimes may set its layers), with `hydra`."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", [f"experiment={name}", f"scale={scale}"], return_hydra_config=True)
    return OmegaConf.to_container(cfg, resolve=False)


def mirrored_key_patterns() -> list[re.Pattern]:
    """Keys of docs/metrics.md that the W&B sink mirrors: scalars and the activation histograms."""
    patterns = []
    for line in (REPO / "docs" / "metrics.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([^`]+)`", cells[0])
        for key in keys:
            if cells[1] in ("float", "int") or key.endswith("/hist"):
                regex = re.escape(key).replace("layerK", r"layer(\d+)")
                patterns.append(re.compile(regex.replace("<param\\ name>", ".+") + "$"))
    return patterns


def spec_keys(spec) -> list[str]:
    return [key for section in spec.sections for panel in section.panels for key in panel.y]


def test_every_preset_has_exactly_one_figure():
    assert sorted(dash.FIGURES) == PRESETS
    for name, spec in dash.FIGURES.items():
        assert spec.group == preset(name)["experiment"] == name


@pytest.mark.parametrize("scale", ["smoke", "paper"])
def test_runs_of_each_preset_land_in_the_figure_group_of_their_scale(scale):
    from smoothbench.sinks import run_group

    cfg = compose_config("experiment=fig3_dln", "logger=wandb", f"scale={scale}")
    group = run_group(OmegaConf.to_container(cfg, resolve=True))
    assert group == dash.wandb_group(dash.FIGURES["fig3_dln"], scale) == f"fig3_dln-{scale}"


@pytest.mark.parametrize("name", PRESETS)
def test_panels_show_mirrored_keys_of_probed_layers(name):
    patterns = mirrored_key_patterns()
    assert any(p.match("train/acc") for p in patterns)  # the parser read the table
    assert not any(p.match("landscape/losses") for p in patterns)  # lists are not mirrored
    probes = composed(name)["probes"]
    for key in spec_keys(dash.FIGURES[name]):
        if key in DERIVED_KEYS:  # derived by the sink from a documented key
            continue
        matches = [m for m in (p.match(key) for p in patterns) if m]
        assert matches, f"{name}: {key} is not a scalar or histogram of docs/metrics.md"
        if key.startswith(("act/", "ics/")):
            probe = probes["activations" if key.startswith("act/") else "ics"]
            assert probe["schedule"]["kind"] != "off", f"{name}: {key} is never measured"
            assert int(matches[0].group(1)) in probe["layers"], f"{name}: {key} not probed"
        if key.startswith("landscape/"):
            assert probes["landscape"]["schedule"]["kind"] != "off", f"{name}: {key} not measured"


@pytest.mark.parametrize("name", PRESETS)
def test_groups_are_the_swept_config_keys(name):
    swept = composed(name)["hydra"]["sweeper"]["params"]
    # a config group (norm, model) is chosen by name; anything else is a value
    varied = {
        (k + ".name" if k in ("norm", "model") else k)
        for k, v in swept.items()
        if len(str(v).split(",")) > 1 and k != "seed"  # seeds are averaged, not grouped
    }
    assert set(dash.FIGURES[name].group_by) == varied
    cfg = compose_config(f"experiment={name}")
    for key in dash.FIGURES[name].group_by:
        assert OmegaConf.select(cfg, key) is not None, f"{name}: the run config has no {key}"


def test_log_scale_for_the_deep_linear_network_landscapes_and_moment_changes():
    for name, spec in dash.FIGURES.items():
        for section in spec.sections:
            for panel in section.panels:
                wants_log = name in ("fig10", "lp_dln") or panel.y[0].endswith("_change")
                assert panel.log_y == wants_log, (name, panel.title)


def test_fig8_moment_changes_are_on_a_log_axis():
    (moments,) = [s for s in dash.FIGURES["fig2"].sections if "Fig. 8" in s.name]
    assert [p.y[0] for p in moments.panels] == [
        f"act/layer{k}/{m}" for k in (2, 9, 13) for m in ("mean_change", "var_change")
    ]
    assert all(p.log_y for p in moments.panels)


def test_fig2_has_the_activation_distributions_of_its_probed_layers():
    hists = [k for k in spec_keys(dash.FIGURES["fig2"]) if k.endswith("/hist")]
    assert hists == [
        f"act/layer{k}/hist" for k in composed("fig2")["probes"]["activations"]["layers"]
    ]


@pytest.mark.parametrize("name", ["fig2", "fig4"])
def test_fig2_and_fig4_show_test_accuracy(name):
    keys = spec_keys(dash.FIGURES[name])
    assert "test/acc" in keys and "train/acc" in keys


def test_hessian_panel_plots_two_over_lr_not_lr():
    from smoothbench.sinks import WandbSink

    panels = [p for s in dash.FIGURES["hessian"].sections for p in s.panels]
    (edge,) = [p for p in panels if "2/lr" in p.title]
    assert edge.y == ("hessian/lambda_max", "train/two_over_lr")
    assert "train/lr" not in spec_keys(dash.FIGURES["hessian"])
    # the sink mirrors that key as 2 / train/lr
    sink = WandbSink.__new__(WandbSink)
    row = sink._to_wandb({"step": 3, "train/lr": 0.05, "hessian/lambda_max": 12.0})
    assert row["train/two_over_lr"] == pytest.approx(40.0)


def test_workspaces_filter_on_scale(capsys):
    assert dash.main(["--dry-run", "--figures", "fig4", "--scale", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)["fig4"]
    assert printed["wandb_group"] == "fig4-cpu" and printed["scale"] == "cpu"
    assert "cpu" in printed["workspace"]
    assert dash.main(["--dry-run", "--scale", "huge"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'huge'" in err and "smoke" in err


def test_named_figure_content():
    assert spec_keys(dash.FIGURES["fig1"]) == [
        "train/acc",
        "test/acc",
        "act/layer3/hist",
        "act/layer11/hist",
    ]
    assert spec_keys(dash.FIGURES["hessian"]) == [
        "hessian/lambda_max",
        "hessian/trace",
        "hessian/lambda_max",
        "train/two_over_lr",
    ]
    assert dash.FIGURES["fig1"].group_by == ("norm.name", "optim.lr")


def test_workspace_names_have_no_symbols():
    # W&B rejects any Unicode symbol (category S*, e.g. '+', '=') in a workspace name
    for spec in dash.FIGURES.values():
        assert not [c for c in spec.name if unicodedata.category(c).startswith("S")], spec.name


def test_dry_run_prints_the_spec_without_wandb_workspaces(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)  # any import of it now fails
    assert dash.main(["--dry-run", "--figures", "fig4", "fig10"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == ["fig4", "fig10"]
    panels = printed["fig10"]["sections"][0]["panels"]
    assert [p["y"] for p in panels] == [
        ["landscape/loss_variation"],
        ["landscape/grad_pred_max"],
        ["landscape/beta_smoothness"],
    ]
    assert all(p["log_y"] for p in panels)
    assert printed["fig4"]["group"] == "fig4"
    assert printed["fig4"]["wandb_group"] == "fig4-paper"  # the default scale


def test_unknown_figure_is_a_one_line_error(capsys):
    assert dash.main(["--dry-run", "--figures", "fig1", "fig9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'fig9'" in err
    assert all(name in err for name in PRESETS)


def test_real_mode_needs_entity_and_project(capsys):
    assert dash.main(["--project", "p"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--entity" in err


def test_real_mode_without_the_package_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)
    assert dash.main(["--entity", "e", "--project", "p"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wandb-workspaces" in err


@pytest.mark.parametrize("name", PRESETS)
def test_workspace_builds_with_the_spec_panels(name):
    pytest.importorskip("wandb_workspaces")
    spec = dash.FIGURES[name]
    workspace = dash.build_workspace(spec, entity="e", project="p")
    panels = [p for s in workspace.sections for p in s.panels]
    assert len(panels) == sum(len(s.panels) for s in spec.sections)
    assert [k for p in panels for k in p.y] == spec_keys(spec)
    assert {p.x for p in panels} == {"step"}
    assert [bool(p.log_y) for p in panels] == [p.log_y for s in spec.sections for p in s.panels]

    # what W&B stores: nested config keys as "<top>.value.<rest>", the run group under "group"
    view = workspace._to_model()
    runset = view.spec.section.run_sets[0]
    expected = [k.split(".", 1)[0] + ".value." + k.split(".", 1)[1] for k in spec.group_by]
    assert [(g.section, g.name) for g in runset.grouping] == [("config", k) for k in expected]
    (group_filter,) = runset.filters["filters"]
    assert group_filter["key"] == {"section": "run", "name": "group"}
    assert group_filter["value"] == f"{name}-paper"
    assert view.spec.section.settings.x_axis == "step"


def test_real_mode_saves_every_requested_workspace(monkeypatch):
    workspaces = pytest.importorskip("wandb_workspaces.workspaces")
    saved = []
    monkeypatch.setattr(workspaces.Workspace, "save", lambda self: saved.append(self) or self)
    assert dash.main(["--entity", "e", "--project", "p", "--figures", "fig1", "hessian"]) == 0
    assert [w.name for w in saved] == [
        dash.workspace_name(dash.FIGURES["fig1"], "paper"),
        dash.workspace_name(dash.FIGURES["hessian"], "paper"),
    ]
    assert {(w.entity, w.project) for w in saved} == {("e", "p")}


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_per_layer_panels_show_the_layers_measured_at_the_scale(name, scale):
    probes = composed(name, scale)["probes"]
    spec = dash.at_layers(dash.FIGURES[name], dash.preset_layers(name, scale))
    for key in spec_keys(spec):
        match = dash.LAYER_KEY.fullmatch(key)
        if match:
            probe = probes[dash.PROBE_OF[match.group(1)]]
            assert probe["schedule"]["kind"] != "off", f"{name}: {key} is never measured"
            assert int(match.group(2)) in probe["layers"], f"{name} at {scale}: {key} not probed"
    if scale == "paper":  # the paper's own layers: the figure table's panels, unchanged
        assert spec == dash.FIGURES[name]


def test_at_cpu_scale_fig1_shows_vgg11s_layers_2_and_7(capsys):
    assert dash.main(["--dry-run", "--figures", "fig1", "fig2", "--scale", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    fig1 = [p["y"][0] for s in printed["fig1"]["sections"] for p in s["panels"]]
    assert fig1 == ["train/acc", "test/acc", "act/layer2/hist", "act/layer7/hist"]
    (moments,) = [s for s in printed["fig2"]["sections"] if "Fig. 8" in s["name"]]
    assert [p["y"][0] for p in moments["panels"]] == [
        f"act/layer{k}/{m}" for k in (2, 6, 8) for m in ("mean_change", "var_change")
    ]
    assert all(p["log_y"] for p in moments["panels"])


def test_layers_are_read_from_the_runs_of_the_preset_and_scale(tmp_path, capsys):
    from fixtures_runs import ACT_LAYERS, ICS_LAYERS, make_dln_sweep, make_vgg_sweep

    make_vgg_sweep(tmp_path, experiment="fig1")  # scale smoke, act layers 2, 3, 9, 11, 13
    make_vgg_sweep(tmp_path, experiment="fig3", name="fig3_sweep")  # ics layers 5, 10
    make_dln_sweep(tmp_path)  # fig10: no per-layer panels
    layers = dash.run_layers([str(tmp_path)], "smoke")
    assert layers["fig1"] == {"act": ACT_LAYERS, "ics": ICS_LAYERS}
    assert dash.run_layers([str(tmp_path)], "cpu") == {}  # no run at that scale
    argv = ["--dry-run", "--scale", "smoke", "--runs", str(tmp_path), "--figures"]
    assert dash.main([*argv, "fig1", "fig3", "fig4"]) == 0
    printed = json.loads(capsys.readouterr().out)
    hists = [p["y"][0] for s in printed["fig1"]["sections"][1:] for p in s["panels"]]
    assert hists == [f"act/layer{k}/hist" for k in ACT_LAYERS]
    ics = [p["y"][0] for s in printed["fig3"]["sections"] for p in s["panels"]]
    assert ics == [f"ics/layer{k}/{m}" for k in ICS_LAYERS for m in ("l2", "cosine")]
    # fig4 has no run there: its panels come from the preset's config (and have no layers)
    paper_sections = [asdict(s) for s in dash.FIGURES["fig4"].sections]
    assert printed["fig4"]["sections"] == json.loads(json.dumps(paper_sections))
    assert dash.main(["--dry-run", "--runs", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err


def test_a_probe_that_is_off_drops_its_section():
    spec = dash.at_layers(dash.FIGURES["fig2"], {"act": (), "ics": ()})
    assert [s.name for s in spec.sections] == ["Accuracy (Fig. 2)"]
