"""Lanczos methods for a symmetric operator known only through its matrix-vector product.

Everything here works on a `matvec(v) -> Hv` over flat torch tensors and knows nothing about
models, so it can be tested on explicit matrices. Three uses:
- `lanczos_extremes`: the k largest or smallest algebraic eigenpairs, Lanczos with full
  reorthogonalization, stopping on the Ritz residual ‖Hy − θy‖ ≤ tol·|θ| verified by explicit
  products (not only by the cheap Lanczos estimate).
- `eigsh_extremes`: the same through ARPACK (`scipy.sparse.linalg.eigsh`) with BLAS held to one
  thread, since on a small machine its threads fight torch's for the same cores.
- `slq_nodes`: stochastic Lanczos quadrature nodes and weights for spectral densities.

Random vectors (restarts, quadrature probes) are drawn by `random_vector` from the caller's
generator ON THE OPERATOR'S DEVICE and in its dtype: no host draw, no copy per vector, and the
same numbers for the same seed on the same device. A Lanczos step synchronizes with the host once
(for its two scalars), so products queue back to back on an accelerator.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import torch
from threadpoolctl import threadpool_limits

Matvec = Callable[[torch.Tensor], torch.Tensor]

WHICH = ("largest", "smallest")

# Rows of the Krylov basis are kept in blocks so the basis grows without copying what is stored.
_BLOCK_ROWS = 32
# A Lanczos residual this small next to the operator's scale means the Krylov space is invariant:
# with fp32 products, orthogonalized noise sits around 1e-6 of the scale.
_BREAKDOWN = 1e-5


@dataclass
class EigenResult:
    """Eigenpairs of a symmetric operator and how they were obtained."""

    values: np.ndarray  # (k,) float64, descending for "largest", ascending for "smallest"
    vectors: torch.Tensor  # (k, n) unit rows in the operator's dtype and device
    residuals: list[float]  # ‖Hy − θy‖₂ per pair, from explicit products
    converged: bool
    matvecs: int  # products spent, the residual checks included
    steps: int  # Lanczos steps (torch) or ARPACK's count of operator applications
    extra: dict = field(default_factory=dict)


class Lanczos:
    """The Lanczos process H Vᵀ = Vᵀ T + β q eᵀ with full reorthogonalization.

    `step()` adds one basis vector (one product). Every new vector is orthogonalized against the
    whole basis (a second time when needed, "twice is enough"), so Ritz values do not repeat and
    the Lanczos residual estimate β·|s_last| matches the true residual. Step m costs about 4·m·n
    flops besides its product: small next to a conv net's Hessian-vector product while m is in
    the tens, dominant for cheap operators and hundreds of steps (ARPACK restarts instead).
    When the Krylov space becomes invariant, the coupling is recorded as 0 and, if `restart` is
    set, the process continues from a random vector orthogonal to the basis (T becomes block
    diagonal); otherwise it is exhausted.
    """

    def __init__(
        self,
        matvec: Matvec,
        start: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        restart: bool = True,
    ) -> None:
        self.matvec = matvec
        self.n = start.numel()
        self.generator = generator
        self.restart = restart
        self.alphas: list[float] = []
        self.betas: list[float] = []  # betas[j]: coupling of basis row j to row j + 1
        self._blocks: list[torch.Tensor] = []
        self._scale = 0.0
        norm = float(torch.linalg.vector_norm(start))
        if not math.isfinite(norm) or norm == 0.0:
            raise ValueError(f"Lanczos start vector must be finite and non-zero, got norm {norm}")
        self._next: torch.Tensor | None = start.reshape(-1) / norm

    @property
    def steps(self) -> int:
        return len(self.alphas)

    @property
    def exhausted(self) -> bool:
        return self._next is None

    def _row(self, j: int) -> torch.Tensor:
        return self._blocks[j // _BLOCK_ROWS][j % _BLOCK_ROWS]

    def _store(self, q: torch.Tensor) -> None:
        j = self.steps
        if j % _BLOCK_ROWS == 0:
            rows = min(_BLOCK_ROWS, self.n - j)
            self._blocks.append(torch.zeros((rows, self.n), dtype=q.dtype, device=q.device))
        self._row(j).copy_(q)

    def _stored_blocks(self, rows: int) -> list[torch.Tensor]:
        full, rest = divmod(rows, _BLOCK_ROWS)
        blocks = self._blocks[:full]
        if rest:
            blocks = [*blocks, self._blocks[full][:rest]]
        return blocks

    def _project_out(self, w: torch.Tensor, rows: int) -> list[torch.Tensor]:
        """Subtract w's projection on the first `rows` basis vectors in place; returns the
        coefficients (one tensor per block, left on the device)."""
        coefficients = []
        for block in self._stored_blocks(rows):
            c = block @ w
            w.addmv_(block.T, c, alpha=-1.0)
            coefficients.append(c)
        return coefficients

    def _orthogonalize(self, w: torch.Tensor, rows: int) -> torch.Tensor:
        """w minus its projection on the first `rows` basis vectors, in place.

        Classical Gram-Schmidt applied twice ("twice is enough"): the second pass removes what
        cancellation left after the first. Always two passes, so no host sync decides it.
        """
        self._project_out(w, rows)
        self._project_out(w, rows)
        return w

    def step(self) -> None:
        if self._next is None:
            raise RuntimeError("the Krylov space is exhausted; no further Lanczos step exists")
        j = self.steps
        q = self._next
        self._store(q)
        w = self.matvec(q).reshape(-1).to(dtype=q.dtype, copy=True)
        # Full reorthogonalization against the whole basis (q included) replaces the three-term
        # recurrence; its coefficient on q is alpha = qᵀHq.
        first = self._project_out(w, j + 1)
        self._project_out(w, j + 1)
        alpha_t = first[-1][(j % _BLOCK_ROWS)]
        alpha, beta = torch.stack([alpha_t, torch.linalg.vector_norm(w)]).tolist()  # one sync
        self.alphas.append(alpha)
        self._scale = max(self._scale, abs(alpha), beta)
        if j + 1 >= self.n:
            self.betas.append(0.0)
            self._next = None
        elif beta > _BREAKDOWN * self._scale:
            self.betas.append(beta)
            self._next = w / beta
        else:
            self.betas.append(0.0)
            self._next = self._fresh_direction(q) if self.restart else None

    def _fresh_direction(self, like: torch.Tensor) -> torch.Tensor | None:
        for _ in range(3):
            v = random_vector(self.n, self.generator, dtype=like.dtype, device=like.device)
            v = self._orthogonalize(v, self.steps)
            norm = float(torch.linalg.vector_norm(v))
            if norm > 1e-3:
                return v / norm
        return None

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and the eigenvectors of T as columns."""
        d = np.asarray(self.alphas, dtype=np.float64)
        if d.size == 1:
            return d.copy(), np.ones((1, 1))
        e = np.asarray(self.betas[:-1], dtype=np.float64)
        return scipy.linalg.eigh_tridiagonal(d, e)

    def residual_estimates(self, columns: np.ndarray) -> np.ndarray:
        """β·|s_last| for eigenvectors of T given as columns: ‖Hy − θy‖ in exact arithmetic."""
        return abs(self.betas[-1]) * np.abs(columns[-1])

    def ritz_vectors(self, columns: np.ndarray) -> torch.Tensor:
        """Rows y = Vᵀ s for eigenvectors s of T given as columns."""
        first = self._row(0)
        coeffs = torch.as_tensor(columns.T.copy(), dtype=first.dtype, device=first.device)
        out = torch.zeros((coeffs.shape[0], self.n), dtype=first.dtype, device=first.device)
        start = 0
        for block in self._stored_blocks(self.steps):
            out += coeffs[:, start : start + block.shape[0]] @ block
            start += block.shape[0]
        return out


def random_vector(
    n: int,
    generator: torch.Generator | None,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    kind: str = "gaussian",
) -> torch.Tensor:
    """n standard Gaussian (kind="gaussian") or ±1 (kind="rademacher") entries.

    Drawn where `generator` lives (its device) and in `dtype`; moved to `device` only when the
    generator lives elsewhere. Pass a generator made for the device,
    `torch.Generator(device=device).manual_seed(seed)`, to draw in place. Without a generator
    the global RNG of `device` is used (and moves).
    """
    where = torch.device(device) if generator is None else generator.device
    if kind == "gaussian":
        v = torch.randn(n, generator=generator, dtype=dtype, device=where)
    elif kind == "rademacher":
        v = torch.randint(0, 2, (n,), generator=generator, dtype=dtype, device=where)
        v.mul_(2).sub_(1)
    else:
        raise ValueError(f"unknown kind {kind!r}; choose one of: gaussian, rademacher")
    return v.to(device)


def device_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A private generator on `device`, seeded: reproducible draws there, global RNGs intact."""
    return torch.Generator(device=device).manual_seed(seed)


def _check_which(which: str) -> None:
    if which not in WHICH:
        raise ValueError(f"unknown which {which!r}; choose one of: {', '.join(WHICH)}")


def _wanted(values: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices of the k wanted values of an ascending array, in reporting order."""
    order = np.arange(values.size)
    return order[::-1][:k] if which == "largest" else order[:k]


def residual_norms(matvec: Matvec, values: np.ndarray, vectors: torch.Tensor) -> list[float]:
    """‖Hy − θy‖₂ for each (θ, y), by one explicit product per pair."""
    out = []
    for theta, y in zip(values, vectors, strict=True):
        if not math.isfinite(float(theta)):
            out.append(float("nan"))
            continue
        r = matvec(y).reshape(-1).to(y.dtype) - float(theta) * y
        out.append(float(torch.linalg.vector_norm(r)))
    return out


def _within(residuals: list[float], values: np.ndarray, tol: float) -> bool:
    return all(r <= tol * abs(float(v)) for r, v in zip(residuals, values, strict=True))


def lanczos_extremes(
    matvec: Matvec,
    start: torch.Tensor,
    k: int,
    *,
    which: str = "largest",
    tol: float = 1e-3,
    max_iter: int = 100,
    generator: torch.Generator | None = None,
) -> EigenResult:
    """The k largest (or smallest) algebraic eigenpairs by Lanczos with full reorthogonalization.

    Stops once every wanted Ritz pair has ‖Hy − θy‖ ≤ tol·|θ|: first by the Lanczos estimate
    after each step (free), then confirmed with k explicit products, which also give the
    reported residuals. `max_iter` caps the Lanczos steps (one product each); the basis holds
    at most that many vectors of size n. Not converging is reported (`converged=False`), not
    raised. Exactly repeated eigenvalues are found once (the single-vector Krylov limit).
    """
    _check_which(which)
    n = start.numel()
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and the operator size {n}")
    if max_iter < k:
        raise ValueError(f"max_iter={max_iter} must be at least k={k}")
    process = Lanczos(matvec, start, generator=generator, restart=True)
    matvecs = 0
    min_steps = min(n, 2 * k + 1)
    values = np.full(k, np.nan)
    vectors = torch.zeros((k, n), dtype=start.dtype, device=start.device)
    residuals = [float("nan")] * k
    converged = False
    verified_at = next_check = 0

    def verify() -> bool:
        nonlocal values, vectors, residuals, matvecs, verified_at
        theta, s = process.ritz()
        idx = _wanted(theta, k, which)
        values, columns = theta[idx], s[:, idx]
        vectors = process.ritz_vectors(columns)
        residuals = residual_norms(matvec, values, vectors)
        matvecs += k
        verified_at = process.steps
        return _within(residuals, values, tol)

    while process.steps < max_iter and not process.exhausted:
        process.step()
        matvecs += 1
        if process.steps < max(min_steps, next_check) and not process.exhausted:
            continue
        theta, s = process.ritz()
        if theta.size < k:
            continue
        idx = _wanted(theta, k, which)
        estimates = process.residual_estimates(s[:, idx])
        if not (np.all(estimates <= tol * np.abs(theta[idx])) or process.exhausted):
            continue
        if verify():
            converged = True
            break
        # The estimate passed but the products disagree (fp32 noise near tol): check less often.
        next_check = process.steps + max(3, process.steps // 4)
    if not converged and process.steps >= k and verified_at != process.steps:
        converged = verify()
    return EigenResult(
        values=np.asarray(values, dtype=np.float64),
        vectors=vectors,
        residuals=residuals,
        converged=converged,
        matvecs=matvecs,
        steps=process.steps,
    )


def eigsh_extremes(
    matvec: Matvec,
    start: torch.Tensor,
    k: int,
    *,
    which: str = "largest",
    tol: float = 1e-3,
    max_iter: int = 100,
    ncv: int | None = None,
) -> EigenResult:
    """The k largest (or smallest) algebraic eigenpairs by ARPACK's implicitly restarted Lanczos.

    ARPACK stops on its own Ritz estimate ≤ tol·|θ|; the residuals reported (and `converged`)
    come from k explicit products afterwards. `max_iter` is turned into ARPACK restarts of
    about ncv − k products each, so it bounds the product count only roughly. BLAS runs on one
    thread while ARPACK works: on a machine with few cores its threads slow torch's products.
    """
    _check_which(which)
    n = start.numel()
    if not 1 <= k < n:
        raise ValueError(f"k={k} must be between 1 and n - 1 = {n - 1} for eigsh")
    ncv = min(n, max(2 * k + 1, 20)) if ncv is None else ncv
    restarts = max(1, math.ceil(max_iter / max(1, ncv - k)))
    dtype, device = start.dtype, start.device
    count = 0

    def apply(x: np.ndarray) -> np.ndarray:
        nonlocal count
        count += 1
        v = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1))
        return matvec(v.to(device=device, dtype=dtype)).reshape(-1).double().cpu().numpy()

    operator = scipy.sparse.linalg.LinearOperator((n, n), matvec=apply, dtype=np.float64)
    v0 = start.reshape(-1).double().cpu().numpy()
    arpack_converged = True
    with threadpool_limits(limits=1, user_api="blas"):
        try:
            vals, vecs = scipy.sparse.linalg.eigsh(
                operator,
                k=k,
                which="LA" if which == "largest" else "SA",
                tol=tol,
                v0=v0,
                ncv=ncv,
                maxiter=restarts,
            )
        except scipy.sparse.linalg.ArpackNoConvergence as err:
            vals, vecs = err.eigenvalues, err.eigenvectors
            arpack_converged = False
    order = np.argsort(vals)
    order = order[::-1] if which == "largest" else order
    found = len(order)
    values = np.full(k, np.nan)
    values[:found] = vals[order]
    vectors = torch.zeros((k, n), dtype=dtype, device=device)
    if found:
        vectors[:found] = torch.from_numpy(np.ascontiguousarray(vecs[:, order].T)).to(vectors)
    residuals = residual_norms(matvec, values, vectors)
    converged = arpack_converged and found == k and _within(residuals, values, tol)
    return EigenResult(
        values=values,
        vectors=vectors,
        residuals=residuals,
        converged=converged,
        matvecs=count + found,
        steps=count,
        extra={"ncv": ncv, "arpack_converged": arpack_converged},
    )


def slq_nodes(
    matvec: Matvec,
    n: int,
    *,
    steps: int,
    n_probes: int,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device | str,
    stop: Callable[[], bool] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stochastic Lanczos quadrature: per probe, Ritz values θ and weights τ = (first row of S)².

    Each probe is a Gaussian vector (drawn on `device` when `generator` lives there) scaled to
    unit length, so Σ τ f(θ) estimates (1/n)·tr f(H) and the weights of one probe sum to 1.
    Fewer than `steps` nodes come back when the probe's Krylov space is exhausted first (then
    the quadrature is exact). `stop()`, asked before every probe after the first, ends the
    loop early when it returns True (a budget): fewer than `n_probes` entries then come back.
    """
    nodes = []
    for _ in range(n_probes):
        if stop is not None and nodes and stop():
            break
        start = random_vector(n, generator, dtype=dtype, device=device)
        process = Lanczos(matvec, start, restart=False)
        while process.steps < min(steps, n) and not process.exhausted:
            process.step()
        theta, s = process.ritz()
        nodes.append((theta, s[0] ** 2))
    return nodes


def gaussian_density(
    nodes: list[tuple[np.ndarray, np.ndarray]],
    *,
    sigma: float | None = None,
    grid: int | np.ndarray = 1000,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Average the probes' weighted Gaussian kernels on a grid; returns (grid, density, sigma).

    `sigma` defaults to 1% of the span of all Ritz values (1% of max(1, |θ|) when they
    coincide). An integer `grid` gives that many points over [min θ − 5σ, max θ + 5σ], which
    holds all but ~1e-6 of each kernel's mass. The density is rescaled so its trapezoid
    integral over the grid is exactly 1, including on a grid passed in that cuts part of the
    spectrum off (that part's mass is then spread over the rest).
    """
    theta_all = np.concatenate([t for t, _ in nodes])
    lo, hi = float(theta_all.min()), float(theta_all.max())
    if sigma is None:
        span = hi - lo
        sigma = 0.01 * (span if span > 0 else max(1.0, abs(hi)))
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if isinstance(grid, int | np.integer):
        if grid < 2:
            raise ValueError(f"grid must have at least 2 points, got {grid}")
        xs = np.linspace(lo - 5 * sigma, hi + 5 * sigma, int(grid))
    else:
        xs = np.asarray(grid, dtype=np.float64).reshape(-1)
        if xs.size < 2 or np.any(np.diff(xs) <= 0):
            raise ValueError("grid must be an increasing array of at least 2 points")
    density = np.zeros_like(xs)
    norm = 1.0 / (sigma * math.sqrt(2 * math.pi))
    for theta, tau in nodes:
        z = (xs[:, None] - theta[None, :]) / sigma
        density += (norm * np.exp(-0.5 * z**2)) @ tau
    density /= len(nodes)
    mass = float(np.trapezoid(density, xs))
    if mass <= 0:
        warnings.warn("the spectral density has no mass on the grid; returning zeros", stacklevel=2)
        return xs, density, sigma
    return xs, density / mass, sigma
