"""The lean training loop: cached batch order, device-side evaluation and step blocks change no
value and no byte of the run record."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import read_metrics, read_status

from smoothbench.checkpoint import load_checkpoint
from smoothbench.data import (
    _generator,
    load_digits_images,
    make_gaussian_regression,
    random_crop_flip,
)
from smoothbench.train import train


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


def _run(smoke, run_dir, monkeypatch, block_steps, *overrides):
    """A run whose rows are written in blocks of `block_steps` (1: after every step, as a loop of
    .item() calls writes them); returns the number of flushes that wrote rows."""
    import smoothbench.step_log as step_log

    monkeypatch.setattr(step_log, "BLOCK_STEPS", block_steps)
    flushes, real_flush = [], step_log.StepLog.flush

    def flush(self):
        flushes.append(len(self.pending))
        return real_flush(self)

    monkeypatch.setattr(step_log.StepLog, "flush", flush)
    result = train(smoke(*overrides), run_dir)
    return result, [n for n in flushes if n]


@pytest.mark.slow
def test_blocks_write_the_rows_of_a_step_by_step_loop(smoke, tmp_path, monkeypatch):
    common = ("steps=12", "eval_every=5", "checkpoint_every=7", "probes=off")
    _run(smoke, tmp_path / "step", monkeypatch, 1, *common, "probes.grad_norms=per_layer")
    _, flushes = _run(
        smoke, tmp_path / "block", monkeypatch, 4, *common, "probes.grad_norms=per_layer"
    )
    # blocks end at the block size, before the evaluations at 5 and 10, the checkpoint at 7, the end
    assert flushes == [4, 1, 2, 3, 2]
    step = (tmp_path / "step" / "metrics.jsonl").read_bytes()
    assert step == (tmp_path / "block" / "metrics.jsonl").read_bytes()
    assert "grad/norm" in read_metrics(tmp_path / "block")[3]
    ckpt = load_checkpoint(tmp_path / "block" / "checkpoints" / "last.pt")
    assert step[: ckpt["metrics_bytes"]].count(b"\n") == 12  # the final row follows it


@pytest.mark.slow
def test_divergence_inside_a_block_ends_the_run_at_that_step(smoke, tmp_path, monkeypatch):
    common = ("steps=12", "norm=none", "optim.lr=5", "probes=off", "eval_every=100")
    common += ("checkpoint_every=100",)
    step_result, _ = _run(smoke, tmp_path / "step", monkeypatch, 1, *common)
    result, flushes = _run(smoke, tmp_path / "block", monkeypatch, 50, *common)
    assert result["state"] == step_result["state"] == "diverged"
    bad = result["step"]
    assert 0 < bad < 11 and flushes == [12]  # found in the middle of the one block
    assert result["reason"] == f"non-finite training loss at step {bad}"
    rows = read_metrics(tmp_path / "block")
    assert [r["step"] for r in rows] == list(range(bad + 1))
    assert list(rows[-1]) == ["step", "epoch", "train/loss", "train/lr", "train/acc"]
    assert rows[-1]["train/loss"] is None or not math.isfinite(rows[-1]["train/loss"])
    assert (tmp_path / "step" / "metrics.jsonl").read_bytes() == (
        tmp_path / "block" / "metrics.jsonl"
    ).read_bytes()
    assert read_status(tmp_path / "block") | {"heartbeat": 0, "steps_per_s": 0} == read_status(
        tmp_path / "step"
    ) | {"heartbeat": 0, "steps_per_s": 0}
    assert not (tmp_path / "block" / "checkpoints" / "last.pt").exists()
    assert result["last"]["step"] == bad - 1


def test_evaluate_sums_as_a_loop_of_item_calls():
    from smoothbench.run.session import evaluate

    data = load_digits_images(test_fraction=0.2)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    loss_fn = torch.nn.CrossEntropyLoss()
    got = evaluate(model, loss_fn, data, 37, classify=True)  # 37 does not divide the test set
    total, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in data.test_batches(37):
            out = model(x)
            total += loss_fn(out, y).item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            count += len(y)
    assert got == {"test/loss": total / count, "test/acc": correct / count}
    assert model.training


def test_throughput_reaches_the_mirror_and_status_but_not_the_record(smoke, tmp_path, monkeypatch):
    from smoothbench.sinks import WandbSink

    class Mirror:
        rows: list = []

        def log(self, record):
            self.rows.append(record)

        def close(self, state=None):
            pass

    monkeypatch.setattr(WandbSink, "for_run", classmethod(lambda cls, *a, **k: Mirror()))
    train(smoke("logger=wandb", "probes=off", "steps=6", "eval_every=100"), tmp_path)
    rows = read_metrics(tmp_path)
    assert not any(k.startswith("perf/") for r in rows for k in r)
    assert [r["step"] for r in Mirror.rows] == [r["step"] for r in rows]
    rated = [r["step"] for r in Mirror.rows if "perf/steps_per_s" in r]
    assert rated == [2, 5] and all(Mirror.rows[s]["perf/steps_per_s"] > 0 for s in rated)
    assert [{k: v for k, v in r.items() if k != "perf/steps_per_s"} for r in Mirror.rows] == rows
    assert read_status(tmp_path)["steps_per_s"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_are_the_cpu_batches():
    data = load_digits_images(test_fraction=0.2)
    on_gpu = data.to("cuda")
    for step in (0, 3, data.steps_per_epoch(32) + 1):
        for augment in (False, True):
            x, y = data.batch(step, 32, 0, augment=augment)
            gx, gy = on_gpu.batch(step, 32, 0, augment=augment)
            assert torch.equal(gy.cpu(), y)  # the same examples, cropped and flipped alike:
            assert torch.allclose(gx.cpu(), x, rtol=0, atol=1e-6)  # (normalized on another chip)
