"""Job names and sweep dirs of runs without a preset say `run`/`sweep`, never `None`."""

from __future__ import annotations

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf


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
