"""Loss surfaces on a grid around a trained model (Li et al. 2018, "Visualizing the Loss
Landscape"), computed after training by `smoothbench-surface`. Not a probe: the in-training
measurement along the gradient is the `landscape` probe (`probes/landscape.py`).

Three pure functions:
- `filter_normalized_direction`: a random Gaussian direction whose every filter (conv) or neuron
  (linear) has the norm of the same filter of θ, so the plot's scale is comparable across nets
  whose weights differ in scale (BN nets are invariant to that scale);
- `loss_surface`: loss and accuracy on a fixed data set at θ + α·d₁ (+ β·d₂) over a 1-D or 2-D
  grid;
- `interpolate_checkpoints`: loss and accuracy along θ(α) = (1−α)·θ_a + α·θ_b.

The norm mode is a setting, never implicit: with stored running statistics (`bn_mode="eval"`,
what Li et al. do) a BN net's surface can span three orders of magnitude more loss than with
batch statistics (`"train"`), because moving θ invalidates the stored statistics.

Directions are per-parameter dicts `{param_name: tensor}`; buffers never appear in them.
Every function leaves parameters, buffers, module modes and RNG states as it found them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from smoothbench.preserve import preserved

Direction = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BN_MODES = ("eval", "train")


def _filter_weights(model: nn.Module) -> set[str]:
    """Names of the conv and linear weights: the ones normalized filter by filter."""
    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd | nn.Linear | nn.Bilinear):
            prefix = f"{module_name}." if module_name else ""
            names.add(f"{prefix}weight")
    return names


def filter_normalized_direction(model: nn.Module, generator: torch.Generator) -> Direction:
    """A filter-normalized Gaussian direction in parameter space (Li et al. 2018, §4).

    Each dim-0 slice (a conv filter, a linear layer's neuron) of a Gaussian draw is rescaled to
    the Frobenius norm of the same slice of the parameter. Biases, norm-layer γ/β and every other
    parameter with at most one non-singleton dimension get a zero direction (Li et al.'s
    "ignore biasbn"); other multi-dimensional parameters are normalized per dim-0 slice too.
    Frozen parameters (`requires_grad=False`) get zeros. Buffers are not in the result.

    The draw is made on `generator`'s device and then moved to each parameter's device, so a CPU
    generator gives the same direction on any device. Returns `{param_name: tensor}` covering
    every named parameter, each shaped and typed like it.
    """
    filter_weights = _filter_weights(model)
    direction = {}
    for name, param in model.named_parameters():
        theta = param.detach()
        non_singleton = sum(size > 1 for size in theta.shape)
        if not param.requires_grad or (name not in filter_weights and non_singleton <= 1):
            direction[name] = torch.zeros_like(theta)
            continue
        draw = torch.randn(
            theta.shape, generator=generator, device=generator.device, dtype=theta.dtype
        ).to(theta.device)
        # Norm of every dim-0 slice, kept broadcastable against the slice.
        dims = tuple(range(1, theta.dim()))
        theta_norm = torch.linalg.vector_norm(theta, dim=dims, keepdim=True)
        draw_norm = torch.linalg.vector_norm(draw, dim=dims, keepdim=True)
        # A zero filter of θ stays unperturbed; the tiny floor only guards 0/0.
        direction[name] = draw * (theta_norm / draw_norm.clamp_min(1e-12))
    return direction


def _check_bn_mode(bn_mode: str) -> None:
    if bn_mode not in BN_MODES:
        raise ValueError(f"unknown bn_mode {bn_mode!r}; choose one of: {', '.join(BN_MODES)}")


def _check_direction(model: nn.Module, direction: Mapping[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, d in direction.items():
        if name not in params:
            raise ValueError(f"direction has {name!r}, which is not a parameter of the model")
        if d.shape != params[name].shape:
            raise ValueError(
                f"direction for {name!r} has shape {tuple(d.shape)}; "
                f"the parameter has {tuple(params[name].shape)}"
            )


def _set_norm_mode(model: nn.Module, bn_mode: str) -> None:
    # "train" uses each chunk's batch statistics; the running statistics it updates on the way
    # do not enter train-mode outputs and are put back by `preserved` on exit.
    model.train(bn_mode == "train")


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


@torch.no_grad()
def _evaluate(
    model: nn.Module,
    loss_fn: LossFn,
    data: tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
) -> tuple[float, float | None]:
    """Mean loss and accuracy over all of `data`, in chunks; accuracy is None without labels."""
    inputs, targets = data
    n = len(inputs)
    if n == 0:
        raise ValueError("data is empty; a surface needs at least one example")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    device = _model_device(model)
    loss_sum, correct, has_labels = 0.0, 0, True
    for start in range(0, n, batch_size):
        x = inputs[start : start + batch_size].to(device)
        y = targets[start : start + batch_size].to(device)
        outputs = model(x)
        # loss_fn gives the chunk's mean; weighting by chunk size makes the total a mean over n.
        loss_sum += float(loss_fn(outputs, y)) * len(x)
        is_classification = outputs.dim() == 2 and y.dim() == 1 and not y.is_floating_point()
        has_labels = has_labels and is_classification
        if has_labels:
            correct += int((outputs.argmax(dim=1) == y).sum())
    return loss_sum / n, (correct / n if has_labels else None)


def _as_directions(directions: Mapping | Sequence) -> list[Mapping[str, torch.Tensor]]:
    if isinstance(directions, Mapping):
        return [directions]
    directions = list(directions)
    if len(directions) not in (1, 2) or not all(isinstance(d, Mapping) for d in directions):
        raise ValueError(
            "directions must be one {param_name: tensor} dict (1-D) or a pair of them (2-D), "
            f"got {len(directions)} items"
        )
    return directions


def _as_axes(coords, n_axes: int) -> list[np.ndarray]:
    if n_axes == 1:
        axes = [np.asarray(coords, dtype=np.float64)]
    else:
        if len(coords) != 2:
            raise ValueError(f"a 2-D surface needs coords=(alphas, betas), got {len(coords)} items")
        axes = [np.asarray(c, dtype=np.float64) for c in coords]
    for axis in axes:
        if axis.ndim != 1 or axis.size == 0:
            raise ValueError(
                f"each coordinate axis must be a non-empty 1-D array, got shape {axis.shape}"
            )
    return axes


def loss_surface(
    model: nn.Module,
    loss_fn: LossFn,
    data: tuple[torch.Tensor, torch.Tensor],
    directions: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]],
    coords,
    bn_mode: str = "eval",
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Loss and accuracy at θ + α·d₁ (1-D) or θ + α·d₁ + β·d₂ (2-D) over a grid of coordinates.

    `directions`: one `{param_name: tensor}` dict, or a pair of them; parameters a direction
    leaves out are not moved. `coords`: a 1-D array of α for one direction, or `(alphas, betas)`
    for two. `data`: `(inputs, targets)`, evaluated in chunks of `batch_size` and moved to the
    model's device chunk by chunk. `bn_mode="eval"`: norm layers use their stored running
    statistics (Li et al.); `"train"`: the whole model in training mode, so each chunk's batch
    statistics (a short last chunk gets its own), running statistics left unchanged; noisy BN then
    adds the noise of its current noise step. Loss and accuracy are means over all examples.

    Returns `(losses, accs)` as float64 arrays of shape `(len(alphas),)` or
    `(len(alphas), len(betas))` with `losses[i, j]` at `(alphas[i], betas[j])`; `accs` is None
    when the targets are not class labels. Non-finite losses are kept as they come.
    """
    _check_bn_mode(bn_mode)
    directions = _as_directions(directions)
    axes = _as_axes(coords, len(directions))
    for d in directions:
        _check_direction(model, d)
    params = dict(model.named_parameters())
    moved = sorted(set().union(*directions))
    shape = tuple(len(axis) for axis in axes)
    losses = np.empty(shape)
    accs = np.empty(shape)
    has_labels = True
    with preserved(model):
        theta = {n: params[n].detach().clone() for n in moved}
        _set_norm_mode(model, bn_mode)
        for index in np.ndindex(*shape):
            point = [axis[i] for axis, i in zip(axes, index, strict=True)]
            with torch.no_grad():
                for name in moved:
                    # From θ each time, so no rounding accumulates across grid points.
                    value = theta[name].clone()
                    for coordinate, d in zip(point, directions, strict=True):
                        if name in d:
                            value.add_(d[name].to(value), alpha=float(coordinate))
                    params[name].copy_(value)
            losses[index], acc = _evaluate(model, loss_fn, data, batch_size)
            has_labels = has_labels and acc is not None
            accs[index] = acc if acc is not None else np.nan
    return losses, (accs if has_labels else None)


def _interpolated_state(
    state_a: Mapping[str, torch.Tensor],
    state_b: Mapping[str, torch.Tensor],
    alpha: float,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    state = {}
    for key, a in state_a.items():
        a = a.to(device)
        if a.is_floating_point():
            # torch.lerp is exact at both ends: α=0 gives θ_a and α=1 gives θ_b bit for bit.
            state[key] = torch.lerp(a, state_b[key].to(a), alpha)
        else:
            state[key] = a
    return state


def interpolate_checkpoints(
    model: nn.Module,
    loss_fn: LossFn,
    data: tuple[torch.Tensor, torch.Tensor],
    state_a: Mapping[str, torch.Tensor],
    state_b: Mapping[str, torch.Tensor],
    alphas,
    bn_mode: str = "eval",
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Loss and accuracy along the line θ(α) = (1−α)·θ_a + α·θ_b between two checkpoints.

    `state_a`, `state_b`: full state dicts of `model`'s architecture. Floating-point buffers
    (BN running mean and variance) are interpolated with the same α as the parameters, so each
    endpoint is exactly its checkpoint, eval-mode statistics included; integer buffers
    (`num_batches_tracked`) come from `state_a`, as they do not enter the output. Extrapolating
    (α outside [0, 1]) can make an interpolated running variance negative, and the loss NaN.
    `bn_mode`, `data` and `batch_size` as in `loss_surface`. Returns float64 `(losses, accs)` of
    shape `(len(alphas),)`; `accs` is None when the targets are not class labels.
    """
    _check_bn_mode(bn_mode)
    (alphas,) = _as_axes(alphas, 1)
    own_keys = set(model.state_dict())
    for label, state in (("state_a", state_a), ("state_b", state_b)):
        if set(state) != own_keys:
            missing, extra = sorted(own_keys - set(state)), sorted(set(state) - own_keys)
            raise ValueError(
                f"{label} does not match the model: missing {missing[:3]}, unexpected {extra[:3]}"
            )
    device = _model_device(model)
    losses = np.empty(len(alphas))
    accs = np.empty(len(alphas))
    has_labels = True
    with preserved(model):
        _set_norm_mode(model, bn_mode)
        for i, alpha in enumerate(alphas):
            model.load_state_dict(_interpolated_state(state_a, state_b, float(alpha), device))
            losses[i], acc = _evaluate(model, loss_fn, data, batch_size)
            has_labels = has_labels and acc is not None
            accs[i] = acc if acc is not None else np.nan
    return losses, (accs if has_labels else None)
