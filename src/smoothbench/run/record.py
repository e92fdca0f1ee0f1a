"""The run's record in its run dir: opened once the command is accepted, and the one line a
failure leaves in status.json.

Opening writes `.hydra/` (through the entry point's callback), `provenance.json` and
`status.json`, and opens `metrics.jsonl` cut at the checkpoint's length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from smoothbench.rundir import read_status, remove_temp_files, write_status

log = logging.getLogger(__name__)


class RunFailed(RuntimeError):
    """The run stopped on an error outside the user's input (a full disk): one line, exit 1."""


def make_sinks(cfg: DictConfig, run_dir: Path, truncate_to: int | None):
    """(metrics.jsonl's sink, a sink for both, the W&B mirror or None)."""
    from smoothbench.sinks import FanOut, JsonlSink, WandbSink

    jsonl = JsonlSink(run_dir / "metrics.jsonl", truncate_to=truncate_to)
    mirror = None
    if cfg.logger.name == "wandb":
        # the job's overrides name the W&B run; outside Hydra, the run dir's record of them
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None
        mirror = WandbSink.for_run(run_dir, OmegaConf.to_container(cfg, resolve=True), overrides)
    return jsonl, FanOut(jsonl, mirror), mirror


def open_record(
    cfg: DictConfig,
    run_dir: Path,
    device,
    start: int,
    truncate_to: int,
    resume_note: str | None,
    on_accepted: Callable[[], None] | None,
):
    """Write .hydra/, provenance.json and status.json, open metrics.jsonl (cut at the
    checkpoint's length); the sinks (metrics.jsonl's, both, the W&B mirror). A full or read-only
    disk here is RunFailed, with status.json saying so where it still can."""
    from smoothbench.run.resume import discard_for_restart

    try:
        if on_accepted is not None:
            on_accepted()
        for path in remove_temp_files(run_dir):
            log.info("removed %s, left by a process killed while writing", path)
        _record_provenance(run_dir, device, start)
        log.info(describe_run(cfg, run_dir, device))
        if resume_note:
            log.info(resume_note)
        if cfg.resume == "restart" and start == 0:
            discard_for_restart(run_dir)
        sinks = make_sinks(cfg, run_dir, truncate_to)
        write_status(run_dir, "running", start)
    except OSError as err:  # a full or read-only disk before the first step
        raise RunFailed(failure_line(run_dir, start, disk_fault_message(err, run_dir))) from None
    return sinks


def describe_run(cfg: DictConfig, run_dir: Path, device) -> str:
    import torch

    batch = "full" if cfg.optim.full_batch else cfg.batch_size
    model = (
        _named(cfg.model)
        if cfg.model.get("_target_")
        else f"{cfg.model.name} (width {cfg.model.width:g})"
    )
    return (
        f"{run_dir}: model {model}, norm {_named(cfg.norm)}, data {_named(cfg.data)}, "
        f"optim {cfg.optim.name} lr {cfg.optim.lr:g}, batch {batch}, steps {cfg.steps}, "
        f"seed {cfg.seed}, device {device}, threads {torch.get_num_threads()}"
    )


def _named(section) -> str:
    """A config section's choice; a custom one by the callable it names."""
    target = section.get("_target_")
    return f"{section.name} {target}" if target else str(section.name)


def _record_provenance(run_dir: Path, device, start: int) -> None:
    """provenance.json: threads, device, commit and versions of the process that starts the run
    (at step 0; a resume keeps the first record and logs what differs from it now)."""
    from smoothbench.provenance import provenance_differences, record_provenance, run_provenance

    now = run_provenance(device, step=start)
    kept = record_provenance(run_dir, now, fresh=start == 0)
    diffs = provenance_differences(kept, now) if kept is not now else []
    if diffs:
        log.warning(
            "this resume runs with other settings than the run's start (provenance.json keeps "
            "the start's): %s",
            "; ".join(diffs),
        )


def disk_fault_message(err: OSError, run_dir: Path) -> str:
    where = f" writing {err.filename}" if err.filename else f" writing into {run_dir}"
    return f"{err.strerror or err}{where}"


def record_failure(run_dir: Path, step: int, reason: str) -> bool:
    """status.json says failed, if the disk still takes the few bytes (whether it did)."""
    try:
        write_status(run_dir, "failed", step, reason)
    except OSError:
        log.warning("could not write status.json either")
        return False
    return True


def failure_line(run_dir: Path, step: int, reason: str) -> str:
    """The one line of a disk fault, true about what status.json now says."""
    if record_failure(run_dir, step, reason):
        return f"run failed: {reason}; status.json says failed"
    status = read_status(run_dir)
    said = f"still says {status.get('state')}" if status else "is missing or unreadable"
    return f"run failed: {reason}; status.json could not be updated either ({said})"
