"""Tiny BatchNorm nets with fixed parameters, running statistics and batches, shared by the
tests of `smoothbench.curvature` and of the hessian probe."""

from __future__ import annotations

import torch
from torch import nn

ce = nn.functional.cross_entropy


def _fill(model: nn.Module, seed: int, scale: float) -> nn.Module:
    """Deterministic parameters and non-trivial running statistics from a private generator."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.5)
            elif name.endswith(("running_var", "running_scale")):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return model


def bn_mlp(seed: int = 7, scale: float = 2.0, norm=nn.BatchNorm1d) -> nn.Module:
    """4 → 6 → 6 → 3, BN + tanh twice: 117 parameters."""
    layers: list[nn.Module] = []
    width = 4
    for _ in range(2):
        layers += [nn.Linear(width, 6), norm(6), nn.Tanh()]
        width = 6
    layers.append(nn.Linear(width, 3))
    return _fill(nn.Sequential(*layers), seed, scale)


def bn_cnn(seed: int = 1) -> nn.Module:
    """Conv(2→3, 3×3) + BN2d + ReLU, 2×2 average pool, Linear(12→3): 102 parameters."""
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(12, 3),
    )
    return _fill(model, seed, 0.7)


def mlp_batch(seed: int = 107, n: int = 12):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def cnn_batch(seed: int = 3, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)
