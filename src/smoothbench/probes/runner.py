"""Runs the configured probes on their schedules: a loop over `Probe` objects.

The training loop calls, at every step t:
  measure(t, batch)        before update t (everything at θ_t on the step's own batch);
                           `any_due(t)` says whether it will measure anything
  before_update(t, batch)  right before the optimizer step
  after_update(t, batch)   right after it (records about the update, e.g. covariate shift)
It knows no probe by name. Each probe restores whatever it disturbs, so records are the only
effect.

A probe that meets non-finite values in `measure` (a diverging run: an overflowing
Hessian-vector product, a NaN activation) records NaN for its quantities, with a warning,
instead of stopping the run.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from smoothbench.preserve import parameters_dict, preserved
from smoothbench.probes.base import Batch, Probe
from smoothbench.probes.schedule import Schedule

__all__ = ["ProbeRunner"]


def _about_non_finite_values(err: BaseException) -> bool:
    """Whether an error says it met NaN or inf (scipy, numpy and torch phrase it so)."""
    text = str(err).lower()
    return any(word in text for word in ("nan", "inf", "finite"))


class ProbeRunner:
    """The probes of one run, each with its schedule, in the order their keys go in a row."""

    def __init__(self, model, loss_fn, probes: list[tuple[Probe, Schedule]]):
        self.model = model
        self.loss_fn = loss_fn
        self.probes = [(p, s) for p, s in probes if s.active]
        self._before: dict | None = None

    def _due(self, step: int) -> list[Probe]:
        return [probe for probe, schedule in self.probes if schedule(step) and probe.has_work()]

    def any_due(self, step: int) -> bool:
        """Whether `measure(step, ...)` can record anything."""
        return any(type(p).measure is not Probe.measure for p in self._due(step))

    def measure(self, step: int, batch: Batch) -> dict[str, Any]:
        """Every due probe's measurement at the current parameters θ_step."""
        records: dict[str, Any] = {}
        for probe in self._due(step):
            if type(probe).measure is Probe.measure:
                continue
            records.update(self._guarded(probe, step, probe.measurement_batch(batch)))
        return records

    def before_update(self, step: int, batch: Batch) -> None:
        """Right before the optimizer step: keep θ_t when a due probe compares it with θ_t+1."""
        due = self._due(step)
        self._before = parameters_dict(self.model) if any(p.uses_update for p in due) else None
        for probe in due:
            probe.before_update(step, batch)

    def after_update(self, step: int, batch: Batch) -> dict[str, Any]:
        """Right after the optimizer step: the due probes' records about the update."""
        before, self._before = self._before, None
        after = parameters_dict(self.model) if before is not None else None
        records: dict[str, Any] = {}
        for probe in self._due(step):
            records.update(probe.after_update(step, batch, before, after))
        return records

    def _guarded(self, probe: Probe, step: int, batch: Batch) -> dict[str, Any]:
        """`probe.measure()`, or NaN for its quantities when it failed on non-finite values."""
        try:
            return probe.measure(step, batch)
        except (ArithmeticError, ValueError, RuntimeError) as err:
            if not _about_non_finite_values(err) and self._finite_at(batch):
                raise  # a real bug, not a diverging run
            warnings.warn(
                f"probe {probe.name} met non-finite values at step {step} "
                f"({type(err).__name__}); its quantities are recorded as NaN",
                stacklevel=2,
            )
            return {key: math.nan for key in probe.nan_keys()}

    @torch.no_grad()
    def _finite_at(self, batch: Batch) -> bool:
        """Parameters and the loss on `batch` are finite (the model is restored afterwards)."""
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            return False
        with preserved(self.model):
            x, y = batch
            return bool(torch.isfinite(self.loss_fn(self.model(x), y)))

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue the probes exactly, by probe name."""
        states = {probe.name: probe.state_dict() for probe, _ in self.probes}
        return {name: state for name, state in states.items() if state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "previous_activations" in state:  # checkpoints written before probes had names
            state = {"activations": {"previous": state["previous_activations"]}}
        for probe, _ in self.probes:
            probe.load_state_dict(state.get(probe.name, {}))
