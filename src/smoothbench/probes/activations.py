"""Activation distributions of chosen layers (paper Figs 1c, 2, 6, 8, 9).

For each layer, a fixed random subset of units (channels), sampled over every batch dimension
(N, and H, W for conv layers): quantiles and a histogram of the pooled values, each unit's
mean and variance, and how much those moments moved since the previous measurement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from smoothbench.probes.base import (
    Probe,
    ProbeContext,
    ScheduleConfig,
    out_units,
    require_at_least,
    select_layers,
)
from smoothbench.probes.state import preserved

QUANTILES = (0.0, 0.05, 0.15, 0.30, 0.50, 0.70, 0.85, 0.95, 1.0)
HIST_BINS = 64


def choose_units(num_units: int, n: int, seed: int) -> torch.Tensor:
    """`n` distinct unit indices out of `num_units`, sorted; all units when n >= num_units.

    Drawn from a private generator seeded with `seed`, so the choice is the same on every call
    and the global RNGs do not move.
    """
    if num_units < 1 or n < 1:
        raise ValueError(f"need num_units >= 1 and n >= 1, got num_units={num_units}, n={n}")
    if n >= num_units:
        return torch.arange(num_units)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_units, generator=generator)[:n].sort().values


def _quantiles(sorted_values: torch.Tensor) -> torch.Tensor:
    """Quantiles by linear interpolation between order statistics (numpy's default method)."""
    q = torch.tensor(QUANTILES, dtype=torch.float64, device=sorted_values.device)
    position = q * (sorted_values.numel() - 1)
    low = position.floor().long()
    high = position.ceil().long()
    frac = position - low
    return sorted_values[low] + frac * (sorted_values[high] - sorted_values[low])


def _histogram(values: torch.Tensor, low: float, high: float) -> tuple[torch.Tensor, np.ndarray]:
    """Counts over 64 equal bins from `low` to `high`, numpy's conventions.

    Bins are half-open [e_i, e_{i+1}) except the last, which includes `high`; when every value
    is the same, the range is widened to ±0.5 around it, as numpy does.
    """
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, HIST_BINS + 1)
    inner = torch.as_tensor(edges[1:-1], dtype=values.dtype, device=values.device)
    bins = torch.bucketize(values, inner, right=True)
    return torch.bincount(bins, minlength=HIST_BINS), edges


def _sampled(output: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """(N, C, *) -> (len(units), N·∏*) in float64: the chosen units over all batch dims."""
    chosen = output.detach().index_select(1, units.to(output.device))
    return chosen.movedim(1, 0).reshape(len(units), -1).double()


def activation_stats(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    layers: Mapping[str, nn.Module],
    units: Mapping[str, torch.Tensor],
    previous: Mapping | None = None,
) -> tuple[dict[str, dict], dict]:
    """Distribution of the outputs of `layers` on `batch`, over the chosen `units`.

    `layers` maps a label to a module of `model` whose output (N, C, …) is measured (for the
    paper's figures: the norm module, i.e. after norm and noise, before the ReLU); `units` maps
    each label to the LongTensor of channel indices to sample (see `choose_units`). One forward
    pass without gradients, norm layers in training mode; everything it disturbs (BN running
    statistics, modes, RNGs) is restored. A module called more than once is measured at its
    first call.

    Returns (records, state). records[label] holds python lists and floats: "quantiles" (at
    0, 5, 15, 30, 50, 70, 85, 95, 100 % of the pooled sampled values), "hist" (64 counts) and
    "hist_edges" (65 edges from min to max), "mean" and "var" (per unit, variance with divisor
    the number of values, not one less), and, when `previous` (the state of the previous call)
    holds the label, "mean_change" and "var_change": the mean over units of the absolute change
    of each moment. `state` is a small picklable dict to pass as `previous` next time.
    """
    missing = [label for label in layers if label not in units]
    if missing:
        raise ValueError(f"units lacks layers: {', '.join(missing)}")
    outputs: dict[str, torch.Tensor] = {}

    def capture(label: str):
        def hook(_module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
            if label not in outputs:
                outputs[label] = _sampled(output, units[label])

        return hook

    with preserved(model), torch.no_grad():
        model.train()
        handles = [m.register_forward_hook(capture(label)) for label, m in layers.items()]
        try:
            model(batch[0])
        finally:
            for h in handles:
                h.remove()

    not_run = [label for label in layers if label not in outputs]
    if not_run:
        raise ValueError(f"layers never called in the forward pass: {', '.join(not_run)}")

    records: dict[str, dict] = {}
    state: dict = {"units": {}, "mean": {}, "var": {}}
    for label in layers:
        values = outputs[label]
        pooled = values.flatten().sort().values
        quantiles = _quantiles(pooled)
        counts, edges = _histogram(pooled, float(quantiles[0]), float(quantiles[-1]))
        mean = values.mean(dim=1)
        var = values.var(dim=1, unbiased=False)
        record = {
            "quantiles": quantiles.cpu().tolist(),
            "hist": counts.cpu().tolist(),
            "hist_edges": edges.tolist(),
            "mean": mean.cpu().tolist(),
            "var": var.cpu().tolist(),
        }
        unit_list = units[label].tolist()
        if previous is not None and label in previous.get("mean", {}):
            if previous["units"][label] != unit_list:
                raise ValueError(
                    f"units of layer '{label}' changed since the previous measurement: "
                    f"{previous['units'][label]} -> {unit_list}; keep the run's first choice"
                )
            record["mean_change"] = _mean_abs_change(record["mean"], previous["mean"][label])
            record["var_change"] = _mean_abs_change(record["var"], previous["var"][label])
        records[label] = record
        state["units"][label] = unit_list
        state["mean"][label] = record["mean"]
        state["var"][label] = record["var"]
    return records, state


def _mean_abs_change(now: list[float], before: list[float]) -> float:
    return float(np.mean(np.abs(np.asarray(now) - np.asarray(before))))


# ---- the probe: config key probes.activations, metrics act/layerK/...


@dataclass
class ActivationsSettings:
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    layers: list[int] = field(default_factory=list)  # layer #k, 1-based; empty: every layer
    units: int = 64  # units (channels) sampled once per run per layer


class ActivationsProbe(Probe):
    """Activation distributions of the chosen layers, and how far their moments moved.

    Its metric prefix is `act`, older than the probe's name, kept because every reader
    (results, figures, claims, the W&B dashboard) reads `act/layerK/...`.
    """

    name = "activations"
    settings_type = ActivationsSettings
    order = 10

    def __init__(self, settings: ActivationsSettings, context: ProbeContext):
        super().__init__(settings, context)
        refs = select_layers(self.model, list(settings.layers))
        self.modules = {r.name: r.norm for r in refs}
        self.units = {
            r.name: choose_units(
                out_units(self.model.get_submodule(r.transform_name)),
                settings.units,
                seed=context.seed * 1000 + r.index,
            )
            for r in refs
        }
        self.previous: dict | None = None  # the moments of the previous measurement

    @classmethod
    def check(cls, settings, key: str) -> None:
        for layer in settings.layers:
            require_at_least(f"{key}.layers", layer, 1)
        require_at_least(f"{key}.units", settings.units, 1)

    @property
    def prefix(self) -> str:
        return "act"

    def measure(self, step: int, batch) -> dict:
        stats, self.previous = activation_stats(
            self.model, batch, self.modules, self.units, previous=self.previous
        )
        return {
            f"act/{layer}/{key}": value
            for layer, values in stats.items()
            for key, value in values.items()
        }

    def nan_keys(self) -> list[str]:
        return [f"act/{layer}/mean_of_means" for layer in self.modules]

    def state_dict(self) -> dict:
        return {"previous": self.previous} if self.previous is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self.previous = state.get("previous")


PROBE = ActivationsProbe
