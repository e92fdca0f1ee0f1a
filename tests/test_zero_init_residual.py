"""model.zero_init_residual: every ResNet block with a shortcut starts as relu(shortcut(x))."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smoothbench.models import build_model
from smoothbench.models.resnet import BasicBlock


def _blocks(model: nn.Module) -> list[BasicBlock]:
    return [m for m in model.modules() if isinstance(m, BasicBlock)]


@pytest.mark.parametrize("norm", ["none", "batch", "group", "l2"])
@pytest.mark.parametrize("init", ["xavier", "kaiming"])
def test_every_block_with_a_shortcut_starts_as_the_identity(norm, init):
    torch.manual_seed(0)
    model = build_model("resnet20", norm=norm, width=0.25, init=init, zero_init_residual=True)
    blocks = _blocks(model)
    assert len(blocks) == 9 and all(b.shortcut is not None for b in blocks)
    x = torch.randn(4, 3, 32, 32)
    out = torch.relu(model.norm1(model.conv1(x)))
    with torch.no_grad():
        for block in blocks:
            expected = torch.relu(block.shortcut(out))
            got = block(out)
            assert torch.equal(got, expected), block
            assert got.abs().sum() > 0  # the signal goes on through the shortcuts
            out = got
    zeroed = [b.norm2.weight if norm != "none" else b.conv2.weight for b in blocks]
    assert all(p.abs().sum() == 0 for p in zeroed)
    if norm == "none":
        assert all(b.conv2.bias.abs().sum() == 0 for b in blocks)
    # the zeroed layer still learns: its gradient is not zero
    model(x).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in zeroed)


@pytest.mark.parametrize("name", ["resnet20", "vgg11", "dln"])
@pytest.mark.parametrize("norm", ["none", "batch"])
def test_nets_without_shortcuts_are_unchanged(name, norm):
    options = {"shortcut": False} if name == "resnet20" else {}

    def build(zero: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(3)
        model = build_model(name, norm=norm, width=0.25, zero_init_residual=zero, **options)
        return model.state_dict()

    plain, zeroed = build(False), build(True)
    assert plain.keys() == zeroed.keys()
    assert all(torch.equal(plain[k], zeroed[k]) for k in plain)


def test_only_the_last_layer_of_each_branch_changes():
    def build(zero: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(5)
        return build_model("resnet20", norm="batch", width=0.25, zero_init_residual=zero)

    plain, zeroed = build(False).state_dict(), build(True).state_dict()
    changed = sorted(k for k in plain if not torch.equal(plain[k], zeroed[k]))
    assert changed == sorted(f"stage{s}.{b}.norm2.weight" for s in (1, 2, 3) for b in range(3))


def test_zero_init_residual_must_be_a_bool():
    with pytest.raises(ValueError, match="zero_init_residual must be true or false"):
        build_model("resnet20", zero_init_residual="yes")


def test_a_checkpoint_from_before_the_option_still_resumes():
    from smoothbench.config import config_differences, trajectory_config

    old = {"seed": 0, "model": {"name": "resnet20", "shortcut": True}}
    same = {"seed": 0, "model": {"name": "resnet20", "shortcut": True, "zero_init_residual": False}}
    other = {**same, "model": {**same["model"], "zero_init_residual": True}}
    assert config_differences(trajectory_config(old), trajectory_config(same)) == []
    assert config_differences(trajectory_config(old), trajectory_config(other)) == [
        "model.zero_init_residual: False -> True"
    ]


def test_a_run_config_from_before_the_option_still_builds(smoke):
    from omegaconf import OmegaConf

    from smoothbench.build import build_model_from_config

    old = OmegaConf.to_container(smoke("model=resnet20"), resolve=True)
    del old["model"]["zero_init_residual"]
    model = build_model_from_config(OmegaConf.create(old))  # as smoothbench-surface loads it
    assert all(b.norm2.weight.abs().sum() > 0 for b in _blocks(model))
