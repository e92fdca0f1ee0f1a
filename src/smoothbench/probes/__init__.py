"""Measurements of the covariate-shift and smoothness hypotheses, one quantity per module.

Every probe is a function of (model, loss_fn, batch, ...) that leaves parameters, buffers, module
modes, optimizer state and every RNG exactly as it found them (see `state.preserved`).
"""

from smoothbench.probes.activations import activation_stats, choose_units
from smoothbench.probes.bn import bn_gradient_damping
from smoothbench.probes.hessian import (
    gradient_topk_share,
    hessian_density,
    hessian_eigenvalues,
    hessian_trace,
    hvp,
    power_iteration,
)
from smoothbench.probes.ics import covariate_shift
from smoothbench.probes.landscape import gradient_landscape, landscape_step_sizes
from smoothbench.probes.schedule import Schedule
from smoothbench.probes.surface import (
    filter_normalized_direction,
    interpolate_checkpoints,
    loss_surface,
)

__all__ = [
    "Schedule",
    "activation_stats",
    "bn_gradient_damping",
    "choose_units",
    "covariate_shift",
    "filter_normalized_direction",
    "gradient_landscape",
    "gradient_topk_share",
    "hessian_density",
    "hessian_eigenvalues",
    "hessian_trace",
    "hvp",
    "interpolate_checkpoints",
    "landscape_step_sizes",
    "loss_surface",
    "power_iteration",
]
