"""Stopping a run cleanly on SIGINT or SIGTERM.

A signal between steps lets the step finish: the loop writes a checkpoint and exits. A signal
during a probe step does not wait for the probes (a Hessian measurement can take minutes, longer
than SLURM's grace period): inside `interruptible()` the handler raises `ProbeStepInterrupted`
at once (Python runs it between two bytecodes, so at the latest when the running tensor
operation, e.g. one Hessian-vector product, returns). The loop then drops that step's partial
measurement and checkpoints the state the step started from. A second signal stops at once
(KeyboardInterrupt) and the last checkpoint stands.

SIGUSR2 (SLURM's warning before preemption) is left to submitit, whose handler requeues the job
and exits at once: the requeued job resumes from the last checkpoint.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Stop signals (SIGUSR2, submitit's preemption warning, too) wait until the block ends.

    A handler that raises (ours on a second signal, submitit's SystemExit after a requeue) in
    the middle of torch.save would surface as torch's "unexpected pos" RuntimeError from its
    zip writer: the run would end `failed` instead of being requeued. So the block's signals
    are only noted, and raised again, in order, to the handlers in force once it ends. (Masking
    them at the OS level would not do: the kernel hands a process's signal to another thread,
    and Python still runs the handler in the main thread at once.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: noted.append(signum))
        for sig in (*STOP_SIGNALS, signal.SIGUSR2)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for signum in noted:
            signal.raise_signal(signum)


class ProbeStepInterrupted(BaseException):
    """A stop signal arrived during a probe step. A BaseException, so that no probe's own error
    handling (which catches ordinary exceptions to record NaN) can swallow it."""


class StopRequest:
    """The stop signals' handler for the run's life (main thread only; elsewhere a no-op)."""

    def __init__(self):
        self.signal_name: str | None = None
        self.signal_number = 0
        self._previous: dict[int, Any] = {}
        self._interruptible = False

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None:  # asked twice: stop now, the last checkpoint stands
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        self.signal_number = signum
        if self._interruptible:
            self._interruptible = False
            raise ProbeStepInterrupted

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """A region (a probe step) that a stop signal ends at once with ProbeStepInterrupted;
        entered after a signal already arrived, it ends before it starts."""
        if self.requested:
            raise ProbeStepInterrupted
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
