"""Deep linear network (docs/science.md §2): square bias-free linear layers, no nonlinearity."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class DeepLinearNetwork(nn.Module):
    """`depth` Linear(dim -> dim, bias=False) layers, a norm after each but the last.

    The last layer's output is the prediction; its norm slot is an nn.Identity so that every
    layer has the same hook point.
    """

    def __init__(self, depth: int, dim: int, norm_layer: Callable[[int], nn.Module]) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim!r}")
        self.linears = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(depth))
        norms = [norm_layer(dim) for _ in range(depth - 1)] + [nn.Identity()]
        self.norms = nn.ModuleList(norms)

    def layer_pairs(self) -> list[tuple[str, str]]:
        """(linear, norm) names from the input on."""
        return [(f"linears.{k}", f"norms.{k}") for k in range(len(self.linears))]

    def layer_outputs(self) -> list[str]:
        """Per layer, the module whose output the next layer consumes: its norm (no
        nonlinearity; the last layer's is the Identity, whose output is the prediction)."""
        return [f"norms.{k}" for k in range(len(self.linears))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, norm in zip(self.linears, self.norms, strict=True):
            x = norm(linear(x))
        return x
