"""When a probe runs: one object per probe instead of `if step % n` scattered through the loop."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SCHEDULE_KINDS = ("off", "every", "log", "list")


@dataclass(frozen=True)
class Schedule:
    """Steps at which a probe runs, for a run of `total_steps` optimizer updates.

    kind: "off" never; "every" at 0, every, 2*every, ...; "log" at `num` log-spaced steps from
    0 to the last step (dense early, where training changes fastest); "list" at `steps`.
    `final` adds the last step (total_steps - 1).
    """

    kind: str = "off"
    total_steps: int = 1
    every: int = 100
    num: int = 20
    steps: tuple[int, ...] = field(default_factory=tuple)
    final: bool = True

    def __post_init__(self):
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(
                f"unknown schedule kind {self.kind!r}; choose one of: {', '.join(SCHEDULE_KINDS)}"
            )
        if self.kind == "every" and self.every < 1:
            raise ValueError(f"schedule every={self.every} must be >= 1")
        if self.kind == "log" and self.num < 1:
            raise ValueError(f"schedule num={self.num} must be >= 1")
        object.__setattr__(self, "_steps", frozenset(self._compute_steps()))

    def _compute_steps(self) -> set[int]:
        last = self.total_steps - 1
        if self.kind == "off":
            return set()
        if self.kind == "list":
            chosen = {s for s in self.steps if 0 <= s <= last}
        elif self.kind == "log":
            chosen = {0} | {int(round(s)) - 1 for s in np.geomspace(1, last + 1, self.num)}
        else:
            chosen = set()  # "every" is answered arithmetically in __call__
        if self.final and last >= 0:
            chosen.add(last)
        return chosen

    def __call__(self, step: int) -> bool:
        if self.kind == "every" and step % self.every == 0:
            return True
        return step in self._steps

    def count(self) -> int:
        """How many steps of the run it is due at (what the run budget multiplies)."""
        if self.kind != "every":
            return len(self._steps)
        regular = range(0, self.total_steps, self.every)
        return len(regular) + sum(1 for s in self._steps if s % self.every)

    @property
    def active(self) -> bool:
        return self.kind != "off"
