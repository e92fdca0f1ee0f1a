"""Measurements of the covariate-shift and smoothness hypotheses, one probe per module.

Every measurement is a function of (model, loss_fn, batch, ...) that leaves parameters, buffers,
module modes, optimizer state and every RNG exactly as it found them (see `state.preserved`);
each probe module also defines `PROBE`, the class the runner schedules (see `base.py`).
Calling them from a training loop of your own: docs/library.md.

`filter_normalized_direction`, `loss_surface` and `interpolate_checkpoints` (post-hoc loss
surfaces, not probes) live in `smoothbench.landscape_grid`; they are still importable from here.
"""

# The old module `probes.covariate_shift` bears the function's name, and importing a submodule
# sets the package's attribute to it: loaded here first (the function below then takes the name
# back), a later import of it, such as the registry's, finds it loaded and leaves the name alone.
from smoothbench.probes import covariate_shift as _old_covariate_shift_module  # noqa: F401
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

# post-hoc surfaces moved to smoothbench.landscape_grid, which imports probes.state: resolved on
# first use, so neither package imports the other while it is being initialized
_LANDSCAPE_GRID = ("filter_normalized_direction", "interpolate_checkpoints", "loss_surface")


def __getattr__(name: str):
    if name in _LANDSCAPE_GRID:
        from smoothbench import landscape_grid

        return getattr(landscape_grid, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
