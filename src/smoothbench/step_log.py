"""Per-step training scalars kept on the device and written in blocks: one host sync per block.

A step hands over its loss, accuracy and per-tensor gradient norms as tensors (`step_scalars`);
nothing waits for the device until `StepLog.flush` copies the whole block to the host with one
`.tolist()` and writes one row per step. The rows are those a loop of `.item()` calls writes:
the same keys in the same order, the same floats (a float32 value widened to float64 on the
device is the float `.item()` returns), `grad/norm` computed on the host from the per-tensor
values. A non-finite loss ends the block: its row is written as the diverged row (no gradient
norms, no probe records) and the rows of the steps after it are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Steps per block: a kill loses at most this many computed (and recomputed on resume) rows.
BLOCK_STEPS = 50


def step_scalars(
    loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor, model, classify: bool
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """(float64 device tensor [loss, (accuracy), norm of each gradient], the gradients' names).

    Nothing here waits for the device; call it before the optimizer step (the norms are of the
    gradients of this step's loss).
    """
    import torch

    named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    parts = [loss.detach().reshape(1)]
    if classify:
        parts.append((out.detach().argmax(1) == y).float().mean().reshape(1))
    parts.append(torch.stack(torch._foreach_norm([g for _, g in named])))
    return torch.cat([p.to(torch.float64) for p in parts]), tuple(n for n, _ in named)


@dataclass
class PendingRow:
    """One step's row before its device values are on the host."""

    head: dict[str, Any]  # step, epoch, test metrics: first in the row
    measured: dict[str, Any]  # probe records at θ_t
    lr: float
    values: torch.Tensor  # step_scalars' tensor
    grad_names: tuple[str, ...]
    after: dict[str, Any] = field(default_factory=dict)  # probe records about the update


@dataclass
class Flushed:
    """What one flush wrote: the last row of a finite loss, and the diverged row if any."""

    last: dict[str, Any] | None = None
    diverged: dict[str, Any] | None = None


class StepLog:
    """Collects `PendingRow`s and writes them to `jsonl` and the W&B `mirror` in blocks.

    `mirror_extra(step)` gives keys for the mirror's copy of a block's last row only (throughput):
    they never reach metrics.jsonl.
    """

    def __init__(
        self,
        jsonl,
        mirror=None,
        *,
        classify: bool,
        per_layer: bool,
        block_steps: int | None = None,
        mirror_extra: Callable[[int], dict[str, Any]] | None = None,
    ) -> None:
        self.jsonl = jsonl
        self.mirror = mirror
        self.mirror_extra = mirror_extra
        self.classify = classify
        self.per_layer = per_layer
        self.block_steps = BLOCK_STEPS if block_steps is None else block_steps
        self.pending: list[PendingRow] = []

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.block_steps

    def add(self, row: PendingRow) -> None:
        self.pending.append(row)

    def flush(self) -> Flushed:
        """Write the pending rows in step order, with one device sync for all of them."""
        import torch

        done = Flushed()
        if not self.pending:
            return done
        flat = torch.cat([row.values for row in self.pending]).tolist()  # the one sync
        offset = 0
        while self.pending:
            row = self.pending[0]
            width = row.values.numel()
            record, finite = self._record(row, flat[offset : offset + width])
            offset += width
            self.jsonl.log(record)
            if self.mirror is not None:
                block_end = len(self.pending) == 1 or not finite
                extra = self.mirror_extra(record["step"]) if block_end and self.mirror_extra else {}
                self.mirror.log({**record, **extra})
            self.pending.pop(0)  # only once written: a failed write leaves it pending
            if not finite:
                self.pending.clear()  # the steps after a non-finite loss are not in the run
                done.diverged = record
                break
            done.last = record
        return done

    def _record(self, row: PendingRow, values: list[float]) -> tuple[dict[str, Any], bool]:
        loss = values[0]
        trained: dict[str, Any] = {"train/loss": loss, "train/lr": row.lr}
        if self.classify:
            trained["train/acc"] = values[1]
        if not math.isfinite(loss):
            return {**row.head, **trained}, False
        norms = values[2 if self.classify else 1 :]
        record = {**row.head, **row.measured, **trained}
        record["grad/norm"] = math.sqrt(sum(v * v for v in norms))
        if self.per_layer:
            record.update({f"grad/{n}": v for n, v in zip(row.grad_names, norms, strict=False)})
        record.update(row.after)
        return record, True
