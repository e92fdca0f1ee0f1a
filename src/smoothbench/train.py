"""smoothbench-train: one training run, resumable, with probes on their schedules.

    smoothbench-train                                  # VGG-11 + BN on the embedded digits
    smoothbench-train norm=none optim.lr=0.5 scale=smoke
    smoothbench-train -m norm=none,batch seed=0,1,2    # a local sweep

The loop reads top to bottom: check the command and the run dir (lock, resume), build, then per
step forward/backward -> stop if the loss is not finite -> probes (at θ_t, as before the forward)
-> update (-> ICS) -> record -> checkpoint on schedule.

torch is imported inside the functions that need it, so `--help` and Tab completion stay fast.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from smoothbench.cli import EXIT_FAILED, fail, run_hydra_main
from smoothbench.config import (
    ConfigError,
    check_batch_fits,
    config_differences,
    register_configs,
    trajectory_config,
    validate,
)
from smoothbench.rundir import (
    RunDirBusy,
    RunLock,
    read_status,
    remove_temp_files,
    write_status,
)

if TYPE_CHECKING:
    import torch

PROG = "smoothbench-train"
CONF_DIR = os.environ.get("SMOOTHBENCH_CONF", str(Path(__file__).resolve().parents[2] / "conf"))
METRICS = "metrics.jsonl"
log = logging.getLogger(__name__)


class RunFailed(RuntimeError):
    """The run stopped on an error outside the user's input (a full disk): one line, exit 1."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by the command or the run dir: one line on stderr, exit 2."""
    from smoothbench.checkpoint import CheckpointError
    from smoothbench.data import DataError

    return (ConfigError, DataError, CheckpointError, RunDirBusy)


def resolve_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


def evaluate(model, loss_fn, data, batch_size: int, classify: bool) -> dict[str, float]:
    """Test loss (and accuracy) over the whole test set, norms in eval mode, mode restored."""
    import torch

    was_training = model.training
    model.eval()
    losses, corrects, sizes = [], [], []
    with torch.no_grad():
        for x, y in data.test_batches(batch_size):
            out = model(x)
            losses.append(loss_fn(out, y).reshape(1))
            if classify:
                corrects.append((out.argmax(1) == y).sum().reshape(1))
            sizes.append(len(y))
    model.train(was_training)
    # one device sync; then the sums of a loop of .item() calls, in its order (same floats)
    values = torch.cat([t.to(torch.float64) for t in losses + corrects]).tolist()
    total_loss, correct = 0.0, 0
    for loss, size in zip(values, sizes, strict=False):
        total_loss += loss * size
    for count in values[len(losses) :]:
        correct += int(count)
    result = {"test/loss": total_loss / sum(sizes)}
    if classify:
        result["test/acc"] = correct / sum(sizes)
    return result


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


def _fsync(path: Path) -> None:
    """Flush a file's written data to disk (fsync works on any descriptor of the file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    rows = _last_row(run_dir) if _row_count(run_dir) else {}
    return rows.get("step", -1) < first


def _discard_for_restart(run_dir: Path) -> None:
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
        and _last_row(run_dir).get("step") == step
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


def _last_row(run_dir: Path) -> dict[str, Any]:
    import json

    with open(run_dir / METRICS, "rb") as f:
        lines = f.read().splitlines()
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return {}


# ---- probes see the model exactly as it was before the training forward pass ----


def _snapshot(model) -> dict[str, Any]:
    from smoothbench.checkpoint import rng_state

    return {
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "rng": rng_state(),
    }


@contextmanager
def _as_before_forward(model, before: dict[str, Any]) -> Iterator[None]:
    """Buffers (BN running statistics) and RNG states as they were before the forward pass.

    The loss is checked before any probe runs, so the forward pass now comes first; probes must
    still measure θ_t exactly as they did when they ran before it (same values, same bytes).
    """
    import torch

    from smoothbench.checkpoint import set_rng_state

    after = _snapshot(model)
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, value in before["buffers"].items():
            buffers[name].copy_(value)
    set_rng_state(before["rng"])
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in after["buffers"].items():
                buffers[name].copy_(value)
        set_rng_state(after["rng"])


# ---- signals: finish the current step, write a checkpoint, exit; a second signal stops at once


class _StopRequest:
    """SIGINT/SIGTERM handler for the run's life: the loop checks `signal_name` after each step."""

    def __init__(self):
        self.signal_name: str | None = None
        self.signal_number = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None:  # asked twice: stop now, the last checkpoint stands
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        self.signal_number = signum

    def install(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def _disk_fault_message(err: OSError, run_dir: Path) -> str:
    where = f" writing {err.filename}" if err.filename else f" writing into {run_dir}"
    return f"{err.strerror or err}{where}"


def train(
    cfg: DictConfig, run_dir: str | Path, on_accepted: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Run (or resume) training in `run_dir`; returns the final status dict.

    Every check (values, the run dir's lock, an honest resume, batch vs data set) comes before
    anything in the run dir changes; `on_accepted` is called once they have all passed (the
    entry point writes `.hydra/` there). The result's "state" is finished, diverged, or running
    (stopped by a signal after a final checkpoint: rerunning the command resumes).
    """
    validate(cfg)
    run_dir = Path(run_dir)
    check_writable(run_dir)
    check_record_paths(run_dir)
    lock = RunLock(run_dir).acquire()
    try:
        with _torch_threads(cfg.threads):
            return _train_locked(cfg, run_dir, on_accepted)
    finally:
        lock.release()


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """torch's CPU threads set to `threads` for the run (a CPU run is bitwise only for a fixed
    count), the caller's count restored after it. The inter-op pool (no effect on the numbers)
    can only be sized before any parallel work: where that is too late it is left as it is."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # parallel work already started in this process (an earlier run)
            pass
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _train_locked(
    cfg: DictConfig, run_dir: Path, on_accepted: Callable[[], None] | None
) -> dict[str, Any]:
    import numpy as np
    import torch
    from tqdm import tqdm

    from smoothbench.build import (
        build_data_from_config,
        build_model_from_config,
        build_optimizer,
        build_probe_runner,
        learning_rate,
        loss_fn_for,
    )
    from smoothbench.checkpoint import keep_previous, rng_state, save_checkpoint, set_rng_state
    from smoothbench.models import set_noise_step
    from smoothbench.step_log import PendingRow, StepLog, step_scalars

    device = resolve_device(cfg.device)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    ckpt, resume_note = plan_resume(cfg, run_dir, resolved, device)
    if _already_finished(cfg, run_dir, ckpt):
        last = _last_row(run_dir)
        return {"state": "finished", "step": cfg.steps, "reason": None, "last": last, "done": True}
    if _already_diverged(cfg, run_dir):
        status = read_status(run_dir)
        last = _last_row(run_dir)
        return {**status, "last": last, "done": True}

    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the fastest convolution kernels for the shapes
    data = build_data_from_config(cfg).to(device)
    check_batch_fits(cfg, data.num_train)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = build_model_from_config(cfg, num_classes=data.num_classes or cfg.model.dim).to(device)
    if cfg.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    loss_fn = loss_fn_for(cfg)
    optimizer = build_optimizer(cfg, model)
    try:
        probes = build_probe_runner(cfg, model, loss_fn, data)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    classify = data.num_classes is not None
    batch_size = data.num_train if cfg.optim.full_batch else cfg.batch_size
    steps_per_epoch = data.steps_per_epoch(batch_size)

    start, truncate_to = 0, 0
    if ckpt is not None:
        _load_into(ckpt, model, optimizer, probes, run_dir)
        set_rng_state(ckpt["rng"])
        start, truncate_to = ckpt["step"], ckpt["metrics_bytes"]
        del ckpt

    # ---- accepted: from here on the run dir changes ----
    try:
        jsonl, sink, mirror = _open_record(
            cfg, run_dir, device, start, truncate_to, resume_note, on_accepted
        )
    except OSError as err:  # a full or read-only disk before the first step
        reason = _disk_fault_message(err, run_dir)
        raise RunFailed(_failure_line(run_dir, start, reason)) from None
    ckpt_dir = run_dir / "checkpoints"
    ckpt_path = ckpt_dir / "last.pt"
    clock = {"t0": time.perf_counter(), "step0": start}

    def throughput(step: int) -> float | None:
        elapsed = time.perf_counter() - clock["t0"]
        return (step - clock["step0"]) / elapsed if elapsed > 0 and step > clock["step0"] else None

    def checkpoint(next_step: int, metrics_bytes: int) -> None:
        payload = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": rng_state(),
            "probes": probes.state_dict(),
            "step": next_step,
            "metrics_bytes": metrics_bytes,
            "config": resolved,
        }
        _fsync(run_dir / METRICS)  # the rows a checkpoint points past must be on disk first
        keep_previous(ckpt_path, ckpt_dir / "prev.pt")  # resume=from_checkpoint's fallback
        save_checkpoint(ckpt_path, payload)
        if next_step in cfg.keep_checkpoints:
            save_checkpoint(ckpt_dir / f"step_{next_step}.pt", payload)
        write_status(run_dir, "running", next_step, None, throughput(next_step))

    state, reason, last, record = "finished", None, {}, {"step": start}
    stop = _StopRequest().install()
    bar = tqdm(
        range(start, cfg.steps),
        initial=start,
        total=cfg.steps,
        disable=not cfg.progress,
        desc=f"{cfg.model.name}/{cfg.norm.name}",
        dynamic_ncols=True,
        mininterval=1.0,
    )
    model.train()
    # per-step scalars stay on the device and are written in blocks (one sync per block); a
    # block is written before anything that needs its rows: a checkpoint, a probe step (its
    # loss check comes after the earlier rows'), an evaluation (which syncs anyway), a signal
    # and the end
    step_log = StepLog(
        jsonl,
        mirror,
        classify=classify,
        per_layer=cfg.probes.grad_norms == "per_layer",
        mirror_extra=lambda step: _throughput_record(throughput(step + 1)),
    )

    def flush() -> dict[str, Any] | None:
        """Write the pending rows; the diverged row if a loss among them was not finite."""
        nonlocal last, record
        written = step_log.flush()
        if written.last is not None:
            last = record = written.last
            rate = throughput(last["step"] + 1)
            postfix = {"loss": f"{last['train/loss']:.3f}"}
            if rate is not None:
                postfix["steps/s"] = f"{rate:.1f}"
            bar.set_postfix(postfix, refresh=False)
        if written.diverged is not None:
            record = written.diverged
        return written.diverged

    try:
        for step in bar:
            set_noise_step(model, step)  # noisy BN: one noise draw per update, seen by all probes
            x, y = data.batch(step, batch_size, cfg.seed, augment=cfg.data.augment)
            head: dict[str, Any] = {"step": step, "epoch": step / steps_per_epoch}
            if step % cfg.eval_every == 0:
                head.update(evaluate(model, loss_fn, data, cfg.eval_batch_size, classify))
            probing = probes.any_due(step)
            before = _snapshot(model) if probing else None

            lr = learning_rate(
                step,
                lr=cfg.optim.lr,
                schedule=cfg.optim.schedule,
                total_steps=cfg.steps,
                milestones=cfg.optim.milestones,
                gamma=cfg.optim.gamma,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.autocast):
                out = model(x)
                loss = loss_fn(out.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # probes at θ_t, seeing buffers and RNG as before the forward pass: their records
            # come first in the row, as when they ran before it. The loss is checked first
            # (a sync is fine at a probe step): probes never see diverged weights
            measured: dict[str, Any] = {}
            if probing:
                diverged = flush()  # the earlier rows first (normally none are pending here)
                if diverged is None and not math.isfinite(loss.item()):
                    scalars = step_scalars(loss, out, y, model, classify)
                    step_log.add(PendingRow(head, {}, lr, *scalars))
                    diverged = flush()
                if diverged is not None:
                    state, reason = "diverged", f"non-finite training loss at step {record['step']}"
                    break
                with _as_before_forward(model, before):
                    measured = probes.measure(step, (x, y))
            scalars = step_scalars(loss, out, y, model, classify)  # on the device: no sync
            probes.before_update(step, (x, y))
            optimizer.step()
            after = probes.after_update(step, (x, y))
            step_log.add(PendingRow(head, measured, lr, *scalars, after))
            due = (step + 1) % cfg.checkpoint_every == 0 or step + 1 in cfg.keep_checkpoints
            if (
                step_log.full
                or due
                or stop.signal_name
                or step + 1 == cfg.steps
                or (step + 1) % cfg.eval_every == 0
                or probes.any_due(step + 1)
            ) and flush() is not None:
                state, reason = "diverged", f"non-finite training loss at step {record['step']}"
                break
            if step + 1 < cfg.steps and (due or stop.signal_name):
                checkpoint(step + 1, jsonl.tell())
            if stop.signal_name and step + 1 < cfg.steps:
                state, reason = "running", f"stopped by {stop.signal_name} at step {step + 1}"
                break
        else:
            # the end: test metrics at the final parameters, on a line of their own
            before_final = jsonl.tell()
            final = {"step": cfg.steps, "epoch": cfg.steps / steps_per_epoch}
            final.update(evaluate(model, loss_fn, data, cfg.eval_batch_size, classify))
            sink.log(final)
            last = {**last, **final}
            checkpoint(cfg.steps, before_final)
    except OSError as err:  # a full or read-only disk: earlier checkpoints and rows are intact
        bar.close()
        stop.restore()
        reason = _disk_fault_message(err, run_dir)
        line = _failure_line(run_dir, last.get("step", start), reason)
        try:
            sink.close("failed")
        except OSError:
            pass
        remove_temp_files(run_dir)
        raise RunFailed(line) from None
    except Exception as err:
        _write_pending(flush)  # the rows of the steps before the error, as they were computed
        bar.close()
        stop.restore()
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        _record_failure(run_dir, last.get("step", start), reason)
        sink.close("failed")
        raise
    except BaseException:
        # KeyboardInterrupt (a second signal) or SystemExit: the status stays "running" and
        # the last checkpoint stands, so the same command resumes
        _write_pending(flush)
        bar.close()
        stop.restore()
        sink.close(None)
        raise
    bar.close()
    stop.restore()
    if state == "running":  # stopped by a signal, after a final checkpoint
        write_status(run_dir, "running", record["step"] + 1, reason, throughput(record["step"] + 1))
        sink.close(None)
        log.info("%s; checkpoint written; rerun the same command to resume", reason)
        return {
            "state": "running",
            "step": record["step"] + 1,
            "reason": reason,
            "last": last,
            "signal": stop.signal_number,
        }
    final_step = cfg.steps if state == "finished" else record["step"]
    write_status(run_dir, state, final_step, reason, throughput(final_step))
    sink.close(state)
    return {"state": state, "step": final_step, "reason": reason, "last": last}


def _load_into(ckpt: dict[str, Any], model, optimizer, probes, run_dir: Path) -> None:
    """The checkpoint's weights, optimizer and probe state; CheckpointError (one line) when they
    do not fit the model the config builds (another net's checkpoint, or changed code)."""
    from smoothbench.checkpoint import CheckpointError

    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        probes.load_state_dict(ckpt.get("probes", {}))
    except (RuntimeError, ValueError, KeyError) as err:
        detail = [line.strip() for line in str(err).splitlines() if line.strip()]
        first = next((line for line in detail if "mismatch" in line or "key" in line), None)
        raise CheckpointError(
            f"checkpoint {str(run_dir / 'checkpoints' / 'last.pt')!r} does not match the model "
            f"the config builds ({(first or detail[0] if detail else type(err).__name__)[:200]}); "
            "nothing was changed: move it away or use the config it was written with"
        ) from None


def _open_record(
    cfg, run_dir: Path, device, start: int, truncate_to: int, resume_note, on_accepted
):
    """Write .hydra/, provenance.json and status.json, open metrics.jsonl (cut at the checkpoint's
    length); the sinks (metrics.jsonl's, both, the W&B mirror)."""
    import torch

    if on_accepted is not None:
        on_accepted()
    for path in remove_temp_files(run_dir):
        log.info("removed %s, left by a process killed while writing", path)
    _record_provenance(run_dir, device, start)
    log.info(
        "%s: model %s (width %g), norm %s, data %s, optim %s lr %g, batch %s, steps %d, seed %d, "
        "device %s, threads %d",
        run_dir,
        cfg.model.name,
        cfg.model.width,
        cfg.norm.name,
        cfg.data.name,
        cfg.optim.name,
        cfg.optim.lr,
        "full" if cfg.optim.full_batch else cfg.batch_size,
        cfg.steps,
        cfg.seed,
        device,
        torch.get_num_threads(),
    )
    if resume_note:
        log.info(resume_note)
    if cfg.resume == "restart" and start == 0:
        _discard_for_restart(run_dir)
    sinks = make_sinks(cfg, run_dir, truncate_to)
    write_status(run_dir, "running", start)
    return sinks


def _throughput_record(steps_per_s: float | None) -> dict[str, float]:
    """The W&B mirror's throughput key (never in metrics.jsonl, whose bytes are the run's)."""
    return {} if steps_per_s is None else {"perf/steps_per_s": steps_per_s}


def _write_pending(flush: Callable[[], Any]) -> None:
    """Write the computed rows on the way out of a failed or interrupted run, if possible (the
    rows after the last checkpoint are rewritten on resume in any case)."""
    try:
        flush()
    except BaseException:
        log.warning("could not write the rows computed since the last flush")


def _record_failure(run_dir: Path, step: int, reason: str) -> bool:
    """status.json says failed, if the disk still takes the few bytes (whether it did)."""
    try:
        write_status(run_dir, "failed", step, reason)
    except OSError:
        log.warning("could not write status.json either")
        return False
    return True


def _failure_line(run_dir: Path, step: int, reason: str) -> str:
    """The one line of a disk fault, true about what status.json now says."""
    if _record_failure(run_dir, step, reason):
        return f"run failed: {reason}; status.json says failed"
    status = read_status(run_dir)
    said = f"still says {status.get('state')}" if status else "is missing or unreadable"
    return f"run failed: {reason}; status.json could not be updated either ({said})"


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


def summary_line(result: dict[str, Any], seconds: float) -> str:
    last = result["last"]
    if result.get("done"):
        parts = [f"already {result['state']} at step {result['step']}"]
    else:
        parts = [f"{result['state']} at step {result['step']} in {seconds:.1f} s"]
    for key in ("train/loss", "train/acc", "test/loss", "test/acc"):
        if key in last and last[key] is not None:
            parts.append(f"{key} {last[key]:.4f}")
    if result["reason"]:
        parts.append(result["reason"])
    return "; ".join(parts)


def write_hydra_output(cfg: DictConfig, run_dir: Path) -> None:
    """`.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml`, as Hydra writes them, but only once
    the command is accepted (the entry point tells Hydra not to write them itself)."""
    from smoothbench.rundir import write_atomic

    hydra_cfg = HydraConfig.get()
    out = run_dir / ".hydra"
    out.mkdir(exist_ok=True)
    whole = OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg)})
    whole.hydra.output_subdir = ".hydra"
    for name, node in (
        ("config.yaml", cfg),
        ("hydra.yaml", whole),
        ("overrides.yaml", hydra_cfg.overrides.task),
    ):
        write_atomic(out / name, OmegaConf.to_yaml(node).encode())


def _run_dir_is_new(run_dir: Path) -> bool:
    """Nothing in the run dir but the empty log file Hydra opened: this command made it."""
    try:
        entries = {p.name: p for p in run_dir.iterdir()}
    except OSError:
        return False
    return all(name.endswith(".log") and p.stat().st_size == 0 for name, p in entries.items())


def _detach_log_files(run_dir: Path) -> None:
    """Close and drop every logging file handler writing into `run_dir`: once the dir is gone, a
    handler left behind would try to reopen its file at the next message in this process (a
    notebook, a test session) and fail there with ENOENT."""
    import logging

    loggers = [logging.getLogger()] + [
        lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    where = run_dir.resolve()
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.FileHandler):
                if Path(handler.baseFilename).resolve().parent == where:
                    logger.removeHandler(handler)
                    handler.close()


def _remove_new_run_dir(run_dir: Path) -> None:
    _detach_log_files(run_dir)
    try:
        for p in run_dir.iterdir():
            if p.name.endswith(".log") and p.stat().st_size == 0:
                p.unlink()
        run_dir.rmdir()
    except OSError:
        pass


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    import sys

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    new = _run_dir_is_new(run_dir)
    started = time.perf_counter()
    deferred = HydraConfig.get().output_subdir is None
    try:
        result = train(
            cfg,
            run_dir,
            on_accepted=(lambda: write_hydra_output(cfg, run_dir)) if deferred else None,
        )
    except user_errors() as err:
        if new:
            _remove_new_run_dir(run_dir)
        fail(PROG, str(err))
    except RunFailed as err:
        fail(PROG, str(err), code=EXIT_FAILED)
    except KeyboardInterrupt:
        fail(
            PROG, "stopped at once; rerun the same command to resume from the last checkpoint", 130
        )
    log.info(summary_line(result, time.perf_counter() - started))
    log.info("results in %s", run_dir)
    if result.get("signal"):
        sys.exit(128 + result["signal"])


# flags after which Hydra only prints (help) or completes a word in the shell: no run follows
HELP_FLAGS = ("--help", "-h", "--hydra-help", "--shell-completion", "-sc")


def main() -> None:
    register_configs(help_only=any(arg in HELP_FLAGS for arg in sys.argv[1:]))
    run_hydra_main(PROG, hydra_main, defer_hydra_output=True)


if __name__ == "__main__":
    main()
