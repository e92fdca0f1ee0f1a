"""Where a result comes from: the code's git commit, the package versions, threads and device.

`code_provenance()` is the one source of the commit and versions: the W&B mirror's config
carries it (`sinks.WandbSink.for_run`) and every run's `provenance.json` starts from it
(`run_provenance`). Nothing here may fail a run: an absent git, a source that is not a git
checkout, a git that hangs (time-boxed) or a package without metadata give None.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROVENANCE = "provenance.json"
PACKAGES = ("smoothbench", "torch", "torchvision", "numpy", "hydra-core", "wandb")
GIT_TIMEOUT_S = 5.0
_SOURCE = Path(__file__).resolve().parent  # the package's source dir (src/smoothbench)


def _git(*args: str, cwd: Path) -> str | None:
    """stdout of `git <args>` in `cwd`, or None when git fails, is missing or times out."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            # never take .git/index.lock: a run must not get in the way of a commit
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(source: Path = _SOURCE) -> dict[str, Any]:
    """{"git_commit": HEAD's hash, "git_dirty": uncommitted changes to tracked files?}.

    Both None unless `source` is a tracked part of a git checkout (an installed copy that
    happens to sit inside some other repository is not); `git_dirty` None when `git status`
    fails or times out.
    """
    unknown = {"git_commit": None, "git_dirty": None}
    if _git("ls-files", "--error-unmatch", "--", "__init__.py", cwd=source) is None:
        return unknown
    commit = (_git("rev-parse", "HEAD", cwd=source) or "").strip()
    if not commit:
        return unknown
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=source)
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status.strip())}


def package_versions() -> dict[str, str | None]:
    """Python's version and each of PACKAGES' installed versions (None: not installed).

    torch's and torchvision's from the loaded module where it is loaded: only `__version__`
    names the build (`2.5.1+cu124`), which the installed metadata may leave out.
    """
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
        loaded = sys.modules.get(package) if package in ("torch", "torchvision") else None
        if isinstance(getattr(loaded, "__version__", None), str):
            versions[package] = str(loaded.__version__)
    return versions


def code_provenance() -> dict[str, Any]:
    """The git commit of the code (and whether it had uncommitted changes) and the versions of
    the packages a result depends on: {"git_commit", "git_dirty", "versions"}."""
    return {**git_state(), "versions": package_versions()}


def run_provenance(device: Any, step: int = 0) -> dict[str, Any]:
    """What a run's numbers depend on beyond its config, as in force now: torch's CPU threads
    (a CPU run is bitwise only for a fixed count), the device (and the CUDA device's name), the
    code's commit and the versions; `step` is where this process started (0, or a resume's)."""
    import torch

    device = torch.device(device)
    name = None
    if device.type == "cuda":
        try:
            name = torch.cuda.get_device_name(device)
        except Exception:  # a name is nice to have, never worth a failed run
            name = None
    record = {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "device": device.type,
        "device_name": name,
        **code_provenance(),
        "started_at_step": step,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node() or None,
        # the process's command line as typed (the program's name, then its arguments)
        "command": _command_line(),
    }
    record["versions"]["cuda"] = torch.version.cuda
    return record


def _command_line() -> str | None:
    from smoothbench.cli import typed_command_line

    argv = typed_command_line()
    return shlex.join([Path(argv[0]).name, *argv[1:]]) if argv else None


def read_provenance(run_dir: str | Path) -> dict[str, Any] | None:
    """The run dir's provenance.json, or None when it is absent or unreadable."""
    try:
        record = json.loads((Path(run_dir) / PROVENANCE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def record_provenance(run_dir: str | Path, record: dict[str, Any], fresh: bool) -> dict[str, Any]:
    """Write `record` as the run dir's provenance.json (atomically) unless the run dir holds one
    and `fresh` is false; the record in force afterwards.

    `fresh`: the run starts at step 0 (every row is rewritten), so an earlier attempt's record
    is replaced. A resume keeps the first record: it describes the process that made step 0.
    """
    from smoothbench.rundir import write_atomic

    if not fresh:
        existing = read_provenance(run_dir)
        if existing is not None:
            return existing
    write_atomic(Path(run_dir) / PROVENANCE, (json.dumps(record, indent=1) + "\n").encode())
    return record


def provenance_differences(first: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The keys that can change a run's bits and differ between two records, as 'key: a -> b'."""
    diffs = []
    for key in ("threads", "device", "device_name", "git_commit", "git_dirty"):
        if first.get(key) != now.get(key):
            diffs.append(f"{key}: {first.get(key)!r} -> {now.get(key)!r}")
    old, new = first.get("versions") or {}, now.get("versions") or {}
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            diffs.append(f"versions.{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return diffs
