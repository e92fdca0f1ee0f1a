"""One run's state in one object: what was built from the config, the record it writes, and the
operations the training loop is told in (a learning rate, a forward/backward pass, a probe step,
a block of rows, a checkpoint, an evaluation).

`smoothbench.train` reads as the story of a run; the bookkeeping behind each of its lines is
here.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from smoothbench.build import learning_rate
from smoothbench.checkpoint import keep_previous, save_checkpoint
from smoothbench.preserve import rng_state, set_rng_state
from smoothbench.run.probe_step import StepStart, as_before_forward, heartbeat
from smoothbench.run.record import RunFailed, disk_fault_message, failure_line, record_failure
from smoothbench.run.signals import StopRequest, deferred_signals
from smoothbench.rundir import remove_temp_files, write_status
from smoothbench.step_log import PendingRow, StepLog, step_scalars

log = logging.getLogger(__name__)
METRICS = "metrics.jsonl"


@dataclass
class Outcome:
    """How the loop ended: finished, diverged, or running (stopped by a signal, after a
    checkpoint at `step`: rerunning the command resumes there)."""

    state: str
    step: int
    reason: str | None = None


@dataclass
class Run:
    """Everything one run holds. Built by `smoothbench.run.setup.build_run`; the record
    (`jsonl`, `sink`, `mirror`) is attached once the command is accepted (`attach_record`)."""

    cfg: DictConfig
    run_dir: Path
    device: torch.device
    resolved: dict[str, Any]  # the config as saved in checkpoints
    data: Any
    model: torch.nn.Module
    loss_fn: Any
    optimizer: torch.optim.Optimizer
    probes: Any  # ProbeRunner
    start: int  # the first step this process trains
    classify: bool = field(init=False)
    batch_size: int = field(init=False)
    steps_per_epoch: float = field(init=False)

    def __post_init__(self) -> None:
        self.classify = self.data.num_classes is not None
        full = self.cfg.optim.full_batch
        self.batch_size = self.data.num_train if full else self.cfg.batch_size
        self.steps_per_epoch = self.data.steps_per_epoch(self.batch_size)
        self.last: dict[str, Any] = {}  # the last row of a finite loss (the summary's)
        self.record: dict[str, Any] = {"step": self.start}  # the last row written
        self.resume_step = self.start  # where a resume continues now: the latest checkpoint
        self.on_rows = None  # called with (last row, steps/s) after each written block
        self._clock = (time.perf_counter(), self.start)

    # ---- the record ----

    def attach_record(self, jsonl, sink, mirror) -> None:
        """metrics.jsonl's sink, the fan-out to it and W&B, and the per-step rows' log."""
        self.jsonl, self.sink, self.mirror = jsonl, sink, mirror
        # per-step scalars stay on the device and are written in blocks (one sync per block);
        # a block is written before anything that needs its rows: a checkpoint, a probe step
        # (its loss check comes after the earlier rows'), an evaluation (which syncs anyway), a
        # signal and the end
        self.step_log = StepLog(
            jsonl,
            mirror,
            classify=self.classify,
            per_layer=self.cfg.probes.grad_norms == "per_layer",
            mirror_extra=lambda step: _throughput_record(self.throughput(step + 1)),
        )

    def throughput(self, step: int) -> float | None:
        """Steps per second trained by this process up to `step`."""
        t0, step0 = self._clock
        elapsed = time.perf_counter() - t0
        return (step - step0) / elapsed if elapsed > 0 and step > step0 else None

    def flush(self) -> dict[str, Any] | None:
        """Write the pending rows; the diverged row if a loss among them was not finite."""
        written = self.step_log.flush()
        if written.last is not None:
            self.last = self.record = written.last
            if self.on_rows is not None:
                self.on_rows(written.last, self.throughput(written.last["step"] + 1))
        if written.diverged is not None:
            self.record = written.diverged
        return written.diverged

    def rows_wanted(self, next_step: int, checkpoint_due: bool, stopping: bool) -> bool:
        """Whether the pending rows must be written before step `next_step` (see attach_record)."""
        cfg = self.cfg
        return (
            self.step_log.full
            or checkpoint_due
            or stopping
            or next_step == cfg.steps
            or next_step % cfg.eval_every == 0
            or self.probes.any_due(next_step)
        )

    def diverged(self) -> Outcome:
        step = self.record["step"]
        return Outcome("diverged", step, f"non-finite training loss at step {step}")

    # ---- one step ----

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.batch(step, self.batch_size, self.cfg.seed, augment=self.cfg.data.augment)

    def head(self, step: int) -> dict[str, Any]:
        """The row's first keys: step, epoch and, on schedule, the test metrics at θ_step."""
        head: dict[str, Any] = {"step": step, "epoch": step / self.steps_per_epoch}
        if step % self.cfg.eval_every == 0:
            head.update(self.evaluate())
        return head

    def set_learning_rate(self, step: int) -> float:
        optim = self.cfg.optim
        lr = learning_rate(
            step,
            lr=optim.lr,
            schedule=optim.schedule,
            total_steps=self.cfg.steps,
            milestones=optim.milestones,
            gamma=optim.gamma,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def forward_backward(self, x, y) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs, loss) of the training forward pass; the gradients are in `.grad`."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.autocast):
            out = self.model(x)
            loss = self.loss_fn(out.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return out, loss

    def loss_diverged(self, head, lr: float, loss, out, y) -> bool:
        """At a probe step, before the probes: write the earlier rows, and this step's as the
        diverged row if its loss is not finite (a sync is fine here)."""
        diverged = self.flush()  # normally no rows are pending here
        if diverged is None and not math.isfinite(loss.item()):
            scalars = step_scalars(loss, out, y, self.model, self.classify)
            self.step_log.add(PendingRow(head, {}, lr, *scalars))
            diverged = self.flush()
        return diverged is not None

    def measure(self, step: int, batch, start: StepStart, stop: StopRequest) -> dict[str, Any]:
        """The due probes' records at θ_step as before the forward pass. A stop signal ends
        them at once (ProbeStepInterrupted); status.json's heartbeat stays fresh meanwhile."""
        beat = {"state": "running", "step": self.resume_step}
        with stop.interruptible(), heartbeat(self.run_dir, beat):
            with as_before_forward(self.model, start):
                return self.probes.measure(step, batch)

    def update(self, step: int, batch, head, measured, lr: float, out, loss) -> None:
        """The optimizer step, with the probes' hooks around it, and the step's pending row."""
        y = batch[1]
        scalars = step_scalars(loss, out, y, self.model, self.classify)  # on the device
        self.probes.before_update(step, batch)
        self.optimizer.step()
        after = self.probes.after_update(step, batch)
        self.step_log.add(PendingRow(head, measured, lr, *scalars, after))

    def checkpoint_due(self, next_step: int) -> bool:
        cfg = self.cfg
        return next_step % cfg.checkpoint_every == 0 or next_step in cfg.keep_checkpoints

    # ---- checkpoints and evaluation ----

    def checkpoint(self, next_step: int, metrics_bytes: int | None = None, probes=None) -> None:
        """checkpoints/last.pt (and step_<N>.pt where kept) for continuing at `next_step`;
        `probes`: the probes' state to save instead of their current one (a rewound step)."""
        ckpt_dir = self.run_dir / "checkpoints"
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(),
            "probes": self.probes.state_dict() if probes is None else probes,
            "step": next_step,
            "metrics_bytes": self.jsonl.tell() if metrics_bytes is None else metrics_bytes,
            "config": self.resolved,
        }
        with deferred_signals():  # a handler that raises must not cut torch.save in half
            _fsync(self.run_dir / METRICS)  # the rows a checkpoint points past: on disk first
            # resume=from_checkpoint's fallback
            keep_previous(ckpt_dir / "last.pt", ckpt_dir / "prev.pt")
            save_checkpoint(ckpt_dir / "last.pt", payload)
            if next_step in self.cfg.keep_checkpoints:
                save_checkpoint(ckpt_dir / f"step_{next_step}.pt", payload)
            self.resume_step = next_step
            write_status(self.run_dir, "running", next_step, None, self.throughput(next_step))

    def rewind(self, start: StepStart, step: int) -> None:
        """A probe step stopped by a signal: the model and RNG back at the start of `step` and a
        checkpoint there (its partial measurement is dropped; a resume repeats the step)."""
        start.restore_model(self.model)
        set_rng_state(start.rng)
        self.checkpoint(step, probes=start.probes)

    def evaluate(self) -> dict[str, float]:
        return evaluate(
            self.model, self.loss_fn, self.data, self.cfg.eval_batch_size, self.classify
        )

    def final_evaluation(self) -> None:
        """The test metrics at the final parameters, on a line of their own, and the final
        checkpoint."""
        before_final = self.jsonl.tell()
        final = {"step": self.cfg.steps, "epoch": self.cfg.steps / self.steps_per_epoch}
        final.update(self.evaluate())
        self.sink.log(final)
        self.last = {**self.last, **final}
        self.checkpoint(self.cfg.steps, before_final)

    # ---- the end ----

    @contextmanager
    def closing_on_error(self) -> Iterator[None]:
        """On the way out of a failed or interrupted loop: the computed rows, status.json and
        the sinks as the error leaves them (a normal end goes through `finish`)."""
        step = lambda: self.last.get("step", self.start)  # noqa: E731
        try:
            yield
        except OSError as err:  # a full or read-only disk: earlier checkpoints and rows are intact
            line = failure_line(self.run_dir, step(), disk_fault_message(err, self.run_dir))
            try:
                self.sink.close("failed")
            except OSError:
                pass
            remove_temp_files(self.run_dir)
            raise RunFailed(line) from None
        except Exception as err:
            self._write_pending()
            record_failure(self.run_dir, step(), f"{type(err).__name__}: {err}".splitlines()[0])
            self.sink.close("failed")
            raise
        except BaseException:
            # KeyboardInterrupt (a second signal) or SystemExit: the status stays "running" and
            # the last checkpoint stands, so the same command resumes
            self._write_pending()
            self.sink.close(None)
            raise

    def _write_pending(self) -> None:
        """The computed rows, if possible (the rows after the last checkpoint are rewritten on
        resume in any case)."""
        try:
            self.flush()
        except BaseException:
            log.warning("could not write the rows computed since the last flush")

    def finish(self, outcome: Outcome, stop: StopRequest) -> dict[str, Any]:
        """status.json and the sinks at the end; the result `train()` returns."""
        write_status(
            self.run_dir, outcome.state, outcome.step, outcome.reason, self.throughput(outcome.step)
        )
        result = {**vars(outcome), "last": self.last}
        if outcome.state == "running":  # stopped by a signal, after a final checkpoint
            self.sink.close(None)
            log.info("%s; checkpoint written; rerun the same command to resume", outcome.reason)
            return {**result, "signal": stop.signal_number}
        self.sink.close(outcome.state)
        return result


def evaluate(model, loss_fn, data, batch_size: int, classify: bool) -> dict[str, float]:
    """Test loss (and accuracy) over the whole test set, norms in eval mode, mode restored."""
    was_training = model.training
    model.eval()
    losses, corrects, sizes = [], [], []
    with torch.no_grad():
        for x, y in data.test_batches(batch_size):
            out = model(x)
            losses.append(loss_fn(out, y).reshape(1))
            if classify:
                corrects.append((out.argmax(1) == y).sum().reshape(1))
            sizes.append(len(y))
    model.train(was_training)
    # one device sync; then the sums of a loop of .item() calls, in its order (same floats)
    values = torch.cat([t.to(torch.float64) for t in losses + corrects]).tolist()
    total_loss, correct = 0.0, 0
    for loss, size in zip(values, sizes, strict=False):
        total_loss += loss * size
    for count in values[len(losses) :]:
        correct += int(count)
    result = {"test/loss": total_loss / sum(sizes)}
    if classify:
        result["test/acc"] = correct / sum(sizes)
    return result


def _throughput_record(steps_per_s: float | None) -> dict[str, float]:
    """The W&B mirror's throughput key (never in metrics.jsonl, whose bytes are the run's)."""
    return {} if steps_per_s is None else {"perf/steps_per_s": steps_per_s}


def _fsync(path: Path) -> None:
    """Flush a file's written data to disk (fsync works on any descriptor of the file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
