"""The claims smoothbench tests: one table (`CLAIMS`), each claim a plain, declarative record.

A claim names the runs it reads (presets and the conditions of its two arms), the statistic it
computes per run, how the arms are compared (a ratio or a difference, per seed), the direction
the paper (or the wider literature) reports, and the preconditions under which the comparison
means anything. `smoothbench.claims.statistics` evaluates them; nothing here computes.

Reading a claim: "treatment vs control" is e.g. "norm=batch vs norm=none"; the effect per seed
is treatment / control (ratio) or treatment - control (difference), and the claim holds when
the confidence interval of that effect across seeds lies on the stated side of `null`.

Two things a claim does not hold here: its figure (and by default its preset) comes from the
figure table, `smoothbench.paper`, whose rows list the ids of the claims they back; and what
smoothbench measured about it (why a verdict is what it is, or why it differs by scale) is
data, `notes.yaml`, read by `smoothbench.claims.notes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from smoothbench import paper
from smoothbench.claims.notes import by_claim, load_notes

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
# What a claim is. "paper": a finding of a paper, decided by data; these form the family that
# Holm's correction runs over. "check": a sanity check of the measurement itself (an identity,
# noise that is injected by design): its outcome follows from the construction, so it is
# reported in a table of its own and never counted as a finding. "sensitivity": a paper claim
# re-evaluated at another setting of the protocol (e.g. the DLN at half and twice the lr):
# reported beside the primary verdict, never replacing it, and outside the Holm family.
KINDS = ("paper", "check", "sensitivity")
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
        figure: the figure it reads, as the report names it (e.g. "fig4"; links): the row of
            the figure table (smoothbench.paper) that lists the claim's id.
        source: the paper that makes the claim ("Santurkar et al. 2018, Fig. 4").
        statement: the claim in words.
        presets: the experiment presets whose runs it reads (config key `experiment`): its
            figure's preset unless the claim names others.
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
            differ from the paper scale, a measured reason (notes.yaml); None when no
            difference is known.
        note: what smoothbench measured that explains a verdict other than "holds" at any
            scale (e.g. a measurement that cannot show the effect by construction; notes.yaml);
            shown in the why of a failing or inconclusive verdict and in docs/claims.md.
        kind: "paper", "check" or "sensitivity" (see KINDS).
        beside: statistics of the treatment arm reported beside the verdict (mean over seeds),
            never deciding it (e.g. γ/σ beside the damping ratio of Thm 4.1).
        of: for a sensitivity claim, the id of the paper claim it re-evaluates.
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
    kind: str = "paper"
    beside: tuple[Statistic, ...] = ()
    of: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id}: kind {self.kind!r} not in {KINDS}")
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
# The DLN's protocol lr: the paper's 1e-6 on the loss summed over the 1,000 samples is 1e-3 on
# smoothbench's loss averaged over them (the gradient is 1,000x smaller, so the GD trajectory is
# the same); the assumption is that the paper's loss is the sum, which its lr of 1e-6 implies.
DLN_LR = 1e-3
DLN_PRIMARY = {"optim.lr": DLN_LR}
# Half and twice that lr: a sensitivity reported beside the primary verdict (fig10 sweeps them).
DLN_SENSITIVITY = {"0.5": 5e-4, "2": 2e-3}
CHANCE = Precondition("left_chance")
BOTH_TRAIN = (CHANCE,)
DLN_TRAINS = (Precondition("loss_fell", factor=0.5),)
# A probe-based statistic needs a few points after warm-up to be a median of anything.
PROBE_POINTS = 3


def _median(metric: str, transform: str | None = None) -> Statistic:
    return Statistic("median_after_warmup", metric, transform=transform, min_points=PROBE_POINTS)


def _claim(id: str, presets: tuple[str, ...] = (), **fields: Any) -> Claim:
    """A claim placed by the figure table (smoothbench.paper): its figure is the row that lists
    its id, and it reads that figure's preset unless `presets` names the ones it reads."""
    row = paper.figure_of_claim(id)
    return Claim(id=id, figure=row.name, presets=presets or (row.preset,), **fields)


TRAIN_AUC = Statistic("mean_over_steps", "train/acc", min_points=10)
FINAL_TEST = Statistic("final", "test/acc")


def _training_claims() -> list[Claim]:
    return [
        _claim(
            id="bn_trains_faster",
            source=f"{SANTURKAR}, Fig. 1",
            statement="At lr 0.1, VGG with BatchNorm trains faster than without: its training "
            "accuracy, averaged over the run, is higher.",
            where={"optim.lr": 0.1},
            statistic=TRAIN_AUC,
            comparison="difference",
            direction=">",
            preconditions=BOTH_TRAIN,
        ),
        _claim(
            id="bn_tolerates_high_lr",
            source=f"{SANTURKAR}, Fig. 1",
            statement="At lr 0.5, VGG with BatchNorm trains and reaches a higher final test "
            "accuracy than without (a diverged standard net counts at chance).",
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
            _claim(
                id=f"bn_{moment}_not_more_stable",
                source=f"{SANTURKAR}, Figs 1c, 2, 8",
                statement=f"BatchNorm does not make the activation distributions more stable: "
                f"at the input of the next layer (after norm, noise and ReLU), the batch "
                f"{words} of individual activations change between measurements, relative to "
                "their spread (|Δμ|/σ, |Δvar|/var), at least 0.8 times as much as without BN "
                "(non-inferiority margin 0.8).",
                where={"optim.lr": 0.1},
                statistic=_median(f"act/layer*/{moment}_change_rel"),
                comparison="ratio",
                direction=">",
                null=0.8,
                preconditions=BOTH_TRAIN,
            )
        )
    claims.append(
        _claim(
            id="noisy_bn_trains_like_bn",
            source=f"{SANTURKAR}, Fig. 2",
            statement="Noisy BatchNorm (Algorithm 1) trains nearly as well as BatchNorm: its "
            "run-averaged training accuracy is at most 0.05 below BN's.",
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
        _claim(
            id="noisy_bn_moments_change_more",
            source=f"{SANTURKAR}, Figs 2, 8",
            statement="Check that the noise of Algorithm 1 is injected: noisy BatchNorm's "
            "activation means at the next layer's input move more between measurements (raw "
            "|Δμ|) than the standard net's. The noise's shift is redrawn every step (μ_j ~ "
            "U(−0.5, 0.5) per channel), so this follows from the construction; it is a check, "
            "not a finding. (Relative to each unit's spread, |Δμ|/σ, the noise also widens σ, "
            "and the comparison is the paper claims' business, not this check's.)",
            kind="check",
            treatment="noisy_batch",
            control="none",
            statistic=_median("act/layer*/mean_change"),
            comparison="ratio",
            direction=">",
            preconditions=BOTH_TRAIN,
        )
    )
    claims.append(
        _claim(
            id="noise_without_bn_hurts",
            source=f"{SANTURKAR}, §2.1",
            statement="The same noise without BatchNorm (norm=noise) hurts the standard net: its "
            "run-averaged training accuracy is lower than the standard net's.",
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
    for net, pre, where in (("vgg", BOTH_TRAIN, {}), ("dln", DLN_TRAINS, DLN_PRIMARY)):
        for measure, metric, transform, words in (
            # scale-free: BN changes the gradient's scale, so the raw ‖G − G′‖ (logged as
            # ics/layerK/l2) compares two scales as much as two shifts
            ("l2", "ics/layer*/l2_rel", None, "the relative ℓ2 difference ‖G − G′‖/‖G‖"),
            ("cosine", "ics/layer*/cosine", "one_minus", "1 − cos(G, G′)"),
        ):
            claims.append(
                _claim(
                    id=f"bn_no_ics_reduction_{net}_{measure}",
                    source=f"{SANTURKAR}, Fig. 3",
                    statement=f"BatchNorm does not reduce internal covariate shift in the "
                    f"{net.upper()}: {words} with BN is at least 0.8 times the standard "
                    "net's (non-inferiority margin 0.8).",
                    where=where,
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
    for net, pre, fig, where in (
        ("vgg", BOTH_TRAIN, "Fig. 4", {}),
        ("dln", DLN_TRAINS, "Fig. 10", DLN_PRIMARY),
    ):
        for name, metric, words in SMOOTHNESS:
            claims.append(
                _claim(
                    id=f"bn_lowers_{name}_{net}",
                    source=f"{SANTURKAR}, {fig}",
                    statement=f"BatchNorm lowers the {words} of the {net.upper()}.",
                    where=where,
                    statistic=_median(metric),
                    comparison="ratio",
                    direction="<",
                    preconditions=pre,
                )
            )
    return claims


def _sensitivity_claims(claims: list[Claim]) -> list[Claim]:
    """The DLN landscape claims at half and twice the mapped paper lr (reported, not counted)."""
    out = []
    for claim in claims:
        if claim.where.get("optim.lr") != DLN_LR or claim.presets != ("fig10",):
            continue
        for factor, lr in DLN_SENSITIVITY.items():
            out.append(
                replace(
                    claim,
                    id=f"{claim.id}_lr_x{factor}",
                    statement=f"{claim.statement} (at {factor}x the mapped paper lr: "
                    f"lr {lr:g}; a sensitivity of the protocol, not a replacement)",
                    where={**claim.where, "optim.lr": lr},
                    kind="sensitivity",
                    of=claim.id,
                )
            )
    return out


def _lp_claims() -> list[Claim]:
    claims = []
    for norm, words in (("l1", "ℓ1"), ("l2", "ℓ2"), ("linf", "ℓ∞")):
        claims.append(
            _claim(
                id=f"{norm}_trains_like_bn",
                source=f"{SANTURKAR}, §3.3, Fig. 5",
                statement=f"{words} normalization trains like BatchNorm: its run-averaged "
                "training accuracy is at most 0.05 below BN's.",
                treatment=norm,
                control="batch",
                statistic=TRAIN_AUC,
                comparison="difference",
                direction=">",
                null=-0.05,
                preconditions=BOTH_TRAIN,
            )
        )
        for net, pre, fig, where in (
            ("vgg", BOTH_TRAIN, "Fig. 12", {}),
            ("dln", DLN_TRAINS, "Fig. 13", DLN_PRIMARY),
        ):
            claims.append(
                _claim(
                    id=f"{norm}_smooths_like_bn_{net}",
                    source=f"{SANTURKAR}, {fig}",
                    statement=f"{words} normalization lowers the loss variation along the "
                    f"gradient of the {net.upper()}, as BatchNorm does.",
                    where=where,
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
            _claim(
                id=f"bn_lowers_{name}",
                source="Santurkar et al. 2018 §4; Yao et al. 2020 (PyHessian)",
                statement=f"BatchNorm lowers {words} of ResNets with shortcuts.",
                where={"model.shortcut": True},
                statistic=_median(metric),
                comparison="ratio",
                direction="<",
                preconditions=BOTH_TRAIN,
            )
        )
        claims.append(
            _claim(
                id=f"shortcut_lowers_{name}",
                source="Li et al. 2018; Yao et al. 2020 (PyHessian)",
                statement=f"Shortcuts lower {words} of ResNets without BatchNorm.",
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
        _claim(
            id="bn_damps_gradient",
            source=f"{SANTURKAR}, Thm 4.1",
            statement="Thm 4.1's mechanism: a BN layer damps the gradient it passes back: "
            "the median over probe steps (after warm-up) and BN layers of ‖∇_y L‖/‖∇_z L‖ "
            "is below 1 (γ/σ, which scales it, is reported beside it).",
            compare=None,
            treatment=None,
            control=None,
            statistic=_median("bn/layer*/grad_ratio"),
            comparison="single",
            direction="<",
            null=1.0,
            where={"norm.name": "batch", "optim.lr": 0.1},
            beside=(_median("bn/layer*/gamma_over_sigma"),),
        )
    )
    claims.append(
        _claim(
            id="bn_damping_every_step",
            source=f"{SANTURKAR}, Thm 4.1",
            kind="check",
            statement="Check of the bn probe: Thm 4.1's identity holds at every recorded step "
            "and BN layer: the input "
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
        _claim(
            id="bn_removes_hessian_outliers",
            source="Ghorbani et al. 2019",
            statement="Without BatchNorm the Hessian spectrum has isolated outlier eigenvalues "
            "far above the bulk; BatchNorm removes them: λ_max relative to the bulk's edge is "
            "lower with BN.",
            where={"model.shortcut": True},
            statistic=Statistic("outlier_ratio", "hessian/lambda_max", min_points=PROBE_POINTS),
            comparison="ratio",
            direction="<",
            preconditions=BOTH_TRAIN,
        ),
        _claim(
            id="edge_of_stability",
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
# what smoothbench measured about the claims (notes.yaml): a note is quoted in the why of a
# verdict the data decide against the claim (or leave open); a scale note stands beside the
# agreement of the cpu and paper verdicts. Each says where it was measured.


def _with_findings(claims: list[Claim]) -> tuple[Claim, ...]:
    """The claims with their measured notes (notes.yaml) attached."""
    measured = load_notes(SCALES)
    notes, scale_notes = by_claim(measured, "note"), by_claim(measured, "scale_note")
    unknown = (set(notes) | set(scale_notes)) - {c.id for c in claims}
    if unknown:
        raise ValueError(f"notes.yaml: notes for unknown claims: {', '.join(sorted(unknown))}")
    return tuple(
        replace(c, note=notes.get(c.id, c.note), scale_note=scale_notes.get(c.id, c.scale_note))
        for c in claims
    )


CLAIMS: tuple[Claim, ...] = _with_findings(
    _training_claims()
    + _distribution_claims()
    + _ics_claims()
    + _smoothness_claims()
    + _sensitivity_claims(_smoothness_claims())
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
        patterns += [extra.metric for extra in claim.beside]
        if stat.kind == "outlier_ratio":
            patterns += ["hessian/density", "hessian/density_grid"]
    return list(dict.fromkeys(patterns))
