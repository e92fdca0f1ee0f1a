"""Snapshot and restore everything a probe could disturb.

A probe runs extra forward/backward passes on the training model. In training mode those passes
update BatchNorm running statistics, and any sampling moves the global RNGs. `preserved(model)`
puts parameters, buffers, per-module train/eval flags and the torch/numpy/python RNG states back
exactly as they were, so the training trajectory with probes on is bitwise the one with them off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from smoothbench.checkpoint import rng_state, set_rng_state


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


@contextmanager
def parameters_set_to(model: nn.Module, values: dict[str, torch.Tensor]) -> Iterator[None]:
    """Temporarily load `values` (a subset of parameters by name) into the model."""
    params = dict(model.named_parameters())
    saved = {n: params[n].detach().clone() for n in values}
    try:
        with torch.no_grad():
            for n, v in values.items():
                params[n].copy_(v)
        yield
    finally:
        with torch.no_grad():
            for n, v in saved.items():
                params[n].copy_(v)
