"""A stop signal during a probe step: honoured at once, the step rewound, the resume bitwise.

A Hessian measurement can take minutes; a run must not make SIGTERM (or SLURM's grace period)
wait for it. The partial measurement is dropped (no partial row), the checkpoint is the state
the step started from, and a resume repeats the step exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, read_metrics, read_status

from smoothbench.checkpoint import load_checkpoint
from smoothbench.train import train

# every probe on, the Hessian cheap and due at steps 0, 2, 4 (no run-level budget: at 6 steps it
# would grant the Hessian nothing)
PROBED = (
    "steps=6",
    "probes=full",
    "probes.max_fraction=null",
    "checkpoint_every=100",
    "eval_every=2",
    "probes.hessian.schedule.kind=every",
    "probes.hessian.schedule.every=2",
    "probes.hessian.batch_size=32",
    "probes.hessian.trace_max_probes=6",
    "probes.hessian.density_steps=8",
    "probes.hessian.density_probes=1",
)


def _signal_during_hessian(monkeypatch, step: int, product: int, signum=signal.SIGTERM):
    """Send `signum` to this process at the `product`-th Hessian-vector product of `step`."""
    from smoothbench.curvature.operator import HessianOperator
    from smoothbench.probes.hessian import HessianProbe

    real_measure, real_matvec = HessianProbe.measure, HessianOperator.matvec
    seen = {"step": None, "products": 0, "after_signal": 0}

    def measure(self, at, batch):
        seen["step"], seen["products"] = at, 0
        return real_measure(self, at, batch)

    def matvec(self, v):
        if seen["step"] == step:
            seen["products"] += 1
            if seen["products"] == product:
                os.kill(os.getpid(), signum)
            elif seen["products"] > product:
                seen["after_signal"] += 1
        return real_matvec(self, v)

    monkeypatch.setattr(HessianProbe, "measure", measure)
    monkeypatch.setattr(HessianOperator, "matvec", matvec)
    return seen


@pytest.mark.slow
def test_sigterm_mid_hessian_rewinds_the_step_and_resumes_bitwise(smoke, tmp_path, monkeypatch):
    cfg = smoke(*PROBED)
    train(cfg, tmp_path / "whole")
    whole = read_metrics(tmp_path / "whole")
    assert "hessian/lambda_max" in whole[2]  # step 2 is a Hessian step

    seen = _signal_during_hessian(monkeypatch, step=2, product=3)
    result = train(cfg, tmp_path / "run")
    monkeypatch.undo()
    assert seen["after_signal"] == 0  # not one more product after the signal
    assert result["state"] == "running" and result["signal"] == signal.SIGTERM
    assert result["step"] == 2 and "during step 2's probes" in result["reason"]
    status = read_status(tmp_path / "run")
    assert status["state"] == "running" and status["step"] == 2
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [0, 1]  # no partial row of step 2

    resumed = train(cfg, tmp_path / "run")
    assert resumed["state"] == "finished"
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == (
        tmp_path / "whole" / "metrics.jsonl"
    ).read_bytes()


@pytest.mark.slow
def test_sigterm_before_a_probe_step_does_not_start_its_probes(smoke, tmp_path, monkeypatch):
    """A signal during the forward pass of a probe step: the probes never start, the step is
    rewound (its forward pass moved BN's running statistics) and the resume is bitwise."""
    from smoothbench.run.session import Run

    cfg = smoke(*PROBED)
    train(cfg, tmp_path / "whole")
    real = Run.forward_backward

    def forward_backward(self, x, y):
        out = real(self, x, y)
        if self.probes.any_due(4) and self.record["step"] == 3:  # step 4, before its probes
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(Run, "forward_backward", forward_backward)
    result = train(cfg, tmp_path / "run")
    monkeypatch.undo()
    assert result["state"] == "running" and result["step"] == 4
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [0, 1, 2, 3]
    train(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == (
        tmp_path / "whole" / "metrics.jsonl"
    ).read_bytes()


@pytest.mark.slow
def test_heartbeat_is_fresh_during_a_long_probe_step(smoke, tmp_path, monkeypatch):
    import smoothbench.run.probe_step as probe_step
    from smoothbench.curvature.operator import HessianOperator

    beats = []
    real_write = probe_step.write_status
    real_matvec = HessianOperator.matvec

    def write_status(run_dir, **status):
        beats.append(status)
        real_write(run_dir, **status)

    def slow_matvec(self, v):
        time.sleep(0.02)
        return real_matvec(self, v)

    monkeypatch.setattr(probe_step, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(probe_step, "write_status", write_status)
    monkeypatch.setattr(HessianOperator, "matvec", slow_matvec)
    train(smoke(*PROBED), tmp_path)
    assert len(beats) >= 3
    # a heartbeat says where a resume would continue (the last checkpoint), never a probe step
    assert all(beat == {"state": "running", "step": 0} for beat in beats)


@pytest.mark.slow
def test_a_cli_run_stopped_mid_hessian_exits_within_seconds(tmp_path):
    """The issue's criterion, end to end: SIGTERM while a measurement that would take minutes
    runs ends the process within 10 s, with a checkpoint to resume from."""
    run = tmp_path / "run"
    args = [
        "scale=smoke",
        "steps=4",
        "probes=off",
        "probes.hessian.schedule.kind=every",
        "probes.hessian.schedule.every=1",
        "probes.hessian.batch_size=64",
        "probes.hessian.trace_rtol=1e-9",
        "probes.hessian.trace_max_probes=1000000",
        "progress=false",
        f"hydra.run.dir={run}",
    ]
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "smoothbench.train", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 120
    log = run / "train.log"
    while not (log.exists() and "model vgg11" in log.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.1)
    time.sleep(3)  # well inside step 0's trace of up to a million products
    assert proc.poll() is None
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    took = time.time() - sent
    assert took < 10, f"{took:.1f} s to stop"
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    status = read_status(run)
    assert status["state"] == "running" and status["step"] == 0
    assert "during step 0's probes" in status["reason"]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 0
    assert read_metrics(run) == []


def test_a_signal_during_a_checkpoint_waits_for_it(smoke, tmp_path, monkeypatch):
    """submitit's SIGUSR2 handler requeues and raises SystemExit; arriving inside torch.save it
    would cut the checkpoint (torch reports that as a RuntimeError, and the run would end
    failed). The signal waits until the checkpoint is written."""
    import torch

    def requeue_and_exit(signum, frame):  # what submitit's handler does, in short
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, requeue_and_exit)
    real_save = torch.save
    calls = []

    def save(obj, f, *args, **kwargs):
        calls.append(obj["step"])
        if obj["step"] == 4:
            os.kill(os.getpid(), signal.SIGUSR2)  # mid-checkpoint
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    try:
        with pytest.raises(SystemExit):
            train(smoke("steps=6", "probes=off", "checkpoint_every=2"), tmp_path)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert calls == [2, 4]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 4
    status = read_status(tmp_path)
    assert status["state"] == "running" and status["step"] == 4
