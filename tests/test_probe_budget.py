"""The run's probe budget (probes.max_fraction): the plan on hand-computed numbers, the Hessian
probe spending a grant (XTrace against a dense Hessian, skips recorded), and the config check."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_config
from hessian_nets import bn_cnn, ce, cnn_batch
from test_curvature import dense

from smoothbench import curvature
from smoothbench.config import ConfigError, validate
from smoothbench.curvature import HessianOperator
from smoothbench.probes.base import ProbeContext
from smoothbench.probes.budget import (
    GRAPH_STEPS,
    HVP_STEPS,
    FixedCost,
    HessianAsk,
    HessianGrant,
    plan_budget,
)
from smoothbench.probes.hessian import HessianProbe, HessianSettings
from smoothbench.probes.schedule import Schedule

# 6 landscape measurements of 9 passes and 6 ICS measurements of 3: 72 step-units
CHEAP = [FixedCost("landscape", 6, 9.0), FixedCost("ics", 6, 3.0)]


def ask(**changes) -> HessianAsk:
    values = dict(
        measurements=2,
        batch_ratio=1.0,
        lanczos_hvps=25,
        trace=True,
        trace_min_hvps=8,
        trace_max_hvps=60,
        density=False,
        density_step_hvps=20,
        density_max_hvps=80,
    )
    return HessianAsk(**{**values, **changes})


def test_the_constants_are_the_ones_the_hand_numbers_below_use():
    assert (HVP_STEPS, GRAPH_STEPS) == (3.0, 1.5)


def test_lanczos_alone_is_granted_when_the_rest_cannot_afford_a_trace():
    # (250 - 72) / 2 = 89 units per measurement, less the graph 1.5: 87.5 / 3 -> 29 HVPs;
    # Lanczos takes its 25, 4 are left (in the grant, unreserved), the trace needs 8
    plan = plan_budget(1000, 0.25, CHEAP, ask())
    assert (plan.allowed_units, plan.fixed_units) == (250.0, 72.0)
    assert plan.hessian == HessianGrant(hvps=29, lanczos_hvps=25, trace_hvps=0, density_hvps=0)
    assert plan.hessian_units == 2 * (1.5 + 3 * 29)
    assert plan.predicted_fraction == pytest.approx((72 + 177) / 1000)
    assert any("trace has 4 HVPs reserved" in n for n in plan.notices)


def test_lanczos_then_trace_then_whole_density_probes():
    # (1000 - 72) / 2 = 464, less 1.5: 462.5 / 3 -> 154 HVPs: Lanczos 25, the trace its cap of
    # 60, 69 left: 3 whole SLQ probes of 20
    plan = plan_budget(1000, 1.0, CHEAP, ask(density=True))
    assert plan.hessian == HessianGrant(hvps=145, lanczos_hvps=25, trace_hvps=60, density_hvps=60)
    assert plan.notices == ()
    assert plan.predicted_fraction <= 1.0


def test_nothing_left_for_the_hessian_skips_it_with_notices():
    plan = plan_budget(1000, 0.05, CHEAP, ask(density=True))  # 50 units < 72 for cheap probes
    assert plan.hessian.skipped and plan.hessian_units == 0
    assert any("cheap probes alone cost 72" in n for n in plan.notices)
    assert any("the Hessian is skipped" in n for n in plan.notices)
    assert "skipped" in plan.summary()


def test_a_larger_hessian_batch_buys_fewer_hvps_and_density_is_skipped_with_a_notice():
    # (500 - 72) / 2 = 214 units; at twice the training batch 107 - 1.5 = 105.5 / 3 -> 35 HVPs:
    # Lanczos 25, the trace 10, nothing for a 20-HVP SLQ probe
    plan = plan_budget(1000, 0.5, CHEAP, ask(batch_ratio=2.0, density=True))
    assert plan.hessian == HessianGrant(hvps=35, lanczos_hvps=25, trace_hvps=10, density_hvps=0)
    assert any("density is skipped" in n for n in plan.notices)
    assert plan.hessian_units == 2 * 2.0 * (1.5 + 3 * 35)


def test_a_schedule_counts_its_measurements():
    assert Schedule("every", total_steps=1000, every=200).count() == 6  # 0..800 and 999
    assert Schedule("every", total_steps=1001, every=200).count() == 6  # 1000 is on the grid
    assert Schedule("log", total_steps=1000, num=3).count() == 3
    assert Schedule("off", total_steps=1000).count() == 0


@pytest.mark.parametrize("value", [0, -0.1, 1.5, float("nan")])
def test_max_fraction_outside_zero_one_is_refused_in_one_line(value):
    cfg = compose_config("scale=smoke", f"probes.max_fraction={value}")
    with pytest.raises(ConfigError, match=r"^probes.max_fraction=\S+ must be in \(0, 1\]"):
        validate(cfg)


def test_an_unknown_trace_estimator_is_refused_in_one_line():
    cfg = compose_config("scale=smoke", "probes=full", "probes.hessian.trace_estimator=girard")
    with pytest.raises(ConfigError, match="unknown probes.hessian.trace_estimator 'girard'"):
        validate(cfg)


class _FixedBatch:
    def __init__(self, batch):
        self.batch = batch

    def fixed_subset(self, n: int, seed: int = 0):
        return self.batch


def _probe(**settings) -> HessianProbe:
    context = ProbeContext(model=bn_cnn(), loss_fn=ce, data=_FixedBatch(cnn_batch()))
    return HessianProbe(HessianSettings(**settings), context)


@pytest.mark.parametrize("hvps", [60, 120])
def test_xtrace_in_the_probe_meets_the_dense_trace_within_its_error_estimate(hvps):
    h, _ = dense(bn_cnn(), ce, cnn_batch(), "train")  # 102 parameters, full rank
    probe = _probe(trace_rtol=1e-12, trace_max_probes=hvps)
    records = probe.measure(0, probe.measurement_batch(None))
    assert records["hessian/trace_estimator"] == "xtrace"
    assert records["hessian/trace_hvps"] == hvps and records["hessian/trace_stopped_short"]
    error = abs(records["hessian/trace"] - float(torch.trace(h)))
    assert error <= 3 * records["hessian/trace_stderr"]
    assert error / float(torch.trace(h)) < (0.01 if hvps == 60 else 1e-4)


def test_xtrace_in_the_probe_is_xtrace_on_its_operator_with_its_error_estimate():
    probe = _probe(trace_rtol=0.1, trace_max_probes=60)
    records = probe.measure(0, probe.measurement_batch(None))
    op = HessianOperator(bn_cnn(), ce, cnn_batch(), "train")
    curvature.hessian_eigenvalues(op, k=1, return_eigenvectors=True)  # the same operator state
    expected = curvature.xtrace(op, matvecs=8, seed=0, rtol=0.1, max_matvecs=60)
    assert records["hessian/trace"] == expected.trace
    assert records["hessian/trace_stderr"] == expected.error
    assert records["hessian/trace_hvps"] == expected.matvecs
    assert records["hessian/trace_stopped_short"] is (not expected.converged)


def test_a_grant_too_small_for_the_trace_skips_it_and_says_so():
    probe = _probe(density=True, density_steps=10)
    probe.apply_grant(HessianGrant(hvps=10, lanczos_hvps=10, trace_hvps=0, density_hvps=0))
    with pytest.warns(RuntimeWarning, match="trace is skipped under probes.max_fraction"):
        records = probe.measure(0, probe.measurement_batch(None))
    assert records["hessian/hvps_granted"] == 10
    assert records["hessian/trace_skipped"] is True and "hessian/trace" not in records
    assert records["hessian/density_skipped"] is True and "hessian/density" not in records
    assert records["hessian/hvps"] <= 10 + 1  # Lanczos's steps and its residual check


def test_the_trace_spends_what_lanczos_leaves_within_the_grant():
    probe = _probe(trace_rtol=1e-9)
    probe.apply_grant(HessianGrant(hvps=40, lanczos_hvps=25, trace_hvps=15, density_hvps=0))
    records = probe.measure(0, probe.measurement_batch(None))
    assert records["hessian/trace_skipped"] is False
    assert records["hessian/hvps"] <= 40
    assert records["hessian/trace_hvps"] >= 15  # Lanczos stopped early: the trace took more


def test_a_skipped_hessian_has_no_work():
    probe = _probe()
    probe.apply_grant(HessianGrant(0, 0, 0, 0))
    assert not probe.has_work()
