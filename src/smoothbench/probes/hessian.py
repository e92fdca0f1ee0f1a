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

import math
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
from smoothbench.probes.budget import HessianAsk, HessianGrant

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


TRACE_ESTIMATORS = ("xtrace", "hutchinson")
# Lanczos's cap in products for k eigenvalues under a budget: 15 + 10 k (to tol 1e-3 it took
# 21-22 for k=1, 31-34 for k=3, 44-46 for k=5 on a BN VGG-11; curvature/eigenvalues.py).
LANCZOS_BASE_HVPS, LANCZOS_HVPS_PER_EIGENVALUE = 15, 10


@dataclass
class HessianSettings:
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    bn_mode: str = "train"  # train (batch statistics) | eval (running statistics)
    # the fixed measurement batch, from the training set, no augmentation; null = the training
    # batch size (then one HVP costs ~HVP_STEPS training steps: probes/budget.py)
    batch_size: int | None = 256
    top_k: int = 1
    tol: float = 1e-3
    smallest: bool = False  # also the most negative eigenvalue
    trace: bool = True
    # xtrace (Epperly, Tropp & Webber 2024; exact for rank < HVPs/2, far fewer HVPs than
    # Hutchinson once HVPs/2 exceeds the outlier eigenvalues) | hutchinson (Rademacher probes)
    trace_estimator: str = "xtrace"
    trace_rtol: float = 0.02  # stop when the error estimate <= rtol * |trace|
    trace_max_probes: int = 200  # the most HVPs the trace spends (hutchinson: one per probe)
    # XTrace's first round (even, >= 4): the fewest HVPs a trace takes; a budget that leaves
    # fewer skips the trace (hessian/trace_skipped)
    trace_min_hvps: int = 8
    # A deterministic cap on Hessian-vector products per measurement (hutchinson: at least 2
    # probes always run); None = only the probe-count cap. Hitting it before trace_rtol is
    # recorded as hessian/trace_stopped_short.
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
    takes_remainder = True  # under probes.max_fraction it gets what the cheap probes leave

    def __init__(self, settings: HessianSettings, context: ProbeContext):
        super().__init__(settings, context)
        if context.data is None:
            raise ValueError("the hessian probe needs the run's data for its fixed batch")
        size = settings.batch_size if settings.batch_size is not None else context.batch_size
        self.batch = context.data.fixed_subset(size, seed=context.seed)
        self.seed = context.seed
        self.grant: HessianGrant | None = None  # HVPs per measurement under a run budget
        self._warned: set[str] = set()

    @classmethod
    def check(cls, settings, key: str) -> None:
        require_choice(f"{key}.bn_mode", settings.bn_mode, BN_MODES)
        if settings.batch_size is not None:
            require_at_least(f"{key}.batch_size", settings.batch_size, 1)
        require_at_least(f"{key}.top_k", settings.top_k, 1)
        require_positive(f"{key}.tol", settings.tol)
        require_choice(f"{key}.trace_estimator", settings.trace_estimator, TRACE_ESTIMATORS)
        require_positive(f"{key}.trace_rtol", settings.trace_rtol)
        require_at_least(f"{key}.trace_max_probes", settings.trace_max_probes, 2)
        require_at_least(f"{key}.trace_min_hvps", settings.trace_min_hvps, 4)
        if settings.trace_min_hvps % 2:
            raise ValueError(f"{key}.trace_min_hvps={settings.trace_min_hvps} must be even")
        require_at_least(f"{key}.density_steps", settings.density_steps, 2)
        require_at_least(f"{key}.density_probes", settings.density_probes, 1)
        if settings.trace_max_hvps is not None:
            require_at_least(f"{key}.trace_max_hvps", settings.trace_max_hvps, 2)
        if settings.density_max_hvps is not None:
            require_at_least(f"{key}.density_max_hvps", settings.density_max_hvps, 1)

    # ---- its part in the run's probe budget (probes/budget.py)

    def budget_ask(self, measurements: int, train_batch: int) -> HessianAsk:
        """What a measurement would spend without a budget, for `plan_budget`."""
        h = self.settings
        lanczos = LANCZOS_BASE_HVPS + LANCZOS_HVPS_PER_EIGENVALUE * h.top_k
        lanczos += LANCZOS_BASE_HVPS + LANCZOS_HVPS_PER_EIGENVALUE if h.smallest else 0
        return HessianAsk(
            measurements=measurements,
            batch_ratio=len(self.batch[0]) / train_batch,
            lanczos_hvps=lanczos,
            trace=h.trace,
            trace_min_hvps=h.trace_min_hvps,
            trace_max_hvps=self._trace_cap(),
            density=h.density,
            density_step_hvps=h.density_steps,
            density_max_hvps=min(
                h.density_steps * h.density_probes, h.density_max_hvps or math.inf
            ),
        )

    def apply_grant(self, grant: HessianGrant) -> None:
        """Spend at most `grant` per measurement from now on."""
        self.grant = grant

    def has_work(self) -> bool:
        return self.grant is None or not self.grant.skipped

    def _trace_cap(self) -> int:
        h = self.settings
        return min(h.trace_max_probes, h.trace_max_hvps or h.trace_max_probes)

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
        records = self._eigenvalues(op)
        budget_records: dict = {}  # appended after hessian/hvps: existing keys keep their order
        if self.grant is not None:
            budget_records["hessian/hvps_granted"] = self.grant.hvps
        if h.trace:
            runs, cap = self._granted(op, "trace")
            if not runs:
                budget_records["hessian/trace_skipped"] = True
            else:
                trace = self._trace(op, cap)
                records["hessian/trace"] = trace.pop("trace")
                records["hessian/trace_stderr"] = trace.pop("stderr")
                budget_records.update(trace)
                if self.grant is not None:
                    budget_records["hessian/trace_skipped"] = False
        if h.density:
            runs, cap = self._granted(op, "density")
            if not runs:
                budget_records["hessian/density_skipped"] = True
            else:
                records.update(self._density(op, cap, budget_records))
        records["hessian/hvps"] = int(op.hvps)
        records.update(budget_records)
        return records

    def _eigenvalues(self, op: HessianOperator) -> dict:
        h = self.settings
        # under a budget Lanczos stops at its share (its residual checks take k products)
        caps = (
            {"max_iter": max(h.top_k, self.grant.lanczos_hvps // (1 + h.smallest) - h.top_k)}
            if self.grant is not None
            else {}
        )
        values, info = curvature.hessian_eigenvalues(
            op, k=h.top_k, tol=h.tol, seed=self.seed, return_eigenvectors=True, **caps
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
            low_caps = {"max_iter": max(1, caps["max_iter"])} if caps else {}
            low, _ = curvature.hessian_eigenvalues(
                op, k=1, tol=h.tol, which="smallest", seed=self.seed, **low_caps
            )
            records["hessian/lambda_min"] = float(low[0])
        return records

    def _granted(self, op: HessianOperator, what: str) -> tuple[bool, int | None]:
        """The HVPs the trace or density (`what`) may spend now. Without a budget: its settings'
        cap. Under one: the trace takes what Lanczos left (it may stop early, or late while
        checking its residuals) less the density's share, the density its share within what is
        left. (whether it runs, its cap or None for none); it is skipped when its grant is 0 or
        too little is left, with a warning once per run."""
        h = self.settings
        if self.grant is None:
            return True, self._trace_cap() if what == "trace" else h.density_max_hvps
        left = self.grant.hvps - op.hvps
        if what == "trace":
            part = self.grant.trace_hvps
            cap = min(self._trace_cap(), left - (self.grant.density_hvps if h.density else 0))
            need = h.trace_min_hvps
        else:
            part = self.grant.density_hvps
            cap, need = min(part, left), h.density_steps
        # the trace also runs on what an early Lanczos stop left when none was reserved for it
        if (part or what == "trace") and cap >= need:
            return True, cap
        if what not in self._warned:
            self._warned.add(what)
            warnings.warn(
                f"the Hessian {what} is skipped under probes.max_fraction: {max(cap, 0)} HVPs "
                f"left for it, it needs {need} (recorded as hessian/{what}_skipped)",
                RuntimeWarning,
                stacklevel=2,
            )
        return False, None

    def _trace(self, op: HessianOperator, cap: int) -> dict:
        """The trace, its error estimate and what it spent, by the configured estimator."""
        h = self.settings
        if h.trace_estimator == "xtrace":
            # the first round: trace_min_hvps, within the cap and 2 x size, even, at least 4
            first = max(4, min(h.trace_min_hvps, cap - cap % 2, 2 * op.size))
            estimate = curvature.xtrace(
                op, matvecs=first, seed=self.seed, rtol=h.trace_rtol, max_matvecs=max(cap, first)
            )
            return {
                "trace": estimate.trace,
                "stderr": estimate.error,
                "hessian/trace_estimator": "xtrace",
                "hessian/trace_hvps": int(estimate.matvecs),
                "hessian/trace_stopped_short": not estimate.converged
                and estimate.matvecs < 2 * op.size,
            }
        mean, stderr, info = curvature.hessian_trace(
            op,
            n_probes=h.trace_max_probes,
            rtol=h.trace_rtol,
            min_probes=min(10, h.trace_max_probes),
            max_hvps=cap if cap < h.trace_max_probes else None,
            seed=self.seed,
            return_info=True,
        )
        return {
            "trace": mean,
            "stderr": stderr,
            "hessian/trace_probes": int(info["probes"]),
            "hessian/trace_stopped_short": bool(info["stopped_short"]),
            "hessian/trace_estimator": "hutchinson",
            "hessian/trace_hvps": int(info["hvps"]),
        }

    def _density(self, op: HessianOperator, cap: int | None, budget_records: dict) -> dict:
        h = self.settings
        grid, density, info = curvature.hessian_density(
            op,
            steps=h.density_steps,
            n_probes=h.density_probes,
            max_hvps=cap,
            seed=self.seed,
            return_info=True,
        )
        budget_records["hessian/density_probes"] = int(info["probes"])
        budget_records["hessian/density_stopped_short"] = bool(info["stopped_short"])
        if self.grant is not None:
            budget_records["hessian/density_skipped"] = False
        return {"hessian/density_grid": grid, "hessian/density": density}


PROBE = HessianProbe
