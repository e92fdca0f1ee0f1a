"""The hessian probe: its functions of (model, loss_fn, batch, ...) against the `curvature`
functions on an operator built by hand, and the probe's records. The algorithms themselves are
tested against dense Hessians in test_curvature.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hessian_nets import bn_cnn, bn_mlp, ce, cnn_batch, mlp_batch

from smoothbench import curvature
from smoothbench.curvature import HessianOperator
from smoothbench.probes import (
    gradient_topk_share,
    hessian_density,
    hessian_eigenvalues,
    hessian_trace,
    hvp,
    power_iteration,
)


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_each_function_of_a_batch_is_its_curvature_function_on_one_operator(bn_mode):
    """Every argument, given positionally in the documented order with a value other than its
    default, reaches the operator or the curvature function: the results are bitwise equal."""
    model, batch = bn_mlp(), mlp_batch()

    def op(**kwargs) -> HessianOperator:
        return HessianOperator(model, ce, batch, bn_mode, **kwargs)

    v = torch.randn(117, generator=torch.Generator().manual_seed(1))
    assert torch.equal(hvp(model, ce, batch, v, bn_mode), op().matvec(v))
    assert torch.equal(hvp(model, ce, batch, v, bn_mode, chunk_size=5), op(chunk_size=5).matvec(v))

    values, info = hessian_eigenvalues(
        model, ce, batch, 2, 1e-4, bn_mode, "smallest", 30, 5, return_eigenvectors=True
    )
    expected, expected_info = curvature.hessian_eigenvalues(
        op(), k=2, tol=1e-4, which="smallest", max_iter=30, seed=5, return_eigenvectors=True
    )
    assert np.array_equal(values, expected) and info["bn_mode"] == bn_mode
    eigenvectors = expected_info.pop("eigenvectors")
    assert torch.equal(info.pop("eigenvectors"), eigenvectors) and info == expected_info

    power = power_iteration(model, ce, batch, 7, 1e-2, bn_mode, 3)
    assert power == curvature.power_iteration(op(), max_iter=7, tol=1e-2, seed=3)

    trace = hessian_trace(model, ce, batch, 6, bn_mode, 2, 0.0, min_probes=3, return_info=True)
    expected_trace = curvature.hessian_trace(
        op(), n_probes=6, seed=2, rtol=0.0, min_probes=3, return_info=True
    )
    assert trace[:2] == expected_trace[:2] and trace[2]["probes"] == expected_trace[2]["probes"]

    grid = np.linspace(-50, 50, 101)
    xs, density = hessian_density(model, ce, batch, 6, 2, 0.5, grid, bn_mode, 4)
    expected_xs, expected_density = curvature.hessian_density(
        op(), steps=6, n_probes=2, sigma=0.5, grid=grid, seed=4
    )
    assert np.array_equal(xs, expected_xs) and np.array_equal(density, expected_density)

    share = gradient_topk_share(model, ce, batch, eigenvectors, bn_mode)
    assert share == curvature.gradient_topk_share(op(), eigenvectors)


def test_a_bad_bn_mode_is_refused_by_every_function_of_a_batch():
    model, batch = bn_mlp(), mlp_batch()
    calls = [
        lambda: hvp(model, ce, batch, torch.ones(117), bn_mode="running"),
        lambda: hessian_eigenvalues(model, ce, batch, bn_mode="running"),
        lambda: hessian_trace(model, ce, batch, bn_mode="running"),
        lambda: hessian_density(model, ce, batch, bn_mode="running"),
        lambda: gradient_topk_share(model, ce, batch, torch.ones(1, 117), bn_mode="running"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="unknown bn_mode 'running'; choose one of: train"):
            call()


class _FixedBatch:
    """The one piece of the run's data the Hessian probe uses: its fixed measurement batch."""

    def __init__(self, batch):
        self.batch = batch

    def fixed_subset(self, n: int, seed: int = 0):
        return self.batch


def _hessian_probe(**settings):
    from smoothbench.probes.base import ProbeContext
    from smoothbench.probes.hessian import HessianProbe, HessianSettings

    context = ProbeContext(model=bn_cnn(), loss_fn=ce, data=_FixedBatch(cnn_batch()))
    return HessianProbe(HessianSettings(**settings), context)


def test_probe_records_are_the_curvature_functions_on_one_operator():
    probe = _hessian_probe(
        top_k=2,
        smallest=True,
        trace_estimator="hutchinson",
        trace_rtol=0.15,
        density=True,
        density_steps=5,
    )
    records = probe.measure(0, probe.measurement_batch(None))
    op = HessianOperator(bn_cnn(), ce, cnn_batch(), "train")
    values, info = curvature.hessian_eigenvalues(op, k=2, return_eigenvectors=True)
    low, _ = curvature.hessian_eigenvalues(op, k=1, which="smallest")
    trace, stderr = curvature.hessian_trace(op, n_probes=200, rtol=0.15)
    grid, density = curvature.hessian_density(op, steps=5, n_probes=4)
    assert np.array_equal(records["hessian/eigenvalues"], values)
    assert records["hessian/lambda_max"] == values[0] and records["hessian/lambda_min"] == low[0]
    assert records["hessian/grad_topk_share"] == curvature.gradient_topk_share(
        op, info["eigenvectors"]
    )
    assert (records["hessian/trace"], records["hessian/trace_stderr"]) == (trace, stderr)
    assert np.array_equal(records["hessian/density_grid"], grid)
    assert np.array_equal(records["hessian/density"], density)
    assert records["hessian/hvps"] == op.hvps  # every measurement on the probe's one operator


def test_probe_records_when_its_hvp_budget_stops_trace_and_density_short():
    probe = _hessian_probe(
        trace_estimator="hutchinson",
        trace_rtol=1e-6,
        trace_max_hvps=5,
        density=True,
        density_steps=4,
        density_max_hvps=6,
    )
    records = probe.measure(0, probe.measurement_batch(None))
    # one product per trace probe: a cap of 5 products is 5 probes, short of rtol=1e-6
    assert records["hessian/trace_probes"] == 5
    assert records["hessian/trace_stopped_short"] is True
    # a density probe costs density_steps=4 products: the second would pass the cap of 6
    assert records["hessian/density_probes"] == 1
    assert records["hessian/density_stopped_short"] is True
    # the new keys come after every existing one: rows keep their key order
    keys = list(records)
    assert keys.index("hessian/hvps") < keys.index("hessian/trace_probes")


def test_probe_without_a_budget_reaches_trace_rtol_on_an_easy_problem():
    probe = _hessian_probe(trace_estimator="hutchinson", trace_rtol=0.15)
    records = probe.measure(0, probe.measurement_batch(None))
    assert records["hessian/trace_stopped_short"] is False
    assert 10 <= records["hessian/trace_probes"] < 200  # rtol met, not the probe-count cap
    assert "hessian/density_probes" not in records  # density off: no density keys
