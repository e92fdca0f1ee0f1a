"""Activation distributions of chosen layers (paper Figs 1c, 2, 6, 8, 9).

Measured where Santurkar et al. (2018) measure them: at the input of the next layer, i.e. the
tensor the next layer consumes (after norm, noise and the ReLU). The units are individual
activations, a fixed random set of positions (channel, h, w) of a conv layer's output or
features of a linear one, and each unit's moments are taken over the batch alone. Per layer:
quantiles and a histogram of the sampled values, each unit's mean and variance, and how much
those moments moved since the previous measurement, raw and relative to the unit's spread.

The older view (`at: norm_output`: channels of the norm module's output, pooled over N, H, W)
stays available but is never a claim's input: in training mode a BN channel's batch mean there
is exactly β and its variance ≈ γ², so comparisons there are decided by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import nn

from smoothbench.preserve import preserved
from smoothbench.probes.base import (
    Probe,
    ProbeContext,
    ScheduleConfig,
    out_units,
    require_at_least,
    require_choice,
    select_layers,
)

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


def _sampled(output: torch.Tensor, units: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """The chosen units of a layer's output (N, …), float64, one row per unit.

    per_channel: units index dim 1 (channels), pooled over every other dim -> (n, N·∏*);
    otherwise units index the flattened per-sample output (C·H·W, or D) -> (n, N).
    """
    output = output.detach()
    units = units.to(output.device)
    if per_channel:
        chosen = output.index_select(1, units)
        return chosen.movedim(1, 0).reshape(len(units), -1).double()
    return output.reshape(output.shape[0], -1).index_select(1, units).t().double()


def _unit_count(output: torch.Tensor, per_channel: bool) -> int:
    return int(output.shape[1]) if per_channel else int(output[0].numel())


Units = torch.Tensor | Callable[[int], torch.Tensor]


def activation_stats(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    layers: Mapping[str, nn.Module],
    units: Mapping[str, Units],
    previous: Mapping | None = None,
    *,
    per_channel: bool = False,
) -> tuple[dict[str, dict], dict]:
    """Distribution of the outputs of `layers` on `batch`, over the chosen `units`.

    `layers` maps a label to a module of `model` whose output (N, …) is measured (for the
    paper's figures: `LayerRef.output`, the next layer's input). `units` maps each label to a
    LongTensor of unit indices (see `choose_units`), or to a function that takes the number of
    units of that output and returns them (the count of a conv output, C·H·W, is known only once
    it has run). A unit is an index into the flattened per-sample output (C·H·W, or D) and its
    values are the N samples of the batch; with `per_channel`, a unit is a channel (dim 1) and
    its values are pooled over every other dimension (N, H, W). One forward pass without
    gradients, norm layers in training mode; everything it disturbs (BN running statistics,
    modes, RNGs) is restored. A module called more than once is measured at its first call.

    Returns (records, state). records[label] holds python lists and floats: "quantiles" (at
    0, 5, 15, 30, 50, 70, 85, 95, 100 % of the pooled sampled values), "hist" (64 counts) and
    "hist_edges" (65 edges from min to max), "mean" and "var" (per unit, variance with divisor
    the number of values, not one less), and, when `previous` (the state of the previous call)
    holds the label, the mean over units of each moment's absolute change: "mean_change" and
    "var_change", raw, and "mean_change_rel" = |μ − μ′| / sqrt(v̄) and "var_change_rel" =
    |var − var′| / v̄ with v̄ = (var + var′) / 2, scale-free (units with v̄ = 0, e.g. dead ReLU
    units, are left out; NaN when none is left). `state` (units as lists, mean, var) is a small
    picklable dict to pass as `previous` next time.
    """
    missing = [label for label in layers if label not in units]
    if missing:
        raise ValueError(f"units lacks layers: {', '.join(missing)}")
    outputs: dict[str, torch.Tensor] = {}
    chosen: dict[str, torch.Tensor] = {}

    def capture(label: str):
        def hook(_module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
            if label in outputs:
                return
            wanted = units[label]
            if callable(wanted):
                wanted = wanted(_unit_count(output, per_channel))
            chosen[label] = wanted
            outputs[label] = _sampled(output, wanted, per_channel)

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
        unit_list = chosen[label].tolist()
        if previous is not None and label in previous.get("mean", {}):
            if previous["units"][label] != unit_list:
                raise ValueError(
                    f"units of layer '{label}' changed since the previous measurement: "
                    f"{previous['units'][label]} -> {unit_list}; keep the run's first choice"
                )
            record.update(
                _moment_changes(
                    record["mean"], record["var"], previous["mean"][label], previous["var"][label]
                )
            )
        records[label] = record
        state["units"][label] = unit_list
        state["mean"][label] = record["mean"]
        state["var"][label] = record["var"]
    return records, state


def _moment_changes(
    mean: list[float], var: list[float], mean_before: list[float], var_before: list[float]
) -> dict[str, float]:
    """Mean over units of |Δ mean| and |Δ var|, raw and relative to the units' spread."""
    mean, var = np.asarray(mean), np.asarray(var)
    mean_before, var_before = np.asarray(mean_before), np.asarray(var_before)
    mean_change = np.abs(mean - mean_before)
    var_change = np.abs(var - var_before)
    v_bar = (var + var_before) / 2
    spread = np.where(v_bar == 0, np.nan, v_bar)  # a unit constant both times has no scale
    return {
        "mean_change": float(np.mean(mean_change)),
        "var_change": float(np.mean(var_change)),
        "mean_change_rel": _nan_mean(mean_change / np.sqrt(spread)),
        "var_change_rel": _nan_mean(var_change / spread),
    }


def _nan_mean(values: np.ndarray) -> float:
    """The mean of the non-NaN values; NaN when there is none (without numpy's warning)."""
    kept = values[~np.isnan(values)]
    return float(np.mean(kept)) if kept.size else math.nan


# ---- the probe: config key probes.activations, metrics act/layerK/...

AT_CHOICES = ("next_input", "norm_output")
CHANGE_KEYS = ("mean_change", "var_change", "mean_change_rel", "var_change_rel")


@dataclass
class ActivationsSettings:
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    layers: list[int] = field(default_factory=list)  # layer #k, 1-based; empty: every layer
    units: int = 64  # units sampled once per run per layer
    # next_input: the next layer's input (after norm, noise, ReLU), units (c, h, w), moments
    # over the batch. norm_output: the norm's output, units channels pooled over (N, H, W);
    # never a claim's input (a BN channel's batch moments there are β and ≈ γ² by construction)
    at: str = "next_input"


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
        require_choice("probes.activations.at", settings.at, AT_CHOICES)
        self.per_channel = settings.at == "norm_output"
        refs = select_layers(self.model, list(settings.layers))
        self.modules = {r.name: r.norm if self.per_channel else r.output for r in refs}
        # Units (c, h, w) are chosen at the first measurement, once the output's size is known;
        # channels are known now. Either way the same seed gives the same choice.
        self.units: dict[str, Units] = {
            r.name: partial(choose_units, n=settings.units, seed=context.seed * 1000 + r.index)
            for r in refs
        }
        if self.per_channel:
            self.units = {
                r.name: self.units[r.name](out_units(self.model.get_submodule(r.transform_name)))
                for r in refs
            }
        self.previous: dict | None = None  # the moments of the previous measurement

    @classmethod
    def check(cls, settings, key: str) -> None:
        for layer in settings.layers:
            require_at_least(f"{key}.layers", layer, 1)
        require_at_least(f"{key}.units", settings.units, 1)
        require_choice(f"{key}.at", settings.at, AT_CHOICES)

    @property
    def prefix(self) -> str:
        return "act"

    def cost_units(self) -> float:
        # one forward pass without gradients: about a third of a step; half, to stay an upper
        # bound for the hooks' sampling and histograms (scripts/benchmark.py measures it)
        return 0.5

    def measure(self, step: int, batch) -> dict:
        stats, state = activation_stats(
            self.model,
            batch,
            self.modules,
            self.units,
            previous=self.previous,
            per_channel=self.per_channel,
        )
        self.units = {label: torch.tensor(units) for label, units in state["units"].items()}
        self.previous = {**state, "at": self.settings.at}
        return {
            f"act/{layer}/{key}": value
            for layer, values in stats.items()
            for key, value in values.items()
        }

    def nan_keys(self) -> list[str]:
        return [f"act/{layer}/{key}" for layer in self.modules for key in CHANGE_KEYS]

    def state_dict(self) -> dict:
        return {"previous": self.previous} if self.previous is not None else {}

    def load_state_dict(self, state: dict) -> None:
        previous = state.get("previous")
        if previous is not None:
            at = previous.get("at", "norm_output")  # checkpoints from before `at` measured there
            if at != self.settings.at:
                raise ValueError(
                    f"probes.activations.at={self.settings.at} but the run being resumed "
                    f"measured its activations at {at}; resume with probes.activations.at={at}"
                )
        self.previous = previous


PROBE = ActivationsProbe
