"""Resume planning: which checkpoint a run continues from, and whether that is honest.

A run dir is never another config's record and is never discarded unasked. `plan_resume` reads
the run dir (never changes it) and says where the run starts: step 0, a checkpoint, or nothing
to do (the record is already finished or diverged within the budget).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from smoothbench.config import ConfigError, config_differences, trajectory_config
from smoothbench.rundir import read_status

METRICS = "metrics.jsonl"


@dataclass
class ResumePlan:
    """Where a run starts. `checkpoint` None: at step 0. `done`: the result of a record that is
    already complete (the run does nothing). `note`: a line saying what was chosen, if anything."""

    checkpoint: dict[str, Any] | None
    note: str | None = None
    done: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        ckpt = self.checkpoint
        self.start: int = 0 if ckpt is None else ckpt["step"]
        self.metrics_bytes: int = 0 if ckpt is None else ckpt["metrics_bytes"]


def plan_run(cfg: DictConfig, run_dir: Path, resolved: dict[str, Any], device) -> ResumePlan:
    """The plan for `cfg` in `run_dir`: ConfigError when resuming would be dishonest."""
    ckpt, note = plan_resume(cfg, run_dir, resolved, device)
    if _already_finished(cfg, run_dir, ckpt):
        last = last_row(run_dir)
        done = {"state": "finished", "step": cfg.steps, "reason": None, "last": last, "done": True}
        return ResumePlan(ckpt, note, done)
    if _already_diverged(cfg, run_dir):
        done = {**read_status(run_dir), "last": last_row(run_dir), "done": True}
        return ResumePlan(ckpt, note, done)
    return ResumePlan(ckpt, note)


# ---- resume: which checkpoint, and whether metrics.jsonl still holds its rows ----


def _metrics_size(run_dir: Path) -> int | None:
    try:
        return (run_dir / METRICS).stat().st_size
    except FileNotFoundError:
        return None


def _rows_intact(run_dir: Path, metrics_bytes: int) -> bool:
    """metrics.jsonl holds at least `metrics_bytes` bytes, ending there on a whole line."""
    size = _metrics_size(run_dir)
    if size is None or size < metrics_bytes:
        return False
    if metrics_bytes == 0:
        return True
    with open(run_dir / METRICS, "rb") as f:
        f.seek(metrics_bytes - 1)
        return f.read(1) == b"\n"


def _checkpoint_candidates(ckpt_dir: Path) -> list[Path]:
    """last.pt, prev.pt and kept step_<N>.pt: what `resume=from_checkpoint` may restart from."""
    return [ckpt_dir / "last.pt", ckpt_dir / "prev.pt", *sorted(ckpt_dir.glob("step_*.pt"))]


def plan_resume(
    cfg: DictConfig, run_dir: Path, resolved: dict[str, Any], device
) -> tuple[dict[str, Any] | None, str | None]:
    """The checkpoint to continue from (None: start at step 0) and a line saying what was chosen.

    Raises ConfigError when resuming would be dishonest: another run's checkpoint, fewer steps
    than already trained, or a metrics.jsonl that lost rows (unless `resume=from_checkpoint`).
    """
    from smoothbench.checkpoint import load_checkpoint

    ckpt_dir = run_dir / "checkpoints"
    last_path = ckpt_dir / "last.pt"
    if not last_path.exists():
        return None, _plan_without_checkpoint(cfg, run_dir, resolved)
    if cfg.resume == "restart":
        raise ConfigError(
            f"resume=restart recomputes a record that has no checkpoint, but {str(last_path)!r} "
            "exists: rerun without resume=restart to continue from it, or use a new run dir"
        )
    ckpt = load_checkpoint(last_path, map_location=device)
    _check_same_run(ckpt, resolved, run_dir)
    if cfg.steps < ckpt["step"]:
        raise ConfigError(
            f"steps={cfg.steps} is below the step of the run dir's checkpoint "
            f"({ckpt['step']}) in {str(run_dir)!r}; use steps >= {ckpt['step']} to continue "
            "it, or a new run dir"
        )
    if _rows_intact(run_dir, ckpt["metrics_bytes"]):
        return ckpt, f"resuming at step {ckpt['step']} from {last_path}"
    size = _metrics_size(run_dir)
    have = f"{METRICS} is missing" if size is None else f"{METRICS} has {size} bytes"
    if cfg.resume != "from_checkpoint":
        raise ConfigError(
            f"{have} but the checkpoint at step {ckpt['step']} expects "
            f"{ckpt['metrics_bytes']}: rows were lost (e.g. a power cut); rerun with "
            "resume=from_checkpoint to rewrite them from the last checkpoint whose rows are "
            "intact, or use a new run dir"
        )
    # recovery: the latest checkpoint whose rows are all there; the lost rows are recomputed
    best = None
    for path in _checkpoint_candidates(ckpt_dir):
        if not path.is_file():
            continue
        try:
            candidate = load_checkpoint(path, map_location=device)
            _check_same_run(candidate, resolved, run_dir)
        except Exception:  # a damaged or foreign spare is simply not a candidate
            continue
        fits = candidate["step"] <= cfg.steps
        if fits and _rows_intact(run_dir, candidate["metrics_bytes"]):
            if best is None or candidate["step"] > best[0]["step"]:
                best = (candidate, path)
    if best is None:
        return None, (
            f"resume=from_checkpoint: {have}, no checkpoint's rows are intact; "
            "rerunning from step 0"
        )
    candidate, path = best
    return candidate, (
        f"resume=from_checkpoint: {have}; rerunning from step {candidate['step']} ({path.name}) "
        f"to rewrite the rows after it"
    )


def _check_same_run(ckpt: dict[str, Any], resolved: dict[str, Any], run_dir: Path) -> None:
    diffs = config_differences(trajectory_config(ckpt["config"]), trajectory_config(resolved))
    if diffs:
        raise ConfigError(
            f"run dir {str(run_dir)!r} holds a checkpoint of a different run "
            f"({'; '.join(diffs)}); use a new run dir or restore the config"
        )


# ---- a run dir without a checkpoint: never another run's record, never discarded unasked ----

RECORD_FILES = (".hydra/config.yaml", METRICS, "status.json")


def _plan_without_checkpoint(
    cfg: DictConfig, run_dir: Path, resolved: dict[str, Any]
) -> str | None:
    """None (an empty run dir) or a line saying what starting at step 0 rewrites; ConfigError
    when the run dir holds another config's record, or this config's but past a checkpoint
    (checkpoints/ deleted) and `resume=restart` was not asked for."""
    record = _record_in(run_dir)
    if not record:
        return None
    recorded = _recorded_config(run_dir)
    if recorded is not None:
        diffs = config_differences(trajectory_config(recorded), trajectory_config(resolved))
        if diffs:
            raise ConfigError(
                f"run dir {str(run_dir)!r} holds the record of a different run "
                f"({'; '.join(diffs)}); a run dir is never reused for another config: "
                "use a new run dir"
            )
    if cfg.resume == "restart":
        return f"resume=restart: discarding {', '.join(record)}; recomputing from step 0"
    if recorded is not None and (
        _already_diverged(cfg, run_dir) or _before_first_checkpoint(cfg, run_dir, recorded)
    ):
        return f"no checkpoint was written yet: rerunning from step 0 ({', '.join(record)})"
    whose = "this run's record" if recorded is not None else "a record whose config is unreadable"
    raise ConfigError(
        f"run dir {str(run_dir)!r} holds {whose} ({', '.join(record)}) but no "
        "checkpoints/last.pt to continue from; rerun with resume=restart to discard it and "
        "recompute from step 0, or use a new run dir"
    )


def _record_in(run_dir: Path) -> list[str]:
    """What of a run's record the run dir holds, as 'file (what)'."""
    found = []
    if (run_dir / ".hydra" / "config.yaml").is_file():
        found.append(".hydra/config.yaml")
    rows = _row_count(run_dir)
    if rows:
        found.append(f"{METRICS} ({rows} rows)")
    status = read_status(run_dir)
    if status is not None:
        found.append(f"status.json ({status.get('state')} at step {status.get('step')})")
    surfaces = sorted((run_dir / "surfaces").glob("*.npz"))
    if surfaces:
        found.append(f"surfaces/ ({len(surfaces)} files)")
    return found


def _row_count(run_dir: Path) -> int:
    try:
        with open(run_dir / METRICS, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def _recorded_config(run_dir: Path) -> dict[str, Any] | None:
    """The run dir's .hydra/config.yaml as a dict; None when absent or unreadable."""
    path = run_dir / ".hydra" / "config.yaml"
    try:
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception:  # absent, not YAML, or interpolations that no longer resolve
        return None
    return config if isinstance(config, dict) else None


def _before_first_checkpoint(cfg: DictConfig, run_dir: Path, recorded: dict[str, Any]) -> bool:
    """The record stops before any checkpoint was due (a run killed early): starting at step 0
    rewrites only rows that a resume would rewrite too."""
    status = read_status(run_dir) or {}
    if status.get("state") in ("finished", "diverged"):
        return False
    if status.get("state") == "running" and status.get("step") not in (0, None):
        return False  # each checkpoint (a signal's too) writes its step into status.json
    first = min(
        cfg.steps,
        cfg.checkpoint_every,
        recorded.get("checkpoint_every") or cfg.checkpoint_every,
        *cfg.keep_checkpoints,
        *(recorded.get("keep_checkpoints") or []),
    )
    rows = last_row(run_dir) if _row_count(run_dir) else {}
    return rows.get("step", -1) < first


def discard_for_restart(run_dir: Path) -> None:
    """resume=restart: the surfaces of the discarded record go too (metrics.jsonl, status.json
    and provenance.json are rewritten from step 0)."""
    for path in (run_dir / "surfaces").glob("*.npz"):
        path.unlink()


def _already_diverged(cfg: DictConfig, run_dir: Path) -> bool:
    """The record of this config diverged within the budget: rerunning would only repeat it."""
    status = read_status(run_dir) or {}
    step = status.get("step")
    if status.get("state") != "diverged" or not isinstance(step, int) or step > cfg.steps:
        return False
    return (
        cfg.resume != "restart"
        and _row_count(run_dir) > 0
        and last_row(run_dir).get("step") == step
    )


def _already_finished(cfg: DictConfig, run_dir: Path, ckpt: dict[str, Any] | None) -> bool:
    status = read_status(run_dir) or {}
    return (
        ckpt is not None
        and ckpt["step"] == cfg.steps
        and status.get("state") == "finished"
        and status.get("step") == cfg.steps
        and (_metrics_size(run_dir) or 0) > ckpt["metrics_bytes"]  # the final line is there
    )


def last_row(run_dir: Path) -> dict[str, Any]:
    """The last readable row of metrics.jsonl ({} when none)."""
    with open(run_dir / METRICS, "rb") as f:
        lines = f.read().splitlines()
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return {}
