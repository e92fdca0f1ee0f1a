"""The spectral density of a `HessianOperator` by stochastic Lanczos quadrature.

Probes are drawn on the operator's device, in its dtype, from a private generator seeded with
`seed` there: deterministic per seed and device, and no global RNG moves.
"""

from __future__ import annotations

import numpy as np

from smoothbench.curvature.cap import Budget
from smoothbench.curvature.lanczos import device_generator, gaussian_density, slq_nodes
from smoothbench.curvature.operator import HessianOperator


def hessian_density(
    op: HessianOperator,
    steps: int = 80,
    n_probes: int = 4,
    sigma: float | None = None,
    grid: int | np.ndarray = 1000,
    seed: int = 0,
    *,
    max_hvps: int | None = None,
    max_seconds: float | None = None,
    return_info: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, dict]:
    """Spectral density of `op`: (grid, density), both float64 arrays.

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
