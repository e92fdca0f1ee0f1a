"""Saved W&B workspaces, one per experiment preset, whose panels mirror the paper's figures.

    python scripts/wandb_dashboard.py --dry-run                      # print the spec as JSON
    python scripts/wandb_dashboard.py --entity E --project P         # save every workspace
    python scripts/wandb_dashboard.py --entity E --project P --scale cpu --figures fig1 fig4

Each workspace shows the runs of one W&B group, `<experiment>-<scale>` (the `experiment` preset of
conf/experiment/*.yaml at one `scale`: smoke, cpu and paper runs never average together), grouped
by the config keys that preset sweeps, so seeds of one setting are averaged into a mean line with a
min-max band. The x-axis is our own `step` metric (the sink declares it the step metric of every
key); `train/two_over_lr` is a key the sink derives for the Hessian panel. Needs
`pip install 'smoothbench[dashboards]'` and a W&B login for the real mode; `--dry-run` needs
neither. Each real run saves new workspaces (views).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

from smoothbench.sinks import run_group

X_AXIS = "step"
SCALES = ("smoke", "cpu", "paper")
NORM = "norm.name"
LR = "optim.lr"


@dataclass(frozen=True)
class Panel:
    """One line plot: its metric keys (docs/metrics.md) drawn against `step`."""

    title: str
    y: tuple[str, ...]
    log_y: bool = False


@dataclass(frozen=True)
class Section:
    name: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class FigureSpec:
    """A workspace: the runs of preset `group` at one scale, grouped by the keys in `group_by`."""

    name: str
    group: str
    group_by: tuple[str, ...]
    sections: tuple[Section, ...]


def one(key: str, title: str | None = None, log_y: bool = False) -> Panel:
    """A panel of a single metric key."""
    return Panel(title or key, (key,), log_y)


def landscape(log_y: bool = False, fig: str = "Fig. 4") -> Section:
    """Loss variation, gradient predictiveness, effective beta-smoothness (docs/science.md §4)."""
    keys = ("loss_variation", "grad_pred_max", "beta_smoothness")
    return Section(
        f"Loss landscape along the gradient ({fig})",
        tuple(one(f"landscape/{k}", log_y=log_y) for k in keys),
    )


def activation_hists(layers: tuple[int, ...], fig: str) -> Section:
    """The activation histograms of the given layers."""
    # W&B draws a line plot of a histogram key as the histogram over steps
    return Section(
        f"Activation distributions ({fig})",
        tuple(one(f"act/layer{k}/hist") for k in layers),
    )


def ics(layers: tuple[int, ...]) -> Section:
    """ICS of each layer: l2 distance and cosine of G and G'."""
    return Section(
        "Internal covariate shift (Fig. 3)",
        tuple(one(f"ics/layer{k}/{m}") for k in layers for m in ("l2", "cosine")),
    )


def moment_changes(layers: tuple[int, ...]) -> Section:
    """Fig. 8: the change of the activations' mean and variance; they span decades, so log y."""
    return Section(
        "Activation moment changes (Fig. 8)",
        tuple(
            one(f"act/layer{k}/{m}", log_y=True)
            for k in layers
            for m in ("mean_change", "var_change")
        ),
    )


def accuracy(fig: str | None = None) -> Section:
    return Section(f"Accuracy ({fig})" if fig else "Accuracy", (one("train/acc"), one("test/acc")))


ACCURACY = accuracy()
# the Hessian's top eigenvalue against 2/lr, the stability threshold of gradient descent
LAMBDA_MAX_VS_2_OVER_LR = Panel(
    "hessian/lambda_max against 2/lr (edge of stability)",
    ("hessian/lambda_max", "train/two_over_lr"),
)

FIGURES: dict[str, FigureSpec] = {
    "eos": FigureSpec(
        "smoothbench eos: deep linear network under gradient descent at two learning rates",
        "eos",
        (LR,),
        (Section("Edge of stability", (LAMBDA_MAX_VS_2_OVER_LR, one("train/loss"))),),
    ),
    "fig1": FigureSpec(
        "smoothbench fig1: VGG-16 with/without BN at lr 0.1 and 0.5",
        "fig1",
        (NORM, LR),
        (ACCURACY, activation_hists((3, 11), "Fig. 1c")),
    ),
    "fig2": FigureSpec(
        "smoothbench fig2: standard vs BN vs noisy BN",
        "fig2",
        (NORM,),
        (
            accuracy("Fig. 2"),
            activation_hists((2, 9, 13), "Fig. 2"),
            moment_changes((2, 9, 13)),
        ),
    ),
    "fig3": FigureSpec(
        "smoothbench fig3: ICS of VGG-16 with/without BN", "fig3", (NORM,), (ics((5, 10)),)
    ),
    "fig3_dln": FigureSpec(
        "smoothbench fig3_dln: ICS of the deep linear network with/without BN",
        "fig3_dln",
        (NORM, LR),
        (ics((9, 17)),),
    ),
    "fig4": FigureSpec(
        "smoothbench fig4: VGG-16 landscape with/without BN",
        "fig4",
        (NORM,),
        (accuracy("Fig. 4"), landscape()),
    ),
    # the deep linear network's losses span orders of magnitude
    "fig10": FigureSpec(
        "smoothbench fig10: deep linear network landscape with/without BN",
        "fig10",
        (NORM, LR),  # the mapped paper lr and its 0.5x, 2x sensitivity
        (landscape(log_y=True, fig="Fig. 10"),),
    ),
    "lp": FigureSpec(
        "smoothbench lp: lp normalizations on VGG-16",
        "lp",
        (NORM,),
        (
            Section("Accuracy (Fig. 5)", (one("train/acc"),)),
            activation_hists((3, 11), "Fig. 6"),
            landscape(fig="Fig. 12"),
        ),
    ),
    "lp_dln": FigureSpec(
        "smoothbench lp_dln: lp normalizations on the deep linear network",
        "lp_dln",
        (NORM,),
        (landscape(log_y=True, fig="Fig. 13"),),
    ),
    "hessian": FigureSpec(
        "smoothbench hessian: ResNet-20/56 with/without BN and shortcut",
        "hessian",
        ("model.name", "model.shortcut", NORM),
        (
            Section(
                "Hessian over training",
                (one("hessian/lambda_max"), one("hessian/trace"), LAMBDA_MAX_VS_2_OVER_LR),
            ),
        ),
    ),
    "surfaces": FigureSpec(
        "smoothbench surfaces: ResNet-56 with/without BN and shortcut (training)",
        "surfaces",
        ("model.shortcut", NORM),
        (
            Section("Loss", (one("train/loss"), one("test/loss"))),
            ACCURACY,
        ),
    ),
}


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
