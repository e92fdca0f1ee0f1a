"""Li et al. loss surfaces: filter-normalized directions, 1-D/2-D grids, interpolation, and the
`smoothbench-surface` entry point. Every number is checked against a hand-written loop on a
copy of the model."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO
from torch import nn
from torch.nn import functional as F

from smoothbench.surfaces import (
    filter_normalized_direction,
    interpolate_checkpoints,
    loss_surface,
)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny nets on a busy 2-core machine run many times faster on one thread than on two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 5),
        nn.BatchNorm1d(5),
        nn.ReLU(),
        nn.Linear(5, 3),
    )


def warm_up_running_stats(model: nn.Module, seed: int) -> None:
    """Move the running statistics away from their (0, 1) start, as training would."""
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(2.0 * torch.randn(16, 2, 4, 4, generator=generator) + 1.0)
    model.eval()


def tiny_data(n: int = 10, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, 2, 4, 4, generator=generator)
    targets = torch.randint(0, 3, (n,), generator=generator)
    return inputs, targets


def shifted_copy(model: nn.Module, steps: list[tuple[float, dict]]) -> nn.Module:
    """A deep copy with θ + Σ coordinate·direction, built independently of the code under test."""
    moved = copy.deepcopy(model)
    state = moved.state_dict()
    for coordinate, direction in steps:
        for name, d in direction.items():
            state[name] = state[name] + coordinate * d
    moved.load_state_dict(state)
    return moved


def direct_loss_acc(model, inputs, targets, train_mode: bool = False, chunk: int | None = None):
    model = copy.deepcopy(model)
    model.train(train_mode)
    chunk = chunk or len(inputs)
    losses, correct = [], 0
    with torch.no_grad():
        for start in range(0, len(inputs), chunk):
            out = model(inputs[start : start + chunk])
            y = targets[start : start + chunk]
            # Sum of per-example losses, so the mean needs no chunk weighting.
            losses.append(F.cross_entropy(out, y, reduction="sum").item())
            correct += (out.argmax(1) == y).sum().item()
    return sum(losses) / len(inputs), correct / len(inputs)


def snapshot(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_state_equal(model: nn.Module, saved: dict) -> None:
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


# --- filter_normalized_direction ---------------------------------------------------------------


def test_direction_filter_norms_match_weights_and_zeros_elsewhere():
    model = tiny_bn_net()
    direction = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    params = dict(model.named_parameters())
    assert set(direction) == set(params)  # no buffers
    for name in ("0.weight", "4.weight", "7.weight"):  # conv filters, linear neurons
        w, d = params[name].detach(), direction[name]
        assert d.shape == w.shape
        for i in range(w.shape[0]):
            assert torch.linalg.vector_norm(d[i]).item() == pytest.approx(
                torch.linalg.vector_norm(w[i]).item(), rel=1e-6
            )
        # Gaussian, not θ itself: the direction of each filter is not the weight's.
        cosine = F.cosine_similarity(d.flatten(1), w.flatten(1), dim=1)
        assert cosine.abs().max() < 0.99
    for name in ("0.bias", "1.weight", "1.bias", "4.bias", "5.weight", "5.bias", "7.bias"):
        assert torch.count_nonzero(direction[name]) == 0, name


def test_direction_is_reproducible_per_seed():
    model = tiny_bn_net()
    a = filter_normalized_direction(model, torch.Generator().manual_seed(3))
    b = filter_normalized_direction(model, torch.Generator().manual_seed(3))
    c = filter_normalized_direction(model, torch.Generator().manual_seed(4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])


def test_direction_zero_for_norm_gamma_shaped_like_a_channel_map():
    class ChannelScale(nn.Module):
        def __init__(self):
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(1, 3, 1, 1))

        def forward(self, x):
            return x * self.gamma

    model = nn.Sequential(nn.Conv2d(1, 3, 1), ChannelScale(), nn.Linear(1, 4))
    direction = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    assert torch.count_nonzero(direction["1.gamma"]) == 0
    # A Linear(1, 4) weight is (4, 1): still one neuron per row, still normalized.
    w = model[2].weight.detach()
    assert torch.allclose(direction["2.weight"].abs(), w.abs(), rtol=1e-6)


# --- loss_surface ------------------------------------------------------------------------------


def test_surface_at_origin_equals_direct_loss_with_uneven_chunks():
    model = tiny_bn_net()
    warm_up_running_stats(model, seed=5)
    inputs, targets = tiny_data(n=10)
    direction = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    losses, accs = loss_surface(
        model, F.cross_entropy, (inputs, targets), direction, [0.0], batch_size=4
    )
    loss, acc = direct_loss_acc(model, inputs, targets)
    assert losses.shape == (1,)
    assert losses[0] == pytest.approx(loss, rel=1e-6)
    assert accs[0] == pytest.approx(acc)


def test_one_dimensional_surface_equals_hand_loop():
    model = tiny_bn_net()
    warm_up_running_stats(model, seed=5)
    inputs, targets = tiny_data(n=12)
    direction = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    alphas = np.linspace(-1.0, 1.0, 5)
    losses, accs = loss_surface(
        model, F.cross_entropy, (inputs, targets), direction, alphas, batch_size=5
    )
    expected = [
        direct_loss_acc(shifted_copy(model, [(a, direction)]), inputs, targets) for a in alphas
    ]
    np.testing.assert_allclose(losses, [e[0] for e in expected], rtol=1e-5)
    np.testing.assert_allclose(accs, [e[1] for e in expected])
    assert losses.std() > 0  # the curve actually moves


def test_two_dimensional_grid_axes_equal_one_dimensional_curves():
    model = tiny_bn_net()
    warm_up_running_stats(model, seed=5)
    data = tiny_data(n=8)
    generator = torch.Generator().manual_seed(0)
    d1 = filter_normalized_direction(model, generator)
    d2 = filter_normalized_direction(model, generator)
    alphas = np.array([-0.5, 0.0, 0.5, 1.0])
    betas = np.array([-1.0, 0.0, 1.0])
    grid, grid_accs = loss_surface(model, F.cross_entropy, data, (d1, d2), (alphas, betas))
    along_d1, _ = loss_surface(model, F.cross_entropy, data, d1, alphas)
    along_d2, _ = loss_surface(model, F.cross_entropy, data, d2, betas)
    assert grid.shape == grid_accs.shape == (4, 3)
    np.testing.assert_allclose(grid[:, 1], along_d1, rtol=1e-6)
    np.testing.assert_allclose(grid[1, :], along_d2, rtol=1e-6)
    # An off-axis point, by hand.
    off_axis, _ = direct_loss_acc(shifted_copy(model, [(1.0, d1), (-1.0, d2)]), *data)
    assert grid[3, 0] == pytest.approx(off_axis, rel=1e-5)


@pytest.mark.parametrize("start_in_train_mode", [False, True])
def test_bn_modes_differ_and_leave_model_exactly_as_found(start_in_train_mode):
    model = tiny_bn_net()
    warm_up_running_stats(model, seed=5)
    model.train(start_in_train_mode)
    inputs, targets = tiny_data(n=12)
    direction = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    alphas = np.array([-1.0, 0.0, 1.0])
    saved = snapshot(model)
    modes = {name: m.training for name, m in model.named_modules()}
    rng = torch.get_rng_state()

    eval_losses, _ = loss_surface(
        model, F.cross_entropy, (inputs, targets), direction, alphas, bn_mode="eval"
    )
    train_losses, _ = loss_surface(
        model, F.cross_entropy, (inputs, targets), direction, alphas, bn_mode="train", batch_size=6
    )

    assert_state_equal(model, saved)  # parameters and running statistics
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert torch.equal(torch.get_rng_state(), rng)
    assert np.abs(train_losses - eval_losses).max() > 1e-3
    expected_train = [
        direct_loss_acc(shifted_copy(model, [(a, direction)]), inputs, targets, True, chunk=6)[0]
        for a in alphas
    ]
    np.testing.assert_allclose(train_losses, expected_train, rtol=1e-5)


def test_accuracy_is_none_for_regression_targets():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 2, bias=False))
    inputs = torch.randn(7, 3)
    targets = torch.randn(7, 2)
    direction = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    losses, accs = loss_surface(model, F.mse_loss, (inputs, targets), direction, [0.0, 0.5])
    assert accs is None
    with torch.no_grad():
        moved = shifted_copy(model, [(0.5, direction)])
        assert losses[1] == pytest.approx(F.mse_loss(moved(inputs), targets).item(), rel=1e-6)


def test_bad_arguments_fail_with_a_clear_message():
    model = tiny_bn_net()
    data = tiny_data()
    direction = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="unknown bn_mode 'batch'; choose one of: eval, train"):
        loss_surface(model, F.cross_entropy, data, direction, [0.0], bn_mode="batch")
    with pytest.raises(ValueError, match="'nope', which is not a parameter"):
        loss_surface(model, F.cross_entropy, data, {"nope": torch.zeros(1)}, [0.0])
    with pytest.raises(ValueError, match=r"coords=\(alphas, betas\)"):
        loss_surface(model, F.cross_entropy, data, (direction, direction), ([0.0], [0.0], [0.0]))


# --- interpolate_checkpoints -------------------------------------------------------------------


def test_interpolation_endpoints_equal_each_checkpoint_and_midpoint_by_hand():
    model_a, model_b = tiny_bn_net(seed=0), tiny_bn_net(seed=1)
    warm_up_running_stats(model_a, seed=5)
    warm_up_running_stats(model_b, seed=6)
    state_a, state_b = snapshot(model_a), snapshot(model_b)
    inputs, targets = tiny_data(n=9)
    model = tiny_bn_net(seed=2)
    saved = snapshot(model)

    losses, accs = interpolate_checkpoints(
        model, F.cross_entropy, (inputs, targets), state_a, state_b, [0.0, 0.5, 1.0], batch_size=4
    )

    assert_state_equal(model, saved)
    loss_a, acc_a = direct_loss_acc(model_a, inputs, targets)
    loss_b, acc_b = direct_loss_acc(model_b, inputs, targets)
    assert losses[0] == pytest.approx(loss_a, rel=1e-6)
    assert losses[2] == pytest.approx(loss_b, rel=1e-6)
    assert (accs[0], accs[2]) == (pytest.approx(acc_a), pytest.approx(acc_b))
    middle = tiny_bn_net()
    middle.load_state_dict(
        {
            k: (state_a[k] + state_b[k]) / 2 if v.is_floating_point() else v
            for k, v in state_a.items()
        }
    )
    assert losses[1] == pytest.approx(direct_loss_acc(middle, inputs, targets)[0], rel=1e-5)


def test_interpolation_rejects_a_foreign_state():
    model = tiny_bn_net()
    with pytest.raises(ValueError, match="state_b does not match the model"):
        interpolate_checkpoints(
            model, F.cross_entropy, tiny_data(), snapshot(model), {"x": torch.zeros(1)}, [0.0]
        )


# --- the smoothbench-surface entry point -------------------------------------------------------
# A tiny run directory: the smoke-scale training config (VGG-11 at width 1/8 on the embedded
# digits), and checkpoints whose BN running statistics are not the initial ones.

SMALL = ["subset=24", "batch_size=8"]
_DATA = {}


def cached_data(cfg):
    """The run's data, loaded once per test session (loading and resizing digits takes seconds)."""
    from omegaconf import OmegaConf

    from smoothbench.build import build_data_from_config

    key = OmegaConf.to_yaml(cfg.data) + OmegaConf.to_yaml(cfg.model)
    if key not in _DATA:
        _DATA[key] = build_data_from_config(cfg)
    return _DATA[key]


@pytest.fixture
def fast_data(monkeypatch):
    monkeypatch.setattr("smoothbench.surfaces.cli.build_data_from_config", cached_data)


def compose(config_name: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from smoothbench.surfaces.cli import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides)


def write_run_dir(run_dir, seed: int = 0):
    from omegaconf import OmegaConf

    from smoothbench.build import build_model_from_config
    from smoothbench.checkpoint import save_checkpoint
    from smoothbench.config import register_configs

    register_configs()
    cfg = compose("train", ["scale=smoke", f"seed={seed}", "device=cpu"])
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    data = cached_data(cfg)
    torch.manual_seed(seed)
    model = build_model_from_config(cfg, num_classes=data.num_classes)
    states = {}
    for step in (3, 6):
        model.train()
        with torch.no_grad():  # running statistics move, as in training
            model(data.fixed_subset(32, seed=step)[0])
            for p in model.parameters():
                p.mul_(1.05)
        states[step] = copy.deepcopy(model.state_dict())
        payload = {"model": states[step], "optimizer": {}, "rng": {}, "step": step,
                   "metrics_bytes": 0, "config": OmegaConf.to_container(cfg)}  # fmt: skip
        name = "last.pt" if step == 6 else f"step_{step}.pt"
        save_checkpoint(run_dir / "checkpoints" / name, payload)
    return cfg, model, data, states


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    write_run_dir(path)
    return path


def run_surface(overrides: list[str]):
    from smoothbench.surfaces.cli import load_surface, run

    return load_surface(run(compose("surface", overrides)))


def run_cli(args: list[str], cwd):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "smoothbench.surfaces.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_entry_point_tiles_and_merge_equal_the_untiled_grid(run_dir, tmp_path, fast_data):
    grid = ["dims=2", "points=5", "range=[-0.5,0.5]", *SMALL]
    tiles = run_cli(["-m", f"run_dir={run_dir}", *grid, "name=g", "tile.index=0,1",
                     "tile.count=2"], cwd=tmp_path)  # fmt: skip
    assert tiles.returncode == 0, tiles.stderr
    assert (run_dir / "surfaces" / "g.tile1of2.npz").is_file()
    assert "g.tile0of2.npz" in tiles.stdout and "bn_mode=eval" in tiles.stdout
    stitched = run_surface([f"run_dir={run_dir}", *grid, "name=g", "merge=true"])
    assert sorted(p.name for p in (run_dir / "surfaces").iterdir() if p.name.startswith("g.")) == [
        "g.npz",
        "g.tile0of2.npz",
        "g.tile1of2.npz",
    ]  # and no temporary file left behind
    whole = run_surface([f"run_dir={run_dir}", *grid, "name=whole"])
    assert stitched["losses"].shape == stitched["accs"].shape == (5, 5)
    np.testing.assert_allclose(stitched["losses"], whole["losses"], rtol=1e-6)
    np.testing.assert_allclose(stitched["accs"], whole["accs"])
    np.testing.assert_allclose(stitched["alphas"], np.linspace(-0.5, 0.5, 5))
    np.testing.assert_allclose(stitched["betas"], np.linspace(-0.5, 0.5, 5))
    settings = stitched["settings"]
    assert (settings["bn_mode"], settings["step"], settings["seed"]) == ("eval", 6, 0)
    assert settings["merged_tiles"] == 2 and settings["subset"] == 24
    assert np.ptp(whole["losses"]) > 0


def test_entry_point_grid_centre_is_the_checkpoint_loss(run_dir, fast_data):
    from omegaconf import OmegaConf

    from smoothbench.build import build_model_from_config

    run_cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    data = cached_data(run_cfg)
    model = build_model_from_config(run_cfg, num_classes=data.num_classes)
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "step_3.pt")["model"])
    inputs, targets = data.fixed_subset(24, seed=5)
    for bn_mode, train_mode in (("eval", False), ("train", True)):
        surface = run_surface([f"run_dir={run_dir}", "step=3", "points=3", "seed=5",
                               f"bn_mode={bn_mode}", *SMALL])  # fmt: skip
        loss, acc = direct_loss_acc(model, inputs, targets, train_mode, chunk=8)
        assert surface["losses"][1] == pytest.approx(loss, rel=1e-5)
        assert surface["accs"][1] == pytest.approx(acc)
        assert surface["settings"]["bn_mode"] == bn_mode
        assert surface["settings"]["step"] == 3
        assert (run_dir / "surfaces" / f"1d_{bn_mode}_step3_seed5.npz").is_file()


def test_entry_point_interpolation_endpoints_are_the_checkpoints(run_dir, fast_data):
    from omegaconf import OmegaConf

    from smoothbench.build import build_model_from_config

    run_cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    data = cached_data(run_cfg)
    inputs, targets = data.fixed_subset(24, seed=0)
    target = run_dir / "checkpoints" / "last.pt"
    surface = run_surface(
        [f"run_dir={run_dir}", "step=3", "points=3", "range=[0,1]", f"interpolate_to={target}"]
        + SMALL
    )
    for index, name in ((0, "step_3.pt"), (2, "last.pt")):
        model = build_model_from_config(run_cfg, num_classes=data.num_classes)
        model.load_state_dict(torch.load(run_dir / "checkpoints" / name)["model"])
        assert surface["losses"][index] == pytest.approx(
            direct_loss_acc(model, inputs, targets)[0], rel=1e-6
        )
    assert surface["settings"]["kind"] == "interpolation"
    assert surface["settings"]["interpolate_to_step"] == 6


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dims=3", "dims=3 is not allowed; choose one of: 1, 2"),
        ("points=1", "points=1 is not allowed; use an integer >= 2"),
        ("bn_mode=batch", "bn_mode='batch' is not allowed; choose one of: eval, train"),
        ("step=99", r"no checkpoint for step=99 .* found: last.pt, step_3.pt"),
        ("tile.index=2", r"tile.index=2 is not allowed; use 0 .. 1"),
    ],
)
def test_entry_point_rejects_bad_settings(run_dir, override, message, fast_data):
    from smoothbench.surfaces.cli import SurfaceError, run

    overrides = [f"run_dir={run_dir}", "tile.count=2", *SMALL, override]
    with pytest.raises(SurfaceError, match=message):
        run(compose("surface", overrides))


@pytest.mark.slow
def test_entry_point_missing_run_dir_is_one_line_and_exit_code_2(tmp_path):
    result = run_cli([f"run_dir={tmp_path / 'nope'}"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"smoothbench-surface: error: run_dir='{tmp_path / 'nope'}' is not a directory"
    ]
    assert list(tmp_path.iterdir()) == []  # Hydra wrote nothing either


def test_entry_point_never_overwrites_unless_asked(run_dir, fast_data):
    from smoothbench.surfaces.cli import SurfaceError, run

    overrides = [f"run_dir={run_dir}", "points=2", "name=once", *SMALL]
    run(compose("surface", overrides))
    path = run_dir / "surfaces" / "once.npz"
    before = path.read_bytes()
    with pytest.raises(SurfaceError, match="once.npz' exists; pass overwrite=true"):
        run(compose("surface", [*overrides, "bn_mode=train"]))
    assert path.read_bytes() == before
    run(compose("surface", [*overrides, "bn_mode=train", "overwrite=true"]))
    assert path.read_bytes() != before


def test_merge_refuses_missing_or_disagreeing_tiles(run_dir, fast_data):
    from smoothbench.surfaces.cli import SurfaceError, run

    base = [f"run_dir={run_dir}", "points=3", "name=parts", "tile.count=3", *SMALL]
    run(compose("surface", [*base, "tile.index=0"]))
    run(compose("surface", [*base, "tile.index=2"]))
    with pytest.raises(SurfaceError, match=r"tile\(s\) 1 of 3 missing"):
        run(compose("surface", [*base, "merge=true"]))
    run(compose("surface", [*base, "tile.index=1", "seed=1"]))
    with pytest.raises(SurfaceError, match="tile 1 of 3 has seed=1, tile 0 has 0"):
        run(compose("surface", [*base, "merge=true"]))
    assert not (run_dir / "surfaces" / "parts.npz").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("foo=1", "foo"),  # a key the surface config does not have
        ("dims=[1", "cannot parse the override"),  # not an override at all
    ],
)
def test_entry_point_composition_errors_are_one_line_and_exit_code_2(tmp_path, override, message):
    result = run_cli([f"run_dir={tmp_path}", override], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smoothbench-surface: error: "), result.stderr
    assert message in lines[0]


def copy_of_run(run_dir, tmp_path):
    import shutil

    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("model: [vgg11\nnorm: {name: batch\n", "is not a readable config"),
        ("- just\n- a list\n", r"is not a training config \(no seed, model.name"),
        ("seed: 0\nmodel: 3\nnorm: {name: batch}\ndata: {name: digits}\n", "no model.name"),
        ("seed: 0\nmodel: {name: vgg11}\nnorm: {name: batch}\ndata: {name: digits}\n", "built"),
    ],
    ids=["bad-yaml", "a-list", "scalar-section", "missing-values"],
)
def test_malformed_run_config_is_one_surface_error(run_dir, tmp_path, content, message):
    from smoothbench.surfaces.cli import SurfaceError, run

    broken = copy_of_run(run_dir, tmp_path)
    (broken / ".hydra" / "config.yaml").write_text(content)
    with pytest.raises(SurfaceError, match=message) as err:
        run(compose("surface", [f"run_dir={broken}", *SMALL, "points=3"]))
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_entry_point_malformed_run_config_is_one_line_and_exit_code_2(run_dir, tmp_path):
    broken = copy_of_run(run_dir, tmp_path)
    (broken / ".hydra" / "config.yaml").write_text("model: [vgg11\n  norm: {\n")
    before = (
        sorted(p.name for p in (broken / "surfaces").glob("*"))
        if (broken / "surfaces").exists()
        else []
    )
    result = run_cli([f"run_dir={broken}", *SMALL, "points=3", "name=never"], cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a readable config" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    after = (
        sorted(p.name for p in (broken / "surfaces").glob("*"))
        if (broken / "surfaces").exists()
        else []
    )
    assert after == before


def test_a_checkpoint_written_on_cuda_loads_on_a_cpu_only_machine(
    run_dir, tmp_path, monkeypatch, fast_data
):
    """Tensors saved from CUDA carry a `cuda:0` location tag; without a CUDA device they load only
    when mapped to the CPU. The tag is forged here so the test runs on any machine."""
    import torch.serialization as ts

    from smoothbench.checkpoint import load_checkpoint, save_checkpoint

    moved = copy_of_run(run_dir, tmp_path)
    payload = load_checkpoint(moved / "checkpoints" / "last.pt")
    monkeypatch.setattr(ts, "location_tag", lambda storage: "cuda:0")
    save_checkpoint(moved / "checkpoints" / "last.pt", payload)
    monkeypatch.undo()
    monkeypatch.setattr("smoothbench.surfaces.cli.build_data_from_config", cached_data)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):  # the forged tag really says CUDA
        torch.load(moved / "checkpoints" / "last.pt", weights_only=True)
    surface = run_surface([f"run_dir={moved}", *SMALL, "points=3", "device=cpu"])
    reference = run_surface([f"run_dir={run_dir}", *SMALL, "points=3", "device=cpu", "name=ref"])
    assert np.array_equal(surface["losses"], reference["losses"])


@pytest.mark.slow
def test_surface_help_is_its_own_page():
    """--help shows the surface keys and examples, not the training groups that do not apply."""
    proc = subprocess.run(
        [sys.executable, "-m", "smoothbench.surfaces.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("smoothbench-surface: Li et al. (2018) loss surfaces")
    assert "== Keys (key=value) ==" in proc.stdout and "interpolate_to: null" in proc.stdout
    assert "model: " not in proc.stdout and "experiment:" not in proc.stdout
    assert "Powered by Hydra" not in proc.stdout
