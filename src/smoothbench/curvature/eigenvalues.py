"""Extreme Hessian eigenvalues of a `HessianOperator`, and the gradient's share in their span.

`hessian_eigenvalues` finds the k largest (or most negative) ALGEBRAIC eigenvalues by Lanczos;
`power_iteration` is PyHessian's method, kept only as the baseline the benchmark compares
against. Starting vectors are drawn on the operator's device, in its dtype, from a private
generator seeded with `seed` there: deterministic per seed and device (a CPU and a GPU draw
different numbers for the same seed), and no global RNG moves.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from smoothbench.curvature.lanczos import (
    WHICH,
    device_generator,
    eigsh_extremes,
    lanczos_extremes,
    random_vector,
)
from smoothbench.curvature.operator import HessianOperator

METHODS = ("lanczos", "eigsh")
# Measured on a BN VGG-11 at width 1/8 (145,554 parameters, batch 32, CPU), products to reach
# tol 1e-3 over 3 seeds: k=1 train 21-22 (lanczos) vs 22 (eigsh), eval 13-15 vs 22; k=3 train
# 31-34 vs 40; k=5 44-46 vs 51; at tol 1e-4 24-25 vs 32. The torch Lanczos tests the residual
# after every product, ARPACK only after its first ncv = 20; products dominate the time.
DEFAULT_METHOD = "lanczos"


def _start_vector(op: HessianOperator, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    # Drawn on the operator's device from a private generator: global RNGs intact, no host copy.
    generator = device_generator(seed, op.device)
    return random_vector(op.size, generator, dtype=op.dtype, device=op.device), generator


def hessian_eigenvalues(
    op: HessianOperator,
    k: int = 1,
    tol: float = 1e-3,
    which: str = "largest",
    max_iter: int = 100,
    seed: int = 0,
    *,
    method: str = DEFAULT_METHOD,
    return_eigenvectors: bool = False,
) -> tuple[np.ndarray, dict]:
    """The k largest (or, which="smallest", most negative) ALGEBRAIC eigenvalues of `op`.

    Returns (eigenvalues, info): eigenvalues descending for "largest", ascending for
    "smallest". Unlike power iteration this never reports a large negative eigenvalue as the
    "top" one. Stops when every pair has Ritz residual ‖Hv − λv‖ ≤ tol·|λ|. `max_iter` caps the
    Lanczos steps (one product each; for method="eigsh" roughly, through ARPACK's restarts).
    method: "lanczos" (torch, full reorthogonalization; keeps up to max_iter vectors of the
    parameter count) or "eigsh" (scipy's ARPACK, keeps ~20 vectors, in float64 on the host).
    Deterministic given `seed`; no global RNG moves.

    info: "hvps" (products spent by this call, residual checks included), "residuals"
    (‖Hv − λv‖₂ per eigenvalue), "converged", "method", "bn_mode" (the operator's), "steps",
    "which", "tol", and "eigenvectors" ((k, n) flat unit rows) when return_eigenvectors. Not
    converging within max_iter warns and sets converged=False; the best estimates are still
    returned.
    """
    if which not in WHICH:
        raise ValueError(f"unknown which {which!r}; choose one of: {', '.join(WHICH)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    hvps_before = op.hvps
    start, generator = _start_vector(op, seed)
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
        "bn_mode": op.bn_mode,
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
            f"Hessian eigenvalues NOT converged ({method}, bn_mode={op.bn_mode}, which={which}): "
            f"after {info['hvps']} products the worst relative Ritz residual is {worst:.3g} "
            f"> tol={tol}; raise max_iter (now {max_iter}) or tol",
            RuntimeWarning,
            stacklevel=2,
        )
    return result.values, info


def power_iteration(
    op: HessianOperator, max_iter: int = 100, tol: float = 1e-3, seed: int = 0
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
    hvps_before = op.hvps
    v, _ = _start_vector(op, seed)
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
            f"power iteration NOT converged after {max_iter} products (bn_mode={op.bn_mode})",
            RuntimeWarning,
            stacklevel=2,
        )
    info = {
        "hvps": op.hvps - hvps_before,
        "converged": converged,
        "residual": residual,
        "iterations": iterations,
        "method": "power",
        "bn_mode": op.bn_mode,
    }
    return float(eigenvalue), info


def gradient_topk_share(
    op: HessianOperator, eigenvectors: torch.Tensor | Sequence[torch.Tensor]
) -> float:
    """‖P_k g‖² / ‖g‖²: the share of the gradient's squared norm in the span of `eigenvectors`.

    g is `op.gradient` (an operator built with second_order=False suffices: no graph is kept).
    `eigenvectors` are flat vectors, (k, n) or a sequence (e.g. info["eigenvectors"] of
    `hessian_eigenvalues`); they are orthonormalized first, so the projection is exact even if
    they are not quite orthogonal. NaN for a zero gradient.
    """
    g = op.gradient
    basis = torch.stack(list(eigenvectors)) if not torch.is_tensor(eigenvectors) else eigenvectors
    basis = basis.reshape(-1, g.numel()).to(device=g.device, dtype=torch.float64)
    q, _ = torch.linalg.qr(basis.T)
    g64 = g.double()
    total = float(g64 @ g64)
    if total == 0:
        return float("nan")
    projected = q.T @ g64
    return float(projected @ projected) / total
