"""Your own model or norm from any importable callable, and the layers of a model that does not
number its own (docs/your-own-model.md).

`model=custom model._target_=PKG.FN` builds `FN(**kwargs)`; `norm=custom norm._target_=PKG.FN`
makes each norm with `FN(num_features, **kwargs)`. `numbered_layers` falls back on
`inferred_layers` for a model without `layer_pairs()`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from smoothbench.models.norms import LpNorm, StepNoise

CUSTOM = "custom"  # the model/norm/data option built from `_target_` and `kwargs`
# Set on every module a norm factory of the run built (`tagged`), so the layer rule finds a
# custom norm, and an nn.Identity of norm=none, after its conv
NORM_TAG = "_smoothbench_norm"
TRANSFORM_TYPES = (nn.modules.conv._ConvNd, nn.Linear)
# torch's BatchNorm/InstanceNorm (_NormBase), GroupNorm, LayerNorm, ...; smoothbench's own
KNOWN_NORM_TYPES = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
    LpNorm,
    StepNoise,
)


class TargetError(ValueError):
    """A `_target_` that cannot be imported, is not callable or returns the wrong type."""


def resolve_target(key: str, path: Any) -> Callable:
    """The callable `path` ("pkg.module.fn" or "pkg.module.Class.method") names; one-line
    TargetError naming `key` when it cannot be imported or is not callable."""
    if not isinstance(path, str) or "." not in path.strip("."):
        raise TargetError(f"{key}={path!r} must be a dotted path to a callable, e.g. pkg.module.fn")
    parts = path.split(".")
    obj, reason = None, ""
    for cut in range(len(parts) - 1, 0, -1):  # the longest importable module prefix
        module = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module)
        except ImportError as err:
            reason = reason or f"{type(err).__name__}: {err}"
            missing = getattr(err, "name", None) or ""
            if missing and (module == missing or module.startswith(missing + ".")):
                continue  # no such module: try a shorter prefix (pkg.Class.method)
            inner = f"{type(err).__name__}: {err}".splitlines()[0]
            raise TargetError(f"{key}={path!r}: cannot import it ({inner})") from None
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            raise TargetError(
                f"{key}={path!r}: cannot import it: module {module!r} has no "
                f"{'.'.join(parts[cut:])!r}"
            ) from None
        break
    else:
        raise TargetError(
            f"{key}={path!r}: cannot import it ({reason.splitlines()[0]}); is its package "
            "installed or on PYTHONPATH?"
        )
    if not callable(obj):
        raise TargetError(f"{key}={path!r} is a {type(obj).__name__}, not a callable")
    return obj


def accepts(fn: Callable, name: str) -> bool:
    """Whether `fn` takes keyword `name`: it names it, or takes **kwargs."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == name and p.kind is not p.POSITIONAL_ONLY)
        for p in params
    )


def tagged(factory: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
    """`factory`, its modules tagged as the run's norms (for `inferred_layers`)."""

    def make(num_features: int) -> nn.Module:
        module = factory(num_features)
        setattr(module, NORM_TAG, True)
        return module

    return make


def custom_norm_factory(
    target: str, kwargs: Mapping[str, Any], key: str = "norm._target_"
) -> Callable[[int], nn.Module]:
    """`num_features -> target(num_features, **kwargs)`, checked to return an nn.Module."""
    fn = resolve_target(key, target)

    def make(num_features: int) -> nn.Module:
        return returns_module(key, target, fn(num_features, **kwargs))

    return make


def returns_module(key: str, target: str, out: Any) -> nn.Module:
    if not isinstance(out, nn.Module):
        raise TargetError(
            f"{key}={target!r} returned a value of type {type(out).__name__}; it must return "
            "a torch.nn.Module"
        )
    return out


def build_custom_model(
    target: str,
    kwargs: Mapping[str, Any],
    *,
    num_classes: int | None = None,
    norm_layer: Callable[[int], nn.Module] | None = None,
) -> tuple[nn.Module, list[str]]:
    """`target(**kwargs)`, with num_classes and norm_layer added when it takes them and
    kwargs do not set them. Returns (model, the names of the two it did not take)."""
    fn = resolve_target("model._target_", target)
    kwargs = dict(kwargs)
    ignored = []
    for name, value in (("num_classes", num_classes), ("norm_layer", norm_layer)):
        if value is None or name in kwargs:
            continue
        if accepts(fn, name):
            kwargs[name] = value
        else:
            ignored.append(name)
    return returns_module("model._target_", target, fn(**kwargs)), ignored


def is_norm(module: nn.Module) -> bool:
    return getattr(module, NORM_TAG, False) or isinstance(module, KNOWN_NORM_TYPES)


def inferred_layers(model: nn.Module) -> list[tuple[str, str]]:
    """(transform, norm) names for a model without `layer_pairs()`, from the input on.

    Every Conv/Linear that the next module in `named_modules()` order is a norm of (a torch or
    smoothbench normalization, or one the run's norm factory made: norm=none's nn.Identity, a
    custom norm) is a numbered layer with that norm; a Conv/Linear without one (a classifier)
    is not. A model with no such pair numbers every Conv/Linear alone: (name, name).
    """
    named = list(model.named_modules())
    pairs = [
        (name, named[i + 1][0])
        for i, (name, module) in enumerate(named[:-1])
        if isinstance(module, TRANSFORM_TYPES) and is_norm(named[i + 1][1])
    ]
    if pairs:
        return pairs
    return [(name, name) for name, module in named if isinstance(module, TRANSFORM_TYPES)]
