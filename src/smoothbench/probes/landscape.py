"""The loss landscape along the gradient direction (paper §3.1, Figs 4, 10, 11; Appendix A.2.2).

From θ, step along −g for a range of step sizes η and record how much the loss and the gradient
change. A smooth landscape has small loss variation, a gradient that stays predictive
(‖g_η − g‖ small) and a small effective β-smoothness max_η ‖g_η − g‖ / ‖η g‖.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from smoothbench.preserve import preserved
from smoothbench.probes.base import (
    Probe,
    ProbeContext,
    ScheduleConfig,
    require_at_least,
    require_positive,
)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SPACINGS = ("log", "linear")


def landscape_step_sizes(
    lr: float, low: float, high: float, n: int = 8, spacing: str = "log"
) -> np.ndarray:
    """Step sizes η spanning [low, high] × lr, endpoints included.

    The paper uses [1/2, 4] × lr for VGG and [1/100, 30] × lr for the deep linear network.
    `spacing="log"` (the default) spaces the n points geometrically, so a range over several
    decades is sampled evenly on the log axis the figures use; `"linear"` spaces them evenly.
    """
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if not 0 < low <= high:
        raise ValueError(f"need 0 < low <= high, got low={low}, high={high}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if spacing == "log":
        factors = np.geomspace(low, high, n)
    elif spacing == "linear":
        factors = np.linspace(low, high, n)
    else:
        raise ValueError(f"unknown spacing '{spacing}'; choose one of: {', '.join(SPACINGS)}")
    return factors * lr


def _trainable(model: nn.Module) -> tuple[list[str], list[nn.Parameter]]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [n for n, _ in named], [p for _, p in named]


def _loss_and_grad(
    model: nn.Module, loss_fn: LossFn, batch: tuple, params: list[nn.Parameter]
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    inputs, targets = batch
    loss = loss_fn(model(inputs), targets)
    # Unused parameters get a zero gradient rather than None, so every η sees the same vector.
    grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
    return loss.detach(), grads


def _norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """‖·‖₂ of the concatenation, without concatenating."""
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(t).double() for t in tensors])
    )


def _distance(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return _norm([x - y for x, y in zip(a, b, strict=True)])


def gradient_landscape(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple[torch.Tensor, torch.Tensor],
    step_sizes: Sequence[float] | np.ndarray,
    grad: Mapping[str, torch.Tensor] | None = None,
) -> dict:
    """Loss and gradient at θ − η g for each step size η, with g = ∇L(θ; batch).

    `grad`, when given, is g as a per-parameter dict {param_name: tensor} over every trainable
    parameter (e.g. the training step's own gradient, so it is not recomputed); it must be the
    gradient of `loss_fn` on `batch` at the current θ. Norm layers use batch statistics (the
    model is put in training mode for the probe). Parameters, buffers, module modes and RNG
    states are restored on exit, and no `.grad` is touched.

    Returns numpy arrays and python floats:
      "step_sizes" (K,), "losses" (K+1,) with losses[0] = L(θ), "grad_diffs" (K,) = ‖g_η − g‖₂,
      "loss_variation" = max − min of losses, "grad_predictiveness" = (min, max) of grad_diffs,
      "beta_smoothness" = max_η ‖g_η − g‖₂ / ‖η g‖₂ (nan when g = 0), "grad_norm" = ‖g‖₂.
    Cost: one forward-backward per η, plus one for g when `grad` is not given.
    """
    etas = np.asarray(step_sizes, dtype=np.float64)
    if etas.ndim != 1 or etas.size == 0 or not np.all(etas > 0):
        raise ValueError(f"step_sizes must be a non-empty 1-D list of positive numbers: {etas}")
    names, params = _trainable(model)

    with preserved(model):
        model.train()
        if grad is None:
            loss0, g = _loss_and_grad(model, loss_fn, batch, params)
        else:
            missing = [n for n in names if n not in grad]
            if missing:
                raise ValueError(f"grad lacks trainable parameters: {', '.join(missing)}")
            g = tuple(grad[n].detach() for n in names)
            with torch.no_grad():
                loss0 = loss_fn(model(batch[0]), batch[1]).detach()
        grad_norm = _norm(g)

        losses, diffs = [loss0], []
        position = 0.0  # θ currently holds θ − position · g
        for eta in etas:
            # Move in place by the increment: no copy of θ beyond the one `preserved` restores.
            with torch.no_grad():
                for p, gp in zip(params, g, strict=True):
                    p.add_(gp, alpha=-(eta - position))
            position = eta
            loss, g_eta = _loss_and_grad(model, loss_fn, batch, params)
            losses.append(loss)
            diffs.append(_distance(g_eta, g))

    # One device-to-host transfer for everything, after all passes are queued.
    losses_np = torch.stack(losses).double().cpu().numpy()
    diffs_np = torch.stack(diffs).cpu().numpy()
    g_norm = float(grad_norm.cpu())
    beta = float(np.max(diffs_np / (etas * g_norm))) if g_norm > 0 else float("nan")
    return {
        "step_sizes": etas,
        "losses": losses_np,
        "grad_diffs": diffs_np,
        "loss_variation": float(losses_np.max() - losses_np.min()),
        "grad_predictiveness": (float(diffs_np.min()), float(diffs_np.max())),
        "beta_smoothness": beta,
        "grad_norm": g_norm,
    }


# ---- the probe: config key probes.landscape, metrics landscape/...

SCALARS = ("loss_variation", "grad_pred_min", "grad_pred_max", "beta_smoothness", "grad_norm")


@dataclass
class LandscapeSettings:
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # step sizes eta spanning [low, high] x lr; null picks the paper's range for the model
    # ([1/2, 4] for image nets, [1/100, 30] for the DLN)
    low: float | None = None
    high: float | None = None
    points: int = 8


class LandscapeProbe(Probe):
    """Loss and gradient along −g for a range of step sizes around the learning rate."""

    name = "landscape"
    settings_type = LandscapeSettings
    order = 20

    def __init__(self, settings: LandscapeSettings, context: ProbeContext):
        super().__init__(settings, context)
        is_dln = context.model_name == "dln"
        low = settings.low if settings.low is not None else (0.01 if is_dln else 0.5)
        high = settings.high if settings.high is not None else (30.0 if is_dln else 4.0)
        self.step_sizes = landscape_step_sizes(context.lr, low, high, n=settings.points)

    @classmethod
    def check(cls, settings, key: str) -> None:
        require_at_least(f"{key}.points", settings.points, 2)
        for bound in ("low", "high"):
            if getattr(settings, bound) is not None:
                require_positive(f"{key}.{bound}", getattr(settings, bound))
        if settings.low is not None and settings.high is not None and settings.low >= settings.high:
            raise ValueError(f"{key}.low={settings.low} must be below {key}.high={settings.high}")

    def cost_units(self) -> float:
        return len(self.step_sizes) + 1  # one forward-backward per step size, one for g

    def measure(self, step: int, batch) -> dict:
        result = gradient_landscape(self.model, self.loss_fn, batch, self.step_sizes)
        return {
            "landscape/step_sizes": result["step_sizes"],
            "landscape/losses": result["losses"],
            "landscape/grad_diffs": result["grad_diffs"],
            "landscape/loss_variation": result["loss_variation"],
            "landscape/grad_pred_min": result["grad_predictiveness"][0],
            "landscape/grad_pred_max": result["grad_predictiveness"][1],
            "landscape/beta_smoothness": result["beta_smoothness"],
            "landscape/grad_norm": result["grad_norm"],
        }

    def nan_keys(self) -> list[str]:
        return [f"landscape/{key}" for key in SCALARS]


PROBE = LandscapeProbe
