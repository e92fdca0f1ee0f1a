"""The command line wins over a preset: every preset, at every scale, takes a group choice
(`model=`, `norm=`, `data=`, `optim=`, `probes=`) or a value (`steps=`, `seed=`) given on the
command line as it is, or refuses it in one line with exit 2; it never silently runs its own."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from conftest import CONF_DIR, cli, compose_config
from omegaconf import OmegaConf

from smoothbench.config import ConfigError, validate

PRESETS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
SCALES = ("smoke", "cpu", "paper")
GROUPS = ("model", "norm", "data", "optim", "probes")
# Two sets of command-line choices, each composed at once with every preset (a group's keys
# never depend on another group's choice). Every group choice differs from what some preset
# chooses, and the first set's from what any preset chooses.
COMMAND_LINES = {
    "resnet32-layer-cifar100-adam-full": {
        "model": "resnet32",
        "norm": "layer",
        "data": "cifar100",
        "optim": "adam",
        "probes": "full",
        "steps": 7,
        "seed": 11,
    },
    "vgg13-l1-digits-sgd-off": {
        "model": "vgg13",
        "norm": "l1",
        "data": "digits",
        "optim": "sgd",
        "probes": "off",
        "steps": 5,
        "seed": 3,
    },
}


def _overrides(command_line: dict[str, Any]) -> list[str]:
    return [f"{key}={value}" for key, value in command_line.items()]


@functools.cache
def _bare(name: str, scale: str) -> dict[str, Any]:
    """The same choices without a preset: what each group option gives on its own."""
    cfg = compose_config(f"scale={scale}", *_overrides(COMMAND_LINES[name]))
    return OmegaConf.to_container(cfg)


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of every leaf of a nested dict (lists are leaves)."""
    if not isinstance(node, dict):
        return {prefix: node}
    found = {}
    for key, value in node.items():
        found.update(_leaves(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return found


@functools.cache
def _option_keys(group: str) -> frozenset[str]:
    """The keys that some option of `group` sets (conf/<group>/**.yaml). The others are never
    a group choice's to set: the preset's budget for its net at this scale (`model.width`,
    `data.augment`, `probes.activations.layers`), which stays on top of any choice."""
    keys: set[str] = set()
    for path in (Path(CONF_DIR) / group).rglob("*.yaml"):
        option = OmegaConf.to_container(OmegaConf.load(path))
        option.pop("defaults", None)
        keys.update(_leaves(option))
    return frozenset(keys)


def _not_shown(cfg: Any, bare: dict[str, Any], group: str) -> list[str]:
    """The keys of `group` where the preset's value replaced the command line's choice."""
    composed = _leaves(OmegaConf.to_container(cfg[group]))
    expected = _leaves(bare[group])
    return [
        f"{group}.{key}: {composed.get(key)!r} instead of {expected[key]!r}"
        for key in sorted(_option_keys(group) & set(expected))
        if composed.get(key) != expected[key]
    ]


def _refusal(cfg: Any) -> str | None:
    """The one-line message of `validate`'s refusal, or None where it accepts the config."""
    try:
        validate(cfg)
    except ConfigError as err:
        return str(err)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMAND_LINES)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_takes_the_command_line_or_refuses_it(preset, scale, name):
    command_line = COMMAND_LINES[name]
    cfg = compose_config(f"experiment={preset}", f"scale={scale}", *_overrides(command_line))
    bare = _bare(name, scale)
    for key in ("steps", "seed"):
        assert cfg[key] == command_line[key], f"{key}={command_line[key]} became {cfg[key]}"
    for group in GROUPS:
        ignored = _not_shown(cfg, bare, group)
        if ignored:  # allowed only as a refusal: one line that names the choice
            choice = f"{group}={command_line[group]}"
            message = _refusal(cfg)
            assert message is not None, f"experiment={preset} scale={scale} ignored {ignored}"
            assert choice in message and "\n" not in message, message


def test_the_check_sees_a_preset_value_that_overrides_a_choice():
    # what a preset body did before the presets were restructured: fig4's cpu regime set
    # model.name: vgg11 on top of any model= choice
    name = "resnet32-layer-cifar100-adam-full"
    cfg = compose_config("scale=cpu", *_overrides(COMMAND_LINES[name]), "model.name=vgg11")
    bare = _bare(name, "cpu")
    assert _not_shown(cfg, bare, "model") == ["model.name: 'vgg11' instead of 'resnet32'"]
    assert [line for group in GROUPS[1:] for line in _not_shown(cfg, bare, group)] == []


def test_the_budget_of_the_net_stays_on_top_of_a_model_choice():
    cfg = compose_config("experiment=fig4", "scale=cpu", "model=vgg16")
    assert (cfg.model.name, cfg.model.width, cfg.steps) == ("vgg16", 0.125, 1000)


@pytest.mark.parametrize("preset", ["hessian", "surfaces"])
def test_a_resnet_preset_refuses_another_net_in_one_line(preset):
    cfg = compose_config(f"experiment={preset}", "scale=smoke", "model=vgg13")
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert f"experiment={preset}" in message and "model=vgg13" in message
    assert "resnet20" in message and "resnet56" in message  # what is allowed


@pytest.mark.slow
def test_a_refused_choice_exits_2_with_one_line(tmp_path):
    proc = cli("experiment=surfaces", "scale=smoke", "model=vgg13", f"hydra.run.dir={tmp_path}/r")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("smoothbench-train: error: experiment=surfaces compares ResNets")
    assert "model=vgg13" in line
    assert not (tmp_path / "r").exists()
