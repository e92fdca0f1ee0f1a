"""What every probe is: a name, a settings dataclass (its config schema) and a `Probe` class.

A probe module exposes `PROBE`, a subclass of `Probe`. The registry (`probes.registry`) finds
every such module in this package, so adding a probe is its module, its YAML default under
`conf/probes/` and its test (see docs/adding-a-probe.md).

The runner calls, for each probe whose schedule is due at step t:
  measure(t, batch)                       at θ_t, before the update (a dict of metric records)
  before_update(t, batch)                 right before the optimizer step
  after_update(t, batch, before, after)   right after it; `before`/`after` are the trainable
                                          parameters around the update, given only to probes
                                          with `uses_update = True`
Every hook leaves the model, its buffers, modes and every RNG as it found them
(`smoothbench.preserve.preserved`): a run with probes on is bitwise the run with them off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, get_type_hints

import torch
from torch import nn

from smoothbench.models import numbered_layers

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class ScheduleConfig:
    """When a probe runs: every N steps, log-spaced, or an explicit list of steps."""

    kind: str = "off"  # off | every | log | list
    every: int = 100  # every: period in steps (step 0 included)
    num: int = 20  # log: how many log-spaced steps over the run
    steps: list[int] = field(default_factory=list)  # list: exact steps
    final: bool = True  # also run at the last step


@dataclass
class ProbeContext:
    """What a probe may need from the run besides its own settings."""

    model: nn.Module
    loss_fn: Any  # (outputs, targets) -> scalar loss
    seed: int = 0
    lr: float = 0.1  # the configured base learning rate
    total_steps: int = 1
    batch_size: int = 128  # the training batch (the examples of one step)
    model_name: str = ""
    data: Any = None  # smoothbench.data.InMemoryData, for probes with a batch of their own


class Probe:
    """One measurement run on a schedule. Subclasses set the class attributes below."""

    name: ClassVar[str]  # config key probes.<name>, metric prefix <name>/, docs
    settings_type: ClassVar[type]  # a dataclass with a `schedule: ScheduleConfig` field
    # where its keys go in a metrics row, among the probes (rows stay byte-stable)
    order: ClassVar[int] = 100
    uses_update: ClassVar[bool] = False  # after_update needs the parameters around the update
    # Under a run budget (probes.max_fraction, probes/budget.py) a probe either has a fixed cost
    # per measurement (`cost_units`) or takes what the others leave (the Hessian: it then
    # defines `budget_ask` and `apply_grant`)
    takes_remainder: ClassVar[bool] = False

    def __init__(self, settings: Any, context: ProbeContext):
        self.settings = settings
        self.context = context
        self.model = context.model
        self.loss_fn = context.loss_fn

    @classmethod
    def check(cls, settings: Any, key: str) -> None:
        """Raise ValueError (one line naming `key`.field) for a bad setting; `settings` may be
        the config node. The schedule is checked by the caller."""

    @property
    def prefix(self) -> str:
        """The metric prefix: the probe's name."""
        return self.name

    def has_work(self) -> bool:
        """False when there is nothing to measure on this model (e.g. no BN layer)."""
        return True

    def cost_units(self) -> float:
        """One measurement's cost in training steps (forward-backward passes on the step's
        batch), for the run budget: one pass unless the probe says otherwise."""
        return 1.0

    def measurement_batch(self, batch: Batch) -> Batch:
        """The batch `measure` uses: the step's own, unless the probe keeps a fixed one."""
        return batch

    def measure(self, step: int, batch: Batch) -> dict[str, Any]:
        """Records at θ_step on `batch`, keys "<prefix>/..."."""
        return {}

    def before_update(self, step: int, batch: Batch) -> None:
        """Called right before the optimizer step of a due step."""

    def after_update(
        self, step: int, batch: Batch, before: dict | None, after: dict | None
    ) -> dict[str, Any]:
        """Records about the update just applied."""
        return {}

    def nan_keys(self) -> list[str]:
        """The scalar keys recorded as NaN when `measure` meets non-finite values."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue this probe exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


# ---- checks for `Probe.check`: one-line messages naming the key, the value and what is allowed


def require_at_least(key: str, value: int | None, low: int) -> None:
    if value is None or value < low:
        raise ValueError(f"{key}={value} must be >= {low}")


def require_positive(key: str, value: float | None) -> None:
    if value is None or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{key}={value} must be > 0")


def require_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {key} {value!r}; choose one of: {', '.join(allowed)}")


# ---- helpers shared by several probes


def out_units(module: nn.Module) -> int:
    """Output channels (conv) or features (linear) of a layer's transform."""
    for attr in ("out_channels", "out_features"):
        if hasattr(module, attr):
            return int(getattr(module, attr))
    raise ValueError(f"cannot tell the output units of {type(module).__name__}")


def select_layers(model: nn.Module, wanted: list[int]) -> list:
    """Layer refs for 1-based layer numbers (all layers when `wanted` is empty)."""
    refs = numbered_layers(model)
    if not wanted:
        return refs
    bad = [k for k in wanted if not 1 <= k <= len(refs)]
    if bad:
        raise ValueError(f"probe layers {bad} do not exist; this model has layers 1..{len(refs)}")
    return [refs[k - 1] for k in wanted]


def settings_from(values: Any, settings_type: type) -> Any:
    """A settings dataclass from a config node or dict (nested dataclasses included)."""
    if isinstance(values, settings_type):
        return values
    if not isinstance(values, dict):
        from omegaconf import OmegaConf

        values = OmegaConf.to_container(values, resolve=True)
    hints = get_type_hints(settings_type)
    kwargs = {}
    for f in fields(settings_type):
        if f.name not in values:
            continue
        value = values[f.name]
        kind = hints.get(f.name)
        if isinstance(kind, type) and is_dataclass(kind):
            value = settings_from(value, kind)
        elif isinstance(value, list):
            value = list(value)
        kwargs[f.name] = value
    return settings_type(**kwargs)
