"""smoothbench-surface: Li et al. loss surfaces of a training run, post hoc on its checkpoints.

    smoothbench-surface run_dir=<run> dims=2                                 # <run>/surfaces/*.npz
    smoothbench-surface -m run_dir=<run> dims=2 tile.index=0,1,2,3 tile.count=4
    smoothbench-surface run_dir=<run> dims=2 merge=true                      # stitch the tiles
    smoothbench-surface run_dir=<run> interpolate_to=<other run or .pt>

The model and the data are rebuilt from the run's own `.hydra/config.yaml`, the weights come from
`checkpoints/last.pt` (or `step_<N>.pt`). The result is one `.npz` in `<run_dir>/surfaces/`,
written atomically and never overwritten unless asked; `load_surface` reads it back. Every
setting that changes the numbers (bn_mode above all, docs/science.md §6) is stored with them.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from smoothbench.build import build_data_from_config, build_model_from_config, loss_fn_for
from smoothbench.checkpoint import CheckpointError, load_checkpoint
from smoothbench.data import DataError
from smoothbench.models import set_noise_step
from smoothbench.surfaces.grid import (
    BN_MODES,
    filter_normalized_direction,
    interpolate_checkpoints,
    loss_surface,
)

CONF_DIR = os.environ.get("SMOOTHBENCH_CONF", str(Path(__file__).resolve().parents[3] / "conf"))
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_RANGE = (-1.0, 1.0)
DEFAULT_INTERPOLATION_RANGE = (-0.5, 1.5)  # both endpoints and a little beyond each
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]*")


class SurfaceError(ValueError):
    """A bad setting or input of smoothbench-surface (one line: what is wrong, what is allowed)."""


USER_ERRORS = (SurfaceError, CheckpointError, DataError)


@dataclass(frozen=True)
class SurfaceSettings:
    """The validated command line of one smoothbench-surface job."""

    run_dir: Path
    step: int | None
    name: str
    dims: int
    range: tuple[float, float]
    points: int
    bn_mode: str
    subset: int
    batch_size: int
    seed: int
    device: str
    tile_index: int
    tile_count: int
    merge: bool
    interpolate_to: Path | None
    overwrite: bool

    @property
    def surfaces_dir(self) -> Path:
        return self.run_dir / "surfaces"

    @property
    def output_path(self) -> Path:
        if self.tile_count > 1 and not self.merge:
            return self.surfaces_dir / f"{self.name}.tile{self.tile_index}of{self.tile_count}.npz"
        return self.surfaces_dir / f"{self.name}.npz"


# --- settings ----------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_int(key: str, value: Any, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise SurfaceError(f"{key}={value!r} is not allowed; use an integer >= {minimum}")
    return value


def _choice(key: str, value: Any, allowed: tuple) -> Any:
    if value not in allowed:
        choices = ", ".join(str(a) for a in allowed)
        raise SurfaceError(f"{key}={value!r} is not allowed; choose one of: {choices}")
    return value


def _coordinate_range(value: Any, interpolate: bool) -> tuple[float, float]:
    if value is None:
        return DEFAULT_INTERPOLATION_RANGE if interpolate else DEFAULT_RANGE
    items = list(value) if OmegaConf.is_list(value) or isinstance(value, list | tuple) else None
    ok = items is not None and len(items) == 2
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in items)
    ok = ok and all(math.isfinite(v) for v in items) and items[0] < items[1]
    if not ok:
        raise SurfaceError(f"range={value!r} is not allowed; use [lo, hi] with finite lo < hi")
    return float(items[0]), float(items[1])


def _tile(value: Any, points: int) -> tuple[int, int]:
    if value is None:
        return 0, 1
    count = _require_int("tile.count", value.get("count"), 1)
    index = value.get("index")
    if not _is_int(index) or not 0 <= index < count:
        raise SurfaceError(f"tile.index={index!r} is not allowed; use 0 .. {count - 1}")
    if count > points:
        raise SurfaceError(f"tile.count={count} is not allowed; the grid has {points} rows")
    return index, count


def default_name(dims: int, bn_mode: str, step: int | None, seed: int, interpolate: bool) -> str:
    kind = "interp" if interpolate else f"{dims}d"
    at = "last" if step is None else f"step{step}"
    return f"{kind}_{bn_mode}_{at}_seed{seed}"


def settings_from_config(cfg: DictConfig) -> SurfaceSettings:
    """Check every value of the `surface` config; raise SurfaceError on the first bad one."""
    if cfg.run_dir is None:
        raise SurfaceError("run_dir is required: run_dir=<a training run directory>")
    run_dir = Path(str(cfg.run_dir))
    if not run_dir.is_dir():
        raise SurfaceError(f"run_dir={str(run_dir)!r} is not a directory")
    step = cfg.step
    if step is not None and (not _is_int(step) or step < 0):
        raise SurfaceError(f"step={step!r} is not allowed; use null (last.pt) or an integer >= 0")
    dims = _choice("dims", cfg.dims if _is_int(cfg.dims) else str(cfg.dims), (1, 2))
    points = _require_int("points", cfg.points, 2)
    bn_mode = _choice("bn_mode", cfg.bn_mode, BN_MODES)
    seed = _require_int("seed", cfg.seed, 0)
    interpolate_to = None if cfg.interpolate_to is None else Path(str(cfg.interpolate_to))
    if interpolate_to is not None and dims != 1:
        raise SurfaceError(f"interpolate_to gives a 1-D line; dims={dims} is not allowed with it")
    device = _choice("device", cfg.device, DEVICES)
    if device == "cuda" and not torch.cuda.is_available():
        raise SurfaceError("device='cuda' is not allowed: no CUDA device; use auto or cpu")
    tile_index, tile_count = _tile(cfg.tile, points)
    name = cfg.name
    if name is None:
        name = default_name(dims, bn_mode, step, seed, interpolate_to is not None)
    elif not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".tile" in name:
        raise SurfaceError(
            f"name={name!r} is not allowed; use letters, digits and . _ = + - (no '.tile')"
        )
    return SurfaceSettings(
        run_dir=run_dir,
        step=step,
        name=name,
        dims=dims,
        range=_coordinate_range(cfg.range, interpolate_to is not None),
        points=points,
        bn_mode=bn_mode,
        subset=_require_int("subset", cfg.subset, 1),
        batch_size=_require_int("batch_size", cfg.batch_size, 1),
        seed=seed,
        device=device,
        tile_index=tile_index,
        tile_count=tile_count,
        merge=bool(cfg.merge),
        interpolate_to=interpolate_to,
        overwrite=bool(cfg.overwrite),
    )


def tile_rows(points: int, index: int, count: int) -> slice:
    """The rows of tile `index` of `count`: contiguous, sizes differing by at most one."""
    start = index * points // count
    return slice(start, (index + 1) * points // count)


# --- files -------------------------------------------------------------------------------------


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise SurfaceError(f"{str(path)!r} exists; pass overwrite=true to replace it")


def save_surface(
    path: Path, arrays: dict[str, np.ndarray], settings: dict[str, Any], overwrite: bool = False
) -> None:
    """Write `arrays` and the JSON `settings` to `path` atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _refuse_existing(path, overwrite)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, settings=np.array(json.dumps(settings)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_surface(path: str | Path) -> dict[str, Any]:
    """Read a surface file: `alphas`, `betas` (None for 1-D), `losses`, `accs` (None without
    class labels) as arrays, with `losses[i, j]` at `(alphas[i], betas[j])`, and `settings`."""
    with np.load(path, allow_pickle=False) as f:
        return {
            "alphas": f["alphas"],
            "betas": f["betas"] if "betas" in f else None,
            "losses": f["losses"],
            "accs": f["accs"] if "accs" in f else None,
            "settings": json.loads(str(f["settings"])),
        }


# --- computing ---------------------------------------------------------------------------------


def resolve_checkpoint(run_dir: Path, step: int | None) -> Path:
    folder = run_dir / "checkpoints"
    path = folder / ("last.pt" if step is None else f"step_{step}.pt")
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("*.pt")) if folder.is_dir() else []
        listed = ", ".join(found) if found else "none"
        raise SurfaceError(
            f"no checkpoint for step={step!r} in {str(folder)!r} (looked for {path.name}); "
            f"found: {listed}"
        )
    return path


# What a run's config must hold for the model and the data to be rebuilt from it.
RUN_CONFIG_KEYS = ("seed", "model.name", "norm.name", "data.name")


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split())  # YAML messages span lines: keep them on one
    return text or type(err).__name__


def _load_run_config(run_dir: Path) -> DictConfig:
    """The run's `.hydra/config.yaml`; a file that is not a training config is one SurfaceError."""
    import yaml
    from omegaconf.errors import OmegaConfBaseException

    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise SurfaceError(
            f"run_dir={str(run_dir)!r} has no .hydra/config.yaml; is it a training run directory?"
        )
    try:
        cfg = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException, UnicodeDecodeError, OSError) as err:
        raise SurfaceError(
            f"{str(path)!r} is not a readable config ({_first_line(err)}); restore it from the "
            "run's checkpoint config or rerun the training"
        ) from None
    missing = [k for k in RUN_CONFIG_KEYS if not _has_key(cfg, k)]
    if missing:
        raise SurfaceError(
            f"{str(path)!r} is not a training config (no {', '.join(missing)}); restore it from "
            "the run's checkpoint config or rerun the training"
        )
    return cfg


def _has_key(cfg: Any, key: str) -> bool:
    if not isinstance(cfg, DictConfig):
        return False
    try:
        return OmegaConf.select(cfg, key, default=None) is not None
    except Exception:  # a scalar where a section belongs (model: 3)
        return False


def _rebuild_run(run_cfg: DictConfig, run_dir: Path):
    """The run's data and a fresh model; a config whose values do not build is a SurfaceError."""
    from omegaconf.errors import OmegaConfBaseException

    path = run_dir / ".hydra" / "config.yaml"
    try:
        data = build_data_from_config(run_cfg)
        torch.manual_seed(int(run_cfg.seed))  # the weights come from the checkpoint
        model = build_model_from_config(run_cfg, num_classes=data.num_classes or run_cfg.model.dim)
    except DataError:
        raise
    except (OmegaConfBaseException, KeyError, TypeError, AttributeError, ValueError) as err:
        raise SurfaceError(
            f"{str(path)!r} does not describe a model and data that can be built "
            f"({_first_line(err)})"
        ) from None
    return data, model


def _load_state(model: torch.nn.Module, payload: dict, path: Path, run_dir: Path) -> dict:
    state = payload["model"]
    own = model.state_dict()
    wrong = sorted(set(own) ^ set(state)) or [
        k for k in own if tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if wrong:
        raise SurfaceError(
            f"checkpoint {str(path)!r} does not fit the model of run_dir={str(run_dir)!r} "
            f"(first mismatches: {', '.join(wrong[:3])})"
        )
    return state


def _interpolation_target(path: Path) -> Path:
    if path.is_dir():
        return resolve_checkpoint(path, None)
    if not path.is_file():
        raise SurfaceError(f"interpolate_to={str(path)!r} is neither a run directory nor a file")
    return path


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def compute_surface(s: SurfaceSettings) -> Path:
    """Compute the surface (or this job's tile of it) and write it; returns the file written."""
    out = s.output_path
    _refuse_existing(out, s.overwrite)  # before the work, not only after it
    run_cfg = _load_run_config(s.run_dir)
    checkpoint = resolve_checkpoint(s.run_dir, s.step)
    device = _resolve_device(s.device)

    data, model = _rebuild_run(run_cfg, s.run_dir)
    # weights onto the CPU model first, whatever device wrote them (a CUDA run, a CPU-only host)
    payload = load_checkpoint(checkpoint, map_location="cpu")
    model.load_state_dict(_load_state(model, payload, checkpoint, s.run_dir))
    model.to(device)
    set_noise_step(model, payload["step"])  # noisy BN (bn_mode=train): one fixed noise draw
    loss_fn = loss_fn_for(run_cfg)
    inputs, targets = data.fixed_subset(s.subset, seed=s.seed)
    inputs, targets = inputs.to(device), targets.to(device)

    alphas = np.linspace(*s.range, s.points)
    rows = tile_rows(s.points, s.tile_index, s.tile_count)
    settings: dict[str, Any] = {
        "kind": "interpolation" if s.interpolate_to else "directions",
        "run_dir": str(s.run_dir.resolve()),
        "checkpoint": str(checkpoint.resolve()),
        "step": int(payload["step"]),
        "requested_step": s.step,
        "model": OmegaConf.select(run_cfg, "model.name"),
        "norm": OmegaConf.select(run_cfg, "norm.name"),
        "data": OmegaConf.select(run_cfg, "data.name"),
        "dims": s.dims,
        "range": list(s.range),
        "points": s.points,
        "bn_mode": s.bn_mode,
        "subset": len(inputs),
        "batch_size": s.batch_size,
        "seed": s.seed,
        "interpolate_to": None,
        "interpolate_to_step": None,
        "tile": None,
    }
    arrays = {"alphas": alphas[rows]}
    if s.interpolate_to is not None:
        other_path = _interpolation_target(s.interpolate_to)
        other = load_checkpoint(other_path, map_location="cpu")
        other_state = _load_state(model, other, other_path, s.run_dir)
        settings["interpolate_to"] = str(other_path.resolve())
        settings["interpolate_to_step"] = int(other["step"])
        losses, accs = interpolate_checkpoints(
            model, loss_fn, (inputs, targets), payload["model"], other_state, alphas[rows],
            bn_mode=s.bn_mode, batch_size=s.batch_size,
        )  # fmt: skip
    else:
        # A CPU generator: the same directions on every device and in every tile.
        generator = torch.Generator().manual_seed(s.seed)
        directions = [filter_normalized_direction(model, generator) for _ in range(s.dims)]
        coords = alphas[rows] if s.dims == 1 else (alphas[rows], alphas)
        if s.dims == 2:
            arrays["betas"] = alphas
        losses, accs = loss_surface(
            model, loss_fn, (inputs, targets), directions, coords,
            bn_mode=s.bn_mode, batch_size=s.batch_size,
        )  # fmt: skip
    arrays["losses"] = losses
    if accs is not None:
        arrays["accs"] = accs
    settings["accuracy"] = accs is not None
    if s.tile_count > 1:
        settings["tile"] = {
            "index": s.tile_index, "count": s.tile_count, "start": rows.start, "stop": rows.stop
        }  # fmt: skip
    save_surface(out, arrays, settings, overwrite=s.overwrite)
    return out


def merge_tiles(s: SurfaceSettings) -> Path:
    """Stitch `<name>.tile<i>of<n>.npz`, i = 0..n-1, into `<name>.npz`; refuse gaps or
    disagreements. n is `tile.count` when given (> 1), else the one split found on disk."""
    out = s.output_path
    _refuse_existing(out, s.overwrite)
    pattern = re.compile(rf"{re.escape(s.name)}\.tile(\d+)of(\d+)\.npz")
    found = {}
    if s.surfaces_dir.is_dir():
        for path in s.surfaces_dir.iterdir():
            match = pattern.fullmatch(path.name)
            if match:
                found[int(match[1]), int(match[2])] = path
    counts = sorted({n for _, n in found})
    where = f"{s.name}.tile*of*.npz in {str(s.surfaces_dir)!r}"
    if s.tile_count > 1:
        count = s.tile_count
    elif len(counts) == 1:
        count = counts[0]
    elif not counts:
        raise SurfaceError(f"merge=true found no tiles {where}")
    else:
        listed = ", ".join(map(str, counts))
        raise SurfaceError(f"{where} come from several splits ({listed}); pick one: tile.count=N")
    missing = [i for i in range(count) if (i, count) not in found]
    if missing:
        listed = ", ".join(map(str, missing))
        raise SurfaceError(f"cannot merge: tile(s) {listed} of {count} missing ({where})")

    tiles = [load_surface(found[i, count]) for i in range(count)]
    reference = {k: v for k, v in tiles[0]["settings"].items() if k != "tile"}
    for i, tile in enumerate(tiles):
        settings = {k: v for k, v in tile["settings"].items() if k != "tile"}
        for key in sorted(set(reference) | set(settings)):
            if settings.get(key) != reference.get(key):
                raise SurfaceError(
                    f"cannot merge: tile {i} of {count} has {key}={settings.get(key)!r}, "
                    f"tile 0 has {reference.get(key)!r}"
                )
        rows = tile_rows(reference["points"], i, count)
        expected = {"index": i, "count": count, "start": rows.start, "stop": rows.stop}
        size = rows.stop - rows.start
        if tile["settings"].get("tile") != expected or len(tile["losses"]) != size:
            raise SurfaceError(
                f"cannot merge: tile {i} of {count} does not hold rows "
                f"{rows.start}..{rows.stop - 1} of {reference['points']}"
            )
    arrays = {
        "alphas": np.concatenate([t["alphas"] for t in tiles]),
        "losses": np.concatenate([t["losses"] for t in tiles]),
    }
    if tiles[0]["betas"] is not None:
        arrays["betas"] = tiles[0]["betas"]
    if reference["accuracy"]:
        arrays["accs"] = np.concatenate([t["accs"] for t in tiles])
    save_surface(out, arrays, {**reference, "tile": None, "merged_tiles": count}, s.overwrite)
    return out


def run(cfg: DictConfig) -> Path:
    """The whole job for a composed `surface` config; returns the file written."""
    settings = settings_from_config(cfg)
    return merge_tiles(settings) if settings.merge else compute_surface(settings)


def _summary(path: Path) -> str:
    surface = load_surface(path)
    s, losses = surface["settings"], surface["losses"]
    finite = losses[np.isfinite(losses)]
    span = f"loss {finite.min():.4g}..{finite.max():.4g}" if finite.size else "no finite loss"
    shape = "x".join(map(str, losses.shape))
    about = f"{s['kind']}, {shape} points, bn_mode={s['bn_mode']}, step {s['step']}, {span}"
    return f"wrote {path} ({about})"


@hydra.main(config_path=CONF_DIR, config_name="surface", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    try:
        path = run(cfg)
    except USER_ERRORS as err:
        print(f"smoothbench-surface: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"smoothbench-surface: {_summary(path)}")


def main() -> None:
    """The `smoothbench-surface` command: Hydra's own errors, too, are one line with exit 2."""
    from smoothbench.cli import run_hydra_main

    run_hydra_main("smoothbench-surface", hydra_main)


if __name__ == "__main__":
    main()
