"""The claims smoothbench tests: one table (`CLAIMS`), each claim a plain, declarative record.

A claim names the runs it reads (presets and the conditions of its two arms), the statistic it
computes per run, how the arms are compared (a ratio or a difference, per seed), the direction
the paper (or the wider literature) reports, and the preconditions under which the comparison
means anything. `smoothbench.claims.statistics` evaluates them; nothing here computes.

Reading a claim: "treatment vs control" is e.g. "norm=batch vs norm=none"; the effect per seed
is treatment / control (ratio) or treatment - control (difference), and the claim holds when
the confidence interval of that effect across seeds lies on the stated side of `null`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

# Directions: the effect is above `null`, below it, or inside `band` (all ends inclusive-free).
DIRECTIONS = (">", "<", "within")
COMPARISONS = ("ratio", "difference", "single")
STATISTIC_KINDS = (
    "mean_over_steps",
    "final",
    "median_after_warmup",
    "max_ratio_over_steps",
    "outlier_ratio",
    "lambda_max_times_lr_over_2",
)
PRECONDITION_KINDS = ("left_chance", "loss_fell", "started_below_edge")
# The sizes a preset runs at (config `scale`), smallest first: smoke verdicts are plumbing only,
# cpu verdicts are meant to match the paper-scale ones.
SCALES = ("smoke", "cpu", "paper")
# How a config value is named in words (tables, docs).
CONDITION_WORDS = {
    "norm.name": "norm",
    "optim.lr": "lr",
    "model.name": "model",
    "model.shortcut": "shortcut",
    "optim.full_batch": "full-batch GD",
    "optim.schedule": "lr schedule",
    "optim.momentum": "momentum",
}


@dataclass(frozen=True)
class Statistic:
    """One number per run, computed from its metric lines (see statistics.run_statistic).

    kinds:
      mean_over_steps       mean of `metric` over every recorded step (area under the curve)
      final                 the last recorded value of `metric`
      median_after_warmup   median over the steps >= warmup * steps and over every metric that
                            matches the fnmatch pattern `metric` (e.g. one per measured layer),
                            after `transform` ("one_minus": 1 - v, for cosines)
      max_ratio_over_steps  max over steps and layers of `metric` / `denominator` (patterns
                            with one `*` for the layer, matched layer by layer)
      outlier_ratio         median after warm-up of λ_max / Q_q(|λ|), Q_q the q-quantile of the
                            SLQ spectral density's mass (`hessian/density[_grid]`), q = `quantile`
      lambda_max_times_lr_over_2
                            median over the last `tail` share of the probe steps of
                            λ_max · lr / 2 (1 at the edge of stability)
    """

    kind: str
    metric: str
    denominator: str | None = None
    warmup: float = 0.1
    transform: str | None = None
    quantile: float = 0.99
    tail: float = 0.5
    min_points: int = 1

    def describe(self) -> str:
        """The statistic in words, for tables and docs."""
        what = f"`{self.metric}`" + (" (1 − value)" if self.transform == "one_minus" else "")
        if self.kind == "mean_over_steps":
            return f"mean of {what} over all steps"
        if self.kind == "final":
            return f"final {what}"
        if self.kind == "median_after_warmup":
            return (
                f"median of {what} over probe steps after the first {self.warmup:.0%} of "
                "training (and over the measured layers)"
            )
        if self.kind == "max_ratio_over_steps":
            return f"max over recorded steps and layers of {what} / `{self.denominator}`"
        if self.kind == "outlier_ratio":
            return (
                f"median after the first {self.warmup:.0%} of training of λ_max / the "
                f"{self.quantile:.0%} quantile of |λ| under the SLQ density (outlier gap)"
            )
        if self.kind == "lambda_max_times_lr_over_2":
            return f"median of λ_max · lr / 2 over the last {self.tail:.0%} of the probe steps"
        raise ValueError(f"unknown statistic kind {self.kind!r}")


@dataclass(frozen=True)
class Precondition:
    """A check on the runs of one or both arms; failing it makes the verdict inconclusive.

    kinds:
      left_chance         the arm's nets left chance: final test accuracy (or, without one, the
                          mean training accuracy of the last 10 % of steps) > 1/classes + margin
      loss_fell           the arm's final training loss <= factor x its first training loss
      started_below_edge  the first λ_max < factor x 2 / lr (so it has room to rise to 2/lr)
    `arms`: "treatment", "control" or both.
    """

    kind: str
    arms: tuple[str, ...] = ("treatment", "control")
    margin: float = 0.1
    factor: float = 0.5

    def describe(self) -> str:
        """The precondition in words, for tables and docs."""
        who = " and ".join(self.arms)
        if self.kind == "left_chance":
            return f"{who} left chance (test acc > chance + {self.margin:g})"
        if self.kind == "loss_fell":
            return f"{who} training loss fell to <= {self.factor:g} x its first value"
        if self.kind == "started_below_edge":
            return f"first λ_max < {self.factor:g} x 2/lr (room to rise)"
        raise ValueError(f"unknown precondition kind {self.kind!r}")


@dataclass(frozen=True)
class Claim:
    """One testable statement.

    Attributes:
        id: stable identifier (claims.json, links, tests).
        figure: the figure it reads, as the report names it (e.g. "fig4"; links).
        source: the paper that makes the claim ("Santurkar et al. 2018, Fig. 4").
        statement: the claim in words.
        presets: the experiment presets whose runs it reads (config key `experiment`).
        where: config values every read run must have (e.g. {"optim.lr": 0.1}).
        compare: the config key the arms differ in ("norm.name", "model.shortcut"); None for
            a claim about one arm.
        treatment, control: that key's value in each arm (control None for a single arm).
        statistic: the per-run statistic.
        comparison: "ratio" (treatment / control, intervals on the log scale), "difference"
            (treatment - control) or "single" (the treatment's statistic itself).
        direction: ">" (effect above null), "<" (below) or "within" (inside band).
        null: the value the interval must clear (1 for a ratio, 0 for a difference unless a
            margin is part of the claim).
        band: (low, high) for direction "within".
        every_run: a claim about every recorded step of every run: it holds when every seed
            satisfies the direction, fails on any seed that does not (no interval needed).
        preconditions: checks on the arms' runs (besides "every run finished").
        allow_diverged: arms whose diverged runs count (with the statistic's diverged value:
            chance accuracy), instead of failing the "finished" precondition.
        needs: for a claim the shipped presets or probes do not measure yet: what it needs.
        scale_note: why this claim's verdict at the small scales (smoke/cpu) is expected to
            differ from the paper scale, a measured reason; None when no difference is known.
        note: what smoothbench measured that explains a verdict other than "holds" at any
            scale (e.g. a measurement that cannot show the effect by construction); shown in
            the why of a failing or inconclusive verdict and in docs/claims.md.
    """

    id: str
    figure: str
    source: str
    statement: str
    presets: tuple[str, ...]
    statistic: Statistic
    comparison: str
    direction: str
    compare: str | None = "norm.name"
    treatment: Any = "batch"
    control: Any = "none"
    where: dict[str, Any] = field(default_factory=dict)
    null: float | None = None
    band: tuple[float, float] | None = None
    every_run: bool = False
    preconditions: tuple[Precondition, ...] = ()
    allow_diverged: tuple[str, ...] = ()
    needs: str | None = None
    scale_note: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(
                f"claim {self.id}: comparison {self.comparison!r} not in {COMPARISONS}"
            )
        if self.direction not in DIRECTIONS:
            raise ValueError(f"claim {self.id}: direction {self.direction!r} not in {DIRECTIONS}")
        if self.statistic.kind not in STATISTIC_KINDS:
            raise ValueError(f"claim {self.id}: statistic {self.statistic.kind!r} unknown")
        if (self.direction == "within") != (self.band is not None):
            raise ValueError(f"claim {self.id}: a band goes with direction 'within' only")
        if (self.comparison == "single") != (self.compare is None):
            raise ValueError(f"claim {self.id}: a single-arm claim has no compared key")
        for pre in self.preconditions:
            if pre.kind not in PRECONDITION_KINDS:
                raise ValueError(f"claim {self.id}: precondition {pre.kind!r} unknown")

    @property
    def null_value(self) -> float:
        """The value the effect is compared with (1 for ratios, 0 for differences)."""
        if self.null is not None:
            return self.null
        return 1.0 if self.comparison == "ratio" else 0.0

    def arm_words(self, arm: str) -> str:
        """'norm=batch' for the treatment arm, and so on."""
        value = self.treatment if arm == "treatment" else self.control
        return f"{CONDITION_WORDS.get(self.compare or '', self.compare)}={_words(value)}"

    def effect_words(self) -> str:
        """What the effect is, e.g. 'batch / none' or 'noisy_batch − batch'."""
        if self.comparison == "single":
            return "value"
        sign = " / " if self.comparison == "ratio" else " − "
        if self.compare == "norm.name":
            return f"{self.treatment}{sign}{self.control}"
        return f"{self.arm_words('treatment')}{sign}{self.arm_words('control')}"

    def direction_words(self) -> str:
        """The expected direction, e.g. 'batch / none < 1'."""
        if self.direction == "within":
            low, high = self.band  # type: ignore[misc]
            return f"{low:g} < {self.effect_words()} < {high:g}"
        prefix = "every run: " if self.every_run else ""
        return f"{prefix}{self.effect_words()} {self.direction} {self.null_value:g}"

    def where_words(self) -> str:
        """The fixed conditions in words ('lr=0.1, shortcut=True'), '' when none."""
        return ", ".join(f"{CONDITION_WORDS.get(k, k)}={_words(v)}" for k, v in self.where.items())


def _words(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------------
# the table

SANTURKAR = "Santurkar et al. 2018"
CHANCE = Precondition("left_chance")
BOTH_TRAIN = (CHANCE,)
DLN_TRAINS = (Precondition("loss_fell", factor=0.5),)
# A probe-based statistic needs a few points after warm-up to be a median of anything.
PROBE_POINTS = 3


def _median(metric: str, transform: str | None = None) -> Statistic:
    return Statistic("median_after_warmup", metric, transform=transform, min_points=PROBE_POINTS)


TRAIN_AUC = Statistic("mean_over_steps", "train/acc", min_points=10)
FINAL_TEST = Statistic("final", "test/acc")


def _training_claims() -> list[Claim]:
    return [
        Claim(
            id="bn_trains_faster",
            figure="fig1",
            source=f"{SANTURKAR}, Fig. 1",
            statement="At lr 0.1, VGG with BatchNorm trains faster than without: its training "
            "accuracy, averaged over the run, is higher.",
            presets=("fig1",),
            where={"optim.lr": 0.1},
            statistic=TRAIN_AUC,
            comparison="difference",
            direction=">",
            preconditions=BOTH_TRAIN,
        ),
        Claim(
            id="bn_tolerates_high_lr",
            figure="fig1",
            source=f"{SANTURKAR}, Fig. 1",
            statement="At lr 0.5, VGG with BatchNorm trains and reaches a higher final test "
            "accuracy than without (a diverged standard net counts at chance).",
            presets=("fig1",),
            where={"optim.lr": 0.5},
            statistic=FINAL_TEST,
            comparison="difference",
            direction=">",
            preconditions=(Precondition("left_chance", arms=("treatment",)),),
            allow_diverged=("control",),
        ),
    ]


def _distribution_claims() -> list[Claim]:
    claims = []
    for moment, words in (("mean", "means"), ("var", "variances")):
        claims.append(
            Claim(
                id=f"bn_{moment}_not_more_stable",
                figure="fig1",
                source=f"{SANTURKAR}, Figs 1c, 2, 8",
                statement=f"BatchNorm does not make the activation distributions more stable: "
                f"the per-unit {words} of the measured layers change between measurements at "
                "least 0.8 times as much as without BN (non-inferiority margin 0.8).",
                presets=("fig1",),
                where={"optim.lr": 0.1},
                statistic=_median(f"act/layer*/{moment}_change"),
                comparison="ratio",
                direction=">",
                null=0.8,
                preconditions=BOTH_TRAIN,
            )
        )
    claims.append(
        Claim(
            id="noisy_bn_trains_like_bn",
            figure="fig2",
            source=f"{SANTURKAR}, Fig. 2",
            statement="Noisy BatchNorm (Algorithm 1) trains nearly as well as BatchNorm: its "
            "run-averaged training accuracy is at most 0.05 below BN's.",
            presets=("fig2",),
            treatment="noisy_batch",
            control="batch",
            statistic=TRAIN_AUC,
            comparison="difference",
            direction=">",
            null=-0.05,
            preconditions=BOTH_TRAIN,
        )
    )
    claims.append(
        Claim(
            id="noisy_bn_moments_change_more",
            figure="fig8",
            source=f"{SANTURKAR}, Figs 2, 8",
            statement="Noisy BatchNorm's activation means change more between measurements "
            "than the standard net's, although it trains about as well as BN.",
            presets=("fig2",),
            treatment="noisy_batch",
            control="none",
            statistic=_median("act/layer*/mean_change"),
            comparison="ratio",
            direction=">",
            preconditions=BOTH_TRAIN,
        )
    )
    claims.append(
        Claim(
            id="noise_without_bn_hurts",
            figure="fig2",
            source=f"{SANTURKAR}, §2.1",
            statement="The same noise without BatchNorm (norm=noise) hurts the standard net: its "
            "run-averaged training accuracy is lower than the standard net's.",
            presets=("fig2",),
            treatment="noise",
            control="none",
            statistic=TRAIN_AUC,
            comparison="difference",
            direction="<",
            preconditions=(Precondition("left_chance", arms=("control",)),),
            allow_diverged=("treatment",),
        )
    )
    return claims


def _ics_claims() -> list[Claim]:
    claims = []
    for net, preset, figure, pre in (
        ("vgg", "fig3", "fig3", BOTH_TRAIN),
        ("dln", "fig3_dln", "fig3_dln", DLN_TRAINS),
    ):
        for measure, metric, transform, words in (
            ("l2", "ics/layer*/l2", None, "the ℓ2 difference ‖G − G′‖"),
            ("cosine", "ics/layer*/cosine", "one_minus", "1 − cos(G, G′)"),
        ):
            claims.append(
                Claim(
                    id=f"bn_no_ics_reduction_{net}_{measure}",
                    figure=figure,
                    source=f"{SANTURKAR}, Fig. 3",
                    statement=f"BatchNorm does not reduce internal covariate shift in the "
                    f"{net.upper()}: {words} with BN is at least 0.8 times the standard "
                    "net's (non-inferiority margin 0.8).",
                    presets=(preset,),
                    statistic=_median(metric, transform),
                    comparison="ratio",
                    direction=">",
                    null=0.8,
                    preconditions=pre,
                )
            )
    return claims


SMOOTHNESS = (
    ("loss_variation", "landscape/loss_variation", "loss variation along the gradient"),
    ("grad_change", "landscape/grad_pred_max", "gradient change ‖g_η − g‖ (max over η)"),
    ("beta", "landscape/beta_smoothness", "effective β-smoothness"),
)


def _smoothness_claims() -> list[Claim]:
    claims = []
    for net, preset, pre, fig in (
        ("vgg", "fig4", BOTH_TRAIN, "Fig. 4"),
        ("dln", "fig10", DLN_TRAINS, "Fig. 10"),
    ):
        for name, metric, words in SMOOTHNESS:
            claims.append(
                Claim(
                    id=f"bn_lowers_{name}_{net}",
                    figure=preset,
                    source=f"{SANTURKAR}, {fig}",
                    statement=f"BatchNorm lowers the {words} of the {net.upper()}.",
                    presets=(preset,),
                    statistic=_median(metric),
                    comparison="ratio",
                    direction="<",
                    preconditions=pre,
                )
            )
    return claims


def _lp_claims() -> list[Claim]:
    claims = []
    for norm, words in (("l1", "ℓ1"), ("l2", "ℓ2"), ("linf", "ℓ∞")):
        claims.append(
            Claim(
                id=f"{norm}_trains_like_bn",
                figure="lp",
                source=f"{SANTURKAR}, §3.3, Fig. 5",
                statement=f"{words} normalization trains like BatchNorm: its run-averaged "
                "training accuracy is at most 0.05 below BN's.",
                presets=("lp",),
                treatment=norm,
                control="batch",
                statistic=TRAIN_AUC,
                comparison="difference",
                direction=">",
                null=-0.05,
                preconditions=BOTH_TRAIN,
            )
        )
        for net, preset, pre, fig in (
            ("vgg", "lp", BOTH_TRAIN, "Fig. 12"),
            ("dln", "lp_dln", DLN_TRAINS, "Fig. 13"),
        ):
            claims.append(
                Claim(
                    id=f"{norm}_smooths_like_bn_{net}",
                    figure=preset,
                    source=f"{SANTURKAR}, {fig}",
                    statement=f"{words} normalization lowers the loss variation along the "
                    f"gradient of the {net.upper()}, as BatchNorm does.",
                    presets=(preset,),
                    treatment=norm,
                    control="none",
                    statistic=_median("landscape/loss_variation"),
                    comparison="ratio",
                    direction="<",
                    preconditions=pre,
                )
            )
    return claims


def _hessian_claims() -> list[Claim]:
    claims = []
    for name, metric, words in (
        ("lambda_max", "hessian/lambda_max", "the top Hessian eigenvalue λ_max"),
        ("trace", "hessian/trace", "the Hessian trace"),
    ):
        claims.append(
            Claim(
                id=f"bn_lowers_{name}",
                figure="hessian",
                source="Santurkar et al. 2018 §4; Yao et al. 2020 (PyHessian)",
                statement=f"BatchNorm lowers {words} of ResNets with shortcuts.",
                presets=("hessian",),
                where={"model.shortcut": True},
                statistic=_median(metric),
                comparison="ratio",
                direction="<",
                preconditions=BOTH_TRAIN,
            )
        )
        claims.append(
            Claim(
                id=f"shortcut_lowers_{name}",
                figure="hessian",
                source="Li et al. 2018; Yao et al. 2020 (PyHessian)",
                statement=f"Shortcuts lower {words} of ResNets without BatchNorm.",
                presets=("hessian",),
                where={"norm.name": "none"},
                compare="model.shortcut",
                treatment=True,
                control=False,
                statistic=_median(metric),
                comparison="ratio",
                direction="<",
                preconditions=BOTH_TRAIN,
            )
        )
    claims.append(
        Claim(
            id="bn_damping_every_step",
            figure="fig4",
            source=f"{SANTURKAR}, Thm 4.1",
            statement="Thm 4.1's damping holds at every recorded step and BN layer: the input "
            "gradient ‖∇_y L‖ is at most the theorem's right-hand side, (γ/σ)·‖g‖ with g's mean "
            "and its component along ŷ removed, summed over channels (within 0.1 % for "
            "rounding). The logged ratio ‖∇_y L‖/‖∇_z L‖ against the RMS of γ/σ is no check of "
            "it: with uneven γ_c/σ_c the ratio may exceed the RMS.",
            presets=("fig1", "fig2", "fig4", "lp"),
            compare=None,
            treatment=None,
            control=None,
            statistic=Statistic(
                "max_ratio_over_steps",
                "bn/layer*/grad_in_norm",
                denominator="bn/layer*/identity_rhs",
            ),
            comparison="single",
            direction="<",
            null=1.001,
            every_run=True,
            where={"norm.name": "batch"},
        )
    )
    return claims


def _literature_claims() -> list[Claim]:
    return [
        Claim(
            id="bn_removes_hessian_outliers",
            figure="hessian",
            source="Ghorbani et al. 2019",
            statement="Without BatchNorm the Hessian spectrum has isolated outlier eigenvalues "
            "far above the bulk; BatchNorm removes them: λ_max relative to the bulk's edge is "
            "lower with BN.",
            presets=("hessian",),
            where={"model.shortcut": True},
            statistic=Statistic("outlier_ratio", "hessian/lambda_max", min_points=PROBE_POINTS),
            comparison="ratio",
            direction="<",
            preconditions=BOTH_TRAIN,
        ),
        Claim(
            id="edge_of_stability",
            figure="eos",
            source="Cohen et al. 2021",
            statement="Under full-batch gradient descent at a constant lr, λ_max rises to about "
            "2/lr and hovers there: late in training λ_max · lr / 2 lies in (0.8, 1.5).",
            presets=("eos", "hessian"),
            where={"optim.full_batch": True, "optim.schedule": "constant", "norm.name": "none"},
            compare=None,
            treatment=None,
            control=None,
            statistic=Statistic(
                "lambda_max_times_lr_over_2", "hessian/lambda_max", min_points=PROBE_POINTS
            ),
            comparison="single",
            direction="within",
            band=(0.8, 1.5),
            preconditions=(Precondition("started_below_edge", arms=("treatment",), factor=0.8),),
        ),
    ]


# ---------------------------------------------------------------------------------------------
# what smoothbench measured about the claims: a note is quoted in the why of a verdict the data
# decide against the claim (or leave open); a scale note stands beside the agreement of the cpu
# and paper verdicts. Each is a measurement, with where it was taken.

# Why the activation-moment claims fail at every scale (measured on fig1 at scale=cpu, lr 0.1).
MOMENTS_AFTER_NORM = (
    "the activations are measured after the norm layer (Figs 1c, 2, 8), where a BN unit's batch "
    "mean and variance are β and ≈ γ² by construction, so they move only as fast as β and γ "
    "learn: BN's means changed 0.048 [0.036, 0.064] times as much as the standard net's, its "
    "variances 0.17 [0.10, 0.28] times (VGG-11, layers #2 and #7, four seeds). The paper judges "
    "Fig. 1c's "
    "histograms by eye; its argument that stability is not what helps rests on noisy BN "
    "(noisy_bn_trains_like_bn, noisy_bn_moments_change_more)"
)
# Why a short VGG run may not show Fig. 4 (conf/regime/fig4_cpu.yaml has the measurements).
VGG_SLOW_START = (
    "the standard VGG's landscape roughens only once it leaves its slow start: VGG-11 at width "
    "1/8 (lr 0.1) did so around step 300-500, and at 400 steps BN / standard loss variation was "
    "1.31 [0.98, 1.74] over five seeds, against 0.52 [0.47, 0.57] at 1,000 steps; a shorter "
    "budget than the preset's compares BN with a net that has barely started"
)
# Why the DLN landscape claims do not hold (conf/experiment/fig10.yaml has the measurements).
DLN_NOT_SMOOTHER = (
    "with full-batch GD on the 25-layer DLN, BN's landscape is not smoother at any lr measured: "
    "at lr 5e-4 (both nets train, below the edge of stability) BN / standard loss variation "
    "13.5 [2.9, 63] over ten seeds, β 1.27 [0.67, 2.4]; at 2e-4 the standard DLN does not "
    "train and BN's loss variation is 39x; at the paper's 1e-3 (1e-6 on the summed loss) the "
    "standard net overshoots the edge of stability early and the ratios range over 1e-4..4 "
    "between seeds; at matched loss BN's β is 10-350x the standard net's"
)
LP_DLN_NOT_SMOOTHER = (
    "BatchNorm itself does not lower the DLN's loss variation (bn_lowers_loss_variation_dln), "
    "so the paper's 'as BatchNorm does' has no effect to match on this net"
)
# Why the shortcut claims are inconclusive at scale=cpu (conf/regime/resnet_cpu.yaml).
PLAIN_RESNET_AT_CHANCE = (
    "at scale=cpu (ResNet-20 at width 1/4, 400 steps) the plain net without BN and without "
    "shortcuts stays at chance at every lr tried (0.1, 0.05, 0.02; Glorot init halves the "
    "signal's variance at each of its 19 ReLU layers), so the comparison is inconclusive there; "
    "whether it trains in the paper-scale budget (64,000 steps) is not measured yet"
)
# Measured in `scripts/reproduce.sh cpu` (VGG-11 at width 1/8; ResNet-20 at width 1/4).
NOISY_BN_AT_MARGIN = (
    "noisy BN's run-averaged training accuracy was 0.042-0.063 below BN's over four seeds "
    "(300 steps): the gap sits on the claim's 0.05 margin, so the interval straddles it"
)
ICS_COSINE_SPREAD = (
    "1 − cos(G, G′) with BN / without varied between seeds from 0.40 to 3.0 for the VGG (six "
    "seeds, 300 steps; geometric mean 1.18) and from 0.49 to 18 for the DLN (five seeds): on "
    "average BN does not reduce it, but single seeds do, so the interval reaches below 0.8"
)
BN_TRACE_LARGER = (
    "with shortcuts, BN's Hessian trace was 3.6x, 2.1x and 1.2x the standard ResNet's (three "
    "seeds, 400 steps) while its λ_max was 0.39x in every seed: BN lowers the top of the "
    "spectrum (bn_removes_hessian_outliers), not its bulk"
)
L1_SMOOTHS_LESS = (
    "ℓ1 normalization smooths the VGG less than BN: its loss variation was 0.70-1.09 times the "
    "standard net's over five seeds (1,000 steps; geometric mean 0.87), where BN's was 0.52, "
    "ℓ2's 0.64 and ℓ∞'s 0.44 (fig4, lp at scale=cpu)"
)
NOTES: dict[str, str] = {
    "noisy_bn_trains_like_bn": NOISY_BN_AT_MARGIN,
    "l1_smooths_like_bn_vgg": L1_SMOOTHS_LESS,
    "bn_no_ics_reduction_vgg_cosine": ICS_COSINE_SPREAD,
    "bn_no_ics_reduction_dln_cosine": ICS_COSINE_SPREAD,
    "bn_lowers_trace": BN_TRACE_LARGER,
    "bn_mean_not_more_stable": MOMENTS_AFTER_NORM,
    "bn_var_not_more_stable": MOMENTS_AFTER_NORM,
    "bn_lowers_loss_variation_vgg": VGG_SLOW_START,
    "bn_lowers_grad_change_vgg": VGG_SLOW_START,
    "bn_lowers_beta_vgg": VGG_SLOW_START,
    "bn_lowers_loss_variation_dln": DLN_NOT_SMOOTHER,
    "bn_lowers_grad_change_dln": DLN_NOT_SMOOTHER,
    "bn_lowers_beta_dln": DLN_NOT_SMOOTHER,
    "l2_smooths_like_bn_vgg": VGG_SLOW_START,
    "linf_smooths_like_bn_vgg": VGG_SLOW_START,
    "l1_smooths_like_bn_dln": LP_DLN_NOT_SMOOTHER,
    "l2_smooths_like_bn_dln": LP_DLN_NOT_SMOOTHER,
    "linf_smooths_like_bn_dln": LP_DLN_NOT_SMOOTHER,
}
SCALE_NOTES: dict[str, str] = {
    "shortcut_lowers_lambda_max": PLAIN_RESNET_AT_CHANCE,
    "shortcut_lowers_trace": PLAIN_RESNET_AT_CHANCE,
}


def _with_findings(claims: list[Claim]) -> tuple[Claim, ...]:
    """The claims with their measured notes (NOTES, SCALE_NOTES) attached."""
    unknown = (set(NOTES) | set(SCALE_NOTES)) - {c.id for c in claims}
    if unknown:  # pragma: no cover - a typo in the findings
        raise RuntimeError(f"notes for unknown claims: {', '.join(sorted(unknown))}")
    return tuple(
        replace(c, note=NOTES.get(c.id, c.note), scale_note=SCALE_NOTES.get(c.id, c.scale_note))
        for c in claims
    )


CLAIMS: tuple[Claim, ...] = _with_findings(
    _training_claims()
    + _distribution_claims()
    + _ics_claims()
    + _smoothness_claims()
    + _lp_claims()
    + _hessian_claims()
    + _literature_claims()
)
CLAIMS_BY_ID: dict[str, Claim] = {c.id: c for c in CLAIMS}
if len(CLAIMS_BY_ID) != len(CLAIMS):  # pragma: no cover - a typo in the table
    raise RuntimeError("claim ids are not unique")


def presets_read() -> tuple[str, ...]:
    """Every preset some claim reads, in table order."""
    return tuple(dict.fromkeys(p for c in CLAIMS for p in c.presets))


def metric_patterns(claims: tuple[Claim, ...] = CLAIMS) -> list[str]:
    """The metric names (fnmatch patterns) the claims read: what to load, and nothing else."""
    patterns = ["train/acc", "test/acc", "train/loss"]
    for claim in claims:
        stat = claim.statistic
        patterns += [stat.metric] + ([stat.denominator] if stat.denominator else [])
        if stat.kind == "outlier_ratio":
            patterns += ["hessian/density", "hessian/density_grid"]
    return list(dict.fromkeys(patterns))
