"""The run-level probe budget (`probes.max_fraction`): what every probe of a run may cost.

Pure arithmetic on plain numbers, in UNITS of one training step (one forward-backward on the
training batch, optimizer step included). It must be a function of the config alone (steps,
batch sizes, schedules, model size), never of a measured time: a run's metrics.jsonl is
byte-identical across reruns and resumes only if every probe does the same work each time.

The rule: the probes may cost at most `max_fraction × steps` units over the run. The cheap
probes (fixed cost per measurement) are counted first; the Hessian gets what is left, divided
evenly over its scheduled measurements and turned into Hessian-vector products (HVPs). Within
one measurement the HVPs go to Lanczos (λ_max, and λ_min when asked) up to its cap, then to the
trace (at least `trace_min_hvps`, else skipped), then to the density (whole SLQ probes, else
skipped). Whatever is cut is said in `notices` (logged and warned once per run) and recorded
with every measurement (`hessian/hvps_granted`, `hessian/trace_skipped`, ...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# One HVP on a batch of the training batch's size, in training steps (double backward through
# the first-order graph). Calibrated by scripts/benchmark.py ("HVP / step at equal batch"): 2.5
# on a CPU for VGG-11 at width 1/8 (one thread), 2.0-2.6 across the presets' nets; 3 keeps the
# prediction an upper bound. An HVP on a batch b times the training batch costs ~b times more.
HVP_STEPS = 3.0
# Building the first-order graph once per measurement (a forward-backward with create_graph),
# in training steps at equal batch: 1.4 measured with the above.
GRAPH_STEPS = 1.5
# The fewest Lanczos products that give a usable λ_max (k + 2 steps and k checks are the least
# lanczos_extremes takes; fewer than this and the measurement is skipped, with a notice).
LANCZOS_MIN_HVPS = 6


@dataclass(frozen=True)
class FixedCost:
    """A probe whose measurement costs a fixed number of units, and how often it runs."""

    name: str
    measurements: int  # scheduled over the run
    units: float  # per measurement, in training steps


@dataclass(frozen=True)
class HessianAsk:
    """What the Hessian probe would spend per measurement without a budget."""

    measurements: int
    batch_ratio: float  # Hessian batch / training batch: scales every HVP's cost
    lanczos_hvps: int  # Lanczos's cap (λ_max and λ_min together)
    trace: bool
    trace_min_hvps: int
    trace_max_hvps: int
    density: bool
    density_step_hvps: int  # one SLQ probe
    density_max_hvps: int


@dataclass(frozen=True)
class HessianGrant:
    """HVPs per Hessian measurement: the total, and each part's cap (0: the part is skipped)."""

    hvps: int
    lanczos_hvps: int
    trace_hvps: int
    density_hvps: int

    @property
    def skipped(self) -> bool:
        """Nothing granted, not even Lanczos's minimum: the measurement is not made."""
        return self.lanczos_hvps == 0


@dataclass(frozen=True)
class BudgetPlan:
    """The budget of one run, in training-step units over the whole run."""

    steps: int
    max_fraction: float
    allowed_units: float
    fixed_units: float
    hessian_units: float  # what the Hessian's grant costs over the run
    hessian: HessianGrant | None
    notices: tuple[str, ...]

    @property
    def predicted_fraction(self) -> float:
        """The probes' predicted cost over the run's training cost."""
        return (self.fixed_units + self.hessian_units) / self.steps

    def summary(self) -> str:
        """One line for the run's log: allowed units, the cheap probes', the Hessian's HVPs."""
        line = (
            f"probe budget: {self.allowed_units:.0f} step-units allowed "
            f"({self.max_fraction:g} x {self.steps} steps); cheap probes {self.fixed_units:.0f}"
        )
        if self.hessian is not None and self.hessian.skipped:
            line += "; the Hessian is skipped (nothing left for Lanczos)"
        elif self.hessian is not None:
            g = self.hessian
            line += (
                f"; Hessian {self.hessian_units:.0f} units, {g.hvps} HVPs per measurement "
                f"(Lanczos <= {g.lanczos_hvps}, trace {g.trace_hvps}, density {g.density_hvps})"
            )
        return line + f"; predicted {self.predicted_fraction:.3f} of training"


def hessian_units(grant_hvps: int, ask: HessianAsk) -> float:
    """Units one Hessian measurement of `grant_hvps` products costs (0 when skipped)."""
    if grant_hvps == 0:
        return 0.0
    return ask.batch_ratio * (GRAPH_STEPS + HVP_STEPS * grant_hvps)


def plan_budget(
    steps: int, max_fraction: float, fixed: Sequence[FixedCost], hessian: HessianAsk | None
) -> BudgetPlan:
    """The run's probe budget: the cheap probes first, the Hessian gets what is left."""
    check_max_fraction("max_fraction", max_fraction)
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    allowed = max_fraction * steps
    fixed_units = sum(p.measurements * p.units for p in fixed)
    notices: list[str] = []
    if fixed_units > allowed:
        notices.append(
            f"the cheap probes alone cost {fixed_units:.0f} step-units, more than the "
            f"{allowed:.0f} allowed (probes.max_fraction={max_fraction:g}); thin their schedules"
        )
    if hessian is None or hessian.measurements == 0:
        return BudgetPlan(steps, max_fraction, allowed, fixed_units, 0.0, None, tuple(notices))
    per_measurement = max(0.0, allowed - fixed_units) / hessian.measurements
    affordable = per_measurement / hessian.batch_ratio - GRAPH_STEPS
    hvps = max(0, math.floor(affordable / HVP_STEPS))
    grant = split_hessian(hvps, hessian, notices)
    used = hessian.measurements * hessian_units(grant.hvps, hessian)
    return BudgetPlan(steps, max_fraction, allowed, fixed_units, used, grant, tuple(notices))


def split_hessian(hvps: int, ask: HessianAsk, notices: list[str]) -> HessianGrant:
    """`hvps` per measurement spent Lanczos first, then the trace, then the density; every
    part cut short or skipped appends a notice."""
    if hvps < LANCZOS_MIN_HVPS:
        notices.append(
            f"the Hessian is skipped: {hvps} HVPs per measurement are left, Lanczos needs "
            f"{LANCZOS_MIN_HVPS} (raise probes.max_fraction or thin probes.hessian.schedule)"
        )
        return HessianGrant(0, 0, 0, 0)
    lanczos = min(hvps, ask.lanczos_hvps)
    if lanczos < ask.lanczos_hvps:
        notices.append(f"Lanczos is capped at {lanczos} HVPs (of {ask.lanczos_hvps})")
    left = hvps - lanczos
    trace = spare = 0
    if ask.trace:
        # below its minimum the trace's share stays in the grant, unreserved: the trace runs on
        # it where Lanczos stops early enough
        spare = min(left, ask.trace_max_hvps)
        if spare < ask.trace_min_hvps:
            notices.append(
                f"the trace has {spare} HVPs reserved after Lanczos's {lanczos}, it needs "
                f"{ask.trace_min_hvps}: it runs only where Lanczos stops early enough, else it "
                f"is skipped (hessian/trace_skipped)"
            )
        else:
            trace, spare = spare, 0
        left -= trace + spare
    density = 0
    if ask.density:
        whole_probes = min(left, ask.density_max_hvps) // ask.density_step_hvps
        density = whole_probes * ask.density_step_hvps
        if density == 0:
            notices.append(
                f"the density is skipped: {left} HVPs are left, one SLQ probe needs "
                f"{ask.density_step_hvps}"
            )
    return HessianGrant(lanczos + trace + spare + density, lanczos, trace, density)


def check_max_fraction(key: str, value: float | None) -> None:
    """None (no budget) or 0 < value <= 1; else a one-line ValueError naming `key`."""
    if value is None:
        return
    if not (isinstance(value, int | float) and math.isfinite(value) and 0 < value <= 1):
        raise ValueError(f"{key}={value} must be in (0, 1] (a share of the training cost) or null")
