"""Where metrics go: the JSONL record (always) and a W&B mirror (optional).

`metrics.jsonl` is the record the analysis trusts; W&B only mirrors it, so any W&B failure is a
warning and training goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from smoothbench.provenance import code_provenance
from smoothbench.trajectory_keys import NON_TRAJECTORY_KEYS


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
# Retries of one failed `log` call before the mirror stops (seconds to wait before each retry).
RETRY_DELAYS = (0.5, 2.0, 8.0)
# Keys the mirror derives from a record for the dashboards (never written to metrics.jsonl).
DERIVED_KEYS = {"train/two_over_lr": "2 / train/lr: the edge-of-stability line for lambda_max"}
# W&B modes `logger.mode` may name; None lets W&B decide (WANDB_MODE, else its login state).
MODES = ("online", "offline", "disabled")
# Overrides of keys that do not change the training trajectory are bookkeeping, left out of the
# W&B run name (a resume may change them, so they would also rename the run).
BOOKKEEPING_KEYS = NON_TRAJECTORY_KEYS
# Further overrides that say where or how a run ran, not what it is (the seed ends the name).
NAME_EXCLUDED_KEYS = ("seed", "launcher", "data.root")
NAME_EXCLUDED_PREFIXES = ("hydra.", "launcher.")
# Short forms of swept keys in run names: `optim.lr=0.5` -> `lr0.5`, `seed=0` -> `s0`.
NAME_PREFIXES = {"optim.lr": "lr", "seed": "s"}
# Config groups whose choice alone says what it is (`norm=batch` -> `batch`); any other key is
# written with its name (`model.width=0.25` -> `width0.25`).
NAME_BARE_GROUPS = ("model", "norm", "data", "optim")


def read_overrides(run_dir: str | Path) -> list[str]:
    """The command-line overrides Hydra recorded in `<run_dir>/.hydra/overrides.yaml` (or [])."""
    import yaml

    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    return [str(o) for o in loaded] if isinstance(loaded, list) else []


def run_name(config: dict[str, Any], overrides: list[str]) -> str:
    """`<experiment>-<swept values>-s<seed>`, e.g. `fig1-batch-lr0.5-s0`.

    Without an experiment the prefix is `<model>-<norm>`. Every override that changes the
    training trajectory appears (model, norm, data and optim choices by their value, other keys
    as `<last key part><value>`), so two runs of one sweep never share a name unless they train
    alike. Bookkeeping overrides (`BOOKKEEPING_KEYS`: eval and checkpoint cadence, probes,
    logger, device, threads, resume, ...) never appear; `steps` appears only under a
    non-constant lr schedule, where the budget shapes the schedule.
    """
    experiment = config.get("experiment")
    model = config.get("model", {}).get("name", "model")
    norm = config.get("norm", {}).get("name", "norm")
    scheduled = config.get("optim", {}).get("schedule", "constant") != "constant"
    parts = [experiment] if experiment else [model, norm]
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if not sep or not _names_the_run(key, scheduled):
            continue
        if not experiment and key in ("model", "norm"):
            continue  # already in the prefix
        if key in NAME_BARE_GROUPS:
            parts.append(value)
        else:
            parts.append(NAME_PREFIXES.get(key, key.rsplit(".", 1)[-1]) + value)
    parts.append(f"s{config.get('seed', 0)}")
    return "-".join(str(p).replace("/", "_").replace(" ", "") for p in parts)


def _names_the_run(key: str, scheduled: bool) -> bool:
    """Whether an override of `key` belongs in the run name (see `run_name`)."""
    if key in NAME_EXCLUDED_KEYS or key.startswith(NAME_EXCLUDED_PREFIXES):
        return False
    if key == "steps":
        return scheduled  # as smoothbench.config.trajectory_config decides
    return key.split(".", 1)[0] not in BOOKKEEPING_KEYS


def run_tags(config: dict[str, Any], extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Automatic tags `scale:`, `experiment:`, `model:`, `norm:` plus the configured ones."""
    tags = [f"scale:{config.get('scale')}"]
    if config.get("experiment"):
        tags.append(f"experiment:{config['experiment']}")
    tags.append(f"model:{config.get('model', {}).get('name')}")
    tags.append(f"norm:{config.get('norm', {}).get('name')}")
    return tags + [t for t in extra if t not in tags]


def run_group(config: dict[str, Any]) -> str | None:
    """`<experiment>-<scale>` (so smoke and paper runs of a figure never average together), unless
    `logger.group` names one; runs outside an experiment are ungrouped."""
    configured = config.get("logger", {}).get("group")
    if configured:
        return str(configured)
    if config.get("experiment"):
        return f"{config['experiment']}-{config.get('scale')}"
    return None


def provenance() -> dict[str, Any]:
    """The git commit of the code (and whether it was dirty) and the versions of the packages a
    result depends on: `smoothbench.provenance.code_provenance`, also in every provenance.json."""
    return code_provenance()


def announce(line: str) -> None:
    """A message for the user: into the run's log where logging is set up (a Hydra job writes it
    to the console and the run dir's log file), else on stdout."""
    if logging.getLogger().handlers:
        logging.getLogger(__name__).info(line)
    else:
        print(line, flush=True)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl; a torn last line (a kill mid-write) is skipped."""
    rows = []
    with open(path, "rb") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


class WandbSink:
    """Mirrors records to a W&B run whose id is kept in the run dir (requeued jobs continue it).

    The mirror never loses a row: a failed `log` is retried with backoff; if it still fails the
    mirror pauses, and `close` logs every row it missed from `metrics.jsonl` before finishing.
    `close` returns once the run's files are complete on disk, and prints the `wandb sync`
    command of an offline run (W&B itself is silenced).

    `mode`: online, offline or disabled; None lets W&B decide as it always does (`WANDB_MODE`,
    else online when logged in). A new run takes its id from `WANDB_RUN_ID` where a `wandb
    agent` set it, so a W&B sweep sees the run it started.
    """

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
        mode: str | None = None,
        name: str | None = None,
        record_path: str | Path | None = None,
        retry_delays: tuple[float, ...] | None = None,
        echo=None,
    ):
        if mode is not None and mode not in MODES:
            raise ValueError(
                f"unknown logger.mode {mode!r}; choose one of: {', '.join(MODES)}, "
                "or null (W&B decides from WANDB_MODE and its login)"
            )
        self.run = None
        self.run_dir = Path(run_dir)
        self.record_path = Path(record_path) if record_path else self.run_dir / "metrics.jsonl"
        self.retry_delays = tuple(RETRY_DELAYS if retry_delays is None else retry_delays)
        self.echo = echo or announce
        self.sync_dir: Path | None = None  # the offline run's folder, set by close()
        self._logged: set[int] = set()  # steps the mirror holds
        self._first_step: int | None = None  # first step this session saw (resumes start later)
        self._paused = False
        self._started = False
        id_file = self.run_dir / "wandb_id.txt"
        try:
            import wandb

            if id_file.is_file():
                run_id = id_file.read_text().strip()
            else:
                # a `wandb agent` names the run its sweep waits for in WANDB_RUN_ID
                run_id = os.environ.get("WANDB_RUN_ID") or uuid.uuid4().hex[:12]
                id_file.write_text(run_id + "\n")
            self._wandb = wandb
            self.run = wandb.init(
                project=project,
                entity=entity,
                group=group,
                job_type=job_type,
                tags=list(tags or []),
                config=config,
                dir=str(self.run_dir),
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
            self._started = True
        except Exception as err:  # a mirror must never stop training
            warnings.warn(
                f"W&B could not start ({type(err).__name__}: {err}); training goes on "
                f"with metrics.jsonl only; mirror it later with: smoothbench-sync {self.run_dir}",
                stacklevel=2,
            )
            self.run = None

    @classmethod
    def for_run(
        cls,
        run_dir: str | Path,
        config: dict[str, Any],
        overrides: list[str] | None = None,
        **kwargs,
    ) -> WandbSink:
        """The mirror of a training run: name, tags and group from its config and overrides
        (default: `.hydra/overrides.yaml`); the W&B config is the run's config plus its run dir,
        overrides, git commit and package versions. `kwargs` override WandbSink's arguments."""
        if overrides is None:
            overrides = read_overrides(run_dir)
        logger = config.get("logger") or {}
        full_config = {
            **config,
            "run_dir": str(Path(run_dir).resolve()),
            "overrides": list(overrides),
            **provenance(),
        }
        settings = dict(
            project=logger.get("project") or "smoothbench",
            entity=logger.get("entity"),
            group=run_group(config),
            job_type=logger.get("job_type"),
            tags=run_tags(config, list(logger.get("tags") or [])),
            mode=logger.get("mode"),
            name=run_name(config, overrides),
        )
        settings.update(kwargs)
        return cls(run_dir, full_config, **settings)

    def _to_wandb(self, record: dict[str, Any]) -> dict[str, Any]:
        """The W&B row of a record: scalars and histograms; lists and strings stay in the JSONL."""
        data = {"step": record["step"]}
        for key, value in record.items():
            if key == "step" or key.endswith(HISTOGRAM_SUFFIX + "_edges"):
                continue
            if key.endswith(HISTOGRAM_SUFFIX):
                edges = record.get(key + "_edges")
                if edges is None:
                    continue
                try:
                    data[key] = self._wandb.Histogram(
                        np_histogram=(np.asarray(value), np.asarray(edges))
                    )
                except Exception as err:  # one bad histogram must not cost the row
                    message = f"W&B: {key} of step {record['step']} skipped: {err}"
                    warnings.warn(message, stacklevel=3)
            elif isinstance(value, (list, tuple, np.ndarray, str)) or value is None:
                continue  # raw arrays stay in metrics.jsonl; W&B charts want scalars
            else:
                data[key] = value
        lr = record.get("train/lr")
        if isinstance(lr, (int, float)) and lr > 0:
            data["train/two_over_lr"] = 2.0 / lr
        return data

    def _send(self, record: dict[str, Any]) -> bool:
        """Log one row, retrying with backoff; False if every try failed."""
        data = self._to_wandb(record)
        for attempt in range(len(self.retry_delays) + 1):
            try:
                self.run.log(data)
                self._logged.add(record["step"])
                return True
            except Exception as err:
                last = err
                if attempt < len(self.retry_delays):
                    time.sleep(self.retry_delays[attempt])
        warnings.warn(
            f"W&B log failed at step {record['step']} after {len(self.retry_delays) + 1} tries "
            f"({type(last).__name__}: {last}); the mirror pauses and the run's end fills in the "
            "missing rows from metrics.jsonl",
            stacklevel=3,
        )
        return False

    def log(self, record: dict[str, Any]) -> None:
        if self._first_step is None:
            self._first_step = record["step"]
        if self.run is None or self._paused:
            return  # close() backfills these rows
        if not self._send(record):
            self._paused = True

    def backfill(self) -> int:
        """Log the rows of metrics.jsonl this session saw but the mirror does not hold; returns
        how many are still missing afterwards."""
        if self.run is None or self._first_step is None or not self.record_path.is_file():
            return 0
        missing = [
            r
            for r in read_records(self.record_path)
            if isinstance(r.get("step"), int)
            and r["step"] >= self._first_step
            and r["step"] not in self._logged
        ]
        for done, record in enumerate(missing):
            if not self._send(record):  # still down: stop rather than wait out every row
                return len(missing) - done
        return 0

    def close(self, state: str | None = None) -> None:
        if self.run is None:
            return
        still_missing = self.backfill() if self._paused else 0
        run, self.run = self.run, None
        try:
            if state is not None:
                run.summary["state"] = state
            run.finish(exit_code=0 if state in (None, "finished", "diverged") else 1)
            offline = run.settings.mode in ("offline", "dryrun")
            self.sync_dir = Path(run.settings.sync_dir) if offline else None
            if self._wandb.run is None:
                # finish() hands the last block of the run file to the W&B service, which writes
                # it when the stream closes, after finish() returns; teardown waits for that, so
                # the file is complete when close() returns
                self._wandb.teardown()
        except Exception as err:
            warnings.warn(f"W&B finish failed ({type(err).__name__}: {err})", stacklevel=2)
        if still_missing:
            warnings.warn(
                f"W&B is missing {still_missing} row(s) of this run; add them with: "
                f"smoothbench-sync {self.run_dir}",
                stacklevel=2,
            )
        if self.sync_dir is not None:
            command = f"wandb sync {shlex.quote(str(self.sync_dir))}"
            self.echo(f"W&B offline run: upload it with: {command}")


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
