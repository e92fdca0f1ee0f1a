"""The frozen protocol behind the verdicts: each preset's net, budget, lrs and seeds per scale.

A verdict means something only if the budget, lr and seeds were fixed before it was seen. The
protocol is what the presets compose to (conf/experiment + conf/regime, through Hydra), read
here, hashed, and logged in `VERSIONS` with the date it was fixed. A change of any regime
changes the hash; a test then fails until the change is logged as a new version, so every
change of protocol is visible, dated and explained. docs/protocol.md is generated from it:

    python -m smoothbench.protocol > docs/protocol.md
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCALES = ("smoke", "cpu", "paper")
CONF_DIR = os.environ.get("SMOOTHBENCH_CONF", str(Path(__file__).resolve().parents[2] / "conf"))


@dataclass(frozen=True)
class ProtocolVersion:
    version: int
    fixed: str  # the date it was fixed (ISO)
    change: str  # what changed and why
    sha256: str | None  # the hash of `protocol_table()` (None: before hashes were kept)


VERSIONS: tuple[ProtocolVersion, ...] = (
    ProtocolVersion(
        1,
        "2026-11",
        "the cpu regimes as retuned by measurement (fig4 1,000 steps, the DLN at lr 5e-4, "
        "ResNets with Glorot init); several budgets and the DLN lr were chosen after verdicts "
        "at other settings had been seen",
        None,
    ),
    ProtocolVersion(
        2,
        "2026-12-02",
        "fixed before its verdicts were seen: the DLN at the mapped paper lr 1e-3 (0.5x and 2x "
        "as a reported sensitivity; fig3_dln at the paper's two lrs, 1e-3 and 1e-4), one torch "
        "thread per run, activations measured at the next layer's input; budgets, seeds and "
        "inits as in v1 (Kaiming init, with or without zeroed residual branches, leaves the "
        "plain ResNet-20 at width 1/4 at chance too: seeds 0-2)",
        "47e72589a48c9b9dfecf4906d0a01c6d70fe133a56292af4dde736e180b72be7",
    ),
)
CURRENT = VERSIONS[-1]

# What a row of the protocol holds: config keys read from the composed preset.
FIELDS = (
    ("model", "model.name"),
    ("width", "model.width"),
    ("init", "model.init"),
    ("zero-init residual", "model.zero_init_residual"),
    ("data", "data.name"),
    ("optimizer", "optim.name"),
    ("batch", "batch_size"),
    ("full batch", "optim.full_batch"),
    ("steps", "steps"),
    ("lr", "optim.lr"),
    ("threads", "threads"),
)


def _presets() -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


def _select(cfg: Any, key: str) -> Any:
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key, default=None)
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def protocol_row(preset: str, scale: str) -> dict[str, Any]:
    """One preset at one scale: FIELDS, with swept keys as their comma lists, and the seeds."""
    from hydra import compose, initialize_config_dir

    from smoothbench.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"experiment={preset}", f"scale={scale}"],
            return_hydra_config=True,
        )
    swept = {str(k): str(v) for k, v in (_select(cfg, "hydra.sweeper.params") or {}).items()}
    row: dict[str, Any] = {"preset": preset, "scale": scale}
    for name, key in FIELDS:
        row[name] = swept.pop(key, _select(cfg, key))
    row["seeds"] = swept.pop("seed", str(_select(cfg, "seed")))
    row["sweep"] = ", ".join(f"{k}={v}" for k, v in sorted(swept.items()))
    return row


def protocol_table() -> list[dict[str, Any]]:
    """Every preset at every scale, presets by name, scales smallest first."""
    return [dict(row) for row in _table(CONF_DIR)]


@functools.lru_cache(maxsize=2)
def _table(conf_dir: str) -> tuple[dict[str, Any], ...]:
    # composing 33 configs takes seconds: once per process and conf dir
    return tuple(protocol_row(p, s) for p in _presets() for s in SCALES)


def protocol_hash(table: list[dict[str, Any]] | None = None) -> str:
    """sha256 of the table as canonical JSON."""
    table = protocol_table() if table is None else table
    text = json.dumps(table, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def protocol_record(table: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What claims.json records: the current version, its date and whether the presets as
    they are now still hash to it."""
    digest = protocol_hash(table)
    return {
        "version": CURRENT.version,
        "fixed": CURRENT.fixed,
        "sha256": digest,
        "matches_version": digest == CURRENT.sha256,
    }


def protocol_markdown(table: list[dict[str, Any]] | None = None) -> str:
    """docs/protocol.md."""
    table = protocol_table() if table is None else table
    digest = protocol_hash(table)
    columns = ["preset", *(name for name, _ in FIELDS), "seeds", "sweep"]
    lines = [
        "# The protocol",
        "",
        "<!-- generated by `python -m smoothbench.protocol > docs/protocol.md`; do not edit -->",
        "",
        f"Protocol **v{CURRENT.version}**, fixed {CURRENT.fixed}; sha256 `{digest}`.",
        "",
        "Each scale's presets, as they compose (`conf/experiment/` and `conf/regime/`), are",
        "the protocol behind the verdicts of `smoothbench-claims`: the net, the budget, the lr",
        "and the seeds were fixed before the verdicts computed on them were seen. Any change",
        "to a regime changes the hash above, and the test suite fails until the change is",
        "logged as a new version below (`src/smoothbench/protocol.py`); claims.json records",
        "the version its verdicts were computed under. A verdict under a budget, lr or seed",
        "list chosen after seeing verdicts is not evidence.",
        "",
        "The DLN's lr maps the paper's: its loss is summed over the 1,000 samples (lr 1e-6),",
        "smoothbench's is averaged, so the gradient is 1,000x smaller and lr 1e-3 gives the",
        "same gradient-descent trajectory. The assumption: the paper's loss is the sum (an lr",
        "of 1e-6 trains nothing on a mean). `fig10` also runs 0.5x and 2x that lr, reported as",
        "a sensitivity beside the verdict, never replacing it.",
        "",
        "## Versions",
        "",
        "| version | fixed | change |",
        "|---|---|---|",
    ]
    lines += [f"| v{v.version} | {v.fixed} | {v.change} |" for v in VERSIONS]
    for scale in SCALES:
        lines += ["", f"## scale={scale}", ""]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for row in (r for r in table if r["scale"] == scale):
            cells = [f"`{row['preset']}`"] + [_cell(row[c]) for c in columns[1:]]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("|", "\\|")


def main() -> None:
    sys.stdout.write(protocol_markdown())


if __name__ == "__main__":  # pragma: no cover
    main()
