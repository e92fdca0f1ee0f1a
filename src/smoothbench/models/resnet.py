"""ResNets with BasicBlocks: CIFAR ResNet-20/32/56/110 (6n+2) and ResNet-18 with a CIFAR stem.

He et al. 2016; `shortcut=False` removes the skip path entirely, giving the "noshort" nets of
Li et al. 2018. Where a block changes shape its shortcut is a 1x1 conv + norm projection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

NormLayer = Callable[[int], nn.Module]

# name -> (stem channels, stage channels, blocks per stage); stage strides are 1, 2, 2, ...
RESNET_SPECS: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    "resnet20": (16, (16, 32, 64), (3, 3, 3)),
    "resnet32": (16, (16, 32, 64), (5, 5, 5)),
    "resnet56": (16, (16, 32, 64), (9, 9, 9)),
    "resnet110": (16, (16, 32, 64), (18, 18, 18)),
    "resnet18": (64, (64, 128, 256, 512), (2, 2, 2, 2)),
}


def conv3x3(in_channels: int, out_channels: int, stride: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)


class BasicBlock(nn.Module):
    """conv3x3 -> norm -> ReLU (act1) -> conv3x3 -> norm, (+ shortcut), ReLU (act2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        norm_layer: NormLayer,
        conv_bias: bool,
        shortcut: bool,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride, conv_bias)
        self.norm1 = norm_layer(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels, 1, conv_bias)
        self.norm2 = norm_layer(out_channels)
        # Not in place: hooks on norm outputs must keep seeing the pre-ReLU values. One ReLU per
        # use (they hold no parameters) so a forward hook on each sees exactly one call.
        self.act1 = nn.ReLU()  # after norm1: the input of conv2
        self.act2 = nn.ReLU()  # after norm2 and the shortcut sum: the block's output
        self.shortcut: nn.Module | None = None
        if shortcut and (stride != 1 or in_channels != out_channels):
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=conv_bias),
                norm_layer(out_channels),
            )
        elif shortcut:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)  # not `+=`: that would alter the hooked norm2 output
        return self.act2(out)


class ResNet(nn.Module):
    """Stem (3x3 conv, stride 1, no max pool) -> stages of BasicBlocks -> avg pool -> Linear.

    Channel counts come already scaled by width. Stage 1 keeps the resolution, every later
    stage halves it.
    """

    def __init__(
        self,
        stem_channels: int,
        stage_channels: Sequence[int],
        blocks_per_stage: Sequence[int],
        norm_layer: NormLayer,
        num_classes: int = 10,
        conv_bias: bool = False,
        shortcut: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(3, stem_channels, 1, conv_bias)
        self.norm1 = norm_layer(stem_channels)
        self.act = nn.ReLU()  # the stem's only
        self._pairs = [("conv1", "norm1")]
        self._outputs = ["act"]
        channels = stem_channels
        stages = zip(stage_channels, blocks_per_stage, strict=True)
        for s, (out_channels, blocks) in enumerate(stages, start=1):
            stage = nn.Sequential()
            for b in range(blocks):
                stride = 2 if s > 1 and b == 0 else 1
                stage.append(
                    BasicBlock(channels, out_channels, stride, norm_layer, conv_bias, shortcut)
                )
                self._pairs.append((f"stage{s}.{b}.conv1", f"stage{s}.{b}.norm1"))
                self._pairs.append((f"stage{s}.{b}.conv2", f"stage{s}.{b}.norm2"))
                self._outputs += [f"stage{s}.{b}.act1", f"stage{s}.{b}.act2"]
                channels = out_channels
            self.add_module(f"stage{s}", stage)
        self.num_stages = len(stage_channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def layer_pairs(self) -> list[tuple[str, str]]:
        """(conv, norm) names in forward order: stem, then conv1, conv2 of each block.

        The 1x1 projection shortcuts are not numbered layers.
        """
        return list(self._pairs)

    def layer_outputs(self) -> list[str]:
        """Per numbered layer, the module whose output the next layer consumes: the stem's
        ReLU, then each block's act1 (after norm1) and act2 (after norm2 + shortcut)."""
        return list(self._outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm1(self.conv1(x)))
        for s in range(1, self.num_stages + 1):
            out = getattr(self, f"stage{s}")(out)
        return self.fc(torch.flatten(self.pool(out), 1))
