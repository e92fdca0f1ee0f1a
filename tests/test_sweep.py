"""Experiment presets and sweeps: every preset composes; a submitit job survives preemption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CONF_DIR, REPO, cli, compose_config, read_metrics, read_status

from smoothbench.config import validate

PRESETS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
SCALES = ("smoke", "cpu", "paper")


def test_the_paper_presets_exist():
    for name in ("fig1", "fig2", "fig3", "fig4", "fig10", "lp", "hessian", "surfaces"):
        assert name in PRESETS


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("scale", SCALES)
def test_every_preset_composes_and_validates_at_every_scale(preset, scale):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train", overrides=[f"experiment={preset}", f"scale={scale}"], return_hydra_config=True
        )
    assert cfg.experiment == preset and cfg.scale == scale
    sweep = cfg.hydra.sweeper.params
    assert sweep, "a preset is a sweep"
    # every combination the sweep will launch must be a valid run
    for override in _first_and_last_jobs(sweep):
        job = compose_config(f"experiment={preset}", f"scale={scale}", *override)
        validate(job)
    header = (Path(CONF_DIR) / "experiment" / f"{preset}.yaml").read_text().splitlines()[1:4]
    assert any("smoothbench-train -m experiment=" in line for line in header)
    if scale == "paper" and cfg.model.name.startswith("vgg"):
        assert (cfg.model.name, cfg.model.width, cfg.steps, cfg.batch_size) == (
            "vgg16",
            1.0,
            15000,
            128,
        )
        assert cfg.data.name == "cifar10" and not cfg.data.augment and cfg.model.init == "xavier"


def test_command_line_choices_win_over_a_preset():
    cfg = compose_config("experiment=fig4", "scale=cpu", "model=vgg11", "data=cifar10")
    assert (cfg.model.name, cfg.data.name) == ("vgg11", "cifar10")
    cfg = compose_config("experiment=fig10", "scale=smoke", "optim=adam", "optim.lr=1e-3")
    assert (cfg.optim.name, cfg.optim.lr) == ("adam", 1e-3)


def _first_and_last_jobs(sweep) -> list[list[str]]:
    firsts = [f"{k}={str(v).split(',')[0]}" for k, v in sweep.items()]
    lasts = [f"{k}={str(v).split(',')[-1]}" for k, v in sweep.items()]
    return [firsts, lasts]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
def test_preempted_job_is_requeued_and_resumes_identically(tmp_path):
    """SIGUSR2 to a running submitit job (what SLURM sends before preemption): the job is
    requeued, comes back in its own run dir and finishes with the uninterrupted metrics."""
    args = [
        "scale=smoke",
        "steps=120",
        "checkpoint_every=10",
        "eval_every=20",
        "probes=off",
        "norm=noisy_batch",
        "optim.momentum=0.9",
    ]
    reference = cli(*args, f"hydra.run.dir={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr

    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smoothbench.train",
            "-m",
            "launcher=local",
            *args,
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    metrics = sweep_dir / "0" / "metrics.jsonl"
    deadline = time.time() + 240
    while not (metrics.exists() and metrics.read_bytes().count(b"\n") >= 40):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "the job made no progress"
        time.sleep(0.02)
    (job_folder,) = [d for d in (sweep_dir / ".submitit").iterdir() if d.name.isdigit()]
    tasks = _children(int(job_folder.name))
    assert tasks, "no running task process found under the submitit controller"
    for pid in tasks:
        os.kill(pid, signal.SIGUSR2)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out

    log = "".join(p.read_text() for p in job_folder.glob("*_log.*"))
    assert "Requeued job" in log or "preempted" in log
    assert read_status(sweep_dir / "0")["state"] == "finished"
    assert metrics.read_bytes() == (tmp_path / "reference" / "metrics.jsonl").read_bytes()
    assert len(read_metrics(sweep_dir / "0")) == 121


def _analysis_module(name: str):
    import importlib

    analysis = str(REPO / "analysis")
    if analysis not in sys.path:
        sys.path.insert(0, analysis)
    return importlib.import_module(name)


@pytest.mark.slow
def test_smoke_reproduction_end_to_end(tmp_path):
    """scripts/reproduce.sh with two presets through launcher=local: runs, surfaces, figures
    and report, and the plotted numbers are the logged ones."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.colors import to_hex

    from smoothbench.plotting import norm_color
    from smoothbench.results import load_runs

    out = tmp_path / "repro"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "OUT": str(out),
        "PRESETS": "fig2 fig4",
        "WANDB_MODE": "offline",
        "MPLBACKEND": "Agg",
    }
    proc = subprocess.run(
        ["bash", "scripts/reproduce.sh", "smoke", "local"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    for preset, jobs in (("fig2", 4), ("fig4", 2)):  # fig2: standard, BN, noisy BN, noise
        runs = sorted(d for d in (out / preset).iterdir() if d.name.isdigit())
        assert len(runs) == jobs
        assert all(read_status(d)["state"] == "finished" for d in runs)
    for run in (out / "fig4").glob("[0-9]*"):
        assert (run / "surfaces" / "2d.npz").stat().st_size > 0
    for figure in ("fig2/fig2", "fig2/fig8", "fig4/fig4", "fig4/surfaces"):
        for ext in ("pdf", "png"):
            assert (out / "figures" / f"{figure}.{ext}").stat().st_size > 1000, figure
    report = (out / "report" / "report.html").read_text()
    assert "data:image/png;base64" in report and "fig4" in report
    timings = (out / "timings.tsv").read_text()
    assert "train:fig2" in timings and "report" in timings

    # the plotted beta-smoothness of each condition is what its run logged
    df = load_runs(out / "fig4")
    fig = _analysis_module("fig4").make_figure(df)
    beta_axis = fig.axes[2]
    checked = 0
    for run in (out / "fig4").glob("[0-9]*"):
        norm = next(r for r in df["norm.name"][df["run_dir"].astype(str) == str(run)])
        logged = [
            (r["step"], r["landscape/beta_smoothness"])
            for r in read_metrics(run)
            if "landscape/beta_smoothness" in r
        ]
        color = to_hex(norm_color(norm))
        (line,) = [
            ln
            for ln in beta_axis.lines
            if ln.get_gid() == "mean" and to_hex(ln.get_color()) == color
        ]
        assert list(line.get_xdata()) == [s for s, _ in logged]
        assert list(line.get_ydata()) == pytest.approx([b for _, b in logged], rel=1e-12)
        checked += 1
    assert checked == 2
