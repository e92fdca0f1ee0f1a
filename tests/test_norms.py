"""Normalizations against hand computations: BatchNorm (§1), lp norms and noisy BN (§3)."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from smoothbench.models import (
    NOISE_DEFAULTS,
    NORM_NAMES,
    NORMS,
    LpNorm,
    NoisyBatchNorm,
    StepNoise,
    build_model,
    make_norm,
    numbered_layers,
    set_noise_step,
)
from smoothbench.models.norms import noise_generator_seed

EPS = 1e-5
REPO_CONF = Path(__file__).resolve().parents[1] / "conf"


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def randomize_affine(module: nn.Module, seed: int = 1) -> None:
    with torch.no_grad():
        module.weight.copy_(1 + 0.5 * randn(*module.weight.shape, seed=seed))
        module.bias.copy_(randn(*module.bias.shape, seed=seed + 1))


def per_unit(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view((1, -1) + (1,) * (like.dim() - 2))


# --- BatchNorm (torch's), docs/science.md §1 ----------------------------------------------


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 5)], ids=["linear", "conv"])
def test_batch_norm_matches_hand_computation(shape):
    norm = make_norm("batch", shape[1], spatial=len(shape) == 4).double()
    randomize_affine(norm)
    gamma, beta = norm.weight.detach(), norm.bias.detach()
    dims = [0, *range(2, len(shape))]
    m = math.prod(shape) // shape[1]  # values per unit
    running_mean, running_var = torch.zeros(shape[1]), torch.ones(shape[1])
    for step in range(2):
        x = 3 * randn(*shape, seed=10 + step) + 2
        mean, var = x.mean(dims), ((x - per_unit(x.mean(dims), x)) ** 2).mean(dims)
        expected = per_unit(gamma, x) * (x - per_unit(mean, x)) / per_unit(
            (var + EPS).sqrt(), x
        ) + per_unit(beta, x)
        assert torch.allclose(norm(x), expected, atol=1e-10)
        # torch updates the running variance with the UNBIASED batch variance (m / (m - 1)).
        running_mean = 0.9 * running_mean + 0.1 * mean
        running_var = 0.9 * running_var + 0.1 * var * m / (m - 1)
        assert torch.allclose(norm.running_mean, running_mean, atol=1e-12)
        assert torch.allclose(norm.running_var, running_var, atol=1e-12)
    norm.eval()
    x = randn(*shape, seed=20)
    expected = per_unit(gamma, x) * (x - per_unit(running_mean, x)) / per_unit(
        (running_var + EPS).sqrt(), x
    ) + per_unit(beta, x)
    assert torch.allclose(norm(x), expected, atol=1e-10)


@pytest.mark.parametrize("norm", ["batch", "noisy_batch", "l1", "l2", "linf"])
def test_batch_statistics_on_one_value_per_unit_raise(norm):
    linear = make_norm(norm, 5, spatial=False)
    with pytest.raises(ValueError, match="more than 1 value per"):
        linear(torch.randn(1, 5))
    conv = make_norm(norm, 5, spatial=True)
    with pytest.raises(ValueError, match="more than 1 value per"):
        conv(torch.randn(1, 5, 1, 1))
    assert conv(torch.randn(1, 5, 2, 2)).shape == (1, 5, 2, 2)  # 4 positions: fine
    linear.eval()
    assert linear(torch.randn(1, 5)).shape == (1, 5)  # eval mode uses running statistics


# --- lp normalizations, docs/science.md §3 ----------------------------------------------------


def hand_lp_norm(x, p, gamma, beta, mean=None, scale=None):
    """y = γ (x - μ) / (s + eps) + β by loops; μ, s from the batch unless given."""
    n_samples, channels = x.shape[:2]
    if mean is None:
        mean = [sum(x[:, c].flatten().tolist()) / x[:, c].numel() for c in range(channels)]
    centered = x.clone()
    for c in range(channels):
        centered[:, c] -= mean[c]
    if scale is None:
        norms = []
        for n in range(n_samples):
            values = [abs(v) for v in centered[n].flatten().tolist()]
            if p == math.inf:
                norms.append(max(values))
            else:
                norms.append((sum(v**p for v in values) / len(values)) ** (1 / p))
        scale = sum(norms) / n_samples
    y = torch.empty_like(x)
    for c in range(channels):
        y[:, c] = gamma[c] * centered[:, c] / (scale + EPS) + beta[c]
    return y, mean, scale


@pytest.mark.parametrize("p, name", [(1, "l1"), (2, "l2"), (math.inf, "linf")])
@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 3, 3)], ids=["linear", "conv"])
def test_lp_norm_matches_hand_computation_train_and_eval(p, name, shape):
    norm = make_norm(name, shape[1], spatial=len(shape) == 4).double()
    assert isinstance(norm, LpNorm)
    randomize_affine(norm)
    gamma, beta = norm.weight.tolist(), norm.bias.tolist()
    running_mean, running_scale = [0.0] * shape[1], 1.0
    for step in range(2):
        x = 2 * randn(*shape, seed=30 + step) - 1
        expected, mean, scale = hand_lp_norm(x, p, gamma, beta)
        assert torch.allclose(norm(x), expected, atol=1e-10)
        running_mean = [0.9 * r + 0.1 * b for r, b in zip(running_mean, mean, strict=True)]
        running_scale = 0.9 * running_scale + 0.1 * scale
        assert norm.running_mean.tolist() == pytest.approx(running_mean, abs=1e-12)
        assert norm.running_scale.item() == pytest.approx(running_scale, abs=1e-12)
    norm.eval()
    x = randn(*shape, seed=40)
    expected, _, _ = hand_lp_norm(x, p, gamma, beta, running_mean, running_scale)
    assert torch.allclose(norm(x), expected, atol=1e-10)


@pytest.mark.parametrize("p", [1, 2, math.inf])
def test_lp_norm_gradient_matches_finite_differences(p):
    norm = LpNorm(3, p).double()
    randomize_affine(norm)
    x = randn(4, 3, 2, 2, seed=5).requires_grad_()
    assert torch.autograd.gradcheck(norm, (x,))


@pytest.mark.parametrize("p", [1, 2, math.inf])
def test_lp_norm_ignores_layer_scale_and_unit_shifts_but_keeps_unit_variances(p):
    norm = LpNorm(3, p, eps=0.0).double()
    x = randn(6, 3, 2, 2, seed=6)
    shift = per_unit(torch.tensor([5.0, -2.0, 0.5], dtype=torch.float64), x)
    assert torch.allclose(norm(7 * x + shift), norm(x), atol=1e-10)
    # One scale for the whole layer: a unit that is 10x larger stays 10x larger.
    uneven = x * per_unit(torch.tensor([1.0, 10.0, 1.0], dtype=torch.float64), x)
    out = norm(uneven).detach()
    ratio = (out[:, 1].std() / out[:, 0].std()).item()
    assert ratio == pytest.approx(10 * (x[:, 1].std() / x[:, 0].std()).item())


# --- noisy BatchNorm, paper Algorithm 1 -------------------------------------------------------


def injected_noise(layer: NoisyBatchNorm, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, m) of the current step, read off the output: with γ = 0 the BN output is β."""
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
        shift = layer(x)  # s * 0 + m
        layer.bias.fill_(1.0)
        scale = layer(x) - shift  # (s * 1 + m) - m
    return scale, shift


@pytest.mark.parametrize(
    "noise",
    [{"n_mu": 0.5, "n_sigma": 1.25, "r_mu": 0.1, "r_sigma": 0.1},
     {"n_mu": 1.0, "n_sigma": 2.0, "r_mu": 0.3, "r_sigma": 0.2}],
)  # fmt: skip
def test_noise_moments_match_algorithm_1(noise):
    layer = NoisyBatchNorm(64, **noise, noise_seed=1)
    x = torch.randn(2, 64, 2, 2)
    scales, shifts = [], []
    for step in range(300):
        layer.noise_step = step
        s, m = injected_noise(layer, x)
        scales.append(s)
        shifts.append(m)
    s, m = torch.stack(scales).double(), torch.stack(shifts).double()
    n_mu, n_sigma, r_mu, r_sigma = noise["n_mu"], noise["n_sigma"], noise["r_mu"], noise["r_sigma"]
    # m = μ_j + U(-r_mu, r_mu), μ_j ~ U(-n_mu, n_mu); s = σ_j + N(0, r_sigma²), σ_j ~ U(1, n_sigma)
    assert m.mean().item() == pytest.approx(0.0, abs=0.01 * n_mu / 0.5)
    assert m.var().item() == pytest.approx(n_mu**2 / 3 + r_mu**2 / 3, rel=0.05)
    assert s.mean().item() == pytest.approx((1 + n_sigma) / 2, abs=0.005 * n_sigma)
    assert s.var().item() == pytest.approx((n_sigma - 1) ** 2 / 12 + r_sigma**2, rel=0.05)
    assert m.abs().max() <= n_mu + r_mu


def test_conv_noise_is_per_position_around_a_per_channel_draw():
    layer = NoisyBatchNorm(4, noise_seed=2)
    s, m = injected_noise(layer, torch.randn(4, 4, 16, 16))  # 1024 positions per channel
    within_m = m.transpose(0, 1).flatten(1)  # (channels, positions)
    within_s = s.transpose(0, 1).flatten(1)
    assert within_m.var(dim=1).tolist() == pytest.approx([0.1**2 / 3] * 4, rel=0.15)
    assert within_s.var(dim=1).tolist() == pytest.approx([0.1**2] * 4, rel=0.15)
    # The channel centres μ_j, σ_j are distinct draws from U(-0.5, 0.5) and U(1, 1.25).
    centres_m, centres_s = within_m.mean(dim=1), within_s.mean(dim=1)
    assert centres_m.abs().max() < 0.5 + 0.01 and centres_m.std() > 0.02
    assert 1 - 0.01 < centres_s.min() and centres_s.max() < 1.25 + 0.01


def test_zero_noise_is_plain_batch_norm():
    layer = NoisyBatchNorm(3, n_mu=0.0, n_sigma=1.0, r_mu=0.0, r_sigma=0.0).double()
    randomize_affine(layer)
    x = randn(8, 3, seed=3)
    mean, var = x.mean(0), x.var(0, unbiased=False)
    expected = layer.weight * (x - mean) / (var + EPS).sqrt() + layer.bias
    assert torch.allclose(layer(x), expected, atol=1e-10)


def test_noise_is_fixed_within_a_step_and_changes_between_steps():
    model = build_model("vgg11", norm="noisy_batch", width=1 / 16)
    x = torch.randn(2, 3, 32, 32)
    first = model(x)  # before any set_noise_step: step 0
    assert torch.equal(model(x), first)
    set_noise_step(model, 0)
    assert torch.equal(model(x), first)
    set_noise_step(model, 1)
    second = model(x)
    assert not torch.allclose(second, first)
    assert torch.equal(model(x), second)
    set_noise_step(model, 0)
    assert torch.equal(model(x), first)


def test_noise_never_touches_the_global_rng():
    model = build_model("resnet20", norm="noisy_batch", width=1 / 8)
    x = torch.randn(2, 3, 32, 32)
    before = torch.get_rng_state()
    for step in range(3):
        set_noise_step(model, step)
        model(x)
    assert torch.equal(torch.get_rng_state(), before)


def test_each_noisy_layer_has_its_own_id_and_noise():
    model = build_model("dln", norm="noisy_batch", depth=6, noise_seed=4)
    layers = [m for m in model.modules() if isinstance(m, NoisyBatchNorm)]
    assert [m.layer_id for m in layers] == list(range(5))
    assert {m.noise_seed for m in layers} == {4}
    set_noise_step(model, 9)
    assert {m.noise_step for m in layers} == {9}
    x = torch.randn(16, 10)
    first, second = injected_noise(layers[0], x), injected_noise(layers[1], x)
    assert not torch.allclose(first[1], second[1])


def test_same_seed_and_step_give_the_same_noise_after_rebuilding():
    def outputs(noise_seed: int, weights_seed: int) -> torch.Tensor:
        torch.manual_seed(weights_seed)
        model = build_model("vgg11", norm="noisy_batch", width=1 / 16, noise_seed=noise_seed)
        model.load_state_dict(reference.state_dict())
        set_noise_step(model, 5)
        return model(torch.ones(2, 3, 32, 32))

    reference = build_model("vgg11", norm="noisy_batch", width=1 / 16)
    assert torch.equal(outputs(3, weights_seed=0), outputs(3, weights_seed=1))
    assert not torch.allclose(outputs(3, weights_seed=0), outputs(4, weights_seed=0))


def test_noise_keeps_no_state_in_the_state_dict_and_survives_deepcopy():
    noisy = build_model("vgg11", norm="noisy_batch", width=1 / 16)
    plain = build_model("vgg11", norm="batch", width=1 / 16)
    assert noisy.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(2, 3, 32, 32)
    set_noise_step(noisy, 2)
    out = noisy(x)
    twin = copy.deepcopy(noisy)
    assert torch.equal(twin(x), out)


def test_eval_mode_has_no_noise():
    layer = NoisyBatchNorm(3).double()
    randomize_affine(layer)
    for step in range(3):
        layer.noise_step = step
        layer(randn(8, 3, seed=step))
    layer.eval()
    x = randn(8, 3, seed=9)
    expected = (x - layer.running_mean) / (layer.running_var + EPS).sqrt()
    assert torch.allclose(layer(x), layer.weight * expected + layer.bias, atol=1e-10)


NOISE_IN_A_FRESH_PROCESS = """
import torch
from smoothbench.models import NoisyBatchNorm
layer = NoisyBatchNorm(6, noise_seed=7, layer_id=2)
layer.noise_step = 11
with torch.no_grad():
    layer.weight.zero_()
    layer.bias.fill_(1.0)
    print(layer(torch.randn(4, 6)).flatten().tolist())  # s + m
"""


@pytest.mark.slow
def test_noise_is_the_same_after_a_process_restart():
    torch.manual_seed(0)
    layer = NoisyBatchNorm(6, noise_seed=7, layer_id=2)
    layer.noise_step = 11
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.fill_(1.0)
        here = layer(torch.randn(4, 6)).flatten().tolist()
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    code = "import torch; torch.manual_seed(123)\n" + NOISE_IN_A_FRESH_PROCESS
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert eval(result.stdout) == here  # exact: the draws depend on (seed, layer, step) only


def test_numbered_layers_find_the_noisy_norms():
    model = build_model("resnet20", norm="noisy_batch", width=1 / 8)
    refs = numbered_layers(model)
    assert all(isinstance(r.norm, NoisyBatchNorm) for r in refs)
    noisy = [m for m in model.modules() if isinstance(m, NoisyBatchNorm)]
    assert len(noisy) == len(refs) + 2  # plus the two projection shortcuts' norms


# --- norm `noise`: Algorithm 1's noise without BatchNorm -------------------------------------


def test_step_noise_matches_hand_computation():
    # Two channels, three samples: draw Algorithm 1's values one by one from the layer's
    # generator, in its order (μ_j, σ_j for every unit, then m_ij, then s_ij), and apply them.
    noise = {"n_mu": 0.4, "n_sigma": 1.5, "r_mu": 0.2, "r_sigma": 0.3}
    layer = StepNoise(2, **noise, noise_seed=5, layer_id=3)
    layer.noise_step = 7
    x = randn(3, 2, seed=4).float()
    gen = torch.Generator().manual_seed(noise_generator_seed(5, 3, 7))
    u = lambda *shape: torch.rand(shape, generator=gen)  # noqa: E731
    mu = [(2 * v - 1) * noise["n_mu"] for v in u(2).tolist()]
    sigma = [1 + v * (noise["n_sigma"] - 1) for v in u(2).tolist()]
    m_draw, s_draw = u(3, 2).tolist(), torch.randn((3, 2), generator=gen).tolist()
    expected = torch.tensor(
        [
            [
                (sigma[j] + s_draw[i][j] * noise["r_sigma"]) * x[i, j].item()
                + mu[j]
                + (2 * m_draw[i][j] - 1) * noise["r_mu"]
                for j in range(2)
            ]
            for i in range(3)
        ]
    )
    assert torch.allclose(layer(x), expected, atol=1e-6)
    layer.eval()
    assert torch.equal(layer(x), x)  # no noise in eval mode


def test_step_noise_is_the_noisy_batch_norms_noise():
    # One source of noise: for the same (seed, layer, step) the noise alone is exactly what
    # noisy BN adds after its normalization.
    x = torch.randn(4, 6, 3, 3)
    noisy = NoisyBatchNorm(6, noise_seed=7, layer_id=2)
    alone = StepNoise(6, noise_seed=7, layer_id=2)
    noisy.noise_step = alone.noise_step = 11
    scale, shift = injected_noise(noisy, x)
    assert torch.allclose(alone(x), scale * x + shift, atol=1e-6)


def test_step_noise_moments_match_algorithm_1():
    layer = StepNoise(64, noise_seed=1)
    ones, zeros = torch.ones(2, 64, 2, 2), torch.zeros(2, 64, 2, 2)
    scales, shifts = [], []
    for step in range(300):
        layer.noise_step = step
        shift = layer(zeros)
        scales.append(layer(ones) - shift)
        shifts.append(shift)
    s, m = torch.stack(scales).double(), torch.stack(shifts).double()
    n_mu, n_sigma, r_mu, r_sigma = (
        NOISE_DEFAULTS[k] for k in ("n_mu", "n_sigma", "r_mu", "r_sigma")
    )
    assert m.mean().item() == pytest.approx(0.0, abs=0.01)
    assert m.var().item() == pytest.approx(n_mu**2 / 3 + r_mu**2 / 3, rel=0.05)
    assert s.mean().item() == pytest.approx((1 + n_sigma) / 2, abs=0.005 * n_sigma)
    assert s.var().item() == pytest.approx((n_sigma - 1) ** 2 / 12 + r_sigma**2, rel=0.05)


def test_noise_net_is_a_standard_net_with_per_step_noise():
    torch.manual_seed(0)
    noisy = build_model("vgg11", norm="noise", width=1 / 16, noise_seed=3)
    torch.manual_seed(0)
    plain = build_model("vgg11", norm="none", width=1 / 16)
    # the standard net's parameters (conv biases kept), nothing more
    assert noisy.state_dict().keys() == plain.state_dict().keys()
    refs = numbered_layers(noisy)
    assert all(isinstance(r.norm, StepNoise) for r in refs)
    assert [r.norm.layer_id for r in refs] == list(range(len(refs)))
    x = torch.randn(2, 3, 32, 32)
    before = torch.get_rng_state()
    set_noise_step(noisy, 4)
    first = noisy(x)
    assert torch.equal(noisy(x), first)  # fixed within a step
    set_noise_step(noisy, 5)
    assert not torch.allclose(noisy(x), first)
    set_noise_step(noisy, 4)
    assert torch.equal(noisy(x), first)  # a pure function of (seed, layer, step)
    assert torch.equal(torch.get_rng_state(), before)
    noisy.eval()
    assert torch.equal(noisy(x), plain.eval()(x))  # eval mode: the standard net


def test_step_noise_rejects_the_wrong_width():
    with pytest.raises(ValueError, match=r"StepNoise\(4\) expects"):
        StepNoise(4)(torch.randn(2, 3))


def test_noise_settings_have_one_source():
    import yaml

    from smoothbench.config import NoiseConfig

    conf = REPO_CONF / "norm"
    for name in ("noisy_batch", "noise"):
        assert yaml.safe_load((conf / f"{name}.yaml").read_text())["noise"] == NOISE_DEFAULTS
    assert vars(NoiseConfig()) == NOISE_DEFAULTS


def test_every_norm_has_a_label_and_a_colour():
    from matplotlib.colors import is_color_like

    from smoothbench.plotting import norm_color, norm_label

    assert NORM_NAMES == tuple(NORMS) and "noise" in NORM_NAMES
    labels = [norm_label(n) for n in NORM_NAMES]
    colours = [norm_color(n) for n in NORM_NAMES]
    assert labels == [NORMS[n].label for n in NORM_NAMES] and all(labels)
    assert all(NORMS[n].short and NORMS[n].description for n in NORM_NAMES)
    assert all(is_color_like(NORMS[n].color) for n in NORM_NAMES)
    assert len(set(labels)) == len(labels) and len(set(colours)) == len(colours)
    # every norm has its Hydra config group entry, and `custom` is the user's own (norm._target_)
    assert {p.stem for p in (REPO_CONF / "norm").glob("*.yaml")} == {*NORM_NAMES, "custom"}


@pytest.mark.slow
def test_noise_net_trains_with_its_noise_and_probes_leave_it_alone(tmp_path):
    from conftest import compose_config, read_metrics

    from smoothbench.train import train

    common = ("scale=smoke", "steps=3", "eval_every=3", "model.width=0.0625")
    probes = (
        "probes.landscape.schedule.every=1",
        "probes.landscape.points=2",
        "probes.activations.schedule.every=1",
        "probes.ics.schedule.kind=every",
        "probes.ics.schedule.every=1",
        "probes.ics.layers=[2]",
    )
    runs = {
        "off": ("norm=noise", "probes=off"),
        "on": ("norm=noise", *probes),
        "none": ("norm=none", "probes=off"),
    }
    losses = {}
    for name, overrides in runs.items():
        train(compose_config(*common, *overrides), tmp_path / name)
        lines = read_metrics(tmp_path / name)
        losses[name] = [line["train/loss"] for line in lines if "train/loss" in line]
    assert len(losses["off"]) == 3
    assert losses["on"] == losses["off"]  # bitwise: probes see the step's noise, never redraw
    assert losses["off"] != losses["none"]  # the noise is there in training
