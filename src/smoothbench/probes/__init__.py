"""Measurements of the covariate-shift and smoothness hypotheses, one probe per module.

Every measurement is a function of (model, loss_fn, batch, ...) that leaves parameters, buffers,
module modes, optimizer state and every RNG exactly as it found them (see
`smoothbench.preserve`); each probe module also defines `PROBE`, the class the runner schedules
(see `base.py`). Calling them from a training loop of your own: docs/library.md.

The Hessian functions here build one `HessianOperator` per call; the operator-only algorithms
behind them are in `smoothbench.curvature`. Post-hoc loss surfaces are in `smoothbench.surfaces`.
"""

from smoothbench.probes.activations import activation_stats, choose_units
from smoothbench.probes.bn import bn_gradient_damping
from smoothbench.probes.hessian import (
    HessianOperator,
    gradient_topk_share,
    hessian_density,
    hessian_eigenvalues,
    hessian_trace,
    hvp,
    power_iteration,
)
from smoothbench.probes.ics import covariate_shift, covariate_shift_around_step
from smoothbench.probes.landscape import gradient_landscape, landscape_step_sizes
from smoothbench.probes.schedule import Schedule

__all__ = [
    "HessianOperator",
    "Schedule",
    "activation_stats",
    "bn_gradient_damping",
    "choose_units",
    "covariate_shift",
    "covariate_shift_around_step",
    "gradient_landscape",
    "gradient_topk_share",
    "hessian_density",
    "hessian_eigenvalues",
    "hessian_trace",
    "hvp",
    "landscape_step_sizes",
    "power_iteration",
]
