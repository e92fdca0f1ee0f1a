"""Curvature of one batch's loss: the Hessian as an operator, and what is computed from it.

Build the operator once, then ask it as many questions as needed (curvlinops-style: every
function takes the operator, nothing else about the model):

    op = HessianOperator(model, loss_fn, batch, bn_mode="train")   # one first-order graph
    values, info = hessian_eigenvalues(op, k=1)                    # λ_max (which="smallest": λ_min)
    trace, stderr = hessian_trace(op, n_probes=20, rtol=0)         # Hutchinson
    grid, density = hessian_density(op, steps=80)                  # stochastic Lanczos quadrature
    op.matvec(v)                                                   # H v for a flat vector v

Modules: `operator` (HessianOperator), `eigenvalues` (Lanczos λ_max/λ_min, the gradient's share
in the top eigenvectors, PyHessian's power iteration as a baseline), `trace` (Hutchinson),
`xtrace` (XTrace), `density` (stochastic Lanczos quadrature), `budget` (a cap on products or
time), `lanczos` (the solvers, on any symmetric matrix-vector product). Nothing here knows about
probes, schedules or runs; the `hessian` probe is built on it.
"""

from smoothbench.curvature.density import hessian_density
from smoothbench.curvature.eigenvalues import (
    gradient_topk_share,
    hessian_eigenvalues,
    power_iteration,
)
from smoothbench.curvature.operator import BN_MODES, HessianOperator
from smoothbench.curvature.trace import hessian_trace
from smoothbench.curvature.xtrace import TraceEstimate, xtrace

__all__ = [
    "BN_MODES",
    "HessianOperator",
    "TraceEstimate",
    "gradient_topk_share",
    "hessian_density",
    "hessian_eigenvalues",
    "hessian_trace",
    "power_iteration",
    "xtrace",
]
