"""The run record cannot be corrupted: one writer per run dir, honest resume, divergence as a
result, every bad input refused up front (one line, exit 2, nothing changed), disk faults and
signals that leave a resumable record."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, cli, read_metrics, read_status

from smoothbench.checkpoint import load_checkpoint
from smoothbench.config import ConfigError, validate
from smoothbench.run.record import RunFailed
from smoothbench.rundir import LOCK_NAME, RunDirBusy, RunLock
from smoothbench.train import summary_line, train


def tree_hash(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> sha256): a run dir byte for byte."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name]


COMMON = ("probes=off", "checkpoint_every=2", "eval_every=2")


# ---- honest resume ----


def test_fewer_steps_than_the_checkpoint_is_refused(smoke, tmp_path):
    train(smoke("steps=6", *COMMON), tmp_path)
    before = tree_hash(tmp_path)
    with pytest.raises(
        ConfigError, match=r"^steps=4 is below the step of the run dir's checkpoint \(6\)"
    ):
        train(smoke("steps=4", *COMMON), tmp_path)
    assert tree_hash(tmp_path) == before


@pytest.mark.slow
def test_short_metrics_is_refused_and_recovered_from_an_earlier_checkpoint(smoke, tmp_path):
    train(smoke("steps=6", *COMMON), tmp_path / "whole")
    whole = (tmp_path / "whole" / "metrics.jsonl").read_bytes()
    run = tmp_path / "cut"
    train(smoke("steps=5", *COMMON), run)  # checkpoints at 2 and 4 (prev.pt: 2), final at 5
    assert load_checkpoint(run / "checkpoints" / "prev.pt")["step"] == 4
    # a power cut took the rows from step 4 on: last.pt (5) points past them, prev.pt (4) not
    rows = (run / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    (run / "metrics.jsonl").write_bytes(b"".join(rows[:4]))
    before = tree_hash(run)
    with pytest.raises(ConfigError, match=r"has \d+ bytes but the checkpoint at step 5 expects"):
        train(smoke("steps=6", *COMMON), run)
    assert tree_hash(run) == before  # refused: nothing changed, no NUL padding
    result = train(smoke("steps=6", *COMMON, "resume=from_checkpoint"), run)
    assert result["state"] == "finished"
    assert (run / "metrics.jsonl").read_bytes() == whole


@pytest.mark.slow
def test_missing_metrics_is_refused_and_rerun_from_step_0(smoke, tmp_path):
    train(smoke("steps=4", *COMMON), tmp_path / "whole")
    run = tmp_path / "lost"
    train(smoke("steps=4", *COMMON), run)
    (run / "metrics.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"metrics\.jsonl is missing.*resume=from_checkpoint"):
        train(smoke("steps=4", *COMMON), run)
    assert not (run / "metrics.jsonl").exists()
    train(smoke("steps=4", *COMMON, "resume=from_checkpoint"), run)
    assert (run / "metrics.jsonl").read_bytes() == (
        tmp_path / "whole" / "metrics.jsonl"
    ).read_bytes()


def test_metrics_are_on_disk_before_each_checkpoint(smoke, tmp_path, monkeypatch):
    import smoothbench.run.session as session

    events = []
    real_fsync, real_save = session._fsync, session.save_checkpoint
    monkeypatch.setattr(session, "_fsync", lambda p: (events.append("fsync"), real_fsync(p)))
    monkeypatch.setattr(
        session, "save_checkpoint", lambda p, d: (events.append("save"), real_save(p, d))
    )
    train(smoke("steps=4", *COMMON), tmp_path)
    assert events == ["fsync", "save", "fsync", "save"]


def test_resumed_finished_run_says_already_finished(smoke, tmp_path):
    cfg = smoke("steps=4", *COMMON)
    train(cfg, tmp_path)
    before = tree_hash(tmp_path)
    result = train(cfg, tmp_path)
    assert summary_line(result, 0.1).startswith("already finished at step 4; ")
    assert tree_hash(tmp_path) == before


# ---- one writer per run dir ----


def test_a_held_lock_refuses_a_second_writer_naming_the_holder(smoke, tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from smoothbench.rundir import RunLock; "
            f"RunLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirBusy, match=f"in use by pid {holder.pid} on host "):
            train(smoke(*COMMON), tmp_path)
        assert not (tmp_path / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: the kernel dropped its lock, the file is taken over
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder.pid
    assert train(smoke("steps=2", *COMMON), tmp_path)["state"] == "finished"
    assert not (tmp_path / LOCK_NAME).exists()  # released at the end


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, monkeypatch):
    import fcntl

    # a lock still reported as held although its holder (same host) is gone, as a network
    # filesystem's lock server may do: simulate the refusal of the first attempt
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    dead_pid = int(dead.stdout)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead_pid, "host": socket.gethostname()}))
    real_lockf, calls = fcntl.lockf, []

    def lockf(fd, op):
        calls.append(op)
        if len(calls) == 1:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        return real_lockf(fd, op)

    monkeypatch.setattr(fcntl, "lockf", lockf)
    lock = RunLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    # a live holder is never taken over
    calls.clear()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": socket.gethostname()}))
    with pytest.raises(RunDirBusy, match="in use by pid 1 on host"):
        RunLock(tmp_path).acquire()


def _wait_for_rows(path: Path, n: int, proc, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("run made no progress")


@pytest.mark.slow
def test_concurrent_writer_exits_2_and_sigint_leaves_a_resumable_run(tmp_path):
    run = tmp_path / "run"
    args = ["scale=smoke", "probes=off", "eval_every=1000", "checkpoint_every=50"]
    first = subprocess.Popen(
        [sys.executable, "-m", "smoothbench.train", *args, "steps=100000", f"hydra.run.dir={run}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    _wait_for_rows(run / "metrics.jsonl", 3, first)
    hydra_before = tree_hash(run / ".hydra")
    started = time.time()
    second = cli(*args, "steps=100000", "optim.lr=0.5", f"hydra.run.dir={run}")
    assert second.returncode == 2
    assert second.stderr.strip() == (
        f"smoothbench-train: error: run dir {str(run)!r} is in use by pid {first.pid} on host "
        f"{socket.gethostname()} (lock .lock); wait for that run to end or use another run dir"
    )
    assert time.time() - started < 30  # at once: no data or model was built
    assert tree_hash(run / ".hydra") == hydra_before

    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 128 + signal.SIGINT, err
    assert "Traceback" not in err and "Traceback" not in out
    status = read_status(run)
    assert status["state"] == "running" and "stopped by SIGINT" in status["reason"]
    stopped_at = status["step"]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == stopped_at
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == list(range(stopped_at))
    assert {r["train/lr"] for r in rows} == {0.1}  # one trajectory only

    end = stopped_at + 5  # a shorter budget, still past the checkpoint: allowed
    resumed = cli(*args, f"steps={end}", f"hydra.run.dir={run}")
    assert resumed.returncode == 0, resumed.stderr
    assert [r["step"] for r in read_metrics(run)] == list(range(end + 1))
    log = (run / "train.log").read_text()
    assert "model vgg11" in log and f"resuming at step {stopped_at}" in log
    assert f"finished at step {end}" in log


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_resume_continues_bitwise(smoke, tmp_path, monkeypatch):
    from smoothbench.sinks import JsonlSink

    cfg = smoke("steps=6", "probes=off", "checkpoint_every=100", "eval_every=2")
    train(cfg, tmp_path / "whole")
    real_log = JsonlSink.log
    seen = {}

    def log(self, record):
        real_log(self, record)
        if record["step"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(JsonlSink, "log", log)
    result = train(cfg, tmp_path / "run")
    seen["status"] = read_status(tmp_path / "run")
    monkeypatch.setattr(JsonlSink, "log", real_log)
    assert result["state"] == "running" and result["signal"] == signal.SIGTERM
    assert seen["status"]["state"] == "running" and seen["status"]["step"] == 2
    assert seen["status"]["heartbeat"]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2
    train(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == (
        tmp_path / "whole" / "metrics.jsonl"
    ).read_bytes()


def test_status_heartbeat_is_updated_at_each_checkpoint(smoke, tmp_path, monkeypatch):
    from smoothbench.sinks import JsonlSink

    real_log, seen = JsonlSink.log, []

    def log(self, record):
        real_log(self, record)
        seen.append((record["step"], read_status(tmp_path)))

    monkeypatch.setattr(JsonlSink, "log", log)
    train(smoke("steps=6", *COMMON), tmp_path)
    # after the rows of steps 2 and 4 the checkpoint before them (at 2, at 4) is in status.json
    assert seen[0][1]["step"] == 0 and seen[0][1]["steps_per_s"] is None
    assert seen[2][1]["step"] == 2 and seen[4][1]["step"] == 4
    assert seen[4][1]["steps_per_s"] > 0 and seen[4][1]["heartbeat"].endswith("Z")


# ---- disk faults ----


@pytest.mark.slow
def test_full_disk_fails_in_one_line_and_damages_nothing(smoke, tmp_path, monkeypatch):
    from smoothbench.sinks import JsonlSink

    cfg = smoke("steps=6", *COMMON)
    real_log = JsonlSink.log

    def log(self, record):
        if record["step"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_log(self, record)

    monkeypatch.setattr(JsonlSink, "log", log)
    with pytest.raises(RunFailed, match="^run failed: No space left on device"):
        train(cfg, tmp_path)
    status = read_status(tmp_path)
    assert status["state"] == "failed" and "No space left on device" in status["reason"]
    assert temp_files(tmp_path) == []
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1, 2]
    monkeypatch.setattr(JsonlSink, "log", real_log)
    train(cfg, tmp_path)  # the disk has room again: the run resumes and finishes
    assert read_status(tmp_path)["state"] == "finished"


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(smoke, tmp_path, monkeypatch):
    import torch

    cfg = smoke("steps=6", *COMMON)
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(obj["step"])
        if obj["step"] == 4:
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(RunFailed):
        train(cfg, tmp_path)
    assert calls == [2, 4]
    assert temp_files(tmp_path) == []
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2
    assert read_status(tmp_path)["state"] == "failed"


@pytest.mark.slow
def test_leftover_temp_files_are_removed_on_start(smoke, tmp_path):
    train(smoke("steps=4", *COMMON), tmp_path)
    (tmp_path / "checkpoints" / ".last.pt.tmp4242").write_bytes(b"torn")
    (tmp_path / ".status.json.tmp4242").write_text("{")
    train(smoke("steps=6", *COMMON), tmp_path)
    assert temp_files(tmp_path) == []


# ---- divergence is a result ----


@pytest.mark.slow
def test_diverging_run_with_every_probe_ends_diverged(smoke, tmp_path):
    # every probe due at every step (the Hessian made cheap): the old loop ran them on the
    # diverged weights of step 1 before looking at the loss, and crashed
    cfg = smoke(
        "probes=full",
        "norm=none",
        "optim.lr=1e8",
        "probes.hessian.batch_size=32",
        "probes.hessian.trace_max_probes=4",
        "probes.hessian.density_steps=8",
        "probes.hessian.density_probes=1",
    )
    result = train(cfg, tmp_path)
    assert result["state"] == "diverged", result["reason"]
    status = read_status(tmp_path)
    assert status["state"] == "diverged" and "non-finite training loss" in status["reason"]
    last = read_metrics(tmp_path)[-1]
    assert last["train/loss"] is None or not math.isfinite(last["train/loss"])
    assert not any(k.split("/")[0] in ("hessian", "landscape", "act") for k in last)


def test_probes_record_nan_on_non_finite_weights(smoke):
    import torch

    from smoothbench.build import (
        build_data_from_config,
        build_model_from_config,
        build_probe_runner,
        loss_fn_for,
    )

    cfg = smoke(
        "probes=full",
        "probes.max_fraction=null",  # at smoke size a budget would grant the Hessian nothing
        "probes.hessian.schedule.kind=every",
        "probes.hessian.batch_size=16",
        "probes.hessian.trace_max_probes=4",
        "probes.landscape.schedule.kind=every",
    )
    data = build_data_from_config(cfg)
    model = build_model_from_config(cfg)
    runner = build_probe_runner(cfg, model, loss_fn_for(cfg), data)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.warns(UserWarning, match="non-finite values"):
        records = runner.measure(0, data.batch(0, 16, 0))
    assert math.isnan(records["hessian/lambda_max"])
    assert math.isnan(records["landscape/loss_variation"])


# ---- the Hessian probe in both BN modes, through the training loop ----


@pytest.mark.slow
@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_hessian_probe_runs_in_both_bn_modes(smoke, tmp_path, bn_mode):
    cfg = smoke(
        "steps=2",
        "probes=off",
        "probes.hessian.schedule.kind=every",
        "probes.hessian.schedule.every=1",
        f"probes.hessian.bn_mode={bn_mode}",
        "probes.hessian.batch_size=16",
        "probes.hessian.trace_max_probes=4",
        "probes.hessian.smallest=true",
    )
    assert train(cfg, tmp_path)["state"] == "finished"
    rows = read_metrics(tmp_path)
    assert [r["hessian/bn_mode"] for r in rows[:2]] == [bn_mode, bn_mode]
    assert all(math.isfinite(r["hessian/lambda_max"]) for r in rows[:2])


# ---- every bad value refused up front: one line naming key, value and what is allowed ----


@pytest.mark.parametrize(
    "override, message",
    [
        ("norm.eps=0", "norm.eps=0.0 must be > 0"),
        ("norm.momentum=2", "norm.momentum=2.0 must be in [0, 1]"),
        ("norm.groups=0", "norm.groups=0 must be >= 1"),
        ("model.width=nan", "model.width=nan must be > 0"),
        ("model.depth=0", "model.depth=0 must be >= 1"),
        ("seed=-1", "seed=-1 must be >= 0"),
        ("optim.momentum=-1", "optim.momentum=-1.0 must be >= 0"),
        ("optim.weight_decay=-1", "optim.weight_decay=-1.0 must be >= 0"),
        ("optim.betas=[2,0.5]", "optim.betas[0]=2.0 must be in [0, 1)"),
        ("optim.nesterov=true", "optim.nesterov=true needs optim.momentum > 0 (got 0.0)"),
        ("probes.hessian.batch_size=0", "probes.hessian.batch_size=0 must be >= 1"),
        ("probes.hessian.top_k=0", "probes.hessian.top_k=0 must be >= 1"),
        ("probes.activations.units=0", "probes.activations.units=0 must be >= 1"),
        ("resume=maybe", "unknown resume 'maybe'; choose one of: auto, from_checkpoint, restart"),
        ("norm.noise.n_sigma=inf", "norm.noise.n_sigma=inf must be a finite number >= 1"),
        ("+foo=1", "unknown key 'foo'; `--cfg job` lists the allowed keys"),
        ("+model.foo=1", "unknown key 'model.foo'"),
    ],
)
def test_out_of_range_values_are_refused(smoke, override, message):
    with pytest.raises(ConfigError) as caught:
        validate(smoke(override))
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_every_preset_passes_the_schema_check():
    from conftest import compose_config

    presets = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
    for scale in ("smoke", "cpu", "paper"):
        for preset in presets:
            validate(compose_config(f"experiment={preset}", f"scale={scale}"))


@pytest.mark.slow
def test_batch_larger_than_the_data_set_is_refused(smoke, tmp_path):
    with pytest.raises(ConfigError, match=r"^batch_size=5000 is larger than the training set \("):
        train(smoke("batch_size=5000"), tmp_path)
    assert list(tmp_path.iterdir()) == []
    full = train(smoke("steps=2", "batch_size=5000", "optim.full_batch=true", *COMMON), tmp_path)
    assert full["state"] == "finished"


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """smoothbench-train ARGS in this process: (exit code, stdout, stderr)."""
    from hydra.core.global_hydra import GlobalHydra

    import smoothbench.train as train_module

    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["smoothbench-train", *args])
    with pytest.raises(SystemExit) as caught:
        train_module.main()
        raise SystemExit(0)
    out = capsys.readouterr()
    return caught.value.code, out.out, out.err


@pytest.mark.parametrize(
    "override, message",
    [
        ("model=foo", "Could not find 'model/foo'; model is one of: custom, dln, resnet110,"),
        ("steps=abc", "steps: Value 'abc' of type 'str' could not be converted to Integer"),
        ("foo=1", "unknown key 'foo'; `--cfg job` lists the allowed keys"),
        ("+foo=1", "unknown key 'foo'; `--cfg job` lists the allowed keys"),
        ("optim.lr=[1", "cannot parse the override"),
    ],
)
def test_hydra_composition_errors_are_one_line(monkeypatch, capsys, tmp_path, override, message):
    code, out, err = _main(
        monkeypatch, capsys, "scale=smoke", override, f"hydra.run.dir={tmp_path}/r"
    )
    assert code == 2
    assert err.startswith(f"smoothbench-train: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_refused_rerun_leaves_the_run_dir_byte_for_byte(monkeypatch, capsys, tmp_path):
    run = tmp_path / "run"
    code, out, _ = _main(
        monkeypatch, capsys, "scale=smoke", "steps=2", *COMMON, f"hydra.run.dir={run}"
    )
    assert code == 0 and "finished at step 2" in out
    assert (run / ".hydra" / "config.yaml").is_file() and (run / "train.log").stat().st_size > 0
    before = tree_hash(run)
    for refused in ("optim.lr=0.05", "steps=1", "norm.eps=0", "+foo=1", "model=foo"):
        code, _, err = _main(
            monkeypatch, capsys, "scale=smoke", "steps=2", *COMMON, refused, f"hydra.run.dir={run}"
        )
        assert code == 2 and err.count("\n") == 1, (refused, err)
        assert tree_hash(run) == before, refused
    # a refused command in a new run dir leaves no run dir behind
    code, _, err = _main(monkeypatch, capsys, "scale=smoke", "norm.eps=0", f"hydra.run.dir={run}2")
    assert code == 2 and err == "smoothbench-train: error: norm.eps=0.0 must be > 0\n"
    assert not Path(f"{run}2").exists()
    # an accepted, already finished rerun says so
    code, out, _ = _main(
        monkeypatch, capsys, "scale=smoke", "steps=2", *COMMON, f"hydra.run.dir={run}"
    )
    assert code == 0 and "already finished at step 2" in out


def test_unwritable_run_dir_is_one_line(monkeypatch, capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    code, _, err = _main(monkeypatch, capsys, "scale=smoke", f"hydra.run.dir={blocker}/run")
    assert code == 2
    assert err == (
        f"smoothbench-train: error: cannot create or write '{blocker}/run' (Not a directory)\n"
    )


def test_hessian_warnings_name_config_keys_not_arguments():
    from smoothbench.probes.hessian import in_config_terms

    eig = in_config_terms(
        "worst relative Ritz residual is 0.1 > tol=0.001; raise max_iter (now 100) or tol"
    )
    assert eig == (
        "worst relative Ritz residual is 0.1 > probes.hessian.tol=0.001; loosen probes.hessian.tol"
    )
    trace = in_config_terms("stopped at n_probes=4 with standard error 8.1 > rtol=0.02 x |mean|")
    assert trace == (
        "stopped at probes.hessian.trace_max_probes=4 with standard error 8.1 > "
        "probes.hessian.trace_rtol=0.02 x |mean|"
    )


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["-m", "a=1", "b=2"], ["-m", "hydra.output_subdir=null", "a=1", "b=2"]),
        (["a=1", "--cfg", "job"], ["a=1", "--cfg", "job"]),  # no job runs: nothing to defer
        ([], ["hydra.output_subdir=null"]),
        (["hydra.output_subdir=out"], ["hydra.output_subdir=out"]),
    ],
)
def test_hydra_output_is_deferred_inside_the_overrides(argv, expected):
    from smoothbench.cli import _defer_hydra_output

    full = ["smoothbench-train", *argv]
    _defer_hydra_output(full)
    assert full[1:] == expected


# ---- a run dir holds one run's record: never another config's, never discarded unasked ----


def _finished_run(monkeypatch, capsys, run: Path, *extra: str) -> None:
    code, out, err = _main(monkeypatch, capsys, *RUN, *extra, f"hydra.run.dir={run}")
    assert code == 0, err


RUN = ("scale=smoke", "steps=2", *COMMON)


@pytest.mark.slow
def test_a_run_dir_without_checkpoints_is_not_reused_or_discarded_unasked(
    monkeypatch, capsys, tmp_path
):
    run = tmp_path / "run"
    _finished_run(monkeypatch, capsys, run)
    record = (run / "metrics.jsonl").read_bytes()
    shutil.rmtree(run / "checkpoints")  # freed disk after a sweep
    before = tree_hash(run)
    code, _, err = _main(monkeypatch, capsys, *RUN, "seed=1", f"hydra.run.dir={run}")
    assert code == 2 and err.count("\n") == 1
    assert "holds the record of a different run (seed: 0 -> 1)" in err
    assert tree_hash(run) == before
    code, _, err = _main(monkeypatch, capsys, *RUN, f"hydra.run.dir={run}")
    assert code == 2 and err.count("\n") == 1
    assert "holds this run's record" in err and "resume=restart" in err
    assert tree_hash(run) == before
    # asked for: recomputed from step 0, saying what it discards
    code, out, err = _main(monkeypatch, capsys, *RUN, "resume=restart", f"hydra.run.dir={run}")
    assert code == 0, err
    assert "resume=restart: discarding .hydra/config.yaml, metrics.jsonl (3 rows)" in out
    assert (run / "metrics.jsonl").read_bytes() == record
    # with a checkpoint again, restart is refused rather than throwing it away
    code, _, err = _main(monkeypatch, capsys, *RUN, "resume=restart", f"hydra.run.dir={run}")
    assert code == 2 and "checkpoints/last.pt' exists" in err


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_reruns_and_a_diverged_one_is_kept(
    monkeypatch, capsys, tmp_path
):
    run = tmp_path / "run"
    _finished_run(monkeypatch, capsys, run)
    shutil.rmtree(run / "checkpoints")
    (run / "status.json").write_text('{"state": "running", "step": 0}')
    (run / "metrics.jsonl").write_bytes((run / "metrics.jsonl").read_bytes().split(b"\n")[0])
    code, out, err = _main(monkeypatch, capsys, *RUN, f"hydra.run.dir={run}")
    assert code == 0 and "no checkpoint was written yet: rerunning from step 0" in out, err
    diverged = tmp_path / "diverged"
    args = ("norm=none", "optim.lr=1e8")
    _finished_run(monkeypatch, capsys, diverged, *args)
    assert read_status(diverged)["state"] == "diverged"
    shutil.rmtree(diverged / "checkpoints", ignore_errors=True)
    before = tree_hash(diverged)
    code, out, _ = _main(monkeypatch, capsys, *RUN, *args, f"hydra.run.dir={diverged}")
    assert code == 0 and "already diverged at step" in out
    after = tree_hash(diverged)
    assert after.pop("train.log") != before.pop("train.log")  # the log says so; the record stays
    assert after == before


@pytest.mark.slow
def test_a_record_file_that_is_no_file_is_refused_before_anything_changes(
    monkeypatch, capsys, tmp_path
):
    run = tmp_path / "run"
    _finished_run(monkeypatch, capsys, run)
    (run / "status.json").unlink()
    (run / "status.json").mkdir()
    before = tree_hash(run)
    code, _, err = _main(monkeypatch, capsys, *RUN, "steps=9", f"hydra.run.dir={run}")
    assert code == 2
    assert err == (
        f"smoothbench-train: error: run dir {str(run)!r}: status.json is not a file (a folder); "
        "move it away\n"
    )
    assert tree_hash(run) == before


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_the_model_is_one_line(monkeypatch, capsys, tmp_path):
    import torch

    run = tmp_path / "run"
    _finished_run(monkeypatch, capsys, run, "model.width=0.5")
    last = run / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=False)
    ckpt["config"]["model"]["width"] = 0.25  # the config says one net, the weights are another
    torch.save(ckpt, last)
    (run / ".hydra" / "config.yaml").write_text(
        (run / ".hydra" / "config.yaml").read_text().replace("width: 0.5", "width: 0.25")
    )
    before = tree_hash(run)
    code, _, err = _main(
        monkeypatch, capsys, *RUN, "steps=4", "model.width=0.25", f"hydra.run.dir={run}"
    )
    assert code == 2 and err.count("\n") == 1
    assert "does not match the model the config builds (size mismatch for" in err
    assert tree_hash(run) == before


def test_a_deleted_key_is_one_line_and_leaves_no_run_dir(monkeypatch, capsys, tmp_path):
    code, _, err = _main(
        monkeypatch, capsys, "scale=smoke", "~steps", f"hydra.run.dir={tmp_path}/r"
    )
    assert code == 2
    assert (
        err == "smoothbench-train: error: steps has no value; set it (steps=...) or pick a scale=\n"
    )
    assert not (tmp_path / "r").exists()
    # and no log handler of this process still points into the removed dir (the next message
    # would try to reopen its file there and fail)
    import logging

    stale = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.FileHandler) and str(tmp_path / "r") in h.baseFilename
    ]
    assert not stale


# ---- every number of the config bounded at both ends (generated from the schema) ----


def _numeric_cases():
    from smoothbench.config import numeric_keys

    for key, kind, is_list in numeric_keys():
        values = ["100000000000000000000"] if kind is int else ["1e308", "inf", "nan", "-inf"]
        for value in values:
            yield pytest.param(key, value, is_list, id=f"{key}={value}")


@pytest.mark.slow
@pytest.mark.parametrize("key, value, is_list", list(_numeric_cases()))
def test_every_numeric_key_is_bounded(smoke, key, value, is_list):
    override = f"{key}=[{value},{value}]" if is_list else f"{key}={value}"
    with pytest.raises(ConfigError) as caught:
        validate(smoke(override))
    message = str(caught.value)
    assert message.startswith(f"{key}") and "\n" not in message, message


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("seed=4294967296",), "seed=4294967296 must be at most 4294967295"),
        (("optim.lr=1e308",), "optim.lr=1e+308 must be finite and at most 1e+12"),
        (
            ("optim.schedule=step", "optim.milestones=[0.5]", "optim.gamma=1e12", "optim.lr=10"),
            "optim.gamma=1e+12 over 1 milestones takes optim.lr=10 to 1e+13",
        ),
        (("model.width=1e4",), "model.width=10000 needs ~11.1 PB for 9.22e+14 parameters"),
        (
            ("model=dln", "data=gaussian", "model.dim=1000000"),
            "model.depth=25, model.dim=1000000 needs ~",
        ),
        (
            ("model=dln", "data=gaussian", "model.depth=100000000"),
            "model.depth=100000000 must be at most 10000",
        ),
        (
            ("model=dln", "data=gaussian", "data.num_samples=2000000000"),
            "data.num_samples=2000000000, data.dim=10 needs ~160 GB",
        ),
        (("probes.hessian.top_k=101",), "probes.hessian.top_k=101 must be at most 100"),
        (
            ("norm=noisy_batch", "norm.noise.n_sigma=inf"),
            "norm.noise.n_sigma=inf must be a finite number >= 1",
        ),
    ],
)
def test_upper_bounds_name_the_key_and_the_estimate(smoke, monkeypatch, overrides, message):
    import smoothbench.config as config

    # the same verdicts on any machine: 100 GB of memory
    monkeypatch.setattr(config, "device_memory", lambda device: (100e9, "this machine's memory"))
    with pytest.raises(ConfigError) as caught:
        validate(smoke(*overrides))
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


# ---- disk faults: one line, exit 1, status.json true ----


class _FullFile:
    """A file on a disk that is full: every write fails with ENOSPC."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self):
        pass


@pytest.mark.slow
def test_enospc_inside_torch_save_is_a_disk_fault(smoke, tmp_path, monkeypatch):
    import smoothbench.checkpoint as checkpoint

    real = checkpoint.write_atomic
    calls = []

    def write_atomic(path, data):
        calls.append(path)
        if len(calls) == 2:  # the second checkpoint: torch.save's own writes fail
            return real(path, lambda f: data(_FullFile(f)))
        return real(path, data)

    monkeypatch.setattr(checkpoint, "write_atomic", write_atomic)
    with pytest.raises(RunFailed) as caught:
        train(smoke("steps=6", *COMMON), tmp_path)
    assert str(caught.value).startswith("run failed: No space left on device")
    assert str(caught.value).endswith("; status.json says failed")
    assert read_status(tmp_path)["state"] == "failed"
    assert temp_files(tmp_path) == []
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2


@pytest.mark.slow
def test_a_status_json_that_cannot_be_written_is_not_said_to_be_failed(
    smoke, tmp_path, monkeypatch
):
    import smoothbench.run.record as run_record
    from smoothbench.sinks import JsonlSink

    real_log, real_status = JsonlSink.log, run_record.write_status

    def log(self, record):
        if record["step"] == 3:  # the disk is full now: status.json cannot be written either
            monkeypatch.setattr(run_record, "write_status", full_status)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_log(self, record)

    def full_status(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(JsonlSink, "log", log)
    with pytest.raises(RunFailed) as caught:
        train(smoke("steps=6", *COMMON), tmp_path)
    assert str(caught.value).endswith(
        "; status.json could not be updated either (still says running)"
    )
    assert read_status(tmp_path)["state"] == "running"
    assert real_status  # untouched


def test_a_full_image_cache_degrades_to_no_cache(tmp_path, monkeypatch, caplog):
    import torch

    import smoothbench.data as data

    def save(obj, f, *args, **kwargs):
        f.write(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")

    monkeypatch.setattr(torch, "save", save)
    cache = tmp_path / "cache" / "imagefolder-x.pt"
    with caplog.at_level("WARNING"):
        data._write_cache(cache, (torch.zeros(2),))
    assert "could not be cached" in caplog.text and "going on without the cache" in caplog.text
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MB tmpfs mounted at tmp_path/disk (root only; skipped where mounting is refused)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if mount.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.slow
def test_a_full_tmpfs_fails_the_run_in_one_line(small_tmpfs, tmp_path):
    run = small_tmpfs / "run"
    (small_tmpfs / "filler").write_bytes(b"\0" * 1_900_000)  # leaves ~100 KB
    proc = cli(*RUN, "steps=6", f"hydra.run.dir={run}")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("smoothbench-train: error: run failed: No space left on device")
    assert "Traceback" not in proc.stderr
    status = read_status(run)
    said = "failed" if lines[-1].endswith("status.json says failed") else "running"
    assert status["state"] == said
    assert temp_files(run) == []


@pytest.mark.slow
def test_a_read_only_run_dir_is_one_line(small_tmpfs):
    run = small_tmpfs / "run"
    assert cli(*RUN, f"hydra.run.dir={run}").returncode == 0  # its own process: no open log file
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    proc = cli(*RUN, "steps=4", f"hydra.run.dir={run}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"smoothbench-train: error: cannot create or write '{run}/train.log' "
        "(Read-only file system)\n"
    )
