"""Synthetic run directories with known numbers, laid out as `smoothbench-train` writes them.

Every metric is a simple closed form of the run's `base` and the step (see `vgg_record`), so a
test can state the number a figure must plot without reading the files back.

VGG sweep (`make_vgg_sweep`), steps 0..5, eval at 0, 3, 5, probes at 0, 2, 4:

| job | norm  | lr  | seed | state    | base | what is special                           |
|-----|-------|-----|------|----------|------|-------------------------------------------|
| 0   | none  | 0.1 | 0    | finished | 0.10 | surfaces/line.npz, surfaces/plane.npz     |
| 1   | none  | 0.1 | 1    | finished | 0.20 |                                           |
| 2   | batch | 0.1 | 0    | finished | 0.30 | surfaces/plane.npz                        |
| 3   | batch | 0.1 | 1    | diverged | 0.40 | train/loss null (NaN) at step 4, ends     |
| 4   | batch | 0.5 | 0    | running  | 0.50 | steps 0..3, then a torn line              |
| 5   | none  | 0.5 | 0    | failed   | 0.05 | steps 0..1                                |

Norms sweep (`make_norms_sweep`): VGG at lr 0.1, seed 0, all finished, norms none, batch,
noisy_batch, l1, l2, linf with base 0.1, 0.2, ..., 0.6 (in that order); preset "lp" unless
told (as "fig1" it lacks Fig. 1's second lr; as "fig2" it holds Fig. 2's three nets).

DLN sweep (`make_dln_sweep`): model dln, lr 1e-6, norms none/batch × seeds 0/1, all finished, a
full grid of overrides, train/loss and landscape probes only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

STEPS = 6
EVAL_STEPS = (0, 3, 5)
PROBE_STEPS = (0, 2, 4)
ACT_LAYERS = (2, 3, 9, 11, 13)
ICS_LAYERS = (5, 10)
LANDSCAPE_OFFSETS = (0.0, 0.3, -0.2, 0.5)  # L(θ − ηg) − L(θ) per η: range −0.2 .. 0.5
QUANTILE_OFFSETS = (-4, -3, -2, -1, 0, 1, 2, 3, 4)
DENSITY_GRID = (-1.0, 2.0, 5.0, 8.0, 11.0)
DENSITY_SHAPE = (0.1, 0.2, 0.4, 0.2, 0.1)

VGG_RUNS = (
    {"job": 0, "norm": "none", "lr": 0.1, "seed": 0, "state": "finished", "base": 0.10},
    {"job": 1, "norm": "none", "lr": 0.1, "seed": 1, "state": "finished", "base": 0.20},
    {"job": 2, "norm": "batch", "lr": 0.1, "seed": 0, "state": "finished", "base": 0.30},
    {"job": 3, "norm": "batch", "lr": 0.1, "seed": 1, "state": "diverged", "base": 0.40},
    {"job": 4, "norm": "batch", "lr": 0.5, "seed": 0, "state": "running", "base": 0.50},
    {"job": 5, "norm": "none", "lr": 0.5, "seed": 0, "state": "failed", "base": 0.05},
)
DLN_RUNS = (
    {"job": 0, "norm": "none", "seed": 0, "base": 1.0},
    {"job": 1, "norm": "none", "seed": 1, "base": 2.0},
    {"job": 2, "norm": "batch", "seed": 0, "base": 3.0},
    {"job": 3, "norm": "batch", "seed": 1, "base": 4.0},
)
NORMS_RUNS = tuple(
    {"job": i, "norm": norm, "base": round(0.1 * (i + 1), 10)}
    for i, norm in enumerate(("none", "batch", "noisy_batch", "l1", "l2", "linf"))
)
SWEEP_DIR_OVERRIDE = "hydra.sweep.dir=multirun/test"


def config(model: str, norm: str, lr: float, seed: int, experiment: str | None = None) -> dict:
    """A composed config shaped like smoothbench.config.TrainConfig (the fields analysis reads)."""
    return {
        "seed": seed,
        "steps": STEPS,
        "batch_size": 8,
        "eval_every": 3,
        "checkpoint_every": 3,
        "device": "cpu",
        "experiment": experiment,
        "scale": "smoke",
        "model": {
            "name": model,
            "width": 0.25,
            "init": "xavier",
            "shortcut": True,
            "depth": 25,
            "dim": 10,
        },
        "norm": {
            "name": norm,
            "eps": 1e-5,
            "momentum": 0.1,
            "groups": 32,
            "noise": {"n_mu": 0.5, "n_sigma": 1.25, "r_mu": 0.1, "r_sigma": 0.1},
        },
        "data": {"name": "digits", "root": None, "download": False, "augment": False},
        "optim": {
            "name": "sgd",
            "lr": lr,
            "momentum": 0.0,
            "weight_decay": 0.0,
            "schedule": "constant",
            "betas": [0.9, 0.999],
        },
        "probes": {
            "activations": {"layers": list(ACT_LAYERS)},
            "ics": {"layers": list(ICS_LAYERS)},
        },
        "logger": {
            "name": "local",
            "project": "smoothbench",
            "entity": None,
            "group": None,
            "job_type": None,
            "tags": [],
            "mode": "offline",
        },
    }


def write_run(
    run_dir: str | Path,
    *,
    config: dict,
    records: list[dict[str, Any]],
    status: dict[str, Any] | None,
    overrides: list[str] | None = None,
    torn_tail: str | None = None,
    job_name: str = "train",
    job_num: int = 0,
    hydra_overrides: tuple[str, ...] = (SWEEP_DIR_OVERRIDE, "hydra.mode=MULTIRUN"),
) -> Path:
    """One run dir: .hydra/{config,overrides,hydra}.yaml, metrics.jsonl, status.json (if given)."""
    run_dir = Path(run_dir)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    overrides = list(overrides or [])
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    hydra = {
        "hydra": {
            "mode": "MULTIRUN",
            "overrides": {"hydra": list(hydra_overrides), "task": overrides},
            "job": {
                "name": job_name,
                "num": job_num,
                "id": str(job_num),
                "override_dirname": ",".join(sorted(overrides)),
            },
            # an interpolation that only resolves inside Hydra: the reader must cope
            "run": {"dir": "outputs/${now:%Y-%m-%d}"},
        }
    }
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra, sort_keys=False))
    with open(run_dir / "metrics.jsonl", "w") as f:
        for record in records:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
        if torn_tail is not None:
            f.write(torn_tail)
    if status is not None:
        (run_dir / "status.json").write_text(json.dumps(status))
    return run_dir


def vgg_record(base: float, step: int) -> dict[str, Any]:
    """Everything a VGG run logs at `step`, as closed forms of base and step."""
    record: dict[str, Any] = {
        "step": step,
        "epoch": step / 4,
        "train/loss": 2.0 - base - 0.1 * step,
        "train/acc": base + 0.01 * step,
        "train/lr": None,  # filled by the caller
        "grad/norm": 1.0 + base,
    }
    if step in EVAL_STEPS:
        record["test/loss"] = 2.5 - base - 0.1 * step
        record["test/acc"] = base + 0.02 * step
    if step in PROBE_STEPS:
        for k in ACT_LAYERS:
            center, width = base + step + k, 0.1 * k
            record[f"act/layer{k}/quantiles"] = [center + width * d for d in QUANTILE_OFFSETS]
            if step > PROBE_STEPS[0]:
                record[f"act/layer{k}/mean_change"] = base + 0.001 * k * step
                record[f"act/layer{k}/var_change"] = 2 * (base + 0.001 * k * step)
        for k in ICS_LAYERS:
            record[f"ics/layer{k}/l2"] = base + 0.01 * k + 0.1 * step
            record[f"ics/layer{k}/cosine"] = 1.0 - base - 0.01 * step
        loss = 2.0 - base - 0.1 * step
        record["landscape/step_sizes"] = [0.05, 0.1, 0.2]
        record["landscape/losses"] = [loss + d for d in LANDSCAPE_OFFSETS]
        record["landscape/grad_diffs"] = [base, base + 0.5, base + 1.0]
        record["landscape/loss_variation"] = max(LANDSCAPE_OFFSETS) - min(LANDSCAPE_OFFSETS)
        record["landscape/grad_pred_min"] = base + 0.1 * step
        record["landscape/grad_pred_max"] = base + 0.1 * step + 1.0
        record["landscape/beta_smoothness"] = 10 * base + step
        record["landscape/grad_norm"] = 1.0 + base
        record["hessian/lambda_max"] = 10 * base + step
        record["hessian/eigenvalues"] = [10 * base + step, (10 * base + step) / 2]
        record["hessian/trace"] = 100 * base + step
        record["hessian/trace_stderr"] = 0.5 + 0.1 * step
        record["hessian/density_grid"] = list(DENSITY_GRID)
        record["hessian/density"] = [v * (1 + step) for v in DENSITY_SHAPE]
        record["hessian/bn_mode"] = "train"
    return record


def write_surfaces(run_dir: Path, with_line: bool) -> None:
    """plane.npz: losses[i, j] = 1 + α_i² + 2 β_j² (4×3); line.npz: 1 + α² on 5 points."""
    surfaces = run_dir / "surfaces"
    surfaces.mkdir(exist_ok=True)
    alphas, betas = np.linspace(-1, 1, 4), np.linspace(-1, 1, 3)
    losses = 1 + alphas[:, None] ** 2 + 2 * betas[None, :] ** 2
    np.savez(
        surfaces / "plane.npz",
        alphas=alphas,
        betas=betas,
        losses=losses,
        accs=1 - losses / 10,
        settings=np.array(json.dumps({"bn_mode": "eval"})),
    )
    # a tile of an unfinished split computation: not a surface of its own
    np.savez(surfaces / "plane.tile0of2.npz", alphas=alphas[:2], betas=betas, losses=losses[:2])
    if with_line:
        # 1-D files hold the coordinate in `alphas`, as smoothbench-surface writes them
        coords = np.linspace(-1, 1, 5)
        np.savez(
            surfaces / "line.npz",
            alphas=coords,
            losses=1 + coords**2,
            accs=1 - coords**2 / 2,
            settings=np.array(json.dumps({"bn_mode": "train"})),
        )


def make_vgg_sweep(root: str | Path, experiment: str = "fig1", name: str = "vgg_sweep") -> Path:
    """The six-run VGG sweep of the module docstring (preset `experiment`); returns the sweep
    dir."""
    sweep = Path(root) / name
    for run in VGG_RUNS:
        base, lr = run["base"], run["lr"]
        last = {"finished": STEPS - 1, "diverged": 4, "running": 3, "failed": 1}[run["state"]]
        records = []
        for step in range(last + 1):
            record = vgg_record(base, step)
            record["train/lr"] = lr
            records.append(record)
        if run["state"] == "finished":
            # the final eval line the trainer adds after the last update
            records.append(
                {"step": STEPS, "epoch": STEPS / 4, "test/acc": base + 0.5, "test/loss": 1.0 - base}
            )
        if run["state"] == "diverged":
            records[-1]["train/loss"] = None  # JsonlSink writes NaN as null
        status = {
            "finished": {"state": "finished", "step": STEPS, "reason": None},
            "diverged": {"state": "diverged", "step": 4, "reason": "non-finite loss at step 4"},
            "running": {"state": "running", "step": 3, "reason": None},
            "failed": {"state": "failed", "step": 2, "reason": "RuntimeError: out of memory"},
        }[run["state"]]
        overrides = [f"norm={run['norm']}", f"optim.lr={lr}", f"seed={run['seed']}"]
        run_dir = write_run(
            sweep / str(run["job"]),
            config=config("vgg11", run["norm"], lr, run["seed"], experiment=experiment),
            records=records,
            status=status,
            overrides=overrides,
            job_num=run["job"],
            torn_tail='{"step":4,"epoch":1.0,"train/loss":1.2,"train/a'
            if run["state"] == "running"
            else None,
        )
        if run["state"] == "finished" and run["norm"] == "none" and run["seed"] == 0:
            write_surfaces(run_dir, with_line=True)
        elif run["state"] == "finished" and run["norm"] == "batch":
            write_surfaces(run_dir, with_line=False)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    return sweep


def dln_record(base: float, step: int) -> dict[str, Any]:
    """A DLN line: a loss and, at probe steps, the landscape (losses span decades)."""
    record: dict[str, Any] = {
        "step": step,
        "epoch": float(step),
        "train/loss": base * 10**-step,
        "train/lr": 1e-6,
    }
    if step in PROBE_STEPS:
        loss = base * 10**-step
        record["landscape/losses"] = [loss, loss * 2, loss * 0.5, loss * 4]
        record["landscape/loss_variation"] = loss * 3.5
        record["landscape/grad_pred_min"] = base * 0.01
        record["landscape/grad_pred_max"] = base * 0.1
        record["landscape/beta_smoothness"] = base * 100 + step
        for k in (9, 17):
            record[f"ics/layer{k}/l2"] = base * k
            record[f"ics/layer{k}/cosine"] = 0.5 - 0.1 * base
    return record


def make_dln_sweep(root: str | Path) -> Path:
    """Four finished DLN runs forming a full grid norm={none,batch} × seed={0,1}."""
    sweep = Path(root) / "dln_sweep"
    for run in DLN_RUNS:
        records = [dln_record(run["base"], step) for step in range(STEPS)]
        write_run(
            sweep / str(run["job"]),
            config=config("dln", run["norm"], 1e-6, run["seed"], experiment="fig10"),
            records=records,
            status={"state": "finished", "step": STEPS, "reason": None},
            overrides=["experiment=fig10", f"norm={run['norm']}", f"seed={run['seed']}"],
            job_num=run["job"],
        )
    return sweep


def make_norms_sweep(
    root: str | Path, experiment: str = "lp", name: str = "norms_sweep", probes: dict | None = None
) -> Path:
    """Six finished VGG runs at lr 0.1, one per normalization (NORMS_RUNS), of preset
    `experiment`; `probes` replaces the probes config of every other run (bookkeeping that
    differs between runs without changing them)."""
    sweep = Path(root) / name
    for run in NORMS_RUNS:
        records = []
        for step in range(STEPS):
            record = vgg_record(run["base"], step)
            record["train/lr"] = 0.1
            records.append(record)
        write_run(
            sweep / str(run["job"]),
            config=_with_probes(
                config("vgg11", run["norm"], 0.1, 0, experiment=experiment),
                probes if run["job"] % 2 else None,
            ),
            records=records,
            status={"state": "finished", "step": STEPS, "reason": None},
            overrides=[f"experiment={experiment}", f"norm={run['norm']}"],
            job_num=run["job"],
        )
    return sweep


def _with_probes(cfg: dict, probes: dict | None) -> dict:
    if probes is not None:
        cfg = {**cfg, "probes": probes, "keep_checkpoints": [STEPS]}
    return cfg
