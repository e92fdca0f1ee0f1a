"""smoothbench.results on synthetic run dirs whose numbers are known in closed form."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_runs import make_dln_sweep, make_vgg_sweep, write_run

from smoothbench.results import (
    MissingMetricError,
    aggregate_seeds,
    load_run_table,
    load_runs,
    load_surfaces,
    load_wandb_runs,
    metric_arrays,
    metric_frame,
    read_runs,
    run_command,
    sweep_command,
    wandb_run_records,
    wide_frame,
)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {"vgg": make_vgg_sweep(root), "dln": make_dln_sweep(root)}


@pytest.fixture(scope="module")
def vgg(sweeps) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torn last line is expected, not worth a warning
        return load_runs(sweeps["vgg"])


def values(df: pd.DataFrame, run: str, metric: str) -> dict[int, object]:
    rows = df[(df["run"] == run) & (df["metric"] == metric)]
    return dict(zip(rows["step"], rows["value"], strict=True))


def test_every_run_loads_with_its_status(vgg):
    statuses = vgg.groupby("run")["status"].first().to_dict()
    assert statuses == {
        "0": "finished",
        "1": "finished",
        "2": "finished",
        "3": "diverged",
        "4": "running",
        "5": "failed",
    }
    assert list(vgg.columns[:7]) == ["run", "run_dir", "status", "step", "epoch", "metric", "value"]


def test_scalar_values_are_the_logged_numbers(vgg):
    # train/acc = base + 0.01 step; run 1 has base 0.2
    assert values(vgg, "1", "train/acc") == pytest.approx(
        {0: 0.20, 1: 0.21, 2: 0.22, 3: 0.23, 4: 0.24, 5: 0.25}
    )
    # test/acc at the eval steps 0, 3, 5 and the final line at step 6 (base + 0.5)
    assert values(vgg, "1", "test/acc") == pytest.approx({0: 0.2, 3: 0.26, 5: 0.3, 6: 0.7})
    epochs = vgg[(vgg["run"] == "1") & (vgg["metric"] == "train/acc")]
    assert epochs["epoch"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]


def test_partial_runs_keep_what_was_written(vgg):
    # running: steps 0..3 written, the torn line of step 4 dropped
    assert sorted(values(vgg, "4", "train/acc")) == [0, 1, 2, 3]
    assert not ((vgg["run"] == "4") & (vgg["step"] == 4)).any()
    # failed at step 2: steps 0 and 1 only
    assert values(vgg, "5", "train/acc") == pytest.approx({0: 0.05, 1: 0.06})
    # diverged: the writer's null for NaN loads as NaN, the other metrics of that line stay
    loss = values(vgg, "3", "train/loss")
    assert math.isnan(loss[4]) and loss[3] == pytest.approx(2.0 - 0.4 - 0.3)
    assert values(vgg, "3", "train/acc")[4] == pytest.approx(0.44)


def test_list_metrics_stay_lists(vgg):
    quantiles = values(vgg, "0", "act/layer3/quantiles")[2]
    assert isinstance(quantiles, list)
    # center base + step + k = 0.1 + 2 + 3, width 0.1 k = 0.3
    assert quantiles == pytest.approx([5.1 + 0.3 * d for d in range(-4, 5)])
    assert values(vgg, "0", "hessian/bn_mode")[0] == "train"
    arrays = metric_arrays(vgg, "landscape/losses")
    first = arrays[(arrays["run"] == "0") & (arrays["step"] == 0)]["value"].iloc[0]
    assert isinstance(first, np.ndarray) and first == pytest.approx([1.9, 2.2, 1.7, 2.4])


def test_config_columns_are_the_varying_ones_plus_the_axes(sweeps, vgg):
    config = [c for c in vgg.columns[7:]]
    # norm, lr and seed vary; model.name is always there; the context keys (scale, budget,
    # width, data, device) for provenance; nothing else constant (batch_size, norm.eps, ...)
    assert config == ["model.name", "norm.name", "optim.lr", "seed"] + [
        "experiment",
        "scale",
        "steps",
        "model.width",
        "data.name",
        "device",
    ]
    row = vgg[vgg["run"] == "4"].iloc[0]
    assert (row["norm.name"], row["optim.lr"], row["seed"]) == ("batch", 0.5, 0)
    both = load_runs([sweeps["vgg"], sweeps["dln"]], metrics="train/loss")
    assert "experiment" in both.columns and "batch_size" not in both.columns
    assert set(both["model.name"]) == {"vgg11", "dln"}
    assert set(both["run"]) >= {"vgg_sweep/0", "dln_sweep/3"}
    assert set(both["metric"]) == {"train/loss"}


def test_status_filter_and_globs(sweeps):
    finished = load_runs(sweeps["vgg"], status="finished")
    assert sorted(finished["run"].unique()) == ["0", "1", "2"]
    some = load_runs(str(sweeps["vgg"] / "[3-4]"), status=["diverged", "running"])
    assert set(some["status"]) == {"diverged", "running"}
    with pytest.raises(ValueError, match="unknown run status 'done'; choose from: running"):
        load_runs(sweeps["vgg"], status="done")
    with pytest.raises(FileNotFoundError, match="no directory matches"):
        load_runs(sweeps["vgg"] / "nope")


def test_missing_or_unreadable_status_is_unknown(tmp_path):
    record = {"step": 0, "epoch": 0.0, "train/loss": 1.5}
    write_run(tmp_path / "a", config={"seed": 3}, records=[record], status=None)
    write_run(tmp_path / "b", config={"seed": 4}, records=[record], status=None)
    (tmp_path / "b" / "status.json").write_text("{not json")
    df = load_runs(tmp_path)
    assert df.groupby("run")["status"].first().to_dict() == {"a": "unknown", "b": "unknown"}
    # the axes exist even when the config lacks them
    assert df["norm.name"].isna().all() and sorted(df["seed"]) == [3, 4]


def test_bad_middle_line_is_skipped_with_a_warning(tmp_path):
    run = write_run(tmp_path / "r", config={}, records=[], status=None)
    (run / "metrics.jsonl").write_text('{"step":0,"x":1}\n{garbage\n{"step":1,"x":2}\n')
    with pytest.warns(UserWarning, match="line 2 is not JSON"):
        df = load_runs(run)
    assert df["value"].tolist() == [1.0, 2.0]


def test_run_table(sweeps):
    table = load_run_table(sweeps["vgg"]).set_index("run")
    assert table.loc["0", "final_train_acc"] == pytest.approx(0.15)
    assert table.loc["0", "final_test_acc"] == pytest.approx(0.6)
    assert table.loc["3", "final_step"] == 4
    assert table.loc["3", "reason"] == "non-finite loss at step 4"
    assert table.loc["5", "status"] == "failed"
    assert table.loc["4", "final_train_acc"] == pytest.approx(0.53)
    assert math.isnan(table.loc["3", "final_train_loss"])  # the last loss was the NaN


def test_metric_helpers(vgg):
    with pytest.raises(MissingMetricError, match="missing metric 'ics/layer7/l2'"):
        metric_frame(vgg, "ics/layer7/l2")
    wide = wide_frame(vgg, ["train/acc", "train/loss"])
    row = wide[(wide["run"] == "2") & (wide["step"] == 3)].iloc[0]
    assert row["train/acc"] == pytest.approx(0.33) and row["train/loss"] == pytest.approx(1.4)


def test_aggregate_seeds_mean_and_bands():
    frame = pd.DataFrame(
        {
            "norm.name": ["none"] * 6,
            "step": [0, 0, 0, 1, 1, 1],
            "value": [1.0, 2.0, 6.0, 4.0, np.nan, 2.0],
        }
    )
    minmax = aggregate_seeds(frame, ["norm.name"])
    assert minmax["mean"].tolist() == pytest.approx([3.0, 3.0])
    assert minmax["lo"].tolist() == [1.0, 2.0] and minmax["hi"].tolist() == [6.0, 4.0]
    assert minmax["n"].tolist() == [3, 2]
    std = aggregate_seeds(frame, ["norm.name"], band="std")
    s0 = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 2)
    s1 = math.sqrt(((4 - 3) ** 2 + (2 - 3) ** 2) / 1)
    assert std["lo"].tolist() == pytest.approx([3 - s0, 3 - s1])
    assert std["hi"].tolist() == pytest.approx([3 + s0, 3 + s1])
    with pytest.raises(ValueError, match="unknown band 'iqr'"):
        aggregate_seeds(frame, ["norm.name"], band="iqr")


def test_surfaces(sweeps):
    surfaces = load_surfaces(sweeps["vgg"])
    assert sorted(zip(surfaces["run"], surfaces["name"], strict=True)) == [
        ("0", "line"),
        ("0", "plane"),
        ("2", "plane"),
    ]
    plane = surfaces[(surfaces["run"] == "2")].iloc[0]
    assert plane["kind"] == "2d" and plane["settings"] == {"bn_mode": "eval"}
    # losses[i, j] = 1 + alpha_i^2 + 2 beta_j^2 on alphas linspace(-1, 1, 4), betas (-1, 0, 1)
    assert plane["losses"][0, 1] == pytest.approx(2.0)
    assert plane["losses"][1, 2] == pytest.approx(1 + 1 / 9 + 2)
    line = surfaces[surfaces["name"] == "line"].iloc[0]
    assert line["kind"] == "1d" and line["coords"] == pytest.approx([-1, -0.5, 0, 0.5, 1])


def test_commands_from_hydra_files(sweeps):
    dln = read_runs(sweeps["dln"])
    assert sweep_command(dln) == (
        "smoothbench-train --multirun hydra.sweep.dir=multirun/test "
        "experiment=fig10 norm=none,batch seed=0,1"
    )
    vgg = read_runs(sweeps["vgg"])
    assert sweep_command(vgg) is None  # 6 runs, not the 8 of a full norm x lr x seed grid
    assert run_command(vgg[3]) == (
        "smoothbench-train --multirun hydra.sweep.dir=multirun/test norm=batch optim.lr=0.1 seed=1"
    )


# --- W&B: recorded API-shaped objects, no network ----------------------------------------------


class FakeWandbRun:
    def __init__(self, run_id, config, state, summary, history):
        self.id = run_id
        self.path = ["ent", "proj", run_id]
        self.config = config
        self.state = state
        self.summary = summary
        self._history = history

    def scan_history(self):
        return iter(self._history)


class FakeApi:
    def __init__(self, runs):
        self._runs = runs
        self.calls = []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return list(self._runs)


def fake_runs():
    config = {
        "seed": 0,
        "model": {"name": "vgg11", "width": 0.25},
        "norm": {"name": "batch"},
        "optim": {"lr": 0.1},
        "_wandb": {"cli_version": "0.17"},
    }
    history = [
        {"_step": 0, "_runtime": 1.0, "step": 0, "epoch": 0.0, "train/loss": 2.3, "x": None},
        {
            "_step": 1,
            "_timestamp": 2.0,
            "epoch": 0.5,
            "train/loss": 2.1,
            "act/layer3/hist": {"_type": "histogram", "values": [1, 2]},
        },
    ]
    other = {**config, "norm": {"name": "none"}, "optim": {"lr": {"value": 0.5, "desc": None}}}
    return [
        FakeWandbRun("a1", config, "finished", {"state": "diverged"}, history),
        FakeWandbRun("b2", other, "crashed", {}, [{"_step": 3, "train/loss": 9.0}]),
    ]


def test_wandb_conversion():
    api = FakeApi(fake_runs())
    df = load_wandb_runs("ent/proj", group="fig1", api=api)
    assert api.calls == [("ent/proj", {"group": "fig1"})]
    assert df.groupby("run")["status"].first().to_dict() == {"a1": "diverged", "b2": "failed"}
    a1 = df[df["run"] == "a1"]
    assert a1["metric"].tolist() == ["train/loss", "train/loss"]  # no _keys, None or media
    assert a1["step"].tolist() == [0, 1] and a1["value"].tolist() == [2.3, 2.1]
    assert a1["epoch"].tolist() == [0.0, 0.5]
    assert a1["run_dir"].iloc[0] == "wandb:ent/proj/a1"
    b2 = df[df["run"] == "b2"].iloc[0]
    assert (b2["norm.name"], b2["optim.lr"], b2["step"]) == ("none", 0.5, 3)
    # W&B's own keys are dropped; model.width is constant but kept as context (figure footers)
    assert "_wandb.cli_version" not in df.columns and "model.width" in df.columns


def test_wandb_conversion_matches_local_loading(tmp_path):
    # the same run through both doors gives the same frame
    record = {"step": 0, "epoch": 0.0, "train/loss": 2.3, "train/acc": 0.1}
    cfg = {"seed": 1, "model": {"name": "dln"}, "norm": {"name": "none"}, "optim": {"lr": 1e-6}}
    write_run(tmp_path / "r", config=cfg, records=[record], status={"state": "finished"})
    local = load_runs(tmp_path / "r").drop(columns=["run", "run_dir"])
    fake = FakeWandbRun("r", cfg, "finished", {}, [{"_step": 0, **record}])
    remote = load_wandb_runs("e/p", api=FakeApi([fake])).drop(columns=["run", "run_dir"])
    pd.testing.assert_frame_equal(local, remote)
    assert len(wandb_run_records([fake])) == 1


def test_status_json_fields(tmp_path):
    run = write_run(tmp_path / "r", config={}, records=[], status=None)
    (run / "status.json").write_text(json.dumps({"state": "diverged", "step": 7, "reason": "nan"}))
    table = load_run_table(run)
    assert table[["status", "final_step", "reason"]].iloc[0].tolist() == ["diverged", 7, "nan"]
