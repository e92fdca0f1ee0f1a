"""Saved W&B workspaces, one per experiment preset, whose panels mirror the paper's figures.

    python scripts/wandb_dashboard.py --dry-run                      # print the spec as JSON
    python scripts/wandb_dashboard.py --entity E --project P         # save every workspace
    python scripts/wandb_dashboard.py --entity E --project P --scale cpu --figures fig1 fig4

The panels come from the figure table, `smoothbench.paper`: a preset's workspace holds the W&B
sections of every figure drawn from that preset. Each workspace shows the runs of one W&B group,
`<experiment>-<scale>` (the `experiment` preset of conf/experiment/*.yaml at one `scale`: smoke,
cpu and paper runs never average together), grouped by the config keys its figures compare (the
keys the preset sweeps), so seeds of one setting are averaged into a mean line with a min-max
band. The x-axis is our own `step` metric (the sink declares it the step metric of every
key); `train/two_over_lr` is a key the sink derives for the Hessian panel. Needs
`pip install 'smoothbench[dashboards]'` and a W&B login for the real mode; `--dry-run` needs
neither. Each real run saves new workspaces (views).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

from smoothbench import paper
from smoothbench.paper import Panel, Section
from smoothbench.sinks import run_group

X_AXIS = "step"
SCALES = ("smoke", "cpu", "paper")


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
    p.add_argument("--dry-run", action="store_true", help="print the spec as JSON; no W&B")
    return p.parse_args(argv)


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
    specs = {f: FIGURES[f] for f in args.figures}
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
    if not (args.entity and args.project):
        return fail("--entity and --project are required unless --dry-run")
    try:
        import wandb_workspaces  # noqa: F401
    except ImportError:
        return fail("wandb-workspaces is not installed; pip install 'smoothbench[dashboards]'")
    for spec in specs.values():
        build_workspace(spec, entity=args.entity, project=args.project, scale=args.scale).save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
