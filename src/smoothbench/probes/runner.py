"""Runs the configured probes on their schedules and turns their results into metric records.

The training loop calls `measure(step, batch)` before update `step` (everything at θ_t on the
step's own batch) and, when `wants_ics(step)`, `measure_covariate_shift(...)` right after the real
optimizer update. Each probe restores whatever it disturbs, so records are the only effect.

A probe that meets non-finite values (a diverging run: an overflowing Hessian-vector product, a
NaN activation) records NaN for its quantities, with a warning, instead of stopping the run.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from smoothbench.models import numbered_layers
from smoothbench.probes.activations import activation_stats, choose_units
from smoothbench.probes.bn_damping import bn_gradient_damping
from smoothbench.probes.covariate_shift import covariate_shift
from smoothbench.probes.hessian import (
    HessianOperator,
    gradient_topk_share,
    hessian_density,
    hessian_eigenvalues,
    hessian_trace,
)
from smoothbench.probes.landscape import gradient_landscape
from smoothbench.probes.schedule import Schedule

Batch = tuple[torch.Tensor, torch.Tensor]


def _out_units(module: nn.Module) -> int:
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


LANDSCAPE_SCALARS = (
    "loss_variation",
    "grad_pred_min",
    "grad_pred_max",
    "beta_smoothness",
    "grad_norm",
)
BN_KEYS = ("grad_ratio", "gamma_over_sigma")


def _about_non_finite_values(err: BaseException) -> bool:
    """Whether an error says it met NaN or inf (scipy, numpy and torch phrase it so)."""
    text = str(err).lower()
    return any(word in text for word in ("nan", "inf", "finite"))


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
    bn_mode: str = "train"
    top_k: int = 1
    tol: float = 1e-3
    smallest: bool = False
    trace: bool = True
    trace_rtol: float = 0.02
    trace_max_probes: int = 200
    density: bool = False
    density_steps: int = 80
    density_probes: int = 4


@dataclass
class ProbeRunner:
    """The probes of one run. `schedules` maps probe name -> Schedule."""

    model: nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    schedules: dict[str, Schedule]
    seed: int = 0
    activation_layers: list[int] = field(default_factory=list)
    activation_units: int = 64
    ics_layers: list[int] = field(default_factory=list)
    landscape_step_sizes: np.ndarray | None = None
    hessian: HessianSettings = field(default_factory=HessianSettings)
    hessian_batch: Batch | None = None
    _previous_activations: Any = None

    def __post_init__(self):
        if self._on("activations"):
            refs = select_layers(self.model, self.activation_layers)
            self._act_modules = {r.name: r.norm for r in refs}
            self._act_units = {
                r.name: choose_units(
                    _out_units(self.model.get_submodule(r.transform_name)),
                    self.activation_units,
                    seed=self.seed * 1000 + r.index,
                )
                for r in refs
            }
        if self._on("ics"):
            refs = select_layers(self.model, self.ics_layers)
            self._ics_params = {r.name: f"{r.transform_name}.weight" for r in refs}
        if self._on("bn"):
            self._bn_modules = {
                r.name: r.norm
                for r in numbered_layers(self.model)
                if isinstance(r.norm, nn.modules.batchnorm._BatchNorm)
            }
        if self._on("landscape") and self.landscape_step_sizes is None:
            raise ValueError("the landscape probe needs step sizes")
        if self._on("hessian") and self.hessian_batch is None:
            raise ValueError("the hessian probe needs a fixed measurement batch")

    def _on(self, name: str) -> bool:
        schedule = self.schedules.get(name)
        return schedule is not None and schedule.active

    def _due(self, name: str, step: int) -> bool:
        schedule = self.schedules.get(name)
        return schedule is not None and schedule(step)

    def any_due(self, step: int) -> bool:
        """Whether `measure(step, ...)` runs any probe (ICS aside)."""
        if self._due("bn", step) and self._bn_modules:
            return True
        return any(self._due(name, step) for name in ("activations", "landscape", "hessian"))

    def wants_ics(self, step: int) -> bool:
        return self._due("ics", step)

    def measure(self, step: int, batch: Batch) -> dict[str, Any]:
        """Every probe due at `step` except ICS, at the current parameters θ_step."""
        records: dict[str, Any] = {}
        if self._due("activations", step):
            records.update(
                self._guarded("activations", step, batch, lambda: self._measure_activations(batch))
            )
        if self._due("landscape", step):
            records.update(
                self._guarded("landscape", step, batch, lambda: self._measure_landscape(batch))
            )
        if self._due("bn", step) and self._bn_modules:
            records.update(self._guarded("bn", step, batch, lambda: self._measure_bn(batch)))
        if self._due("hessian", step):
            records.update(
                self._guarded("hessian", step, self.hessian_batch, self._measure_hessian)
            )
        return records

    def _guarded(
        self, name: str, step: int, batch: Batch, measure: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """`measure()`, or NaN for the probe's quantities when it failed on non-finite values."""
        try:
            return measure()
        except (ArithmeticError, ValueError, RuntimeError) as err:
            if not _about_non_finite_values(err) and self._finite_at(batch):
                raise  # a real bug, not a diverging run
            warnings.warn(
                f"probe {name} met non-finite values at step {step} "
                f"({type(err).__name__}); its quantities are recorded as NaN",
                stacklevel=2,
            )
            return {key: math.nan for key in self._nan_keys(name)}

    @torch.no_grad()
    def _finite_at(self, batch: Batch) -> bool:
        """Parameters and the loss on `batch` are finite (the model is restored afterwards)."""
        from smoothbench.probes.state import preserved

        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            return False
        with preserved(self.model):
            x, y = batch
            return bool(torch.isfinite(self.loss_fn(self.model(x), y)))

    def _nan_keys(self, name: str) -> list[str]:
        if name == "activations":
            return [f"act/{layer}/mean_of_means" for layer in self._act_modules]
        if name == "landscape":
            return [f"landscape/{key}" for key in LANDSCAPE_SCALARS]
        if name == "bn":
            return [f"bn/{layer}/{key}" for layer in self._bn_modules for key in BN_KEYS]
        if name == "hessian":
            keys = ["hessian/lambda_max"]
            keys += ["hessian/lambda_min"] if self.hessian.smallest else []
            keys += ["hessian/trace"] if self.hessian.trace else []
            return keys
        return []

    def _measure_activations(self, batch: Batch) -> dict[str, Any]:
        records: dict[str, Any] = {}
        stats, self._previous_activations = activation_stats(
            self.model,
            batch,
            self._act_modules,
            self._act_units,
            previous=self._previous_activations,
        )
        for layer, values in stats.items():
            for key, value in values.items():
                records[f"act/{layer}/{key}"] = value
        return records

    def _measure_landscape(self, batch: Batch) -> dict[str, Any]:
        result = gradient_landscape(self.model, self.loss_fn, batch, self.landscape_step_sizes)
        return {
            "landscape/step_sizes": result["step_sizes"],
            "landscape/losses": result["losses"],
            "landscape/grad_diffs": result["grad_diffs"],
            "landscape/loss_variation": result["loss_variation"],
            "landscape/grad_pred_min": result["grad_predictiveness"][0],
            "landscape/grad_pred_max": result["grad_predictiveness"][1],
            "landscape/beta_smoothness": result["beta_smoothness"],
            "landscape/grad_norm": result["grad_norm"],
        }

    def _measure_bn(self, batch: Batch) -> dict[str, Any]:
        records: dict[str, Any] = {}
        damping = bn_gradient_damping(self.model, self.loss_fn, batch, self._bn_modules)
        for layer, values in damping.items():
            records[f"bn/{layer}/grad_ratio"] = values["grad_ratio"]
            records[f"bn/{layer}/gamma_over_sigma"] = values["gamma_over_sigma"]
        return records

    def _measure_hessian(self) -> dict[str, Any]:
        # the Hessian functions' warnings name their own arguments; a run's log names config keys
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            records = self._hessian_records()
        for w in caught:
            warnings.warn(in_config_terms(str(w.message)), w.category, stacklevel=2)
        return records

    def _hessian_records(self) -> dict[str, Any]:
        h = self.hessian
        # one first-order graph serves every measurement below (~1.4 passes per product)
        op = HessianOperator(self.model, self.loss_fn, self.hessian_batch, h.bn_mode)
        values, info = hessian_eigenvalues(
            None,
            None,
            None,
            k=h.top_k,
            tol=h.tol,
            bn_mode=h.bn_mode,
            seed=self.seed,
            operator=op,
            return_eigenvectors=True,
        )
        records: dict[str, Any] = {
            "hessian/bn_mode": h.bn_mode,
            "hessian/eigenvalues": values,
            "hessian/lambda_max": float(values[0]),
            "hessian/residual": float(np.max(info["residuals"])),
            "hessian/converged": bool(info["converged"]),
            "hessian/grad_topk_share": gradient_topk_share(
                None, None, None, info["eigenvectors"], bn_mode=h.bn_mode, operator=op
            ),
        }
        if h.smallest:
            low, _ = hessian_eigenvalues(
                None,
                None,
                None,
                k=1,
                tol=h.tol,
                which="smallest",
                bn_mode=h.bn_mode,
                seed=self.seed,
                operator=op,
            )
            records["hessian/lambda_min"] = float(low[0])
        if h.trace:
            mean, stderr = hessian_trace(
                None,
                None,
                None,
                n_probes=h.trace_max_probes,
                rtol=h.trace_rtol,
                min_probes=min(10, h.trace_max_probes),
                bn_mode=h.bn_mode,
                seed=self.seed,
                operator=op,
            )
            records["hessian/trace"] = mean
            records["hessian/trace_stderr"] = stderr
        if h.density:
            grid, density = hessian_density(
                None,
                None,
                None,
                steps=h.density_steps,
                n_probes=h.density_probes,
                bn_mode=h.bn_mode,
                seed=self.seed,
                operator=op,
            )
            records["hessian/density_grid"] = grid
            records["hessian/density"] = density
        records["hessian/hvps"] = int(op.hvps)
        return records

    def measure_covariate_shift(self, batch: Batch, before: dict, after: dict) -> dict[str, Any]:
        """ICS around the update just applied: G at θ_before vs G′ with earlier layers updated."""
        shift = covariate_shift(self.model, self.loss_fn, batch, before, after, self._ics_params)
        records = {}
        for layer, values in shift.items():
            records[f"ics/{layer}/l2"] = values["l2"]
            records[f"ics/{layer}/cosine"] = values["cosine"]
        return records

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue the probes exactly (moment-change baselines)."""
        return {"previous_activations": self._previous_activations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._previous_activations = state.get("previous_activations")
