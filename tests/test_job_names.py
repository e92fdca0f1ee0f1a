"""Job names and sweep dirs of runs without a preset say `run`/`sweep`, never `None`; W&B run
names carry the swept science only."""

from __future__ import annotations

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict


@pytest.mark.parametrize(
    "extra, name, sweep_root",
    [
        ([], "sb-run-smoke", "multirun/sweep/"),
        (["experiment=fig4"], "sb-fig4-smoke", "multirun/fig4/"),
    ],
)
@pytest.mark.parametrize("launcher", ["local", "slurm"])
def test_job_name_and_sweep_dir_name_the_preset_or_a_plain_run(extra, name, sweep_root, launcher):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"launcher={launcher}", "scale=smoke", *extra],
            return_hydra_config=True,
        )
    assert OmegaConf.select(cfg, "hydra.launcher.name") == name
    assert OmegaConf.select(cfg, "hydra.sweep.dir").startswith(sweep_root)


def test_wandb_run_names_carry_the_swept_science_not_the_bookkeeping():
    from smoothbench.sinks import run_name

    task = [
        "experiment=fig1",
        "scale=smoke",
        "checkpoint_every=20",
        "eval_every=20",
        "eval_batch_size=64",
        "progress=false",
        "threads=2",
        "device=cpu",
        "logger=wandb",
        "logger.mode=offline",
        "probes.activations.schedule.every=5",
        "norm=none",
        "optim.lr=0.5",
        "seed=3",
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=task, return_hydra_config=True)
    overrides = list(cfg.hydra.overrides.task)  # what the training run names itself from
    assert overrides == task
    with open_dict(cfg):
        del cfg["hydra"]
    config = OmegaConf.to_container(cfg, resolve=True)
    assert run_name(config, overrides) == "fig1-none-lr0.5-s3"
