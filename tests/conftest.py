"""Shared fixtures: compose the real Hydra config and run training in-process or as a CLI."""

from __future__ import annotations

import json
import os

# One BLAS/OpenMP thread per test process: on a small shared machine torch's default threads
# spin against each other and make tiny nets many times slower (also inherited by subprocesses).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from smoothbench.config import register_configs

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = str(REPO / "conf")
SHARED_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"
# The presets' CIFAR-10 (data/vision_*.yaml): the test machines' ImageFolder copy, named
# explicitly; without it the presets would download torchvision's files into the cache.
if SHARED_DATA.is_dir():
    os.environ.setdefault("SMOOTHBENCH_CIFAR10_JPEG", str(SHARED_DATA))

register_configs()
torch.set_num_threads(1)


def compose_config(*overrides: str):
    """The composed training config, as `smoothbench-train <overrides>` would see it."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def read_status(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "status.json").read_text())


def cli(*args: str, cwd: Path | None = None, timeout: float = 300, env_extra: dict | None = None):
    """Run `python -m smoothbench.train ARGS` and return the CompletedProcess."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "smoothbench.train", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def smoke():
    """Compose a smoke-scale config with extra overrides."""
    return lambda *overrides: compose_config("scale=smoke", *overrides)
