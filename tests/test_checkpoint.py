"""Checkpoints read on any device keep their RNG states as CPU ByteTensors (CUDA resume)."""

from __future__ import annotations

import pytest
import torch

from smoothbench.checkpoint import load_checkpoint, save_checkpoint
from smoothbench.preserve import rng_state, set_rng_state


def _payload(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "step": 3,
        "metrics_bytes": 0,
        "config": {},
    }


@pytest.mark.slow
def test_rng_states_stay_on_cpu_whatever_map_location(tmp_path):
    # `meta` stands in for `cuda` on a CPU-only machine: any non-CPU map_location moved the
    # RNG ByteTensor off the CPU, and torch.set_rng_state then refused it on resume
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "last.pt", _payload(model, optimizer))
    expected = torch.get_rng_state()

    ckpt = load_checkpoint(tmp_path / "last.pt", map_location="meta")

    assert ckpt["model"]["weight"].device.type == "meta"
    assert ckpt["optimizer"]["state"][0]["momentum_buffer"].device.type == "meta"
    state = ckpt["rng"]["torch"]
    assert state.device.type == "cpu" and state.dtype == torch.uint8
    torch.rand(5)  # move the generator on, then restore it from the checkpoint
    set_rng_state(ckpt["rng"])
    assert torch.equal(torch.get_rng_state(), expected)
