"""What the probes cost, side by side with a plain training step, in one run on one model and batch.

    python scripts/benchmark.py                         # VGG-11 (width 1/4) + BN, digits, CPU
    python scripts/benchmark.py --device cuda --width 1 --batch-size 128

Prints (1) a plain training step's time and each probe's cost as a multiple of it, (2) the top
Hessian eigenvalue by our Lanczos against a 100-iteration power iteration at tolerance 1e-3
(PyHessian's default algorithm): HVP counts, time and the value each returns, on a briefly
trained VGG-11, and (3) 2-D loss-surface points per second. Ratios measured in one process are
what to quote; absolute times depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from omegaconf import OmegaConf

from smoothbench.build import build_data_from_config, build_model_from_config, cross_entropy
from smoothbench.models import numbered_layers, set_noise_step
from smoothbench.probes.activations import activation_stats, choose_units
from smoothbench.probes.bn_damping import bn_gradient_damping
from smoothbench.probes.covariate_shift import covariate_shift
from smoothbench.probes.hessian import (
    hessian_density,
    hessian_eigenvalues,
    hessian_trace,
    power_iteration,
)
from smoothbench.probes.landscape import gradient_landscape, landscape_step_sizes
from smoothbench.probes.state import parameters_dict
from smoothbench.probes.surface import filter_normalized_direction, loss_surface


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg11")
    p.add_argument("--norm", default="batch")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--data", default="digits", help="digits | imagefolder (with --data-root)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--warmup-steps", type=int, default=100, help="brief training before measuring")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--surface-points", type=int, default=5, help="grid side of the 2-D surface")
    p.add_argument("--surface-subset", type=int, default=512)
    return p.parse_args(argv)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int) -> tuple[float, object]:
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


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    cfg = OmegaConf.create(
        {
            "seed": 0,
            "model": {
                "name": args.model,
                "width": args.width,
                "init": "xavier",
                "shortcut": True,
                "depth": 25,
                "dim": 10,
            },
            "norm": {
                "name": args.norm,
                "eps": 1e-5,
                "momentum": 0.1,
                "groups": 32,
                "noise": {"n_mu": 0.5, "n_sigma": 1.25, "r_mu": 0.1, "r_sigma": 0.1},
            },
            "data": {
                "name": args.data,
                "root": args.data_root,
                "download": False,
                "augment": False,
                "normalize": True,
                "num_samples": 1000,
                "dim": 10,
                "data_seed": 1234,
                "test_fraction": 0.2,
            },
        }
    )
    data = build_data_from_config(cfg).to(device)
    torch.manual_seed(0)
    model = build_model_from_config(cfg).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = cross_entropy

    def train_step(step: int):
        set_noise_step(model, step)
        x, y = data.batch(step, args.batch_size, seed=0)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    for step in range(args.warmup_steps):
        train_step(step)
    batch = data.batch(args.warmup_steps, args.batch_size, seed=0)
    refs = numbered_layers(model)
    counter = iter(range(args.warmup_steps, 10**9))
    t_step, _ = timed(lambda: train_step(next(counter)), device, args.repeats)

    act_layers = {r.name: r.norm for r in refs}
    act_units = {
        r.name: choose_units(model.get_submodule(r.transform_name).weight.shape[0], 64, r.index)
        for r in refs
    }
    ics_layers = {r.name: f"{r.transform_name}.weight" for r in refs[:2]}
    before = parameters_dict(model)
    after = {k: v - 1e-3 * torch.randn_like(v) for k, v in before.items()}
    etas = landscape_step_sizes(args.lr, 0.5, 4.0, n=8)
    probes = {
        "activations (all layers, 1 fwd)": lambda: activation_stats(
            model, batch, act_layers, act_units
        ),
        "landscape (8 step sizes)": lambda: gradient_landscape(model, loss_fn, batch, etas),
        "ICS (2 layers)": lambda: covariate_shift(model, loss_fn, batch, before, after, ics_layers),
        "BN damping": lambda: bn_gradient_damping(model, loss_fn, batch),
        "Hessian top-1 (Lanczos)": lambda: hessian_eigenvalues(
            model, loss_fn, batch, k=1, tol=1e-3
        ),
        "Hessian trace (20 probes)": lambda: hessian_trace(
            model, loss_fn, batch, n_probes=20, rtol=0.0
        ),
        "Hessian density (1 probe, 30 steps)": lambda: hessian_density(
            model, loss_fn, batch, steps=30, n_probes=1
        ),
    }
    rows = [("plain training step", t_step, 1.0)]
    for name, fn in probes.items():
        t, _ = timed(fn, device, max(1, args.repeats // 2))
        rows.append((name, t, t / t_step))

    print(
        f"# smoothbench probe costs: {args.model} width {args.width} norm {args.norm}, "
        f"batch {args.batch_size}, {args.data}, device {device} "
        f"({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"\n{'measurement':<40}{'time [ms]':>12}{'x train step':>14}")
    for name, t, ratio in rows:
        print(f"{name:<40}{1000 * t:>12.1f}{ratio:>14.2f}")

    # top eigenvalue: our Lanczos vs PyHessian's power iteration, same model and batch
    print(f"\n{'top eigenvalue method':<40}{'HVPs':>8}{'time [s]':>10}{'value':>12}{'x step':>10}")
    for label, fn in (
        (
            "Lanczos (ours, bn_mode=train)",
            lambda: hessian_eigenvalues(model, loss_fn, batch, k=1, tol=1e-3),
        ),
        (
            "power iteration, 100 it, tol 1e-3",
            lambda: power_iteration(model, loss_fn, batch, max_iter=100, tol=1e-3),
        ),
    ):
        synchronize(device)
        start = time.perf_counter()
        value, info = fn()
        synchronize(device)
        elapsed = time.perf_counter() - start
        value = float(np.asarray(value).ravel()[0])
        print(
            f"{label:<40}{info['hvps']:>8}{elapsed:>10.2f}{value:>12.3f}{elapsed / t_step:>10.1f}"
        )

    # 2-D loss surface throughput (Li et al.), eval-mode BN on a fixed training subset
    gen = torch.Generator().manual_seed(0)
    directions = (filter_normalized_direction(model, gen), filter_normalized_direction(model, gen))
    subset = data.fixed_subset(args.surface_subset, seed=0)
    n = args.surface_points
    coords = (np.linspace(-1, 1, n), np.linspace(-1, 1, n))
    synchronize(device)
    start = time.perf_counter()
    loss_surface(model, loss_fn, subset, directions, coords, bn_mode="eval", batch_size=256)
    synchronize(device)
    elapsed = time.perf_counter() - start
    print(
        f"\n2-D surface: {n}x{n} points on {len(subset[1])} examples in {elapsed:.2f} s = "
        f"{n * n / elapsed:.2f} points/s"
    )


if __name__ == "__main__":
    main()
