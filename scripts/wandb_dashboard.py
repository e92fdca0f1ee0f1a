"""Saved W&B workspaces, one per experiment preset, whose panels mirror the paper's figures.

    python scripts/wandb_dashboard.py --dry-run                      # print the spec as JSON
    python scripts/wandb_dashboard.py --entity E --project P         # save every workspace
    python scripts/wandb_dashboard.py --entity E --project P --scale cpu --figures fig1 fig4
    python scripts/wandb_dashboard.py --dry-run --scale cpu --runs multirun/   # layers of runs

The panels come from the figure table, `smoothbench.paper`: a preset's workspace holds the W&B
sections of every figure drawn from that preset. Its per-layer panels (`act/layerK/...`,
`ics/layerK/...`) show the layers the runs measure, not the paper's: the runs under `--runs`
of that preset and scale (their `.hydra/config.yaml`), else the preset's config composed at
`--scale` (at scale=cpu, fig1 measures VGG-11's layers #2 and #7, not VGG-16's #3 and #11).

Each workspace shows the runs of one W&B group, `<experiment>-<scale>` (the `experiment`
preset of conf/experiment/*.yaml at one `scale`: smoke, cpu and paper runs never average
together), grouped by the config keys its figures compare (the keys the preset sweeps), so
seeds of one setting are averaged into a mean line with a min-max band. The x-axis is our own
`step` metric (the sink declares it the step metric of every key); `train/two_over_lr` is a key
the sink derives for the Hessian panel. Needs
`pip install 'smoothbench[dashboards]'` (also in the `dev` extra) and a W&B login for the real
mode; `--dry-run` needs neither. Each real run saves new workspaces (views).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from smoothbench import paper
from smoothbench.paper import Panel, Section
from smoothbench.sinks import run_group

X_AXIS = "step"
SCALES = ("smoke", "cpu", "paper")
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
# per-layer metric keys: their prefix names the probe whose `layers` they follow
LAYER_KEY = re.compile(r"(act|ics)/layer(\d+)/(.+)")
PROBE_OF = {"act": "activations", "ics": "ics"}


@dataclass(frozen=True)
class FigureSpec:
    """A workspace: the runs of preset `group` at one scale, grouped by the keys in `group_by`."""

    name: str
    group: str
    group_by: tuple[str, ...]
    sections: tuple[Section, ...]


def workspace_spec(preset: str) -> FigureSpec:
    """The workspace of one preset, from the figure table (smoothbench.paper): named for its
    first figure, grouped by the keys its figures compare, with every figure's sections."""
    figures = paper.figures_of(preset)
    if not figures:
        raise ValueError(f"unknown preset {preset!r}; choose from: {', '.join(paper.presets())}")
    return FigureSpec(
        f"smoothbench {preset}: {figures[0].title}",
        preset,
        tuple(dict.fromkeys(key for f in figures for key in f.compares)),
        tuple(section for f in figures for section in f.dashboard),
    )


# one workspace per preset, in the order of the figure table
FIGURES: dict[str, FigureSpec] = {preset: workspace_spec(preset) for preset in paper.presets()}


def measured_layers(config: dict) -> dict[str, tuple[int, ...]]:
    """{"act": layers, "ics": layers} a run config measures (none for a probe that is off)."""
    measured = {}
    for prefix, probe in PROBE_OF.items():
        settings = (config.get("probes") or {}).get(probe) or {}
        off = (settings.get("schedule") or {}).get("kind") == "off"
        measured[prefix] = () if off else tuple(int(k) for k in settings.get("layers") or ())
    return measured


def preset_layers(preset: str, scale: str) -> dict[str, tuple[int, ...]]:
    """The layers the preset measures at `scale`, from its composed config."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from smoothbench.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", [f"experiment={preset}", f"scale={scale}"])
    return measured_layers({"probes": OmegaConf.to_container(cfg.probes, resolve=True)})


def run_layers(roots: list[str], scale: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """{preset: {"act": layers, "ics": layers}}: the layers measured by any run at `scale`
    under `roots` (run dirs or sweep dirs, read from their `.hydra/config.yaml`)."""
    import yaml

    found: dict[str, dict[str, set[int]]] = {}
    for root in roots:
        for path in sorted(Path(root).glob("**/.hydra/config.yaml")):
            try:
                config = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError):
                continue
            if not isinstance(config, dict) or config.get("scale") != scale:
                continue
            layers = found.setdefault(str(config.get("experiment")), {p: set() for p in PROBE_OF})
            for prefix, ks in measured_layers(config).items():
                layers[prefix].update(ks)
    return {e: {p: tuple(sorted(ks)) for p, ks in ls.items()} for e, ls in found.items()}


def at_layers(spec: FigureSpec, layers: dict[str, tuple[int, ...]]) -> FigureSpec:
    """`spec` with each section's per-layer panels drawn for `layers` instead of the paper's
    (same metrics per layer, in the same order); a section left with no panel is dropped."""
    sections = []
    for section in spec.sections:
        panels = _panels_at(section.panels, layers)
        if panels:
            sections.append(Section(section.name, panels))
    return replace(spec, sections=tuple(sections))


def _panels_at(panels: tuple[Panel, ...], layers: dict[str, tuple[int, ...]]) -> tuple:
    """The per-layer panels redrawn for `layers`, where the first of them stood."""
    matches = [LAYER_KEY.fullmatch(p.y[0]) if len(p.y) == 1 else None for p in panels]
    if not any(matches):
        return panels
    at = next(i for i, m in enumerate(matches) if m)
    # the metrics drawn per layer: those of the section's first layer, in order
    first_layer = matches[at].group(2)
    template = [
        (m.group(1), m.group(3), p.log_y)
        for p, m in zip(panels, matches, strict=True)
        if m and m.group(2) == first_layer
    ]
    redrawn = tuple(
        paper.one(f"{prefix}/layer{k}/{metric}", log_y=log_y)
        for prefix in dict.fromkeys(prefix for prefix, _, _ in template)
        for k in layers.get(prefix, ())
        for p, metric, log_y in template
        if p == prefix
    )
    rest = tuple(p for p, m in zip(panels, matches, strict=True) if not m)
    return rest[:at] + redrawn + rest[at:]


def wandb_group(spec: FigureSpec, scale: str) -> str:
    """The W&B group the training runs of `spec` at `scale` land in (the sink's own rule)."""
    return run_group({"experiment": spec.group, "scale": scale})


def workspace_name(spec: FigureSpec, scale: str) -> str:
    return f"{spec.name} ({scale} scale)"


def build_workspace(spec: FigureSpec, *, entity: str, project: str, scale: str = "paper"):
    """The `wandb_workspaces` Workspace of one figure spec at one scale (not saved)."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    def line_plot(panel: Panel):
        # groupby_* aggregate the seeds of each runset group into mean and min-max band
        return wr.LinePlot(
            title=panel.title,
            x=X_AXIS,
            y=list(panel.y),
            log_y=panel.log_y or None,
            groupby_aggfunc="mean",
            groupby_rangefunc="minmax",
        )

    return ws.Workspace(
        entity=entity,
        project=project,
        name=workspace_name(spec, scale),
        sections=[
            ws.Section(name=s.name, panels=[line_plot(p) for p in s.panels], is_open=True)
            for s in spec.sections
        ],
        settings=ws.WorkspaceSettings(x_axis=X_AXIS),
        runset_settings=ws.RunsetSettings(
            filters=ws.And(ws.Metric("Group") == wandb_group(spec, scale)),
            groupby=[ws.Config(key) for key in spec.group_by],
        ),
    )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entity", help="W&B entity (user or team)")
    p.add_argument("--project", help="W&B project the runs were synced to")
    p.add_argument(
        "--figures", nargs="+", default=list(FIGURES), metavar="FIG", help=", ".join(FIGURES)
    )
    p.add_argument(
        "--scale",
        default="paper",
        help=f"which runs to show: {' | '.join(SCALES)} (default: paper)",
    )
    p.add_argument(
        "--runs",
        nargs="+",
        default=[],
        metavar="DIR",
        help="run or sweep dirs to read the measured layers from (default: each preset's config "
        "at --scale)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the spec as JSON; no W&B")
    return p.parse_args(argv)


def scaled_specs(figures: list[str], scale: str, runs: list[str]) -> dict[str, FigureSpec]:
    """The specs of `figures` with the layers their runs measure at `scale` (module docstring)."""
    from_runs = run_layers(runs, scale) if runs else {}
    return {
        f: at_layers(FIGURES[f], from_runs.get(f) or preset_layers(FIGURES[f].group, scale))
        for f in figures
    }


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    args = parse_args(argv)
    unknown = [f for f in args.figures if f not in FIGURES]
    if unknown:
        return fail(f"unknown figure '{unknown[0]}'; choose from: {', '.join(FIGURES)}")
    if args.scale not in SCALES:
        return fail(f"unknown scale '{args.scale}'; choose from: {', '.join(SCALES)}")
    missing = [r for r in args.runs if not Path(r).is_dir()]
    if missing:
        return fail(f"--runs {missing[0]!r} is not a directory; pass run or sweep directories")
    if not args.dry_run:
        if not (args.entity and args.project):
            return fail("--entity and --project are required unless --dry-run")
        try:
            import wandb_workspaces  # noqa: F401
        except ImportError:
            return fail("wandb-workspaces is not installed; pip install 'smoothbench[dashboards]'")
    specs = scaled_specs(args.figures, args.scale, args.runs)
    if args.dry_run:
        printed = {
            f: {
                **asdict(s),
                "workspace": workspace_name(s, args.scale),
                "scale": args.scale,
                "wandb_group": wandb_group(s, args.scale),
            }
            for f, s in specs.items()
        }
        print(json.dumps(printed, indent=2))
        return 0
    for spec in specs.values():
        build_workspace(spec, entity=args.entity, project=args.project, scale=args.scale).save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
