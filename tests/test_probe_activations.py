"""activation_stats against numpy on activations captured by a hook of the test's own."""

import copy
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from smoothbench.probes.activations import activation_stats, choose_units

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


def captured_units(model, x, module, units) -> np.ndarray:
    """(units, samples) values of `module`'s output in a training-mode forward of a copy."""
    name = next(n for n, m in model.named_modules() if m is module)
    model = copy.deepcopy(model).train()
    target = dict(model.named_modules())[name]
    store = {}
    handle = target.register_forward_hook(lambda m, a, out: store.setdefault("out", out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    out = store["out"].numpy().astype(np.float64)
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


def test_records_match_numpy_and_state_is_restored():
    model = small_net()
    with torch.no_grad():
        model(torch.randn(8, 3, 4, 4) + 1)  # running statistics away from their defaults
    model.eval()
    x = torch.randn(5, 3, 4, 4)
    layers = {"conv": model[1], "fc": model[6]}
    units = {"conv": choose_units(6, 3, seed=1), "fc": choose_units(8, 4, seed=2)}
    state_found = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()

    records, state = activation_stats(model, (x, None), layers, units)

    for label, module in layers.items():
        values = captured_units(model, x, module, units[label])
        expected = expected_record(values)
        got = records[label]
        np.testing.assert_allclose(got["quantiles"], expected["quantiles"], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(got["hist"], expected["hist"])
        np.testing.assert_allclose(got["hist_edges"], expected["hist_edges"], rtol=1e-12)
        np.testing.assert_allclose(got["mean"], expected["mean"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got["var"], expected["var"], rtol=1e-10)
        assert sum(got["hist"]) == values.size
        assert "mean_change" not in got
    assert len(records["conv"]["mean"]) == 3 and sum(records["conv"]["hist"]) == 3 * 5 * 16

    for key, value in model.state_dict().items():
        assert torch.equal(value, state_found[key]), key
    assert not any(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)
    pickle.loads(pickle.dumps(state))


def test_moment_changes_between_calls():
    model = small_net()
    x = torch.randn(6, 3, 4, 4)
    layers = {"conv": model[1], "fc": model[6]}
    units = {"conv": choose_units(6, 4, seed=3), "fc": choose_units(8, 5, seed=4)}

    first, state = activation_stats(model, (x, None), layers, units)
    before = {label: captured_units(model, x, m, units[label]) for label, m in layers.items()}
    with torch.no_grad():  # a training step would do this; shifts the BN-1d layer's output
        model[6].bias.add_(torch.linspace(-1, 1, 8))
        model[0].weight.mul_(1.5)
    second, _ = activation_stats(model, (x, None), layers, units, previous=state)
    after = {label: captured_units(model, x, m, units[label]) for label, m in layers.items()}

    for label in layers:
        mean_change = np.mean(np.abs(after[label].mean(1) - before[label].mean(1)))
        var_change = np.mean(np.abs(after[label].var(1) - before[label].var(1)))
        assert second[label]["mean_change"] == pytest.approx(mean_change, rel=1e-9, abs=1e-12)
        assert second[label]["var_change"] == pytest.approx(var_change, rel=1e-9, abs=1e-12)
    assert second["fc"]["mean_change"] > 0.1


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
