"""The run directory's housekeeping: one writer at a time, status with a heartbeat, no temp files.

- `RunLock`: an `fcntl` (POSIX record) lock on `<run dir>/.lock`, held for the run's life. The
  file names the holder (pid and host) so a refused second process can say who holds it. The
  kernel drops the lock when its holder dies, even by SIGKILL; a lock that is still reported as
  held by a dead process of this host (a lock server that has not noticed) is taken over.
  On network filesystems the lock is only as good as the filesystem's `fcntl` support (NFSv4 and
  NFSv3 with lockd honour it; some FUSE and object-store mounts silently do not).
- `write_status`: `status.json` replaced atomically.
- `remove_temp_files`: the `*.tmp*` leftovers of a process killed while writing.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

LOCK_NAME = ".lock"

# POSIX locks belong to the process: a second lock on the same file from this process would
# succeed, and closing any descriptor of it drops them all. So this process keeps its own list.
_HELD: set[str] = set()


class RunDirBusy(RuntimeError):
    """Another live process holds the run dir's lock (one line, names the holder)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


class RunLock:
    """An exclusive, non-blocking lock on a run dir for as long as the object is held."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        key = os.path.realpath(self.path)
        if key in _HELD:
            raise RunDirBusy(
                f"run dir {str(self.path.parent)!r} is in use by this process (pid {os.getpid()})"
            )
        for _ in range(5):  # retries only when the file was replaced under us
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EACCES, errno.EAGAIN):
                    os.close(fd)
                    raise
                holder = self._read_holder(fd)
                os.close(fd)
                if self._is_stale(holder):
                    self._remove_if_same(holder)
                    continue
                pid, host = holder.get("pid", "?"), holder.get("host", "?")
                raise RunDirBusy(
                    f"run dir {str(self.path.parent)!r} is in use by pid {pid} on host {host} "
                    f"(lock {LOCK_NAME}); wait for that run to end or use another run dir"
                ) from None
            # the file we locked must still be the one at the path (a stale-lock takeover or a
            # release may have unlinked it between our open and our lock)
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
            self._fd = fd
            _HELD.add(key)
            return self
        raise RunDirBusy(f"run dir {str(self.path.parent)!r}: could not take its lock")

    @staticmethod
    def _read_holder(fd: int) -> dict[str, Any]:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            return json.loads(os.read(fd, 4096).decode() or "{}")
        except (OSError, ValueError):
            return {}

    def _is_stale(self, holder: dict[str, Any]) -> bool:
        """Held by a process of this host that no longer exists."""
        pid = holder.get("pid")
        return (
            isinstance(pid, int)
            and holder.get("host") == socket.gethostname()
            and pid != os.getpid()
            and not _pid_alive(pid)
        )

    def _remove_if_same(self, holder: dict[str, Any]) -> None:
        try:
            with open(self.path, "rb") as f:
                if json.loads(f.read().decode() or "{}") == holder:
                    self.path.unlink()
        except (OSError, ValueError):
            pass

    def release(self) -> None:
        """Remove the lock file, then drop the lock (a waiting process re-checks the inode)."""
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        _HELD.discard(os.path.realpath(self.path))

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def remove_temp_files(run_dir: str | Path) -> list[Path]:
    """Delete `*.tmp*` leftovers (killed writers) in the run dir and its checkpoints/."""
    run_dir = Path(run_dir)
    removed = []
    for folder in (run_dir, run_dir / "checkpoints", run_dir / ".hydra"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if ".tmp" in path.name and path.is_file():
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:
                    pass
    return removed


def write_atomic(path: str | Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write `data` (bytes, or a function writing to the open file) to a temp file beside `path`,
    flush it to disk, rename it over `path`.

    A failure (a full disk) leaves `path` as it was and no temp file behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def write_status(
    run_dir: str | Path,
    state: str,
    step: int,
    reason: str | None = None,
    steps_per_s: float | None = None,
) -> None:
    """`status.json`: state, step, reason, a heartbeat (UTC time of writing) and throughput."""
    status = {
        "state": state,
        "step": step,
        "reason": reason,
        "heartbeat": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "steps_per_s": None if steps_per_s is None else round(steps_per_s, 4),
    }
    write_atomic(Path(run_dir) / "status.json", (json.dumps(status) + "\n").encode())


def read_status(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's status.json, or None when it is absent or unreadable."""
    try:
        return json.loads((Path(run_dir) / "status.json").read_text())
    except (OSError, ValueError):
        return None
