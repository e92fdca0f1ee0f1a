"""provenance.json: threads, device, commit and versions of a run's start; `threads` is applied."""

from __future__ import annotations

import json
import platform
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, cli

import smoothbench.provenance as provenance
from smoothbench.config import ConfigError
from smoothbench.results import read_run
from smoothbench.sinks import provenance as wandb_provenance
from smoothbench.train import train


def _read(run_dir: Path) -> dict:
    return json.loads((run_dir / "provenance.json").read_text())


def _git(*args: str) -> str:
    src = Path(provenance.__file__).parent
    return subprocess.run(["git", *args], cwd=src, capture_output=True, text=True).stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_a_run_records_the_threads_in_force_and_the_versions(smoke, tmp_path, monkeypatch, threads):
    before = torch.get_num_threads()
    seen = {}
    real = provenance.run_provenance

    def spy(device, step=0):
        seen["threads"] = torch.get_num_threads()
        return real(device, step)

    monkeypatch.setattr(provenance, "run_provenance", spy)
    train(smoke("steps=2", "probes=off", f"threads={threads}"), tmp_path)
    record = _read(tmp_path)
    assert record["threads"] == threads == seen["threads"]
    assert torch.get_num_threads() == before  # the caller's count is restored
    assert record["device"] == "cpu" and record["device_name"] is None
    assert record["started_at_step"] == 0
    versions = record["versions"]
    assert versions["python"] == platform.python_version()
    assert versions["torch"] == torch.__version__ and versions["numpy"] == np.__version__
    for package in ("smoothbench", "hydra-core"):
        assert versions[package]
    if _git("rev-parse", "HEAD"):  # a git checkout: the commit and whether it is dirty
        assert re.fullmatch(r"[0-9a-f]{40}", record["git_commit"])
        assert record["git_commit"] == _git("rev-parse", "HEAD")
        assert record["git_dirty"] is bool(_git("status", "--porcelain", "--untracked-files=no"))
    else:
        assert record["git_commit"] is None and record["git_dirty"] is None
    # the run record of smoothbench.results carries it
    assert read_run(tmp_path).provenance == record


def test_the_wandb_mirror_and_provenance_json_share_one_source():
    code = provenance.code_provenance()
    mirror = wandb_provenance()
    assert mirror["git_commit"] == code["git_commit"]
    assert set(mirror) == {"git_commit", "git_dirty", "versions"} == set(code)


@pytest.mark.parametrize("value", ["0", "-1", "1025"])
def test_bad_thread_counts_are_refused(smoke, tmp_path, value):
    with pytest.raises(ConfigError, match=rf"^threads={value} must be in \[1, 1024\]$"):
        train(smoke(f"threads={value}"), tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()
    assert not (tmp_path / "provenance.json").exists()


@pytest.mark.slow
def test_a_bad_thread_count_is_one_line_and_exit_2(tmp_path):
    proc = cli("scale=smoke", "threads=0", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["smoothbench-train: error: threads=0 must be in [1, 1024]"]
    assert not (tmp_path / "run").exists()


def test_a_resume_keeps_the_first_record(smoke, tmp_path, caplog):
    train(smoke("steps=4", "checkpoint_every=2", "probes=off"), tmp_path)
    first = _read(tmp_path)
    # as if the start had run elsewhere: the resume keeps that record and says what differs
    (tmp_path / "provenance.json").write_text(json.dumps({**first, "threads": 7}))
    kept = (tmp_path / "provenance.json").read_bytes()
    with caplog.at_level("WARNING", logger="smoothbench"):
        result = train(smoke("steps=6", "checkpoint_every=2", "probes=off"), tmp_path)
    assert result["state"] == "finished" and result["step"] == 6
    assert (tmp_path / "provenance.json").read_bytes() == kept
    assert "threads: 7 -> 1" in caplog.text
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*.tmp*"))


def test_a_run_that_starts_at_step_0_replaces_an_earlier_attempts_record(smoke, tmp_path):
    # an attempt killed before its first checkpoint: the rerun starts over, rows and record
    (tmp_path / "provenance.json").write_text(json.dumps({"threads": 7}))
    train(smoke("steps=2", "probes=off"), tmp_path)
    assert _read(tmp_path)["threads"] == 1


def test_git_state_outside_a_checkout_or_without_git_is_none(tmp_path, monkeypatch):
    unknown = {"git_commit": None, "git_dirty": None}
    assert provenance.git_state(tmp_path) == unknown

    def hangs(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], provenance.GIT_TIMEOUT_S)

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(provenance.subprocess, "run", hangs)
    assert provenance.git_state() == unknown
    monkeypatch.setattr(provenance.subprocess, "run", no_git)
    assert provenance.code_provenance()["git_commit"] is None


@pytest.mark.slow
def test_the_command_line_is_recorded(tmp_path):
    run = tmp_path / "run"
    args = ["scale=smoke", "steps=2", "probes=off", "progress=false", f"hydra.run.dir={run}"]
    proc = subprocess.run(
        ["smoothbench-train", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert _read(run)["command"] == shlex.join(["smoothbench-train", *args])
