"""Internal covariate shift, the paper's optimization-based definition (Def. 2.1, Fig. 3).

G_i = ∇_{W_i} L(W_1 … W_k; B) is layer i's gradient before the update. G'_i is the same
gradient after every layer before i has taken its real update: ∇_{W_i} L(W⁺_1 … W⁺_{i−1},
W_i … W_k; B). How far G'_i is from G_i (ℓ2 distance, cosine) measures how much the change of
the layer's input distribution disturbs its own update; ‖G − G′‖/‖G‖ is the same distance
free of the gradient's scale (which norms, learning rates and training time all change).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from smoothbench.preserve import parameters_dict, preserved
from smoothbench.probes.base import (
    Probe,
    ProbeContext,
    ScheduleConfig,
    require_at_least,
    select_layers,
)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _owner(name: str) -> str:
    """The name of the module that holds parameter `name` ('' for the root)."""
    return name.rpartition(".")[0]


def _forward_order_hooks(model: nn.Module, order: dict[str, int]) -> list:
    """Record, for every module that holds parameters, when it is first entered."""

    def hook(name: str):
        def record(_module: nn.Module, _args: tuple) -> None:
            order.setdefault(name, len(order))

        return record

    return [
        m.register_forward_pre_hook(hook(name))
        for name, m in model.named_modules()
        if any(True for _ in m.parameters(recurse=False))
    ]


def _check_snapshot(label: str, snapshot: Mapping[str, torch.Tensor], names: list[str]) -> None:
    missing = [n for n in names if n not in snapshot]
    if missing:
        raise ValueError(f"`{label}` lacks trainable parameters: {', '.join(missing)}")


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.double().flatten(), b.double().flatten()
    return a @ b / (a.norm() * b.norm())  # nan when either gradient is zero


def _relative(distance: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """distance / ‖g‖, NaN when g is zero (not inf: there is no scale to compare with)."""
    norm = g.double().norm()
    return torch.where(norm > 0, distance / norm, torch.full_like(distance, float("nan")))


def _measured_layers(
    params: Mapping[str, nn.Parameter], layers: Mapping[str, str] | None
) -> Mapping[str, str]:
    """`layers`, or every trainable weight with at least 2 dimensions; unknown names refused."""
    if layers is None:
        return {n: n for n, p in params.items() if p.ndim >= 2}
    unknown = [w for w in layers.values() if w not in params]
    if unknown:
        raise ValueError(
            f"unknown layer parameter(s) {', '.join(unknown)}; choose trainable parameters "
            f"of the model, e.g. {', '.join(list(params)[:3])}"
        )
    return layers


def covariate_shift(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple[torch.Tensor, torch.Tensor],
    before: Mapping[str, torch.Tensor],
    after: Mapping[str, torch.Tensor],
    layers: Mapping[str, str] | None = None,
) -> dict[str, dict[str, float]]:
    """ℓ2 distance (raw and relative to ‖G_i‖) and cosine between G_i and G'_i per layer.

    `before` and `after` are {param_name: tensor} snapshots of every trainable parameter taken
    around one real optimizer step; the model holds `after` when called, and holds it again on
    return (buffers, module modes and RNG states are restored too; no `.grad` is touched).
    `layers` maps a label to the parameter name of the weight W_i whose gradient is compared
    (default: every trainable parameter with at least 2 dimensions, labelled by its name).

    "Layers before i" are all parameters of modules that the forward pass enters before W_i's
    module, found by hooks during the pass that computes G (call order, not registration
    order, so a ResNet shortcut counts where it runs). Parameters of W_i's own module (its bias)
    and of later modules keep their `before` values; a module's own parameters are placed at
    its first call. Norm layers use batch statistics (the model is put in training mode).

    Returns {label: {"l2": ‖G_i − G'_i‖₂, "l2_rel": ‖G_i − G'_i‖₂ / ‖G_i‖₂ (NaN when G_i = 0),
    "cosine": cos(G_i, G'_i)}}.
    Cost: one forward-backward for G, plus one per measured layer.
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    names = list(params)
    _check_snapshot("before", before, names)
    _check_snapshot("after", after, names)
    layers = _measured_layers(params, layers)
    if not layers:
        return {}
    inputs, targets = batch
    weights = [params[w] for w in layers.values()]

    with preserved(model):
        model.train()
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(before[n])

        order: dict[str, int] = {}
        handles = _forward_order_hooks(model, order)
        try:
            loss = loss_fn(model(inputs), targets)
        finally:
            for h in handles:
                h.remove()
        grads_before = dict(
            zip(
                layers,
                torch.autograd.grad(loss, weights, allow_unused=True, materialize_grads=True),
                strict=True,
            )
        )

        # Parameters whose module never ran cannot affect the loss; they sort last.
        never = len(order)
        position = {n: order.get(_owner(n), never) for n in names}
        labels = sorted(layers, key=lambda label: position[layers[label]])

        # Walk the layers in forward order: each step only moves more parameters to `after`.
        pending = sorted(names, key=position.__getitem__)
        shifts = {}
        for label in labels:
            weight_name = layers[label]
            with torch.no_grad():
                while pending and position[pending[0]] < position[weight_name]:
                    n = pending.pop(0)
                    params[n].copy_(after[n])
            loss = loss_fn(model(inputs), targets)
            (grad_shifted,) = torch.autograd.grad(
                loss, [params[weight_name]], allow_unused=True, materialize_grads=True
            )
            g = grads_before[label]
            l2 = (g - grad_shifted).double().norm()
            shifts[label] = torch.stack([l2, _relative(l2, g), _cosine(g, grad_shifted)])

    # One device-to-host transfer once every pass is queued.
    values = torch.stack([shifts[label] for label in layers]).cpu().tolist()
    return {
        label: {"l2": l2, "l2_rel": l2_rel, "cosine": cosine}
        for label, (l2, l2_rel, cosine) in zip(layers, values, strict=True)
    }


@contextmanager
def covariate_shift_around_step(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple[torch.Tensor, torch.Tensor],
    layers: Mapping[str, str] | None = None,
) -> Iterator[dict[str, dict[str, float]]]:
    """`covariate_shift` of the update made inside the block, for a training loop of your own.

        with covariate_shift_around_step(model, loss_fn, (x, y)) as shift:
            optimizer.step()
        shift["conv1.weight"]["cosine"]

    Takes the `before` snapshot of every trainable parameter on entry and the `after` one on
    exit, then fills the yielded dict with `covariate_shift(model, loss_fn, batch, before,
    after, layers)`: empty inside the block, {label: {"l2", "l2_rel", "cosine"}} after it.
    `batch` is the batch the update was computed on (the paper's definition compares gradients
    on that batch). The block may hold the optimizer step alone or forward, backward and step.
    Unknown `layers` are refused on entry, before the step; if the block raises, nothing is
    measured. Leaves no trace, like `covariate_shift`; costs two copies of the parameters plus
    its passes (one forward-backward, and one per measured layer).
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    _measured_layers(params, layers)  # refuse a typo before the user's step, not after it
    before = parameters_dict(model)
    shift: dict[str, dict[str, float]] = {}
    yield shift
    shift.update(covariate_shift(model, loss_fn, batch, before, parameters_dict(model), layers))


# ---- the probe: config key probes.ics, metrics ics/layerK/{l2,l2_rel,cosine}


@dataclass
class IcsSettings:
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # layer #k, 1-based; empty: every layer (one forward-backward each)
    layers: list[int] = field(default_factory=list)


class IcsProbe(Probe):
    """Internal covariate shift around each due update: G_i at θ_t vs G'_i after the update."""

    name = "ics"
    settings_type = IcsSettings
    order = 50
    uses_update = True

    def __init__(self, settings: IcsSettings, context: ProbeContext):
        super().__init__(settings, context)
        refs = select_layers(self.model, list(settings.layers))
        self.weights = {r.name: f"{r.transform_name}.weight" for r in refs}

    @classmethod
    def check(cls, settings, key: str) -> None:
        for layer in settings.layers:
            require_at_least(f"{key}.layers", layer, 1)

    def cost_units(self) -> float:
        return len(self.weights) + 1  # one forward-backward for G, one per measured layer

    def after_update(self, step: int, batch, before: dict | None, after: dict | None) -> dict:
        shift = covariate_shift(self.model, self.loss_fn, batch, before, after, self.weights)
        records = {}
        for layer, values in shift.items():
            records[f"ics/{layer}/l2"] = values["l2"]
            records[f"ics/{layer}/l2_rel"] = values["l2_rel"]
            records[f"ics/{layer}/cosine"] = values["cosine"]
        return records


PROBE = IcsProbe
