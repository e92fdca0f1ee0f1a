"""Old home of `smoothbench.landscape_grid` (post-hoc loss surfaces), kept for one release."""

from smoothbench.landscape_grid import (
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
