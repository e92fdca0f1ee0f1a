"""What turns per-claim tests into verdicts a reviewer accepts: Holm's correction across the
family of paper claims, and the same verdicts on every run's prefixes (budget robustness).

Holm (1979). A scale tests many claims, each at 95 %; uncorrected, one in twenty true nulls
would "decide" by chance. The family is every paper claim (kind "paper") of one scale whose
runs are sound and have enough seeds to test: their two-sided p-values (2 min(p_holds,
p_fails), `Verdict.p_value`) are sorted, p_(i) is adjusted to max_{j<=i} min(1, (m-j+1) p_(j)),
and a claim is decided (holds or fails, on the side of its effect) only when its adjusted p is
below 1 - confidence. Checks and sensitivities are outside the family: a check's outcome
follows from the construction, a sensitivity re-tests a claim that is already counted. Holm
controls the family-wise error rate under any dependence between the claims, which matter
here: many claims read the same runs.

Budgets. A verdict that holds at 1,000 steps and flips at 500 says more about the budget than
about BatchNorm. Every run is cut to its first 25, 50, 75 and 100 % of steps (metrics at steps
<= the cut; a constant-lr run's prefix is exactly a shorter run, a step-schedule run's is the
run before its later lr drops) and the whole family is evaluated again on the prefixes, Holm
included. A decided claim (holds or fails) is robust when its verdict is the same at 50, 75 and
100 %; an undecided one is neither robust nor not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from smoothbench.claims.statistics import RunData, Verdict

BUDGETS = (0.25, 0.5, 0.75, 1.0)
ROBUST_FROM = 0.5  # a robust verdict is the same at every budget from this share on


def budget_label(share: float) -> str:
    return f"{share:.0%}"


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def in_family(verdict: Verdict) -> bool:
    """A paper claim whose runs were sound and that was tested (it has a p-value)."""
    return verdict.claim.kind == "paper" and verdict.p_value is not None


def apply_holm(verdicts: Sequence[Verdict], confidence: float) -> None:
    """Set each family member's adjusted p, family size and Holm verdict (in place).

    Members whose uncorrected interval decided but whose adjusted p does not become
    inconclusive, saying so; the uncorrected verdict stays in `raw_verdict`.
    """
    alpha = 1.0 - confidence
    family = [v for v in verdicts if in_family(v)]
    adjusted = holm_adjusted([v.p_value for v in family])  # type: ignore[misc]
    for verdict, p_adj in zip(family, adjusted, strict=True):
        verdict.p_adjusted = p_adj
        verdict.family_size = len(family)
        if verdict.verdict not in ("holds", "fails"):
            continue
        if p_adj >= alpha:
            verdict.why = (
                f"{verdict.why} uncorrected, but not under Holm across {len(family)} claims "
                f"(adjusted p {p_adj:.2g} >= {alpha:.2g})"
            )
            verdict.verdict = "inconclusive"
        else:
            verdict.why = f"{verdict.why}; Holm-adjusted p {p_adj:.2g} over {len(family)} claims"


def prefix(run: RunData, share: float) -> RunData:
    """The run cut to its first `share` of steps: metrics at steps <= share x steps."""
    if share >= 1.0:
        return run
    total = run.config.get("steps")
    if not isinstance(total, int | float) or total <= 0:
        return run
    cut = int(math.floor(share * total))
    series = {}
    for name, (steps, values) in run.series.items():
        keep = steps <= cut
        series[name] = (steps[keep], [v for v, k in zip(values, keep, strict=True) if k])
    # the status stays the run's: a prefix of a finished run finished, and a diverged run is
    # kept diverged (conservative: its prefix may not have diverged yet)
    return replace(run, series=series, config={**run.config, "steps": cut})


def attach_budgets(full: Sequence[Verdict], by_budget: dict[float, Sequence[Verdict]]) -> None:
    """Each full-budget verdict gets its verdict at every budget and the robust mark."""
    for index, verdict in enumerate(full):
        labels = {budget_label(b): by_budget[b][index].verdict for b in sorted(by_budget)}
        verdict.budgets = labels
        late = [by_budget[b][index].verdict for b in by_budget if b >= ROBUST_FROM]
        # robustness is a property of a decision: an undecided claim is neither
        decided = verdict.verdict in ("holds", "fails")
        verdict.robust = (len(set(late)) == 1) if decided else None
