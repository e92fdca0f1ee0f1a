"""Post-hoc loss surfaces (Li et al. 2018) of a trained model: not probes, computed after training.

`grid` holds the functions, pure and importable from here: `filter_normalized_direction`,
`loss_surface` (the loss on a 1-D or 2-D grid of θ + α·d₁ + β·d₂) and `interpolate_checkpoints`.
`cli` is the `smoothbench-surface` command, which runs them on a run directory's checkpoints
and writes `<run_dir>/surfaces/<name>.npz` (read back by `smoothbench.surfaces.cli.load_surface`).
The in-training measurement along the gradient is a probe: `smoothbench.probes.landscape`.
"""

from smoothbench.surfaces.grid import (
    BN_MODES,
    Direction,
    filter_normalized_direction,
    interpolate_checkpoints,
    loss_surface,
)

__all__ = [
    "BN_MODES",
    "Direction",
    "filter_normalized_direction",
    "interpolate_checkpoints",
    "loss_surface",
]
