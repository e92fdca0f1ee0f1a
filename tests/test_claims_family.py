"""Verdicts a reviewer accepts: Holm across the family, verdicts per budget, the matched-loss
effect, and every paper claim pinned to what the paper says (a literal table, not the registry).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from smoothbench.claims.family import apply_holm, holm_adjusted, prefix
from smoothbench.claims.matched import matched_ratio
from smoothbench.claims.registry import CLAIMS, CLAIMS_BY_ID
from smoothbench.claims.statistics import (
    RunData,
    Verdict,
    direction_p_values,
    evaluate_budgets,
    evaluate_claim,
)

# ---------------------------------------------------------------------------------------------
# the paper, pinned: (metric the statistic reads, comparison, direction, null, treatment,
# control), copied from Santurkar et al. 2018 (and Cohen et al., Ghorbani et al., Li et al. for
# the literature claims) by hand. A flipped direction, a wrong metric or arm fails here.
PAPER = {
    # Fig. 1: BN trains faster at lr 0.1 and tolerates lr 0.5
    "bn_trains_faster": ("train/acc", "difference", ">", 0.0, "batch", "none"),
    "bn_tolerates_high_lr": ("test/acc", "difference", ">", 0.0, "batch", "none"),
    # Figs 1c, 2, 8: BN's layer input distributions are not more stable (non-inferiority 0.8)
    "bn_mean_not_more_stable": ("act/layer*/mean_change_rel", "ratio", ">", 0.8, "batch", "none"),
    "bn_var_not_more_stable": ("act/layer*/var_change_rel", "ratio", ">", 0.8, "batch", "none"),
    # Fig. 2: noisy BN trains about as well as BN; the noise alone hurts the standard net
    "noisy_bn_trains_like_bn": ("train/acc", "difference", ">", -0.05, "noisy_batch", "batch"),
    "noise_without_bn_hurts": ("train/acc", "difference", "<", 0.0, "noise", "none"),
    # Fig. 3: BN does not reduce ICS (scale-free ℓ2, and 1 - cosine)
    "bn_no_ics_reduction_vgg_l2": ("ics/layer*/l2_rel", "ratio", ">", 0.8, "batch", "none"),
    "bn_no_ics_reduction_vgg_cosine": ("ics/layer*/cosine", "ratio", ">", 0.8, "batch", "none"),
    "bn_no_ics_reduction_dln_l2": ("ics/layer*/l2_rel", "ratio", ">", 0.8, "batch", "none"),
    "bn_no_ics_reduction_dln_cosine": ("ics/layer*/cosine", "ratio", ">", 0.8, "batch", "none"),
    # Figs 4, 10: BN lowers loss variation, gradient change and effective β-smoothness
    "bn_lowers_loss_variation_vgg": (
        "landscape/loss_variation",
        "ratio",
        "<",
        1.0,
        "batch",
        "none",
    ),
    "bn_lowers_grad_change_vgg": ("landscape/grad_pred_max", "ratio", "<", 1.0, "batch", "none"),
    "bn_lowers_beta_vgg": ("landscape/beta_smoothness", "ratio", "<", 1.0, "batch", "none"),
    "bn_lowers_loss_variation_dln": (
        "landscape/loss_variation",
        "ratio",
        "<",
        1.0,
        "batch",
        "none",
    ),
    "bn_lowers_grad_change_dln": ("landscape/grad_pred_max", "ratio", "<", 1.0, "batch", "none"),
    "bn_lowers_beta_dln": ("landscape/beta_smoothness", "ratio", "<", 1.0, "batch", "none"),
    # §3.3, Figs 5, 12, 13: ℓp normalizations train and smooth like BN
    "l1_trains_like_bn": ("train/acc", "difference", ">", -0.05, "l1", "batch"),
    "l2_trains_like_bn": ("train/acc", "difference", ">", -0.05, "l2", "batch"),
    "linf_trains_like_bn": ("train/acc", "difference", ">", -0.05, "linf", "batch"),
    "l1_smooths_like_bn_vgg": ("landscape/loss_variation", "ratio", "<", 1.0, "l1", "none"),
    "l2_smooths_like_bn_vgg": ("landscape/loss_variation", "ratio", "<", 1.0, "l2", "none"),
    "linf_smooths_like_bn_vgg": ("landscape/loss_variation", "ratio", "<", 1.0, "linf", "none"),
    "l1_smooths_like_bn_dln": ("landscape/loss_variation", "ratio", "<", 1.0, "l1", "none"),
    "l2_smooths_like_bn_dln": ("landscape/loss_variation", "ratio", "<", 1.0, "l2", "none"),
    "linf_smooths_like_bn_dln": ("landscape/loss_variation", "ratio", "<", 1.0, "linf", "none"),
    # §4 and PyHessian: BN lowers the curvature; Li et al.: shortcuts do too
    "bn_lowers_lambda_max": ("hessian/lambda_max", "ratio", "<", 1.0, "batch", "none"),
    "bn_lowers_trace": ("hessian/trace", "ratio", "<", 1.0, "batch", "none"),
    "shortcut_lowers_lambda_max": ("hessian/lambda_max", "ratio", "<", 1.0, True, False),
    "shortcut_lowers_trace": ("hessian/trace", "ratio", "<", 1.0, True, False),
    # Thm 4.1: BN damps the back-propagated gradient
    "bn_damps_gradient": ("bn/layer*/grad_ratio", "single", "<", 1.0, None, None),
    # Ghorbani et al. 2019: BN removes the Hessian's outliers
    "bn_removes_hessian_outliers": ("hessian/lambda_max", "ratio", "<", 1.0, "batch", "none"),
    # Cohen et al. 2021: λ_max hovers at 2/lr (band)
    "edge_of_stability": ("hessian/lambda_max", "single", "within", None, None, None),
}
CHECKS = {"bn_damping_every_step", "noisy_bn_moments_change_more"}


def test_every_paper_claim_says_what_the_paper_says():
    papers = {c.id: c for c in CLAIMS if c.kind == "paper"}
    assert set(papers) == set(PAPER), "a paper claim was added or dropped: pin it in PAPER"
    for cid, (metric, comparison, direction, null, treatment, control) in PAPER.items():
        claim = papers[cid]
        got = (claim.statistic.metric, claim.comparison, claim.direction)
        assert got == (metric, comparison, direction), cid
        if null is not None:
            assert claim.null_value == null, cid
        assert (claim.treatment, claim.control) == (treatment, control), cid
    assert CLAIMS_BY_ID["edge_of_stability"].band == (0.8, 1.5)


def test_checks_and_sensitivities_are_never_findings():
    assert {c.id for c in CLAIMS if c.kind == "check"} == CHECKS
    for claim in (c for c in CLAIMS if c.kind == "sensitivity"):
        primary = CLAIMS_BY_ID[claim.of]
        assert primary.kind == "paper" and primary.where["optim.lr"] == 1e-3
        assert claim.statistic == primary.statistic and claim.direction == primary.direction
        assert claim.where["optim.lr"] in (5e-4, 2e-3)
    # the DLN claims read the mapped paper lr: 1e-6 on the summed loss of 1,000 samples
    for cid in ("bn_lowers_beta_dln", "bn_no_ics_reduction_dln_l2", "l2_smooths_like_bn_dln"):
        assert CLAIMS_BY_ID[cid].where == {"optim.lr": 1e-3}


# ---------------------------------------------------------------------------------------------
# Holm


def test_holm_adjusted_p_values_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([]) == []
    assert holm_adjusted([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1


def _verdict(cid: str, p_holds: float, p_fails: float, verdict: str) -> Verdict:
    return Verdict(CLAIMS_BY_ID[cid], verdict, "5 seeds", p_holds=p_holds, p_fails=p_fails)


def test_holm_keeps_strong_claims_and_drops_marginal_ones():
    papers = [c.id for c in CLAIMS if c.kind == "paper"]
    strong = [_verdict(cid, 1e-7, 1.0, "holds") for cid in papers[:5]]
    strong.append(_verdict(papers[5], 1.0, 1e-7, "fails"))
    # uncorrected p = 0.02 each: decided alone, not among ten tests
    marginal = [_verdict(cid, 0.01, 0.99, "holds") for cid in papers[6:10]]
    check = _verdict("bn_damping_every_step", 0.01, 0.99, "holds")
    untested = Verdict(CLAIMS_BY_ID[papers[10]], "inconclusive", "net never left chance")
    verdicts = strong + marginal + [check, untested]
    apply_holm(verdicts, confidence=0.95)
    assert [v.verdict for v in strong] == ["holds"] * 5 + ["fails"]
    assert all(v.verdict == "inconclusive" for v in marginal)
    assert all("not under Holm across 10 claims" in v.why for v in marginal)
    assert [v.p_adjusted for v in marginal] == pytest.approx([0.08] * 4)
    assert all(v.family_size == 10 for v in strong + marginal)
    # checks and untested claims are outside the family
    assert check.verdict == "holds" and check.p_adjusted is None
    assert untested.verdict == "inconclusive" and untested.family_size is None


def test_one_claim_alone_is_its_own_family():
    marginal = _verdict("bn_trains_faster", 0.01, 0.99, "holds")
    apply_holm([marginal], confidence=0.95)
    assert marginal.verdict == "holds" and marginal.p_adjusted == pytest.approx(0.02)


@pytest.mark.parametrize("seed", range(5))
def test_p_values_decide_as_the_uncorrected_interval_does(seed):
    from smoothbench.claims.statistics import _side, t_interval

    rng = np.random.default_rng(seed)
    claim = CLAIMS_BY_ID["bn_lowers_beta_vgg"]  # ratio < 1
    for _ in range(50):
        effects = np.exp(rng.normal(rng.normal(0, 0.3), 0.3, size=int(rng.integers(3, 7))))
        low, high = t_interval(np.log(effects))
        side = _side(claim, math.exp(low), math.exp(high))
        p_holds, p_fails = direction_p_values(claim, effects)
        assert (side == "holds") == (p_holds < 0.025)
        assert (side == "fails") == (p_fails < 0.025)


def test_band_claims_test_both_edges():
    claim = CLAIMS_BY_ID["edge_of_stability"]  # 0.8 < value < 1.5
    inside = direction_p_values(claim, [1.0, 1.02, 0.99, 1.01])
    outside = direction_p_values(claim, [2.0, 2.1, 1.9, 2.05])
    assert inside[0] < 1e-4 and inside[1] > 0.99
    assert outside[0] > 0.99 and outside[1] < 1e-3


# ---------------------------------------------------------------------------------------------
# budgets and the matched-loss effect, on synthetic runs

STEPS = 1000


def _run(norm: str, seed: int, metric_at, loss_at, every: int = 50) -> RunData:
    """A fig4 run: train/loss every step, test/acc every 100, landscape every `every`."""
    steps = np.arange(STEPS + 1)
    probes = np.arange(0, STEPS + 1, every)
    evals = np.arange(100, STEPS + 1, 100)
    series = {
        "train/loss": (steps, [float(loss_at(s)) for s in steps]),
        "train/acc": (steps, [0.5] * len(steps)),
        "test/acc": (evals, [0.5] * len(evals)),
        "landscape/loss_variation": (probes, [float(metric_at(s, seed)) for s in probes]),
    }
    config = {"experiment": "fig4", "norm.name": norm, "seed": seed, "steps": STEPS}
    config.update({"scale": "cpu", "optim.lr": 0.1, "model.name": "vgg11"})
    return RunData(f"fig4/{norm}-{seed}", "finished", None, config, series)


def _budget_case(flip_at: int) -> list[RunData]:
    """BN's loss variation is the standard net's until `flip_at`, half of it after."""
    runs = []
    for seed in range(5):
        jitter = 1 + 0.02 * (seed - 2)  # effects spread around 1 before the flip
        runs.append(_run("none", seed, lambda s, k: 1.0, lambda s: 2.0 - s / STEPS))
        runs.append(
            _run(
                "batch",
                seed,
                lambda s, k, j=jitter: (1.0 if s < flip_at else 0.5) * j,
                lambda s: 2.0 - s / STEPS,
            )
        )
    return runs


def test_prefix_is_a_shorter_run():
    run = _budget_case(flip_at=500)[1]
    half = prefix(run, 0.5)
    assert half.config["steps"] == 500 and run.config["steps"] == STEPS
    steps, values = half.series["landscape/loss_variation"]
    assert steps.max() == 500 and len(values) == len(steps) == 11
    assert prefix(run, 1.0) is run


def test_a_verdict_that_appears_late_is_not_robust():
    claim = CLAIMS_BY_ID["bn_lowers_loss_variation_vgg"]
    (verdict,) = evaluate_budgets(_budget_case(flip_at=500), [claim])
    assert verdict.verdict == "holds"
    assert verdict.budgets == {
        "25%": "inconclusive",
        "50%": "inconclusive",
        "75%": "inconclusive",
        "100%": "holds",
    }
    assert verdict.robust is False


def test_a_verdict_from_the_start_is_robust():
    claim = CLAIMS_BY_ID["bn_lowers_loss_variation_vgg"]
    (verdict,) = evaluate_budgets(_budget_case(flip_at=0), [claim])
    assert set(verdict.budgets.values()) == {"holds"} and verdict.robust is True
    entry = verdict.to_dict()
    assert entry["robust"] is True and entry["budgets"]["50%"] == "holds"


def test_matched_loss_removes_a_difference_of_speed():
    """Both nets' roughness is the same function of their loss; BN gets there twice as fast.
    Per step BN looks rougher; at matched loss the ratio is 1."""

    def roughness(loss: float) -> float:
        return 0.1 + loss**2

    def slow(s):
        return 2.0 * math.exp(-s / 400)

    def fast(s):
        return 2.0 * math.exp(-s / 200)

    control = _run("none", 0, lambda s, k: roughness(slow(s)), slow, every=10)
    treated = _run("batch", 0, lambda s, k: roughness(fast(s)), fast, every=10)
    claim = CLAIMS_BY_ID["bn_lowers_loss_variation_vgg"]
    assert matched_ratio(treated, control, claim.statistic) == pytest.approx(1.0, abs=0.02)
    per_step = np.median(
        [roughness(fast(s)) / roughness(slow(s)) for s in range(100, STEPS + 1, 10)]
    )
    assert per_step < 0.5  # the time median says BN is much smoother


def test_matched_loss_is_reported_beside_a_landscape_verdict():
    claim = CLAIMS_BY_ID["bn_lowers_loss_variation_vgg"]
    verdict = evaluate_claim(claim, _budget_case(flip_at=0))
    assert verdict.matched is not None and set(verdict.matched["effects"]) == set(range(5))
    assert verdict.to_dict()["matched"]["interval"]
    # no matched effect for a claim that is not about the landscape
    assert evaluate_claim(CLAIMS_BY_ID["bn_trains_faster"], _budget_case(0)).matched is None


def test_thm41_damping_is_decided_by_the_data():
    claim = CLAIMS_BY_ID["bn_damps_gradient"]
    for ratio, expected in ((1.3, "fails"), (0.7, "holds")):
        runs = []
        for seed in range(4):
            run = _run("batch", seed, lambda s, k: 1.0, lambda s: 1.0)
            probes = np.arange(0, STEPS + 1, 50)
            value = ratio * (1 + 0.01 * seed)
            run.series["bn/layer1/grad_ratio"] = (probes, [value] * len(probes))
            run.series["bn/layer1/gamma_over_sigma"] = (probes, [1.7] * len(probes))
            runs.append(run)
        verdict = evaluate_claim(claim, runs)
        assert verdict.verdict == expected, verdict.why
        assert verdict.beside == {"bn/layer*/gamma_over_sigma": pytest.approx(1.7)}
        assert "gamma_over_sigma 1.7" in verdict.why
