"""A probe step: the probes measure θ_t as it was before the training forward pass, and a stop
signal during them rewinds the step to where it started.

The loop runs the forward and backward pass first (the loss is checked before any probe runs:
probes never see diverged weights) and the probes after it, seeing the BN buffers and RNG states
as they were before the forward pass: their records are the ones they would give had they run
first, byte for byte. A long probe step keeps the run's heartbeat in status.json fresh.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from smoothbench.preserve import rng_state, set_rng_state
from smoothbench.rundir import write_status

# Seconds between two heartbeats in status.json while probes run (a watcher that reads a
# heartbeat older than a few of these can take the run for dead).
HEARTBEAT_S = 30.0


@dataclass
class StepStart:
    """What a probe step starts from: parameters, buffers (BN running statistics), the RNG
    states and the probes' own state, taken before the forward pass."""

    parameters: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    rng: dict[str, Any]
    probes: dict[str, Any]

    @classmethod
    def take(cls, model, probes) -> StepStart:
        return cls(
            parameters={n: p.detach().clone() for n, p in model.named_parameters()},
            buffers={n: b.detach().clone() for n, b in model.named_buffers()},
            rng=rng_state(),
            probes=copy.deepcopy(probes.state_dict()),
        )

    def restore_model(self, model) -> None:
        """Parameters and buffers back to the start of the step, in place."""
        _copy_into(dict(model.named_parameters()), self.parameters)
        _copy_into(dict(model.named_buffers()), self.buffers)


def _copy_into(tensors: dict[str, torch.Tensor], values: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, value in values.items():
            tensors[name].copy_(value)


@contextmanager
def as_before_forward(model, start: StepStart) -> Iterator[None]:
    """Buffers and RNG states as they were before the forward pass, for the probes; the state
    after the forward pass (which the update continues from) comes back afterwards."""
    after_buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    after_rng = rng_state()
    _copy_into(dict(model.named_buffers()), start.buffers)
    set_rng_state(start.rng)
    try:
        yield
    finally:
        _copy_into(dict(model.named_buffers()), after_buffers)
        set_rng_state(after_rng)


@contextmanager
def heartbeat(run_dir: Path, status: dict[str, Any], every_s: float | None = None):
    """Rewrite status.json (`status`: write_status's arguments, unchanged: the step a resume
    continues from) every `every_s` (HEARTBEAT_S) seconds from a background thread while the
    block runs."""
    every_s = HEARTBEAT_S if every_s is None else every_s
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every_s):
            try:
                write_status(run_dir, **status)
            except OSError:  # a full disk shows at the next checkpoint, in the main thread
                return

    thread = threading.Thread(target=beat, name="smoothbench-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
