"""Turn a composed config into the plain objects a run needs (model, data, loss, optimizer).

Used by the training entry point and by post-hoc tools (surfaces, analysis) that rebuild a run
from its `.hydra/config.yaml`. Nothing here reads a global config: everything comes from `cfg`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from functools import partial

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from smoothbench.data import IMAGE_SIZE, InMemoryData, load_data
from smoothbench.models import build_model, norm_factory
from smoothbench.models.custom import (
    CUSTOM,
    build_custom_model,
    custom_norm_factory,
    resolve_target,
    tagged,
)
from smoothbench.models.init import initialize
from smoothbench.models.norms import assign_noise_ids

log = logging.getLogger(__name__)

OPTIMIZER_NAMES = ("sgd", "adam")
LR_SCHEDULES = ("constant", "step", "cosine")


def build_model_from_config(cfg: DictConfig, num_classes: int | None = None) -> nn.Module:
    """The run's model, freshly initialized from the global torch RNG (seed it first).

    model=custom: `model._target_(**model.kwargs)`, given num_classes and the run's norm as
    `norm_layer` when it takes them; norm=custom: `norm._target_(C, **norm.kwargs)` for each
    norm (docs/your-own-model.md).
    """
    m, n = cfg.model, cfg.norm
    if num_classes is None:
        num_classes = _num_classes(cfg)
    norm = custom_norm_factory(n._target_, _kwargs(n)) if n.name == CUSTOM else n.name
    if m.name == CUSTOM:
        return _custom_model(cfg, norm, num_classes)
    return build_model(
        m.name,
        norm=norm,
        num_classes=num_classes,
        width=m.width,
        init=m.init,
        shortcut=m.shortcut,
        # a run's config from before the option lacks it (smoothbench-surface rebuilds old runs)
        zero_init_residual=m.get("zero_init_residual", False),
        depth=m.depth,
        dim=m.dim,
        eps=n.eps,
        momentum=n.momentum,
        groups=n.groups,
        noise=OmegaConf.to_container(n.noise, resolve=True),
        noise_seed=cfg.seed,
    )


def _kwargs(section: DictConfig) -> dict:
    """A custom target's keyword arguments (`+model.kwargs.KEY=VALUE`)."""
    kwargs = section.get("kwargs")
    return {} if kwargs is None else OmegaConf.to_container(kwargs, resolve=True)


def _custom_model(cfg: DictConfig, norm, num_classes: int) -> nn.Module:
    """`model._target_`'s module: the run's norm goes in as `norm_layer(C)` (the conv variant of
    a named norm, as torchvision's BatchNorm2d), tagged so `numbered_layers` finds it."""
    m, n = cfg.model, cfg.norm
    options = {"eps": n.eps, "momentum": n.momentum, "groups": n.groups}
    options["noise"] = OmegaConf.to_container(n.noise, resolve=True)
    norm_layer = tagged(norm_factory(norm, spatial=True, **options))
    model, ignored = build_custom_model(
        m._target_, _kwargs(m), num_classes=num_classes, norm_layer=norm_layer
    )
    if "norm_layer" in ignored:
        log.warning(
            "model._target_=%s takes no norm_layer: norm=%s is not applied; the model keeps "
            "its own normalization",
            m._target_,
            n.name,
        )
    if "num_classes" in ignored:
        log.warning("model._target_=%s takes no num_classes: its outputs are its own", m._target_)
    initialize(model, m.init)
    assign_noise_ids(model, cfg.seed)
    return model


def _num_classes(cfg: DictConfig) -> int:
    return {"cifar100": 100}.get(cfg.data.name, 10)


def build_data_from_config(cfg: DictConfig) -> InMemoryData:
    d = cfg.data
    dim = cfg.model.dim if cfg.model.name == "dln" else d.dim
    loader = None
    if d.name == CUSTOM:
        loader = partial(resolve_target("data._target_", d._target_), **_kwargs(d))
    return load_data(
        d.name,
        root=d.root,
        download=d.download,
        normalize=d.normalize,
        test_fraction=d.test_fraction,
        num_samples=d.num_samples,
        dim=dim,
        data_seed=d.data_seed,
        skip_bad_files=d.skip_bad_files,
        # a run's config from before the option lacks it
        image_size=d.get("image_size", IMAGE_SIZE),
        loader=loader,
        target=d.get("_target_"),
    )


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, targets)


def squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """‖f(x) − y‖² summed over output dimensions, averaged over samples (the DLN's loss)."""
    return (outputs - targets).pow(2).sum(dim=1).mean()


def loss_fn_for(cfg: DictConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return squared_error if cfg.data.name == "gaussian" else cross_entropy


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov
        )
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    raise ValueError(f"unknown optimizer {o.name!r}; choose one of: {', '.join(OPTIMIZER_NAMES)}")


def learning_rate(
    step: int, *, lr: float, schedule: str, total_steps: int, milestones=(), gamma: float = 0.1
) -> float:
    """The learning rate of update `step`: a pure function of the step (nothing to checkpoint)."""
    if schedule == "constant":
        return lr
    if schedule == "step":
        passed = sum(step >= round(m * total_steps) for m in milestones)
        return lr * gamma**passed
    if schedule == "cosine":
        return 0.5 * lr * (1 + math.cos(math.pi * step / max(1, total_steps)))
    raise ValueError(f"unknown lr schedule {schedule!r}; choose one of: {', '.join(LR_SCHEDULES)}")


def build_probe_runner(cfg: DictConfig, model: nn.Module, loss_fn, data: InMemoryData):
    """The run's probes with their schedules, from `cfg.probes` (every probe the registry finds;
    only those with a schedule other than `off` are built), within the run's probe budget when
    `probes.max_fraction` is set (`apply_probe_budget`)."""
    from smoothbench.probes.base import ProbeContext, settings_from
    from smoothbench.probes.registry import probe_types
    from smoothbench.probes.runner import ProbeRunner
    from smoothbench.probes.schedule import Schedule

    context = ProbeContext(
        model=model,
        loss_fn=loss_fn,
        seed=cfg.seed,
        lr=cfg.optim.lr,
        total_steps=cfg.steps,
        batch_size=training_batch_size(cfg, data),
        model_name=cfg.model.name,
        data=data,
    )
    probes = []
    for name, probe_type in probe_types().items():
        settings = settings_from(cfg.probes[name], probe_type.settings_type)
        s = settings.schedule
        schedule = Schedule(
            kind=s.kind,
            total_steps=cfg.steps,
            every=s.every,
            num=s.num,
            steps=tuple(s.steps),
            final=s.final,
        )
        if schedule.active:
            probes.append((probe_type(settings, context), schedule))
    max_fraction = cfg.probes.get("max_fraction")
    if max_fraction is not None:
        plan = apply_probe_budget(probes, cfg.steps, max_fraction, context.batch_size)
        log.info(plan.summary())
        for notice in plan.notices:
            warnings.warn(f"probe budget: {notice}", RuntimeWarning, stacklevel=2)
    return ProbeRunner(model, loss_fn, probes)


def training_batch_size(cfg: DictConfig, data: InMemoryData) -> int:
    """The examples of one training step: the batch, or the whole training set (full batch)."""
    return data.num_train if cfg.optim.full_batch else cfg.batch_size


def apply_probe_budget(probes: list, steps: int, max_fraction: float, train_batch: int):
    """Plan the run's probe budget (`probes.budget.plan_budget`) from each probe's cost per
    measurement and its scheduled count, and grant the Hessian its share. Returns the plan."""
    from smoothbench.probes.budget import FixedCost, plan_budget

    fixed = [
        FixedCost(probe.name, schedule.count(), probe.cost_units())
        for probe, schedule in probes
        if not probe.takes_remainder and probe.has_work()
    ]
    remainder = [(probe, schedule) for probe, schedule in probes if probe.takes_remainder]
    if len(remainder) > 1:
        names = ", ".join(p.name for p, _ in remainder)
        raise ValueError(f"one probe at most may take the budget's remainder, got {names}")
    ask = remainder[0][0].budget_ask(remainder[0][1].count(), train_batch) if remainder else None
    plan = plan_budget(steps, max_fraction, fixed, ask)
    if remainder:
        remainder[0][0].apply_grant(plan.hessian)
    return plan
