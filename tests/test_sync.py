"""smoothbench-sync: a run's W&B history rebuilt or completed from its metrics.jsonl."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import REPO, compose_config, read_metrics

from smoothbench.sync import main, read_history, sync_run, wandb_records
from smoothbench.train import train


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """A finished smoke run without the W&B mirror (a compute node with no W&B), with the
    .hydra/ record the CLI writes."""
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_config("scale=smoke", "experiment=fig4", "norm=none", "steps=3", "probes=off")
    train(cfg, run_dir)
    (run_dir / ".hydra").mkdir()
    from omegaconf import OmegaConf

    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    (run_dir / ".hydra" / "overrides.yaml").write_text("- experiment=fig4\n- norm=none\n")
    return run_dir


def copy_run(run_dir, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


def history_steps(run_dir):
    (record,) = wandb_records(run_dir, (run_dir / "wandb_id.txt").read_text().strip())
    return [row["step"] for row in read_history(record)], record


@pytest.mark.slow
def test_sync_rebuilds_the_whole_history_offline(local_run, tmp_path, capsys):
    run_dir = copy_run(local_run, tmp_path)
    assert main([str(run_dir)]) == 0
    steps, record = history_steps(run_dir)
    ours = read_metrics(run_dir)
    assert steps == [r["step"] for r in ours] == [0, 1, 2, 3]
    rows = read_history(record)
    assert [r.get("train/loss") for r in rows] == [r.get("train/loss") for r in ours]
    out = capsys.readouterr().out
    assert f"wandb sync {record.parent}" in out
    # the run keeps one W&B id, recorded in the run dir for later resumes
    assert record.parent.name.endswith((run_dir / "wandb_id.txt").read_text().strip())


def test_sync_of_a_complete_record_writes_nothing(local_run, tmp_path, capsys):
    run_dir = copy_run(local_run, tmp_path)
    assert sync_run(run_dir)["logged"] == 4
    capsys.readouterr()
    again = sync_run(run_dir)
    assert again["logged"] == 0
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert "holds all 4 rows" in capsys.readouterr().out


@pytest.mark.slow
def test_sync_completes_a_mirror_that_lost_rows(local_run, tmp_path, capsys):
    run_dir = copy_run(local_run, tmp_path)
    # a mirror that stopped after two rows: its record holds steps 0 and 1 only
    full = (run_dir / "metrics.jsonl").read_bytes()
    head = b"".join(full.splitlines(keepends=True)[:2])
    (run_dir / "metrics.jsonl").write_bytes(head)
    sync_run(run_dir)
    (run_dir / "metrics.jsonl").write_bytes(full)
    result = sync_run(run_dir)
    assert result["logged"] == 4  # offline: a complete new record, to upload on its own
    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    records = wandb_records(run_dir, run_id)
    assert len(records) == 2
    assert [r["step"] for r in read_history(records[-1])] == [0, 1, 2, 3]
    assert result["sync_dir"] == records[-1].parent


def test_online_sync_sends_only_the_rows_no_record_holds(local_run, tmp_path, monkeypatch):
    import smoothbench.sync as sync

    run_dir = copy_run(local_run, tmp_path)
    full = (run_dir / "metrics.jsonl").read_bytes()
    (run_dir / "metrics.jsonl").write_bytes(b"".join(full.splitlines(keepends=True)[:2]))
    sync_run(run_dir)  # the record a stopped mirror left: steps 0, 1
    (run_dir / "metrics.jsonl").write_bytes(full)

    sent = []

    class FakeSink:
        run, sync_dir = object(), None

        @classmethod
        def for_run(cls, run_dir, config, overrides, **kwargs):
            assert kwargs["mode"] == "online"
            return cls()

        def log(self, row):
            sent.append(row["step"])

        def close(self, state):
            assert state == "finished"

    monkeypatch.setattr(sync, "WandbSink", FakeSink)
    assert sync_run(run_dir, mode="online")["logged"] == 2
    assert sent == [2, 3]


def test_bad_run_dirs_are_one_line_errors_with_exit_code_2(local_run, tmp_path):
    broken = copy_run(local_run, tmp_path)
    (broken / ".hydra" / "config.yaml").write_text("model: [unclosed\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "smoothbench.sync", str(empty), str(tmp_path / "nope"), str(broken)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 3, proc.stderr
    assert "has no metrics.jsonl" in lines[0] and str(empty) in lines[0]
    assert "is not a directory" in lines[1]
    assert "config.yaml is not a readable config" in lines[2]
    assert "Traceback" not in proc.stderr
