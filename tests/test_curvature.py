"""smoothbench.curvature against the dense Hessian of tiny nets (torch.autograd.functional.hessian
in float64 over the flat parameter vector) and against closed forms. Every function takes a
`HessianOperator`; the probes' functions of (model, loss_fn, batch) are tested in
test_probe_hessian.py."""

from __future__ import annotations

import copy
import random
import warnings

import numpy as np
import pytest
import torch
from hessian_nets import bn_cnn, bn_mlp, ce, cnn_batch, mlp_batch
from torch import nn
from torch.func import functional_call

from smoothbench.curvature import (
    HessianOperator,
    gradient_topk_share,
    hessian_density,
    hessian_eigenvalues,
    hessian_trace,
    power_iteration,
)
from smoothbench.curvature.lanczos import lanczos_extremes
from smoothbench.models.norms import LpNorm, NoisyBatchNorm

CASES = {"mlp": (bn_mlp, mlp_batch), "cnn": (bn_cnn, cnn_batch)}


def dense(model: nn.Module, loss_fn, batch, bn_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, g) in float64 by torch.autograd.functional.hessian over the flat parameters."""
    m = copy.deepcopy(model).double()
    m.train(bn_mode == "train")
    named = list(m.named_parameters())
    sizes = [p.numel() for _, p in named]
    flat = torch.cat([p.detach().reshape(-1) for _, p in named])
    x, y = batch

    def loss(theta: torch.Tensor) -> torch.Tensor:
        params = {n: t.view(p.shape) for (n, p), t in zip(named, theta.split(sizes), strict=True)}
        buffers = {n: b.clone() for n, b in m.named_buffers()}
        return loss_fn(functional_call(m, {**params, **buffers}, (x.double(),)), y)

    h = torch.autograd.functional.hessian(loss, flat)
    g = torch.autograd.functional.jacobian(loss, flat)
    return h, g


@pytest.fixture(scope="module")
def oracle():
    cache = {}

    def get(case: str, bn_mode: str):
        if (case, bn_mode) not in cache:
            make_model, make_batch = CASES[case]
            cache[case, bn_mode] = dense(make_model(), ce, make_batch(), bn_mode)
        return cache[case, bn_mode]

    return get


def relerr(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_hvp_matches_dense(case, bn_mode, oracle):
    make_model, make_batch = CASES[case]
    model, batch = make_model(), make_batch()
    h, _ = oracle(case, bn_mode)
    v = torch.randn(h.shape[0], generator=torch.Generator().manual_seed(5))
    out = HessianOperator(model, ce, batch, bn_mode).matvec(v)
    expected = h @ v.double()
    assert out.shape == v.shape and out.dtype == torch.float32
    assert torch.linalg.vector_norm(out.double() - expected) <= 1e-5 * torch.linalg.vector_norm(
        expected
    )


@pytest.mark.parametrize("method", ["lanczos", "eigsh"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_top3_eigenvalues_match_dense(method, case, bn_mode, oracle):
    make_model, make_batch = CASES[case]
    h, _ = oracle(case, bn_mode)
    exact = torch.linalg.eigvalsh(h).numpy()[::-1][:3]
    op = HessianOperator(make_model(), ce, make_batch(), bn_mode)
    values, info = hessian_eigenvalues(op, k=3, tol=1e-5, method=method, return_eigenvectors=True)
    assert relerr(values, exact) < 1e-4
    assert np.all(np.diff(values) <= 0)
    assert info["converged"] and info["bn_mode"] == bn_mode and info["method"] == method
    # The residuals are those of the fp32 operator; against the float64 Hessian the returned
    # pairs are as good up to fp32's own error in H (~1e-5 of its norm on these nets).
    vecs = info["eigenvectors"].double()
    dense_res = torch.linalg.vector_norm(vecs @ h - torch.as_tensor(values)[:, None] * vecs, dim=1)
    floor = 3e-5 * torch.linalg.matrix_norm(h, ord=2).item()
    assert np.all(dense_res.numpy() <= np.asarray(info["residuals"]) + floor)
    assert all(r <= 1e-5 * abs(v) for r, v in zip(info["residuals"], values, strict=True))
    assert 3 < info["hvps"] < h.shape[0]


@pytest.mark.parametrize("method", ["lanczos", "eigsh"])
def test_smallest_eigenvalues_ascending(method, oracle):
    h, _ = oracle("mlp", "train")
    exact = torch.linalg.eigvalsh(h).numpy()[:2]
    op = HessianOperator(bn_mlp(), ce, mlp_batch())
    values, info = hessian_eigenvalues(op, k=2, tol=1e-5, which="smallest", method=method)
    assert exact[0] < 0 and relerr(values, exact) < 1e-4 and values[0] <= values[1]
    assert info["converged"]


def test_algebraic_max_where_power_iteration_reports_the_negative_one(oracle):
    h, _ = oracle("mlp", "train")
    spectrum = torch.linalg.eigvalsh(h).numpy()
    lam_min, lam_max = spectrum[0], spectrum[-1]
    assert -lam_min > 1.5 * lam_max > 0  # this BN net in training mode is such a case
    op = HessianOperator(bn_mlp(), ce, mlp_batch())
    (top,), info = hessian_eigenvalues(op, k=1, tol=1e-4)
    assert abs(top - lam_max) < 1e-4 * lam_max and info["converged"]
    power, power_info = power_iteration(op, tol=1e-4)
    assert power < 0 and abs(power - lam_min) < 1e-2 * abs(lam_min)
    assert power_info["method"] == "power" and power_info["hvps"] > 0


def test_eval_mode_hessian_differs_from_train_mode(oracle):
    h_train, _ = oracle("cnn", "train")
    h_eval, _ = oracle("cnn", "eval")
    top_train = torch.linalg.eigvalsh(h_train)[-1].item()
    top_eval = torch.linalg.eigvalsh(h_eval)[-1].item()
    assert abs(top_train - top_eval) > 0.1 * abs(top_train)
    train_op = HessianOperator(bn_cnn(), ce, cnn_batch(), "train")
    eval_op = HessianOperator(bn_cnn(), ce, cnn_batch(), "eval")
    (ours_train,), info_train = hessian_eigenvalues(train_op, tol=1e-5)
    (ours_eval,), info_eval = hessian_eigenvalues(eval_op, tol=1e-5)
    assert (info_train["bn_mode"], info_eval["bn_mode"]) == ("train", "eval")
    assert relerr(ours_train, top_train) < 1e-4 and relerr(ours_eval, top_eval) < 1e-4


def _model_state(model: nn.Module):
    tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    return tensors, modes


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("norm", [nn.BatchNorm1d, LpNorm, NoisyBatchNorm])
def test_operator_and_every_measurement_leave_model_and_rngs_untouched(bn_mode, norm):
    make = (lambda n: LpNorm(n, 2)) if norm is LpNorm else norm
    model = bn_mlp(norm=make)
    model.train()
    model[0].eval()  # a mixed-mode model: each module's own flag must come back
    tensors, modes = _model_state(model)
    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    batch = mlp_batch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        op = HessianOperator(model, ce, batch, bn_mode)
        op.matvec(torch.ones(117))
        _, info = hessian_eigenvalues(op, k=2, return_eigenvectors=True)
        hessian_eigenvalues(op, k=1, method="eigsh")
        power_iteration(op, max_iter=5)
        hessian_trace(op, n_probes=5, min_probes=2)
        hessian_density(op, steps=5, n_probes=2)
        first_order = HessianOperator(model, ce, batch, bn_mode, second_order=False)
        gradient_topk_share(first_order, info["eigenvectors"])
        HessianOperator(model, ce, batch, bn_mode, chunk_size=5).matvec(torch.ones(117))
    after_tensors, after_modes = _model_state(model)
    assert after_modes == modes
    for k, v in tensors.items():
        assert torch.equal(after_tensors[k], v), k
    # The global RNGs are exactly where they were: the next draws are the expected ones.
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def test_noisy_bn_hessian_uses_the_step_noise():
    model = bn_mlp(norm=NoisyBatchNorm)
    batch = mlp_batch()
    h, _ = dense(model, ce, batch, "train")
    v = torch.randn(117, generator=torch.Generator().manual_seed(2))
    out = HessianOperator(model, ce, batch).matvec(v)
    assert torch.allclose(out.double(), h @ v.double(), rtol=1e-5, atol=1e-5)


class Scale(nn.Module):
    """y = w ⊙ x; with loss mean_n ‖y_n − t_n‖² its Hessian is diag(2 · mean_n x_n²)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def squared_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((out - target) ** 2).sum(dim=1).mean()


def scale_problem(n: int = 10, d: int = 7):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(n, d, generator=g) * torch.linspace(0.2, 2.0, d)
    diag = 2 * (x.double() ** 2).mean(dim=0)
    return Scale(d), (x, torch.zeros(n, d)), diag


@pytest.mark.parametrize("chunk_size", [None, 3, 5, 100])
def test_chunks_average_the_mean_loss(chunk_size):
    model, batch, diag = scale_problem()
    v = torch.arange(1.0, 8.0)
    op = HessianOperator(model, squared_error, batch, chunk_size=chunk_size)
    out = op.matvec(v)
    torch.testing.assert_close(out.double(), diag * v.double(), rtol=1e-6, atol=1e-6)
    (top,), _ = hessian_eigenvalues(op, tol=1e-6)
    assert abs(top - diag.max().item()) < 1e-5 * diag.max().item()  # not scaled by chunk count


def test_chunks_on_bn_net_in_eval_mode_match_dense(oracle):
    h, g = oracle("mlp", "eval")
    v = torch.randn(117, generator=torch.Generator().manual_seed(8))
    op = HessianOperator(bn_mlp(), ce, mlp_batch(), "eval", chunk_size=5)  # chunks of 5, 5, 2
    assert len(op.chunks) == 3
    expected = h @ v.double()
    assert torch.linalg.vector_norm(op.matvec(v).double() - expected) <= 1e-5 * expected.norm()
    assert torch.linalg.vector_norm(op.gradient.double() - g) <= 1e-5 * g.norm()


def test_trace_exact_for_a_diagonal_hessian():
    # Rademacher probes have zero variance on a diagonal matrix: zᵀDz = tr D for every z.
    model, batch, diag = scale_problem()
    op = HessianOperator(model, squared_error, batch)
    mean, stderr = hessian_trace(op, n_probes=50, min_probes=4)
    assert abs(mean - diag.sum().item()) < 1e-5 * diag.sum().item() and stderr < 1e-5


def _probe_trace_by_hand(h: torch.Tensor, seed: int, n_probes: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_probes):
        z = (2 * torch.randint(0, 2, (h.shape[0],), generator=g, dtype=torch.int8) - 1).double()
        out.append(float(z @ h @ z))
    return np.asarray(out)


def test_trace_stops_on_standard_error(oracle):
    h, _ = oracle("cnn", "train")
    rtol, min_probes = 0.15, 10
    op = HessianOperator(bn_cnn(), ce, cnn_batch())
    mean, stderr = hessian_trace(op, n_probes=200, rtol=rtol)
    samples = _probe_trace_by_hand(h, seed=0, n_probes=200)
    stop = next(
        n
        for n in range(min_probes, 201)
        if samples[:n].std(ddof=1) / np.sqrt(n) <= rtol * abs(samples[:n].mean())
    )
    assert op.hvps == stop < 200
    assert abs(mean - samples[:stop].mean()) < 1e-4 * abs(mean)
    assert abs(stderr - samples[:stop].std(ddof=1) / np.sqrt(stop)) < 1e-3 * stderr
    assert abs(mean - torch.trace(h).item()) < 3 * stderr


@pytest.mark.slow
def test_trace_with_many_probes_is_close_and_stderr_is_honest(oracle):
    h, _ = oracle("mlp", "train")
    n = 1500
    op = HessianOperator(bn_mlp(), ce, mlp_batch())
    mean, stderr = hessian_trace(op, n_probes=n, rtol=0, seed=3)
    # Rademacher: Var(zᵀHz) = 2 Σ_{i≠j} H_ij²
    off = h - torch.diag(torch.diag(h))
    expected_stderr = float(torch.sqrt(2 * (off**2).sum() / n))
    assert 0.8 < stderr / expected_stderr < 1.2
    assert abs(mean - torch.trace(h).item()) < 4 * expected_stderr


def test_trace_warns_when_max_probes_reached():
    op = HessianOperator(bn_mlp(), ce, mlp_batch())
    with pytest.warns(RuntimeWarning, match="n_probes=3"):
        hessian_trace(op, n_probes=3, min_probes=2, rtol=1e-9)


@pytest.mark.slow
def test_density_integrates_to_one_and_has_the_dense_mean_and_support(oracle):
    h, _ = oracle("mlp", "train")
    spectrum = torch.linalg.eigvalsh(h).numpy()
    n, probes = h.shape[0], 24
    op = HessianOperator(bn_mlp(), ce, mlp_batch())
    grid, density = hessian_density(op, steps=80, n_probes=probes)
    assert grid.shape == density.shape and np.all(density >= 0)
    assert abs(np.trapezoid(density, grid) - 1) < 1e-12
    assert grid[0] <= spectrum[0] and grid[-1] >= spectrum[-1]
    # The extreme Ritz values converge, so mass sits at the extreme eigenvalues.
    sigma = 0.01 * (grid[-1] - grid[0]) / 1.1
    for lam in (spectrum[0], spectrum[-1]):
        assert density[np.argmin(np.abs(grid - lam))] > 0.05 * density.max() / probes
        assert abs(grid[np.argmax(density * (np.abs(grid - lam) < 3 * sigma))] - lam) < 2 * sigma
    # Each probe's quadrature mean is vᵀHv, v uniform on the sphere: E = tr(H)/n,
    # Var = 2(tr(H²)/n − (tr H/n)²)/(n + 2).
    mean = np.trapezoid(grid * density, grid)
    m1, m2 = spectrum.mean(), (spectrum**2).mean()
    std = np.sqrt(2 * (m2 - m1**2) / (n + 2) / probes)
    assert abs(mean - m1) < 4 * std


def test_density_on_a_given_grid_and_sigma():
    model, batch, diag = scale_problem()
    grid = np.linspace(0, diag.max().item() + 1, 4001)
    op = HessianOperator(model, squared_error, batch)
    xs, density = hessian_density(op, steps=7, n_probes=3, sigma=0.05, grid=grid)
    assert np.array_equal(xs, grid) and abs(np.trapezoid(density, xs) - 1) < 1e-12
    # Exact quadrature: bumps of width 0.05 centred on the 7 diagonal entries.
    peaks = [xs[i] for i in range(1, len(xs) - 1) if density[i - 1] < density[i] > density[i + 1]]
    np.testing.assert_allclose(sorted(peaks), sorted(diag.numpy()), atol=2e-3)


def test_gradient_topk_share_matches_dense_projection(oracle):
    h, g = oracle("mlp", "train")
    _, vecs = torch.linalg.eigh(h)
    top3 = vecs[:, -3:]
    expected = float((top3.T @ g).pow(2).sum() / g.pow(2).sum())
    first_order = HessianOperator(bn_mlp(), ce, mlp_batch(), second_order=False)
    given = gradient_topk_share(first_order, top3.T.float())
    assert abs(given - expected) < 1e-5
    op = HessianOperator(bn_mlp(), ce, mlp_batch())
    _, info = hessian_eigenvalues(op, k=3, tol=1e-6, return_eigenvectors=True)
    found = gradient_topk_share(op, info["eigenvectors"])
    assert abs(found - expected) < 1e-4
    assert 0 < expected < 1


def test_not_converging_warns_and_says_so():
    with pytest.warns(RuntimeWarning, match="NOT converged"):
        op = HessianOperator(bn_mlp(), ce, mlp_batch())
        _, info = hessian_eigenvalues(op, k=2, tol=1e-9, max_iter=4)
    assert info["converged"] is False and info["hvps"] >= 4


def test_same_seed_same_result_on_one_operator_or_two():
    op = HessianOperator(bn_cnn(), ce, cnn_batch())
    a, info_a = hessian_eigenvalues(op, k=2, seed=4)
    b, info_b = hessian_eigenvalues(op, k=2, seed=4)  # the same graph, asked again
    c, info_c = hessian_eigenvalues(HessianOperator(bn_cnn(), ce, cnn_batch()), k=2, seed=4)
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert info_a["hvps"] == info_b["hvps"] == info_c["hvps"] and op.hvps == 2 * info_a["hvps"]
    assert info_a["residuals"] == info_b["residuals"] == info_c["residuals"]


def test_works_under_no_grad(oracle):
    h, _ = oracle("cnn", "train")
    v = torch.ones(h.shape[0])
    with torch.no_grad():
        out = HessianOperator(bn_cnn(), ce, cnn_batch()).matvec(v)
    torch.testing.assert_close(out.double(), h @ v.double(), rtol=1e-5, atol=1e-6)


def test_lanczos_restarts_past_an_invariant_subspace():
    # I + a rank-3 term: four distinct eigenvalues, so the Krylov space of any start is
    # exhausted after 4 steps and k=5 needs a restart to find the repeated eigenvalue 1 again.
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=g, dtype=torch.float64))
    lam = torch.ones(40, dtype=torch.float64)
    lam[:3] = torch.tensor([6.0, 3.0, -2.0])
    a = (q * lam) @ q.T
    start = torch.randn(40, generator=g, dtype=torch.float64)
    result = lanczos_extremes(lambda v: a @ v, start, 5, tol=1e-8, generator=g)
    np.testing.assert_allclose(result.values, [6, 3, 1, 1, 1], atol=1e-10)
    assert result.converged and result.steps > 4  # went on past the exhausted Krylov space
    gram = result.vectors @ result.vectors.T
    torch.testing.assert_close(gram, torch.eye(5, dtype=torch.float64), atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"which": "biggest"}, "unknown which 'biggest'; choose one of: largest, smallest"),
        ({"method": "arnoldi"}, "unknown method 'arnoldi'; choose one of: lanczos, eigsh"),
    ],
)
def test_bad_settings_name_the_value_and_the_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hessian_eigenvalues(HessianOperator(bn_mlp(), ce, mlp_batch()), **kwargs)


def test_bad_bn_mode_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match="unknown bn_mode 'running'; choose one of: train, eval"):
        HessianOperator(bn_mlp(), ce, mlp_batch(), "running")


def test_first_order_graph_is_built_once_and_rebuilt_per_product_only_in_chunks():
    model = bn_mlp()
    forwards = []
    model.register_forward_pre_hook(lambda module, args: forwards.append(len(args[0])))
    op = HessianOperator(model, ce, mlp_batch())
    for _ in range(5):
        op.matvec(torch.ones(117))
    assert forwards == [12] and op.hvps == 5
    forwards.clear()
    chunked = HessianOperator(model, ce, mlp_batch(), chunk_size=5)
    chunked.matvec(torch.ones(117))
    assert forwards == [5, 5, 2] * 2  # the gradient, then one product: a graph per chunk each


def test_random_vectors_are_drawn_where_the_operator_lives_in_its_dtype(monkeypatch):
    """Every start and probe vector comes from a generator on the parameters' device, in their
    dtype: no float64 host draw copied per vector (what made probes slow on a GPU)."""
    import smoothbench.curvature.eigenvalues as eigenvalues_module
    import smoothbench.curvature.lanczos as lanczos_module
    import smoothbench.curvature.trace as trace_module

    draws = []
    real = lanczos_module.random_vector

    def spy(n, generator, *, dtype, device, kind="gaussian"):
        draws.append((generator.device, dtype, torch.device(device), kind))
        return real(n, generator, dtype=dtype, device=device, kind=kind)

    for module in (eigenvalues_module, trace_module, lanczos_module):
        monkeypatch.setattr(module, "random_vector", spy)
    model = bn_mlp().double()
    batch = mlp_batch()
    op = HessianOperator(model, ce, (batch[0].double(), batch[1]))
    hessian_eigenvalues(op, k=1)
    hessian_trace(op, n_probes=4, min_probes=2, rtol=0)
    hessian_density(op, steps=5, n_probes=2)
    assert len(draws) == 1 + 4 + 2
    assert {d[1] for d in draws} == {torch.float64}  # the parameters' dtype, not a fixed one
    assert all(g == dev == torch.device("cpu") for g, _, dev, _ in draws)
    assert [d[3] for d in draws[1:5]] == ["rademacher"] * 4


def test_draws_are_deterministic_per_seed_and_leave_global_rngs_alone():
    from smoothbench.curvature.lanczos import device_generator, random_vector

    state = torch.get_rng_state()
    a = random_vector(1000, device_generator(3, "cpu"), dtype=torch.float32, device="cpu")
    b = random_vector(1000, device_generator(3, "cpu"), dtype=torch.float32, device="cpu")
    z = random_vector(
        1000, device_generator(3, "cpu"), dtype=torch.float32, device="cpu", kind="rademacher"
    )
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert set(z.tolist()) == {-1.0, 1.0}
    assert torch.equal(torch.get_rng_state(), state)


def test_trace_budget_in_products_stops_short_and_says_so():
    op = HessianOperator(bn_mlp(), ce, mlp_batch())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a budget stop is reported, not warned about
        mean, stderr, info = hessian_trace(
            op, n_probes=200, rtol=1e-9, max_hvps=7, return_info=True
        )
    assert info["probes"] == info["hvps"] == op.hvps == 7
    assert info["stopped_short"] and not info["converged"]
    # the budgeted estimate is the unbudgeted run's first 7 probes
    fresh = HessianOperator(bn_mlp(), ce, mlp_batch())
    full, full_stderr = hessian_trace(fresh, n_probes=7, rtol=0)
    assert (mean, stderr) == (full, full_stderr)
    # converging within the budget is not stopping short
    _, _, info = hessian_trace(fresh, n_probes=200, rtol=0.5, max_hvps=150, return_info=True)
    assert info["converged"] and not info["stopped_short"] and info["probes"] < 150
    # a time budget already spent still draws the two probes a standard error needs
    _, _, info = hessian_trace(fresh, n_probes=200, max_seconds=1e-9, return_info=True)
    assert info["probes"] == 2 and info["stopped_short"]


def test_density_budget_runs_whole_probes_and_says_when_it_stopped_short():
    op = HessianOperator(bn_mlp(), ce, mlp_batch())
    grid, density, info = hessian_density(op, steps=10, n_probes=5, max_hvps=25, return_info=True)
    assert info["probes"] == 2 and info["hvps"] == 20 and info["stopped_short"]
    assert abs(np.trapezoid(density, grid) - 1) < 1e-12
    _, _, info = hessian_density(op, steps=10, n_probes=2, max_hvps=25, return_info=True)
    assert info["probes"] == 2 and not info["stopped_short"]
    with pytest.raises(ValueError, match="max_hvps must be a positive integer or None, got 0"):
        hessian_density(op, max_hvps=0)
