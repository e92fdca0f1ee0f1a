"""The trace of a `HessianOperator` by Hutchinson's estimator with Rademacher probes.

Probes are drawn on the operator's device, in its dtype, from a private generator seeded with
`seed` there: deterministic per seed and device, and no global RNG moves.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from smoothbench.curvature.cap import Budget
from smoothbench.curvature.lanczos import device_generator, random_vector
from smoothbench.curvature.operator import HessianOperator


def hessian_trace(
    op: HessianOperator,
    n_probes: int = 100,
    seed: int = 0,
    rtol: float = 0.02,
    *,
    min_probes: int = 10,
    max_hvps: int | None = None,
    max_seconds: float | None = None,
    return_info: bool = False,
) -> tuple[float, float] | tuple[float, float, dict]:
    """Hutchinson's trace estimate of `op`: (mean, standard error of the mean).

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
