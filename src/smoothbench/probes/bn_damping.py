"""Old name of `smoothbench.probes.bn` (the bn probe), kept for one release."""

from smoothbench.probes.bn import BATCH_NORMS, KEYS, batch_norm_layers, bn_gradient_damping

__all__ = ["BATCH_NORMS", "KEYS", "batch_norm_layers", "bn_gradient_damping"]
