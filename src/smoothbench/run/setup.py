"""Building a run from its config: device and threads, data, model, optimizer, probes, and the
checkpoint's state loaded into them. Nothing here writes to the run dir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from smoothbench.build import (
    build_data_from_config,
    build_model_from_config,
    build_optimizer,
    build_probe_runner,
    loss_fn_for,
)
from smoothbench.checkpoint import CheckpointError
from smoothbench.config import ConfigError, check_batch_fits
from smoothbench.preserve import set_rng_state
from smoothbench.run.resume import ResumePlan
from smoothbench.run.session import Run


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's CPU threads set to `threads` for the run (a CPU run is bitwise only for a fixed
    count), the caller's count restored after it. The inter-op pool (no effect on the numbers)
    can only be sized before any parallel work: where that is too late it is left as it is."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # parallel work already started in this process (an earlier run)
            pass
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _choose_kernels(cfg: DictConfig, device: torch.device) -> None:
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the fastest convolution kernels for the shapes


def build_run(
    cfg: DictConfig, run_dir: Path, device: torch.device, resolved: dict[str, Any], plan: ResumePlan
) -> Run:
    """Data, model (seeded by `cfg.seed`), optimizer and probes, at the plan's start."""
    _choose_kernels(cfg, device)
    data = build_data_from_config(cfg).to(device)
    check_batch_fits(cfg, data.num_train)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = build_model_from_config(cfg, num_classes=data.num_classes or cfg.model.dim).to(device)
    if cfg.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    loss_fn = loss_fn_for(cfg)
    optimizer = build_optimizer(cfg, model)
    try:
        probes = build_probe_runner(cfg, model, loss_fn, data)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if plan.checkpoint is not None:
        _load_into(plan.checkpoint, model, optimizer, probes, run_dir)
        set_rng_state(plan.checkpoint["rng"])
        plan.checkpoint = None  # its tensors are the model's and optimizer's now: free the copy
    run = Run(cfg, run_dir, device, resolved, data, model, loss_fn, optimizer, probes, plan.start)
    model.train()
    return run


def _load_into(ckpt: dict[str, Any], model, optimizer, probes, run_dir: Path) -> None:
    """The checkpoint's weights, optimizer and probe state; CheckpointError (one line) when they
    do not fit the model the config builds (another net's checkpoint, or changed code)."""
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        probes.load_state_dict(ckpt.get("probes", {}))
    except (RuntimeError, ValueError, KeyError) as err:
        detail = [line.strip() for line in str(err).splitlines() if line.strip()]
        first = next((line for line in detail if "mismatch" in line or "key" in line), None)
        raise CheckpointError(
            f"checkpoint {str(run_dir / 'checkpoints' / 'last.pt')!r} does not match the model "
            f"the config builds ({(first or detail[0] if detail else type(err).__name__)[:200]}); "
            "nothing was changed: move it away or use the config it was written with"
        ) from None
