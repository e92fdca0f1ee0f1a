"""The hessian probe: λ_max (and λ_min), trace and spectral density of the Hessian on a fixed batch.

The algorithms live in `smoothbench.curvature` and take a `HessianOperator` only. The functions
here are their conveniences for one measurement of one batch, with the signatures of the
probes' API, `(model, loss_fn, batch, ...)`: each builds
`HessianOperator(model, loss_fn, batch, bn_mode, chunk_size=chunk_size)` and calls the
`curvature` function of the same name on it (its other arguments pass through). For several
measurements of one batch, build the operator once and call `smoothbench.curvature` directly:
the probe below does so, one first-order graph for all its measurements.

Vectors are FLAT tensors over the trainable parameters, in `model.named_parameters()` order
(`HessianOperator.flatten` / `.unflatten` convert). `bn_mode`: "train" (batch statistics, the
default) or "eval" (the stored running statistics).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from smoothbench import curvature
from smoothbench.curvature.operator import BN_MODES, Batch, HessianOperator, LossFn
from smoothbench.probes.base import (
    Probe,
    ProbeContext,
    ScheduleConfig,
    require_at_least,
    require_choice,
    require_positive,
)

# ---- the measurements as functions of (model, loss_fn, batch, ...): one operator each


def hvp(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    vector: torch.Tensor,
    bn_mode: str = "train",
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """H v for the batch's mean loss, flat: `HessianOperator(...).matvec(vector)`.

    One product builds a graph for one use; for several, build a `HessianOperator` once.
    """
    return HessianOperator(model, loss_fn, batch, bn_mode, chunk_size=chunk_size).matvec(vector)


def hessian_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    k: int = 1,
    tol: float = 1e-3,
    bn_mode: str = "train",
    which: str = "largest",
    max_iter: int = 100,
    seed: int = 0,
    *,
    chunk_size: int | None = None,
    **options: Any,
) -> tuple[np.ndarray, dict]:
    """`curvature.hessian_eigenvalues` of the batch's Hessian: the k largest (which="smallest":
    most negative) algebraic eigenvalues and info. `options`: method=, return_eigenvectors=."""
    op = HessianOperator(model, loss_fn, batch, bn_mode, chunk_size=chunk_size)
    return curvature.hessian_eigenvalues(op, k, tol, which, max_iter, seed, **options)


def power_iteration(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    max_iter: int = 100,
    tol: float = 1e-3,
    bn_mode: str = "train",
    seed: int = 0,
    *,
    chunk_size: int | None = None,
) -> tuple[float, dict]:
    """`curvature.power_iteration` of the batch's Hessian: PyHessian's baseline, the eigenvalue
    of largest MAGNITUDE (often a negative one). Use `hessian_eigenvalues`."""
    op = HessianOperator(model, loss_fn, batch, bn_mode, chunk_size=chunk_size)
    return curvature.power_iteration(op, max_iter, tol, seed)


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    n_probes: int = 100,
    bn_mode: str = "train",
    seed: int = 0,
    rtol: float = 0.02,
    *,
    chunk_size: int | None = None,
    **options: Any,
) -> tuple[float, float] | tuple[float, float, dict]:
    """`curvature.hessian_trace` of the batch's Hessian: Hutchinson's (mean, stderr).
    `options`: min_probes=, max_hvps=, max_seconds=, return_info=."""
    op = HessianOperator(model, loss_fn, batch, bn_mode, chunk_size=chunk_size)
    return curvature.hessian_trace(op, n_probes, seed, rtol, **options)


def hessian_density(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    steps: int = 80,
    n_probes: int = 4,
    sigma: float | None = None,
    grid: int | np.ndarray = 1000,
    bn_mode: str = "train",
    seed: int = 0,
    *,
    chunk_size: int | None = None,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, dict]:
    """`curvature.hessian_density` of the batch's Hessian: (grid, density) by stochastic Lanczos
    quadrature. `options`: max_hvps=, max_seconds=, return_info=."""
    op = HessianOperator(model, loss_fn, batch, bn_mode, chunk_size=chunk_size)
    return curvature.hessian_density(op, steps, n_probes, sigma, grid, seed, **options)


def gradient_topk_share(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    eigenvectors: torch.Tensor | Sequence[torch.Tensor],
    bn_mode: str = "train",
    *,
    chunk_size: int | None = None,
) -> float:
    """`curvature.gradient_topk_share` of the batch's gradient: ‖P_k g‖² / ‖g‖² for the span of
    `eigenvectors` (flat rows). Needs only the gradient: no second-order graph is built."""
    op = HessianOperator(model, loss_fn, batch, bn_mode, chunk_size=chunk_size, second_order=False)
    return curvature.gradient_topk_share(op, eigenvectors)


# ---- the probe: config key probes.hessian, metrics hessian/...

# argument names of the Hessian functions -> the config keys that set them
_CONFIG_TERMS = (
    (re.compile(r"; raise max_iter \(now \d+\) or tol"), "; loosen probes.hessian.tol"),
    (re.compile(r"\btol="), "probes.hessian.tol="),
    (re.compile(r"\bn_probes="), "probes.hessian.trace_max_probes="),
    (re.compile(r"\brtol="), "probes.hessian.trace_rtol="),
)


def in_config_terms(message: str) -> str:
    """A Hessian warning reworded with the config keys that control it."""
    for pattern, replacement in _CONFIG_TERMS:
        message = pattern.sub(replacement, message)
    return message


@dataclass
class HessianSettings:
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    bn_mode: str = "train"  # train (batch statistics) | eval (running statistics)
    batch_size: int = 256  # the fixed measurement batch, from the training set, no augmentation
    top_k: int = 1
    tol: float = 1e-3
    smallest: bool = False  # also the most negative eigenvalue
    trace: bool = True
    trace_rtol: float = 0.02  # stop Hutchinson when stderr <= rtol * |trace|
    trace_max_probes: int = 200
    # A deterministic cap on Hessian-vector products per measurement (one per trace probe, at
    # least 2 probes always run); None = only the probe-count cap. Hitting it before trace_rtol
    # is recorded as hessian/trace_stopped_short.
    trace_max_hvps: int | None = None
    density: bool = False
    density_steps: int = 80
    density_probes: int = 4
    # The same for the density, checked before each probe after the first (a probe costs
    # density_steps products); None = density_probes probes. Recorded as
    # hessian/density_stopped_short.
    density_max_hvps: int | None = None


class HessianProbe(Probe):
    """Top eigenvalues, trace and spectral density of the Hessian on a fixed batch."""

    name = "hessian"
    settings_type = HessianSettings
    order = 40

    def __init__(self, settings: HessianSettings, context: ProbeContext):
        super().__init__(settings, context)
        if context.data is None:
            raise ValueError("the hessian probe needs the run's data for its fixed batch")
        self.batch = context.data.fixed_subset(settings.batch_size, seed=context.seed)
        self.seed = context.seed

    @classmethod
    def check(cls, settings, key: str) -> None:
        require_choice(f"{key}.bn_mode", settings.bn_mode, BN_MODES)
        require_at_least(f"{key}.batch_size", settings.batch_size, 1)
        require_at_least(f"{key}.top_k", settings.top_k, 1)
        require_positive(f"{key}.tol", settings.tol)
        require_positive(f"{key}.trace_rtol", settings.trace_rtol)
        require_at_least(f"{key}.trace_max_probes", settings.trace_max_probes, 2)
        require_at_least(f"{key}.density_steps", settings.density_steps, 2)
        require_at_least(f"{key}.density_probes", settings.density_probes, 1)
        if settings.trace_max_hvps is not None:
            require_at_least(f"{key}.trace_max_hvps", settings.trace_max_hvps, 2)
        if settings.density_max_hvps is not None:
            require_at_least(f"{key}.density_max_hvps", settings.density_max_hvps, 1)

    def measurement_batch(self, batch):
        return self.batch

    def nan_keys(self) -> list[str]:
        keys = ["hessian/lambda_max"]
        keys += ["hessian/lambda_min"] if self.settings.smallest else []
        keys += ["hessian/trace"] if self.settings.trace else []
        return keys

    def measure(self, step: int, batch) -> dict:
        # the Hessian functions' warnings name their own arguments; a run's log names config keys
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            records = self._records(batch)
        for w in caught:
            warnings.warn(in_config_terms(str(w.message)), w.category, stacklevel=2)
        return records

    def _records(self, batch) -> dict:
        h = self.settings
        # one first-order graph serves every measurement below (~1.4 passes per product)
        op = HessianOperator(self.model, self.loss_fn, batch, h.bn_mode)
        values, info = curvature.hessian_eigenvalues(
            op, k=h.top_k, tol=h.tol, seed=self.seed, return_eigenvectors=True
        )
        records: dict = {
            "hessian/bn_mode": h.bn_mode,
            "hessian/eigenvalues": values,
            "hessian/lambda_max": float(values[0]),
            "hessian/residual": float(np.max(info["residuals"])),
            "hessian/converged": bool(info["converged"]),
            "hessian/grad_topk_share": curvature.gradient_topk_share(op, info["eigenvectors"]),
        }
        if h.smallest:
            low, _ = curvature.hessian_eigenvalues(
                op, k=1, tol=h.tol, which="smallest", seed=self.seed
            )
            records["hessian/lambda_min"] = float(low[0])
        budget_records: dict = {}  # appended after hessian/hvps: existing keys keep their order
        if h.trace:
            mean, stderr, trace_info = curvature.hessian_trace(
                op,
                n_probes=h.trace_max_probes,
                rtol=h.trace_rtol,
                min_probes=min(10, h.trace_max_probes),
                max_hvps=h.trace_max_hvps,
                seed=self.seed,
                return_info=True,
            )
            records["hessian/trace"] = mean
            records["hessian/trace_stderr"] = stderr
            budget_records["hessian/trace_probes"] = int(trace_info["probes"])
            budget_records["hessian/trace_stopped_short"] = bool(trace_info["stopped_short"])
        if h.density:
            grid, density, density_info = curvature.hessian_density(
                op,
                steps=h.density_steps,
                n_probes=h.density_probes,
                max_hvps=h.density_max_hvps,
                seed=self.seed,
                return_info=True,
            )
            records["hessian/density_grid"] = grid
            records["hessian/density"] = density
            budget_records["hessian/density_probes"] = int(density_info["probes"])
            budget_records["hessian/density_stopped_short"] = bool(density_info["stopped_short"])
        records["hessian/hvps"] = int(op.hvps)
        records.update(budget_records)
        return records


PROBE = HessianProbe
