"""Where metrics go: the JSONL record (always) and a W&B mirror (optional).

`metrics.jsonl` is the record the analysis trusts; W&B only mirrors it, so any W&B failure is a
warning and training goes on.
"""

from __future__ import annotations

import json
import math
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    return value


class JsonlSink:
    """Appends one JSON object per line and flushes it, so a kill loses at most a torn line."""

    def __init__(self, path: str | Path, truncate_to: int | None = None):
        self.path = Path(path)
        if truncate_to is not None and self.path.exists():
            # resume: forget what was logged after the checkpoint we continue from
            with open(self.path, "r+b") as f:
                f.truncate(truncate_to)
        self._file = open(self.path, "ab")

    def log(self, record: dict[str, Any]) -> None:
        line = json.dumps(_jsonable(record), allow_nan=False, separators=(",", ":")) + "\n"
        self._file.write(line.encode())
        self._file.flush()

    def tell(self) -> int:
        """Bytes written so far: stored in checkpoints to truncate to on resume."""
        self._file.flush()
        return self._file.tell()

    def close(self, state: str | None = None) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


HISTOGRAM_SUFFIX = "/hist"


class WandbSink:
    """Mirrors records to a W&B run whose id is kept in the run dir (requeued jobs continue it)."""

    def __init__(
        self,
        run_dir: str | Path,
        config: dict[str, Any],
        *,
        project: str,
        entity: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        tags: list[str] | None = None,
        mode: str = "offline",
        name: str | None = None,
    ):
        self.run = None
        run_dir = Path(run_dir)
        id_file = run_dir / "wandb_id.txt"
        try:
            import wandb

            if id_file.is_file():
                run_id = id_file.read_text().strip()
            else:
                run_id = uuid.uuid4().hex[:12]
                id_file.write_text(run_id + "\n")
            self._wandb = wandb
            self.run = wandb.init(
                project=project,
                entity=entity,
                group=group,
                job_type=job_type,
                tags=list(tags or []),
                config=config,
                dir=str(run_dir),
                id=run_id,
                resume="allow",
                mode=mode,
                name=name,
                settings=wandb.Settings(silent=True, console="off"),
            )
            # our step is a metric of its own: a requeued run re-logs steps after its checkpoint,
            # which W&B's monotonic internal step would drop
            self.run.define_metric("step")
            self.run.define_metric("*", step_metric="step")
        except Exception as err:  # a mirror must never stop training
            warnings.warn(
                f"W&B could not start ({type(err).__name__}: {err}); training goes on "
                "with metrics.jsonl only",
                stacklevel=2,
            )
            self.run = None

    def log(self, record: dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            data = {"step": record["step"]}
            for key, value in record.items():
                if key == "step":
                    continue
                if key.endswith(HISTOGRAM_SUFFIX):
                    edges = record.get(key + "_edges")
                    if edges is not None:
                        data[key] = self._wandb.Histogram(
                            np_histogram=(np.asarray(value), np.asarray(edges))
                        )
                elif key.endswith(HISTOGRAM_SUFFIX + "_edges"):
                    continue
                elif isinstance(value, (list, tuple, np.ndarray)):
                    continue  # raw arrays stay in metrics.jsonl; W&B charts want scalars
                elif isinstance(value, str):
                    continue
                else:
                    data[key] = value
            self.run.log(data)
        except Exception as err:
            warnings.warn(
                f"W&B log failed ({type(err).__name__}: {err}); disabling the mirror", stacklevel=2
            )
            self.run = None

    def close(self, state: str | None = None) -> None:
        if self.run is None:
            return
        try:
            if state is not None:
                self.run.summary["state"] = state
            self.run.finish(exit_code=0 if state in (None, "finished", "diverged") else 1)
        except Exception as err:
            warnings.warn(f"W&B finish failed ({type(err).__name__}: {err})", stacklevel=2)
        self.run = None


class FanOut:
    """Sends every record to each sink."""

    def __init__(self, *sinks):
        self.sinks = [s for s in sinks if s is not None]

    def log(self, record: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.log(record)

    def close(self, state: str | None = None) -> None:
        for sink in self.sinks:
            sink.close(state)
