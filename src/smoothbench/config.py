"""Typed schemas for the training config, registered in Hydra's ConfigStore.

`conf/train.yaml` lists `train_schema` first in its defaults, so every group option (model/,
norm/, data/, ...) is merged into these dataclasses: a wrong type or an unknown key fails at
compose time with Hydra's own message. Checks of values (lr > 0, a known model name, ...) live in
`validate`, which the entry point calls before anything is built.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, make_dataclass
from functools import cache
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from smoothbench.trajectory_keys import NON_TRAJECTORY_KEYS


@dataclass
class ModelConfig:
    # vgg11 vgg13 vgg16 vgg19 resnet20 resnet32 resnet56 resnet110 resnet18 dln | custom
    name: str = "vgg11"
    width: float = 1.0  # multiplies every channel count (VGG-16 at 1.0 is the paper's net)
    init: str = "xavier"  # xavier (Glorot, the paper's) | kaiming | torch
    shortcut: bool = True  # ResNets only: false gives Li et al.'s "noshort" nets
    # ResNets only: zero the last layer of every residual branch that has a shortcut (norm2's γ,
    # else conv2), so each such block starts as the identity; nets without shortcuts unchanged
    zero_init_residual: bool = False
    depth: int = 25  # DLN only: number of square linear layers
    dim: int = 10  # DLN only: width of every layer
    # model=custom only (docs/your-own-model.md): the callable that builds the nn.Module, e.g.
    # torchvision.models.resnet18, and its keyword arguments (+model.kwargs.KEY=VALUE)
    _target_: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class NoiseConfig:
    """Paper Algorithm 1: per-unit mean/scale noise, redrawn once per optimizer step."""

    n_mu: float = 0.5
    n_sigma: float = 1.25
    r_mu: float = 0.1
    r_sigma: float = 0.1


@dataclass
class NormConfig:
    name: str = "batch"  # none batch noisy_batch l1 l2 linf layer group | custom
    eps: float = 1e-5
    momentum: float = 0.1  # running estimates: r <- (1 - momentum) r + momentum * batch statistic
    groups: int = 32  # `group` only
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    # norm=custom only: a callable (num_features, **kwargs) -> nn.Module, and its kwargs
    _target_: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    name: str = "digits"  # digits cifar10 cifar100 imagefolder gaussian | custom
    root: str | None = None  # cifar10/cifar100/imagefolder: where the data lives
    download: bool = False  # cifar10/cifar100: let torchvision fetch the data when missing
    augment: bool = False  # random crop (pad 4) + horizontal flip; off in the paper
    normalize: bool = True  # subtract the training set's per-channel mean, divide by its std
    num_samples: int = 1000  # gaussian: samples (one full batch in the paper)
    dim: int = 10  # gaussian: input/output dimension
    data_seed: int = 1234  # gaussian: the fixed target matrix A and the inputs
    test_fraction: float = 0.2  # digits: share held out as the test set
    # imagefolder: leave out unreadable files (corrupt, truncated, not images) and list them in
    # the log, instead of refusing the tree
    skip_bad_files: bool = False
    # images are resized to image_size x image_size pixels (the VGGs need 32; ResNets and most
    # custom models take any size)
    image_size: int = 32
    # data=custom only: a callable returning (train_x, train_y, test_x, test_y) tensors or
    # (train_dataset, test_dataset) of (image, label), and its kwargs
    _target_: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adam
    lr: float = 0.1
    momentum: float = 0.0  # sgd; the paper uses plain SGD
    weight_decay: float = 0.0
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam
    schedule: str = "constant"  # constant | step | cosine
    milestones: list[float] = field(default_factory=list)  # step: fractions of `steps`
    gamma: float = 0.1  # step: lr multiplier at each milestone
    full_batch: bool = False  # gradient descent on the whole training set (the DLN)


@cache
def _probes_config() -> type:
    """`ProbesConfig`: `grad_norms` plus one field per probe, its settings dataclass.

    Each probe's settings dataclass lives in its module (`probes/<name>.py`) and is its config
    schema; the registry finds them, so nothing here names a probe.
    """
    from smoothbench.probes.registry import probe_types

    probe_fields = [
        (name, probe.settings_type, field(default_factory=probe.settings_type))
        for name, probe in probe_types().items()
    ]
    return make_dataclass(
        "ProbesConfig",
        [
            # per_layer | total: gradient norms every step
            ("grad_norms", str, field(default="per_layer")),
            # all probes of a run together cost at most this share of its training (0 < f <= 1,
            # in forward-backward units, from the config alone: probes/budget.py); null: no cap
            ("max_fraction", Optional[float], field(default=None)),  # noqa: UP045 (OmegaConf)
            *probe_fields,
        ],
        namespace={"__module__": __name__},
    )


@dataclass
class LoggerConfig:
    name: str = "local"  # local (metrics.jsonl only) | wandb (plus a W&B mirror)
    project: str = "smoothbench"
    entity: str | None = None
    group: str | None = None
    job_type: str | None = None
    tags: list[str] = field(default_factory=list)
    mode: str = "offline"  # offline | online | disabled; sync offline runs with `wandb sync`


@dataclass
class _TrainFields:
    """Every key of the training config; `probes` is typed by `TrainConfig` (see below)."""

    seed: int = 0
    steps: int = MISSING  # optimizer updates: the budget (set by scale=)
    batch_size: int = 128
    eval_every: int = 500  # test-set evaluation period in steps (and at the end)
    eval_batch_size: int = 1000
    checkpoint_every: int = 500  # crash-safe checkpoint period in steps (and at the end)
    keep_checkpoints: list[int] = field(default_factory=list)  # also keep step_<N>.pt at these
    device: str = "auto"  # auto | cpu | cuda
    channels_last: bool = False  # CUDA: memory format of the training step
    autocast: bool = False  # CUDA: bf16 autocast in the training step (probes stay fp32)
    deterministic: bool = True  # torch deterministic algorithms (bitwise CPU reruns)
    # torch's CPU threads (torch.set_num_threads, at the start of the run; 1..1024). A CPU run is
    # bitwise only for a fixed count (the order of float reductions follows it): every preset
    # keeps this default, 1. More is faster on many cores, and bitwise only against runs with the
    # same count; provenance.json records the count in force
    threads: int = 1
    progress: bool = True  # progress bar
    scale: str = "cpu"  # name of the budget (set by scale=): smoke | cpu | paper
    experiment: str | None = None  # name of the preset (set by experiment=)
    # auto: continue from checkpoints/last.pt when there is one. from_checkpoint: also when
    # metrics.jsonl lost rows (a power cut), rerun from the last checkpoint whose rows are intact.
    # restart: a run dir holding this config's record but no checkpoint (deleted to free disk)
    # is recomputed from step 0, discarding that record (never done without asking)
    resume: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    norm: NormConfig = field(default_factory=NormConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    probes: Any = field(default_factory=dict)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


@cache
def _train_config() -> type:
    """`TrainConfig`: `_TrainFields` with `probes` typed by `ProbesConfig` (same key order).

    Built on first use: the probes' settings live in their modules, which import torch, and a
    command that only prints help (or completes a word in the shell) should not wait for torch.
    """
    probes = _probes_config()
    return make_dataclass(
        "TrainConfig",
        [("probes", probes, field(default_factory=probes))],
        bases=(_TrainFields,),
        namespace={"__module__": __name__},
    )


_LAZY_SCHEMAS = {"ProbesConfig": _probes_config, "TrainConfig": _train_config}


def __getattr__(name: str) -> Any:
    # `ProbesConfig` and `TrainConfig` are module attributes built when first asked for
    if name in _LAZY_SCHEMAS:
        return _LAZY_SCHEMAS[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_configs(help_only: bool = False) -> None:
    """Make `train_schema` available to `conf/train.yaml`'s defaults list, and register the
    `sb.or` resolver the configs use: `${sb.or:${experiment},run}` is `run` when no preset is
    chosen (`oc.select` only falls back on a missing key, not on a null one).

    `help_only`: a schema whose `probes` is untyped, enough to compose `--help` without torch.
    """
    OmegaConf.register_new_resolver("sb.or", lambda v, d: d if v is None else v, replace=True)
    schema = _TrainFields if help_only else _train_config()
    ConfigStore.instance().store(name="train_schema", node=schema)


# Trajectory keys added after runs were made, with the value every run before them had: the
# checkpoint of such a run lacks the key and still resumes when the new value is that one.
ADDED_TRAJECTORY_KEYS = {
    ("model", "zero_init_residual"): False,
    ("data", "image_size"): 32,
    **{(section, "kwargs"): {} for section in ("model", "norm", "data")},
}


def trajectory_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that determines the training trajectory."""
    out = {k: v for k, v in cfg.items() if k not in NON_TRAJECTORY_KEYS}
    for (section, key), before in ADDED_TRAJECTORY_KEYS.items():
        if isinstance(out.get(section), dict) and key not in out[section]:
            out[section] = {**out[section], key: before}
    # the lr schedule depends on the budget unless it is constant
    if cfg.get("optim", {}).get("schedule", "constant") != "constant":
        out["steps"] = cfg.get("steps")
    return out


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_differences(a, b, prefix=f"{name}.")
        elif a != b:
            diffs.append(f"{name}: {a!r} -> {b!r}")
    return diffs


class ConfigError(ValueError):
    """A config value outside what is allowed (one line: the value and the allowed ones)."""


BATCH_STATISTIC_NORMS = ("batch", "noisy_batch", "l1", "l2", "linf")
# Presets that only mean something for ResNets: they sweep model.shortcut, which no other net has
RESNET_PRESETS = ("hessian", "surfaces")
MAX_THREADS = 1024
RESUME_MODES = ("auto", "from_checkpoint", "restart")


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {key} {value!r}; choose one of: {', '.join(allowed)}")


def _positive(key: str, value: float, strict: bool = True) -> None:
    bad = value is None or not math.isfinite(value) or (value <= 0 if strict else value < 0)
    if bad:
        raise ConfigError(f"{key}={value} must be {'>' if strict else '>='} 0")


def _at_least(key: str, value: int, low: int) -> None:
    if value is None or value < low:
        raise ConfigError(f"{key}={value} must be >= {low}")


def _between(key: str, value: float, low: float, high: float, high_open: bool = False) -> None:
    inside = value is not None and math.isfinite(value) and low <= value
    inside = inside and (value < high if high_open else value <= high)
    if not inside:
        raise ConfigError(f"{key}={value} must be in [{low:g}, {high:g}{')' if high_open else ']'}")


def unknown_keys(cfg: Any, schema: type = None, prefix: str = "") -> list[str]:
    """Dotted keys of `cfg` that the schema (`TrainConfig`) does not have (`+foo=1`)."""
    from dataclasses import MISSING as NO_FACTORY
    from dataclasses import fields, is_dataclass

    from omegaconf import DictConfig

    schema = schema or _train_config()
    known = {f.name: f for f in fields(schema)}
    found = []
    for key in cfg.keys() if isinstance(cfg, DictConfig) else ():
        name = f"{prefix}{key}"
        if key not in known:
            found.append(name)
            continue
        factory = known[key].default_factory
        if factory is not NO_FACTORY and is_dataclass(factory()):
            found += unknown_keys(cfg[key], type(factory()), prefix=f"{name}.")
    return found


def removed_keys(cfg: Any, schema: type = None, prefix: str = "") -> list[str]:
    """Dotted keys of the schema that `cfg` lacks (deleted on the command line: `~steps`)."""
    from dataclasses import fields, is_dataclass

    from omegaconf import DictConfig

    schema = schema or _train_config()
    if not isinstance(cfg, DictConfig):
        return []
    found = []
    for f in fields(schema):
        name = f"{prefix}{f.name}"
        if f.name not in cfg:
            found.append(name)
        elif callable(f.default_factory) and is_dataclass(f.default_factory()):
            found += removed_keys(cfg[f.name], type(f.default_factory()), prefix=f"{name}.")
    return found


def validate(cfg: Any) -> None:
    """Check a composed config up front; raise ConfigError (one line) on the first bad value.

    Every range the code relies on is checked here, before anything is built or written, so
    nothing deep inside fails on a value the user typed.
    """
    from smoothbench.build import LR_SCHEDULES, OPTIMIZER_NAMES
    from smoothbench.data import DATA_NAMES
    from smoothbench.models import INIT_NAMES, MODEL_NAMES, NORM_NAMES
    from smoothbench.models.custom import CUSTOM

    missing = removed_keys(cfg) + sorted(OmegaConf.missing_keys(cfg))
    if missing:  # `~steps`, or a mandatory key no preset set
        raise ConfigError(f"{missing[0]} has no value; set it ({missing[0]}=...) or pick a scale=")
    _check_unknown_keys(cfg)
    _choice("model", cfg.model.name, (*MODEL_NAMES, CUSTOM))
    check_preset_model(cfg.experiment, cfg.model.name)
    _choice("norm", cfg.norm.name, (*NORM_NAMES, CUSTOM))
    _choice("data", cfg.data.name, (*DATA_NAMES, CUSTOM))
    validate_targets(cfg)
    _choice("optimizer", cfg.optim.name, OPTIMIZER_NAMES)
    _choice("lr schedule", cfg.optim.schedule, LR_SCHEDULES)
    _choice("init", cfg.model.init, INIT_NAMES)
    _choice("device", cfg.device, ("auto", "cpu", "cuda"))
    _choice("resume", cfg.resume, RESUME_MODES)
    _choice("logger", cfg.logger.name, ("local", "wandb"))
    _choice("logger.mode", cfg.logger.mode, ("offline", "online", "disabled"))
    _choice("probes.grad_norms", cfg.probes.grad_norms, ("per_layer", "total"))
    _at_least("seed", cfg.seed, 0)
    _between("threads", cfg.threads, 1, MAX_THREADS)
    _positive("optim.lr", cfg.optim.lr)
    _positive("model.width", cfg.model.width)
    _at_least("model.depth", cfg.model.depth, 1)
    _at_least("model.dim", cfg.model.dim, 1)
    _positive("norm.eps", cfg.norm.eps)
    _between("norm.momentum", cfg.norm.momentum, 0, 1)
    _at_least("norm.groups", cfg.norm.groups, 1)
    for key in ("n_mu", "r_mu", "r_sigma"):
        _positive(f"norm.noise.{key}", cfg.norm.noise[key], strict=False)
    n_sigma = cfg.norm.noise.n_sigma
    if not (n_sigma is not None and math.isfinite(n_sigma) and n_sigma >= 1):  # inf is no scale
        raise ConfigError(f"norm.noise.n_sigma={n_sigma} must be a finite number >= 1")
    _positive("optim.momentum", cfg.optim.momentum, strict=False)
    _positive("optim.weight_decay", cfg.optim.weight_decay, strict=False)
    _positive("optim.gamma", cfg.optim.gamma)
    for m in cfg.optim.milestones:
        _between("optim.milestones", m, 0, 1)
    if len(cfg.optim.betas) != 2:
        raise ConfigError(f"optim.betas={list(cfg.optim.betas)} must be two numbers in [0, 1)")
    for i, beta in enumerate(cfg.optim.betas):
        _between(f"optim.betas[{i}]", beta, 0, 1, high_open=True)
    if cfg.optim.nesterov and cfg.optim.name == "sgd" and cfg.optim.momentum <= 0:
        raise ConfigError(
            f"optim.nesterov=true needs optim.momentum > 0 (got {cfg.optim.momentum})"
        )
    _at_least("steps", cfg.steps, 1)
    for key in ("batch_size", "eval_every", "checkpoint_every", "eval_batch_size"):
        _at_least(key, cfg[key], 1)
    for step in cfg.keep_checkpoints:
        _at_least("keep_checkpoints", step, 1)
    _at_least("data.num_samples", cfg.data.num_samples, 1)
    _at_least("data.dim", cfg.data.dim, 1)
    _between("data.test_fraction", cfg.data.test_fraction, 0, 1, high_open=True)
    if cfg.data.test_fraction <= 0:
        raise ConfigError(f"data.test_fraction={cfg.data.test_fraction} must be in (0, 1)")
    _validate_probes(cfg.probes)
    check_upper_bounds(cfg)
    _check_image_size(cfg)  # after the bounds: an absurd size is named as out of bounds first
    if cfg.model.name == "dln" and cfg.data.name != "gaussian":
        raise ConfigError(
            f"model dln needs data=gaussian (regression targets), got data={cfg.data.name}"
        )
    if cfg.data.name == "gaussian" and cfg.model.name != "dln":
        raise ConfigError(
            f"data=gaussian is the DLN's regression data; model={cfg.model.name} "
            "needs an image data set (digits, cifar10, cifar100, imagefolder)"
        )
    effective_batch = cfg.data.num_samples if cfg.optim.full_batch else cfg.batch_size
    if effective_batch == 1 and cfg.norm.name in BATCH_STATISTIC_NORMS:
        raise ConfigError(
            f"batch_size=1 with norm={cfg.norm.name}: batch statistics of one example are "
            f"degenerate; use batch_size >= 2 or a per-example norm (none, layer, group)"
        )
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device=cuda but no CUDA device is available; use device=auto or cpu")
    check_memory(cfg)


def _check_unknown_keys(cfg: Any) -> None:
    from smoothbench.models.custom import CUSTOM

    extra = unknown_keys(cfg)
    if not extra:
        return
    section, _, key = extra[0].partition(".")
    if section in ("model", "norm", "data") and key and cfg[section].name == CUSTOM:
        raise ConfigError(
            f"unknown key {extra[0]!r}; a keyword argument of {section}._target_ goes in "
            f"{section}.kwargs: +{section}.kwargs.{key}=..."
        )
    raise ConfigError(f"unknown key {extra[0]!r}; `--cfg job` lists the allowed keys")


def _check_image_size(cfg: Any) -> None:
    _at_least("data.image_size", cfg.data.image_size, 1)
    if cfg.model.name.startswith("vgg") and cfg.data.image_size != 32:
        raise ConfigError(
            f"model={cfg.model.name} takes 32x32 images (its classifier follows 5 poolings), "
            f"got data.image_size={cfg.data.image_size}; use a ResNet or model=custom"
        )


def validate_targets(cfg: Any) -> None:
    """model/norm/data=custom: `_target_` importable and callable; the model and norm return
    nn.Modules (built on the meta device: shapes only). `_target_` and `kwargs` are refused
    outside custom. One-line ConfigError naming the key."""
    from smoothbench.models.custom import CUSTOM, TargetError, resolve_target

    for section in ("model", "norm", "data"):
        node = cfg[section]
        target, kwargs = node.get("_target_"), node.get("kwargs") or {}
        if node.name != CUSTOM:
            if target is not None or kwargs:
                key = f"{section}._target_" if target is not None else f"{section}.kwargs"
                raise ConfigError(f"{key} is for {section}=custom only; got {section}={node.name}")
            continue
        if target is None:
            raise ConfigError(
                f"{section}=custom needs {section}._target_=PKG.FN, an importable callable"
            )
        try:
            resolve_target(f"{section}._target_", target)
        except TargetError as err:
            raise ConfigError(str(err)) from None
    if CUSTOM in (cfg.model.name, cfg.norm.name):
        _meta_model(cfg)


def _meta_model(cfg: Any) -> Any:
    """The run's model on the meta device (no memory, no time), or None when its constructor
    fails there (the real build reports that); ConfigError for a target of the wrong type."""
    import torch

    from smoothbench.build import build_model_from_config
    from smoothbench.models.custom import TargetError

    classes = {"cifar100": 100}.get(cfg.data.name, 10)
    try:
        with torch.device("meta"):
            return build_model_from_config(cfg, num_classes=classes)
    except TargetError as err:
        raise ConfigError(str(err)) from None
    except Exception:
        return None


def check_preset_model(experiment: str | None, model: str) -> None:
    """Refuse a net the preset cannot compare, rather than run it (a preset takes any other
    choice from the command line as it is)."""
    from smoothbench.models.resnet import RESNET_SPECS

    if experiment in RESNET_PRESETS and model not in RESNET_SPECS:
        raise ConfigError(
            f"experiment={experiment} compares ResNets with and without shortcuts, and "
            f"model={model} has none; choose one of: {', '.join(RESNET_SPECS)}"
        )


def _validate_probes(probes: Any) -> None:
    """Each probe's schedule, then the probe's own checks (`Probe.check`)."""
    from smoothbench.probes.registry import probe_types
    from smoothbench.probes.schedule import SCHEDULE_KINDS

    for name in probe_types():
        key = f"probes.{name}"
        schedule = probes[name].schedule
        _choice(f"{key}.schedule.kind", schedule.kind, SCHEDULE_KINDS)
        _at_least(f"{key}.schedule.every", schedule.every, 1)
        _at_least(f"{key}.schedule.num", schedule.num, 1)
        for step in schedule.steps:
            _at_least(f"{key}.schedule.steps", step, 0)
    from smoothbench.probes.budget import check_max_fraction

    try:
        check_max_fraction("probes.max_fraction", probes.max_fraction)
        for name, probe in probe_types().items():
            probe.check(probes[name], f"probes.{name}")
    except ValueError as err:
        raise ConfigError(str(err)) from None


# ---- upper bounds: every number of the config, checked from the schema (a new key is covered) ----

MAX_SEED = 2**32 - 1  # numpy's seed takes 32 bits (torch.manual_seed takes 64)
MAX_COUNT = 2**31 - 1  # steps, sizes, periods: int32 indices, Python ranges, tensor shapes
# Any float setting: far past every meaningful value, and its products with weights, gradients
# or a schedule's factors still fit float32 (3.4e38), which torch's optimizers cast lr to
MAX_MAGNITUDE = 1e12
MAX_DEPTH = 10_000  # model.depth (the DLN): one Python module per layer; 1e8 layers hang the build
# Keys whose range is narrower than their type's; every other int is <= MAX_COUNT, every float
# finite with |value| <= MAX_MAGNITUDE
UPPER_BOUNDS: dict[str, float] = {
    "seed": MAX_SEED,
    "data.data_seed": MAX_SEED,
    "threads": MAX_THREADS,
    "model.depth": MAX_DEPTH,
    "data.image_size": 4096,  # pixels per side; the whole set is held in memory as uint8
}


def numeric_keys(schema: type | None = None, prefix: str = "") -> list[tuple[str, type, bool]]:
    """(dotted key, int or float, is a list) for every number of the schema (`TrainConfig`)."""
    import typing
    from dataclasses import fields, is_dataclass

    schema = schema or _train_config()
    hints = typing.get_type_hints(schema)
    found = []
    for f in fields(schema):
        kind = hints[f.name]
        if is_dataclass(kind):
            found += numeric_keys(kind, prefix=f"{prefix}{f.name}.")
            continue
        is_list = typing.get_origin(kind) is list
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        base = args[0] if args else kind  # list[float] -> float, int | None -> int
        if base in (int, float):
            found.append((f"{prefix}{f.name}", base, is_list))
    return found


def upper_bound(key: str, kind: type) -> float:
    """The largest value `key` may take (`UPPER_BOUNDS`, else by its type)."""
    if key in UPPER_BOUNDS:
        return UPPER_BOUNDS[key]
    if key == "probes.hessian.top_k":
        return hessian_max_iter()
    return MAX_COUNT if kind is int else MAX_MAGNITUDE


def hessian_max_iter() -> int:
    """The Hessian probe's Lanczos steps: it cannot find more eigenvalues than that."""
    import inspect

    from smoothbench.curvature import hessian_eigenvalues

    return inspect.signature(hessian_eigenvalues).parameters["max_iter"].default


def check_upper_bounds(cfg: Any) -> None:
    """Every number of the config finite and at most its bound (one line naming the key)."""
    for key, kind, is_list in numeric_keys():
        value = OmegaConf.select(cfg, key)
        for v in (value if is_list else [value]) if value is not None else []:
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            high = upper_bound(key, kind)
            if not math.isfinite(v) or abs(v) > high:
                finite = "finite and " if kind is float else ""
                raise ConfigError(f"{key}={_number(v)} must be {finite}at most {_number(high)}")
    _check_lr_schedule(cfg.optim)


def _number(v: float) -> str:
    """An int in full (a seed's last digit matters), a float short."""
    return str(v) if isinstance(v, int) else f"{v:g}"


def _check_lr_schedule(optim: Any) -> None:
    """The step schedule multiplies lr by gamma at each milestone: the largest lr must fit too."""
    if optim.schedule != "step" or optim.gamma <= 1:
        return
    peak = optim.lr * optim.gamma ** len(optim.milestones)
    if peak > MAX_MAGNITUDE:
        raise ConfigError(
            f"optim.gamma={optim.gamma:g} over {len(optim.milestones)} milestones takes "
            f"optim.lr={optim.lr:g} to {peak:g}; the lr must stay at most {MAX_MAGNITUDE:g}"
        )


# ---- memory: a size the machine cannot hold is refused with its estimate, before the build ----

FLOAT_BYTES = 4


def check_memory(cfg: Any) -> None:
    """Refuse sizes whose memory estimate exceeds the device's memory (one line, the estimate)."""
    available, where = device_memory(cfg.device)
    for keys, needed, what in memory_needs(cfg):
        if needed > available:
            raise ConfigError(
                f"{keys} needs ~{human_bytes(needed)} for {what}, more than {where} "
                f"({human_bytes(available)}); use smaller values"
            )


def memory_needs(cfg: Any) -> list[tuple[str, float, str]]:
    """(the keys responsible, bytes, what for): a lower estimate of the largest allocations."""
    m, d = cfg.model, cfg.data
    if m.name == "dln":
        model_keys = f"model.depth={m.depth}, model.dim={m.dim}"
    else:
        model_keys = f"model.width={m.width:g}"
    needs = []
    if d.name == "gaussian":  # inputs, targets and the target matrix, float32
        data = (2 * d.num_samples * d.dim + d.dim**2) * FLOAT_BYTES
        needs.append((f"data.num_samples={d.num_samples}, data.dim={d.dim}", data, "the data"))
    params = parameter_count(cfg)
    if params is None:
        return needs
    optim_states = 2 if cfg.optim.name == "adam" else int(cfg.optim.momentum > 0)
    # weights, gradients, optimizer states and one copy (a checkpoint's or a probe's snapshot)
    needs.append(
        (
            model_keys,
            params * (3 + optim_states) * FLOAT_BYTES,
            f"{params:.3g} parameters with gradients and optimizer state",
        )
    )
    if m.name == "dln":  # activations kept for the backward pass: two per layer and example
        batch = d.num_samples if cfg.optim.full_batch else cfg.batch_size
        needs.append((model_keys, 2 * batch * m.dim * m.depth * FLOAT_BYTES, "the activations"))
    hessian = cfg.probes.hessian
    if hessian.schedule.kind != "off":  # the Lanczos basis: up to max_iter + top_k vectors
        vectors = hessian_max_iter() + hessian.top_k
        needs.append(
            (
                f"probes.hessian.top_k={hessian.top_k} with {model_keys}",
                vectors * params * FLOAT_BYTES,
                "the Hessian probe's Lanczos vectors",
            )
        )
    return needs


def parameter_count(cfg: Any) -> int | None:
    """The model's parameter count without allocating it (None if it cannot be built)."""
    m, n = cfg.model, cfg.norm
    if m.name == "dln":  # depth square layers and a norm (weight and bias) after all but the last
        return m.depth * m.dim**2 + 2 * (m.depth - 1) * m.dim
    if "custom" in (m.name, n.name):
        model = _meta_model(cfg)
        return None if model is None else sum(p.numel() for p in model.parameters())
    classes = {"cifar100": 100}.get(cfg.data.name, 10)
    return _meta_parameter_count(
        m.name, n.name, float(m.width), classes, bool(m.shortcut), int(n.groups)
    )


@cache
def _meta_parameter_count(
    name: str, norm: str, width: float, classes: int, shortcut: bool, groups: int
) -> int | None:
    import torch

    from smoothbench.models import build_model

    try:  # on the meta device: shapes only, no memory, no time
        with torch.device("meta"):
            model = build_model(
                name, norm=norm, num_classes=classes, width=width, shortcut=shortcut, groups=groups
            )
    except Exception:  # the real build says what is wrong (e.g. groups that do not divide)
        return None
    return sum(p.numel() for p in model.parameters())


def device_memory(device: str) -> tuple[int, str]:
    """(bytes, a name for them): the CUDA device's memory where the run goes to one, else RAM."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return props.total_memory, f"the memory of {props.name}"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's memory"


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB", "EB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} ZB"


def check_batch_fits(cfg: Any, num_train: int) -> None:
    """Refuse a batch larger than the training set: full-batch training is `optim.full_batch`."""
    if not cfg.optim.full_batch and cfg.batch_size > num_train:
        raise ConfigError(
            f"batch_size={cfg.batch_size} is larger than the training set ({num_train} examples); "
            f"use batch_size <= {num_train}, or optim.full_batch=true for full-batch training"
        )
    hessian_batch = cfg.probes.hessian.batch_size  # null: the training batch, checked above
    if cfg.probes.hessian.schedule.kind != "off" and (hessian_batch or 0) > num_train:
        raise ConfigError(
            f"probes.hessian.batch_size={cfg.probes.hessian.batch_size} is larger than the "
            f"training set ({num_train} examples); use a value <= {num_train}"
        )
