"""Claims: statistics, effects, intervals and verdicts on synthetic runs whose answer is known.

Every claim of the registry is checked three ways on runs built for it (`claim_runs`): effects in
the paper's direction (holds), against it (fails), and with a precondition broken (inconclusive).
The run records are closed forms: the statistic of each run is the number the test chose, and
values outside what the statistic reads (before warm-up, other steps) are deliberately wild.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures_runs import config as base_config
from fixtures_runs import write_run
from scipy import stats

from smoothbench.claims import (
    CLAIMS,
    CLAIMS_BY_ID,
    Claim,
    agreement_html,
    agreement_rows,
    agreement_table,
    claims_markdown,
    entries_by_scale,
    evaluate,
    evaluate_by_scale,
    evaluate_claim,
    read_agreement,
    read_json,
    run_data,
    t_interval,
    text_table,
    to_html,
)
from smoothbench.claims.cli import run as cli_run
from smoothbench.claims.render import OPEN_WORDS, SMOKE_WORDS, UNSTATED, verdicts_markdown
from smoothbench.claims.statistics import outlier_gap, run_statistic, scale_order
from smoothbench.results import RunRecord

REPO = Path(__file__).resolve().parents[1]
STEPS = 20
PROBES = (0, 4, 8, 12, 16, 19)  # warm-up (10 % of 20 steps) excludes step 0
EVALS = (0, 10, 19)
SEEDS = (0, 1, 2)
GRID = [float(v) for v in range(-2, 11)]  # SLQ grid; the density's mass sits on |λ| <= 1
DENSITY = [1.0 if abs(v) <= 1 else 0.0 for v in GRID]
DLN_PRESETS = ("fig3_dln", "fig10", "lp_dln")


# ---------------------------------------------------------------------------------------------
# synthetic runs


def records_for(
    claim: Claim,
    value: float,
    *,
    lr: float,
    acc: float = 0.6,
    at_chance: bool = False,
    loss_fell: bool = True,
    edge_start: float = 0.5,
) -> list[dict[str, Any]]:
    """Metric lines of one run whose statistic for `claim` is exactly `value`."""
    stat = claim.statistic
    lines = []
    for step in range(STEPS):
        line: dict[str, Any] = {"step": step, "epoch": step / 10}
        # alternating ± 0.01 around the value: the mean over all 20 steps is the value itself
        wobble = 0.01 * (1 if step % 2 else -1)
        line["train/acc"] = value + wobble if stat.metric == "train/acc" else acc
        line["train/loss"] = 10 ** (-step / (STEPS - 1)) if loss_fell else 1.0
        if step in EVALS:
            test = value if stat.metric == "test/acc" and step == EVALS[-1] else acc
            line["test/acc"] = 0.1 if at_chance else test
        if step in PROBES:
            line.update(_probe_values(claim, value, step, lr, edge_start))
        lines.append(line)
    return lines


def _probe_values(
    claim: Claim, value: float, step: int, lr: float, edge_start: float
) -> dict[str, Any]:
    stat = claim.statistic
    out: dict[str, Any] = {}
    if stat.kind == "median_after_warmup":
        # step 0 is warm-up: a wild value the median must not see
        v = value if step > 0 else 1000 * value
        for layer in (3, 11):
            name = stat.metric.replace("*", str(layer))
            out[name] = 1.0 - v if stat.transform == "one_minus" else v
    elif stat.kind == "max_ratio_over_steps":
        for layer in (1, 2):
            ratio = value if (step, layer) == (8, 2) else value / 2  # the max at one point
            out[f"bn/layer{layer}/identity_rhs"] = 2.0
            out[f"bn/layer{layer}/grad_in_norm"] = 2.0 * ratio
    elif stat.kind == "outlier_ratio":
        out["hessian/lambda_max"] = value if step > 0 else 1000.0  # bulk edge |λ| = 1
        out["hessian/density_grid"] = GRID
        out["hessian/density"] = DENSITY
    elif stat.kind == "lambda_max_times_lr_over_2":
        # the last half of the probe steps (12, 16, 19) at value x 2/lr, the first below it
        out["hessian/lambda_max"] = (value if step >= 10 else edge_start) * 2 / lr
    return out


def _set(config: dict, dotted: str, value: Any) -> None:
    node = config
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def run_config(claim: Claim, arm: str, seed: int) -> dict[str, Any]:
    preset = claim.presets[0]
    model = "dln" if preset in DLN_PRESETS else "resnet20" if preset == "hessian" else "vgg11"
    cfg = base_config(model, "none", 0.1, seed, experiment=preset)
    cfg["optim"].update({"full_batch": False, "schedule": "constant"})
    for key, value in claim.where.items():
        _set(cfg, key, value)
    if claim.compare is not None:
        _set(cfg, claim.compare, claim.treatment if arm == "treatment" else claim.control)
    elif "norm.name" not in claim.where:
        _set(cfg, "norm.name", "batch")
    return cfg


def _flat(cfg: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return flat


def target_effect(claim: Claim, holds: bool) -> float:
    """An effect clearly on the paper's side of the null (or clearly on the other)."""
    if claim.direction == "within":
        low, high = claim.band
        return (low + high) / 2 if holds else high * 2
    up = (claim.direction == ">") == holds
    if claim.comparison == "ratio":
        return claim.null_value * (1.5 if up else 0.5)
    step = 0.2 if claim.comparison == "difference" else 0.3 * abs(claim.null_value or 1)
    return claim.null_value + (step if up else -step)


def arm_values(claim: Claim, effect: float, seed: int) -> dict[str, float]:
    """Statistics of each arm for one seed: effect + 1 % jitter per seed, control fixed."""
    jitter = 0.01 * (seed - 1)
    if claim.comparison == "single":
        return {"treatment": effect + jitter}
    control = 0.5 if claim.comparison == "difference" else 1.0
    if claim.comparison == "difference":
        return {"treatment": control + effect + jitter, "control": control}
    return {"treatment": control * effect * (1 + jitter), "control": control}


def claim_runs(claim: Claim, holds: bool = True, broken: str | None = None, seeds=SEEDS):
    """RunRecords for a claim: effect in (holds) or against the paper's direction; `broken`
    names an arm whose first precondition fails. Returns (records, expected effect per seed)."""
    effect = target_effect(claim, holds)
    records, expected = [], {}
    lr = float(claim.where.get("optim.lr", 0.1))
    for seed in seeds:
        values = arm_values(claim, effect, seed)
        for arm, value in values.items():
            cfg = run_config(claim, arm, seed)
            kwargs: dict[str, Any] = {}
            if broken == arm:
                kind = claim.preconditions[0].kind
                kwargs = {
                    "left_chance": {"at_chance": True},
                    "loss_fell": {"loss_fell": False},
                    "started_below_edge": {"edge_start": 1.0},
                }[kind]
            name = f"{claim.presets[0]}/{arm}-{seed}"
            records.append(
                RunRecord(
                    run=name,
                    run_dir=f"/synthetic/{name}",
                    status="finished",
                    config=_flat(cfg),
                    records=records_for(claim, value, lr=lr, **kwargs),
                )
            )
        if claim.comparison == "single":
            expected[seed] = values["treatment"]
        elif claim.comparison == "difference":
            expected[seed] = values["treatment"] - values["control"]
        else:
            expected[seed] = values["treatment"] / values["control"]
    return records, expected


# ---------------------------------------------------------------------------------------------
# every claim: holds, fails, inconclusive


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.id for c in CLAIMS])
def test_every_claim_holds_and_fails_as_built(claim):
    for holds, verdict in ((True, "holds"), (False, "fails")):
        records, expected = claim_runs(claim, holds=holds)
        result = evaluate_claim(claim, run_data(records))
        assert result.verdict == verdict, (claim.id, result.why)
        assert list(result.effects) == list(SEEDS)
        assert [result.effects[s] for s in SEEDS] == pytest.approx(
            [expected[s] for s in SEEDS], rel=1e-9
        )
        assert result.ci is not None and result.ci[0] < result.mean < result.ci[1]


def test_a_claims_note_is_quoted_beside_a_verdict_against_the_data_only():
    note = "measured after the norm layer, by construction"
    claim = dataclasses.replace(CLAIMS_BY_ID["bn_lowers_beta_vgg"], note=note)
    verdicts = {}
    for case, kwargs in (
        ("holds", {}),
        ("fails", {"holds": False}),
        ("broken", {"broken": "control"}),
    ):
        records, _ = claim_runs(claim, **kwargs)
        verdicts[case] = evaluate_claim(claim, run_data(records))
    assert verdicts["holds"].verdict == "holds" and verdicts["holds"].known is None
    assert verdicts["fails"].verdict == "fails" and verdicts["fails"].known == note
    fails = verdicts["fails"].to_dict()
    assert "Known" not in fails["why"] and fails["known"] == fails["note"] == note
    # the text and HTML tables quote it, the Markdown table points to the docs
    why = f"{fails['why']}; at matched training loss: {fails['matched']['interval']}"
    assert f"{why}. Known: {note}" in " ".join(text_table([fails]).split())
    assert f"{why}. Known: {note}" in to_html([fails])
    assert "Known: the claim's note in docs/claims.md |" in verdicts_markdown({"cpu": [fails]})
    # a broken precondition explains itself: no note
    assert verdicts["broken"].verdict == "inconclusive" and verdicts["broken"].known is None
    # seed 1's standard net made 16x smoother: its effect flips and the interval straddles 1
    records, _ = claim_runs(claim)
    for record in records:
        if record.config["seed"] == 1 and record.config["norm.name"] == "none":
            for line in record.records:
                if "landscape/beta_smoothness" in line:
                    line["landscape/beta_smoothness"] /= 16
    straddling = evaluate_claim(claim, run_data(records))
    assert straddling.effects[1] > 1 > straddling.effects[0]
    assert straddling.verdict == "inconclusive" and "straddles" in straddling.why
    assert straddling.known == note
    assert note in claims_markdown([claim])


@pytest.mark.parametrize(
    "claim", [c for c in CLAIMS if c.preconditions], ids=[c.id for c in CLAIMS if c.preconditions]
)
def test_a_broken_precondition_makes_the_claim_inconclusive(claim):
    pre = claim.preconditions[0]
    arm = pre.arms[-1]
    records, expected = claim_runs(claim, holds=True, broken=arm)
    result = evaluate_claim(claim, run_data(records))
    assert result.verdict == "inconclusive"
    words = {
        "left_chance": "never left chance: test acc 0.1",
        "loss_fell": "did not train: loss 1 → 1",
        "started_below_edge": "no room to rise",
    }[pre.kind]
    assert words in result.why
    assert len(result.effects) == len(SEEDS)  # the numbers are still reported


def test_standard_net_at_chance_is_named_in_the_why():
    claim = CLAIMS_BY_ID["bn_lowers_beta_vgg"]
    records, _ = claim_runs(claim, holds=True, broken="control")
    result = evaluate_claim(claim, run_data(records))
    assert result.why.startswith("standard net never left chance: test acc 0.1 (seed 0")


# ---------------------------------------------------------------------------------------------
# statistics by hand


def _one_run(claim: Claim, records: list[dict], status: str = "finished", **config: Any):
    cfg = _flat(run_config(claim, "treatment", 0))
    cfg.update(config)
    return run_data([RunRecord("r", "/x/r", status, config=cfg, records=records)])[0]


def test_median_after_warmup_pools_layers_and_skips_warmup():
    claim = CLAIMS_BY_ID["bn_no_ics_reduction_vgg_cosine"]  # 1 - cosine
    records = [{"step": s} for s in range(STEPS)]
    for s in PROBES:
        records[s]["ics/layer5/cosine"] = 0.0 if s == 0 else 1 - 0.01 * s  # 1-cos = s / 100
        records[s]["ics/layer10/cosine"] = 1 - 0.5  # 0.5
    value, points = run_statistic(claim.statistic, _one_run(claim, records))
    # pooled after warm-up: {0.04, 0.08, 0.12, 0.16, 0.19} and five 0.5s -> median (0.19 + 0.5)/2
    assert points == 10
    assert value == pytest.approx((0.19 + 0.5) / 2)


def test_training_accuracy_statistics_and_diverged_runs():
    fast = CLAIMS_BY_ID["bn_trains_faster"].statistic
    high = CLAIMS_BY_ID["bn_tolerates_high_lr"].statistic
    records = [{"step": s, "train/acc": s / 10} for s in range(STEPS)]
    records[-1]["test/acc"] = 0.7
    run = _one_run(CLAIMS_BY_ID["bn_trains_faster"], records)
    assert run_statistic(fast, run) == (pytest.approx(np.mean(np.arange(STEPS) / 10)), STEPS)
    assert run_statistic(high, run) == (0.7, 1)
    diverged = _one_run(CLAIMS_BY_ID["bn_trains_faster"], records, status="diverged")
    assert run_statistic(high, diverged) == (0.1, 1)  # chance on CIFAR-10
    cifar100 = _one_run(
        CLAIMS_BY_ID["bn_trains_faster"], records, status="diverged", **{"data.name": "cifar100"}
    )
    assert run_statistic(high, cifar100)[0] == 0.01


def test_outlier_gap_by_hand():
    # mass on |λ| <= 1 only: the 99 % quantile of |λ| is 1, so the gap is λ_max itself
    assert outlier_gap(GRID, DENSITY, 7.0, 0.99) == 7.0
    # uniform mass on 0..4 (trapezoid weights 0.5, 1, 1, 1, 0.5 of 4): 0.9 reached at |λ| = 4
    assert outlier_gap([0, 1, 2, 3, 4], [1] * 5, 8.0, 0.9) == 2.0
    assert math.isnan(outlier_gap([0, 1], [0, 0], 1.0, 0.99))


def test_edge_of_stability_statistic_reads_the_late_half():
    claim = CLAIMS_BY_ID["edge_of_stability"]
    records = [{"step": s} for s in range(STEPS)]
    for s, lam in zip(PROBES, (10, 20, 30, 38, 40, 42), strict=True):
        records[s]["hessian/lambda_max"] = float(lam)
    run = _one_run(claim, records, **{"optim.lr": 0.05})
    value, points = run_statistic(claim.statistic, run)
    assert points == 3 and value == pytest.approx(40 * 0.05 / 2)  # median of 38, 40, 42


# ---------------------------------------------------------------------------------------------
# intervals and seeds


def test_t_interval_matches_scipy_by_hand():
    values = [0.2, 0.25, 0.33, 0.4]
    mean, sd = np.mean(values), np.std(values, ddof=1)
    half = stats.t.ppf(0.975, 3) * sd / math.sqrt(4)
    assert t_interval(values) == pytest.approx((mean - half, mean + half))
    half90 = stats.t.ppf(0.95, 3) * sd / math.sqrt(4)
    assert t_interval(values, 0.9) == pytest.approx((mean - half90, mean + half90))
    assert t_interval([0.3]) is None


def test_claim_interval_is_the_t_interval_of_the_seed_effects():
    claim = CLAIMS_BY_ID["bn_trains_faster"]
    records, expected = claim_runs(claim, holds=True)
    result = evaluate_claim(claim, run_data(records))
    effects = [expected[s] for s in SEEDS]  # 0.19, 0.2, 0.21
    half = stats.t.ppf(0.975, 2) * np.std(effects, ddof=1) / math.sqrt(3)
    assert result.mean == pytest.approx(np.mean(effects))
    assert result.ci == pytest.approx((np.mean(effects) - half, np.mean(effects) + half))


def test_ratio_intervals_are_taken_on_the_log_scale():
    claim = CLAIMS_BY_ID["bn_lowers_beta_vgg"]
    records, expected = claim_runs(claim, holds=True)
    result = evaluate_claim(claim, run_data(records))
    logs = np.log([expected[s] for s in SEEDS])
    half = stats.t.ppf(0.975, 2) * np.std(logs, ddof=1) / math.sqrt(3)
    assert result.mean == pytest.approx(math.exp(logs.mean()))
    assert result.ci == pytest.approx((math.exp(logs.mean() - half), math.exp(logs.mean() + half)))


def test_one_seed_has_no_interval_and_says_so():
    claim = CLAIMS_BY_ID["bn_trains_faster"]
    records, _ = claim_runs(claim, holds=True, seeds=(0,))
    result = evaluate_claim(claim, run_data(records))
    assert result.verdict == "inconclusive" and result.ci is None
    assert result.why.startswith("1 seed: no interval (needs 3)")
    assert "in the paper's direction" in result.why
    assert result.interval_words().endswith("(1 seed: no interval)")
    entry = result.to_dict()
    assert entry["ci"] is None and entry["n_seeds"] == 1
    # a point-estimate verdict only when asked for, and it still says there is no interval
    single = evaluate_claim(claim, run_data(records), min_seeds=1)
    assert single.verdict == "holds" and "1 seed: no interval" in single.why


def test_an_interval_straddling_the_null_is_inconclusive():
    claim = CLAIMS_BY_ID["bn_trains_faster"]
    records, _ = claim_runs(claim, holds=True)
    for record in records:  # treatment minus control: +0.2, -0.2, +0.1 by seed
        if record.run.startswith("fig1/treatment"):
            delta = {0: 0.0, 1: -0.4, 2: -0.11}[record.config["seed"]]
            for line in record.records:
                line["train/acc"] += delta
    result = evaluate_claim(claim, run_data(records))
    assert result.verdict == "inconclusive"
    assert result.why == "3 seeds; interval straddles 0"
    assert result.ci[0] < 0 < result.ci[1]


def test_every_step_claim_fails_on_one_bad_seed_without_an_interval():
    claim = CLAIMS_BY_ID["bn_damping_every_step"]
    records, _ = claim_runs(claim, holds=True, seeds=(0,))
    assert evaluate_claim(claim, run_data(records)).verdict == "holds"  # universal: 1 seed ok
    records, _ = claim_runs(claim, holds=True)
    records[1].records[8]["bn/layer2/grad_in_norm"] = 2.0 * 1.01  # one step above the bound
    result = evaluate_claim(claim, run_data(records))
    assert result.verdict == "fails" and result.why.startswith("seed 1: 1.01")


def test_runs_only_pair_within_a_seed_and_setting():
    claim = CLAIMS_BY_ID["bn_trains_faster"]
    records, _ = claim_runs(claim, holds=True)
    # a control run of another lr, and a treatment seed without its control: both ignored
    extra = copy.deepcopy(records[1])
    extra.run, extra.run_dir, extra.config["optim.lr"] = "fig1/c-lr0.5", "/s/c-lr0.5", 0.5
    lonely = copy.deepcopy(records[0])
    lonely.run, lonely.run_dir, lonely.config["seed"] = "fig1/treatment-9", "/s/t-9", 9
    result = evaluate_claim(claim, run_data(records + [extra, lonely]))
    assert list(result.effects) == list(SEEDS) and result.verdict == "holds"


def test_failed_and_unfinished_runs_make_the_claim_inconclusive():
    claim = CLAIMS_BY_ID["bn_lowers_loss_variation_vgg"]
    records, _ = claim_runs(claim, holds=True)
    records[3].status, records[3].reason = "failed", "RuntimeError: out of memory"
    result = evaluate_claim(claim, run_data(records))
    assert result.verdict == "inconclusive"
    assert result.why == (
        f"norm=none (seed 1, {records[3].run}) failed: RuntimeError: out of memory"
    )


def test_a_diverged_standard_net_counts_at_chance_for_high_lr():
    claim = CLAIMS_BY_ID["bn_tolerates_high_lr"]
    records, _ = claim_runs(claim, holds=True)
    for record in records:
        if "control" in record.run:
            record.status = "diverged"
    result = evaluate_claim(claim, run_data(records))
    treatment = {s: v for s, v in result.arms["treatment"].items()}
    assert result.arms["control"] == {0: 0.1, 1: 0.1, 2: 0.1}
    assert result.effects == pytest.approx({s: treatment[s] - 0.1 for s in SEEDS})
    assert result.verdict == "holds"
    # elsewhere a diverged run breaks the "finished" precondition
    other = CLAIMS_BY_ID["bn_trains_faster"]
    records, _ = claim_runs(other, holds=True)
    records[0].status = "diverged"
    assert evaluate_claim(other, run_data(records)).verdict == "inconclusive"


def test_too_few_probe_points_is_inconclusive():
    claim = CLAIMS_BY_ID["bn_lowers_beta_vgg"]
    records, _ = claim_runs(claim, holds=True)
    for line in records[0].records:
        if line["step"] > 4:
            line.pop("landscape/beta_smoothness", None)
    result = evaluate_claim(claim, run_data(records))
    assert result.verdict == "inconclusive"
    assert "has 1 point(s) of landscape/beta_smoothness" in result.why


# ---------------------------------------------------------------------------------------------
# not run


def test_not_run_without_the_preset_the_arm_or_the_metric():
    claim = CLAIMS_BY_ID["noise_without_bn_hurts"]
    assert evaluate_claim(claim, []).verdict == "not run"
    assert evaluate_claim(claim, []).why == "no fig2 runs"
    # fig2 swept without the noise arm (as before norm=noise existed)
    records, _ = claim_runs(claim, holds=True)
    controls = [r for r in records if "control" in r.run]
    result = evaluate_claim(claim, run_data(controls))
    assert result.verdict == "not run" and result.why == "no fig2 run has norm=noise"
    # a claim that names the preset change it needs says so
    pending = dataclasses.replace(claim, needs="norm=noise in experiment=fig2's sweep")
    result = evaluate_claim(pending, run_data(controls))
    assert result.why == (
        "no fig2 run has norm=noise; to measure it: norm=noise in experiment=fig2's sweep"
    )
    # runs without the metric: fig4 runs that never ran the bn probe
    damping = CLAIMS_BY_ID["bn_damping_every_step"]
    fig4 = claim_runs(CLAIMS_BY_ID["bn_lowers_beta_vgg"])[0]
    result = evaluate_claim(damping, run_data(fig4))
    assert result.verdict == "not run"
    assert result.why == "no fig1 or fig2 or fig4 or lp run records bn/layer*/grad_in_norm"


def test_edge_of_stability_is_not_run_on_sgd_hessian_runs():
    claim = CLAIMS_BY_ID["edge_of_stability"]
    records, _ = claim_runs(claim, holds=True)
    for record in records:
        record.config["experiment"], record.config["optim.full_batch"] = "hessian", False
    result = evaluate_claim(claim, run_data(records))
    assert result.verdict == "not run"
    assert result.why.startswith("no eos or hessian run has full-batch GD=True")


# ---------------------------------------------------------------------------------------------
# rendering, docs, registry


def test_text_table_and_html_show_every_claim():
    claim = CLAIMS_BY_ID["bn_trains_faster"]
    records, _ = claim_runs(claim, holds=True)
    verdicts = evaluate(run_data(records))
    table = text_table(verdicts)
    assert all(c.id in table for c in CLAIMS)
    assert "s0: 0.19, s1: 0.2, s2: 0.21" in " ".join(table.split())  # cells wrap at spaces
    papers = [c for c in CLAIMS if c.kind == "paper"]
    checks = [c for c in CLAIMS if c.kind == "check"]
    assert table.rstrip().endswith(
        f"1 holds, 0 fails, 0 inconclusive, {len(papers) - 1} not run; "
        f"checks: 0 of {len(checks)} pass"
    )
    page = to_html(verdicts, figure_links={"fig1": "#fig1", "bn_lowers_beta_vgg": "f4.png"})
    kinds = {c.kind for c in CLAIMS} - {"paper"}  # a heading row above each other kind
    assert page.count("<tr class=") == len(CLAIMS) + len(kinds)
    assert '<tr class="holds"><td title=' in page and '<a href="#fig1">bn_trains_faster</a>' in page
    assert '<a href="f4.png">bn_lowers_beta_vgg</a>' in page
    assert "&lt;" in page  # "batch / none &lt; 1": cells are escaped
    # the same table from claims.json entries
    entries = [v.to_dict() for v in verdicts]
    assert to_html(entries, {"fig1": "#fig1", "bn_lowers_beta_vgg": "f4.png"}) == page


def test_docs_list_every_claim_as_the_registry_does():
    docs = (REPO / "docs" / "claims.md").read_text()
    assert docs == claims_markdown(), "regenerate: smoothbench-claims --markdown > docs/claims.md"
    for claim in CLAIMS:
        assert f"`{claim.id}`" in docs


def test_registry_covers_the_required_claims_and_real_presets():
    required = {
        "bn_trains_faster",
        "bn_tolerates_high_lr",
        "bn_mean_not_more_stable",
        "noisy_bn_trains_like_bn",
        "noise_without_bn_hurts",
        "bn_no_ics_reduction_vgg_l2",
        "bn_no_ics_reduction_dln_cosine",
        "bn_lowers_loss_variation_vgg",
        "bn_lowers_grad_change_vgg",
        "bn_lowers_beta_vgg",
        "bn_lowers_beta_dln",
        "l1_trains_like_bn",
        "linf_smooths_like_bn_vgg",
        "bn_lowers_lambda_max",
        "shortcut_lowers_trace",
        "bn_damping_every_step",
        "bn_removes_hessian_outliers",
        "edge_of_stability",
    }
    assert required <= set(CLAIMS_BY_ID)
    shipped = {p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")}
    for claim in CLAIMS:
        assert any(p in shipped for p in claim.presets) or claim.needs, claim.id


# ---------------------------------------------------------------------------------------------
# scales: never pooled; cpu beside paper


def at_scale(records: list[RunRecord], scale: str, tag: str = "") -> list[RunRecord]:
    """Copies of run records at another scale (config `scale`), under run names of their own."""
    out = copy.deepcopy(records)
    for record in out:
        record.config["scale"] = scale
        record.run = f"{scale}/{tag}{record.run}"
        record.run_dir = f"/synthetic/{record.run}"
    return out


def scale_runs(claim: Claim, scale: str, holds: bool = True, seeds=SEEDS) -> list[RunRecord]:
    return at_scale(claim_runs(claim, holds=holds, seeds=seeds)[0], scale, tag=f"{claim.id}/")


def test_runs_of_two_scales_are_never_pooled():
    claim = CLAIMS_BY_ID["bn_trains_faster"]
    cpu = scale_runs(claim, "cpu", holds=True)  # batch − none = +0.2 per seed
    smoke = scale_runs(claim, "smoke", holds=False)  # −0.2 per seed, same seeds and settings
    runs = run_data(smoke + cpu)
    # pooled, each seed's arms average to an effect of ~0: the verdict would flip
    assert evaluate_claim(claim, runs).verdict == "inconclusive"
    by_scale = evaluate_by_scale(runs, [claim])
    assert list(by_scale) == ["smoke", "cpu"]
    (smoke_verdict,), (cpu_verdict,) = by_scale["smoke"], by_scale["cpu"]
    assert smoke_verdict.verdict == "fails" and smoke_verdict.scale == "smoke"
    assert cpu_verdict.verdict == "holds" and cpu_verdict.scales == ["cpu"]
    assert cpu_verdict.mean == pytest.approx(0.2)
    assert sorted(cpu_verdict.runs) == sorted(r.run for r in cpu)
    assert cpu_verdict.to_dict()["scale"] == "cpu"


def test_scales_are_ordered_smallest_first_and_unlabelled_runs_kept_apart():
    assert scale_order(["zeta", "paper", "unknown", "cpu", "smoke"]) == [
        "smoke",
        "cpu",
        "paper",
        "unknown",
        "zeta",
    ]
    claim = CLAIMS_BY_ID["bn_trains_faster"]
    unlabelled = scale_runs(claim, "x")
    for record in unlabelled:
        del record.config["scale"]
    by_scale = evaluate_by_scale(run_data(unlabelled + scale_runs(claim, "paper")), [claim])
    assert list(by_scale) == ["paper", "unknown"]
    assert [len(by_scale[s][0].runs) for s in by_scale] == [6, 6]


def agreement_case(note: str = "the cpu preset trains 300 steps: the dln never separates"):
    """Verdicts at cpu and paper scale of five claims, one per agreement case; the dln claim
    has a scale note. Returns (by_scale, the dln claim)."""
    noted = dataclasses.replace(CLAIMS_BY_ID["bn_lowers_beta_dln"], scale_note=note)
    cases = [  # (claim, holds at cpu, holds at paper, paper seeds); None: no paper runs
        (CLAIMS_BY_ID["bn_trains_faster"], True, True, SEEDS),  # agree
        (CLAIMS_BY_ID["bn_lowers_beta_vgg"], True, False, SEEDS),  # differ, no note
        (noted, False, True, SEEDS),  # differ, with its note
        (CLAIMS_BY_ID["bn_no_ics_reduction_vgg_l2"], True, True, (0,)),  # paper: 1 seed, open
        (CLAIMS_BY_ID["noisy_bn_trains_like_bn"], True, None, ()),  # not run at paper, open
    ]
    records = []
    for claim, cpu, paper, seeds in cases:
        records += scale_runs(claim, "cpu", holds=cpu)
        if paper is not None:
            records += scale_runs(claim, "paper", holds=paper, seeds=seeds)
    return evaluate_by_scale(run_data(records), [c[0] for c in cases]), noted


def test_agreement_rows_set_cpu_beside_paper():
    by_scale, noted = agreement_case()
    rows = {r["id"]: r for r in agreement_rows(by_scale)}
    assert list(rows) == [
        "bn_trains_faster",
        "bn_lowers_beta_vgg",
        "bn_lowers_beta_dln",
        "bn_no_ics_reduction_vgg_l2",
        "noisy_bn_trains_like_bn",
    ]
    cells = {cid: (r["cpu"], r["paper"], r["agreement"], r["note"]) for cid, r in rows.items()}
    assert cells == {
        "bn_trains_faster": ("holds", "holds", "agree", "—"),
        "bn_lowers_beta_vgg": ("holds", "fails", "differ", UNSTATED),
        "bn_lowers_beta_dln": ("fails", "holds", "differ", noted.scale_note),
        "bn_no_ics_reduction_vgg_l2": ("holds", "inconclusive", "open", "—"),
        "noisy_bn_trains_like_bn": ("holds", "not run", "open", "—"),
    }
    assert "smoke" not in rows["bn_trains_faster"]  # no smoke runs, no smoke column
    # a cpu-only evaluation: the paper column reads "not run" and nothing agrees or differs
    cpu_only = agreement_rows({"cpu": by_scale["cpu"]})
    assert {(r["paper"], r["agreement"]) for r in cpu_only} == {("not run", "open")}
    # smoke verdicts are a column of their own, never part of the agreement
    smoke = [dataclasses.replace(v, verdict="fails", scale="smoke") for v in by_scale["cpu"]]
    with_smoke = agreement_rows({"smoke": smoke, **by_scale})
    assert with_smoke[0]["smoke"] == "fails" and with_smoke[0]["agreement"] == "agree"


def test_agreement_table_text_and_html():
    by_scale, noted = agreement_case()
    table = agreement_table(by_scale)
    lines = table.splitlines()
    assert lines[0].split() == ["claim", "cpu", "paper", "agreement", "scale", "note"]
    row = next(ln for ln in lines if ln.startswith("bn_lowers_beta_vgg "))
    assert row.split() == ["bn_lowers_beta_vgg", "holds", "fails", "differ", *UNSTATED.split()]
    row = next(ln for ln in lines if ln.startswith("noisy_bn_trains_like_bn "))
    assert row.split() == ["noisy_bn_trains_like_bn", "holds", "not", "run", "open", "—"]
    assert noted.scale_note in " ".join(table.split())  # the note, wrapped in its cell
    assert lines[-2:] == ["1 agree, 2 differ, 2 open", OPEN_WORDS]
    page = agreement_html(by_scale, {"fig4": "#fig4"})
    assert page.count('<tr class="differ">') == 2 and page.count('<tr class="open">') == 2
    assert '<a href="#fig4">bn_lowers_beta_vgg</a>' in page  # the registry's figure
    assert f"<td>{UNSTATED}</td>" in page
    # the rows of a claims.json draw the same table
    assert agreement_html(agreement_rows(by_scale), {"fig4": "#fig4"}) == page


def test_html_of_several_scales_groups_rows_under_a_heading(tmp_path):
    by_scale, _ = agreement_case()
    verdicts = [v for vs in by_scale.values() for v in vs]
    page = to_html(verdicts)
    assert page.count('<tr class="scale-heading">') == 2
    assert page.index("scale=cpu: 4 holds, 1 fails") < page.index("scale=paper: ")
    assert page.count("<tr class=") == 2 + len(verdicts)
    one_scale = to_html(by_scale["cpu"])
    assert "scale-heading" not in one_scale and one_scale.count("<tr class=") == 5


def test_claims_json_holds_every_scale_and_the_agreement(tmp_path):
    from smoothbench.claims import write_json

    by_scale, _ = agreement_case()
    verdicts = [v for vs in by_scale.values() for v in vs]
    path = write_json(verdicts, tmp_path / "claims.json", runs=3)
    payload = json.loads(path.read_text())
    assert [e["scale"] for e in payload["claims"]] == ["cpu"] * 5 + ["paper"] * 5
    assert payload["scales"] == {
        "cpu": "4 holds, 1 fails, 0 inconclusive, 0 not run (0 robust)",
        "paper": "2 holds, 1 fails, 1 inconclusive, 1 not run (0 robust)",  # fig2 not run there
    }
    assert payload["agreement"] == agreement_rows(by_scale)
    assert read_json(path) == payload["claims"] and read_agreement(path) == payload["agreement"]
    assert entries_by_scale(read_json(path)).keys() == {"cpu", "paper"}
    # a claims.json of before scales (no "scale", no "agreement"): one group, cpu not run
    old = {"claims": [{k: v for k, v in e.items() if k != "scale"} for e in payload["claims"]]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert {r["cpu"] for r in read_agreement(tmp_path / "old.json")} == {"not run"}


def test_docs_list_scale_notes_only_when_a_claim_has_one():
    noted = dataclasses.replace(CLAIMS_BY_ID["bn_lowers_beta_dln"], scale_note="a reason | why")
    docs = claims_markdown([CLAIMS_BY_ID["bn_trains_faster"], noted])
    assert (
        docs.split("## Scale-dependent claims")[1]
        .strip()
        .endswith("- `bn_lowers_beta_dln`: a reason \\| why")
    )
    assert "## Scale-dependent claims" not in claims_markdown([CLAIMS_BY_ID["bn_trains_faster"]])
    assert "smoke verdicts are plumbing only" in docs


# ---------------------------------------------------------------------------------------------
# the command


def write_sweep(root: Path, claim: Claim, holds: bool = True, scale: str = "smoke") -> Path:
    """A reproduce-style dir: <root>/<preset>/<job>/ run dirs, as smoothbench-train writes
    (runs of another scale than smoke: <root>/<preset>/<scale>-<job>/)."""
    records, _ = claim_runs(claim, holds=holds)
    for job, record in enumerate(records):
        cfg = run_config(claim, "treatment" if "treatment" in record.run else "control", 0)
        cfg["seed"] = record.config["seed"]
        cfg["scale"] = scale
        for key in ("norm.name", "model.shortcut"):
            _set(cfg, key, record.config[key])
        write_run(
            root / claim.presets[0] / (str(job) if scale == "smoke" else f"{scale}-{job}"),
            config=cfg,
            records=record.records,
            status={"state": "finished", "step": STEPS, "reason": None},
            job_num=job,
        )
    return root


@pytest.mark.slow
def test_cli_end_to_end_on_a_reproduce_dir(tmp_path, capsys):
    root = write_sweep(tmp_path / "repro", CLAIMS_BY_ID["bn_lowers_beta_vgg"])
    write_sweep(root, CLAIMS_BY_ID["bn_trains_faster"], holds=False)
    out = tmp_path / "out"
    assert cli_run([str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("claims on 12 runs of ")
    beta = next(line for line in printed.splitlines() if line.startswith("bn_lowers_beta_vgg"))
    assert "s0: 0.495, s1: 0.5, s2: 0.505" in beta and " holds " in beta
    fast = next(line for line in printed.splitlines() if line.startswith("bn_trains_faster "))
    assert " fails " in fast
    payload = json.loads((out / "claims.json").read_text())
    assert payload["runs"] == 12 and len(payload["claims"]) == len(CLAIMS)
    entry = {e["id"]: e for e in read_json(out / "claims.json")}["bn_lowers_beta_vgg"]
    assert [e["effect"] for e in entry["effects"]] == pytest.approx([0.495, 0.5, 0.505])
    assert entry["verdict"] == "holds" and entry["ci"][0] < 0.5 < entry["ci"][1]
    assert entry["arms"]["control"] == [{"seed": s, "value": 1.0} for s in SEEDS]
    assert (out / "claims.txt").read_text() in printed
    markdown = (out / "claims.md").read_text().splitlines()
    assert "**scale=smoke: 12 runs (" in markdown[0]
    beta_row = next(line for line in markdown if line.startswith("| `bn_lowers_beta_vgg` |"))
    assert "| s0: 0.495, s1: 0.5, s2: 0.505 |" in beta_row and "| **holds** |" in beta_row
    agreement = next(
        line for line in markdown if line.startswith("| `bn_trains_faster` |") and "open" in line
    )
    assert agreement.split(" | ")[1:4] == ["fails", "not run", "not run"]  # smoke, cpu, paper


@pytest.mark.slow
def test_cli_entry_point(tmp_path):
    root = write_sweep(tmp_path / "sweep", CLAIMS_BY_ID["bn_lowers_beta_dln"])
    proc = subprocess.run(
        [Path(sys.executable).parent / "smoothbench-claims", str(root / "fig10"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "bn_lowers_beta_dln" in proc.stdout and (root / "fig10" / "claims.json").is_file()
    payload = json.loads(proc.stdout.strip().splitlines()[-1])
    verdicts = {e["id"]: e["verdict"] for e in payload["claims"]}
    assert verdicts["bn_lowers_beta_dln"] == "holds"
    assert verdicts["bn_trains_faster"] == "not run"
    # python -m smoothbench.claims is the same command; bad input exits 2 with one line
    proc = subprocess.run(
        [sys.executable, "-m", "smoothbench.claims", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr == (
        f"smoothbench-claims: error: SWEEP_DIR {str(tmp_path / 'nope')!r} does not exist or is "
        "not a directory\n"
    )


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    root = write_sweep(tmp_path / "sweep", CLAIMS_BY_ID["bn_lowers_beta_dln"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("")
    for args, message in (
        ([str(tmp_path / "empty")], "SWEEP_DIR: no run directories"),
        ([], "SWEEP_DIR: none given"),
        (["--wandb", "justproject"], "--wandb 'justproject': expected ENTITY/PROJECT"),
        ([str(root), "--claims", "bogus"], "--claims 'bogus': unknown; choose from: "),
        ([str(root), "--min-seeds", "0"], "--min-seeds 0: must be >= 1"),
        ([str(root), "--out", str(tmp_path / "file")], f"--out {str(tmp_path / 'file')!r} exists"),
        (
            [str(root), "--scale", "cpu"],
            "--scale 'cpu': no runs of that scale; scales found: smoke",
        ),
    ):
        assert cli_run(args) == 2, args
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and not captured.out, (args, captured)
        assert lines[0].startswith(f"smoothbench-claims: error: {message}"), lines[0]
    assert not (tmp_path / "empty" / "claims.json").exists()
    assert not (root / "claims.json").exists()  # nothing written on bad input


def test_markdown_option_prints_the_docs(capsys):
    assert cli_run(["--markdown"]) == 0
    assert capsys.readouterr().out == claims_markdown()


class FakeWandbRun:
    def __init__(self, record: RunRecord, index: int):
        self.id, self.path = f"run{index}", ["entity", "project", f"run{index}"]
        self.state, self.summary = "finished", {"state": record.status}
        self.config = _nest(record.config)
        self._rows = [{**line, "_step": line["step"]} for line in record.records]

    def scan_history(self):
        return iter(self._rows)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        _set(nested, key, list(value) if isinstance(value, tuple) else value)
    return nested


@pytest.mark.slow
def test_wandb_path_reads_runs_through_results(monkeypatch, capsys, tmp_path):
    claim = CLAIMS_BY_ID["bn_trains_faster"]
    records, _ = claim_runs(claim, holds=True)
    runs = [FakeWandbRun(r, i) for i, r in enumerate(records)]

    class FakeApi:
        def runs(self, project, filters=None):
            assert project == "entity/project" and filters == {"group": "g1"}
            return runs

    import wandb

    monkeypatch.setattr(wandb, "Api", FakeApi)
    code = cli_run(["--wandb", "entity/project", "--group", "g1", "--out", str(tmp_path)])
    assert code == 0
    line = next(
        ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("bn_trains_faster ")
    )
    assert " holds " in line and "s0: 0.19, s1: 0.2, s2: 0.21" in line


def test_cli_on_a_cpu_only_sweep_shows_paper_not_run(tmp_path, capsys):
    root = write_sweep(tmp_path / "repro", CLAIMS_BY_ID["bn_lowers_beta_vgg"], scale="cpu")
    assert cli_run([str(root)]) == 0
    printed = capsys.readouterr().out
    assert "\nscale=cpu: 6 runs\n" in printed and "scale=smoke" not in printed
    agreement = printed.split("agreement of cpu and paper verdicts\n")[1]
    row = next(ln for ln in agreement.splitlines() if ln.startswith("bn_lowers_beta_vgg "))
    assert row.split() == ["bn_lowers_beta_vgg", "holds", "not", "run", "open", "—"]
    assert OPEN_WORDS in agreement
    payload = json.loads((root / "claims.json").read_text())
    assert {e["scale"] for e in payload["claims"]} == {"cpu"} and list(payload["scales"]) == ["cpu"]
    assert {r["paper"] for r in payload["agreement"]} == {"not run"}
    assert (root / "claims.txt").read_text() in printed


@pytest.mark.slow
def test_cli_prints_one_table_per_scale_and_never_pools(tmp_path, capsys):
    claim = CLAIMS_BY_ID["bn_lowers_beta_vgg"]
    root = write_sweep(tmp_path / "repro", claim, holds=False)  # smoke: against the paper
    write_sweep(root, claim, scale="cpu")
    write_sweep(root, claim, scale="paper")
    assert cli_run([str(root)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("claims on 18 runs of ")
    headings = [ln for ln in printed.splitlines() if ln.startswith("scale=")]
    assert headings == [
        f"scale=smoke: 6 runs ({SMOKE_WORDS})",
        "scale=cpu: 6 runs",
        "scale=paper: 6 runs",
    ]
    rows = [ln for ln in printed.splitlines() if ln.startswith("bn_lowers_beta_vgg ")]
    assert [" fails " in row for row in rows[:3]] == [True, False, False]  # smoke, cpu, paper
    assert [" holds " in row for row in rows[:3]] == [False, True, True]
    assert rows[-1].split() == ["bn_lowers_beta_vgg", "fails", "holds", "holds", "agree", "—"]
    payload = json.loads((root / "claims.json").read_text())
    assert len(payload["claims"]) == 3 * len(CLAIMS)
    assert payload["runs_by_scale"] == {"smoke": 6, "cpu": 6, "paper": 6}
    # --scale: only that scale's runs, table and entries
    assert cli_run([str(root), "--scale", "cpu", "--out", str(tmp_path / "cpu")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("claims on 6 runs of ") and "scale=paper" not in printed
    entries = read_json(tmp_path / "cpu" / "claims.json")
    assert {e["scale"] for e in entries} == {"cpu"}


def test_cli_skips_a_damaged_run_with_one_line_and_strict_refuses(tmp_path, capsys, caplog):
    root = write_sweep(tmp_path / "repro", CLAIMS_BY_ID["bn_lowers_beta_vgg"], scale="cpu")
    config = sorted(root.rglob(".hydra/config.yaml"))[0]
    config.write_text("model: {name: [vgg\n")  # a torn write
    assert cli_run([str(root)]) == 0
    skipped = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(skipped) == 1 and str(config.parents[1]) in skipped[0]
    assert "\nscale=cpu: 5 runs\n" in capsys.readouterr().out
    assert cli_run([str(root), "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".hydra/config.yaml cannot be read" in err
