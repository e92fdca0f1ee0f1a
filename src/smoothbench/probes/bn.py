"""The bn probe: how much a BatchNorm layer damps the gradient it passes back (paper Thm 4.1).

For a BN layer with input y, output z, g = ∇_z L and m batch positions per channel,
    ‖∇_y L‖² = Σ_c (γ_c²/σ_c²) (‖g_c‖² − ⟨1, g_c⟩²/m − ⟨g_c, ŷ_c⟩²/m)          (ε → 0)
so the input gradient is the output gradient with its mean and its component along ŷ removed,
scaled by γ/σ. The probe measures both sides in one forward-backward.

With ε > 0 (σ² = batch variance + ε, ŷ = (y − μ)/σ, so ‖ŷ_c‖² = m·var/(var + ε) < m) the exact
relation has (⟨g_c, ŷ_c⟩²/m)(2 − ‖ŷ_c‖²/m) as its last term; the theorem's right-hand side,
which we report, exceeds ‖∇_y L‖² by Σ_c (γ_c²/σ_c²)(⟨g_c, ŷ_c⟩²/m)(ε/(var_c + ε)) ≥ 0:
the paper's "≤", tight unless a channel's variance is comparable to ε.

For a noisy BN layer z is the module's output after the noise, so "grad_ratio" is the damping
of normalization and noise together, and "identity_rhs" (built from that g and the clean ŷ) is
no longer an identity for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from smoothbench.models import numbered_layers
from smoothbench.preserve import preserved
from smoothbench.probes.base import Probe, ProbeContext, ScheduleConfig

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
KEYS = ("grad_ratio", "gamma_over_sigma", "grad_in_norm", "grad_out_norm", "identity_rhs")


def batch_norm_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every BatchNorm1d/2d/3d (subclasses included) of `model`, by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, BATCH_NORMS)}


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    """(N, C, *) -> (C, m) in float64: the identity's sums cancel, so they need the digits."""
    return t.detach().movedim(1, 0).reshape(t.shape[1], -1).double()


def _damping(
    module: nn.Module, y: torch.Tensor, grad_y: torch.Tensor, grad_z: torch.Tensor
) -> torch.Tensor:
    """One layer's row of KEYS, as a float64 tensor on the layer's device."""
    y_c, gy_c, g_c = _per_channel(y), _per_channel(grad_y), _per_channel(grad_z)
    m = y_c.shape[1]
    mean = y_c.mean(dim=1, keepdim=True)
    sigma = (y_c.var(dim=1, unbiased=False, keepdim=True) + module.eps).sqrt()
    y_hat = (y_c - mean) / sigma
    gamma = (
        module.weight.detach().double()
        if module.weight is not None
        else torch.ones_like(mean[:, 0])
    )
    scale = gamma / sigma[:, 0]
    rhs = (
        scale.pow(2) * (g_c.pow(2).sum(1) - g_c.sum(1).pow(2) / m - (g_c * y_hat).sum(1).pow(2) / m)
    ).sum()
    grad_in, grad_out = gy_c.norm(), g_c.norm()
    return torch.stack(
        [grad_in / grad_out, scale.pow(2).mean().sqrt(), grad_in, grad_out, rhs.clamp(min=0).sqrt()]
    )


def bn_gradient_damping(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple[torch.Tensor, torch.Tensor],
    layers: Mapping[str, nn.Module] | None = None,
) -> dict[str, dict[str, float]]:
    """Input vs output gradient of each BatchNorm layer, and the Thm 4.1 right-hand side.

    `layers` maps a label to a batch-norm module of `model` (default: `batch_norm_layers`).
    The layers use batch statistics (the model is put in training mode); σ_B = sqrt(biased
    batch variance + ε), as in the forward pass. A module called more than once is measured
    at its first call. Everything the pass disturbs is restored; no `.grad` is touched.

    Returns {label: {"grad_ratio": ‖∇_y L‖/‖∇_z L‖, "gamma_over_sigma": RMS over channels of
    γ/σ_B (γ = 1 without affine), "grad_in_norm": ‖∇_y L‖, "grad_out_norm": ‖∇_z L‖,
    "identity_rhs": sqrt of the Thm 4.1 right-hand side (see the module docstring)}}.
    Cost: one forward-backward.
    """
    if layers is None:
        layers = batch_norm_layers(model)
    if not layers:
        return {}
    inputs, targets = batch
    ys: dict[str, torch.Tensor] = {}
    grads_z: dict[str, torch.Tensor] = {}

    def capture(label: str):
        def pre_hook(_module: nn.Module, args: tuple):
            if label in ys:
                return None
            y = args[0]
            if not y.requires_grad:  # a norm on the raw input: make y a leaf we can differentiate
                y = y.detach().requires_grad_(True)
            ys[label] = y
            return (y, *args[1:])

        def hook(_module: nn.Module, _args: tuple, z: torch.Tensor) -> None:
            if label in grads_z:
                return
            grads_z[label] = None
            # A tensor hook keeps the gradient of z as the module returned it, even when a
            # following ReLU(inplace=True) overwrites z.
            z.register_hook(lambda g: grads_z.__setitem__(label, g))

        return pre_hook, hook

    with preserved(model):
        model.train()
        handles = []
        for label, module in layers.items():
            pre_hook, hook = capture(label)
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(hook))
        try:
            loss = loss_fn(model(inputs), targets)
        finally:
            for h in handles:
                h.remove()
        not_run = [label for label in layers if label not in ys]
        if not_run:
            raise ValueError(f"layers never called in the forward pass: {', '.join(not_run)}")
        grads_y = torch.autograd.grad(
            loss, list(ys.values()), allow_unused=True, materialize_grads=True
        )
        rows = []
        for (label, y), grad_y in zip(ys.items(), grads_y, strict=True):
            # A layer whose output does not reach the loss gets no gradient: it is zero.
            grad_z = grads_z[label] if grads_z[label] is not None else torch.zeros_like(y)
            rows.append(_damping(layers[label], y, grad_y, grad_z))
        rows = torch.stack(rows)

    values = dict(zip(ys, rows.cpu().tolist(), strict=True))
    return {label: dict(zip(KEYS, values[label], strict=True)) for label in layers}


# ---- the probe: config key probes.bn, metrics bn/layerK/...

# grad_in_norm and identity_rhs are the two sides of Thm 4.1 (the claims registry checks their
# ratio); grad_out_norm is grad_in_norm / grad_ratio and is not recorded
RECORDED = ("grad_ratio", "gamma_over_sigma", "grad_in_norm", "identity_rhs")


@dataclass
class BnSettings:
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


class BnProbe(Probe):
    """Gradient damping of every BatchNorm layer (layers numbered as in `numbered_layers`)."""

    name = "bn"
    settings_type = BnSettings
    order = 30

    def __init__(self, settings: BnSettings, context: ProbeContext):
        super().__init__(settings, context)
        self.layers = {
            r.name: r.norm
            for r in numbered_layers(self.model)
            if isinstance(r.norm, nn.modules.batchnorm._BatchNorm)
        }

    def has_work(self) -> bool:
        return bool(self.layers)

    def cost_units(self) -> float:
        # one forward-backward with hooks on every norm layer: 1.7 steps measured on VGG-11
        # (scripts/benchmark.py, experiment=fig4 scale=cpu)
        return 2.0

    def measure(self, step: int, batch) -> dict:
        damping = bn_gradient_damping(self.model, self.loss_fn, batch, self.layers)
        return {
            f"bn/{layer}/{key}": values[key]
            for layer, values in damping.items()
            for key in RECORDED
        }

    def nan_keys(self) -> list[str]:
        return [f"bn/{layer}/{key}" for layer in self.layers for key in RECORDED]


PROBE = BnProbe
