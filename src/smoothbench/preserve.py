"""Snapshot and restore a model's state and every random state.

A measurement runs extra forward/backward passes on the training model. In training mode those
passes update BatchNorm running statistics, and any sampling moves the global RNGs.
`preserved(model)` puts parameters, buffers, per-module train/eval flags and the
torch/numpy/python RNG states back exactly as they were, so the training trajectory with probes
or surfaces computed on the way is bitwise the one without them. `rng_state` / `set_rng_state`
are the same RNG snapshot that checkpoints store for a bitwise resume.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


def rng_state() -> dict:
    """The torch (CPU, and CUDA once initialized), numpy and python RNG states."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put back RNG states taken by `rng_state` (also when read from a checkpoint)."""
    # torch wants CPU ByteTensors here, also for the CUDA generators' states
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


@contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Restore parameters, buffers, module modes and RNG states on exit (also on error)."""
    saved_tensors = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    saved_modes = {name: m.training for name, m in model.named_modules()}
    saved_rng = rng_state()
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in model.state_dict(keep_vars=True).items():
                v.copy_(saved_tensors[k])
        for name, m in model.named_modules():
            m.training = saved_modes[name]
        set_rng_state(saved_rng)


def parameters_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every trainable parameter, by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
