"""The CUDA path: resume after SIGKILL, probes that leave training alone, probes that agree with
the CPU, autocast, and CUDA checkpoints read on a CPU-only machine.

Every CUDA test here is marked `gpu` and skips without CUDA (`pytest -m gpu`;
scripts/gpu_check.sh runs them). Each calls a helper that takes the device; the CPU runs of the
same helpers at the end of this file keep their logic tested on machines without a GPU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, cli, compose_config, read_metrics, read_status

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

SMOKE = ["scale=smoke", "probes=off", "norm=noisy_batch", "optim.momentum=0.9", "progress=false"]


# ------------------------------------------------------------------------------------ helpers
def kill_mid_run_and_resume(tmp_path: Path, device: str, steps: int = 40) -> tuple[bytes, bytes]:
    """An uninterrupted run and one SIGKILLed mid-run then restarted in its run dir, both
    deterministic on `device`: returns both metrics.jsonl files' bytes."""
    args = [*SMOKE, f"device={device}", "deterministic=true", f"steps={steps}"]
    args.append("checkpoint_every=4")
    reference = cli(*args, f"hydra.run.dir={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr
    run_dir = tmp_path / "killed"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    command = [sys.executable, "-m", "smoothbench.train", *args, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 240
    try:
        while not (metrics.exists() and metrics.read_bytes().count(b"\n") >= steps // 2):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert metrics.read_bytes().count(b"\n") < steps + 1, "killed too late to test a resume"
    resumed = cli(*args, f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr
    assert read_status(run_dir)["state"] == "finished"
    return (tmp_path / "reference" / "metrics.jsonl").read_bytes(), metrics.read_bytes()


def trajectory(run_dir: Path) -> list[tuple]:
    """What training did at each step, without the probes' own records."""
    keys = ("step", "train/loss", "train/acc", "test/loss", "test/acc", "grad/norm")
    return [tuple(r.get(k) for k in keys) for r in read_metrics(run_dir)]


def probes_full_vs_off(tmp_path: Path, device: str) -> tuple[list, list]:
    common = ["scale=smoke", f"device={device}", "deterministic=true", "steps=8"]
    out = []
    for probes in ("off", "full"):
        run = cli(*common, f"probes={probes}", f"hydra.run.dir={tmp_path / probes}")
        assert run.returncode == 0, run.stderr
        out.append(trajectory(tmp_path / probes))
    return out[0], out[1]


def probe_values(device: str) -> dict[str, np.ndarray]:
    """Every probe on one fixed float64 model and batch, moved to `device`. Random vectors
    are drawn on the CPU and moved, so both devices see the same ones."""
    from smoothbench.build import build_data_from_config, build_model_from_config, cross_entropy
    from smoothbench.curvature import HessianOperator, hessian_eigenvalues
    from smoothbench.curvature.lanczos import gaussian_density, slq_nodes
    from smoothbench.models import numbered_layers
    from smoothbench.probes.activations import activation_stats
    from smoothbench.probes.bn import bn_gradient_damping
    from smoothbench.probes.landscape import gradient_landscape, landscape_step_sizes

    cfg = compose_config("scale=smoke", "model.width=0.0625")
    data = build_data_from_config(cfg)
    torch.manual_seed(0)
    model = build_model_from_config(cfg, num_classes=data.num_classes).double().to(device)
    x, y = data.batch(0, 16, seed=0)
    batch = (x.double().to(device), y.to(device))
    out: dict[str, np.ndarray] = {}
    refs = numbered_layers(model)
    stats, _ = activation_stats(model, batch, {r.name: r.output for r in refs},
                                {r.name: torch.tensor([0, 1, 2]) for r in refs})  # fmt: skip
    for layer, values in stats.items():
        for key, value in values.items():
            out[f"act/{layer}/{key}"] = np.asarray(value, dtype=np.float64)
    land = gradient_landscape(model, cross_entropy, batch, landscape_step_sizes(0.1, 0.5, 4, n=4))
    out["landscape/losses"] = np.asarray(land["losses"])
    out["landscape/beta"] = np.asarray(land["beta_smoothness"])
    for layer, values in bn_gradient_damping(model, cross_entropy, batch).items():
        out[f"bn/{layer}"] = np.asarray([values["grad_ratio"], values["gamma_over_sigma"]])
    op = HessianOperator(model, cross_entropy, batch)
    for which in ("largest", "smallest"):
        values, info = hessian_eigenvalues(op, k=1, tol=1e-6, max_iter=200, which=which)
        assert info["converged"], which
        out[f"hessian/{which}"] = values
    g = torch.Generator().manual_seed(0)  # CPU draws, moved: identical probes on both devices
    z = (2 * torch.randint(0, 2, (8, op.size), generator=g) - 1).to(device, torch.float64)
    out["hessian/zHz"] = np.asarray([float(zi @ op.matvec(zi)) for zi in z])
    nodes = slq_nodes(op.matvec, op.size, steps=10, n_probes=1, generator=g,
                      dtype=torch.float64, device=device)  # fmt: skip
    out["hessian/density_nodes"] = nodes[0][0]
    out["hessian/density"] = gaussian_density(nodes, sigma=0.1, grid=np.linspace(-5, 50, 50))[1]
    return out


def assert_agree(a: dict, b: dict, rtol: float = 1e-4) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=1e-9, err_msg=key)


def read_on_cpu_only(run_dir: Path) -> None:
    """The surface tool and the results loader on `run_dir` with every GPU hidden."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "WANDB_MODE": "disabled"}
    surface = subprocess.run(
        [sys.executable, "-m", "smoothbench.surfaces.cli", f"run_dir={run_dir}", "points=5",
         "subset=64", "batch_size=32", "device=auto"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert surface.returncode == 0, surface.stderr
    assert list((run_dir / "surfaces").glob("*.npz"))
    code = (
        "import sys, torch; from smoothbench.results import load_runs; "
        "assert not torch.cuda.is_available(); df = load_runs(sys.argv[1]); "
        "assert len(df) > 0; print(sorted(df['metric'].unique())[:3])"
    )
    loader = subprocess.run([sys.executable, "-c", code, str(run_dir)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert loader.returncode == 0, loader.stderr


def train_run(tmp_path: Path, device: str, *extra: str) -> Path:
    run_dir = tmp_path / "run"
    run = cli("scale=smoke", f"device={device}", "steps=30", *extra, f"hydra.run.dir={run_dir}")
    assert run.returncode == 0, run.stderr
    assert read_status(run_dir)["state"] == "finished"
    return run_dir


# ------------------------------------------------------------------------------------ on CUDA
@pytest.mark.gpu
@needs_cuda
def test_sigkill_mid_run_and_restart_on_cuda_is_byte_identical(tmp_path):
    reference, resumed = kill_mid_run_and_resume(tmp_path, "cuda")
    assert resumed == reference


@pytest.mark.gpu
@needs_cuda
def test_probes_full_and_off_train_identically_on_cuda(tmp_path):
    off, full = probes_full_vs_off(tmp_path, "cuda")
    assert full == off


@pytest.mark.gpu
@needs_cuda
def test_every_probe_on_cuda_agrees_with_the_cpu():
    assert_agree(probe_values("cuda"), probe_values("cpu"), rtol=1e-4)


@pytest.mark.gpu
@needs_cuda
def test_a_bf16_autocast_channels_last_run_trains(tmp_path):
    run_dir = train_run(tmp_path, "cuda", "autocast=true", "channels_last=true", "steps=60",
                        "optim.lr=0.05")  # fmt: skip
    losses = [r["train/loss"] for r in read_metrics(run_dir) if "train/loss" in r]
    assert all(np.isfinite(losses)) and np.mean(losses[-10:]) < np.mean(losses[:10])


@pytest.mark.gpu
@needs_cuda
def test_a_cuda_checkpoint_is_read_on_a_cpu_only_machine(tmp_path):
    run_dir = train_run(tmp_path, "cuda")
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert next(iter(state["model"].values())).dtype == torch.float32
    read_on_cpu_only(run_dir)


# ------------------------------------------------------------ the same helpers on the CPU
# (kill_mid_run_and_resume on the CPU is test_train's SIGKILL test; not repeated here)
@pytest.mark.slow
def test_gpu_helpers_on_cpu_probe_values_are_complete_and_compared():
    a = probe_values("cpu")
    b = {k: v.copy() for k, v in a.items()}
    assert_agree(a, b, rtol=0)
    assert any(k.startswith("act/") for k in a) and any(k.startswith("bn/") for k in a)
    assert a["hessian/largest"][0] > 0 > a["hessian/smallest"][0]
    with pytest.raises(AssertionError):
        assert_agree(a, {**b, "hessian/zHz": b["hessian/zHz"] * (1 + 1e-3)})


@pytest.mark.slow
def test_gpu_helpers_on_cpu_checkpoint_read_with_gpus_hidden(tmp_path):
    read_on_cpu_only(train_run(tmp_path, "cpu", "steps=6"))
