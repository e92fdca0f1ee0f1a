"""Models of smoothbench (docs/science.md §2-3): `build_model` and the numbering of their layers.

model = build_model("vgg16", norm="batch", width=0.5)
for ref in numbered_layers(model):   # layer #1, #2, ... from the input
    ref.norm.register_forward_hook(...)   # pre-ReLU activations after norm and noise
    ref.output.register_forward_hook(...)   # the next layer's input (after the ReLU)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from torch import nn

from smoothbench.models.custom import inferred_layers
from smoothbench.models.init import INIT_NAMES, initialize, zero_residual_branches
from smoothbench.models.linear import DeepLinearNetwork
from smoothbench.models.norms import (
    NOISE_DEFAULTS,
    NORM_NAMES,
    NORMS,
    LpNorm,
    NoisyBatchNorm,
    NormInfo,
    StepNoise,
    assign_noise_ids,
    make_norm,
    resolve_noise,
    set_noise_step,
)
from smoothbench.models.resnet import RESNET_SPECS, ResNet
from smoothbench.models.vgg import POOL, VGG, VGG_CONFIGS

MODEL_NAMES = ("vgg11", "vgg13", "vgg16", "vgg19", "resnet20", "resnet32", "resnet56",
               "resnet110", "resnet18", "dln")  # fmt: skip

__all__ = [
    "INIT_NAMES",
    "MODEL_NAMES",
    "NOISE_DEFAULTS",
    "NORM_NAMES",
    "NORMS",
    "LayerRef",
    "LpNorm",
    "NoisyBatchNorm",
    "NormInfo",
    "StepNoise",
    "build_model",
    "make_norm",
    "norm_factory",
    "numbered_layers",
    "set_noise_step",
]


def _check_choice(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; choose one of: {', '.join(allowed)}")


def scaled_channels(channels: int, width: float) -> int:
    """A channel count times the width multiplier, rounded, at least 1."""
    return max(1, round(channels * width))


def build_model(
    name: str,
    norm: str | Callable[[int], nn.Module] = "batch",
    num_classes: int = 10,
    width: float = 1.0,
    *,
    init: str = "xavier",
    shortcut: bool = True,
    zero_init_residual: bool = False,
    depth: int = 25,
    dim: int = 10,
    eps: float = 1e-5,
    momentum: float = 0.1,
    groups: int = 32,
    noise: Mapping | None = None,
    noise_seed: int = 0,
) -> nn.Module:
    """Build model `name` with normalization `norm` after every numbered layer.

    Image models take (N, 3, 32, 32) and return (N, num_classes) logits; `width` multiplies every
    channel count. The DLN ("dln": `depth` Linear(dim -> dim) layers) maps (N, dim) -> (N, dim)
    and ignores num_classes and width. `shortcut` applies to ResNets only, and so does
    `zero_init_residual` (every residual block with a shortcut starts as the identity: see
    `zero_residual_branches`). eps and momentum go to every batch-statistics norm
    (momentum: r <- (1 - momentum) r + momentum * stat), `groups` caps
    the GroupNorm group count, `noise` overrides Algorithm 1's settings (NOISE_DEFAULTS) and
    `noise_seed` fixes its draws (see NoisyBatchNorm). `init`: xavier (the paper's), kaiming,
    or torch (its defaults). Initialization draws from the global torch RNG. `norm` may also be
    a callable `num_features -> nn.Module` (norm=custom); eps, momentum, groups and noise do not
    reach it, and the convs keep their biases.
    """
    _check_choice("model", name, MODEL_NAMES)
    if not callable(norm):
        _check_choice("norm", norm, NORM_NAMES)
    _check_choice("init", init, INIT_NAMES)
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
        raise ValueError(f"width must be a finite number > 0, got {width!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if not 0 <= momentum <= 1:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups!r}")
    if not isinstance(zero_init_residual, bool):
        raise ValueError(f"zero_init_residual must be true or false, got {zero_init_residual!r}")
    norm_options = {
        "eps": eps,
        "momentum": momentum,
        "groups": groups,
        "noise": resolve_noise(noise),
    }
    # A conv bias in front of a norm that subtracts a per-channel mean is exactly cancelled (β
    # takes its role); layer/group norms do not cancel it exactly but carry their own β. So
    # only the un-normalized nets (noise alone included) keep their conv biases, and so do nets
    # with a custom norm, which may not subtract a mean.
    conv_bias = callable(norm) or norm in ("none", "noise")

    if name == "dln":
        model: nn.Module = DeepLinearNetwork(
            depth, dim, norm_factory(norm, spatial=False, **norm_options)
        )
    else:
        conv_norm = norm_factory(norm, spatial=True, **norm_options)
        if name in VGG_CONFIGS:
            config = [c if c == POOL else scaled_channels(c, width) for c in VGG_CONFIGS[name]]
            model = VGG(config, conv_norm, num_classes, conv_bias=conv_bias)
        else:
            stem, stages, blocks = RESNET_SPECS[name]
            model = ResNet(
                scaled_channels(stem, width),
                [scaled_channels(c, width) for c in stages],
                blocks,
                conv_norm,
                num_classes,
                conv_bias=conv_bias,
                shortcut=shortcut,
            )
    initialize(model, init)
    if zero_init_residual:
        zero_residual_branches(model)
    assign_noise_ids(model, noise_seed)
    return model


def norm_factory(
    norm: str | Callable[[int], nn.Module], *, spatial: bool = True, **options
) -> Callable[[int], nn.Module]:
    """`num_features -> module`: `make_norm(norm, spatial=spatial, **options)` for a named norm
    (`options`: eps, momentum, groups, noise), or the callable `norm` itself."""
    if callable(norm):
        return norm
    if "noise" in options:
        options = {**options, "noise": resolve_noise(options["noise"])}
    return partial(make_norm, norm, spatial=spatial, **options)


@dataclass(frozen=True)
class LayerRef:
    """Layer #index of a model (docs/science.md §2: counted from 1 at the input).

    `transform_name` is the conv/linear module (its weight: f"{transform_name}.weight");
    `norm_name`/`norm` the norm module after it (its output: after norm and noise, before the
    ReLU); an nn.Identity where there is no norm. `output_name`/`output` is the module whose
    output is what the next layer consumes (after norm, noise and the ReLU; in a ResNet block's
    second layer, after the shortcut sum too; in the DLN, the norm itself); each is called once
    per forward pass.
    """

    index: int
    name: str
    transform_name: str
    norm_name: str
    norm: nn.Module = field(repr=False, compare=False)
    output_name: str
    output: nn.Module = field(repr=False, compare=False)


def numbered_layers(model: nn.Module) -> list[LayerRef]:
    """The numbered layers of a model, from the input on.

    A model numbers its own with `layer_pairs()` ((transform, norm) names) and `layer_outputs()`
    (the modules whose outputs the next layers consume), as every `build_model` net does. Any
    other model gets `models.custom.inferred_layers`' pairs (each Conv/Linear with the norm
    right after it in `named_modules()` order); without `layer_outputs()` a layer's output is
    its norm's (before the nonlinearity: foreign models often share one in-place ReLU).
    """
    layer_pairs = getattr(model, "layer_pairs", None)
    pairs = layer_pairs() if layer_pairs is not None else inferred_layers(model)
    layer_outputs = getattr(model, "layer_outputs", None)
    outputs = layer_outputs() if layer_outputs is not None else [norm for _, norm in pairs]
    refs = []
    layers = zip(pairs, outputs, strict=True)
    for index, ((transform_name, norm_name), output_name) in enumerate(layers, start=1):
        model.get_submodule(transform_name)  # fails loudly if the structure and names disagree
        refs.append(
            LayerRef(
                index=index,
                name=f"layer{index}",
                transform_name=transform_name,
                norm_name=norm_name,
                norm=model.get_submodule(norm_name),
                output_name=output_name,
                output=model.get_submodule(output_name),
            )
        )
    return refs
