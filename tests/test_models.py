"""Models: shapes, parameter counts by hand, layer numbering, hooks, structure and init."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from smoothbench.models import (
    INIT_NAMES,
    MODEL_NAMES,
    NORM_NAMES,
    LpNorm,
    NoisyBatchNorm,
    build_model,
    numbered_layers,
)

IMAGE_MODELS = [m for m in MODEL_NAMES if m != "dln"]
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def tiny(name: str, norm: str = "batch", **kwargs) -> nn.Module:
    return build_model(name, norm=norm, width=1 / 16 if name == "vgg19" else 1 / 8, **kwargs)


def sample_input(name: str, n: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    shape = (4 * n, 10) if name == "dln" else (n, 3, 32, 32)
    return torch.randn(shape, generator=gen)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("norm", NORM_NAMES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_and_norm_runs_forward_and_backward(name, norm):
    torch.manual_seed(0)
    model = tiny(name, norm)
    x = sample_input(name)
    out = model(x)
    assert out.shape == ((x.shape[0], 10) if name == "dln" else (2, 10))
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("norm", ["none", "batch", "noisy_batch", "l2"])
def test_noshort_resnet_runs(norm):
    torch.manual_seed(0)
    model = tiny("resnet20", norm, shortcut=False, num_classes=7)
    out = model(sample_input("resnet20"))
    assert out.shape == (2, 7)
    out.sum().backward()


def test_vgg16_bn_parameter_count_by_hand():
    conv_weights, norm_affine, conv_biases, c_in = 0, 0, 0, 3
    for c in VGG16:
        if c == "M":
            continue
        conv_weights += 3 * 3 * c_in * c
        norm_affine += 2 * c
        conv_biases += c
        c_in = c
    classifier = 512 * 10 + 10
    # The usual CIFAR VGG-16-BN count (14,728,266) keeps the conv biases in front of BN; ours
    # drops them, as they are redundant there.
    assert conv_weights + norm_affine + conv_biases + classifier == 14_728_266
    assert n_params(build_model("vgg16", norm="batch")) == 14_728_266 - conv_biases
    assert n_params(build_model("vgg16", norm="none")) == conv_weights + conv_biases + classifier


def resnet_cifar_count(n_blocks: int, projection: bool, widths=(16, 32, 64), classes=10) -> int:
    """BN ResNet parameter count, block by block; conv weights and 2 BN params per channel."""
    total = 3 * 3 * 3 * widths[0] + 2 * widths[0]
    c_in = widths[0]
    for c in widths:
        for _ in range(n_blocks):
            total += 9 * c_in * c + 2 * c + 9 * c * c + 2 * c
            if c_in != c and projection:
                total += c_in * c + 2 * c
            c_in = c
    return total + widths[-1] * classes + classes


def test_resnet_parameter_counts_by_hand():
    # He et al.'s option-A ResNet-20 (zero-padding shortcut) has the well-known 269,722.
    assert resnet_cifar_count(3, projection=False) == 269_722
    for name, n in [("resnet20", 3), ("resnet56", 9)]:
        assert n_params(build_model(name)) == resnet_cifar_count(n, projection=True)
        assert n_params(build_model(name, shortcut=False)) == resnet_cifar_count(n, False)
    assert n_params(build_model("resnet18")) == 11_173_962  # CIFAR ResNet-18, the usual count


def test_width_scales_channels_and_never_reaches_zero():
    first = numbered_layers(build_model("vgg11", width=0.5))[0]
    assert first.norm.num_features == 32
    model = build_model("vgg11", width=0.001)
    assert all(r.norm.num_features == 1 for r in numbered_layers(model))
    assert model.classifier.in_features == 1


@pytest.mark.parametrize(
    "name, count",
    [("vgg11", 8), ("vgg13", 10), ("vgg16", 13), ("vgg19", 16), ("resnet20", 19),
     ("resnet32", 31), ("resnet56", 55), ("resnet110", 109), ("resnet18", 17), ("dln", 25)],
)  # fmt: skip
def test_numbered_layer_counts(name, count):
    refs = numbered_layers(tiny(name))
    assert [r.index for r in refs] == list(range(1, count + 1))
    assert [r.name for r in refs] == [f"layer{k}" for k in range(1, count + 1)]


def test_numbered_layers_point_at_transform_and_norm():
    model = build_model("vgg16", width=1 / 8)
    params = dict(model.named_parameters())
    channels = [c for c in VGG16 if c != "M"]
    for ref, c in zip(numbered_layers(model), channels, strict=True):
        weight = params[f"{ref.transform_name}.weight"]
        assert weight.shape[0] == c // 8 and weight.shape[2:] == (3, 3)
        assert isinstance(ref.norm, nn.BatchNorm2d) and ref.norm.num_features == c // 8
        assert model.get_submodule(ref.norm_name) is ref.norm
    resnet = numbered_layers(tiny("resnet20"))
    assert all("shortcut" not in r.transform_name for r in resnet)
    assert all(resnet[0].norm is not r.norm for r in resnet[1:])
    dln = numbered_layers(build_model("dln", norm="batch"))
    assert all(isinstance(r.norm, nn.BatchNorm1d) for r in dln[:-1])
    assert isinstance(dln[-1].norm, nn.Identity)


@pytest.mark.parametrize("name", ["vgg11", "resnet20", "resnet18", "dln"])
@pytest.mark.parametrize("norm", ["none", "batch"])
def test_hooks_fire_in_order_and_see_pre_relu_values(name, norm):
    torch.manual_seed(0)
    model = tiny(name, norm)
    seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    for ref in numbered_layers(model):
        ref.norm.register_forward_hook(
            lambda mod, inp, out, k=ref.index: seen.append((k, out, out.detach().clone()))
        )
    model(sample_input(name))
    assert [k for k, _, _ in seen] == list(range(1, len(seen) + 1))
    # Nothing later in the forward (ReLU, residual add) may alter the hooked tensors in place.
    assert all(torch.equal(out, snapshot) for _, out, snapshot in seen)
    if name != "dln":
        assert all((out < 0).any() for _, out, _ in seen), "hook sees post-ReLU values"


def test_conv_bias_only_without_norm():
    for name in ["vgg11", "resnet20"]:
        convs = lambda m: [c for c in m.modules() if isinstance(c, nn.Conv2d)]  # noqa: E731
        for norm in ("none", "noise"):  # standard nets (the noise alone included)
            assert all(c.bias is not None for c in convs(tiny(name, norm)))
        for norm in (n for n in NORM_NAMES if n not in ("none", "noise")):
            assert all(c.bias is None for c in convs(tiny(name, norm)))
    assert all(lin.bias is None for lin in build_model("dln", norm="none").linears)


def test_dln_without_norm_is_the_matrix_product():
    torch.manual_seed(0)
    model = build_model("dln", norm="none", depth=7, dim=5)
    x = torch.randn(6, 5, dtype=torch.float64)
    product = torch.eye(5, dtype=torch.float64)
    for k in range(7):
        product = model.linears[k].weight.detach().double() @ product
    assert torch.allclose(model.double()(x), x @ product.T, atol=1e-12)


def test_resnet_blocks_by_hand():
    torch.manual_seed(0)
    model = build_model("resnet20", norm="none", width=0.25).eval()
    x = torch.randn(2, 4, 8, 8)

    def conv(layer: nn.Conv2d, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, layer.weight, layer.bias, layer.stride, layer.padding)

    def main_path(block: nn.Module, t: torch.Tensor) -> torch.Tensor:
        return conv(block.conv2, conv(block.conv1, t).relu())

    block = model.stage1[0]  # same shape: identity shortcut
    with torch.no_grad():
        nn.init.normal_(block.conv1.bias)
        assert torch.allclose(block(x), (main_path(block, x) + x).relu(), atol=1e-6)
        block = model.stage2[0]  # stride 2, 4 -> 8 channels: 1x1 projection shortcut
        projection = conv(block.shortcut[0], x)
        assert projection.shape == (2, 8, 4, 4)
        assert torch.allclose(block(x), (main_path(block, x) + projection).relu(), atol=1e-6)
        noshort = build_model("resnet20", norm="none", width=0.25, shortcut=False).stage2[0]
        assert torch.allclose(noshort(x), main_path(noshort, x).relu(), atol=1e-6)
    assert not any("shortcut" in n for n, _ in noshort.named_parameters())


def test_norm_kinds_per_name():
    model = build_model("vgg11", norm="group", width=0.75, groups=32)  # 48 channels first
    first = numbered_layers(model)[0].norm
    assert isinstance(first, nn.GroupNorm) and (first.num_channels, first.num_groups) == (48, 24)
    layer = numbered_layers(tiny("vgg11", "layer"))[0].norm
    assert isinstance(layer, nn.GroupNorm) and layer.num_groups == 1
    assert isinstance(numbered_layers(build_model("dln", norm="layer"))[0].norm, nn.LayerNorm)
    # A linear group of one unit would always output β: the DLN's 10 units form 5 groups.
    assert numbered_layers(build_model("dln", norm="group"))[0].norm.num_groups == 5
    assert isinstance(numbered_layers(tiny("vgg11", "linf"))[0].norm, LpNorm)
    assert isinstance(numbered_layers(tiny("vgg11", "noisy_batch"))[0].norm, NoisyBatchNorm)
    bn = numbered_layers(tiny("vgg11", eps=1e-3, momentum=0.2))[0].norm
    assert (bn.eps, bn.momentum) == (1e-3, 0.2)


def glorot_bound(weight: torch.Tensor) -> float:
    receptive = weight[0, 0].numel()
    return math.sqrt(6 / ((weight.shape[0] + weight.shape[1]) * receptive))


def test_xavier_init_is_glorot_uniform_with_zero_biases():
    torch.manual_seed(0)
    model = build_model("vgg11", norm="none", width=0.5)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            bound = glorot_bound(module.weight)
            assert module.weight.abs().max() <= bound
            if module.weight.numel() > 10_000:  # U(-a, a) has variance a²/3
                assert module.weight.var().item() == pytest.approx(bound**2 / 3, rel=0.05)
            assert torch.count_nonzero(module.bias) == 0
    dln = build_model("dln")
    assert all(lin.weight.abs().max() <= math.sqrt(6 / 20) for lin in dln.linears)


def test_kaiming_and_torch_inits_differ_from_xavier():
    torch.manual_seed(0)
    model = build_model("vgg11", norm="none", init="kaiming")
    weight = model.get_submodule(numbered_layers(model)[5].transform_name).weight  # 256 -> 512
    fan_in = weight[0].numel()
    assert weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    first = build_model("vgg11", norm="none", init="torch", width=0.25).features[0].conv
    assert torch.count_nonzero(first.bias) > 0  # torch's default bias init, untouched


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "vgg17"}, "unknown model 'vgg17'; choose one of: vgg11, vgg13"),
        ({"name": "vgg11", "norm": "bn2"}, "unknown norm 'bn2'; choose one of: none, batch"),
        ({"name": "vgg11", "init": "he"}, "unknown init 'he'; choose one of: xavier, kaiming"),
        ({"name": "vgg11", "width": 0}, "width must be a finite number > 0, got 0"),
        ({"name": "vgg11", "width": -0.5}, "width must be a finite number > 0, got -0.5"),
        ({"name": "dln", "depth": 0}, "depth must be >= 1, got 0"),
        ({"name": "vgg11", "noise": {"n_m": 1}}, "unknown noise setting 'n_m'; choose from"),
        ({"name": "vgg11", "noise": {"n_sigma": 0.5}}, "n_sigma must be >= 1.0"),
    ],
)
def test_bad_arguments_raise_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        build_model(**kwargs)
    assert "\n" not in str(info.value)


def test_name_lists_are_complete():
    assert len(MODEL_NAMES) == 10 and len(NORM_NAMES) == 9
    assert INIT_NAMES == ("xavier", "kaiming", "torch")
