"""examples/own_loop.py: it runs, prints finite numbers, and its probes leave no trace."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO

EXAMPLE = REPO / "examples" / "own_loop.py"
# One of each measurement the example promises (docs/library.md)
EXPECTED = [
    "landscape/loss_variation",
    "landscape/beta_smoothness",
    "hessian/lambda_max",
    "hessian/trace",
    "ics/conv1/cosine",
    "ics/layer2/l2_rel",
    "ics/fc/l2",
]


def run_example(*args: str) -> dict[str, str]:
    """Run the example as a user would; its `key = value` lines as a dict."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore::RuntimeWarning"},
    )
    assert done.returncode == 0, done.stderr
    lines = [line.partition(" = ") for line in done.stdout.splitlines() if " = " in line]
    return {key: value for key, _, value in lines}


@pytest.mark.slow
def test_example_prints_finite_probes_and_the_same_trajectory_as_without_them():
    probed = run_example()
    plain = run_example("--no-probes")

    for key in EXPECTED:
        assert math.isfinite(float(probed[f"step 1 {key}"])), key
    measured = [key for key in probed if key.startswith("step ")]
    assert all(math.isfinite(float(probed[key])) for key in measured)
    assert not any(key.startswith("step ") for key in plain)
    # The layer before which nothing moved has no shift (paper's definition).
    assert float(probed["step 1 ics/conv1/l2"]) == 0.0
    # Bitwise: losses, model and optimizer tensors, modes and random states (the digest).
    assert probed["losses"] == plain["losses"]
    assert probed["trajectory"] == plain["trajectory"]


def load_example():
    spec = importlib.util.spec_from_file_location("own_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _eval_mode(model, batch):
    model.layer1.eval()


def _global_draw(model, batch):
    torch.rand(1)


def _grad(model, batch):
    model.fc.weight.grad.mul_(2.0)


def _bn_statistics(model, batch):
    model(batch[0])  # a forward in training mode moves every running mean and variance


@pytest.mark.slow
@pytest.mark.parametrize("leak", [_eval_mode, _global_draw, _grad, _bn_statistics])
def test_the_digest_catches_a_probe_that_leaves_a_trace(leak, monkeypatch):
    """The check above means something: each way a probe could disturb training changes it."""
    example = load_example()
    clean = example.digest(*example.train(3, set()))

    def leaky_probe(model, batch):
        leak(model, batch)
        return {}

    monkeypatch.setattr(example, "probe", leaky_probe)
    monkeypatch.setattr(example, "ICS_LAYERS", {"fc": "fc.weight"})
    assert example.digest(*example.train(3, {1})) != clean
