"""covariate_shift_around_step against covariate_shift called by hand around the same step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from smoothbench.preserve import parameters_dict
from smoothbench.probes import covariate_shift, covariate_shift_around_step


def model_and_optimizer():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)
    ).double()
    return model, torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)


def batches(n=3):
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(8, 5, generator=generator, dtype=torch.float64),
         torch.randint(0, 3, (8,), generator=generator))
        for _ in range(n)
    ]  # fmt: skip


def backward(model, optimizer, batch):
    optimizer.zero_grad()
    F.cross_entropy(model(batch[0]), batch[1]).backward()


def by_hand(model, optimizer, batch, layers):
    """The snapshots taken by hand, as a user without the helper writes it."""
    before = parameters_dict(model)
    optimizer.step()
    return covariate_shift(model, F.cross_entropy, batch, before, parameters_dict(model), layers)


@pytest.mark.parametrize("layers", [None, {"hidden": "3.weight", "out": "5.weight"}])
def test_equals_covariate_shift_by_hand_over_a_few_steps(layers):
    model, optimizer = model_and_optimizer()
    twin = copy.deepcopy(model)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.5, momentum=0.9)

    for batch in batches():
        backward(model, optimizer, batch)
        expected = by_hand(model, optimizer, batch, layers)
        backward(twin, twin_optimizer, batch)
        grads = {n: p.grad.clone() for n, p in twin.named_parameters()}
        rng = torch.get_rng_state()
        with covariate_shift_around_step(twin, F.cross_entropy, batch, layers) as shift:
            assert shift == {}  # filled on exit, once `after` exists
            twin_optimizer.step()
        assert shift == expected
        if layers is None:  # every weight; nothing moves before the first, so it has no shift
            assert set(shift) == {"0.weight", "3.weight", "5.weight"}
            assert shift["0.weight"]["l2"] == 0.0
        assert all(values["l2"] > 0 for label, values in shift.items() if label != "0.weight")
        # No trace: the .grad of the step, the random state, the same trajectory as by hand.
        assert all(torch.equal(p.grad, grads[n]) for n, p in twin.named_parameters())
        assert torch.equal(torch.get_rng_state(), rng)
        for key, value in model.state_dict().items():
            assert torch.equal(twin.state_dict()[key], value), key


def test_unknown_layer_is_refused_before_the_step():
    model, optimizer = model_and_optimizer()
    (batch,) = batches(1)
    backward(model, optimizer, batch)
    found = parameters_dict(model)
    with pytest.raises(ValueError, match="9.weight"):
        with covariate_shift_around_step(model, F.cross_entropy, batch, {"x": "9.weight"}):
            optimizer.step()
    assert all(torch.equal(p, found[n]) for n, p in model.named_parameters())


def test_nothing_is_measured_when_the_block_raises():
    model, optimizer = model_and_optimizer()
    (batch,) = batches(1)
    with pytest.raises(RuntimeError, match="diverged"):
        with covariate_shift_around_step(model, F.cross_entropy, batch) as shift:
            raise RuntimeError("diverged")
    assert shift == {}
