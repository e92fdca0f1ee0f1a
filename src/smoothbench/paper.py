"""The paper's figures as one table: what each figure is drawn from and what it backs.

A row (`Figure`) names one figure of the reproduction and everything that hangs off it: the
experiment preset (`conf/experiment/<preset>.yaml`) whose sweep it is drawn from, the script in
`analysis/` that draws it and that script's arguments, what the runs must hold for the figure
to say what the paper's figure says, the W&B dashboard sections that mirror it, and the ids of
the claims (`smoothbench.claims`) it backs. `analysis/figures.py`, `analysis/report.py`,
`scripts/reproduce.sh` (through `analysis/figures.py`), `scripts/wandb_dashboard.py` and the
claims registry all read this table; `tests/test_paper_table.py` checks it against the
presets, the scripts and the claims.

    from smoothbench import paper
    paper.figure("fig10").args          # ('--model', 'dln', '--logy', '--name', 'fig10')
    paper.presets()                     # the presets to train, in table order
    [f.name for f in paper.figures_of("fig2")]   # ['fig2', 'fig8']

Adding a figure: its preset in `conf/experiment/`, its script in `analysis/` (or arguments of
an existing one), and one row below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NORM = "norm.name"
LR = "optim.lr"


# ---------------------------------------------------------------------------------------------
# what the runs of a figure must hold


@dataclass(frozen=True)
class Requirement:
    """The runs of a figure must hold these values of `key` (all of `values`), or at least
    `at_least` distinct values of it. `why` says what the figure compares."""

    key: str
    values: tuple[Any, ...] = ()
    at_least: int = 0
    why: str = ""

    def unmet(self, present: Sequence[Any]) -> str | None:
        """The reason the runs cannot show the figure, or None when they can."""
        have = sorted({_plain(v) for v in present}, key=str)
        shown = ", ".join(_fmt(v) for v in have) or "none"
        missing = [v for v in self.values if not any(_same(v, h) for h in have)]
        if missing:
            return (
                f"{self.why}: no run has {self.key} {', '.join(map(_fmt, missing))} "
                f"(the runs have {self.key} {shown})"
            )
        if len(have) < self.at_least:
            return (
                f"{self.why}: needs runs at {self.at_least} or more values of {self.key} "
                f"(the runs have {self.key} {shown} only)"
            )
        return None


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    return str(a) == str(b)


BN_VS_STANDARD = Requirement(
    NORM, ("none", "batch"), why="it compares nets with and without BatchNorm"
)
STANDARD_BN_NOISY = Requirement(
    NORM,
    ("none", "batch", "noisy_batch"),
    why="it compares standard, BatchNorm and noisy BatchNorm nets",
)


# ---------------------------------------------------------------------------------------------
# W&B dashboard panels (metric keys of docs/metrics.md, drawn against `step`)


@dataclass(frozen=True)
class Panel:
    """One line plot: its metric keys drawn against `step`."""

    title: str
    y: tuple[str, ...]
    log_y: bool = False


@dataclass(frozen=True)
class Section:
    """A named row of panels in a W&B workspace."""

    name: str
    panels: tuple[Panel, ...]


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


# the Hessian's top eigenvalue against 2/lr, the stability threshold of gradient descent
# (train/two_over_lr is derived by the W&B sink from train/lr)
LAMBDA_MAX_VS_2_OVER_LR = Panel(
    "hessian/lambda_max against 2/lr (edge of stability)",
    ("hessian/lambda_max", "train/two_over_lr"),
)


# ---------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class Figure:
    """One figure of the reproduction.

    Attributes:
        name: its id: the output file name, the report's anchor, `Claim.figure`.
        title: one line saying what it shows (also names the preset's W&B workspace).
        preset: the experiment preset (`experiment=`) whose sweep it is drawn from.
        script: the script `analysis/<script>.py` that draws it.
        args: that script's arguments for this figure (after the run dirs).
        requires: what the runs must hold for the figure to show the paper's comparison.
        compares: the config keys whose values it sets side by side (the dashboard groups
            runs by them; seeds are averaged).
        dashboard: the W&B sections that mirror it in its preset's workspace.
        claims: the ids of the claims it backs.
    """

    name: str
    title: str
    preset: str
    script: str
    args: tuple[str, ...] = ()
    requires: tuple[Requirement, ...] = ()
    compares: tuple[str, ...] = ()
    dashboard: tuple[Section, ...] = ()
    claims: tuple[str, ...] = ()


def _dln_landscape_claims() -> tuple[str, ...]:
    """Fig. 10's claims: the three landscape measures at the mapped paper lr, and each at half
    and twice that lr (sensitivities, see smoothbench.claims.registry)."""
    primary = [f"bn_lowers_{m}_dln" for m in ("loss_variation", "grad_change", "beta")]
    return tuple(primary) + tuple(f"{c}_lr_x{f}" for c in primary for f in ("0.5", "2"))


FIGURES: tuple[Figure, ...] = (
    Figure(
        "fig1",
        "VGG-16 with/without BN at lr 0.1 and 0.5",
        preset="fig1",
        script="fig1",
        requires=(
            BN_VS_STANDARD,
            Requirement(LR, at_least=2, why="it compares learning rates (paper: 0.1 and 0.5)"),
        ),
        compares=(NORM, LR),
        dashboard=(accuracy(), activation_hists((3, 11), "Fig. 1c")),
        claims=(
            "bn_trains_faster",
            "bn_tolerates_high_lr",
            "bn_mean_not_more_stable",
            "bn_var_not_more_stable",
        ),
    ),
    Figure(
        "fig2",
        "standard vs BN vs noisy BN",
        preset="fig2",
        script="fig2",
        requires=(STANDARD_BN_NOISY,),
        compares=(NORM,),
        dashboard=(accuracy("Fig. 2"), activation_hists((2, 9, 13), "Fig. 2")),
        claims=("noisy_bn_trains_like_bn", "noise_without_bn_hurts"),
    ),
    Figure(
        "fig8",
        "activation moment changes of standard, BN and noisy BN nets",
        preset="fig2",
        script="fig8",
        requires=(STANDARD_BN_NOISY,),
        compares=(NORM,),
        dashboard=(moment_changes((2, 9, 13)),),
        claims=("noisy_bn_moments_change_more",),
    ),
    Figure(
        "fig3",
        "ICS of VGG-16 with/without BN",
        preset="fig3",
        script="fig3",
        requires=(BN_VS_STANDARD,),
        compares=(NORM,),
        dashboard=(ics((5, 10)),),
        claims=("bn_no_ics_reduction_vgg_l2", "bn_no_ics_reduction_vgg_cosine"),
    ),
    Figure(
        "fig3_dln",
        "ICS of the deep linear network with/without BN",
        preset="fig3_dln",
        script="fig3",
        args=("--layers", "9", "17"),
        requires=(BN_VS_STANDARD,),
        compares=(NORM, LR),
        dashboard=(ics((9, 17)),),
        claims=("bn_no_ics_reduction_dln_l2", "bn_no_ics_reduction_dln_cosine"),
    ),
    Figure(
        "fig4",
        "VGG-16 landscape with/without BN",
        preset="fig4",
        script="fig4",
        requires=(BN_VS_STANDARD,),
        compares=(NORM,),
        dashboard=(accuracy("Fig. 4"), landscape()),
        claims=(
            "bn_lowers_loss_variation_vgg",
            "bn_lowers_grad_change_vgg",
            "bn_lowers_beta_vgg",
            "bn_damps_gradient",
            "bn_damping_every_step",
        ),
    ),
    Figure(
        "fig10",
        "deep linear network landscape with/without BN",
        preset="fig10",
        # Fig. 4's panels for the DLN, whose losses span decades: log y
        script="fig4",
        args=("--model", "dln", "--logy", "--name", "fig10"),
        requires=(BN_VS_STANDARD,),
        compares=(NORM, LR),  # the mapped paper lr and its 0.5x, 2x sensitivity
        dashboard=(landscape(log_y=True, fig="Fig. 10"),),
        claims=_dln_landscape_claims(),
    ),
    Figure(
        "lp",
        "lp normalizations on VGG-16",
        preset="lp",
        script="lp",
        requires=(Requirement(NORM, ("batch",), why="it compares ℓp norms with BatchNorm"),),
        compares=(NORM,),
        dashboard=(
            Section("Accuracy (Fig. 5)", (one("train/acc"),)),
            activation_hists((3, 11), "Fig. 6"),
            landscape(fig="Fig. 12"),
        ),
        claims=tuple(
            f"{norm}_{what}"
            for norm in ("l1", "l2", "linf")
            for what in ("trains_like_bn", "smooths_like_bn_vgg")
        ),
    ),
    Figure(
        "lp_dln",
        "lp normalizations on the deep linear network",
        preset="lp_dln",
        script="lp",
        compares=(NORM,),
        dashboard=(landscape(log_y=True, fig="Fig. 13"),),
        claims=tuple(f"{norm}_smooths_like_bn_dln" for norm in ("l1", "l2", "linf")),
    ),
    Figure(
        "hessian",
        "ResNet-20/56 with/without BN and shortcut",
        preset="hessian",
        script="hessian",
        compares=("model.name", "model.shortcut", NORM),
        dashboard=(
            Section(
                "Hessian over training",
                (one("hessian/lambda_max"), one("hessian/trace"), LAMBDA_MAX_VS_2_OVER_LR),
            ),
        ),
        claims=(
            "bn_lowers_lambda_max",
            "shortcut_lowers_lambda_max",
            "bn_lowers_trace",
            "shortcut_lowers_trace",
            "bn_removes_hessian_outliers",
        ),
    ),
    Figure(
        "eos",
        "deep linear network under gradient descent at two learning rates",
        preset="eos",
        script="hessian",
        compares=(LR,),
        dashboard=(Section("Edge of stability", (LAMBDA_MAX_VS_2_OVER_LR, one("train/loss"))),),
        claims=("edge_of_stability",),
    ),
    Figure(
        "surfaces",
        "ResNet-56 with/without BN and shortcut",
        preset="surfaces",
        script="surfaces",
        compares=("model.shortcut", NORM),
        # W&B holds the training only: the surfaces are computed after it, from checkpoints
        dashboard=(Section("Loss", (one("train/loss"), one("test/loss"))), accuracy()),
    ),
    Figure(
        "surfaces_fig4",
        "loss surfaces of the VGG-16 with/without BN of Fig. 4",
        preset="fig4",
        script="surfaces",
        compares=(NORM,),
    ),
)
_BY_NAME = {f.name: f for f in FIGURES}
if len(_BY_NAME) != len(FIGURES):  # pragma: no cover - a typo in the table
    raise RuntimeError("figure names are not unique")


def figure(name: str) -> Figure:
    """The row of one figure; ValueError naming the figures for an unknown name."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown figure {name!r}; choose from: {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def presets(figures: Sequence[Figure] = FIGURES) -> list[str]:
    """The presets the figures are drawn from, in table order, each once."""
    return list(dict.fromkeys(f.preset for f in figures))


def figures_of(preset: str) -> list[Figure]:
    """The figures drawn from one preset's sweep, in table order ([] for none)."""
    return [f for f in FIGURES if f.preset == preset]


def figure_of_claim(claim_id: str) -> Figure:
    """The figure that backs a claim; ValueError when no row lists it."""
    for row in FIGURES:
        if claim_id in row.claims:
            return row
    raise ValueError(
        f"claim {claim_id!r} is in no figure's claims; add it to a row of smoothbench.paper"
    )
