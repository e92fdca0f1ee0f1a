"""What each probe costs next to a training step, as a `probes=` choice runs it: predicted and
measured.

    python scripts/benchmark.py experiment=fig4 scale=cpu                  # probes=full, CPU
    python scripts/benchmark.py scale=cpu steps=300 model.width=0.125 batch_size=128
    python scripts/benchmark.py experiment=fig4 scale=cpu --probes default --rounds 5

Positional arguments are Hydra overrides of the training config (a preset, a scale, anything),
so the probes are built exactly as the run builds them (`build.build_probe_runner`): the same
Hessian batch, the same HVPs the run's budget grants (`probes.max_fraction`, probes/budget.py),
ICS on the same layers, every probe of the registry (those whose schedule is off get a row of
their own). Times are CPU time (`time.process_time`) on a CPU and wall time after a device
synchronize on a GPU; each probe's measurement is timed `--rounds` times (min and median), and
the training step is the real loop's: `smoothbench.train.train` run for two lengths with the
probes off, (T(w + s) − T(w)) / s, so start-up, evaluation and checkpoints cancel out.

The table gives, per probe, the measurements the schedule makes over the run, each one's cost
in training steps as the budget's cost model predicts it and as measured, and both totals; the
last lines give `probes=<choice>` / `probes=off` over the whole run, predicted and measured, and
the HVP's cost at the training batch (the constant HVP_STEPS of probes/budget.py calibrates on
it). Times are of the untrained net: Lanczos stops on its tolerance and may take longer later.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from smoothbench.build import (
    apply_probe_budget,
    build_data_from_config,
    build_model_from_config,
    build_probe_runner,
    loss_fn_for,
    training_batch_size,
)
from smoothbench.config import register_configs, validate
from smoothbench.curvature import HessianOperator
from smoothbench.preserve import parameters_dict
from smoothbench.probes.budget import hessian_units
from smoothbench.probes.registry import probe_types

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the training config")
    p.add_argument("--probes", default="full", help="the probes= choice to time (conf/probes/)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--rounds", type=int, default=3, help="timings of each measurement")
    p.add_argument("--loop-steps", type=int, default=100, help="timed steps of the loop")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    p.add_argument("--json", default=None, help="also write the results to this file")
    return p.parse_args(argv)


def compose_config(overrides: list[str], probes: str, device: str) -> DictConfig:
    """The run's config with `probes=<probes>` (after the overrides, so a preset's choice is
    replaced, as on the command line), validated as the entry point validates it."""
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[*overrides, f"probes={probes}", "progress=false", f"device={device}"],
        )
    validate(cfg)
    return cfg


class Clock:
    """CPU time of this process on a CPU (other processes' load does not enter), wall time
    after a synchronize on a GPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.process_time()

    @property
    def kind(self) -> str:
        return "wall time (synchronized)" if self.device.type == "cuda" else "CPU time"


def timings(fn, clock: Clock, rounds: int) -> list[float]:
    """Seconds of `fn()` over `rounds` calls, after one untimed warm-up call."""
    fn()
    out = []
    for _ in range(rounds):
        start = clock.now()
        fn()
        out.append(clock.now() - start)
    return out


def loop_step_seconds(cfg: DictConfig, clock: Clock, steps: int, warmup: int) -> float:
    """Seconds per step of the real training loop with the probes off (`cfg.probes.grad_norms`
    as configured): (T(warmup + steps) − T(warmup)) / steps, after an untimed run that pays the
    process's one-time costs."""
    from smoothbench.train import train

    durations = []
    for total in (warmup, warmup, warmup + steps):
        run_cfg = cfg.copy()
        with open_dict(run_cfg):
            run_cfg.steps = total
            run_cfg.probes.max_fraction = None
            for name in probe_types():
                run_cfg.probes[name].schedule.kind = "off"
            run_cfg.eval_every = run_cfg.checkpoint_every = 10**9
            run_cfg.keep_checkpoints = []
        with tempfile.TemporaryDirectory(prefix="sb-bench-") as run_dir:
            start = clock.now()
            train(run_cfg, run_dir)
            durations.append(clock.now() - start)
    return (durations[2] - durations[1]) / steps


def probe_rows(cfg: DictConfig, device: torch.device, clock: Clock, rounds: int) -> list[dict]:
    """One row per probe of the registry: its measurements over the run, and one
    measurement's predicted units and measured seconds (min, median)."""
    data = build_data_from_config(cfg).to(device)
    torch.manual_seed(cfg.seed)
    model = build_model_from_config(cfg, num_classes=data.num_classes or cfg.model.dim)
    model = model.to(device).train()
    loss_fn = loss_fn_for(cfg)
    runner = build_probe_runner(cfg, model, loss_fn, data)
    train_batch = training_batch_size(cfg, data)
    batch = data.batch(0, train_batch, cfg.seed)
    before = parameters_dict(model)
    after = {k: v - 1e-3 * torch.randn_like(v) for k, v in before.items()}
    built = {probe.name: (probe, schedule) for probe, schedule in runner.probes}
    rows = []
    for name in probe_types():
        if name not in built or not built[name][0].has_work():
            rows.append({"probe": name, "measurements": 0, "units": 0.0, "seconds": [0.0]})
            continue
        probe, schedule = built[name]

        def once(probe=probe):
            probe.measure(cfg.steps - 1, probe.measurement_batch(batch))
            probe.after_update(cfg.steps - 1, batch, before, after)

        rows.append(
            {
                "probe": name,
                "measurements": schedule.count(),
                "units": predicted_units(probe, train_batch),
                "seconds": timings(once, clock, rounds),
            }
        )
    plan = apply_probe_budget(runner.probes, cfg.steps, cfg.probes.max_fraction or 1.0, train_batch)
    return rows, hvp_seconds(runner, loss_fn, clock, rounds), plan


def predicted_units(probe, train_batch: int) -> float:
    """One measurement's cost in training steps by the budget's cost model."""
    if not probe.takes_remainder:
        return probe.cost_units()
    ask = probe.budget_ask(1, train_batch)
    grant = probe.grant
    hvps = grant.hvps if grant is not None else ask.lanczos_hvps + ask.trace_max_hvps
    return hessian_units(hvps, ask)


def hvp_seconds(runner, loss_fn, clock: Clock, rounds: int) -> dict | None:
    """One HVP and one first-order graph at the Hessian probe's batch (None without it)."""
    hessian = [p for p, _ in runner.probes if p.takes_remainder]
    if not hessian:
        return None
    probe = hessian[0]
    build = timings(lambda: HessianOperator(probe.model, loss_fn, probe.batch), clock, rounds)
    op = HessianOperator(probe.model, loss_fn, probe.batch)
    v = torch.randn(op.size, device=op.device, dtype=op.dtype)
    return {
        "batch": len(probe.batch[0]),
        "build": statistics.median(build),
        "hvp": statistics.median(timings(lambda: op.matvec(v), clock, rounds)),
    }


def report(cfg, args, clock, t_off, t_step, rows, hvp) -> dict:
    """Print the table; return the numbers."""
    steps = cfg.steps
    print(
        f"# {cfg.model.name} width {cfg.model.width:g} norm {cfg.norm.name}, {cfg.data.name}, "
        f"batch {cfg.batch_size}, {steps} steps; probes={args.probes}; {clock.kind}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    print(f"training step (train(), probes off): {1000 * t_off:.1f} ms; with probes.grad_norms="
          f"{cfg.probes.grad_norms}: {1000 * t_step:.1f} ms")  # fmt: skip
    head = ("probe", "meas.", "pred. steps", "min steps", "median steps", "pred. total", "total")
    print(f"\n{head[0]:<12}" + "".join(f"{h:>14}" for h in head[1:]))
    predicted = measured = 0.0
    for r in rows:
        low, mid = min(r["seconds"]) / t_step, statistics.median(r["seconds"]) / t_step
        r.update(min_steps=low, median_steps=mid)
        predicted += r["measurements"] * r["units"]
        measured += r["measurements"] * mid
        count, units = r["measurements"], r["units"]
        print(
            f"{r['probe']:<12}{count:>14}{units:>14.1f}{low:>14.2f}{mid:>14.2f}"
            f"{count * units:>14.0f}{count * mid:>14.0f}"
        )
    loop = t_step / t_off  # the probes' per-step work (gradient norms) next to probes=off
    results = {
        "steps": steps,
        "step_s": t_step,
        "off_step_s": t_off,
        "rows": rows,
        # the cost model counts a step as one unit, its per-layer gradient norms included
        "predicted_ratio": 1 + predicted / steps,
        "measured_ratio": loop * (1 + measured / steps),
    }
    print(f"\nprobes={args.probes} / probes=off over {steps} steps: predicted "
          f"{results['predicted_ratio']:.3f}, measured {results['measured_ratio']:.3f} "
          f"(the loop's own {loop:.3f} included)")  # fmt: skip
    if hvp is not None:
        kappa = hvp["hvp"] / t_off * cfg.batch_size / hvp["batch"]
        results.update(hvp=hvp, hvp_steps_at_equal_batch=kappa)
        print(f"one HVP at the Hessian batch ({hvp['batch']}): {hvp['hvp'] / t_off:.2f} steps, "
              f"the graph {hvp['build'] / t_off:.2f}; HVP / step at equal batch {kappa:.2f} "
              f"(HVP_STEPS in probes/budget.py)")  # fmt: skip
    return results


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    cfg = compose_config(args.overrides, args.probes, device.type)
    torch.set_num_threads(cfg.threads)
    clock = Clock(device)
    off = cfg.copy()
    with open_dict(off):
        off.probes.grad_norms = "total"  # what probes=off sets
    t_off = loop_step_seconds(off, clock, args.loop_steps, args.warmup)
    t_step = loop_step_seconds(cfg, clock, args.loop_steps, args.warmup)
    torch.use_deterministic_algorithms(False)  # train() set it process-wide
    rows, hvp, plan = probe_rows(cfg, device, clock, args.rounds)
    if cfg.probes.max_fraction is not None:
        print(plan.summary())
    results = report(cfg, args, clock, t_off, t_step, rows, hvp)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float) + "\n")
    return results


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "disabled")
    sys.exit(0 if main() else 1)
