"""smoothbench-train: one training run, resumable, with probes on their schedules.

    smoothbench-train                                  # VGG-11 + BN on the embedded digits
    smoothbench-train norm=none optim.lr=0.5 scale=smoke
    smoothbench-train -m norm=none,batch seed=0,1,2    # a local sweep

The loop reads top to bottom: build, resume if the run dir holds a checkpoint, then per step
probes (at θ_t) -> forward/backward -> update (-> ICS) -> record -> checkpoint on schedule.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from smoothbench.build import (
    build_data_from_config,
    build_model_from_config,
    build_optimizer,
    build_probe_runner,
    learning_rate,
    loss_fn_for,
)
from smoothbench.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from smoothbench.config import (
    ConfigError,
    config_differences,
    register_configs,
    trajectory_config,
    validate,
)
from smoothbench.data import DataError
from smoothbench.models import set_noise_step
from smoothbench.probes.state import parameters_dict, rng_state, set_rng_state
from smoothbench.sinks import FanOut, JsonlSink, WandbSink

CONF_DIR = os.environ.get("SMOOTHBENCH_CONF", str(Path(__file__).resolve().parents[2] / "conf"))
USER_ERRORS = (ConfigError, DataError, CheckpointError)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def write_status(run_dir: Path, state: str, step: int, reason: str | None = None) -> None:
    tmp = run_dir / ".status.json.tmp"
    tmp.write_text(json.dumps({"state": state, "step": step, "reason": reason}) + "\n")
    os.replace(tmp, run_dir / "status.json")


def check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"run dir {str(run_dir)!r} cannot be written ({err.strerror})") from None


@torch.no_grad()
def evaluate(model, loss_fn, data, batch_size: int, classify: bool) -> dict[str, float]:
    """Test loss (and accuracy) over the whole test set, norms in eval mode, mode restored."""
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for x, y in data.test_batches(batch_size):
        out = model(x)
        total_loss += loss_fn(out, y).item() * len(y)
        if classify:
            correct += (out.argmax(1) == y).sum().item()
        count += len(y)
    model.train(was_training)
    result = {"test/loss": total_loss / count}
    if classify:
        result["test/acc"] = correct / count
    return result


def gradient_norms(model, per_layer: bool) -> dict[str, float]:
    named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    norms = torch._foreach_norm([g for _, g in named])
    values = torch.stack(norms).tolist()  # one device sync for all of them
    records = {"grad/norm": math.sqrt(sum(v * v for v in values))}
    if per_layer:
        records.update({f"grad/{n}": v for (n, _), v in zip(named, values, strict=False)})
    return records


def make_sinks(cfg: DictConfig, run_dir: Path, truncate_to: int | None):
    jsonl = JsonlSink(run_dir / "metrics.jsonl", truncate_to=truncate_to)
    mirror = None
    if cfg.logger.name == "wandb":
        # the job's overrides name the W&B run; outside Hydra, the run dir's record of them
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None
        mirror = WandbSink.for_run(run_dir, OmegaConf.to_container(cfg, resolve=True), overrides)
    return jsonl, FanOut(jsonl, mirror)


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) training in `run_dir`; returns the final status dict."""
    validate(cfg)
    run_dir = Path(run_dir)
    check_writable(run_dir)
    device = resolve_device(cfg.device)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    data = build_data_from_config(cfg).to(device)
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

    # resume from the run dir's own checkpoint, if any
    start, truncate_to = 0, 0
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        diffs = config_differences(trajectory_config(ckpt["config"]), trajectory_config(resolved))
        if diffs:
            raise ConfigError(
                f"run dir {str(run_dir)!r} holds a checkpoint of a different run "
                f"({'; '.join(diffs)}); use a new run dir or restore the config"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        probes.load_state_dict(ckpt.get("probes", {}))
        set_rng_state(ckpt["rng"])
        start, truncate_to = ckpt["step"], ckpt["metrics_bytes"]
    jsonl, sink = make_sinks(cfg, run_dir, truncate_to)

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
        save_checkpoint(ckpt_path, payload)
        if next_step in cfg.keep_checkpoints:
            save_checkpoint(run_dir / "checkpoints" / f"step_{next_step}.pt", payload)

    write_status(run_dir, "running", start)
    state, reason, last = "finished", None, {}
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
    try:
        for step in bar:
            set_noise_step(model, step)  # noisy BN: one noise draw per update, seen by all probes
            x, y = data.batch(step, batch_size, cfg.seed, augment=cfg.data.augment)
            record: dict[str, Any] = {"step": step, "epoch": step / steps_per_epoch}
            if step % cfg.eval_every == 0:
                record.update(evaluate(model, loss_fn, data, cfg.eval_batch_size, classify))
            record.update(probes.measure(step, (x, y)))

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
            record["train/loss"] = loss.item()
            record["train/lr"] = lr
            if classify:
                record["train/acc"] = (out.argmax(1) == y).float().mean().item()
            if not math.isfinite(record["train/loss"]):
                sink.log(record)
                state, reason = "diverged", f"non-finite training loss at step {step}"
                break
            record.update(gradient_norms(model, cfg.probes.grad_norms == "per_layer"))
            ics_before = parameters_dict(model) if probes.wants_ics(step) else None
            optimizer.step()
            if ics_before is not None:
                record.update(
                    probes.measure_covariate_shift((x, y), ics_before, parameters_dict(model))
                )
            sink.log(record)
            last = record
            bar.set_postfix(loss=f"{record['train/loss']:.3f}", refresh=False)
            due = (step + 1) % cfg.checkpoint_every == 0 or step + 1 in cfg.keep_checkpoints
            if due and step + 1 < cfg.steps:
                checkpoint(step + 1, jsonl.tell())
        else:
            # the end: test metrics at the final parameters, on a line of their own
            before_final = jsonl.tell()
            final = {"step": cfg.steps, "epoch": cfg.steps / steps_per_epoch}
            final.update(evaluate(model, loss_fn, data, cfg.eval_batch_size, classify))
            sink.log(final)
            last = {**last, **final}
            checkpoint(cfg.steps, before_final)
    except Exception as err:
        bar.close()
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        write_status(run_dir, "failed", last.get("step", start), reason)
        sink.close("failed")
        raise
    # KeyboardInterrupt/SystemExit (a preempted job) leave the status "running": it comes back
    bar.close()
    final_step = cfg.steps if state == "finished" else record["step"]
    write_status(run_dir, state, final_step, reason)
    sink.close(state)
    return {"state": state, "step": final_step, "reason": reason, "last": last}


def print_summary(result: dict[str, Any], run_dir: Path, seconds: float) -> None:
    last = result["last"]
    parts = [f"{result['state']} at step {result['step']} in {seconds:.1f} s"]
    for key in ("train/loss", "train/acc", "test/loss", "test/acc"):
        if key in last and last[key] is not None:
            parts.append(f"{key} {last[key]:.4f}")
    if result["reason"]:
        parts.append(result["reason"])
    print("smoothbench-train: " + "; ".join(parts))
    print(f"smoothbench-train: results in {run_dir}")


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    started = time.perf_counter()
    try:
        result = train(cfg, run_dir)
    except USER_ERRORS as err:
        print(f"smoothbench-train: error: {err}", file=sys.stderr)
        sys.exit(2)
    print_summary(result, run_dir, time.perf_counter() - started)


def main() -> None:
    register_configs()
    hydra_main()


if __name__ == "__main__":
    main()
