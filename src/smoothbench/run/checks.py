"""Checks of a run dir before anything in it changes: writable, its record files what they
should be (a status.json that is a directory would fail the first status write, after .hydra/
and metrics.jsonl had already been rewritten)."""

from __future__ import annotations

import os
from pathlib import Path

from smoothbench.config import ConfigError


def check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"run dir {str(run_dir)!r} cannot be written ({err.strerror})") from None


# Files the run writes in place (appends) or replaces, and the folders they live in: each must be
# what it should be before anything changes (a status.json that is a directory fails the first
# status write, after .hydra/ and metrics.jsonl would already have been rewritten)
RECORD_DIRS = (".hydra", "checkpoints", "surfaces")
RECORD_PATHS = (
    ".hydra/config.yaml",
    ".hydra/hydra.yaml",
    ".hydra/overrides.yaml",
    "metrics.jsonl",
    "status.json",
    "provenance.json",
    "wandb_id.txt",
    "checkpoints/last.pt",
    "checkpoints/prev.pt",
)


def check_record_paths(run_dir: Path) -> None:
    """Refuse a run dir whose record files are not files (or folders not folders)."""
    for name in RECORD_DIRS:
        path = run_dir / name
        if path.exists() and not path.is_dir():
            raise ConfigError(f"run dir {str(run_dir)!r}: {name} is not a folder; move it away")
    for name in RECORD_PATHS:
        path = run_dir / name
        if path.exists() and not path.is_file():
            raise ConfigError(
                f"run dir {str(run_dir)!r}: {name} is not a file (a {_kind(path)}); move it away"
            )
        if path.is_file() and not os.access(path, os.W_OK):
            raise ConfigError(f"run dir {str(run_dir)!r}: {name} cannot be written (read-only)")


def _kind(path: Path) -> str:
    return "folder" if path.is_dir() else "special file"
