"""Sweeps through the launchers: a real one-node SLURM cluster, and the local launcher's GPUs.

The SLURM test starts munged, slurmctld and slurmd from the system's packages (Debian:
`slurmctld slurmd slurm-client munge`) under a temporary directory and skips when they are not
installed or the tests do not run as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO, read_metrics, read_status
from omegaconf import OmegaConf
from slurm_cluster import SlurmCluster, missing_binaries

# a fig4 smoke sweep long enough that a signal lands between two checkpoints
SWEEP = ["experiment=fig4", "scale=smoke", "steps=60", "checkpoint_every=5"]
SIGNAL_AFTER_LINES = 20


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    missing = missing_binaries()
    if missing:
        pytest.skip(f"SLURM not installed (missing: {', '.join(missing)})")
    if os.geteuid() != 0:
        pytest.skip("a test SLURM cluster needs root (slurmd starts jobs as their user)")
    root = tmp_path_factory.mktemp("slurm")
    if len(str(root)) > 60:  # munge's socket path must fit a unix socket name (108 bytes)
        root = Path(tempfile.mkdtemp(prefix="sb-slurm-"))
    cluster = SlurmCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if root.parent == Path(tempfile.gettempdir()):
            shutil.rmtree(root, ignore_errors=True)


def _run(cmd: list[str], env: dict) -> str:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30).stdout


def _train(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`smoothbench-train ARGS` in the background, its output in `log` (read it on failure)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "smoothbench.train", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _preempt_job_1(sweep, sweep_dir: Path, env: dict, cluster: SlurmCluster):
    """Wait until sweep job #1 is mid-run, send it SIGUSR2 as a preemption would, and let the
    requeued job start at once. Returns its metrics file, submitit folder, the job names seen
    in the queue and how many metrics lines existed when the signal went out."""
    metrics = sweep_dir / "1" / "metrics.jsonl"
    names: set[str] = set()
    deadline = time.monotonic() + 180
    while not (metrics.exists() and metrics.read_bytes().count(b"\n") >= SIGNAL_AFTER_LINES):
        assert sweep.poll() is None, (sweep_dir.parent / "sweep.log").read_text() + cluster.logs()
        assert time.monotonic() < deadline, "the SLURM job made no progress\n" + cluster.logs()
        names.update(_run(["squeue", "-h", "-o", "%j"], env).split())
        time.sleep(0.05)
    # the array task of job #1: its submitit folder is named <array id>_1
    (job_folder,) = [d for d in (sweep_dir / ".submitit").iterdir() if d.name.endswith("_1")]
    signalled_at = metrics.read_bytes().count(b"\n")
    scancel = subprocess.run(
        ["scancel", "--signal=USR2", "--full", job_folder.name],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert scancel.returncode == 0, scancel.stderr
    deadline = time.monotonic() + 60
    while not cluster.start_pending_now(job_folder.name):
        assert time.monotonic() < deadline, "the job was not requeued\n" + cluster.logs()
        time.sleep(0.2)
    return metrics, job_folder, names, signalled_at


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_sweep_requeues_a_preempted_job_which_resumes_identically(tmp_path, slurm_cluster):
    env = {
        **os.environ,
        **slurm_cluster.env(),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "OMP_NUM_THREADS": "1",
    }
    # the uninterrupted run of sweep job #1 (norm=batch), alongside the sweep
    reference = _train(
        [*SWEEP, "norm=batch", f"hydra.run.dir={tmp_path / 'reference'}"],
        env,
        tmp_path / "reference.log",
    )
    sweep_dir = tmp_path / "sweep"
    sweep = _train(
        [
            "-m",
            *SWEEP,
            "launcher=slurm",
            f"hydra.sweep.dir={sweep_dir}",
            "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1",
            "hydra.launcher.partition=debug",
        ],
        env,
        tmp_path / "sweep.log",
    )
    try:
        metrics, job_folder, names, signalled_at = _preempt_job_1(
            sweep, sweep_dir, env, slurm_cluster
        )
        sweep.wait(timeout=180)
        reference.wait(timeout=120)
    finally:
        for proc in (sweep, reference):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert sweep.returncode == 0, (tmp_path / "sweep.log").read_text() + slurm_cluster.logs()
    assert reference.returncode == 0, (tmp_path / "reference.log").read_text()

    assert names == {"sb-fig4-smoke"}
    assert signalled_at < 61, "the signal came after the run had ended"
    log = "".join(p.read_text() for p in job_folder.glob("*_log.*"))
    assert "Requeued job" in log, log[-3000:]
    for job in ("0", "1"):
        assert read_status(sweep_dir / job)["state"] == "finished"
    assert metrics.read_bytes() == (tmp_path / "reference" / "metrics.jsonl").read_bytes()
    assert len(read_metrics(sweep_dir / "1")) == 61


@pytest.mark.slow
def test_local_launcher_keeps_the_gpu_visible_and_caps_parallel_jobs(tmp_path):
    """What submitit's local executor makes of launcher=local: jobs see GPU 0 (gpus_per_node 0
    would hide every GPU with CUDA_VISIBLE_DEVICES=""), and a sweep runs in capped batches."""
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    for extra, expected in (
        ([], "0"),
        (["+hydra.launcher.setup=['export CUDA_VISIBLE_DEVICES=3']"], "3"),
    ):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            hcfg = compose(
                "train",
                overrides=["launcher=local", "experiment=fig4", "scale=smoke", *extra],
                return_hydra_config=True,
            )
        assert hcfg.hydra.sweeper.max_batch_size == 4
        launcher = OmegaConf.to_container(hcfg.hydra.launcher)
        launcher.pop("_target_")
        launcher.pop("submitit_folder")
        assert launcher.pop("name") == "sb-${sb.or:${experiment},run}-${scale}"
        assert OmegaConf.select(hcfg, "hydra.launcher.name") == "sb-fig4-smoke"
        # the launcher plugin's own mapping: shared keys as they are, the rest prefixed
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        params = {k if k in shared else f"local_{k}": v for k, v in launcher.items()}
        executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="local")
        executor.update_parameters(**params)
        # a shell reads the variable in the job (os.environ.get would pickle ours along)
        job = executor.submit(subprocess.check_output, "echo $CUDA_VISIBLE_DEVICES", shell=True)
        assert job.result().decode().strip() == expected


def test_test_cluster_config_is_minimal_and_self_contained(tmp_path):
    """The cluster's files stay under its root and name the plugins a container can run."""
    cluster = SlurmCluster(tmp_path / "c")
    cluster.root.mkdir()
    cluster._write_munge_key()
    cluster._write_conf()
    conf = dict(line.split("=", 1) for line in cluster.conf.read_text().splitlines() if "=" in line)
    assert conf["SelectType"] == "select/cons_tres"
    assert conf["ProctrackType"] == "proctrack/linuxproc"
    assert conf["TaskPlugin"] == "task/none"
    assert conf["AccountingStorageType"] == "accounting_storage/none"
    for key in ("StateSaveLocation", "SlurmdSpoolDir", "SlurmctldPidFile", "SlurmdLogFile"):
        assert Path(conf[key]).is_relative_to(cluster.root), key
    assert (cluster.root / "munge" / "munge.key").stat().st_mode & 0o077 == 0
