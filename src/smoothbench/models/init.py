"""Weight initialization schemes for the conv and linear layers of a model.

The paper's nets use Glorot (Xavier) initialization. It matters (docs/science.md §2): with torch's
default init a narrow VGG without BN sits on a plateau with vanishing gradients, and every
smoothness measure then looks "smooth" for the wrong reason.
"""

from __future__ import annotations

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
