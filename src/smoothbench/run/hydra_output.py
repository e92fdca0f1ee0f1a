"""The entry point's own files in the run dir: `.hydra/` written only once a command is
accepted, and a run dir that a refused command created removed again (with the log file Hydra
opened in it)."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from smoothbench.rundir import write_atomic


def write_hydra_output(cfg: DictConfig, run_dir: Path) -> None:
    """`.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml`, as Hydra writes them, but only once
    the command is accepted (the entry point tells Hydra not to write them itself)."""
    hydra_cfg = HydraConfig.get()
    out = run_dir / ".hydra"
    out.mkdir(exist_ok=True)
    whole = OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg)})
    whole.hydra.output_subdir = ".hydra"
    for name, node in (
        ("config.yaml", cfg),
        ("hydra.yaml", whole),
        ("overrides.yaml", hydra_cfg.overrides.task),
    ):
        write_atomic(out / name, OmegaConf.to_yaml(node).encode())


def run_dir_is_new(run_dir: Path) -> bool:
    """Nothing in the run dir but the empty log file Hydra opened: this command made it."""
    try:
        entries = {p.name: p for p in run_dir.iterdir()}
    except OSError:
        return False
    return all(name.endswith(".log") and p.stat().st_size == 0 for name, p in entries.items())


def detach_log_files(run_dir: Path) -> None:
    """Close and drop every logging file handler writing into `run_dir`: once the dir is gone, a
    handler left behind would try to reopen its file at the next message in this process (a
    notebook, a test session) and fail there with ENOENT."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    where = run_dir.resolve()
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.FileHandler):
                if Path(handler.baseFilename).resolve().parent == where:
                    logger.removeHandler(handler)
                    handler.close()


def remove_new_run_dir(run_dir: Path) -> None:
    detach_log_files(run_dir)
    try:
        for p in run_dir.iterdir():
            if p.name.endswith(".log") and p.stat().st_size == 0:
                p.unlink()
        run_dir.rmdir()
    except OSError:
        pass
