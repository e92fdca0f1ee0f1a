"""grad_angle against gradients taken with .backward() on a copy of the model, in numpy."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import read_metrics
from torch import nn

from smoothbench.probes.base import ProbeContext
from smoothbench.probes.grad_angle import GradAngleProbe, GradAngleSettings
from smoothbench.train import train


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(inplace=True), nn.Linear(8, 3)
    ).train()


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)


def gradient_by_backward(model: nn.Module, data) -> np.ndarray:
    twin = copy.deepcopy(model).train()
    F.cross_entropy(twin(data[0]), data[1]).backward()
    return np.concatenate([p.grad.numpy().ravel() for p in twin.parameters()]).astype(np.float64)


def probe_for(model: nn.Module) -> GradAngleProbe:
    return GradAngleProbe(GradAngleSettings(), ProbeContext(model=model, loss_fn=F.cross_entropy))


def take_a_step(model: nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=0.1)


def test_cosine_between_successive_gradients_matches_numpy():
    model = net()
    probe = probe_for(model)
    first, second = batch(1), batch(2)
    g1 = gradient_by_backward(model, first)
    assert probe.measure(0, first) == {}  # nothing to compare with yet
    take_a_step(model)
    g2 = gradient_by_backward(model, second)
    records = probe.measure(5, second)
    expected = g1 @ g2 / (np.linalg.norm(g1) * np.linalg.norm(g2))
    assert records["grad_angle/cosine"] == pytest.approx(expected, rel=1e-5)
    assert records["grad_angle/degrees"] == pytest.approx(
        math.degrees(math.acos(expected)), rel=1e-4
    )
    assert 0 < records["grad_angle/degrees"] < 180


def test_same_gradient_twice_is_cosine_one_and_the_model_is_untouched():
    model = net()
    before = copy.deepcopy(model.state_dict())
    probe = probe_for(model)
    probe.measure(0, batch(1))
    records = probe.measure(1, batch(1))
    assert records["grad_angle/cosine"] == pytest.approx(1.0, abs=1e-6)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats included
    assert all(p.grad is None for p in model.parameters())


def test_resumed_probe_continues_from_its_state():
    model = net()
    probe = probe_for(model)
    probe.measure(0, batch(1))
    resumed = probe_for(model)
    resumed.load_state_dict(probe.state_dict())
    assert resumed.measure(1, batch(2)) == probe.measure(1, batch(2))


@pytest.mark.slow
def test_grad_angle_in_a_training_run(smoke, tmp_path):
    cfg = smoke(
        "probes=off",
        "steps=3",
        "probes.grad_angle.schedule.kind=every",
        "probes.grad_angle.schedule.every=1",
    )
    train(cfg, tmp_path)
    rows = read_metrics(tmp_path)
    assert "grad_angle/cosine" not in rows[0]  # the first measurement has nothing to compare
    assert all(-1 <= rows[s]["grad_angle/cosine"] <= 1 for s in (1, 2))
