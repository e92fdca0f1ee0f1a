"""The W&B mirror: complete on disk at the end, retries, backfill, names, tags, group, config."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from conftest import read_metrics, read_status

from smoothbench.sinks import WandbSink, run_group, run_name, run_tags
from smoothbench.sync import read_history
from smoothbench.train import train


def offline_record(run_dir: Path) -> Path:
    """The one offline W&B run file of a run dir, named by the run dir's W&B id."""
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    assert runs[0].name.endswith(run_id)
    (record,) = runs[0].glob("*.wandb")
    return record


@pytest.mark.slow
def test_wandb_offline_mirror(smoke, tmp_path, capsys, caplog):
    # The run file's last 32 KiB block reaches the disk when W&B's service closes the stream,
    # after run.finish() returns; this failed under load ([0, 1] of [0, 1, 2, 3]) until close()
    # waited for it. Steps=3 with the default probes spans several blocks.
    caplog.set_level("INFO", logger="smoothbench.sinks")
    train(smoke("logger=wandb", "steps=3"), tmp_path)
    record = offline_record(tmp_path)
    assert record.stat().st_size > 32768  # the failure needs a partial last block
    history = read_history(record)
    ours = read_metrics(tmp_path)
    assert [h["step"] for h in history] == [r["step"] for r in ours] == [0, 1, 2, 3]
    assert [h["train/loss"] for h in history[:-1]] == [r["train/loss"] for r in ours[:-1]]
    assert history[-1]["test/acc"] == ours[-1]["test/acc"]
    assert [h["train/two_over_lr"] for h in history[:-1]] == [2 / r["train/lr"] for r in ours[:-1]]
    histograms = [k for k, v in history[0].items() if k.endswith("/hist/_type")]
    assert histograms and all(history[0][k] == "histogram" for k in histograms)
    assert read_status(tmp_path)["state"] == "finished"
    # W&B is silenced, so the run says the upload command itself (in its log, or on stdout)
    said = capsys.readouterr().out + caplog.text
    assert f"wandb sync {record.parent}" in said


@pytest.mark.slow
def test_wandb_failure_does_not_stop_training(smoke, tmp_path, monkeypatch):
    import wandb

    def broken_init(*args, **kwargs):
        raise RuntimeError("no W&B today")

    monkeypatch.setattr(wandb, "init", broken_init)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(smoke("logger=wandb"), tmp_path)
    assert result["state"] == "finished"
    messages = [str(w.message) for w in caught]
    assert any("W&B could not start" in m and "smoothbench-sync" in m for m in messages)
    assert len(read_metrics(tmp_path)) == 7


@pytest.mark.slow
def test_a_mirror_that_stopped_mid_run_is_complete_at_the_end(smoke, tmp_path, monkeypatch):
    import wandb

    import smoothbench.sinks as sinks

    monkeypatch.setattr(sinks, "RETRY_DELAYS", (0.0, 0.0))
    real_log, calls = wandb.sdk.wandb_run.Run.log, []

    def failing_log(self, data, *args, **kwargs):
        calls.append(data["step"])
        if data["step"] == 1 and calls.count(1) <= 3:  # every try of step 1 during the run
            raise ConnectionError("W&B unreachable")
        return real_log(self, data, *args, **kwargs)

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", failing_log)
    with pytest.warns(UserWarning, match="mirror pauses"):
        train(smoke("logger=wandb", "steps=3", "probes=off"), tmp_path)
    # paused after step 1: steps 2 and 3 were not sent during the run, then backfilled
    assert calls == [0, 1, 1, 1, 1, 2, 3]
    history = read_history(offline_record(tmp_path))
    assert sorted(h["step"] for h in history) == [r["step"] for r in read_metrics(tmp_path)]
    assert sorted(h["step"] for h in history) == [0, 1, 2, 3]


class FlakyRun:
    """A stand-in W&B run whose `log` fails on chosen calls."""

    def __init__(self, fail_calls: set[int]):
        self.fail_calls, self.calls, self.rows = fail_calls, 0, []
        self.summary = {}

    def log(self, data):
        self.calls += 1
        if self.calls in self.fail_calls:
            raise ConnectionError("transient")
        self.rows.append(data)


def flaky_sink(tmp_path: Path, run: FlakyRun, delays=(0.0, 0.0)) -> WandbSink:
    sink = WandbSink.__new__(WandbSink)  # no wandb.init: the run is the stand-in
    sink.run, sink.run_dir, sink.record_path = run, tmp_path, tmp_path / "metrics.jsonl"
    sink.retry_delays, sink.echo, sink.sync_dir = delays, print, None
    sink._logged, sink._first_step, sink._paused, sink._started = set(), None, False, True
    sink._wandb = None
    return sink


def test_a_transient_log_failure_is_retried_not_fatal(tmp_path):
    run = FlakyRun(fail_calls={2, 3})  # step 1 fails twice, then goes through
    sink = flaky_sink(tmp_path, run)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a retried success warns about nothing
        for step in range(4):
            sink.log({"step": step, "train/loss": float(step)})
    assert [r["step"] for r in run.rows] == [0, 1, 2, 3]
    assert not sink._paused


def test_a_stopped_mirror_backfills_its_missing_rows_from_the_record(tmp_path):
    from smoothbench.sinks import JsonlSink

    run = FlakyRun(fail_calls={3, 4, 5})  # step 2: every try fails, the mirror pauses
    sink = flaky_sink(tmp_path, run)
    jsonl = JsonlSink(tmp_path / "metrics.jsonl")
    with pytest.warns(UserWarning, match="mirror pauses"):
        for step in range(5):
            record = {"step": step, "train/loss": float(step), "train/lr": 0.5}
            jsonl.log(record)
            sink.log(record)
    assert [r["step"] for r in run.rows] == [0, 1]
    jsonl.close()
    assert sink.backfill() == 0
    assert sorted(r["step"] for r in run.rows) == [0, 1, 2, 3, 4]
    assert {r["train/two_over_lr"] for r in run.rows} == {4.0}


def test_a_mirror_still_down_at_the_end_gives_up_after_one_row(tmp_path):
    from smoothbench.sinks import JsonlSink

    run = FlakyRun(fail_calls=set(range(2, 100)))  # down from step 1 on
    sink = flaky_sink(tmp_path, run)
    jsonl = JsonlSink(tmp_path / "metrics.jsonl")
    with pytest.warns(UserWarning, match="mirror pauses"):
        for step in range(6):
            jsonl.log({"step": step})
            sink.log({"step": step})
    jsonl.close()
    calls = run.calls
    with pytest.warns(UserWarning):
        assert sink.backfill() == 5
    assert run.calls - calls == 3  # one row's tries (1 + 2 retries), not 5 rows' worth


def test_a_resumed_mirror_backfills_only_its_own_session(tmp_path):
    from smoothbench.sinks import JsonlSink

    jsonl = JsonlSink(tmp_path / "metrics.jsonl")
    for step in range(3):  # an earlier session, mirrored by its own W&B run
        jsonl.log({"step": step})
    run = FlakyRun(fail_calls={1, 2, 3})
    sink = flaky_sink(tmp_path, run)
    with pytest.warns(UserWarning):
        for step in range(3, 5):
            jsonl.log({"step": step})
            sink.log({"step": step})
    jsonl.close()
    sink.backfill()
    assert sorted(r["step"] for r in run.rows) == [3, 4]


@pytest.mark.parametrize(
    ("config", "overrides", "name"),
    [
        (
            {"experiment": "fig1", "seed": 0, "model": {"name": "vgg16"}, "norm": {"name": "x"}},
            ["norm=batch", "optim.lr=0.5", "seed=0", "experiment=fig1", "scale=smoke"],
            "fig1-batch-lr0.5-s0",
        ),
        (
            {"experiment": "fig1", "seed": 0, "model": {"name": "vgg16"}, "norm": {"name": "x"}},
            ["norm=batch", "optim.lr=0.1", "seed=0", "hydra.run.dir=/x", "logger=wandb"],
            "fig1-batch-lr0.1-s0",
        ),
        (
            {"seed": 2, "model": {"name": "vgg11"}, "norm": {"name": "none"}},
            ["norm=none", "model.width=0.25", "seed=2", "data.root=/data"],
            "vgg11-none-width0.25-s2",
        ),
        (
            {"experiment": "hessian", "seed": 0, "model": {}, "norm": {}},
            ["model=resnet56", "norm=none", "model.shortcut=false", "seed=0"],
            "hessian-resnet56-none-shortcutfalse-s0",
        ),
        (
            {"seed": 0, "model": {"name": "vgg11"}, "norm": {"name": "batch"}},
            ["probes=off", "steps=2", "hydra.output_subdir=null", "+optim.momentum=0.9"],
            "vgg11-batch-momentum0.9-s0",
        ),
        (  # bookkeeping: how often to evaluate, checkpoint or probe, where and how to run
            {"experiment": "fig1", "seed": 1, "model": {}, "norm": {}},
            [
                "checkpoint_every=20",
                "eval_every=20",
                "eval_batch_size=512",
                "keep_checkpoints=[100]",
                "progress=false",
                "threads=4",
                "device=cuda",
                "resume=never",
                "logger=wandb",
                "logger.mode=online",
                "launcher=slurm",
                "probes.ics.schedule.every=10",
                "probes.activations.layers=[2,7]",
                "norm=batch",
                "optim.lr=0.5",
                "seed=1",
            ],
            "fig1-batch-lr0.5-s1",
        ),
        (  # under a decaying lr the budget shapes the schedule, so it names the run
            {
                "seed": 0,
                "model": {"name": "vgg11"},
                "norm": {"name": "batch"},
                "optim": {"schedule": "cosine"},
            },
            ["steps=200", "data=cifar10", "optim.weight_decay=5e-4"],
            "vgg11-batch-steps200-cifar10-weight_decay5e-4-s0",
        ),
    ],
)
def test_run_names_carry_the_swept_keys(config, overrides, name):
    assert run_name(config, overrides) == name


def test_tags_and_group_separate_scales_and_experiments():
    config = {
        "experiment": "fig4",
        "scale": "smoke",
        "model": {"name": "vgg16"},
        "norm": {"name": "batch"},
        "logger": {"group": None},
    }
    assert run_tags(config, ["mine"]) == [
        "scale:smoke",
        "experiment:fig4",
        "model:vgg16",
        "norm:batch",
        "mine",
    ]
    assert run_group(config) == "fig4-smoke"
    assert run_group({**config, "scale": "paper"}) == "fig4-paper"
    assert run_group({**config, "logger": {"group": "mine"}}) == "mine"
    assert run_group({**config, "experiment": None}) is None


@pytest.mark.slow
def test_the_wandb_run_records_name_tags_group_and_provenance(smoke, tmp_path, monkeypatch):
    import wandb

    seen = {}
    real_init = wandb.init

    def spy_init(**kwargs):
        seen.update(kwargs)
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", spy_init)
    cfg = smoke("experiment=fig4", "logger=wandb", "norm=none", "steps=1", "probes=off")
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(
        "- experiment=fig4\n- scale=smoke\n- norm=none\n- seed=0\n"
    )
    train(cfg, tmp_path)
    assert seen["name"] == "fig4-none-s0"
    assert seen["group"] == "fig4-smoke"
    assert {"scale:smoke", "experiment:fig4", "model:vgg16", "norm:none"} <= set(seen["tags"])
    config = seen["config"]
    assert config["run_dir"] == str(tmp_path.resolve())
    assert config["overrides"] == ["experiment=fig4", "scale=smoke", "norm=none", "seed=0"]
    assert len(config["git_commit"]) == 40
    assert config["versions"]["torch"] and config["versions"]["wandb"]


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.parametrize("env", ["offline", "disabled"])
def test_wandb_mode_follows_the_environment(smoke, tmp_path, monkeypatch, env):
    monkeypatch.setenv("WANDB_MODE", env)
    cfg = smoke("logger=wandb", "steps=1", "probes=off")
    assert cfg.logger.mode == env
    assert train(cfg, tmp_path)["state"] == "finished"
    assert len(offline_runs(tmp_path)) == (env == "offline")


def test_wandb_mode_without_the_environment_is_offline(smoke, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert smoke("logger=wandb").logger.mode == "offline"


def test_an_explicit_logger_mode_wins_over_the_environment(smoke, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")  # would need W&B's servers, were it obeyed
    cfg = smoke("logger=wandb", "logger.mode=offline", "steps=1", "probes=off")
    assert train(cfg, tmp_path)["state"] == "finished"
    (folder,) = offline_runs(tmp_path)
    history = read_history(next(folder.glob("*.wandb")))
    assert [h["step"] for h in history] == [r["step"] for r in read_metrics(tmp_path)]
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert smoke("logger=wandb", "logger.mode=disabled").logger.mode == "disabled"


def test_a_null_mode_lets_wandb_decide(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    sink = WandbSink.for_run(tmp_path, {"logger": {"mode": None}}, [], echo=lambda line: None)
    assert sink.run.settings.mode == "offline"
    sink.close("finished")
    assert len(offline_runs(tmp_path)) == 1


def test_a_run_started_by_a_wandb_agent_keeps_the_agents_run_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_RUN_ID", "sweeprun123")  # what `wandb agent` sets
    sink = WandbSink.for_run(tmp_path, {"logger": {}}, [], echo=lambda line: None)
    sink.close("finished")
    assert (tmp_path / "wandb_id.txt").read_text().strip() == "sweeprun123"
    (folder,) = offline_runs(tmp_path)
    assert folder.name.endswith("-sweeprun123")


def test_an_unknown_logger_mode_is_a_one_line_error(smoke, tmp_path, monkeypatch):
    from smoothbench.config import ConfigError, validate

    with pytest.raises(ConfigError, match=r"unknown logger.mode 'cloud'; choose one of") as err:
        validate(smoke("logger=wandb", "logger.mode=cloud"))
    assert "\n" not in str(err.value)
    monkeypatch.setenv("WANDB_MODE", "dryrun")  # W&B's own legacy word: not one of ours
    with pytest.raises(ConfigError, match="'dryrun'"):
        validate(smoke("logger=wandb"))
    with pytest.raises(ValueError, match=r"^unknown logger.mode 'cloud'; choose one of: online"):
        WandbSink(tmp_path, {}, project="p", mode="cloud")
    assert not (tmp_path / "wandb_id.txt").exists()
