"""The probe protocol: the registry, the config schema built from it, and the runner's hooks."""

import math
from dataclasses import fields, is_dataclass

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO
from torch import nn

from smoothbench.config import ConfigError, ProbesConfig, validate
from smoothbench.probes.base import Probe, ProbeContext, ScheduleConfig
from smoothbench.probes.registry import probe_types
from smoothbench.probes.runner import ProbeRunner
from smoothbench.probes.schedule import Schedule


def test_every_probe_module_is_found_under_one_name():
    probes = probe_types()
    assert {"activations", "ics", "landscape", "bn", "hessian", "grad_angle"} <= set(probes)
    for name, probe in probes.items():
        assert probe.name == name
        assert probe.__module__ == f"smoothbench.probes.{name}"  # module name = probe name


def test_the_config_schema_is_the_probes_settings():
    by_name = {f.name: f for f in fields(ProbesConfig)}
    assert set(by_name) == {"grad_norms", "max_fraction", *probe_types()}
    for name, probe in probe_types().items():
        settings = probe.settings_type
        assert by_name[name].type is settings and is_dataclass(settings)
        assert isinstance(settings().schedule, ScheduleConfig)
        assert settings().schedule.kind == "off"  # off unless a preset turns it on


def test_every_probe_is_on_in_probes_full_and_documented(smoke):
    cfg = smoke("probes=full")
    metrics_doc = (REPO / "docs" / "metrics.md").read_text()
    for name in probe_types():
        assert cfg.probes[name].schedule.kind != "off", name
        assert f"probe `{name}`" in metrics_doc, name


@pytest.mark.parametrize("name", sorted(probe_types()))
def test_validate_names_the_probes_key(smoke, name):
    with pytest.raises(ConfigError, match=rf"probes\.{name}\.schedule\.every=0 must be >= 1"):
        validate(smoke(f"probes.{name}.schedule.every=0"))


def test_probe_checks_reach_validate(smoke):
    with pytest.raises(ConfigError, match=r"unknown probes\.hessian\.bn_mode 'test'"):
        validate(smoke("probes.hessian.bn_mode=test"))
    with pytest.raises(ConfigError, match=r"probes\.landscape\.low=2\.0 must be below"):
        validate(smoke("probes.landscape.low=2", "probes.landscape.high=1"))


class Recorder(Probe):
    """A probe that records what the runner hands it."""

    name = "recorder"
    settings_type = ScheduleConfig
    uses_update = True

    def __init__(self, model, fail_at: int | None = None):
        super().__init__(None, ProbeContext(model=model, loss_fn=F.mse_loss))
        self.fail_at = fail_at
        self.calls = []

    def measure(self, step, batch):
        self.calls.append(("measure", step))
        if step == self.fail_at:
            raise ValueError("the loss is not finite")
        return {"recorder/step": step}

    def before_update(self, step, batch):
        self.calls.append(("before_update", step))

    def after_update(self, step, batch, before, after):
        self.calls.append(("after_update", step))
        return {"recorder/moved": float((after["weight"] - before["weight"]).abs().sum())}

    def nan_keys(self):
        return ["recorder/step"]


def test_runner_calls_the_hooks_of_due_probes_only():
    model = nn.Linear(2, 1)
    with torch.no_grad():  # weights whose +1 is exact in float32, whatever the RNG's state
        model.weight.copy_(torch.tensor([[0.25, -0.5]]))
    probe = Recorder(model)
    runner = ProbeRunner(
        model, F.mse_loss, [(probe, Schedule("list", 10, steps=(3,), final=False))]
    )
    data = (torch.ones(4, 2), torch.zeros(4, 1))
    for step in (2, 3):
        assert runner.any_due(step) == (step == 3)
        records = runner.measure(step, data)
        runner.before_update(step, data)
        with torch.no_grad():
            model.weight.add_(1.0)  # the "update": every weight moves by 1
        records.update(runner.after_update(step, data))
        assert records == ({"recorder/step": 3, "recorder/moved": 2.0} if step == 3 else {})
    assert probe.calls == [("measure", 3), ("before_update", 3), ("after_update", 3)]


def test_runner_records_nan_when_a_probe_meets_non_finite_values():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(math.inf)
    runner = ProbeRunner(model, F.mse_loss, [(Recorder(model, fail_at=0), Schedule("every", 5))])
    with pytest.warns(UserWarning, match="probe recorder met non-finite values at step 0"):
        records = runner.measure(0, (torch.ones(4, 2), torch.zeros(4, 1)))
    assert list(records) == ["recorder/step"] and math.isnan(records["recorder/step"])


def test_checkpoints_from_before_named_probe_state_still_load(smoke):
    from smoothbench.build import (
        build_data_from_config,
        build_model_from_config,
        build_probe_runner,
        loss_fn_for,
    )

    cfg = smoke("probes=default")
    data = build_data_from_config(cfg)
    model = build_model_from_config(cfg)
    runner = build_probe_runner(cfg, model, loss_fn_for(cfg), data)
    runner.measure(0, data.batch(0, 8, 0))
    state = runner.state_dict()
    assert set(state) == {"activations"}
    fresh = build_probe_runner(cfg, model, loss_fn_for(cfg), data)
    fresh.load_state_dict({"previous_activations": state["activations"]["previous"]})
    assert fresh.state_dict() == state
