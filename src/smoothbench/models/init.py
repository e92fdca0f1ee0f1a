"""Weight initialization schemes for the conv and linear layers of a model.

The paper's nets use Glorot (Xavier) initialization. It matters (docs/science.md §2): with torch's
default init a narrow VGG without BN sits on a plateau with vanishing gradients, and every
smoothness measure then looks "smooth" for the wrong reason.
"""

from __future__ import annotations

import torch
from torch import nn

INIT_NAMES = ("xavier", "kaiming", "torch")


def initialize(model: nn.Module, init: str) -> None:
    """Re-initialize every Conv2d/Linear weight of `model` in place; biases become zero.

    xavier: Glorot uniform (the paper's). kaiming: He normal, fan_in, ReLU gain. torch: keep
    torch's defaults. Norm layers keep their own defaults (γ = 1, β = 0).
    """
    if init not in INIT_NAMES:
        raise ValueError(f"unknown init {init!r}; choose one of: {', '.join(INIT_NAMES)}")
    if init == "torch":
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if init == "xavier":
                nn.init.xavier_uniform_(module.weight)
            else:
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def zero_residual_branches(model: nn.Module) -> int:
    """Zero the last layer of every ResNet residual branch that has a shortcut; the count zeroed.

    Each BasicBlock with a shortcut (`block.shortcut is not None`) then computes
    relu(shortcut(x)) at init, so the net starts as its shortcut path. The last layer is norm2's
    affine weight γ where norm2 has one (Goyal et al. 2017, "zero γ"), else conv2's weight and
    bias (Fixup-like; the un-normalized nets). Blocks without a shortcut, VGGs and the DLN are
    left as they are. With noisy norms the noise still acts in training mode (its shift m is
    added to the zeroed branch); in eval mode such a block is the identity too.
    """
    from smoothbench.models.resnet import BasicBlock

    zeroed = 0
    with torch.no_grad():
        for block in model.modules():
            if not isinstance(block, BasicBlock) or block.shortcut is None:
                continue
            gamma = getattr(block.norm2, "weight", None)
            if isinstance(gamma, nn.Parameter):
                gamma.zero_()
            else:
                block.conv2.weight.zero_()
                if block.conv2.bias is not None:
                    block.conv2.bias.zero_()
            zeroed += 1
    return zeroed
