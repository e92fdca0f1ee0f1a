"""smoothbench's probes in a training loop of your own (docs/library.md).

A torchvision ResNet-18 learns scikit-learn's 8x8 digits (upsampled to 32x32, no download) in a
plain PyTorch loop; at one step the probes measure the loss landscape along the gradient, the
Hessian's largest eigenvalue and trace, and the internal covariate shift of the update.

    python examples/own_loop.py              # 3 steps, probes at step 1, prints their numbers
    python examples/own_loop.py --no-probes  # the same training without the probes

Both print the same `trajectory` digest: the probes leave no trace on the training (parameters,
BatchNorm statistics, modes, .grad and random states all come back as they were).
tests/test_examples.py runs both and compares.
"""

from __future__ import annotations

import argparse
import hashlib
import random

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from sklearn.datasets import load_digits

from smoothbench.curvature import HessianOperator, hessian_eigenvalues, hessian_trace
from smoothbench.probes import (
    covariate_shift_around_step,
    gradient_landscape,
    landscape_step_sizes,
)

LR = 0.01
# ICS of three weights, by parameter name: the stem, a middle block and the classifier
ICS_LAYERS = {"conv1": "conv1.weight", "layer2": "layer2.0.conv1.weight", "fc": "fc.weight"}


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as (N, 3, 32, 32) floats in [0, 1] and their labels."""
    data = load_digits()
    small = torch.from_numpy(data.images).float().unsqueeze(1) / 16.0
    images = F.interpolate(small, size=(32, 32), mode="bilinear").expand(-1, 3, -1, -1)
    return images.contiguous(), torch.from_numpy(data.target).long()


def probe(model, batch) -> dict[str, float]:
    """The measurements at θ_t, on the step's batch; called between backward and step."""
    grad = {n: p.grad for n, p in model.named_parameters()}  # reuse the step's own gradient
    etas = landscape_step_sizes(LR, 0.5, 4.0, n=4)
    landscape = gradient_landscape(model, F.cross_entropy, batch, etas, grad=grad)
    # One graph for both Hessian measurements; batch statistics (bn_mode="train"), as training.
    op = HessianOperator(model, F.cross_entropy, batch, bn_mode="train")
    eigenvalues, info = hessian_eigenvalues(op, k=1, tol=1e-2)
    trace, trace_stderr = hessian_trace(op, n_probes=8, rtol=0)
    return {
        "landscape/loss_variation": landscape["loss_variation"],
        "landscape/beta_smoothness": landscape["beta_smoothness"],
        "hessian/lambda_max": float(eigenvalues[0]),
        "hessian/residual": float(info["residuals"][0]),
        "hessian/trace": trace,
        "hessian/trace_stderr": trace_stderr,
    }


def train(steps: int, probe_at: set[int], batch_size: int = 8) -> tuple[list[float], list]:
    """Plain SGD; returns the losses and the final model and optimizer for the digest."""
    # every global generator, so that the digest's random states agree across processes
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    images, labels = digits()
    order = torch.randperm(len(labels))
    model = torchvision.models.resnet18(num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    losses = []
    model.train()  # once: a probe that left a module in eval mode would show in later steps
    for step in range(steps):
        index = order[step * batch_size : (step + 1) * batch_size]
        batch = (images[index], labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(batch[0]), batch[1])
        loss.backward()
        losses.append(loss.item())
        if step not in probe_at:
            optimizer.step()
            continue
        records = probe(model, batch)
        with covariate_shift_around_step(model, F.cross_entropy, batch, ICS_LAYERS) as shift:
            optimizer.step()
        for layer, values in shift.items():
            records.update({f"ics/{layer}/{key}": value for key, value in values.items()})
        for key, value in records.items():
            print(f"step {step} {key} = {value:.6g}")
    return losses, [model, optimizer]


def digest(losses: list[float], objects: list) -> str:
    """sha256 of the losses, every tensor of the model's and optimizer's state, the modules'
    modes and the global random states (which this training never draws from: only a probe
    that moved them would change them)."""
    model = objects[0]
    h = hashlib.sha256(repr(losses).encode())
    for obj in objects:
        for key, value in _tensors(obj.state_dict()):
            h.update(key.encode())
            h.update(value.detach().contiguous().numpy().tobytes())
    h.update(repr([m.training for m in model.modules()]).encode())
    h.update(torch.get_rng_state().numpy().tobytes())
    h.update(repr((np.random.get_state()[2], random.getstate())).encode())
    h.update(np.random.get_state()[1].tobytes())
    return h.hexdigest()


def _tensors(state, prefix: str = ""):
    """(key, tensor) pairs of a nested state dict, in a fixed order."""
    items = state.items() if isinstance(state, dict) else enumerate(state)
    for key, value in items:
        if torch.is_tensor(value):
            yield f"{prefix}{key}", value
        elif isinstance(value, dict | list | tuple):
            yield from _tensors(value, f"{prefix}{key}.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--probe-at", type=int, nargs="*", default=[1])
    parser.add_argument("--no-probes", action="store_true", help="train without the probes")
    args = parser.parse_args(argv)
    losses, objects = train(args.steps, set() if args.no_probes else set(args.probe_at))
    print("losses = " + " ".join(f"{loss:.6g}" for loss in losses))
    print(f"trajectory = {digest(losses, objects)}")


if __name__ == "__main__":
    main()
