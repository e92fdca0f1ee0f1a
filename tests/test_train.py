"""The training core: records, reproducibility, resume after SIGKILL, divergence, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, cli, read_metrics, read_status

from smoothbench.checkpoint import CheckpointError, load_checkpoint
from smoothbench.config import ConfigError
from smoothbench.data import DataError
from smoothbench.train import train

TRAIN_KEYS = ("train/loss", "train/acc", "train/lr", "test/loss", "test/acc", "grad/norm")


@pytest.mark.slow
def test_smoke_run_writes_the_run_record(smoke, tmp_path):
    cfg = smoke("probes=default")
    result = train(cfg, tmp_path)
    rows = read_metrics(tmp_path)
    assert result["state"] == "finished"
    status = read_status(tmp_path)
    assert {k: status[k] for k in ("state", "step", "reason")} == {
        "state": "finished",
        "step": cfg.steps,
        "reason": None,
    }
    assert status["heartbeat"].endswith("Z") and status["steps_per_s"] > 0
    assert [r["step"] for r in rows] == list(range(cfg.steps)) + [cfg.steps]
    assert all("train/loss" in r and "grad/norm" in r for r in rows[:-1])
    assert "test/acc" in rows[0] and "test/acc" in rows[-1] and "test/acc" not in rows[1]
    per_layer = [k for k in rows[0] if k.startswith("grad/") and k != "grad/norm"]
    assert len(per_layer) == len(list(p for p in _model_params(cfg)))
    # the total gradient norm is the norm of the per-tensor norms
    total = sum(rows[0][k] ** 2 for k in per_layer) ** 0.5
    assert rows[0]["grad/norm"] == pytest.approx(total, rel=1e-6)
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["step"] == cfg.steps


def _model_params(cfg):
    from smoothbench.build import build_model_from_config

    return build_model_from_config(cfg).parameters()


@pytest.mark.slow
def test_same_seed_gives_bitwise_identical_metrics(smoke, tmp_path):
    cfg = smoke("norm=noisy_batch", "data.augment=true", "threads=1")  # bitwise: fixed threads
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    a = (tmp_path / "a" / "metrics.jsonl").read_bytes()
    assert a == (tmp_path / "b" / "metrics.jsonl").read_bytes()
    for run in ("a", "b"):
        assert json.loads((tmp_path / run / "provenance.json").read_text())["threads"] == 1
    other = smoke("norm=noisy_batch", "data.augment=true", "seed=1")
    train(other, tmp_path / "c")
    assert a != (tmp_path / "c" / "metrics.jsonl").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["batch", "noisy_batch", "none"])
def test_probes_never_change_the_trajectory(smoke, tmp_path, norm):
    common = (f"norm={norm}", "steps=4", "eval_every=2", "optim.momentum=0.9")
    train(smoke(*common, "probes=off", "probes.grad_norms=per_layer"), tmp_path / "off")
    full = smoke(
        *common,
        "probes=full",
        "probes.max_fraction=null",  # no budget: every probe measures at these tiny sizes
        "probes.ics.layers=[1,3]",
        "probes.hessian.density=true",
        "probes.hessian.schedule.kind=every",
        "probes.hessian.schedule.every=2",
        "probes.hessian.trace_max_probes=4",
        "probes.hessian.density_steps=8",
        "probes.hessian.density_probes=1",
        "probes.hessian.batch_size=32",
        "probes.activations.schedule.every=1",
        "probes.landscape.schedule.every=1",
        "probes.ics.schedule.every=1",
        "probes.bn.schedule.every=1",
        "probes.grad_angle.schedule.every=1",
    )
    train(full, tmp_path / "full")
    off, on = read_metrics(tmp_path / "off"), read_metrics(tmp_path / "full")
    assert len(off) == len(on)
    for a, b in zip(off, on, strict=False):
        kept = {
            k: v
            for k, v in b.items()
            if k.split("/")[0] in ("train", "test", "grad", "step", "epoch")
        }
        assert kept == a
    probed = on[1]
    assert "landscape/beta_smoothness" in probed and "act/layer1/quantiles" in probed
    assert "ics/layer1/cosine" in probed
    assert any(k.startswith("hessian/") for k in on[2])
    if norm != "none":
        assert "bn/layer1/grad_ratio" in probed
    # and the final parameters are identical too
    a = load_checkpoint(tmp_path / "off" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_diverging_run_ends_diverged_with_exit_code_zero(tmp_path):
    proc = cli(
        "scale=smoke", "norm=none", "optim.lr=1e8", "probes=off", f"hydra.run.dir={tmp_path}"
    )
    assert proc.returncode == 0, proc.stderr
    status = read_status(tmp_path)
    assert status["state"] == "diverged" and "non-finite" in status["reason"]
    assert "diverged" in proc.stdout


def _wait_for_lines(path: Path, n: int, proc, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended before it could be killed: {proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError("run made no progress")


@pytest.mark.slow
def test_sigkill_and_restart_gives_the_uninterrupted_metrics(tmp_path):
    args = [
        "scale=smoke",
        "steps=150",
        "checkpoint_every=7",
        "eval_every=10",
        "norm=noisy_batch",
        "data.augment=true",
        "optim.momentum=0.9",
        "probes=default",
        "probes.activations.schedule.every=5",
        "probes.landscape.schedule.every=5",
    ]
    whole = cli(*args, f"hydra.run.dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "smoothbench.train", *args, f"hydra.run.dir={killed_dir}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_lines(killed_dir / "metrics.jsonl", 60, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_status(killed_dir)["state"] == "running"
    partial = (killed_dir / "metrics.jsonl").read_bytes()
    assert partial.count(b"\n") < 151

    resumed = cli(*args, f"hydra.run.dir={killed_dir}")
    assert resumed.returncode == 0, resumed.stderr
    assert (killed_dir / "metrics.jsonl").read_bytes() == (
        tmp_path / "whole" / "metrics.jsonl"
    ).read_bytes()
    assert read_status(killed_dir)["state"] == "finished"


@pytest.mark.slow
def test_resume_of_a_finished_run_changes_nothing(smoke, tmp_path):
    cfg = smoke()
    train(cfg, tmp_path)
    before = (tmp_path / "metrics.jsonl").read_bytes()
    train(cfg, tmp_path)
    assert (tmp_path / "metrics.jsonl").read_bytes() == before


@pytest.mark.slow
def test_extending_a_finished_run_continues_it(smoke, tmp_path):
    # probes off: their "final step" measurement depends on the budget
    common = ("checkpoint_every=2", "eval_every=2", "probes=off")
    train(smoke("steps=4", *common), tmp_path / "short")
    train(smoke("steps=6", *common), tmp_path / "short")
    train(smoke("steps=6", *common), tmp_path / "long")
    assert (tmp_path / "short" / "metrics.jsonl").read_bytes() == (
        tmp_path / "long" / "metrics.jsonl"
    ).read_bytes()


# ---- bad input: one line naming the value and what is allowed, nothing overwritten ----


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.name=vgg99", "unknown model 'vgg99'; choose one of: vgg11"),
        ("norm.name=bn2", "unknown norm 'bn2'; choose one of: none, batch"),
        ("data.name=mnist", "unknown data 'mnist'; choose one of: digits"),
        ("optim.name=rmsprop", "unknown optimizer 'rmsprop'; choose one of: sgd, adam"),
        ("optim.lr=0", "optim.lr=0.0 must be > 0"),
        ("optim.lr=-0.1", "optim.lr=-0.1 must be > 0"),
        ("steps=0", "steps=0 must be >= 1"),
        ("model.width=0", "model.width=0.0 must be > 0"),
        ("batch_size=1", "batch_size=1 with norm=batch"),
    ],
)
def test_bad_values_are_refused(smoke, tmp_path, override, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        train(smoke(override), tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_batch_of_one_is_fine_without_batch_statistics(smoke, tmp_path):
    assert train(smoke("batch_size=1", "norm=group", "steps=2"), tmp_path)["state"] == "finished"


def test_missing_data_root_is_refused(smoke, tmp_path):
    with pytest.raises(DataError, match="data.root='/nonexistent/cifar' does not exist"):
        train(smoke("data=imagefolder", "data.root=/nonexistent/cifar"), tmp_path)
    with pytest.raises(DataError, match="data.root='/nonexistent/c10' does not exist"):
        train(smoke("data=cifar10", "data.root=/nonexistent/c10"), tmp_path)


@pytest.mark.slow
def test_corrupt_checkpoint_is_refused_and_kept(smoke, tmp_path):
    cfg = smoke("steps=4", "checkpoint_every=2")
    train(cfg, tmp_path)
    ckpt = tmp_path / "checkpoints" / "last.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    metrics = (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        train(cfg, tmp_path)
    assert ckpt.read_bytes() == data[: len(data) // 2]
    assert (tmp_path / "metrics.jsonl").read_bytes() == metrics


@pytest.mark.slow
def test_resume_with_a_changed_config_is_refused(smoke, tmp_path):
    train(smoke("steps=4", "checkpoint_every=2"), tmp_path)
    metrics = (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(ConfigError, match=r"optim\.lr: 0\.1 -> 0\.2"):
        train(smoke("steps=4", "checkpoint_every=2", "optim.lr=0.2"), tmp_path)
    assert (tmp_path / "metrics.jsonl").read_bytes() == metrics
    # probes and logging do not change the trajectory: allowed
    train(smoke("steps=4", "checkpoint_every=2", "probes=off"), tmp_path)


def test_unwritable_run_dir_is_refused(smoke, tmp_path):
    target = tmp_path / "file"
    target.write_text("not a dir")
    with pytest.raises(ConfigError, match="cannot be written"):
        train(smoke(), target / "run")


@pytest.mark.slow
def test_cli_errors_are_one_line_with_nonzero_exit(tmp_path):
    proc = cli("scale=smoke", "norm.name=bn2", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1] == (
        "smoothbench-train: error: unknown norm 'bn2'; choose one of: none, "
        "batch, noisy_batch, noise, l1, l2, linf, layer, group, custom"
    )
    proc = cli("scale=smoke", "model=vgg99", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "smoothbench-train: error: Could not find 'model/vgg99'; model is one of: custom, dln, "
        "resnet110, resnet18, resnet20, resnet32, resnet56, resnet_cpu, resnet_paper, "
        "resnet_smoke, vgg11, vgg13, vgg16, vgg19, vgg_cpu, vgg_paper, vgg_smoke"
    )


@pytest.mark.slow
def test_kept_checkpoints_hold_their_step(smoke, tmp_path):
    train(smoke("probes=off", "checkpoint_every=4", "keep_checkpoints=[3,6]"), tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / "step_3.pt")["step"] == 3
    assert load_checkpoint(tmp_path / "checkpoints" / "step_6.pt")["step"] == 6
    assert not (tmp_path / "checkpoints" / "step_4.pt").exists()


@pytest.mark.slow
def test_help_and_shell_completion_do_not_import_torch():
    # --help and Tab completion compose the config only; importing torch made them take seconds
    probe = (
        "import sys\n"
        "from smoothbench.train import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n"
    )
    for args, env in (
        (["--help"], {}),
        (["-sc", "query=bash"], {"COMP_LINE": "smoothbench-train nor", "COMP_POINT": "21"}),
    ):
        proc = subprocess.run(
            [sys.executable, "-c", probe, *args],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=120,
        )
        assert "torch imported: False" in proc.stderr, (args, proc.stderr[-2000:])
    assert "norm=" in proc.stdout  # the completion still offers the config groups
