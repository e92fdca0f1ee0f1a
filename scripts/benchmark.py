"""What the training loop and the probes cost next to a plain PyTorch step, measured in one run.

    python scripts/benchmark.py                                   # CPU, VGG-11 w=1/4, digits
    python scripts/benchmark.py --device cuda model=vgg16 model.width=1 data=cifar10 \\
        data.root=$SMOOTHBENCH_CIFAR10_JPEG data.name=imagefolder
    python scripts/benchmark.py --json out.json --steps 200        # also write the figures

Positional arguments are Hydra overrides of the training config (conf/train.yaml and its
schema), so the benchmark measures exactly the run those overrides describe. It prints:

1. the real training loop (`smoothbench.train.train`, probes=off, deterministic=false) per step
   against a plain PyTorch loop of the same model, batch, data and optimizer, as a ratio; the
   loop's per-step time is the difference of two runs of different lengths, so start-up,
   evaluation and the final checkpoint cancel out;
2. what deterministic=true costs per step;
3. each probe's cost as a multiple of a plain step;
4. the Hessian: one product (HVP), building the first-order graph, Lanczos against
   HVPs x one HVP + the graph, and a trace probe in HVPs.

Ratios measured in one process are what to quote; absolute times depend on the machine's load.
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
    build_data_from_config,
    build_model_from_config,
    build_optimizer,
    loss_fn_for,
)
from smoothbench.config import register_configs
from smoothbench.curvature import (
    HessianOperator,
    hessian_density,
    hessian_eigenvalues,
    hessian_trace,
)
from smoothbench.models import numbered_layers, set_noise_step
from smoothbench.preserve import parameters_dict
from smoothbench.probes.activations import activation_stats, choose_units
from smoothbench.probes.bn import bn_gradient_damping
from smoothbench.probes.ics import covariate_shift
from smoothbench.probes.landscape import gradient_landscape, landscape_step_sizes

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
DEFAULT_OVERRIDES = ["model=vgg11", "model.width=0.25", "data=digits", "batch_size=128"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the training config")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--steps", type=int, default=40, help="timed steps of each loop")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before timing")
    p.add_argument("--repeats", type=int, default=3, help="timings per probe (median)")
    p.add_argument("--rounds", type=int, default=2, help="loop-vs-plain pairs (median)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-deterministic", action="store_true", help="skip deterministic=true")
    p.add_argument("--no-probes", action="store_true", help="only the loop-vs-plain part")
    p.add_argument("--json", default=None, help="also write the measurements to this file")
    return p.parse_args(argv)


def compose_config(overrides: list[str], device: str) -> DictConfig:
    """The training config the overrides describe, from the schema and conf/ (no copies)."""
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                *overrides,
                "probes=off",
                "deterministic=false",
                "progress=false",
                "logger=local",
                f"device={device}",
            ],
        )
    return cfg


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> tuple[float, object]:
    """Median wall time of `fn()` over `repeats` calls (after one warm-up call)."""
    result = fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def loop_step_time(cfg: DictConfig, steps: int, warmup: int, deterministic: bool) -> float:
    """Seconds per step of the real training loop: two fresh runs, (T(w + s) − T(w)) / s,
    after an untimed run that pays the process's one-time costs (lazy imports, data cache,
    CUDA context and kernels), which would otherwise land on the first timed run only."""
    from smoothbench.train import train

    durations = []
    for total in (warmup, warmup, warmup + steps):
        run_cfg = cfg.copy()
        with open_dict(run_cfg):
            run_cfg.steps = total
            run_cfg.deterministic = deterministic
            run_cfg.eval_every = 10**9  # evaluated at step 0 and at the end: equal in both runs
            run_cfg.checkpoint_every = 10**9
            run_cfg.keep_checkpoints = []
        with tempfile.TemporaryDirectory(prefix="sb-bench-") as run_dir:
            start = time.perf_counter()
            train(run_cfg, run_dir)
            durations.append(time.perf_counter() - start)
    torch.use_deterministic_algorithms(False)  # train() set it process-wide
    return (durations[2] - durations[1]) / steps


class PlainLoop:
    """The same model, data, batches, loss and optimizer as the run, in the plainest loop."""

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.data = build_data_from_config(cfg).to(device)
        torch.manual_seed(cfg.seed)
        classes = self.data.num_classes or cfg.model.dim
        self.model = build_model_from_config(cfg, num_classes=classes).to(device)
        if cfg.channels_last and device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = loss_fn_for(cfg)
        self.optimizer = build_optimizer(cfg, self.model)
        self.batch_size = self.data.num_train if cfg.optim.full_batch else cfg.batch_size
        self.step_index = 0
        self.model.train()

    def step(self) -> torch.Tensor:
        set_noise_step(self.model, self.step_index)
        x, y = self.data.batch(
            self.step_index, self.batch_size, self.cfg.seed, augment=self.cfg.data.augment
        )
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.autocast):
            loss = self.loss_fn(self.model(x).float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step_index += 1
        return loss

    def step_time(self, steps: int, warmup: int) -> float:
        for _ in range(warmup):
            self.step()
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        synchronize(self.device)
        return (time.perf_counter() - start) / steps


def probe_costs(plain: PlainLoop, t_step: float, repeats: int) -> tuple[list, dict]:
    """Each probe on the plain loop's model and next batch: (rows, hessian figures)."""
    model, loss_fn, device, cfg = plain.model, plain.loss_fn, plain.device, plain.cfg
    batch = plain.data.batch(plain.step_index, plain.batch_size, cfg.seed)
    refs = numbered_layers(model)
    # what the probe measures: the next layer's input, 64 (channel, h, w) positions per layer
    act_layers = {r.name: r.output for r in refs}
    act_units = {r.name: lambda count, index=r.index: choose_units(count, 64, index) for r in refs}
    ics_layers = {r.name: f"{r.transform_name}.weight" for r in refs[:2]}
    before = parameters_dict(model)
    after = {k: v - 1e-3 * torch.randn_like(v) for k, v in before.items()}
    etas = landscape_step_sizes(cfg.optim.lr, 0.5, 4.0, n=8)
    probes = {
        "activations (all layers)": lambda: activation_stats(model, batch, act_layers, act_units),
        "landscape (8 step sizes)": lambda: gradient_landscape(model, loss_fn, batch, etas),
        "ICS (2 layers)": lambda: covariate_shift(model, loss_fn, batch, before, after, ics_layers),
        "BN damping": lambda: bn_gradient_damping(model, loss_fn, batch),
    }
    rows = []
    for name, fn in probes.items():
        t, _ = timed(fn, device, repeats)
        rows.append((name, t, t / t_step))

    # the Hessian, in units of one product on a graph built once. Each repeat times a product
    # right next to the Lanczos, trace and density it is compared with, so a change of machine
    # load between them does not enter the ratios; medians over repeats.
    op = HessianOperator(model, loss_fn, batch)
    v = torch.randn(op.size, device=op.device, dtype=op.dtype)
    hessian_eigenvalues(op, k=1, tol=1e-3)  # warm-up
    keys = ("build", "hvp", "lanczos", "trace", "density")
    samples: dict[str, list[float]] = {k: [] for k in keys}
    ratios: dict[str, list[float]] = {"lanczos": [], "trace": [], "density": []}
    lanczos_hvps = 0
    for _ in range(max(1, repeats)):
        times, lanczos_hvps, trace_probes = hessian_round(model, loss_fn, batch, device, v)
        for key in keys:
            samples[key].append(times[key])
        hvp = times["hvp"]
        ratios["lanczos"].append(times["lanczos"] / (lanczos_hvps * hvp + times["build"]))
        ratios["trace"].append(times["trace"] / trace_probes / hvp)
        ratios["density"].append(times["density"] / 30 / hvp)
    t_build, t_hvp, t_lanczos, t_trace, t_density = (statistics.median(samples[k]) for k in samples)
    rows += [
        ("Hessian: build the graph", t_build, t_build / t_step),
        ("Hessian: one HVP", t_hvp, t_hvp / t_step),
        (f"Hessian top-1 (Lanczos, {lanczos_hvps} HVPs)", t_lanczos, t_lanczos / t_step),
        ("Hessian trace (20 probes)", t_trace, t_trace / t_step),
        ("Hessian density (1 probe, 30 steps)", t_density, t_density / t_step),
    ]
    hessian = {
        "build_s": t_build,
        "hvp_s": t_hvp,
        "lanczos_s": t_lanczos,
        "lanczos_hvps": lanczos_hvps,
        "lanczos_over_hvps_plus_build": statistics.median(ratios["lanczos"]),
        "trace_probe_in_hvps": statistics.median(ratios["trace"]),
        "density_step_in_hvps": statistics.median(ratios["density"]),
    }
    return rows, hessian


def hessian_round(model, loss_fn, batch, device, v) -> tuple[dict[str, float], int, int]:
    """One timing of each Hessian measurement next to a product: (seconds by name, Lanczos
    HVPs, trace probes)."""
    t_build, op = timed(lambda: HessianOperator(model, loss_fn, batch), device, 1)
    t_hvp, _ = timed(lambda: op.matvec(v), device, 3)
    # Lanczos on an operator of its own: its time includes building the graph
    t_lanczos, (_, info) = timed(
        lambda: hessian_eigenvalues(HessianOperator(model, loss_fn, batch), k=1, tol=1e-3),
        device,
        1,
    )
    t_trace, (_, _, trace_info) = timed(
        lambda: hessian_trace(op, n_probes=20, rtol=0.0, return_info=True), device, 1
    )
    t_density, _ = timed(lambda: hessian_density(op, steps=30, n_probes=1), device, 1)
    times = {
        "build": t_build,
        "hvp": t_hvp,
        "lanczos": t_lanczos,
        "trace": t_trace,
        "density": t_density,
    }
    return times, info["hvps"], trace_info["probes"]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = args.overrides or DEFAULT_OVERRIDES
    cfg = compose_config(overrides, device.type)
    header = (
        f"# smoothbench benchmark: {cfg.model.name} width {cfg.model.width} norm {cfg.norm.name}, "
        f"batch {cfg.batch_size}, {cfg.data.name}, {cfg.optim.name}, autocast {cfg.autocast}, "
        f"channels_last {cfg.channels_last}; device {device} ({device_name(device)}), "
        f"torch {torch.__version__}"
    )
    print(header, flush=True)

    # alternate the two loops so a change of machine load hits both alike; medians
    loops, plains = [], []
    for _ in range(args.rounds):
        loops.append(loop_step_time(cfg, args.steps, args.warmup, deterministic=False))
        plain = PlainLoop(cfg, device)
        plains.append(plain.step_time(args.steps, args.warmup))
    t_loop, t_plain = statistics.median(loops), statistics.median(plains)
    results: dict = {
        "device": device_name(device),
        "overrides": overrides,
        "plain_step_s": t_plain,
        "loop_step_s": t_loop,
        "loop_over_plain": t_loop / t_plain,
        "rounds": {"loop_step_s": loops, "plain_step_s": plains},
    }
    if not args.no_deterministic:
        t_det = loop_step_time(cfg, args.steps, args.warmup, deterministic=True)
        results.update(deterministic_step_s=t_det, deterministic_over_loop=t_det / t_loop)

    print(f"\n{'training step':<44}{'ms/step':>10}{'x plain':>10}")
    print(f"{'plain PyTorch loop':<44}{1000 * t_plain:>10.2f}{1.0:>10.2f}")
    print(f"{'train() probes=off deterministic=false':<44}{1000 * t_loop:>10.2f}"
          f"{t_loop / t_plain:>10.2f}")  # fmt: skip
    if "deterministic_step_s" in results:
        t_det = results["deterministic_step_s"]
        print(f"{'train() probes=off deterministic=true':<44}{1000 * t_det:>10.2f}"
              f"{t_det / t_plain:>10.2f}")  # fmt: skip

    if not args.no_probes:
        rows, hessian = probe_costs(plain, t_plain, args.repeats)
        results["probes"] = {name: {"s": t, "x_plain_step": r} for name, t, r in rows}
        results["hessian"] = hessian
        print(f"\n{'probe (one measurement)':<44}{'ms':>10}{'x step':>10}")
        for name, t, ratio in rows:
            print(f"{name:<44}{1000 * t:>10.1f}{ratio:>10.2f}")
        print(
            f"\nLanczos / (HVPs x one HVP + graph) = "
            f"{hessian['lanczos_over_hvps_plus_build']:.2f} (target <= 1.3); "
            f"trace probe = {hessian['trace_probe_in_hvps']:.2f} HVPs (target <= 1.2); "
            f"density step = {hessian['density_step_in_hvps']:.2f} HVPs"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float) + "\n")
    return results


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "disabled")
    sys.exit(0 if main() else 1)
