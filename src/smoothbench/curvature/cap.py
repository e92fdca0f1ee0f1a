"""A cap on one measurement's cost: Hessian-vector products and/or wall time.

`max_hvps` (products, deterministic; what the probe runner derives from the training cost) and
`max_seconds` (wall time; machine-dependent results, for interactive use). The trace and the
density check it besides their own stopping rule.
"""

from __future__ import annotations

import time

from smoothbench.curvature.operator import HessianOperator


class Budget:
    """A cap on products (`max_hvps`, counted on the operator) and/or wall time (`max_seconds`)
    for one measurement; `exhausted()` says whether it is spent. None means no cap."""

    def __init__(
        self, op: HessianOperator, max_hvps: int | None = None, max_seconds: float | None = None
    ) -> None:
        if max_hvps is not None and max_hvps < 1:
            raise ValueError(f"max_hvps must be a positive integer or None, got {max_hvps}")
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be positive or None, got {max_seconds}")
        self.op, self.max_hvps, self.max_seconds = op, max_hvps, max_seconds
        self.hvps_at_start = op.hvps
        self.started = time.perf_counter()

    @property
    def hvps(self) -> int:
        return self.op.hvps - self.hvps_at_start

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def exhausted(self, next_cost: int = 1) -> bool:
        """True when `next_cost` more products would pass max_hvps or time is up."""
        if self.max_hvps is not None and self.hvps + next_cost > self.max_hvps:
            return True
        return self.max_seconds is not None and self.seconds >= self.max_seconds
