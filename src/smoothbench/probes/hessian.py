"""Curvature of the batch loss: Hessian-vector products, extreme eigenvalues, trace, density.

Everything is built on `HessianOperator`, the Hessian of one batch's MEAN loss with respect to
the trainable parameters, applied by double backward (`torch.autograd.grad`, eager, in the
parameters' dtype, fp32 for every model here, autocast off). The first-order graph is built
once and reused for every product, which saves rebuilding it each time (measured on a CPU, BN
VGG-11 at width 1/8, batch 32: building it costs 1.1 forward-backward passes, each product 3.4,
a product that rebuilds the graph 4.5; double backward through convolutions is the bulk).

Vectors are FLAT tensors over the trainable parameters (those with requires_grad), in
`model.named_parameters()` order; `HessianOperator.unflatten` gives the per-parameter view.

`bn_mode` says which statistics the norm layers use: "train" (the batch's own statistics, the
default, the Hessian of the loss the optimizer sees) or "eval" (the stored running statistics,
what PyHessian silently uses). The model is put in `train()` or `eval()` for the forward pass and
every module's own flag is restored afterwards. The forward runs through
`torch.func.functional_call` on copies of the parameters and buffers, so running statistics are
never updated and the model's tensors are never part of the graph; `preserved` restores modes
and RNG states as well. Noisy BatchNorm layers reuse their step's noise and need nothing special.

Every function takes an optional `operator=` so one graph can serve several measurements of the
same (model, loss_fn, batch, bn_mode); `model`, `loss_fn` and `batch` are then ignored.

Random vectors (Lanczos starts, Rademacher and quadrature probes) are drawn on the parameters'
device, in their dtype, from a private generator seeded with `seed` on that device: results are
deterministic per seed and device (a CPU and a GPU draw different numbers for the same seed),
no global RNG moves, and no vector is drawn on the host and copied.

The trace and the density take a budget besides their own stopping rule: `max_hvps` (products,
deterministic; what the probe runner should derive from the training cost) and `max_seconds`
(wall time; machine-dependent results, for interactive use). With `return_info=True` they say how
many probes they used and whether the budget cut them short.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from smoothbench.probes.base import (
    Probe,
    ProbeContext,
    ScheduleConfig,
    require_at_least,
    require_choice,
    require_positive,
)
from smoothbench.probes.lanczos import (
    WHICH,
    device_generator,
    eigsh_extremes,
    gaussian_density,
    lanczos_extremes,
    random_vector,
    slq_nodes,
)
from smoothbench.probes.state import preserved

BN_MODES = ("train", "eval")
METHODS = ("lanczos", "eigsh")
# Measured on a BN VGG-11 at width 1/8 (145,554 parameters, batch 32, CPU), products to reach
# tol 1e-3 over 3 seeds: k=1 train 21-22 (lanczos) vs 22 (eigsh), eval 13-15 vs 22; k=3 train
# 31-34 vs 40; k=5 44-46 vs 51; at tol 1e-4 24-25 vs 32. The torch Lanczos tests the residual
# after every product, ARPACK only after its first ncv = 20; products dominate the time.
DEFAULT_METHOD = "lanczos"

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = Sequence[torch.Tensor]


def _check_bn_mode(bn_mode: str) -> None:
    if bn_mode not in BN_MODES:
        raise ValueError(f"unknown bn_mode {bn_mode!r}; choose one of: {', '.join(BN_MODES)}")


class HessianOperator:
    """The Hessian of `loss_fn(model(inputs), targets)` (a batch mean) as a matrix-free operator.

    `matvec(v)` returns H v for a flat vector v (see the module docstring for the layout) and
    counts products in `hvps`; `gradient` is the flat first-order gradient from the same pass.
    The operator stays valid while the model changes afterwards: it keeps its own copy of the
    parameters, so it describes the model as it was when built. Drop it to free the graph.

    `chunk_size` splits a batch too large for one graph into chunks of that many examples. The
    loss stays the batch MEAN (each chunk's mean loss weighted by its share of the examples);
    each product then recomputes every chunk's graph (one more pass per product) from the
    model's buffers at that moment. With bn_mode="train" the norm layers then use each chunk's
    statistics: a different function from the whole batch's.

    second_order=False computes only `gradient` (no graph kept); `matvec` then raises.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batch: Batch,
        bn_mode: str = "train",
        *,
        chunk_size: int | None = None,
        second_order: bool = True,
    ) -> None:
        _check_bn_mode(bn_mode)
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
        self.model, self.loss_fn, self.bn_mode = model, loss_fn, bn_mode
        inputs, targets = batch
        self.inputs, self.targets = inputs, targets
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no trainable parameters")
        dtypes = {p.dtype for _, p in named}
        if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
            raise ValueError(
                f"parameters must share one floating dtype, got {sorted(map(str, dtypes))}"
            )
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.size = sum(self.sizes)
        # One leaf holding every parameter: gradients and products come back already flat.
        self.point = torch.cat([p.detach().reshape(-1) for _, p in named]).requires_grad_(True)
        self.dtype, self.device = self.point.dtype, self.point.device
        self.hvps = 0
        n_examples = len(inputs)
        self.chunks = (
            [(0, n_examples)]
            if chunk_size is None or chunk_size >= n_examples
            else [(i, min(i + chunk_size, n_examples)) for i in range(0, n_examples, chunk_size)]
        )
        self.second_order = second_order
        self._graph_grad: torch.Tensor | None = None
        if second_order and len(self.chunks) == 1:
            (grad,) = self._gradients(self.chunks, create_graph=True)
            self._graph_grad = grad
            self.gradient = grad.detach()
        else:
            self.gradient = sum(self._gradients(self.chunks, create_graph=False))

    def _gradients(self, chunks: list[tuple[int, int]], create_graph: bool) -> list[torch.Tensor]:
        """Each chunk's weighted gradient (weights: its share of the examples)."""
        n_examples = len(self.inputs)
        out = []
        with (
            preserved(self.model),
            torch.enable_grad(),
            torch.autocast(self.device.type, enabled=False),
        ):
            views = {
                name: t.view(shape)
                for name, t, shape in zip(
                    self.names, self.point.split(self.sizes), self.shapes, strict=True
                )
            }
            self.model.train(self.bn_mode == "train")
            for lo, hi in chunks:
                # Fresh buffer copies: running statistics updated in train mode land in these.
                buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}
                outputs = functional_call(self.model, {**views, **buffers}, (self.inputs[lo:hi],))
                loss = self.loss_fn(outputs, self.targets[lo:hi]) * ((hi - lo) / n_examples)
                (grad,) = torch.autograd.grad(
                    loss, self.point, create_graph=create_graph, allow_unused=True
                )
                out.append(torch.zeros_like(self.point) if grad is None else grad)
        return out

    def _vector(self, v: torch.Tensor) -> torch.Tensor:
        v = torch.as_tensor(v).reshape(-1)
        if v.numel() != self.size:
            raise ValueError(f"vector has {v.numel()} entries; the parameters have {self.size}")
        return v.to(device=self.device, dtype=self.dtype)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v for a flat vector v; returns a flat tensor in the parameters' dtype and device."""
        if not self.second_order:
            raise RuntimeError("this operator was built with second_order=False: no products")
        v = self._vector(v)
        self.hvps += 1
        if self._graph_grad is not None:
            return self._product(self._graph_grad, v, retain_graph=True)
        total = torch.zeros_like(v)
        for chunk in self.chunks:  # one chunk's graph alive at a time: the memory saving
            (grad,) = self._gradients([chunk], create_graph=True)
            total += self._product(grad, v, retain_graph=False)
        return total

    def _product(self, grad: torch.Tensor, v: torch.Tensor, retain_graph: bool) -> torch.Tensor:
        if not grad.requires_grad:  # the loss is at most linear in the parameters
            return torch.zeros_like(v)
        (hv,) = torch.autograd.grad(
            grad, self.point, grad_outputs=v, retain_graph=retain_graph, allow_unused=True
        )
        return torch.zeros_like(v) if hv is None else hv

    __call__ = matvec

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """A per-parameter dict (every trainable parameter's name) as one flat vector."""
        return torch.cat([tensors[n].reshape(-1).to(self.point) for n in self.names])

    def unflatten(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat vector as {parameter name: tensor of that parameter's shape} (views of v)."""
        v = self._vector(v)
        return {
            n: t.view(s)
            for n, t, s in zip(self.names, v.split(self.sizes), self.shapes, strict=True)
        }


def _operator(
    model: nn.Module | None,
    loss_fn: LossFn | None,
    batch: Batch | None,
    bn_mode: str,
    operator: HessianOperator | None,
    chunk_size: int | None,
) -> HessianOperator:
    _check_bn_mode(bn_mode)
    if operator is None:
        return HessianOperator(model, loss_fn, batch, bn_mode, chunk_size=chunk_size)
    if operator.bn_mode != bn_mode:
        raise ValueError(
            f"operator has bn_mode={operator.bn_mode!r} but bn_mode={bn_mode!r} was asked"
        )
    return operator


def _start_vector(n: int, seed: int, op: HessianOperator) -> tuple[torch.Tensor, torch.Generator]:
    # Drawn on the operator's device from a private generator: global RNGs intact, no host copy.
    generator = device_generator(seed, op.device)
    return random_vector(n, generator, dtype=op.dtype, device=op.device), generator


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


def hvp(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    vector: torch.Tensor,
    bn_mode: str = "train",
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """H v for the batch's mean loss; `vector` and the result are flat (module docstring).

    One product builds a graph for one use; for several, build a `HessianOperator` once.
    """
    return HessianOperator(model, loss_fn, batch, bn_mode, chunk_size=chunk_size).matvec(vector)


def hessian_eigenvalues(
    model: nn.Module | None,
    loss_fn: LossFn | None,
    batch: Batch | None,
    k: int = 1,
    tol: float = 1e-3,
    bn_mode: str = "train",
    which: str = "largest",
    max_iter: int = 100,
    seed: int = 0,
    *,
    method: str = DEFAULT_METHOD,
    return_eigenvectors: bool = False,
    operator: HessianOperator | None = None,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, dict]:
    """The k largest (or, which="smallest", most negative) ALGEBRAIC Hessian eigenvalues.

    Returns (eigenvalues, info): eigenvalues descending for "largest", ascending for
    "smallest". Unlike power iteration this never reports a large negative eigenvalue as the
    "top" one. Stops when every pair has Ritz residual ‖Hv − λv‖ ≤ tol·|λ|. `max_iter` caps the
    Lanczos steps (one product each; for method="eigsh" roughly, through ARPACK's restarts).
    method: "lanczos" (torch, full reorthogonalization; keeps up to max_iter vectors of the
    parameter count) or "eigsh" (scipy's ARPACK, keeps ~20 vectors, in float64 on the host).
    Deterministic given `seed`; no global RNG moves.

    info: "hvps" (products spent by this call, residual checks included), "residuals"
    (‖Hv − λv‖₂ per eigenvalue), "converged", "method", "bn_mode", "steps", "which", "tol", and
    "eigenvectors" ((k, n) flat unit rows) when return_eigenvectors. Not converging within
    max_iter warns and sets converged=False; the best estimates are still returned.
    """
    if which not in WHICH:
        raise ValueError(f"unknown which {which!r}; choose one of: {', '.join(WHICH)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    op = _operator(model, loss_fn, batch, bn_mode, operator, chunk_size)
    hvps_before = op.hvps
    start, generator = _start_vector(op.size, seed, op)
    if method == "lanczos":
        result = lanczos_extremes(
            op.matvec, start, k, which=which, tol=tol, max_iter=max_iter, generator=generator
        )
    else:
        result = eigsh_extremes(op.matvec, start, k, which=which, tol=tol, max_iter=max_iter)
    info = {
        "hvps": op.hvps - hvps_before,
        "residuals": result.residuals,
        "converged": result.converged,
        "method": method,
        "bn_mode": bn_mode,
        "steps": result.steps,
        "which": which,
        "tol": tol,
    }
    if return_eigenvectors:
        info["eigenvectors"] = result.vectors
    if not result.converged:
        worst = max(
            (
                r / abs(v)
                for r, v in zip(result.residuals, result.values, strict=True)
                if math.isfinite(r) and v != 0
            ),
            default=float("nan"),
        )
        warnings.warn(
            f"Hessian eigenvalues NOT converged ({method}, bn_mode={bn_mode}, which={which}): "
            f"after {info['hvps']} products the worst relative Ritz residual is {worst:.3g} "
            f"> tol={tol}; raise max_iter (now {max_iter}) or tol",
            RuntimeWarning,
            stacklevel=2,
        )
    return result.values, info


def power_iteration(
    model: nn.Module | None,
    loss_fn: LossFn | None,
    batch: Batch | None,
    max_iter: int = 100,
    tol: float = 1e-3,
    bn_mode: str = "train",
    seed: int = 0,
    *,
    operator: HessianOperator | None = None,
    chunk_size: int | None = None,
) -> tuple[float, dict]:
    """PyHessian's power iteration, kept only as the BASELINE the benchmark compares against.

    It converges to the eigenvalue of largest MAGNITUDE, sign included: for BN nets in training
    mode that is often the most negative one, reported as if it were the "top" eigenvalue.
    Stops, as PyHessian does, when the Rayleigh quotient changes by less than tol relative.
    Use `hessian_eigenvalues` for the largest algebraic eigenvalue.

    Returns (eigenvalue, info) with info "hvps", "converged", "residual" (‖Hv − λv‖₂ of the last
    iterate), "iterations", "method" ("power") and "bn_mode".
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    op = _operator(model, loss_fn, batch, bn_mode, operator, chunk_size)
    hvps_before = op.hvps
    v, _ = _start_vector(op.size, seed, op)
    v = v / torch.linalg.vector_norm(v)
    eigenvalue: float | None = None
    converged, residual, iterations = False, float("nan"), 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (reported below)
        hv = op.matvec(v)
        rayleigh = float(torch.dot(hv, v))
        residual = float(torch.linalg.vector_norm(hv - rayleigh * v))
        hv_norm = torch.linalg.vector_norm(hv)
        if hv_norm == 0:
            eigenvalue, converged = 0.0, True
            break
        v = hv / hv_norm
        if eigenvalue is not None and abs(eigenvalue - rayleigh) / (abs(eigenvalue) + 1e-6) < tol:
            converged = True
            break
        eigenvalue = rayleigh
    if not converged:
        warnings.warn(
            f"power iteration NOT converged after {max_iter} products (bn_mode={bn_mode})",
            RuntimeWarning,
            stacklevel=2,
        )
    info = {
        "hvps": op.hvps - hvps_before,
        "converged": converged,
        "residual": residual,
        "iterations": iterations,
        "method": "power",
        "bn_mode": bn_mode,
    }
    return float(eigenvalue), info


def hessian_trace(
    model: nn.Module | None,
    loss_fn: LossFn | None,
    batch: Batch | None,
    n_probes: int = 100,
    bn_mode: str = "train",
    seed: int = 0,
    rtol: float = 0.02,
    *,
    min_probes: int = 10,
    max_hvps: int | None = None,
    max_seconds: float | None = None,
    return_info: bool = False,
    operator: HessianOperator | None = None,
    chunk_size: int | None = None,
) -> tuple[float, float] | tuple[float, float, dict]:
    """Hutchinson's trace estimate with Rademacher probes: (mean, standard error of the mean).

    Stops once the standard error is ≤ rtol·|mean| (after at least `min_probes`), at
    `n_probes`, the most probes drawn (one product each), or when the budget (`max_hvps`
    products, `max_seconds` wall time; at least 2 probes are always drawn) is spent. Reaching
    n_probes without meeting rtol warns; a budget stop does not (it is reported instead).
    rtol=0 always draws n_probes (within the budget). Deterministic given `seed` and the device
    (for a budget in products); no global RNG moves.

    With return_info=True returns (mean, stderr, info): "probes" (drawn), "hvps",
    "converged" (rtol met), "stopped_short" (the budget ended it before rtol or n_probes) and
    "seconds".
    """
    if n_probes < 2 or min_probes < 2:
        raise ValueError(f"n_probes ({n_probes}) and min_probes ({min_probes}) must be >= 2")
    min_probes = min(min_probes, n_probes)
    if rtol < 0:
        raise ValueError(f"rtol must be >= 0, got {rtol}")
    op = _operator(model, loss_fn, batch, bn_mode, operator, chunk_size)
    budget = Budget(op, max_hvps=max_hvps, max_seconds=max_seconds)
    generator = device_generator(seed, op.device)
    samples: list[float] = []
    mean = stderr = float("nan")
    converged = stopped_short = False
    while len(samples) < n_probes:
        if len(samples) >= 2 and budget.exhausted():
            stopped_short = True
            break
        z = random_vector(op.size, generator, dtype=op.dtype, device=op.device, kind="rademacher")
        samples.append(torch.dot(z, op.matvec(z)).item())  # the one host sync of a probe
        if len(samples) >= 2:
            values = np.asarray(samples)
            mean = float(values.mean())
            stderr = float(values.std(ddof=1) / math.sqrt(len(values)))
            if len(values) >= min_probes and rtol > 0 and stderr <= rtol * abs(mean):
                converged = True
                break
    if rtol > 0 and not converged and not stopped_short:
        warnings.warn(
            f"Hessian trace stopped at n_probes={n_probes} with standard error {stderr:.3g} "
            f"> rtol={rtol} x |mean| ({mean:.4g})",
            RuntimeWarning,
            stacklevel=2,
        )
    if not return_info:
        return mean, stderr
    info = {
        "probes": len(samples),
        "hvps": budget.hvps,
        "converged": converged,
        "stopped_short": stopped_short,
        "seconds": budget.seconds,
    }
    return mean, stderr, info


def hessian_density(
    model: nn.Module | None,
    loss_fn: LossFn | None,
    batch: Batch | None,
    steps: int = 80,
    n_probes: int = 4,
    sigma: float | None = None,
    grid: int | np.ndarray = 1000,
    bn_mode: str = "train",
    seed: int = 0,
    *,
    max_hvps: int | None = None,
    max_seconds: float | None = None,
    return_info: bool = False,
    operator: HessianOperator | None = None,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, dict]:
    """Spectral density by stochastic Lanczos quadrature: (grid, density), both float64 arrays.

    Each of `n_probes` unit Gaussian probes runs `steps` Lanczos steps with full
    reorthogonalization (steps products and steps vectors of the parameter count in memory);
    its Ritz values θ_i with weights τ_i (squared first components) are smoothed by a Gaussian
    kernel of width `sigma` (default: 1% of the span of all Ritz values) and averaged over
    probes. An integer `grid` gives that many points spanning the Ritz values with a 5σ margin
    on each side. The density integrates to 1 over the grid (trapezoid rule). Its mean, the
    average of vᵀHv, estimates tr(H)/n; its support covers [λ_min, λ_max] as the extreme Ritz
    values converge.

    The budget (`max_hvps` products, `max_seconds` wall time) is checked before each probe
    after the first, a probe costing `steps` products: at least one probe always runs. With
    return_info=True returns (grid, density, info): "probes" (used), "hvps", "stopped_short"
    (fewer than n_probes because of the budget) and "seconds".
    """
    if steps < 1 or n_probes < 1:
        raise ValueError(f"steps ({steps}) and n_probes ({n_probes}) must be positive")
    op = _operator(model, loss_fn, batch, bn_mode, operator, chunk_size)
    budget = Budget(op, max_hvps=max_hvps, max_seconds=max_seconds)
    generator = device_generator(seed, op.device)
    nodes = slq_nodes(
        op.matvec,
        op.size,
        steps=steps,
        n_probes=n_probes,
        generator=generator,
        dtype=op.dtype,
        device=op.device,
        stop=lambda: budget.exhausted(next_cost=min(steps, op.size)),
    )
    xs, density, _ = gaussian_density(nodes, sigma=sigma, grid=grid)
    if not return_info:
        return xs, density
    info = {
        "probes": len(nodes),
        "hvps": budget.hvps,
        "stopped_short": len(nodes) < n_probes,
        "seconds": budget.seconds,
    }
    return xs, density, info


def gradient_topk_share(
    model: nn.Module | None,
    loss_fn: LossFn | None,
    batch: Batch | None,
    eigenvectors: torch.Tensor | Sequence[torch.Tensor],
    bn_mode: str = "train",
    *,
    operator: HessianOperator | None = None,
    chunk_size: int | None = None,
) -> float:
    """‖P_k g‖² / ‖g‖²: the share of the gradient's squared norm in the span of `eigenvectors`.

    `eigenvectors` are flat vectors, (k, n) or a sequence (e.g. info["eigenvectors"] of
    `hessian_eigenvalues`); they are orthonormalized first, so the projection is exact even if
    they are not quite orthogonal. NaN for a zero gradient.
    """
    if operator is None:
        _check_bn_mode(bn_mode)
        operator = HessianOperator(
            model, loss_fn, batch, bn_mode, chunk_size=chunk_size, second_order=False
        )
    g = _operator(model, loss_fn, batch, bn_mode, operator, chunk_size).gradient
    basis = torch.stack(list(eigenvectors)) if not torch.is_tensor(eigenvectors) else eigenvectors
    basis = basis.reshape(-1, g.numel()).to(device=g.device, dtype=torch.float64)
    q, _ = torch.linalg.qr(basis.T)
    g64 = g.double()
    total = float(g64 @ g64)
    if total == 0:
        return float("nan")
    projected = q.T @ g64
    return float(projected @ projected) / total


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
        records: dict = {
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
        budget_records: dict = {}  # appended after hessian/hvps: existing keys keep their order
        if h.trace:
            mean, stderr, trace_info = hessian_trace(
                None,
                None,
                None,
                n_probes=h.trace_max_probes,
                rtol=h.trace_rtol,
                min_probes=min(10, h.trace_max_probes),
                max_hvps=h.trace_max_hvps,
                bn_mode=h.bn_mode,
                seed=self.seed,
                operator=op,
                return_info=True,
            )
            records["hessian/trace"] = mean
            records["hessian/trace_stderr"] = stderr
            budget_records["hessian/trace_probes"] = int(trace_info["probes"])
            budget_records["hessian/trace_stopped_short"] = bool(trace_info["stopped_short"])
        if h.density:
            grid, density, density_info = hessian_density(
                None,
                None,
                None,
                steps=h.density_steps,
                n_probes=h.density_probes,
                max_hvps=h.density_max_hvps,
                bn_mode=h.bn_mode,
                seed=self.seed,
                operator=op,
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
