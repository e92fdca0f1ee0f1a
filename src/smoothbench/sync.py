"""smoothbench-sync: rebuild or complete a run's W&B history from its metrics.jsonl.

    smoothbench-sync RUN_DIR [RUN_DIR ...]              # offline: a complete offline W&B run
    smoothbench-sync --mode online RUN_DIR              # add the rows W&B never received

For clusters whose compute nodes cannot reach W&B (train with `logger=wandb` offline, or without
the mirror at all), and for runs whose mirror stopped. The W&B run keeps the run dir's id
(`wandb_id.txt`), name, tags, group and config, so a requeued or resynced run stays one run.

- offline (default): if the run dir's offline W&B records already hold every row, nothing is
  written; otherwise a new offline run holding every row of metrics.jsonl is written next to
  them. Either way the `wandb sync` command that uploads the complete record is printed: sync
  that folder alone (an older, incomplete folder of the same id would add a partial copy).
- online: resumes the W&B run and logs the rows that no local W&B record of the run holds (what
  the mirror never sent).

Why this module reads W&B's run files itself (`read_history`): deciding which rows a local W&B
record already holds needs the history of an offline run, and W&B has no public API that reads
one. `wandb.Api` reads only what W&B's servers hold (nothing, for a run never uploaded; and no
server is reachable from compute nodes or CI); `wandb sync` and `wandb beta sync` upload a
record without reading it back; the Python reader W&B once shipped
(`wandb.sdk.internal.datastore`) was private and went with the move to the Go core (wandb 0.31
has none). So the short reader stays, resting on what W&B keeps stable in its open source: the
record format (a LevelDB-style log of 32 KiB blocks) and the protobuf schema of its records
(`wandb.proto`, shipped with the package); tests/test_sinks.py and tests/test_sync.py check it
against runs the installed W&B wrote.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

from smoothbench.sinks import WandbSink, read_overrides, read_records

PROG = "smoothbench-sync"


class SyncError(ValueError):
    """A run dir that cannot be synced (one line: the path and what to do)."""


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """History rows of a W&B run file (`run-<id>.wandb`: a LevelDB-style log of protobuf records).

    Each row maps the logged keys to their JSON-decoded values; histograms come back as dicts.
    A torn tail (a file still being written, or a killed writer) ends the read.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    block, header = 32768, 7
    data, pos, chunks, rows = Path(path).read_bytes(), 7, b"", []  # 7: the file's own header
    while pos + header <= len(data):
        if block - pos % block < header:  # too little room left for a header: block padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if kind == 0 or pos + header + length > len(data):
            break
        chunks += data[pos + header : pos + header + length]
        pos += header + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = pb.Record()
            try:
                record.ParseFromString(chunks)
            except Exception:  # a torn record
                break
            chunks = b""
            if record.WhichOneof("record_type") == "history":
                rows.append(
                    {
                        "/".join(i.nested_key) or i.key: json.loads(i.value_json)
                        for i in record.history.item
                    }
                )
    return rows


def wandb_records(run_dir: Path, run_id: str) -> list[Path]:
    """The run's W&B record files in the run dir (offline and online runs), oldest first."""
    # W&B names a run's folder `<offline-run|run>-<time>-<id>`, plus `-<n>` within one second
    folder = re.compile(rf"(offline-)?run-\d{{8}}_\d{{6}}-{re.escape(run_id)}(-\d+)?")
    found = [
        p
        for p in (run_dir / "wandb").glob(f"*run-*-{run_id}*/run-{run_id}.wandb")
        if folder.fullmatch(p.parent.name)
    ]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.parent.name))


def mirrored_steps(record: Path) -> set[int]:
    return {int(row["step"]) for row in read_history(record) if isinstance(row.get("step"), int)}


def load_config(run_dir: Path) -> dict[str, Any]:
    """The run's resolved config from `.hydra/config.yaml` ({} when the run dir has none)."""
    from omegaconf import OmegaConf

    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    try:
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SyncError(f"{path} is not a readable config ({first}); fix or remove it") from None
    if not isinstance(config, dict):
        raise SyncError(f"{path} is not a readable config (not a mapping); fix or remove it")
    return config


def sync_run(
    run_dir: str | Path,
    *,
    mode: str = "offline",
    project: str | None = None,
    entity: str | None = None,
    echo=print,
) -> dict[str, Any]:
    """Rebuild (offline) or complete (online) the W&B history of one run dir.

    Returns {"logged": rows written, "rows": rows in metrics.jsonl, "sync_dir": the offline folder
    to upload or None}.
    """
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not run_dir.is_dir():
        raise SyncError(f"{str(run_dir)!r} is not a directory; pass a training run directory")
    if not metrics.is_file():
        raise SyncError(f"{str(run_dir)!r} has no metrics.jsonl; is it a training run directory?")
    rows = [r for r in read_records(metrics) if isinstance(r.get("step"), int)]
    if not rows:
        raise SyncError(f"{metrics} holds no rows; nothing to sync")
    config = load_config(run_dir)
    id_file = run_dir / "wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    steps = {r["step"] for r in rows}
    records = wandb_records(run_dir, run_id) if run_id else []

    if mode == "offline":
        for record in reversed(records):  # the newest complete offline record is the one to sync
            if record.parent.name.startswith("offline-run-") and steps <= mirrored_steps(record):
                echo(f"{run_dir}: the W&B record holds all {len(rows)} rows")
                echo(f"upload it with: wandb sync {shlex.quote(str(record.parent))}")
                return {"logged": 0, "rows": len(rows), "sync_dir": record.parent}
        todo = rows
    else:
        held = set().union(*(mirrored_steps(r) for r in records)) if records else set()
        todo = [r for r in rows if r["step"] not in held]
        if not todo:
            echo(f"{run_dir}: W&B already has all {len(rows)} rows")
            return {"logged": 0, "rows": len(rows), "sync_dir": None}

    if "logger" not in config:
        config["logger"] = {}
    overrides = {"mode": mode}
    if project:
        overrides["project"] = project
    if entity:
        overrides["entity"] = entity
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink = WandbSink.for_run(
            run_dir, config, read_overrides(run_dir), echo=lambda line: None, **overrides
        )
        if sink.run is None:
            first = str(caught[-1].message).split(";")[0] if caught else "W&B did not start"
            raise SyncError(f"{run_dir}: {first}")
        for row in todo:
            sink.log(row)
        state = _state(run_dir)
        sink.close(state)
    failed = [str(w.message) for w in caught if "missing" in str(w.message)]
    if failed:
        raise SyncError(f"{run_dir}: {failed[0]}")
    echo(f"{run_dir}: wrote {len(todo)} of {len(rows)} rows to W&B run {_id(run_dir)} ({mode})")
    if sink.sync_dir is not None:
        echo(f"upload it with: wandb sync {shlex.quote(str(sink.sync_dir))}")
    return {"logged": len(todo), "rows": len(rows), "sync_dir": sink.sync_dir}


def _id(run_dir: Path) -> str:
    return (run_dir / "wandb_id.txt").read_text().strip()


def _state(run_dir: Path) -> str | None:
    """The run's final state from status.json (None while it is still running or unknown)."""
    try:
        state = json.loads((run_dir / "status.json").read_text()).get("state")
    except (OSError, ValueError, AttributeError):
        return None
    return state if state in ("finished", "diverged", "failed") else None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="training run directories")
    p.add_argument(
        "--mode",
        choices=("offline", "online"),
        default="offline",
        help="offline (default): write a complete offline W&B run to upload with `wandb sync`; "
        "online: send the missing rows now",
    )
    p.add_argument("--project", help="W&B project (default: the run's logger.project)")
    p.add_argument("--entity", help="W&B entity (default: the run's logger.entity)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    status = 0
    for run_dir in args.run_dirs:
        try:
            sync_run(run_dir, mode=args.mode, project=args.project, entity=args.entity)
        except SyncError as err:
            print(f"{PROG}: error: {err}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    raise SystemExit(main())
