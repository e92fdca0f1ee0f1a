"""bn_gradient_damping against gradients captured by hand and the Thm 4.1 identity."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from smoothbench.probes.bn import bn_gradient_damping


def randomize_affine(model: nn.Module, generator: torch.Generator) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.3, 2.0, generator=generator)
                m.bias.normal_(0.0, 0.5, generator=generator)
    return model


def mlp(eps: float) -> nn.Module:
    # ReLU(inplace=True) overwrites the BN output: the probe must still see ∇ of the BN output.
    return nn.Sequential(
        nn.Linear(5, 7), nn.BatchNorm1d(7, eps=eps), nn.ReLU(inplace=True), nn.Linear(7, 3)
    )


def cnn(eps: float) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4, eps=eps),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 5, 3, padding=1),
        nn.BatchNorm2d(5, eps=eps),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    )


def build(kind: str, eps: float, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = randomize_affine((mlp if kind == "mlp" else cnn)(eps).double(), generator)
    shape = (12, 5) if kind == "mlp" else (4, 3, 5, 5)
    x = torch.randn(*shape, generator=generator, dtype=torch.float64)
    return model, (x, torch.randint(0, 3, (shape[0],), generator=generator))


def manual_capture(model: nn.Sequential, batch):
    """Run the layers one by one, keeping each BN's input y and output z and their gradients."""
    model = copy.deepcopy(model).train()
    h, captured = batch[0], {}
    for name, layer in model.named_children():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            y = h if h.requires_grad else h.clone().requires_grad_(True)
            y.retain_grad()
            z = layer(y)
            z.retain_grad()
            captured[name] = (layer, y, z)
            h = z
        elif isinstance(layer, nn.ReLU):
            h = F.relu(h)  # out of place: z keeps its own gradient
        else:
            h = layer(h)
    F.cross_entropy(h, batch[1]).backward()
    return captured


def per_channel(t):
    return t.detach().movedim(1, 0).reshape(t.shape[1], -1)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_matches_manual_gradients(kind):
    model, batch = build(kind, eps=1e-5)
    out = bn_gradient_damping(model, F.cross_entropy, batch)
    captured = manual_capture(model, batch)
    assert set(out) == set(captured)
    for name, (layer, y, z) in captured.items():
        sigma = (per_channel(y).var(dim=1, unbiased=False) + layer.eps).sqrt()
        gamma_over_sigma = (layer.weight.detach() / sigma).pow(2).mean().sqrt().item()
        assert out[name]["grad_in_norm"] == pytest.approx(y.grad.norm().item(), rel=1e-10)
        assert out[name]["grad_out_norm"] == pytest.approx(z.grad.norm().item(), rel=1e-10)
        ratio = (y.grad.norm() / z.grad.norm()).item()
        assert out[name]["grad_ratio"] == pytest.approx(ratio, rel=1e-10)
        assert out[name]["gamma_over_sigma"] == pytest.approx(gamma_over_sigma, rel=1e-10)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_theorem_identity_holds_as_eps_vanishes(kind):
    model, batch = build(kind, eps=1e-12, seed=3)
    out = bn_gradient_damping(model, F.cross_entropy, batch)
    for name, row in out.items():
        assert row["identity_rhs"] == pytest.approx(row["grad_in_norm"], rel=1e-5), name
        assert row["grad_ratio"] < 10  # a real measurement, not a degenerate one
        assert row["grad_in_norm"] > 0


def test_right_hand_side_exceeds_by_the_eps_term():
    """With a large ε the theorem's right-hand side is an upper bound, off by a known amount."""
    model, batch = build("cnn", eps=0.5, seed=5)
    out = bn_gradient_damping(model, F.cross_entropy, batch)
    for name, (layer, y, z) in manual_capture(model, batch).items():
        y_c, g_c = per_channel(y), per_channel(z.grad)
        m = y_c.shape[1]
        var = y_c.var(dim=1, unbiased=False)
        y_hat = (y_c - y_c.mean(dim=1, keepdim=True)) / (var + layer.eps).sqrt()[:, None]
        gap = (
            layer.weight.detach().pow(2)
            / (var + layer.eps)
            * (g_c * y_hat).sum(1).pow(2)
            / m
            * layer.eps
            / (var + layer.eps)
        ).sum()
        rhs_squared = out[name]["identity_rhs"] ** 2
        assert rhs_squared - y.grad.norm().item() ** 2 == pytest.approx(gap.item(), rel=1e-6)
        assert gap.item() > 1e-3 * rhs_squared  # the gap is really there


def test_norm_on_the_raw_input_and_state_restored():
    torch.manual_seed(2)
    model = nn.Sequential(nn.BatchNorm1d(5), nn.Linear(5, 3)).double()
    with torch.no_grad():
        model(torch.randn(16, 5, dtype=torch.float64) + 2)  # non-default running statistics
    model.eval()
    batch = (torch.randn(10, 5, dtype=torch.float64), torch.randint(0, 3, (10,)))
    state = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()

    out = bn_gradient_damping(model, F.cross_entropy, batch, layers={"input_bn": model[0]})

    (layer, y, z) = manual_capture(model, batch)["0"]
    assert out["input_bn"]["grad_ratio"] == pytest.approx((y.grad.norm() / z.grad.norm()).item())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_rejects_a_layer_the_model_never_calls():
    model, batch = build("mlp", eps=1e-5)
    with pytest.raises(ValueError, match="stray"):
        bn_gradient_damping(model, F.cross_entropy, batch, layers={"stray": nn.BatchNorm1d(7)})


def test_bn_probe_records_both_sides_of_thm_4_1(smoke):
    from smoothbench.build import build_data_from_config, build_model_from_config, loss_fn_for
    from smoothbench.models import numbered_layers
    from smoothbench.probes.base import ProbeContext
    from smoothbench.probes.bn import BnProbe, BnSettings

    cfg = smoke("probes=off")
    data = build_data_from_config(cfg)
    torch.manual_seed(0)
    model = build_model_from_config(cfg)
    loss_fn = loss_fn_for(cfg)
    batch = data.batch(0, 16, 0)
    records = BnProbe(BnSettings(), ProbeContext(model=model, loss_fn=loss_fn)).measure(0, batch)
    refs = [r for r in numbered_layers(model) if isinstance(r.norm, nn.BatchNorm2d)]
    direct = bn_gradient_damping(model, loss_fn, batch, {r.name: r.norm for r in refs})
    assert refs and len(records) == 4 * len(refs)
    for r in refs:
        for key in ("grad_ratio", "gamma_over_sigma", "grad_in_norm", "identity_rhs"):
            assert records[f"bn/{r.name}/{key}"] == direct[r.name][key]
        # the claims registry's check: the input gradient is at most the theorem's bound
        assert records[f"bn/{r.name}/grad_in_norm"] <= records[f"bn/{r.name}/identity_rhs"] * 1.001
