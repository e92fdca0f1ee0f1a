"""covariate_shift against G and G' computed by hand from a mixed parameter set."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from smoothbench.preserve import parameters_dict
from smoothbench.probes.ics import covariate_shift


class CalledOutOfOrder(nn.Module):
    """Registration order (main, short, head, stem) differs from call order (stem first)."""

    def __init__(self):
        super().__init__()
        self.main = nn.Linear(4, 4)
        self.short = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)
        self.stem = nn.Linear(5, 4)

    def forward(self, x):
        h = torch.tanh(self.stem(x))
        return self.head(torch.tanh(self.main(h)) + self.short(h))


def mlp_with_bn() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()


def real_step(model, batch, lr=0.5):
    """One SGD step, as training does it; returns the before/after snapshots."""
    before = parameters_dict(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    optimizer.zero_grad()
    F.cross_entropy(model(batch[0]), batch[1]).backward()
    optimizer.step()
    return before, parameters_dict(model)


def hand_gradient(model, batch, params, name):
    """∇_name L at `params` (a full dict), on a copy of the model in training mode."""
    reference = copy.deepcopy(model).train()
    leaves = {n: v.clone().requires_grad_(n == name) for n, v in params.items()}
    loss = F.cross_entropy(functional_call(reference, leaves, (batch[0],)), batch[1])
    (grad,) = torch.autograd.grad(loss, [leaves[name]])
    return grad


def expected_shift(model, batch, before, after, name, earlier):
    mixed = {n: (after[n] if n in earlier else before[n]) for n in before}
    g = hand_gradient(model, batch, before, name)
    g_shifted = hand_gradient(model, batch, mixed, name)
    cosine = (g * g_shifted).sum() / (g.norm() * g_shifted.norm())
    return (g - g_shifted).norm().item(), cosine.item()


def make_batch(n_in=5, n=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=generator)


def test_matches_hand_computed_gradients_on_mlp_with_bn():
    torch.manual_seed(0)
    model = mlp_with_bn()
    batch = make_batch()
    before, after = real_step(model, batch)
    grads_found = {n: p.grad.clone() for n, p in model.named_parameters()}
    buffers_found = {n: b.clone() for n, b in model.named_buffers()}
    rng_found = torch.get_rng_state()

    out = covariate_shift(model, F.cross_entropy, batch, before, after)

    assert set(out) == {"0.weight", "3.weight"}
    # The first layer has nothing before it: G' = G.
    assert out["0.weight"]["l2"] == pytest.approx(0.0, abs=1e-12)
    assert out["0.weight"]["cosine"] == pytest.approx(1.0, abs=1e-12)
    # Layer 3 sees the updated Linear 0 and BN 1, but its own bias keeps its old value.
    l2, cosine = expected_shift(
        model, batch, before, after, "3.weight", {"0.weight", "0.bias", "1.weight", "1.bias"}
    )
    assert l2 > 1e-3
    assert out["3.weight"]["l2"] == pytest.approx(l2, rel=1e-6)
    assert out["3.weight"]["cosine"] == pytest.approx(cosine, rel=1e-6)

    for n, p in model.named_parameters():
        assert torch.equal(p, after[n]), n
        assert torch.equal(p.grad, grads_found[n]), n
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers_found[n]), n
    assert torch.equal(torch.get_rng_state(), rng_found)


def test_forward_order_is_call_order_not_registration_order():
    torch.manual_seed(1)
    model = CalledOutOfOrder().double()
    batch = make_batch()
    before, after = real_step(model, batch)
    layers = {"main": "main.weight", "short": "short.weight", "stem": "stem.weight"}

    out = covariate_shift(model.eval(), F.cross_entropy, batch, before, after, layers=layers)

    stem = {"stem.weight", "stem.bias"}
    for label, earlier in [("main", stem), ("short", stem | {"main.weight", "main.bias"})]:
        l2, cosine = expected_shift(model, batch, before, after, layers[label], earlier)
        assert l2 > 1e-3
        assert out[label]["l2"] == pytest.approx(l2, rel=1e-6)
        assert out[label]["cosine"] == pytest.approx(cosine, rel=1e-6)
    assert out["stem"]["l2"] == pytest.approx(0.0, abs=1e-12)
    assert not model.training


def test_rejects_unknown_layers_and_incomplete_snapshots():
    model = mlp_with_bn()
    batch = make_batch()
    before, after = real_step(model, batch)
    with pytest.raises(ValueError, match="9.weight"):
        covariate_shift(model, F.cross_entropy, batch, before, after, layers={"x": "9.weight"})
    del before["1.bias"]
    with pytest.raises(ValueError, match="1.bias"):
        covariate_shift(model, F.cross_entropy, batch, before, after)


def test_relative_l2_is_the_distance_over_the_gradients_norm():
    torch.manual_seed(2)
    model = mlp_with_bn()
    batch = make_batch(seed=3)
    before, after = real_step(model, batch)
    out = covariate_shift(model, F.cross_entropy, batch, before, after)
    earlier = {"0.weight", "0.bias", "1.weight", "1.bias"}
    mixed = {n: (after[n] if n in earlier else before[n]) for n in before}
    g = hand_gradient(model, batch, before, "3.weight")
    g_shifted = hand_gradient(model, batch, mixed, "3.weight")
    expected = torch.linalg.vector_norm(g - g_shifted) / torch.linalg.vector_norm(g)
    assert expected > 1e-3
    assert out["3.weight"]["l2_rel"] == pytest.approx(expected.item(), rel=1e-6)
    assert out["3.weight"]["l2_rel"] == pytest.approx(
        out["3.weight"]["l2"] / g.norm().item(), rel=1e-9
    )
    assert out["0.weight"]["l2_rel"] == pytest.approx(0.0, abs=1e-12)  # G' = G


def test_relative_l2_is_nan_when_the_gradient_is_zero():
    """Before the step every ReLU is dead, so G of the last layer is 0 while G' is not."""
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    batch = make_batch()
    before = parameters_dict(model)
    before["0.weight"] = torch.zeros_like(before["0.weight"])
    before["0.bias"] = torch.full_like(before["0.bias"], -1.0)
    after = parameters_dict(model)
    after["0.bias"] = torch.ones_like(after["0.bias"])
    with torch.no_grad():
        model[0].bias.copy_(after["0.bias"])
    out = covariate_shift(model, F.cross_entropy, batch, before, after, layers={"fc": "2.weight"})
    assert out["fc"]["l2"] > 1e-3
    assert math.isnan(out["fc"]["l2_rel"]) and math.isnan(out["fc"]["cosine"])
