"""Load finished (and unfinished) runs into tidy pandas frames.

A run is a directory written by `smoothbench-train` (see docs/architecture.md, "The run directory"):
`.hydra/config.yaml`, `metrics.jsonl`, `status.json`, `provenance.json` (`RunRecord.provenance`),
optionally `surfaces/*.npz`. A sweep is a directory holding numbered run directories. The same
frames can be built from a W&B project, whose runs mirror the scalar metrics.

The tidy frame (`load_runs`) has one row per (run, step, metric):

    run, run_dir, status, step, epoch, metric, value, <config columns...>

`run` is a stable id (the run dir relative to the loaded runs' common root, or the W&B id);
`run`, `run_dir`, `status` and `metric` are categoricals (millions of rows, few values).

`value` holds numbers as floats (JSON null, which the writer uses for NaN, becomes NaN);
list-valued metrics (quantiles, histograms, eigenvalues, ...) stay Python lists and strings
stay strings, so `value` is float64 when every loaded metric is a number and object otherwise.
Config columns are the flattened dotted keys (`norm.name`, `optim.lr`, ...) that vary across
the loaded runs, plus always `model.name`, `norm.name`, `optim.lr` and `seed`, and the context
keys (`experiment`, `scale`, `steps`, `model.width`, `data.name`, `device`) the runs record;
list-valued config entries become tuples so that frames can be grouped by them.
"""

from __future__ import annotations

import contextvars
import fnmatch
import glob
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smoothbench.provenance import read_provenance

log = logging.getLogger(__name__)

STATES = ("running", "finished", "diverged", "failed", "unknown")
# Config columns every frame carries, varying or not: the axes of every figure.
ALWAYS_COLUMNS = ("model.name", "norm.name", "optim.lr", "seed")
# Config columns carried whenever a run records them, varying or not: what a figure's provenance
# footer and the report's banner state (scale, budget, width, data, device).
CONTEXT_COLUMNS = ("experiment", "scale", "steps", "model.width", "data.name", "device")
TIDY_COLUMNS = ("run", "run_dir", "status", "step", "epoch", "metric", "value")
# W&B run states -> ours, for runs whose summary does not carry our own final state.
WANDB_STATES = {
    "finished": "finished",
    "running": "running",
    "crashed": "failed",
    "failed": "failed",
    "killed": "failed",
    "preempted": "running",
    "pending": "running",
}


class MissingMetricError(KeyError):
    """The loaded runs do not record a metric a figure needs."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass
class RunRecord:
    """One run as read from disk (or W&B): identity, state, flat config and metric lines."""

    run: str
    run_dir: str
    status: str
    status_step: int | None = None
    reason: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    overrides: list[str] | None = None
    hydra: dict[str, Any] | None = None
    # provenance.json: threads, device, git commit and package versions of the run's start
    provenance: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------
# finding and reading run directories


def _is_run_dir(path: Path) -> bool:
    return (
        (path / "metrics.jsonl").is_file()
        or (path / "status.json").is_file()
        or (path / ".hydra" / "config.yaml").is_file()
    )


def _natural_key(path: Path) -> list[Any]:
    # "2" before "10": sweeps number their jobs
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def _run_dirs_under(path: Path) -> list[Path]:
    if _is_run_dir(path):
        return [path]
    found = []
    for child in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found += _run_dirs_under(child)
    return found


def find_run_dirs(paths_or_globs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Run directories named by run dirs, sweep dirs (searched recursively) or glob patterns.

    Raises FileNotFoundError for a path or pattern that names nothing, and ValueError when
    nothing found is a run directory.
    """
    if isinstance(paths_or_globs, (str, os.PathLike)):
        paths_or_globs = [paths_or_globs]
    found: list[Path] = []
    for item in paths_or_globs:
        text = os.fspath(item)
        matches = sorted(glob.glob(text, recursive=True)) if glob.has_magic(text) else [text]
        matches = [m for m in matches if os.path.isdir(m)]
        if not matches:
            raise FileNotFoundError(f"no directory matches {text!r}")
        for match in matches:
            found += _run_dirs_under(Path(match))
    unique = sorted({p.resolve() for p in found}, key=_natural_key)
    if not unique:
        raise ValueError(
            f"no run directories (with metrics.jsonl, status.json or .hydra/config.yaml) "
            f"under {[os.fspath(p) for p in paths_or_globs]}"
        )
    return unique


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON objects of a metrics.jsonl file, one per line.

    The last line is dropped when it does not parse (a writer killed mid-line); a bad line
    anywhere else is skipped with a warning naming its line number.
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number != len(lines):
                warnings.warn(f"{path}: line {number} is not JSON; skipped", stacklevel=2)
            continue
        if not isinstance(record, dict) or "step" not in record:
            warnings.warn(f"{path}: line {number} has no 'step'; skipped", stacklevel=2)
            continue
        records.append(record)
    return records


def read_status(run_dir: str | os.PathLike) -> tuple[str, int | None, str | None]:
    """(state, step, reason) from status.json; state "unknown" when it is absent or unreadable."""
    path = Path(run_dir) / "status.json"
    try:
        status = json.loads(path.read_text())
        state = status["state"]
        if not isinstance(state, str):
            raise TypeError(state)
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown", None, None
    step = status.get("step")
    return state, step if isinstance(step, int) else None, status.get("reason")


def _load_yaml(path: Path, resolve: bool = True) -> Any:
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path)
    try:
        return OmegaConf.to_container(cfg, resolve=resolve)
    except Exception:  # interpolations that need Hydra's runtime (${hydra:...}, ${now:...})
        return OmegaConf.to_container(cfg, resolve=False)


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"dotted.key": value}; lists become tuples (hashable, groupable)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{name}."))
        elif isinstance(value, list):
            flat[name] = _freeze(value)
        else:
            flat[name] = value
    return flat


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


class DamagedRunError(ValueError):
    """A run dir whose record cannot be read (one line: the run dir and the damage)."""


# Whether a damaged run stops the reading (the commands' --strict) or is skipped with a line,
# and the damage already reported (a command that reads the runs twice says it once)
_DAMAGE_POLICY: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "damage_policy", default=None
)


@contextmanager
def damaged_runs(strict: bool) -> Iterator[None]:
    """Within this block `read_runs` raises DamagedRunError on a damaged run (`strict`), or
    skips it with one warning line naming the run dir and the damage, once (the default)."""
    token = _DAMAGE_POLICY.set({"strict": strict, "reported": set()})
    try:
        yield
    finally:
        _DAMAGE_POLICY.reset(token)


def _skip_damaged(err: DamagedRunError) -> None:
    policy = _DAMAGE_POLICY.get() or {"strict": False, "reported": set()}
    if policy["strict"]:
        raise err
    if str(err) not in policy["reported"]:
        policy["reported"].add(str(err))
        # one line on stderr (logging's last-resort handler when none is configured)
        log.warning("skipped a damaged run: %s", err)


def _read_hydra_file(run_dir: Path, name: str, resolve: bool) -> Any:
    """`.hydra/<name>` as plain data; None when absent; DamagedRunError when it does not parse."""
    path = run_dir / ".hydra" / name
    if not path.exists():
        return None
    try:
        return _load_yaml(path, resolve=resolve)
    except Exception as err:
        detail = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        raise DamagedRunError(
            f"run dir {str(run_dir)!r}: .hydra/{name} cannot be read "
            f"({type(err).__name__}{': ' + detail[:120] if detail else ''})"
        ) from None


def read_run(run_dir: str | os.PathLike, run_id: str | None = None) -> RunRecord:
    """Everything a run directory holds except checkpoints and surfaces.

    Raises DamagedRunError when its `.hydra/` files do not parse (or the config is no mapping).
    """
    run_dir = Path(run_dir)
    state, step, reason = read_status(run_dir)
    raw = _read_hydra_file(run_dir, "config.yaml", resolve=True)
    if raw is not None and not isinstance(raw, Mapping):
        raise DamagedRunError(
            f"run dir {str(run_dir)!r}: .hydra/config.yaml holds a {type(raw).__name__}, "
            "not a config"
        )
    config = flatten_config(raw or {})
    overrides = _read_hydra_file(run_dir, "overrides.yaml", resolve=False)
    hydra = _read_hydra_file(run_dir, "hydra.yaml", resolve=False)
    return RunRecord(
        run=run_id or run_dir.name,
        run_dir=str(run_dir),
        status=state,
        status_step=step,
        reason=reason,
        config=config,
        records=read_metrics(run_dir / "metrics.jsonl"),
        overrides=[str(o) for o in overrides] if isinstance(overrides, list) else None,
        hydra=(hydra or {}).get("hydra") if isinstance(hydra, dict) else None,
        provenance=read_provenance(run_dir),
    )


def _run_ids(run_dirs: Sequence[Path]) -> list[str]:
    # ids relative to the common root keep sweeps apart; one run is named by its own dir
    if len(run_dirs) == 1:
        return [run_dirs[0].name]
    root = Path(os.path.commonpath([str(p) for p in run_dirs]))
    return [str(p.relative_to(root)) for p in run_dirs]


def _check_status(status: str | Iterable[str] | None) -> set[str] | None:
    if status is None:
        return None
    wanted = {status} if isinstance(status, str) else set(status)
    bad = sorted(wanted - set(STATES))
    if bad:
        raise ValueError(f"unknown run status {bad[0]!r}; choose from: {', '.join(STATES)}")
    return wanted


def read_runs(
    paths_or_globs: str | os.PathLike | Iterable[str | os.PathLike],
    status: str | Iterable[str] | None = None,
) -> list[RunRecord]:
    """Every run under the given run dirs, sweep dirs or globs, optionally only some states.

    A damaged run (DamagedRunError) is skipped with a warning line, or raised inside
    `damaged_runs(strict=True)`.
    """
    wanted = _check_status(status)
    run_dirs = find_run_dirs(paths_or_globs)
    runs = []
    for run_dir, run_id in zip(run_dirs, _run_ids(run_dirs), strict=True):
        try:
            runs.append(read_run(run_dir, run_id=run_id))
        except DamagedRunError as err:
            _skip_damaged(err)
    return [r for r in runs if wanted is None or r.status in wanted]


# ---------------------------------------------------------------------------------------------
# frames


def _hashable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def config_columns(runs: Sequence[RunRecord]) -> list[str]:
    """Dotted config keys that differ between runs, plus the ALWAYS_COLUMNS and the
    CONTEXT_COLUMNS some run records, in a stable order."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.config if k not in keys]
    varying = [
        k
        for k in keys
        if len({_hashable(r.config[k]) if k in r.config else "<absent>" for r in runs}) > 1
    ]
    fixed = list(ALWAYS_COLUMNS) + [k for k in CONTEXT_COLUMNS if k in keys]
    return fixed + [k for k in varying if k not in fixed]


def _metric_matcher(metrics: str | Iterable[str] | None):
    if metrics is None:
        return lambda name: True
    patterns = [metrics] if isinstance(metrics, str) else list(metrics)
    regex = re.compile("|".join(fnmatch.translate(p) for p in patterns))
    return lambda name: regex.match(name) is not None


def _scalar(value: Any) -> Any:
    # the writer stores NaN as null; keep lists and strings as they are
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return value


def tidy_frame(
    runs: Sequence[RunRecord], metrics: str | Iterable[str] | None = None
) -> pd.DataFrame:
    """The tidy (run, step, metric) frame of already-read runs; see the module docstring.

    `run`, `run_dir`, `status` and `metric` are categoricals: a paper-scale sweep has millions
    of rows and a handful of distinct values in each.
    """
    wanted = _metric_matcher(metrics)
    columns = config_columns(runs)
    owners, steps, epochs, names, values = [], [], [], [], []
    for index, run in enumerate(runs):
        for record in run.records:
            step, epoch = int(record["step"]), record.get("epoch")
            epoch = math.nan if epoch is None else float(epoch)
            for name, value in record.items():
                if name in ("step", "epoch") or not wanted(name):
                    continue
                owners.append(index)
                steps.append(step)
                epochs.append(epoch)
                names.append(name)
                values.append(_scalar(value))
    owner = np.asarray(owners, dtype=np.int64)
    statuses = list(dict.fromkeys(r.status for r in runs))
    status_codes = np.asarray([statuses.index(r.status) for r in runs], dtype=np.int64)
    frame = pd.DataFrame(
        {
            "run": pd.Categorical.from_codes(owner, categories=[r.run for r in runs]),
            "run_dir": pd.Categorical.from_codes(owner, categories=[r.run_dir for r in runs]),
            "status": pd.Categorical.from_codes(status_codes[owner], categories=statuses),
            "step": np.asarray(steps, dtype=np.int64),
            "epoch": np.asarray(epochs, dtype=np.float64),
            "metric": pd.Categorical(names),
            "value": np.asarray(values, dtype=np.float64)
            if all(isinstance(v, float) for v in values)
            else _object_array(values),
        }
    )
    for column in columns:
        per_run = [r.config.get(column) for r in runs]
        frame[column] = _config_array(per_run)[owner]
    return frame


def _object_array(values: Sequence[Any]) -> np.ndarray:
    # np.asarray would turn equal-length lists into a 2-D array; keep one object per row
    return np.fromiter(values, dtype=object, count=len(values))


def _config_array(per_run: list[Any]) -> np.ndarray:
    """One value per run, numeric when every run's value is a number (bools stay objects)."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in per_run):
        kind = np.int64 if all(isinstance(v, int) for v in per_run) else np.float64
        return np.asarray(per_run, dtype=kind)
    return _object_array(per_run)


def load_runs(
    paths_or_globs: str | os.PathLike | Iterable[str | os.PathLike],
    status: str | Iterable[str] | None = None,
    metrics: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """One row per (run, step, metric) for every run under the given dirs or globs.

    Args:
        paths_or_globs: run dirs, sweep dirs (searched for run dirs) or glob patterns.
        status: keep only runs in these states (running, finished, diverged, failed, unknown).
            Runs without a readable status.json have status "unknown".
        metrics: keep only these metric names (fnmatch patterns allowed, e.g. "act/*/quantiles").

    Returns:
        The tidy frame described in the module docstring. Partial, diverged and failed runs are
        included with their status; a torn last line of metrics.jsonl is dropped.
    """
    return tidy_frame(read_runs(paths_or_globs, status=status), metrics=metrics)


def run_table(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run: run, run_dir, status, reason, final_step, final train/test acc and loss,
    then the config columns. Runs without any metric line are included (final values NaN)."""
    columns = config_columns(runs)
    rows = []
    for run in runs:
        last: dict[str, float] = {}
        last_step = None
        for record in run.records:
            last_step = int(record["step"])
            for name in ("train/acc", "test/acc", "train/loss", "test/loss"):
                if name in record and isinstance(_scalar(record[name]), float):
                    last[name] = _scalar(record[name])
        final_step = run.status_step if run.status_step is not None else last_step
        row = {
            "run": run.run,
            "run_dir": run.run_dir,
            "status": run.status,
            "reason": run.reason,
            "final_step": final_step,
            "final_train_acc": last.get("train/acc", math.nan),
            "final_test_acc": last.get("test/acc", math.nan),
            "final_train_loss": last.get("train/loss", math.nan),
            "final_test_loss": last.get("test/loss", math.nan),
        }
        row.update({c: run.config.get(c) for c in columns})
        rows.append(row)
    return pd.DataFrame(rows)


def load_run_table(
    paths_or_globs: str | os.PathLike | Iterable[str | os.PathLike],
    status: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """`run_table` of every run under the given dirs or globs (see `load_runs` for the args)."""
    return run_table(read_runs(paths_or_globs, status=status))


RUN_TABLE_COLUMNS = (
    "run",
    "run_dir",
    "status",
    "reason",
    "final_step",
    "final_train_acc",
    "final_test_acc",
    "final_train_loss",
    "final_test_loss",
)
SURFACE_COLUMNS = (
    "name",
    "path",
    "kind",
    "coords",
    "alphas",
    "betas",
    "losses",
    "accs",
    "settings",
)
_NOT_CONFIG = frozenset(TIDY_COLUMNS) | frozenset(RUN_TABLE_COLUMNS) | frozenset(SURFACE_COLUMNS)


def config_keys(df: pd.DataFrame) -> list[str]:
    """The config columns of a tidy frame, run table or surface frame, in their order."""
    return [c for c in df.columns if c not in _NOT_CONFIG and not str(c).startswith("_")]


def require_metrics(df: pd.DataFrame, metrics: str | Iterable[str], what: str = "") -> None:
    """Raise MissingMetricError naming the first metric that no loaded run records."""
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    present = set(df["metric"].unique()) if "metric" in df else set()
    for name in names:
        if name not in present:
            where = f" {what}" if what else ""
            raise MissingMetricError(f"missing metric {name!r}: no loaded run{where} records it")


def metric_frame(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of one metric (raises MissingMetricError if absent); the last value per (run, step)."""
    require_metrics(df, metric)
    rows = df[df["metric"] == metric]
    return rows.drop_duplicates(["run", "step"], keep="last").sort_values(["run", "step"])


def metric_arrays(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of a list-valued metric, with `value` as numpy float arrays (None -> NaN)."""
    rows = metric_frame(df, metric).copy()
    rows["value"] = [
        np.asarray([math.nan if v is None else v for v in np.atleast_1d(value)], dtype=float)
        for value in rows["value"]
    ]
    return rows


def wide_frame(df: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Scalar metrics as columns: one row per (run, step), config columns kept."""
    rows = df if metrics is None else df[df["metric"].isin(list(metrics))]
    index = ["run", "step"]
    wide = rows.pivot_table(
        index=index, columns="metric", values="value", aggfunc="last", observed=True
    )
    wide.columns.name = None
    info = rows.drop(columns=["metric", "value", "epoch"]).drop_duplicates(index)
    return info.merge(wide.reset_index(), on=index).sort_values(index, ignore_index=True)


def aggregate_seeds(
    frame: pd.DataFrame, by: Sequence[str], band: str = "minmax", value: str = "value"
) -> pd.DataFrame:
    """Mean over runs per (condition, step), with a band.

    Args:
        frame: rows with `step`, the `by` columns and a numeric `value` column.
        by: the columns that define a condition (e.g. ["norm.name", "optim.lr"]); every run
            sharing them (usually the seeds) is averaged.
        band: "minmax" (lo, hi = min, max over runs) or "std" (mean ± sample std; 0 for one run).

    Returns:
        columns by + [step, mean, lo, hi, n]; non-finite values are ignored.
    """
    if band not in ("minmax", "std"):
        raise ValueError(f"unknown band {band!r}; choose one of: minmax, std")
    values = frame[list(by) + ["step"]].copy()
    numbers = pd.to_numeric(frame[value], errors="coerce").astype(float)
    values[value] = numbers.where(np.isfinite(numbers))
    grouped = values.groupby(list(by) + ["step"], dropna=False, sort=True)[value]
    out = grouped.agg(mean="mean", min="min", max="max", std="std", n="count").reset_index()
    if band == "minmax":
        out["lo"], out["hi"] = out["min"], out["max"]
    else:
        spread = out["std"].fillna(0.0)
        out["lo"], out["hi"] = out["mean"] - spread, out["mean"] + spread
    return out.drop(columns=["min", "max", "std"])


# ---------------------------------------------------------------------------------------------
# surfaces (post hoc, written by smoothbench-surface into <run>/surfaces/<name>.npz)


def read_surface(path: str | os.PathLike) -> dict[str, Any]:
    """One surface file (as `smoothbench-surface` writes it): kind ("1d" or "2d"), coords (1-D:
    the `coords` array, else `alphas`), alphas/betas (2-D, losses[i, j] at (alphas[i],
    betas[j])), losses, accs (None when absent) and settings (the stored JSON as a dict; empty
    when absent or stored in a form that would need unpickling)."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        out: dict[str, Any] = {"name": path.stem, "path": str(path)}
        for key in ("coords", "alphas", "betas", "losses", "accs"):
            out[key] = np.asarray(data[key], dtype=float) if key in keys else None
        settings: Any = {}
        if "settings" in keys:
            try:
                settings = data["settings"]
            except ValueError:
                settings = {}
    out["settings"] = _settings_dict(settings)
    if out["losses"] is None:
        raise ValueError(f"{path}: no 'losses' array; a surface file holds losses and accs")
    out["kind"] = "2d" if out["losses"].ndim == 2 else "1d"
    if out["kind"] == "1d" and out["coords"] is None:
        out["coords"] = out["alphas"]
    return out


def _settings_dict(settings: Any) -> dict[str, Any]:
    if isinstance(settings, dict):
        return settings
    array = np.asarray(settings)
    if array.dtype.kind in "US" and array.size == 1:
        text = str(array.reshape(()))
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            return {"text": text}
        return parsed if isinstance(parsed, dict) else {"value": parsed}
    return {}


def surface_frame(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per surface file of the given runs, config columns attached."""
    columns = config_columns(runs)
    rows = []
    for run in runs:
        for path in sorted(Path(run.run_dir).glob("surfaces/*.npz")):
            if re.search(r"\.tile\d+of\d+$", path.stem):
                continue  # one tile of a surface computed in parts: only the merged file counts
            surface = read_surface(path)
            row = {"run": run.run, "run_dir": run.run_dir, "status": run.status}
            row.update(surface)
            row.update({c: run.config.get(c) for c in columns})
            rows.append(row)
    return pd.DataFrame(rows)


def load_surfaces(
    paths_or_globs: str | os.PathLike | Iterable[str | os.PathLike],
    status: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """`surface_frame` of every run under the given dirs or globs (see `read_surface`)."""
    return surface_frame(read_runs(paths_or_globs, status=status))


# ---------------------------------------------------------------------------------------------
# the commands that produced the runs

ENTRY_POINTS = {"train": "smoothbench-train", "surface": "smoothbench-surface"}


def run_command(run: RunRecord) -> str | None:
    """The command line that reproduces one run, from its .hydra/ files (None without them).

    `smoothbench-<job name>`, `--multirun` for a sweep job (so hydra.sweep.* overrides apply),
    then the user's hydra.* overrides and the run's own overrides: a sweep job re-run alone.
    """
    import shlex

    if run.overrides is None and run.hydra is None:
        return None
    hydra = run.hydra or {}
    name = (hydra.get("job") or {}).get("name") or "train"
    entry = ENTRY_POINTS.get(name, f"smoothbench-{name}")
    overrides = hydra.get("overrides") or {}
    task = run.overrides if run.overrides is not None else list(overrides.get("task") or [])
    extra = [o for o in overrides.get("hydra") or [] if not str(o).startswith("hydra.mode=")]
    mode = ["--multirun"] if str(hydra.get("mode", "")).endswith("MULTIRUN") else []
    return " ".join([entry] + mode + [shlex.quote(str(o)) for o in list(extra) + list(task)])


def sweep_command(runs: Sequence[RunRecord]) -> str | None:
    """One `--multirun` command for runs that form a full grid over their overrides.

    None when the runs have no .hydra/ files, use different entry points or extra hydra.*
    overrides, or are not the full cartesian product of their override values (then
    `run_command` of each run is the exact record).
    """
    import shlex

    if not runs or any(r.overrides is None or r.hydra is None for r in runs):
        return None
    names = {(r.hydra.get("job") or {}).get("name", "train") for r in runs}
    extras = {
        tuple(
            o
            for o in (r.hydra.get("overrides") or {}).get("hydra") or []
            if not str(o).startswith("hydra.mode=")
        )
        for r in runs
    }
    if len(names) != 1 or len(extras) != 1:
        return None
    values: dict[str, list[str]] = {}
    combos = set()
    for run in runs:
        pairs = [str(o).split("=", 1) for o in run.overrides]
        if any(len(p) != 2 for p in pairs):
            return None
        for key, value in pairs:
            values.setdefault(key, [])
            if value not in values[key]:
                values[key].append(value)
        combos.add(tuple(sorted((k, v) for k, v in pairs)))
    grid = 1
    for options in values.values():
        grid *= len(options)
    if any(len(run.overrides) != len(values) for run in runs) or len(combos) != grid:
        return None
    if grid != len(runs):
        return None
    entry = ENTRY_POINTS.get(names.pop(), "smoothbench-train")
    parts = [entry, "--multirun"] + [shlex.quote(o) for o in extras.pop()]
    parts += [shlex.quote(f"{k}={','.join(v)}") for k, v in values.items()]
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# W&B


def _unwrap_wandb_config(config: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        if str(key).startswith("_") or key == "wandb_version":
            continue
        if isinstance(value, Mapping) and set(value) <= {"value", "desc"} and "value" in value:
            value = value["value"]
        out[key] = _unwrap_wandb_config(value) if isinstance(value, Mapping) else value
    return out


def _wandb_state(run: Any) -> str:
    summary = getattr(run, "summary", None) or {}
    try:
        state = summary.get("state")
    except AttributeError:
        state = None
    if isinstance(state, str) and state in STATES:
        return state  # the final state the training loop wrote (diverged is a W&B "finished")
    return WANDB_STATES.get(str(getattr(run, "state", "")), "unknown")


def wandb_run_records(api_runs: Iterable[Any]) -> list[RunRecord]:
    """Convert W&B public-API run objects into RunRecords (no network beyond what they do).

    Each run needs `.id`, `.config` (a nested dict), `.state`, `.summary` and `.scan_history()`
    (dicts with "step" or "_step" and metric keys). Keys starting with "_" are W&B's own and
    dropped; W&B media (dicts with "_type", e.g. histograms) are dropped as well: the raw arrays
    live only in metrics.jsonl.
    """
    runs = []
    for api_run in api_runs:
        records = []
        for row in api_run.scan_history():
            step = row.get("step", row.get("_step"))
            if step is None:
                continue
            record: dict[str, Any] = {"step": int(step), "epoch": row.get("epoch")}
            for key, value in row.items():
                if key.startswith("_") or key in ("step", "epoch") or value is None:
                    continue
                if isinstance(value, Mapping):
                    continue
                record[key] = value
            records.append(record)
        records.sort(key=lambda r: r["step"])
        path = getattr(api_run, "path", None)
        where = "/".join(path) if isinstance(path, list | tuple) else str(api_run.id)
        runs.append(
            RunRecord(
                run=str(api_run.id),
                run_dir=f"wandb:{where}",
                status=_wandb_state(api_run),
                config=flatten_config(_unwrap_wandb_config(dict(api_run.config or {}))),
                records=records,
            )
        )
    return runs


def load_wandb_runs(
    project: str,
    group: str | None = None,
    api: Any = None,
    metrics: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """The tidy frame of `load_runs` from a W&B project ("entity/project"), one group or all.

    Only what the W&B mirror holds: scalar metrics (list-valued ones stay in metrics.jsonl).
    `api` defaults to `wandb.Api()`.
    """
    if api is None:
        import wandb

        api = wandb.Api()
    filters = {"group": group} if group else {}
    return tidy_frame(wandb_run_records(api.runs(project, filters=filters)), metrics=metrics)
