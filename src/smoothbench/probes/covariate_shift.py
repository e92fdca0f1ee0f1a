"""Old name of `smoothbench.probes.ics` (the ics probe), kept for one release."""

from smoothbench.probes.ics import covariate_shift

__all__ = ["covariate_shift"]
