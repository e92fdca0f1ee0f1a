"""scripts/benchmark.py: it times every probe of the registry as a probes= choice runs it, and
prints the predicted and measured cost table at a tiny size."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from smoothbench.probes.registry import probe_names

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_times_every_probe_of_the_registry_and_prints_the_table(capsys):
    bench = _benchmark()
    results = bench.main(
        [
            "scale=smoke",
            "steps=400",
            "probes.max_fraction=0.5",
            "probes.hessian.batch_size=8",
            "--rounds=1",
            "--loop-steps=2",
            "--warmup=1",
            "--device=cpu",
        ]
    )
    assert tuple(r["probe"] for r in results["rows"]) == probe_names()
    out = capsys.readouterr().out
    assert "probes=full / probes=off over 400 steps: predicted" in out
    assert "HVP / step at equal batch" in out
    hessian = next(r for r in results["rows"] if r["probe"] == "hessian")
    assert hessian["measurements"] == 3 and hessian["units"] > 0  # the budget granted HVPs
    predicted = 1 + sum(r["measurements"] * r["units"] for r in results["rows"]) / 400
    assert results["predicted_ratio"] == predicted <= 1.5  # within probes.max_fraction=0.5
