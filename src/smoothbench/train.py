"""smoothbench-train: one training run, resumable, with probes on their schedules.

    smoothbench-train                                  # VGG-11 + BN on the embedded digits
    smoothbench-train norm=none optim.lr=0.5 scale=smoke
    smoothbench-train -m norm=none,batch seed=0,1,2    # a local sweep

The story of a run: check the command and the run dir (lock, honest resume), build, open the
record, then the loop below; its bookkeeping lives in `smoothbench.run`. Per step: forward and
backward -> on a probe step, stop if the loss is not finite, then the probes (at θ_t, as before
the forward pass) -> the update (-> ICS) -> the row -> a checkpoint on schedule or on a signal.

torch is imported inside the functions that need it, so `--help` and Tab completion stay fast.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from smoothbench.cli import EXIT_FAILED, fail, run_hydra_main
from smoothbench.config import ConfigError, register_configs, validate
from smoothbench.run.checks import check_record_paths, check_writable
from smoothbench.run.hydra_output import remove_new_run_dir, run_dir_is_new, write_hydra_output
from smoothbench.rundir import RunDirBusy, RunLock

if TYPE_CHECKING:
    from smoothbench.run.progress import Progress
    from smoothbench.run.session import Outcome, Run
    from smoothbench.run.signals import StopRequest

PROG = "smoothbench-train"
CONF_DIR = os.environ.get("SMOOTHBENCH_CONF", str(Path(__file__).resolve().parents[2] / "conf"))
log = logging.getLogger(__name__)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by the command or the run dir: one line on stderr, exit 2."""
    from smoothbench.checkpoint import CheckpointError
    from smoothbench.data import DataError

    return (ConfigError, DataError, CheckpointError, RunDirBusy)


def train(
    cfg: DictConfig, run_dir: str | Path, on_accepted: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Run (or resume) training in `run_dir`; returns the final status dict.

    Every check (values, the run dir's lock, an honest resume, batch vs data set) comes before
    anything in the run dir changes; `on_accepted` is called once they have all passed (the
    entry point writes `.hydra/` there). The result's "state" is finished, diverged, or running
    (stopped by a signal after a final checkpoint: rerunning the command resumes).
    """
    from smoothbench.run.setup import torch_threads

    validate(cfg)
    run_dir = Path(run_dir)
    check_writable(run_dir)
    check_record_paths(run_dir)
    with RunLock(run_dir), torch_threads(cfg.threads):
        return _train_locked(cfg, run_dir, on_accepted)


def _train_locked(
    cfg: DictConfig, run_dir: Path, on_accepted: Callable[[], None] | None
) -> dict[str, Any]:
    from smoothbench.run.progress import Progress
    from smoothbench.run.record import open_record
    from smoothbench.run.resume import plan_run
    from smoothbench.run.setup import build_run, resolve_device
    from smoothbench.run.signals import StopRequest

    device = resolve_device(cfg.device)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    plan = plan_run(cfg, run_dir, resolved, device)
    if plan.done is not None:
        return plan.done
    run = build_run(cfg, run_dir, device, resolved, plan)
    # accepted: from here on the run dir changes
    run.attach_record(
        *open_record(cfg, run_dir, device, plan.start, plan.metrics_bytes, plan.note, on_accepted)
    )
    with ExitStack() as stack:
        stop = stack.enter_context(StopRequest())
        progress = stack.enter_context(
            Progress(plan.start, cfg.steps, f"{cfg.model.name}/{cfg.norm.name}", cfg.progress)
        )
        run.on_rows = progress.show
        stack.enter_context(run.closing_on_error())
        outcome = _loop(run, progress, stop)
    return run.finish(outcome, stop)


def _loop(run: Run, steps: Progress, stop: StopRequest) -> Outcome:
    """The training loop: every step of the run, in order, until the end, a divergence or a
    stop signal."""
    from smoothbench.models import set_noise_step
    from smoothbench.run.probe_step import StepStart
    from smoothbench.run.session import Outcome
    from smoothbench.run.signals import ProbeStepInterrupted

    last_step = run.cfg.steps - 1
    for step in steps:
        set_noise_step(run.model, step)  # noisy BN: one noise draw per update, seen by all probes
        batch = run.batch(step)
        head = run.head(step)  # step, epoch, test metrics on schedule
        probing = run.probes.any_due(step)
        start = StepStart.take(run.model, run.probes) if probing else None
        lr = run.set_learning_rate(step)
        out, loss = run.forward_backward(*batch)
        measured: dict[str, Any] = {}
        if probing:
            if run.loss_diverged(head, lr, loss, out, batch[1]):
                return run.diverged()  # probes never see diverged weights
            try:
                measured = run.measure(step, batch, start, stop)
            except ProbeStepInterrupted:  # dropped; the checkpoint is the step's start
                run.rewind(start, step)
                return Outcome(
                    "running", step, f"stopped by {stop.signal_name} during step {step}'s probes"
                )
        run.update(step, batch, head, measured, lr, out, loss)
        checkpoint_due = run.checkpoint_due(step + 1)
        if run.rows_wanted(step + 1, checkpoint_due, stop.requested) and run.flush() is not None:
            return run.diverged()
        if step < last_step and (checkpoint_due or stop.requested):
            run.checkpoint(step + 1)
        if step < last_step and stop.requested:
            return Outcome("running", step + 1, f"stopped by {stop.signal_name} at step {step + 1}")
    run.final_evaluation()
    return Outcome("finished", run.cfg.steps)


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


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    from smoothbench.run.record import RunFailed

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    new = run_dir_is_new(run_dir)
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
            remove_new_run_dir(run_dir)
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
    from smoothbench.presets import one_line_each

    register_configs(help_only=any(arg in HELP_FLAGS for arg in sys.argv[1:]))
    # --help lists the presets from their own headers, whatever conf dir is in use
    OmegaConf.register_new_resolver(
        "sb.presets", lambda: one_line_each(Path(CONF_DIR) / "experiment"), replace=True
    )
    run_hydra_main(PROG, hydra_main, defer_hydra_output=True)


if __name__ == "__main__":
    main()
