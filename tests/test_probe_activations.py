"""activation_stats against numpy on activations captured by a hook of the test's own, and the
probe's default location (the next layer's input) against a hand-computed forward pass."""

import copy
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from smoothbench.config import ConfigError, validate
from smoothbench.models import build_model, numbered_layers
from smoothbench.probes.activations import (
    ActivationsProbe,
    ActivationsSettings,
    activation_stats,
    choose_units,
)
from smoothbench.probes.base import ProbeContext

LEVELS = [0.0, 0.05, 0.15, 0.30, 0.50, 0.70, 0.85, 0.95, 1.0]


def small_net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 8),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Linear(8, 3),
    )
    with torch.no_grad():  # BN affine away from (1, 0) so values are not trivially standard
        model[1].weight.uniform_(0.5, 2.0)
        model[1].bias.normal_()
        model[6].weight.uniform_(0.5, 2.0)
    return model


def captured_units(model, x, module, units, per_channel=True) -> np.ndarray:
    """(units, samples) values of `module`'s output in a training-mode forward of a copy.

    per_channel: units are channels, samples pooled over N, H, W; else units index the
    flattened per-sample output and the samples are the batch."""
    name = next(n for n, m in model.named_modules() if m is module)
    model = copy.deepcopy(model).train()
    target = dict(model.named_modules())[name]
    store = {}
    handle = target.register_forward_hook(lambda m, a, out: store.setdefault("out", out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    out = store["out"].numpy().astype(np.float64)
    if not per_channel:
        return out.reshape(len(out), -1)[:, units.numpy()].T
    chosen = out[:, units.numpy()]
    return np.moveaxis(chosen, 1, 0).reshape(len(units), -1)


def expected_record(values: np.ndarray) -> dict:
    pooled = values.ravel()
    counts, edges = np.histogram(pooled, bins=64)
    return {
        "quantiles": np.quantile(pooled, LEVELS),
        "hist": counts,
        "hist_edges": edges,
        "mean": values.mean(axis=1),
        "var": values.var(axis=1),
    }


def test_choose_units_is_fixed_distinct_and_leaves_global_rng():
    rng = torch.get_rng_state()
    first = choose_units(64, 10, seed=7)
    assert torch.equal(first, choose_units(64, 10, seed=7))
    assert not torch.equal(first, choose_units(64, 10, seed=8))
    assert len(set(first.tolist())) == 10 and first.min() >= 0 and first.max() < 64
    assert first.dtype == torch.long
    assert torch.equal(choose_units(5, 10, seed=0), torch.arange(5))
    assert torch.equal(torch.get_rng_state(), rng)
    with pytest.raises(ValueError, match="n=0"):
        choose_units(5, 0, seed=0)


@pytest.mark.parametrize("per_channel", [True, False])
def test_records_match_numpy_and_state_is_restored(per_channel):
    model = small_net()
    with torch.no_grad():
        model(torch.randn(8, 3, 4, 4) + 1)  # running statistics away from their defaults
    model.eval()
    x = torch.randn(5, 3, 4, 4)
    layers = {"conv": model[1], "fc": model[6]}
    conv_units = 6 if per_channel else 6 * 4 * 4
    units = {"conv": choose_units(conv_units, 3, seed=1), "fc": choose_units(8, 4, seed=2)}
    state_found = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()

    records, state = activation_stats(model, (x, None), layers, units, per_channel=per_channel)

    for label, module in layers.items():
        values = captured_units(model, x, module, units[label], per_channel)
        expected = expected_record(values)
        got = records[label]
        np.testing.assert_allclose(got["quantiles"], expected["quantiles"], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(got["hist"], expected["hist"])
        np.testing.assert_allclose(got["hist_edges"], expected["hist_edges"], rtol=1e-12)
        np.testing.assert_allclose(got["mean"], expected["mean"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got["var"], expected["var"], rtol=1e-10)
        assert sum(got["hist"]) == values.size
        assert "mean_change" not in got
    samples = 5 * 16 if per_channel else 5  # pooled over (N, H, W), or over the batch alone
    assert len(records["conv"]["mean"]) == 3 and sum(records["conv"]["hist"]) == 3 * samples
    assert state["units"] == {label: u.tolist() for label, u in units.items()}

    for key, value in model.state_dict().items():
        assert torch.equal(value, state_found[key]), key
    assert not any(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)
    pickle.loads(pickle.dumps(state))


def expected_changes(before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """The four change keys from (units, samples) values, units with v̄ = 0 left out of _rel."""
    m0, m1, v0, v1 = before.mean(1), after.mean(1), before.var(1), after.var(1)
    v_bar = (v0 + v1) / 2
    keep = v_bar > 0
    return {
        "mean_change": np.mean(np.abs(m1 - m0)),
        "var_change": np.mean(np.abs(v1 - v0)),
        "mean_change_rel": np.mean(np.abs(m1 - m0)[keep] / np.sqrt(v_bar[keep])),
        "var_change_rel": np.mean(np.abs(v1 - v0)[keep] / v_bar[keep]),
    }


@pytest.mark.parametrize("per_channel", [True, False])
def test_moment_changes_between_calls(per_channel):
    model = small_net()
    x = torch.randn(6, 3, 4, 4)
    layers = {"conv": model[2], "fc": model[6]}  # the first ReLU's output, the BN-1d's
    conv_units = 6 if per_channel else 6 * 4 * 4
    units = {"conv": choose_units(conv_units, 4, seed=3), "fc": choose_units(8, 5, seed=4)}

    def stats(previous=None):
        return activation_stats(
            model, (x, None), layers, units, previous=previous, per_channel=per_channel
        )

    def values():
        return {k: captured_units(model, x, m, units[k], per_channel) for k, m in layers.items()}

    first, state = stats()
    before = values()
    with torch.no_grad():  # a training step would do this; shifts the BN-1d layer's output
        model[6].bias.add_(torch.linspace(-1, 1, 8))
        model[0].weight.mul_(1.5)
        model[1].bias.add_(0.3)
    second, _ = stats(previous=state)
    after = values()

    for label in layers:
        expected = expected_changes(before[label], after[label])
        for key, value in expected.items():
            assert second[label][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (label, key)
    assert second["fc"]["mean_change"] > 0.1 and second["conv"]["mean_change_rel"] > 0.01


def test_relative_changes_leave_out_constant_units():
    """v̄ = 0 (a dead ReLU unit): no scale, so it is left out; NaN when every unit is so."""
    model = nn.Sequential(nn.ReLU())
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(10, 4, generator=generator, dtype=torch.float64)
    x[:, 0] = -1.0  # dead at both measurements
    x2 = x * 1.5 + 0.2
    x2[:, 0] = -2.0
    units = {"relu": torch.arange(4)}
    _, state = activation_stats(model, (x, None), {"relu": model[0]}, units)
    records, _ = activation_stats(model, (x2, None), {"relu": model[0]}, units, previous=state)
    before, after = x.relu().numpy().T, x2.relu().numpy().T
    for key, value in expected_changes(before, after).items():
        assert records["relu"][key] == pytest.approx(value, rel=1e-12), key
    with_dead = expected_changes(before[1:], after[1:])  # the same without the dead unit
    assert records["relu"]["mean_change_rel"] == pytest.approx(with_dead["mean_change_rel"])

    dead = torch.full((10, 2), -1.0, dtype=torch.float64)
    _, state = activation_stats(model, (dead, None), {"relu": model[0]}, {"relu": torch.arange(2)})
    records, _ = activation_stats(
        model, (dead - 1, None), {"relu": model[0]}, {"relu": torch.arange(2)}, previous=state
    )
    assert records["relu"]["mean_change"] == 0.0 and records["relu"]["var_change"] == 0.0
    assert math.isnan(records["relu"]["mean_change_rel"])
    assert math.isnan(records["relu"]["var_change_rel"])


def test_units_must_not_change_between_calls():
    model = small_net()
    x = torch.randn(4, 3, 4, 4)
    layers = {"conv": model[1]}
    chosen = choose_units(6, 2, seed=0)
    _, state = activation_stats(model, (x, None), layers, {"conv": chosen})
    others = torch.tensor([u for u in range(6) if u not in chosen.tolist()][:2])
    with pytest.raises(ValueError, match="conv"):
        activation_stats(model, (x, None), layers, {"conv": others}, previous=state)
    with pytest.raises(ValueError, match="units lacks"):
        activation_stats(model, (x, None), layers, {})


def test_values_on_bin_edges_follow_numpy():
    """Integer values 0..64 sit exactly on the 65 edges: each bin's left edge is its own."""
    model = nn.Sequential(nn.Identity())
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 65, (40, 3), generator=generator).double()
    x[0, 0], x[1, 1] = 0.0, 64.0
    units = {"id": torch.arange(3)}
    records, _ = activation_stats(model, (x, None), {"id": model[0]}, units)
    counts, edges = np.histogram(x.numpy().ravel(), bins=64)
    np.testing.assert_array_equal(records["id"]["hist"], counts)
    np.testing.assert_array_equal(records["id"]["hist_edges"], edges)


# ---- the probe: where it measures


def tiny_vgg() -> nn.Module:
    """vgg11 at width 1/64: channels 1, 2, 4, 4, 8, ...; float64 for exact comparisons."""
    torch.manual_seed(0)
    return build_model("vgg11", norm="batch", width=1 / 64).double()


def probe_for(model, seed=3, **settings) -> ActivationsProbe:
    return ActivationsProbe(ActivationsSettings(**settings), ProbeContext(model, None, seed=seed))


def bn_relu_by_hand(y: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Training-mode batch norm from its definition (biased batch variance), then ReLU."""
    mean = y.mean(dim=(0, 2, 3), keepdim=True)
    var = ((y - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    gamma, beta = bn.weight.view(1, -1, 1, 1), bn.bias.view(1, -1, 1, 1)
    return torch.clamp((y - mean) / torch.sqrt(var + bn.eps) * gamma + beta, min=0)


def test_default_measures_the_next_layers_input_per_position_over_the_batch():
    model = tiny_vgg()
    with torch.no_grad():  # BN affine away from (1, 0): the values are not standard by design
        for ref in numbered_layers(model)[:2]:
            ref.norm.weight.uniform_(0.5, 2.0)
            ref.norm.bias.normal_()
    model.eval()
    x = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    probe = probe_for(model, layers=[1, 2], units=20)
    state_found = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()

    records = probe.measure(0, (x, None))

    block1, block2 = model.features[0], model.features[2]  # features[1] is a max pool
    with torch.no_grad():
        a1 = bn_relu_by_hand(F.conv2d(x, block1.conv.weight, padding=1), block1.norm)
        a2 = bn_relu_by_hand(F.conv2d(F.max_pool2d(a1, 2), block2.conv.weight, padding=1),
                             block2.norm)  # fmt: skip
    assert a1.shape[1:] == (1, 32, 32) and a2.shape[1:] == (2, 16, 16)
    for k, a in ((1, a1), (2, a2)):
        c, h, w = a.shape[1:]
        units = choose_units(c * h * w, 20, seed=3 * 1000 + k)  # flat index c·H·W + h·W + w
        chosen = a.reshape(len(a), -1)[:, units].numpy()  # (N, units)
        np.testing.assert_allclose(records[f"act/layer{k}/mean"], chosen.mean(0), rtol=1e-10)
        np.testing.assert_allclose(records[f"act/layer{k}/var"], chosen.var(0), rtol=1e-10)
        expected = expected_record(chosen.T)
        np.testing.assert_allclose(records[f"act/layer{k}/quantiles"], expected["quantiles"])
        assert sum(records[f"act/layer{k}/hist"]) == 20 * 6
    assert set(probe.previous["units"]) == {"layer1", "layer2"}
    for key, value in model.state_dict().items():
        assert torch.equal(value, state_found[key]), key
    assert not model.training and torch.equal(torch.get_rng_state(), rng)


def test_bn_net_at_init_next_input_is_after_relu_and_norm_output_is_beta():
    model = tiny_vgg()
    x = torch.randn(16, 3, 32, 32, dtype=torch.float64)
    after_relu = probe_for(model).measure(0, (x, None))
    norm_view = probe_for(model, at="norm_output").measure(0, (x, None))
    for ref in numbered_layers(model):
        means = np.asarray(after_relu[f"act/{ref.name}/mean"])
        assert (means >= 0).all() and means.mean() > 0.1, ref.name
        assert min(after_relu[f"act/{ref.name}/quantiles"]) == 0.0  # the ReLU's zeros
        # per channel, pooled over (N, H, W): a BN channel's batch mean is β = 0 by construction
        channel_means = norm_view[f"act/{ref.name}/mean"]
        assert len(channel_means) == min(64, ref.norm.num_features)
        np.testing.assert_allclose(channel_means, 0.0, atol=1e-9)


@pytest.mark.parametrize("name", ["vgg11", "resnet20", "dln"])
def test_layer_outputs_are_the_next_layers_input(name):
    """Each output module runs once per forward, and a ResNet block's second layer is measured
    after its shortcut sum: act2(norm2 + shortcut(x))."""
    torch.manual_seed(0)
    model = build_model(name, width=1 / 16).double()
    x = torch.randn(4, *((3, 32, 32) if name != "dln" else (10,)), dtype=torch.float64)
    refs = numbered_layers(model)
    calls: dict[str, list] = {r.name: [] for r in refs}
    norms: dict[str, torch.Tensor] = {}
    handles = [r.output.register_forward_hook(
        lambda m, a, out, k=r.name: calls[k].append((a[0], out))) for r in refs]  # fmt: skip
    handles += [r.norm.register_forward_hook(
        lambda m, a, out, k=r.name: norms.setdefault(k, out)) for r in refs]  # fmt: skip
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    assert all(len(c) == 1 for c in calls.values())
    if name == "dln":
        assert all(r.output is r.norm for r in refs)
    if name == "vgg11":
        assert all(torch.equal(calls[r.name][0][1], norms[r.name].relu()) for r in refs)
    if name == "resnet20":
        block = model.stage1[1]  # identity shortcut: layer 5 is its conv2
        assert refs[4].output is block.act2 and refs[3].output is block.act1
        block_input = calls["layer3"][0][1]  # the previous block's output
        expected = (norms["layer5"] + block_input).relu()
        torch.testing.assert_close(calls["layer5"][0][1], expected, rtol=0, atol=0)
        assert torch.equal(calls["layer4"][0][1], norms["layer4"].relu())


def test_bad_at_is_refused_in_one_line(smoke):
    with pytest.raises(ConfigError) as caught:
        validate(smoke("probes.activations.at=pre_relu"))
    message = str(caught.value)
    assert message.startswith(
        "unknown probes.activations.at 'pre_relu'; choose one of: next_input, norm_output"
    )
    assert "\n" not in message
    with pytest.raises(ValueError, match="probes.activations.at"):
        probe_for(tiny_vgg(), at="pre_relu")


def test_resume_carries_units_and_moments_and_refuses_another_location():
    model = tiny_vgg()
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    probe = probe_for(model, layers=[1, 3], units=10)
    probe.measure(0, (x, None))
    state = pickle.loads(pickle.dumps(probe.state_dict()))
    assert set(state["previous"]) == {"units", "mean", "var", "at"}
    with torch.no_grad():
        model.features[0].norm.bias.add_(0.5)
    resumed = probe_for(model, layers=[1, 3], units=10)
    resumed.load_state_dict(state)
    assert resumed.measure(1, (x, None)) == probe.measure(1, (x, None))
    assert probe.measure(2, (x, None))["act/layer1/mean_change_rel"] == 0.0
    other = probe_for(model, layers=[1, 3], units=10, at="norm_output")
    with pytest.raises(ValueError, match="at=norm_output but the run being resumed"):
        other.load_state_dict(state)
    assert probe.nan_keys() == [
        f"act/layer{k}/{key}"
        for k in (1, 3)
        for key in ("mean_change", "var_change", "mean_change_rel", "var_change_rel")
    ]
