"""gradient_landscape against a closed-form quadratic and a hand-written loop on a BN CNN."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from smoothbench.probes.landscape import gradient_landscape, landscape_step_sizes

EIGENVALUES = torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.1], dtype=torch.float64)


class Point(nn.Module):
    """Holds θ; its "output" is θ itself, and the loss is ½ θᵀAθ with A passed as the target."""

    def __init__(self, theta: torch.Tensor):
        super().__init__()
        self.theta = nn.Parameter(theta.clone())

    def forward(self, _inputs: torch.Tensor) -> torch.Tensor:
        return self.theta


def quadratic_loss(theta: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return 0.5 * theta @ a @ theta


def spd_matrix(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=generator, dtype=torch.float64))
    return q @ torch.diag(EIGENVALUES) @ q.T, q


def test_step_sizes_span_the_range_times_lr():
    np.testing.assert_allclose(landscape_step_sizes(0.1, 0.5, 4.0, n=4), [0.05, 0.1, 0.2, 0.4])
    np.testing.assert_allclose(
        landscape_step_sizes(2.0, 1.0, 4.0, n=4, spacing="linear"), [2.0, 4.0, 6.0, 8.0]
    )
    assert len(landscape_step_sizes(1e-6, 1 / 100, 30)) == 8


@pytest.mark.parametrize("kwargs", [dict(spacing="cubic"), dict(low=0.0), dict(low=5.0), dict(n=0)])
def test_step_sizes_reject_bad_values(kwargs):
    args = dict(lr=0.1, low=0.5, high=4.0) | kwargs
    with pytest.raises(ValueError):
        landscape_step_sizes(**args)


def test_top_eigenvector_gives_lambda_max():
    a, q = spd_matrix()
    model = Point(q[:, 0] * 0.7)
    out = gradient_landscape(model, quadratic_loss, (torch.zeros(1), a), [0.01, 0.05, 0.2])
    assert out["beta_smoothness"] == pytest.approx(EIGENVALUES[0].item(), rel=1e-5)


def test_quadratic_closed_form():
    a, _ = spd_matrix(1)
    theta = torch.randn(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    etas = landscape_step_sizes(0.1, 0.5, 4.0, n=5)
    out = gradient_landscape(Point(theta), quadratic_loss, (torch.zeros(1), a), etas)

    g = a @ theta
    a_g = (a @ g).norm().item()
    expected_losses = [quadratic_loss(theta, a).item()] + [
        quadratic_loss(theta - eta * g, a).item() for eta in etas
    ]
    np.testing.assert_allclose(out["losses"], expected_losses, rtol=1e-12)
    np.testing.assert_allclose(out["grad_diffs"], etas * a_g, rtol=1e-10)
    np.testing.assert_allclose(out["step_sizes"], etas)
    assert out["grad_norm"] == pytest.approx(g.norm().item(), rel=1e-12)
    assert out["beta_smoothness"] == pytest.approx(a_g / g.norm().item(), rel=1e-10)
    assert out["beta_smoothness"] <= EIGENVALUES[0].item()
    assert out["loss_variation"] == pytest.approx(max(expected_losses) - min(expected_losses))
    low, high = out["grad_predictiveness"]
    assert low == pytest.approx(etas[0] * a_g) and high == pytest.approx(etas[-1] * a_g)


def test_given_gradient_is_the_direction_used():
    a, _ = spd_matrix(2)
    theta = torch.randn(6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    batch = (torch.zeros(1), a)
    # Stepping η along 2g is stepping 2η along g.
    doubled = gradient_landscape(
        Point(theta), quadratic_loss, batch, [0.1, 0.3], grad={"theta": 2 * a @ theta}
    )
    plain = gradient_landscape(Point(theta), quadratic_loss, batch, [0.2, 0.6])
    np.testing.assert_allclose(doubled["losses"], plain["losses"], rtol=1e-12)
    assert doubled["grad_norm"] == pytest.approx(2 * plain["grad_norm"])
    with pytest.raises(ValueError, match="theta"):
        gradient_landscape(Point(theta), quadratic_loss, batch, [0.1], grad={})


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 5, 3, padding=1),
        nn.BatchNorm2d(5),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    ).double()
    with torch.no_grad():  # running statistics that differ from the batch's
        for _ in range(3):
            model(torch.randn(8, 3, 6, 6, dtype=torch.float64) * 3 + 1)
    return model


def hand_written_landscape(model, batch, etas):
    """The definition, one fresh copy of the model per point."""
    x, y = batch
    start = copy.deepcopy(model).train()
    loss = F.cross_entropy(start(x), y)
    g = torch.autograd.grad(loss, list(start.parameters()))
    losses, diffs = [loss.item()], []
    for eta in etas:
        moved = copy.deepcopy(model).train()
        with torch.no_grad():
            for p, p0, gp in zip(moved.parameters(), start.parameters(), g, strict=True):
                p.copy_(p0 - eta * gp)
        loss = F.cross_entropy(moved(x), y)
        g_eta = torch.autograd.grad(loss, list(moved.parameters()))
        losses.append(loss.item())
        diffs.append(
            torch.cat([(a - b).flatten() for a, b in zip(g_eta, g, strict=True)]).norm().item()
        )
    grad_norm = torch.cat([t.flatten() for t in g]).norm().item()
    return np.array(losses), np.array(diffs), grad_norm


def test_matches_hand_written_loop_on_bn_cnn_and_restores_state():
    model = small_cnn().eval()  # the probe must switch to batch statistics itself
    batch = (torch.randn(6, 3, 6, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2]))
    etas = landscape_step_sizes(0.5, 0.5, 4.0, n=4)
    state_before = copy.deepcopy(model.state_dict())
    rng_before = torch.get_rng_state()

    out = gradient_landscape(model, F.cross_entropy, batch, etas)

    losses, diffs, grad_norm = hand_written_landscape(model, batch, etas)
    np.testing.assert_allclose(out["losses"], losses, rtol=1e-10)
    np.testing.assert_allclose(out["grad_diffs"], diffs, rtol=1e-8)
    assert out["grad_norm"] == pytest.approx(grad_norm, rel=1e-10)
    assert out["beta_smoothness"] == pytest.approx(np.max(diffs / (etas * grad_norm)), rel=1e-8)
    assert losses.max() - losses.min() > 1e-3  # the steps are long enough to matter

    for key, value in model.state_dict().items():
        assert torch.equal(value, state_before[key]), key
    assert not any(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_rejects_non_positive_step_sizes():
    a, q = spd_matrix()
    with pytest.raises(ValueError, match="step_sizes"):
        gradient_landscape(Point(q[:, 0]), quadratic_loss, (torch.zeros(1), a), [0.1, 0.0])
