"""Every probe of this package, found from its modules: a module that defines `PROBE` is a probe.

Nothing here lists probes (or non-probes) by hand: every public module of the package is
imported, and those whose `PROBE` is a `Probe` subclass are the probes. The config schema
(`config.ProbesConfig`), the value checks (`config.validate`) and the runner
(`build.build_probe_runner`) all read `probe_types()`.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from smoothbench.probes.base import Probe


@cache
def probe_types() -> dict[str, type[Probe]]:
    """{name: Probe subclass} of every probe module, in the order their keys go in a row."""
    import smoothbench.probes as package

    found: dict[str, type[Probe]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        probe = getattr(module, "PROBE", None)
        if not (isinstance(probe, type) and issubclass(probe, Probe)):
            continue
        if probe.name in found and found[probe.name] is not probe:
            raise RuntimeError(f"two probes are named {probe.name!r}")
        found[probe.name] = probe
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


def probe_names() -> tuple[str, ...]:
    """The config keys probes.<name>, in row order."""
    return tuple(probe_types())
