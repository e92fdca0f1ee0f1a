"""The grad_angle probe: how much the gradient turns between two measurements.

At each measured step t the probe computes g_t = ∇L(θ_t; B_t), the mini-batch gradient on the
step's own batch over every trainable parameter (norm layers in training mode, as in the
training step), and compares it with g_s from the previous measured step s:

    grad_angle/cosine  = ⟨g_t, g_s⟩ / (‖g_t‖ ‖g_s‖)     (NaN when either gradient is zero)
    grad_angle/degrees = arccos(cosine) in degrees

Near 1 the gradient keeps its direction from one measurement to the next (a smooth stretch of
the landscape, or steps too small to leave it); near or below 0 it has turned (mini-batch noise
dominates, or the iterate bounces across a valley). The first measurement records nothing.
Cost: one forward-backward and one copy of the gradient, kept between measurements.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from smoothbench.preserve import preserved
from smoothbench.probes.base import Probe, ProbeContext, ScheduleConfig

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def flat_gradient(
    model: nn.Module, loss_fn: LossFn, batch: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """∇L(θ; batch) over the trainable parameters, flattened in `named_parameters` order.

    Norm layers use batch statistics (the model is put in training mode); buffers, modes and
    RNG states are restored, and no `.grad` is touched. Unused parameters count as zeros.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    with preserved(model):
        model.train()
        inputs, targets = batch
        loss = loss_fn(model(inputs), targets)
        grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
    return torch.cat([g.detach().reshape(-1) for g in grads])


def gradient_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """cos(a, b) in float64; NaN when either vector is zero."""
    a, b = a.double(), b.double()
    norms = float(a.norm() * b.norm())
    return float(a @ b) / norms if norms > 0 else math.nan


@dataclass
class GradAngleSettings:
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


class GradAngleProbe(Probe):
    """Cosine and angle between the gradients of successive measured steps."""

    name = "grad_angle"
    settings_type = GradAngleSettings

    def __init__(self, settings: GradAngleSettings, context: ProbeContext):
        super().__init__(settings, context)
        self.previous: torch.Tensor | None = None  # g_s of the previous measured step

    def measure(self, step: int, batch) -> dict:
        g = flat_gradient(self.model, self.loss_fn, batch)
        previous, self.previous = self.previous, g
        if previous is None:
            return {}
        cosine = gradient_cosine(g, previous)
        # clipped: rounding can put |cosine| a hair above 1
        clipped = max(-1.0, min(1.0, cosine))
        degrees = math.nan if math.isnan(cosine) else math.degrees(math.acos(clipped))
        return {"grad_angle/cosine": cosine, "grad_angle/degrees": degrees}

    def nan_keys(self) -> list[str]:
        return ["grad_angle/cosine", "grad_angle/degrees"]

    def state_dict(self) -> dict:
        return {"previous": self.previous.cpu()} if self.previous is not None else {}

    def load_state_dict(self, state: dict) -> None:
        previous = state.get("previous")
        device = next(self.model.parameters()).device
        self.previous = previous.to(device) if previous is not None else None


PROBE = GradAngleProbe
