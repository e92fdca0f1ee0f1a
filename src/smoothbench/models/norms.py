"""Normalization layers: torch's own, the paper's noisy BatchNorm and the lp normalizations.

`NORMS` is the one table of normalizations (name -> label and colour for every figure);
`make_norm` builds one by name. The layers written here:

- `NoisyBatchNorm` (paper Algorithm 1): BatchNorm, then in training mode a random per-unit scale
  and shift, redrawn once per optimizer step from a private generator, so probes at step t see
  the step-t noise and the global RNG never moves.
- `StepNoise` (norm `noise`): the same noise without BatchNorm, on a standard net (paper §2.1:
  the noise alone hurts a standard net; with BN the net shrugs it off).
- `LpNorm`: subtract the per-unit batch mean (as BN does), then divide by the batch average of
  the per-sample lp norm over the whole layer: it fixes the layer's overall scale, not each
  unit's variance.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@dataclass(frozen=True)
class NormInfo:
    """How a normalization is named and drawn in every figure and table of the project."""

    name: str
    label: str  # figure legends (matplotlib mathtext allowed)
    short: str  # plain text for tables and messages ("standard net never left chance")
    color: str  # hex; seaborn's colorblind palette, fixed per normalization
    description: str


# The one table of normalizations: NORM_NAMES, figure labels and colours all come from here.
NORMS: dict[str, NormInfo] = {
    n.name: n
    for n in (
        NormInfo(
            "none", "Standard", "standard", "#0173b2", "no normalization (the conv keeps its bias)"
        ),
        NormInfo("batch", "Standard + BatchNorm", "BN", "#d55e00", "torch's BatchNorm"),
        NormInfo(
            "noisy_batch",
            'Standard + "Noisy" BatchNorm',
            "noisy BN",
            "#029e73",
            "BatchNorm, then paper Algorithm 1's per-step noise",
        ),
        NormInfo(
            "noise",
            "Standard + noise",
            "standard + noise",
            "#fbafe4",
            "paper Algorithm 1's per-step noise without BatchNorm",
        ),
        NormInfo(
            "l1", "Standard + $\\ell_1$ norm", "ℓ1", "#cc78bc", "mean-centred ℓ1 normalization"
        ),
        NormInfo(
            "l2", "Standard + $\\ell_2$ norm", "ℓ2", "#de8f05", "mean-centred ℓ2 normalization"
        ),
        NormInfo(
            "linf",
            "Standard + $\\ell_\\infty$ norm",
            "ℓ∞",
            "#ca9161",
            "mean-centred ℓ∞ normalization",
        ),
        NormInfo(
            "layer",
            "Standard + LayerNorm",
            "LayerNorm",
            "#ece133",
            "torch's LayerNorm (GroupNorm(1))",
        ),
        NormInfo("group", "Standard + GroupNorm", "GroupNorm", "#56b4e9", "torch's GroupNorm"),
    )
}
NORM_NAMES = tuple(NORMS)
# Paper Algorithm 1's noise settings: the one source (conf/norm/noisy_batch.yaml and
# conf/norm/noise.yaml mirror it; tests/test_norms.py checks that they do).
NOISE_DEFAULTS = {"n_mu": 0.5, "n_sigma": 1.25, "r_mu": 0.1, "r_sigma": 0.1}
LP_ORDERS = {"l1": 1.0, "l2": 2.0, "linf": math.inf}


def _require_batch_statistics(x: torch.Tensor, layer: str) -> None:
    """Batch statistics over one value per unit are degenerate: refuse instead of returning 0."""
    if x.numel() // x.shape[1] <= 1:
        raise ValueError(
            f"{layer} in training mode needs more than 1 value per unit for its batch "
            f"statistics, got input of shape {tuple(x.shape)}"
        )


def _unit_shape(x: torch.Tensor) -> tuple[int, ...]:
    """Shape that broadcasts a per-unit (per-channel) vector against x of shape (N, C, ...)."""
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


class LpNorm(nn.Module):
    """Mean-centred lp normalization (paper §3.3, docs/science.md §3), p in {1, 2, inf}.

    Training mode, x of shape (N, C) or (N, C, H, W):
      x̃ = x - mean_B(x)                     per unit, over N (and H, W), as BN
      s = mean_n ((1/D) Σ_i |x̃_{n,i}|^p)^(1/p)    D = all units of the layer (C·H·W);
                                                 max_i |x̃_{n,i}| for p = inf
      y = γ · x̃ / (s + eps) + β               per-channel γ, β
    Gradients flow through the mean and s, as through BN's statistics. Running mean (per unit)
    and running scale (one scalar) follow r <- (1 - momentum) r + momentum · stat and replace
    the batch statistics in eval mode.
    """

    def __init__(
        self, num_features: int, p: float, eps: float = 1e-5, momentum: float = 0.1
    ) -> None:
        super().__init__()
        if p not in (1.0, 2.0, math.inf):
            raise ValueError(f"unsupported lp order {p!r}; choose one of: 1, 2, inf")
        self.num_features = num_features
        self.p = float(p)
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_scale", torch.ones(()))

    def extra_repr(self) -> str:
        return f"{self.num_features}, p={self.p}, eps={self.eps}, momentum={self.momentum}"

    def batch_scale(self, centered: torch.Tensor) -> torch.Tensor:
        """s: the batch mean of each sample's normalized lp norm over all units of the layer."""
        flat = centered.flatten(1)
        # vector_norm has a safe subgradient at 0 (a constant input), a hand-written root has not.
        per_sample = torch.linalg.vector_norm(flat, ord=self.p, dim=1)
        if math.isfinite(self.p):
            per_sample = per_sample / flat.shape[1] ** (1.0 / self.p)
        return per_sample.mean()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = _unit_shape(x)
        if self.training:
            _require_batch_statistics(x, type(self).__name__)
            mean = x.mean(dim=[0, *range(2, x.dim())])
            centered = x - mean.view(shape)
            scale = self.batch_scale(centered)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
                self.running_scale.lerp_(scale.detach().to(self.running_scale.dtype), self.momentum)
        else:
            centered = x - self.running_mean.view(shape)
            scale = self.running_scale
        return centered / (scale + self.eps) * self.weight.view(shape) + self.bias.view(shape)


def noise_generator_seed(noise_seed: int, layer_id: int, step: int) -> int:
    """A 63-bit seed fixed by (noise_seed, layer_id, step), the same in every process.

    A hash of the text rather than Python's hash(), which is salted per process for strings.
    """
    digest = hashlib.blake2b(f"{noise_seed}/{layer_id}/{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class NoiseDraw:
    """Paper Algorithm 1's noise as a mixin: settings, identity, and the draw of one step.

    Per unit j (a channel for conv inputs): μ_j ~ U(-n_mu, n_mu), σ_j ~ U(1, n_sigma). Per sample
    i (every (n, h, w) position for conv inputs) and unit j: m_ij ~ U(μ_j - r_mu, μ_j + r_mu),
    s_ij ~ N(σ_j, r_sigma); the layer outputs s · a + m.

    The noise belongs to the optimizer step, not to the forward call: it is drawn from a private
    generator seeded by (noise_seed, layer_id, noise_step) and reused for every forward of that
    step, so a probe's extra passes see exactly the training pass's noise and the global RNG is
    never touched. `set_noise_step(model, step)` advances every layer; before it, step 0.
    """

    n_mu: float
    n_sigma: float
    r_mu: float
    r_sigma: float
    noise_seed: int
    layer_id: int
    noise_step: int

    def _init_noise(
        self,
        n_mu: float,
        n_sigma: float,
        r_mu: float,
        r_sigma: float,
        noise_seed: int,
        layer_id: int,
    ) -> None:
        self.n_mu, self.n_sigma, self.r_mu, self.r_sigma = n_mu, n_sigma, r_mu, r_sigma
        self.noise_seed = noise_seed
        self.layer_id = layer_id
        self.noise_step = 0
        # (key, scale, shift) of the last draw; a plain attribute, so never in the state_dict.
        self._noise_cache: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def _noise_repr(self) -> str:
        return (
            f"n_mu={self.n_mu}, n_sigma={self.n_sigma}, r_mu={self.r_mu}, "
            f"r_sigma={self.r_sigma}, noise_seed={self.noise_seed}, layer_id={self.layer_id}, "
            f"noise_step={self.noise_step}"
        )

    def noise(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s, m) for the current step, shaped like `like`; float32, drawn on its device."""
        key = (self.noise_seed, self.layer_id, self.noise_step, tuple(like.shape), like.device)
        if self._noise_cache is not None and self._noise_cache[0] == key:
            return self._noise_cache[1], self._noise_cache[2]
        generator = torch.Generator(device=like.device)
        generator.manual_seed(noise_generator_seed(self.noise_seed, self.layer_id, self.noise_step))
        draw = {"generator": generator, "device": like.device, "dtype": torch.float32}
        channels, shape = like.shape[1], _unit_shape(like)
        unit_mu = (2 * torch.rand(channels, **draw) - 1) * self.n_mu
        unit_sigma = 1 + torch.rand(channels, **draw) * (self.n_sigma - 1)
        shift = unit_mu.view(shape) + (2 * torch.rand(like.shape, **draw) - 1) * self.r_mu
        scale = unit_sigma.view(shape) + torch.randn(like.shape, **draw) * self.r_sigma
        self._noise_cache = (key, scale, shift)
        return scale, shift

    def add_noise(self, out: torch.Tensor) -> torch.Tensor:
        """s · out + m with the current step's draw (training mode only: callers check)."""
        if torch.compiler.is_compiling():
            scale, shift = _noise_outside_compiled_graph(self, out)
        else:
            scale, shift = self.noise(out)
        return out * scale.to(out.dtype) + shift.to(out.dtype)


class NoisyBatchNorm(NoiseDraw, _BatchNorm):
    """BatchNorm (with affine) followed, in training mode only, by paper Algorithm 1's noise.

    See `NoiseDraw` for the noise and its determinism. Accepts (N, C) and (N, C, H, W) inputs.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        *,
        n_mu: float = NOISE_DEFAULTS["n_mu"],
        n_sigma: float = NOISE_DEFAULTS["n_sigma"],
        r_mu: float = NOISE_DEFAULTS["r_mu"],
        r_sigma: float = NOISE_DEFAULTS["r_sigma"],
        noise_seed: int = 0,
        layer_id: int = 0,
    ) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=True)
        self._init_noise(n_mu, n_sigma, r_mu, r_sigma, noise_seed, layer_id)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._noise_repr()}"

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"NoisyBatchNorm expects a 2-D or 4-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            _require_batch_statistics(x, type(self).__name__)
        out = super().forward(x)
        return self.add_noise(out) if self.training else out


class StepNoise(NoiseDraw, nn.Module):
    """Norm `noise`: paper Algorithm 1's noise with no normalization (training mode only).

    A standard net with the noisy BatchNorm's noise after each conv/linear (before the ReLU):
    output s · x + m with the per-step draw of `NoiseDraw`; the identity in eval mode. No
    parameters, no buffers: the state_dict of a `noise` net is the standard net's.
    Accepts (N, C) and (N, C, H, W) inputs.
    """

    def __init__(
        self,
        num_features: int,
        *,
        n_mu: float = NOISE_DEFAULTS["n_mu"],
        n_sigma: float = NOISE_DEFAULTS["n_sigma"],
        r_mu: float = NOISE_DEFAULTS["r_mu"],
        r_sigma: float = NOISE_DEFAULTS["r_sigma"],
        noise_seed: int = 0,
        layer_id: int = 0,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self._init_noise(n_mu, n_sigma, r_mu, r_sigma, noise_seed, layer_id)

    def extra_repr(self) -> str:
        return f"{self.num_features}, {self._noise_repr()}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (2, 4) or x.shape[1] != self.num_features:
            raise ValueError(
                f"StepNoise({self.num_features}) expects (N, {self.num_features}) or "
                f"(N, {self.num_features}, H, W) input, got shape {tuple(x.shape)}"
            )
        return self.add_noise(x) if self.training else x


# Under torch.compile the draw runs eagerly: a graph would otherwise specialize on noise_step and
# recompile every step. torch._disable_dynamo (not torch.compiler.disable) defers importing
# dynamo, which costs seconds, to the first compiled call.
_noise_outside_compiled_graph = torch._disable_dynamo(
    lambda layer, like: layer.noise(like), recursive=True
)


def set_noise_step(model: nn.Module, step: int) -> None:
    """Make every noisy layer (NoisyBatchNorm, StepNoise) of `model` use step `step`'s noise."""
    for module in model.modules():
        if isinstance(module, NoiseDraw):
            module.noise_step = int(step)


def assign_noise_ids(model: nn.Module, noise_seed: int) -> None:
    """Number the noisy layers 0, 1, ... in module order and give them all `noise_seed`."""
    noisy = (m for m in model.modules() if isinstance(m, NoiseDraw))
    for layer_id, module in enumerate(noisy):
        module.layer_id = layer_id
        module.noise_seed = noise_seed


def resolve_noise(noise: Mapping | None) -> dict[str, float]:
    """Algorithm 1's settings: the paper's values, overridden by `noise`; checked."""
    settings = dict(NOISE_DEFAULTS)
    for key, value in dict(noise or {}).items():
        if key not in NOISE_DEFAULTS:
            raise ValueError(
                f"unknown noise setting {key!r}; choose from: {', '.join(NOISE_DEFAULTS)}"
            )
        settings[key] = float(value)
    lower = {"n_mu": 0.0, "n_sigma": 1.0, "r_mu": 0.0, "r_sigma": 0.0}
    for key, bound in lower.items():
        if not settings[key] >= bound:
            raise ValueError(f"noise setting {key} must be >= {bound}, got {settings[key]!r}")
    return settings


def largest_divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of n that is <= limit (GroupNorm needs groups dividing channels)."""
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def make_norm(
    norm: str,
    num_features: int,
    *,
    spatial: bool,
    eps: float = 1e-5,
    momentum: float = 0.1,
    groups: int = 32,
    noise: Mapping | None = None,
) -> nn.Module:
    """The normalization `norm` for `num_features` units of a conv (spatial) or linear layer.

    `group` uses the largest divisor of num_features that is <= groups as its group count (for a
    linear layer also <= num_features / 2, so no group is a single value). Noisy layers get
    layer_id 0 and noise_seed 0 here; `assign_noise_ids` numbers them once the
    whole model exists.
    """
    if norm == "none":
        return nn.Identity()
    if norm == "batch":
        cls = nn.BatchNorm2d if spatial else nn.BatchNorm1d
        return cls(num_features, eps=eps, momentum=momentum)
    if norm == "noisy_batch":
        return NoisyBatchNorm(num_features, eps=eps, momentum=momentum, **resolve_noise(noise))
    if norm == "noise":
        return StepNoise(num_features, **resolve_noise(noise))
    if norm in LP_ORDERS:
        return LpNorm(num_features, LP_ORDERS[norm], eps=eps, momentum=momentum)
    if norm == "layer":
        if spatial:
            return nn.GroupNorm(1, num_features, eps=eps)
        return nn.LayerNorm(num_features, eps=eps)
    if norm == "group":
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups!r}")
        # A group of one linear unit normalizes a single value to β: keep >= 2 units per group.
        limit = groups if spatial else max(1, min(groups, num_features // 2))
        return nn.GroupNorm(largest_divisor_at_most(num_features, limit), num_features, eps=eps)
    raise ValueError(f"unknown norm {norm!r}; choose one of: {', '.join(NORM_NAMES)}")
