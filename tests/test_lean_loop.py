"""The lean training loop: cached batch order, device-side evaluation and step blocks change no
value and no byte of the run record."""

from __future__ import annotations

import pytest
import torch

from smoothbench.data import (
    _generator,
    load_digits_images,
    make_gaussian_regression,
    random_crop_flip,
)


@pytest.mark.parametrize("augment", [False, True])
def test_batch_takes_the_examples_batch_indices_names(augment):
    data = load_digits_images(test_fraction=0.2)
    per_epoch = data.steps_per_epoch(32)
    steps = [0, 1, per_epoch - 1, per_epoch, per_epoch + 3, 2 * per_epoch + 1, 0, 5]
    for seed in (0, 1):
        for step in steps:  # across epochs, back again: the cache follows (seed, epoch)
            x, y = data.batch(step, 32, seed, augment=augment)
            idx = data.batch_indices(step, 32, seed)
            assert torch.equal(y, data.train_y[idx])
            stored = data.train_x[idx]
            if augment:
                stored = random_crop_flip(stored, _generator(seed, step, 1))
            assert torch.equal(x, data.inputs(stored))
    assert not torch.equal(data.batch(0, 32, 0)[1], data.batch(per_epoch, 32, 0)[1])


def test_full_batch_is_the_whole_set_as_a_copy():
    data = make_gaussian_regression(num_samples=40, dim=3, data_seed=0)
    x, y = data.batch(7, data.num_train, seed=0)
    assert torch.equal(x, data.train_x) and torch.equal(y, data.train_y)
    x.add_(1.0)  # the caller may change its batch; the stored set stays as it was
    assert not torch.equal(x, data.train_x)
