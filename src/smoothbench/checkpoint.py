"""Atomic checkpoints: everything needed to continue a run bitwise where it stopped.

A checkpoint is written to a temporary file in the same directory, flushed to disk, then renamed
over `last.pt`: a job killed at any instant leaves either the old or the new checkpoint, never a
torn one. A file that does not load is refused, never silently replaced by a fresh start.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, BinaryIO

import torch

from smoothbench.rundir import write_atomic

REQUIRED_KEYS = ("model", "optimizer", "rng", "step", "metrics_bytes", "config")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (one line, says what to do)."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` atomically; a failure (a full disk) leaves `path` as it was, no temp file,
    and is an OSError (with its errno) like any other write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: torch_save(payload, f))


class _KeepsWriteErrors:
    """A binary file whose write errors are kept: torch.save reports a failed write (ENOSPC) as
    a RuntimeError from its zip writer, without the errno."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self._f.flush()


def torch_save(obj: Any, f: BinaryIO) -> None:
    """`torch.save(obj, f)`, a failed write raised as the OSError it was."""
    kept = _KeepsWriteErrors(f)
    try:
        torch.save(obj, kept)
    except RuntimeError:
        if kept.error is not None:
            raise kept.error from None
        raise


def keep_previous(path: str | Path, previous: str | Path) -> None:
    """Make `previous` a copy of the checkpoint at `path` (if any) before `path` is replaced.

    A hard link where the filesystem has them, else a copy; either way `path` stays in place the
    whole time, so a kill at any instant still leaves a loadable `path`.
    """
    path, previous = Path(path), Path(previous)
    if not path.is_file():
        return
    tmp = previous.with_name(f".{previous.name}.tmp{os.getpid()}")
    try:
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
        os.replace(tmp, previous)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


# Entries holding model/optimizer tensors: the only ones `map_location` moves. RNG states must
# stay CPU ByteTensors whatever the device (torch.set_rng_state refuses anything else), so a
# checkpoint is always read onto the CPU first and only these entries are moved.
DEVICE_ENTRIES = ("model", "optimizer")


def _to_device(value: Any, device: str | torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; raise CheckpointError when it is corrupt or incomplete.

    Model and optimizer tensors go to `map_location`; everything else (RNG states, probe state)
    stays on the CPU, so a CUDA run resumes and a CPU-only machine reads a CUDA checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        # our own file: it holds numpy RNG state, which weights_only loading refuses
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or truncated ({type(err).__name__}); "
            "nothing was changed: move it away to start the run over"
        ) from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise CheckpointError(
            f"checkpoint {str(path)!r} lacks {', '.join(missing)}; nothing was changed: "
            "move it away to start the run over"
        )
    if torch.device(map_location).type != "cpu":
        for key in DEVICE_ENTRIES:
            payload[key] = _to_device(payload[key], map_location)
    return payload
