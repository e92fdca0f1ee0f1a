"""VGG-11/13/16/19, CIFAR variant (docs/science.md §2): conv blocks, max pools, one linear layer."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

POOL = "M"
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
              "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512,
              512, 512, 512, "M"),
}  # fmt: skip


class ConvBlock(nn.Module):
    """3x3 conv (padding 1) -> norm -> ReLU: one numbered layer of a VGG."""

    def __init__(self, in_channels: int, out_channels: int, norm: nn.Module, bias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)
        self.norm = norm
        # Not in place: hooks on the norm's output (activation probes) must see pre-ReLU values.
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class VGG(nn.Module):
    """VGG on 3x32x32 inputs: conv blocks and 2x2 max pools, then Linear(last channels -> classes).

    `config` lists output channels of the conv blocks (already scaled by width) and "M" for the
    pools. `norm_layer(channels)` builds each block's norm. `conv_bias` should be False under a
    norm that subtracts a per-channel mean, where a conv bias is redundant (β takes its role).
    """

    def __init__(
        self,
        config: Sequence[int | str],
        norm_layer: Callable[[int], nn.Module],
        num_classes: int = 10,
        conv_bias: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        self._block_indices: list[int] = []
        channels = 3
        for item in config:
            if item == POOL:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            self._block_indices.append(len(layers))
            layers.append(ConvBlock(channels, int(item), norm_layer(int(item)), conv_bias))
            channels = int(item)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def layer_pairs(self) -> list[tuple[str, str]]:
        """(conv, norm) qualified names of the conv blocks, from the input on."""
        return [(f"features.{i}.conv", f"features.{i}.norm") for i in self._block_indices]

    def layer_outputs(self) -> list[str]:
        """Per conv block, the module whose output the next layer consumes: its ReLU (a max
        pool may follow; it is not applied)."""
        return [f"features.{i}.act" for i in self._block_indices]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
