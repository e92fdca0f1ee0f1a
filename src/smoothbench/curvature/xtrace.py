"""XTrace: the trace of a square operator from matrix-vector products, with an error estimate.

Reference: E. N. Epperly, J. A. Tropp and R. J. Webber, "XTrace: Making the most of every sample
in stochastic trace estimation", SIAM J. Matrix Anal. Appl. 45(1), 2024; reference MATLAB code
github.com/eepperly/XTrace (`code/xtrace.m`, `xtrace_helper.m`, `xtrace_tol.m`), which this
module follows line by line for real operators with the recommended "improved" test vectors.

The algorithm, with k = m/2 test vectors for m products:
1. Ω: k Gaussian vectors, each normalized to length √n (uniform on that sphere).
2. Y = AΩ (k products); Q, R = qr(Y).
3. Z = AQ (k products); H = QᵀZ, W = QᵀΩ, T = ZᵀΩ.
4. Leaving test vector i out of the sketch removes from span(Q) the direction Q s_i, s_i the
   i-th column of R⁻ᵀ normalized (it is orthogonal to every other column of R). The i-th
   estimate is the low-rank part tr(Qᵀ_(i) A Q_(i)) plus the Girard-Hutchinson estimate of the
   rest with ω_i, computed from the k×k matrices above (plus a normalization factor
   (n-k+1)/(n-‖w_i‖²+(s_iᵀw_i)²) for the sphere vectors); no further products.
5. The k estimates are exchangeable: their mean is the estimate, their standard error
   (std/√k) the error estimate. The paper (and the reference README) note that it tends to
   UNDERestimate the error and fluctuates; set targets conservatively.
The estimate is exact when rank(A) < k, for any A (not only symmetric): then every
leave-one-out sketch still spans range(A), and tr(A) = tr(QᵀAQ). At rank k it is not (each
leave-one-out sketch misses a direction).

The operator is anything with `matvec(v)`, `size`, `dtype` and `device` (`HessianOperator`, or
its bound `matvec`), or a plain callable on flat vectors with `size=` (and `dtype=`, `device=`)
given. Products run one vector at a time in the operator's dtype; everything else (the n×k
matrices Ω, Q, Z and the k×k algebra) is float64 on the operator's device, so memory is about
3·n·k float64 numbers. Test vectors come from a private generator on that device: results are
deterministic per seed and device, and no global RNG moves.

Adaptive use (`rtol=`): the sketch grows in rounds, each adding half as many test vectors as it
holds (at least one; a doubling as in `xtrace_tol.m` would overshoot the need by up to 2×),
until error ≤ rtol·|trace| or the next round would pass `max_matvecs`. Vectors are drawn one at
a time in order, so a run that stops at m products returns what `xtrace(..., matvecs=m)` with
the same seed returns (to rounding).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Matvec = Callable[[torch.Tensor], torch.Tensor]

WORK_DTYPE = torch.float64


@dataclass(frozen=True)
class TraceEstimate:
    """An XTrace estimate: `trace`, its `error` estimate (standard error of the k exchangeable
    estimates), the `matvecs` (products) spent, whether an `rtol` target was met (`converged`,
    None when none was given), and `history`: (matvecs, trace, error) after each round."""

    trace: float
    error: float
    matvecs: int
    converged: bool | None
    history: tuple[tuple[int, float, float], ...]

    @property
    def relative_error(self) -> float:
        """error / |trace| (inf for a zero trace): what `rtol` is compared with."""
        return self.error / abs(self.trace) if self.trace != 0 else math.inf


def xtrace(
    operator,
    matvecs: int = 24,
    seed: int | torch.Generator = 0,
    *,
    rtol: float | None = None,
    max_matvecs: int | None = None,
    size: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> TraceEstimate:
    """tr(A) by XTrace with `matvecs` products (even, ≥ 4: two per test vector).

    `operator`: an object with `matvec`, `size`, `dtype`, `device` (e.g. `HessianOperator`) or
    its bound `matvec`; or a plain callable on flat vectors, then `size` is required and `dtype`,
    `device` say what it takes. `seed`: an int (a private generator on the operator's device) or
    a `torch.Generator` (advanced by the draws).

    With `rtol`, `matvecs` is the first round and the sketch grows until error ≤ rtol·|trace|
    or the next round would pass `max_matvecs` (default 2·size: then Q spans everything and the
    estimate is exact); see the module docstring.
    """
    matvec, n, op_dtype, op_device = _resolve(operator, size, dtype, device)
    _check_budget(matvecs, rtol, max_matvecs, n)
    cap = 2 * n if max_matvecs is None else min(max_matvecs, 2 * n)
    generator = (
        seed
        if isinstance(seed, torch.Generator)
        else torch.Generator(device=op_device).manual_seed(seed)
    )
    sketch = _Sketch(matvec, n, op_dtype, op_device, generator)
    sketch.grow(matvecs // 2)
    history = [sketch.estimate()]
    converged = None if rtol is None else _met(history[-1], rtol)
    while converged is False:
        vectors = sketch.k
        more = min(max(1, vectors // 2), cap // 2 - vectors)
        if more < 1:
            break
        sketch.grow(more)
        history.append(sketch.estimate())
        converged = _met(history[-1], rtol)
    used, trace, error = history[-1]
    return TraceEstimate(trace, error, used, converged, tuple(history))


def _met(entry: tuple[int, float, float], rtol: float) -> bool:
    _, trace, error = entry
    return error <= rtol * abs(trace)


def _resolve(operator, size, dtype, device) -> tuple[Matvec, int, torch.dtype, torch.device]:
    """(matvec, size, dtype, device) of an operator, its bound matvec, or a plain callable."""
    if hasattr(operator, "matvec"):
        owner, matvec = operator, operator.matvec
    else:  # a bound method: its object knows the size, dtype and device
        owner, matvec = getattr(operator, "__self__", None), operator
    if owner is not None and all(hasattr(owner, a) for a in ("size", "dtype", "device")):
        return matvec, int(owner.size), owner.dtype, torch.device(owner.device)
    if not callable(operator):
        raise TypeError(
            f"operator must have matvec/size/dtype/device or be a callable, got {type(operator)}"
        )
    if size is None:
        raise ValueError("a plain matvec callable needs size= (the length of its vectors)")
    return operator, int(size), dtype, torch.device(device)


def _check_budget(matvecs: int, rtol: float | None, max_matvecs: int | None, n: int) -> None:
    if matvecs < 4 or matvecs % 2:
        raise ValueError(
            f"matvecs must be an even number >= 4 (two products per test vector, two test "
            f"vectors at least for an error estimate), got {matvecs}"
        )
    if matvecs > 2 * n:
        raise ValueError(f"matvecs ({matvecs}) must be at most 2 x size ({2 * n})")
    if rtol is not None and not rtol > 0:
        raise ValueError(f"rtol must be positive or None, got {rtol}")
    if max_matvecs is not None:
        if rtol is None:
            raise ValueError("max_matvecs caps the adaptive rounds; give rtol= as well")
        if max_matvecs < matvecs:
            raise ValueError(f"max_matvecs ({max_matvecs}) must be >= matvecs ({matvecs})")


class _Sketch:
    """Test vectors Ω, the QR of Y = AΩ and Z = AQ, grown a block of vectors at a time."""

    def __init__(
        self,
        matvec: Matvec,
        n: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator,
    ) -> None:
        self.matvec, self.n, self.dtype, self.device = matvec, n, dtype, device
        self.generator = generator
        self.products = 0
        empty = torch.empty(n, 0, dtype=WORK_DTYPE, device=device)
        self.omega, self.q, self.z = empty, empty, empty
        self.r = torch.empty(0, 0, dtype=WORK_DTYPE, device=device)

    @property
    def k(self) -> int:
        return self.omega.shape[1]

    def grow(self, count: int) -> None:
        new = torch.stack([self._test_vector() for _ in range(count)], dim=1)
        y = self._apply(new)
        # Block Gram-Schmidt against the current Q, twice ("twice is enough"): R stays the R of
        # the QR of all of Y, and Z is only computed for the new directions.
        c = self.q.T @ y
        y = y - self.q @ c
        c2 = self.q.T @ y
        y = y - self.q @ c2
        q_new, r_new = torch.linalg.qr(y)
        k = self.k
        r = torch.zeros(k + count, k + count, dtype=WORK_DTYPE, device=self.device)
        r[:k, :k], r[:k, k:], r[k:, k:] = self.r, c + c2, r_new
        self.omega = torch.cat([self.omega, new], dim=1)
        self.q = torch.cat([self.q, q_new], dim=1)
        self.z = torch.cat([self.z, self._apply(q_new)], dim=1)
        self.r = r

    def _test_vector(self) -> torch.Tensor:
        g = torch.randn(
            self.n, generator=self.generator, dtype=WORK_DTYPE, device=self.generator.device
        )
        return (g * (math.sqrt(self.n) / torch.linalg.vector_norm(g))).to(self.device)

    def _apply(self, vectors: torch.Tensor) -> torch.Tensor:
        columns = []
        for j in range(vectors.shape[1]):
            v = vectors[:, j].to(self.dtype).contiguous()
            columns.append(self.matvec(v).reshape(-1).to(device=self.device, dtype=WORK_DTYPE))
            self.products += 1
        return torch.stack(columns, dim=1)

    def estimate(self) -> tuple[int, float, float]:
        """(products so far, mean of the exchangeable estimates, their standard error)."""
        ests = exchangeable_estimates(self.omega, self.q, self.r, self.z)
        mean = ests.mean().item()
        stderr = (ests.std(correction=1) / math.sqrt(ests.numel())).item()
        return self.products, mean, stderr


def exchangeable_estimates(
    omega: torch.Tensor, q: torch.Tensor, r: torch.Tensor, z: torch.Tensor
) -> torch.Tensor:
    """The k leave-one-out XTrace estimates from Ω (n×k, columns of length √n), Q, R with
    QR = AΩ, and Z = AQ; `xtrace_helper.m` with improved=true, real case."""
    n, k = omega.shape
    w = q.T @ omega
    # Column i of R⁻ᵀ is orthogonal to every column of R but the i-th: Q s_i is the direction
    # that leaves span(Q) when ω_i leaves the sketch.
    eye = torch.eye(k, dtype=r.dtype, device=r.device)
    s = torch.linalg.solve_triangular(_nonsingular(r).T, eye, upper=False)
    s = s / torch.linalg.vector_norm(s, dim=0)
    h = q.T @ z
    t = z.T @ omega
    hw = h @ w

    def diag_prod(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # diag(aᵀb)
        return (a * b).sum(dim=0)

    d_sw = diag_prod(s, w)
    d_shs = diag_prod(s, h @ s)
    d_tw = diag_prod(t, w)
    d_whw = diag_prod(w, hw)
    d_s_r_hw = diag_prod(s, r - hw)
    d_t_hw_s = diag_prod(t - h.T @ w, s)
    # ω_i is uniform on the sphere of radius √n, not Gaussian: this factor makes its residual
    # part an unbiased Girard-Hutchinson estimate (section 2.3 of the paper).
    scale = (n - k + 1) / (n - diag_prod(w, w) + d_sw**2)
    correction = -d_tw + d_whw + d_sw * d_s_r_hw + d_sw**2 * d_shs + d_t_hw_s * d_sw
    return torch.trace(h) - d_shs + correction * scale


def _nonsingular(r: torch.Tensor) -> torch.Tensor:
    """R with diagonal entries below eps·max|diag| raised to that floor (sign kept).

    An exactly singular R (rank(A) < k with exact zeros, or A = 0) would give infinite columns
    of R⁻ᵀ and NaN estimates. Raised to the floor, those columns point along R's near-null
    directions, as they do when rounding leaves tiny pivots; leaving such a direction out keeps
    range(A) in the sketch, so the estimates stay exact.
    """
    d = r.diagonal()
    scale = d.abs().max()
    floor = torch.finfo(r.dtype).eps * (scale if scale > 0 else torch.ones_like(scale))
    sign = torch.where(d < 0, -1.0, 1.0).to(r.dtype)
    out = r.clone()
    out.diagonal().copy_(sign * torch.maximum(d.abs(), floor))
    return out
