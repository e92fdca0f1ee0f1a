"""Evaluate the claims of the registry on loaded runs: statistics, effects, intervals, verdicts.

The pipeline for one claim:
  1. the runs it reads: preset (config `experiment`) in claim.presets, config matches
     claim.where; split into arms by claim.compare;
  2. one statistic per run (`run_statistic`);
  3. cells: runs that agree on everything but the compared key (model, lr, shortcut, seed, ...)
     pair a treatment run with a control run; the effect of a cell is their ratio or difference,
     and the effect of a seed is the mean over its cells (on the log scale for ratios);
  4. a t interval across seeds (`t_interval`); with one seed there is none, and the table says so;
  5. the verdict (`decide`): "not run" without the runs or metrics, "inconclusive" when a
     precondition fails or the interval straddles the null, else "holds" or "fails".

Runs of different scales (config `scale`: smoke, cpu, paper) are never pooled: a smoke run and
a cpu run of the same seed measure different nets. `evaluate_by_scale` evaluates each scale
on its own; `evaluate` takes runs of one scale.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smoothbench import results
from smoothbench.claims.registry import (
    CLAIMS,
    SCALES,
    Claim,
    Precondition,
    Statistic,
    metric_patterns,
)

VERDICTS = ("holds", "fails", "inconclusive", "not run")
DEFAULT_CONFIDENCE = 0.95
# A 95 % t interval on 2 seeds has one degree of freedom (t = 12.7): too few to decide anything.
DEFAULT_MIN_SEEDS = 3
# Cells of a comparison agree on these (all but the compared key); seed is always one of them.
CELL_KEYS = (
    "experiment",
    "model.name",
    "model.width",
    "model.shortcut",
    "norm.name",
    "optim.lr",
    "optim.full_batch",
    "seed",
)
# Config keys the claims read, kept per run whatever varies.
CONFIG_KEYS = CELL_KEYS + ("optim.schedule", "optim.momentum", "steps", "data.name", "scale")
TAIL_SHARE = 0.1  # "final" training accuracy without a test accuracy: mean of the last 10 %
UNKNOWN_SCALE = "unknown"  # the group of runs whose config has no scale


# ---------------------------------------------------------------------------------------------
# runs


@dataclass
class RunData:
    """One run as the claims see it: identity, state, config and metric series by name."""

    run: str
    status: str
    reason: str | None
    config: dict[str, Any]
    series: dict[str, tuple[np.ndarray, list[Any]]] = field(default_factory=dict)

    @property
    def preset(self) -> str | None:
        return self.config.get("experiment")

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    def values(self, metric: str) -> tuple[np.ndarray, list[Any]]:
        """(steps, values) of one metric, in step order; empty when not recorded."""
        return self.series.get(metric, (np.zeros(0, dtype=np.int64), []))

    def numbers(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, float values) of a scalar metric, non-finite values dropped."""
        steps, values = self.values(metric)
        numbers = np.asarray([_float(v) for v in values], dtype=float)
        keep = np.isfinite(numbers)
        return steps[keep], numbers[keep]

    def matching(self, pattern: str) -> list[str]:
        """Recorded metric names matching an fnmatch pattern, sorted."""
        return sorted(n for n in self.series if fnmatch.fnmatchcase(n, pattern))


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def run_data(records: Sequence[results.RunRecord]) -> list[RunData]:
    """RunData of read runs, through the tidy frame of `results` (only the metrics claims read).

    A run's preset is its config's `experiment`; without one, the name of the directory that
    holds the run dir (`.../<preset>/<job>/`).
    """
    frame = results.tidy_frame(records, metrics=metric_patterns())
    series: dict[str, dict[str, tuple[np.ndarray, list[Any]]]] = {}
    if len(frame):
        frame = frame.sort_values(["run", "step"], kind="stable")
        for (run, metric), rows in frame.groupby(["run", "metric"], observed=True, sort=False):
            rows = rows.drop_duplicates("step", keep="last")
            series.setdefault(str(run), {})[str(metric)] = (
                rows["step"].to_numpy(),
                list(rows["value"]),
            )
    out = []
    for record in records:
        config = {k: record.config.get(k) for k in CONFIG_KEYS}
        if not config.get("experiment") and not record.run_dir.startswith("wandb:"):
            config["experiment"] = Path(record.run_dir).parent.name
        out.append(
            RunData(
                run=record.run,
                status=record.status,
                reason=record.reason,
                config=config,
                series=series.get(record.run, {}),
            )
        )
    return out


def load_paths(paths: Iterable[str | os.PathLike]) -> list[RunData]:
    """Every run under sweep dirs, reproduce dirs (one sweep per preset) or run dirs.

    Raises FileNotFoundError / ValueError as `results.find_run_dirs` does.
    """
    return run_data(results.read_runs(list(paths)))


def load_wandb(project: str, group: str | None = None, api: Any = None) -> list[RunData]:
    """Every run of a W&B project ("entity/project"), one group or all (scalars only)."""
    if api is None:
        import wandb

        api = wandb.Api()
    filters = {"group": group} if group else {}
    return run_data(results.wandb_run_records(api.runs(project, filters=filters)))


# ---------------------------------------------------------------------------------------------
# per-run statistics


def _chance(run: RunData) -> float:
    return 0.01 if run.config.get("data.name") == "cifar100" else 0.1


def _warm_steps(run: RunData, steps: np.ndarray, warmup: float) -> np.ndarray:
    total = run.config.get("steps")
    if not isinstance(total, int | float) or total <= 0:
        total = int(steps.max()) + 1 if len(steps) else 0
    return steps >= warmup * total


def run_statistic(stat: Statistic, run: RunData) -> tuple[float, int]:
    """(value, points it rests on) of one run; value NaN when the run records nothing usable.

    A diverged run's accuracy statistics are chance (what a diverged net predicts); its other
    statistics are NaN. See `Statistic` for the kinds.
    """
    if run.status == "diverged" and stat.metric.endswith("/acc"):
        return _chance(run), 1
    if stat.kind == "mean_over_steps":
        _, values = run.numbers(stat.metric)
        return (float(values.mean()) if len(values) else math.nan), len(values)
    if stat.kind == "final":
        _, values = run.numbers(stat.metric)
        return (float(values[-1]) if len(values) else math.nan), min(len(values), 1)
    if stat.kind == "median_after_warmup":
        pooled = []
        for name in run.matching(stat.metric):
            steps, values = run.numbers(name)
            pooled.append(values[_warm_steps(run, steps, stat.warmup)])
        values = np.concatenate(pooled) if pooled else np.zeros(0)
        if stat.transform == "one_minus":
            values = 1.0 - values
        return (float(np.median(values)) if len(values) else math.nan), len(values)
    if stat.kind == "max_ratio_over_steps":
        return _max_ratio(stat, run)
    if stat.kind == "outlier_ratio":
        return _outlier_ratio(stat, run)
    if stat.kind == "lambda_max_times_lr_over_2":
        steps, values = run.numbers(stat.metric)
        lr = _float(run.config.get("optim.lr"))
        if not len(values) or not lr > 0:
            return math.nan, 0
        late = values[steps >= np.quantile(steps, 1.0 - stat.tail)]
        return float(np.median(late) * lr / 2.0), len(late)
    raise ValueError(f"unknown statistic kind {stat.kind!r}")


def _max_ratio(stat: Statistic, run: RunData) -> tuple[float, int]:
    numerator, denominator = stat.metric, stat.denominator or ""
    regex = re.compile(fnmatch.translate(numerator).replace(".*", "(.*)", 1))
    ratios = []
    for name in run.matching(numerator):
        match = regex.match(name)
        if match is None:
            continue
        steps_n, top = run.numbers(name)
        steps_d, bottom = run.numbers(denominator.replace("*", match.group(1), 1))
        common, i, j = np.intersect1d(steps_n, steps_d, return_indices=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios.append(top[i] / bottom[j])
    values = np.concatenate(ratios) if ratios else np.zeros(0)
    values = values[np.isfinite(values)]
    return (float(values.max()) if len(values) else math.nan), len(values)


def outlier_gap(
    grid: Sequence[float], density: Sequence[float], lambda_max: float, q: float
) -> float:
    """λ_max / Q_q(|λ|), Q_q the q-quantile of |λ| under a spectral density on a grid.

    The density's mass is folded onto |λ| (trapezoid weights on the grid, normalized); the
    quantile is the first grid |λ| where the cumulative mass reaches q. Large when λ_max is an
    isolated outlier far above the bulk (Ghorbani et al. 2019), near 1 when it is the bulk edge.
    """
    grid_a, mass = np.abs(np.asarray(grid, dtype=float)), np.asarray(density, dtype=float)
    if grid_a.shape != mass.shape or len(grid_a) < 2:
        return math.nan
    widths = np.gradient(np.asarray(grid, dtype=float))
    weights = np.clip(mass, 0, None) * np.abs(widths)
    if not weights.sum() > 0:
        return math.nan
    order = np.argsort(grid_a, kind="stable")
    cumulative = np.cumsum(weights[order]) / weights.sum()
    edge = grid_a[order][min(int(np.searchsorted(cumulative, q)), len(order) - 1)]
    return float(lambda_max / edge) if edge > 0 else math.nan


def _outlier_ratio(stat: Statistic, run: RunData) -> tuple[float, int]:
    steps_l, lambdas = run.numbers(stat.metric)
    steps_g, grids = run.values("hessian/density_grid")
    steps_d, densities = run.values("hessian/density")
    grids_at = dict(zip(steps_g.tolist(), grids, strict=True))
    density_at = dict(zip(steps_d.tolist(), densities, strict=True))
    warm = _warm_steps(run, steps_l, stat.warmup)
    gaps = []
    for step, lam in zip(steps_l[warm].tolist(), lambdas[warm].tolist(), strict=True):
        if step in grids_at and step in density_at:
            gaps.append(outlier_gap(grids_at[step], density_at[step], lam, stat.quantile))
    gaps_a = np.asarray(gaps, dtype=float)
    gaps_a = gaps_a[np.isfinite(gaps_a)]
    return (float(np.median(gaps_a)) if len(gaps_a) else math.nan), len(gaps_a)


# ---------------------------------------------------------------------------------------------
# intervals


def t_interval(
    values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float] | None:
    """The t confidence interval of the mean of `values` (None with fewer than two)."""
    from scipy import stats

    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return None
    mean = float(data.mean())
    half = (
        stats.t.ppf(0.5 + confidence / 2, len(data) - 1) * data.std(ddof=1) / math.sqrt(len(data))
    )
    return mean - half, mean + half


# ---------------------------------------------------------------------------------------------
# verdicts


@dataclass
class Verdict:
    """The outcome of one claim on the loaded runs; `to_dict` is its claims.json entry."""

    claim: Claim
    verdict: str
    why: str
    effects: dict[Any, float] = field(default_factory=dict)  # seed -> effect
    mean: float | None = None
    ci: tuple[float, float] | None = None
    confidence: float = DEFAULT_CONFIDENCE
    arms: dict[str, dict[Any, float]] = field(default_factory=dict)  # arm -> seed -> statistic
    runs: list[str] = field(default_factory=list)
    scales: list[str] = field(default_factory=list)  # the scales of the paired runs
    scale: str | None = None  # the scale group it was evaluated on (`evaluate_by_scale`)
    known: str | None = None  # the claim's note, quoted beside a verdict the data decided
    # the test behind an interval verdict: one-sided t-test p-values for the claim's direction
    # (p_holds) and against it (p_fails); p_value = 2 min of them (the uncorrected interval
    # clears the null iff p_value < 1 - confidence); Holm's adjusted p over the scale's family
    p_holds: float | None = None
    p_fails: float | None = None
    p_adjusted: float | None = None
    family_size: int | None = None
    raw_verdict: str | None = None  # the verdict of the uncorrected interval
    budgets: dict[str, str] = field(default_factory=dict)  # "25%" -> verdict on that prefix
    robust: bool | None = None  # the same verdict at 50, 75 and 100 % of the budget
    matched: dict[str, Any] | None = None  # the effect at matched training loss (landscape)
    beside: dict[str, float] = field(default_factory=dict)  # the claim's `beside` statistics

    @property
    def p_value(self) -> float | None:
        if self.p_holds is None or self.p_fails is None:
            return None
        return min(1.0, 2.0 * min(self.p_holds, self.p_fails))

    @property
    def n_seeds(self) -> int:
        return len(self.effects)

    def interval_words(self) -> str:
        """'0.41 [0.30, 0.55]', '1 seed: no interval' or '' without effects."""
        if not self.effects:
            return ""
        if self.ci is None:
            return f"{_num(self.mean)} (1 seed: no interval)" if self.n_seeds == 1 else ""
        return f"{_num(self.mean)} [{_num(self.ci[0])}, {_num(self.ci[1])}]"

    def to_dict(self) -> dict[str, Any]:
        """Every number and word of the verdict, JSON-ready (NaN -> None)."""
        claim = self.claim
        return {
            "id": claim.id,
            "figure": claim.figure,
            "source": claim.source,
            "statement": claim.statement,
            "presets": list(claim.presets),
            "statistic": claim.statistic.describe(),
            "comparison": claim.comparison,
            "effect": claim.effect_words(),
            "direction": claim.direction_words(),
            "null": claim.null_value,
            "band": list(claim.band) if claim.band else None,
            "preconditions": [p.describe() for p in claim.preconditions],
            "verdict": self.verdict,
            "why": self.why,
            "n_seeds": self.n_seeds,
            "effects": [
                {"seed": _jsonable(s), "effect": _clean(e)} for s, e in self.effects.items()
            ],
            "mean": _clean(self.mean),
            "ci": [_clean(v) for v in self.ci] if self.ci else None,
            "confidence": self.confidence,
            "interval": self.interval_words(),
            "arms": {
                arm: [{"seed": _jsonable(s), "value": _clean(v)} for s, v in values.items()]
                for arm, values in self.arms.items()
            },
            "runs": list(self.runs),
            "scales": list(self.scales),
            "scale": self.scale,
            "scale_note": claim.scale_note,
            "note": claim.note,
            "known": self.known,
            "kind": claim.kind,
            "of": claim.of,
            "raw_verdict": self.raw_verdict,
            "p_value": _clean(self.p_value),
            "p_adjusted": _clean(self.p_adjusted),
            "family_size": self.family_size,
            "budgets": dict(self.budgets),
            "robust": self.robust,
            "matched": _clean_matched(self.matched),
            "beside": {k: _clean(v) for k, v in self.beside.items()},
        }


def _clean_matched(matched: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if matched is None:
        return None
    return {
        "effects": [
            {"seed": _jsonable(s), "effect": _clean(e)} for s, e in matched["effects"].items()
        ],
        "mean": _clean(matched.get("mean")),
        "ci": [_clean(v) for v in matched["ci"]] if matched.get("ci") else None,
        "interval": matched.get("interval", ""),
        "side": matched.get("side"),
    }


def _clean(value: Any) -> Any:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "nan"
    return f"{value:.3g}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, bool) or isinstance(a, bool):
        return str(a).lower() == str(b).lower()
    if isinstance(b, int | float) and isinstance(a, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _arm_of(claim: Claim, run: RunData) -> str | None:
    if claim.compare is None:
        return "treatment"
    value = run.config.get(claim.compare)
    if _same(value, claim.treatment):
        return "treatment"
    if _same(value, claim.control):
        return "control"
    return None


def _describe_run(claim: Claim, run: RunData, arm: str) -> str:
    words = claim.arm_words(arm) if claim.compare else claim.where_words() or "run"
    return f"{words} (seed {run.seed}, {run.run})"


def _arm_label(claim: Claim, arm: str) -> str:
    """'standard net', 'BN net', 'net without shortcuts': the arm in words for a why."""
    if claim.compare is None:
        return "the net"
    value = claim.treatment if arm == "treatment" else claim.control
    if claim.compare == "norm.name":
        from smoothbench.models.norms import NORMS

        return f"{NORMS[value].short if value in NORMS else value} net"
    if claim.compare == "model.shortcut":
        return "net with shortcuts" if value else "net without shortcuts"
    return f"{claim.arm_words(arm)} net"


def _final_accuracy(run: RunData) -> tuple[float, str]:
    _, test = run.numbers("test/acc")
    if len(test):
        return float(test[-1]), "test acc"
    _, train = run.numbers("train/acc")
    if len(train):
        tail = train[-max(1, int(math.ceil(TAIL_SHARE * len(train)))) :]
        return float(tail.mean()), "train acc (last 10 %)"
    return math.nan, "acc"


def check_precondition(
    pre: Precondition, claim: Claim, arms: Mapping[str, Sequence[RunData]]
) -> str | None:
    """Why `pre` fails on the runs of its arms, or None when it holds."""
    for arm in pre.arms:
        for run in arms.get(arm, ()):
            if pre.kind == "left_chance":
                if run.status == "diverged":
                    return f"{_arm_label(claim, arm)} diverged (seed {run.seed}, {run.run})"
                acc, what = _final_accuracy(run)
                if not acc > _chance(run) + pre.margin:
                    return (
                        f"{_arm_label(claim, arm)} never left chance: {what} {_num(acc)} "
                        f"(seed {run.seed}, {run.run})"
                    )
            elif pre.kind == "loss_fell":
                _, loss = run.numbers("train/loss")
                if len(loss) < 2 or not loss[-1] <= pre.factor * loss[0]:
                    first = _num(loss[0]) if len(loss) else "nan"
                    last = _num(loss[-1]) if len(loss) else "nan"
                    return (
                        f"{_arm_label(claim, arm)} did not train: loss {first} → {last} "
                        f"(needs ≤ {pre.factor:g}×; seed {run.seed}, {run.run})"
                    )
            elif pre.kind == "started_below_edge":
                _, lambdas = run.numbers(claim.statistic.metric)
                lr = _float(run.config.get("optim.lr"))
                if not len(lambdas) or not lambdas[0] < pre.factor * 2.0 / lr:
                    first = _num(lambdas[0]) if len(lambdas) else "nan"
                    return (
                        f"λ_max started at {first}, not below {pre.factor:g} × 2/lr = "
                        f"{_num(pre.factor * 2.0 / lr)}: no room to rise (seed {run.seed})"
                    )
            else:
                raise ValueError(f"unknown precondition kind {pre.kind!r}")
    return None


def _not_run(claim: Claim, why: str, runs: Sequence[RunData] = ()) -> Verdict:
    if claim.needs:
        why = f"{why}; to measure it: {claim.needs}"
    return Verdict(claim, "not run", why, runs=[r.run for r in runs])


def _side(claim: Claim, low: float, high: float) -> str:
    """'holds', 'fails' or 'straddles' for an interval [low, high] of the effect."""
    null = claim.null_value
    if claim.direction == ">":
        return "holds" if low > null else "fails" if high < null else "straddles"
    if claim.direction == "<":
        return "holds" if high < null else "fails" if low > null else "straddles"
    band_low, band_high = claim.band  # type: ignore[misc]
    if band_low < low and high < band_high:
        return "holds"
    if high <= band_low or low >= band_high:
        return "fails"
    return "straddles"


def decide(
    claim: Claim,
    effects: Mapping[Any, float],
    ci: tuple[float, float] | None,
    failed_precondition: str | None = None,
    min_seeds: int = DEFAULT_MIN_SEEDS,
) -> tuple[str, str]:
    """(verdict, why) from the per-seed effects, their interval and the preconditions.

    Inconclusive, never holds, when a precondition failed, when there are fewer than
    `min_seeds` seeds (no interval), or when the interval straddles the null (or the band's
    edge). A claim about every run (`every_run`) needs no interval: one seed against it fails it.
    """
    values = list(effects.values())
    mean = _effect_mean(claim, values)
    if failed_precondition:
        return "inconclusive", failed_precondition
    if claim.every_run:
        against = [s for s, v in effects.items() if _side(claim, v, v) != "holds"]
        seeds = f"{len(values)} seed{'s' if len(values) != 1 else ''}"
        if against:
            worst = effects[against[0]]
            return "fails", f"seed {against[0]}: {_num(worst)}, not {claim.direction_words()}"
        worst = max(values) if claim.direction == "<" else min(values)
        return "holds", f"{seeds}, every one in the direction (worst {_num(worst)})"
    if ci is None:
        side = _side(claim, mean, mean)
        where = "in the paper's direction" if side == "holds" else "against the paper's direction"
        if side == "straddles":
            where = "on the null"
        seeds = f"{len(values)} seed{'s' if len(values) != 1 else ''}: no interval"
        if len(values) < min_seeds:
            return "inconclusive", f"{seeds} (needs {min_seeds}); effect {_num(mean)} is {where}"
        # min_seeds=1 asked for a verdict from the point estimate alone
        verdict = {"holds": "holds", "fails": "fails"}.get(side, "inconclusive")
        return verdict, f"{seeds}; the single effect {_num(mean)} is {where}"
    if len(values) < min_seeds:
        return "inconclusive", f"{len(values)} seeds (needs {min_seeds}); effect {_num(mean)}"
    side = _side(claim, ci[0], ci[1])
    if side == "holds":
        return "holds", f"{len(values)} seeds; interval clears {_null_words(claim)}"
    if side == "fails":
        return "fails", f"{len(values)} seeds; interval on the wrong side of {_null_words(claim)}"
    return "inconclusive", f"{len(values)} seeds; interval straddles {_null_words(claim)}"


def _null_words(claim: Claim) -> str:
    if claim.direction == "within":
        return f"the band ({claim.band[0]:g}, {claim.band[1]:g})"  # type: ignore[index]
    return f"{claim.null_value:g}"


def _effect_mean(claim: Claim, values: Sequence[float]) -> float:
    if not values:
        return math.nan
    if claim.comparison == "ratio":
        return float(np.exp(np.mean(np.log(values))))
    return float(np.mean(values))


def _cell_key(claim: Claim, run: RunData) -> tuple:
    return tuple(
        (k, str(run.config.get(k))) for k in CELL_KEYS if k != claim.compare and k != "seed"
    )


def evaluate_claim(
    claim: Claim,
    runs: Sequence[RunData],
    confidence: float = DEFAULT_CONFIDENCE,
    min_seeds: int = DEFAULT_MIN_SEEDS,
) -> Verdict:
    """The verdict of one claim on the loaded runs (see the module docstring)."""
    arms = _select_arms(claim, runs)
    if isinstance(arms, Verdict):
        return arms
    used = [r for members in arms.values() for r in members]
    stats = {r.run: run_statistic(claim.statistic, r) for r in used}
    pairs = _pair_cells(claim, arms, stats)
    if not pairs.per_seed:
        return _not_run(claim, "no seed has runs of both arms in the same setting", used)
    failed = _failed_precondition(claim, tuple(arms), pairs.paired, stats)
    effects, finite, ci = _seed_effects(claim, pairs.per_seed, confidence)
    if len(finite) != len(effects) and failed is None:
        failed = "an effect is not finite (a statistic of 0 or NaN)"
    verdict, why = decide(claim, finite, ci, failed, min_seeds=min_seeds)
    # p-values only where sound runs, an interval and enough seeds make a test: Holm's family
    # (`family.apply_holm`) is the paper claims that have them
    tested = failed is None and not claim.every_run and ci is not None
    p_holds, p_fails = (
        direction_p_values(claim, list(finite.values()))
        if tested and len(finite) >= min_seeds
        else (None, None)
    )
    beside = _beside(claim, pairs.paired)
    if beside:
        why += "; beside it: " + ", ".join(f"{k} {_num(v)}" for k, v in beside.items())
    matched = None
    if claim.comparison == "ratio" and claim.statistic.metric.startswith("landscape/"):
        matched = _matched_effect(claim, pairs.cells, confidence)
    # the runs are sound and the data speak against the claim (or not clearly for it): quote
    # what is known about why; a failed run or precondition is its own explanation
    quote_note = failed is None and verdict in ("fails", "inconclusive")
    return Verdict(
        claim,
        verdict,
        why,
        effects=effects,
        mean=_effect_mean(claim, list(finite.values())) if finite else None,
        ci=ci,
        confidence=confidence,
        arms=pairs.arm_means(),
        runs=sorted({r.run for r in pairs.paired}, key=str),
        scales=sorted({str(r.config.get("scale")) for r in pairs.paired if r.config.get("scale")}),
        known=claim.note if quote_note else None,
        p_holds=p_holds,
        p_fails=p_fails,
        raw_verdict=verdict,
        matched=matched,
        beside=beside,
    )


def _select_arms(claim: Claim, runs: Sequence[RunData]) -> dict[str, list[RunData]] | Verdict:
    """{arm: its runs} for the arms the claim compares (treatment first), or the "not run"
    verdict naming the first thing missing: the preset, the `where` setting, an arm, the metric.
    """
    in_preset = [r for r in runs if r.preset in claim.presets]
    presets = " or ".join(claim.presets)
    if not in_preset:
        return _not_run(claim, f"no {presets} runs")
    chosen = [
        r for r in in_preset if all(_same(r.config.get(k), v) for k, v in claim.where.items())
    ]
    if not chosen:
        return _not_run(claim, f"no {presets} run has {claim.where_words()}", in_preset)
    needed = ("treatment",) if claim.compare is None else ("treatment", "control")
    arms: dict[str, list[RunData]] = {arm: [] for arm in needed}
    for run in chosen:
        arm = _arm_of(claim, run)
        if arm is not None:
            arms[arm].append(run)
    for arm in needed:
        if not arms[arm]:
            where = f" with {claim.where_words()}" if claim.where else ""
            return _not_run(claim, f"no {presets} run{where} has {claim.arm_words(arm)}", chosen)
    used = [r for arm in needed for r in arms[arm]]
    if not any(r.matching(claim.statistic.metric) for r in used):
        return _not_run(claim, f"no {presets} run records {claim.statistic.metric}", used)
    return arms


@dataclass
class _Pairs:
    """The runs of a claim paired into cells (module docstring, step 3)."""

    cells: dict[tuple, dict[str, dict[Any, list[RunData]]]]  # cell key -> arm -> seed -> runs
    per_seed: dict[Any, list[float]]  # seed -> the effect of each of its complete cells
    arm_values: dict[str, dict[Any, list[float]]]  # arm -> seed -> statistic per cell
    paired: list[RunData]  # the runs of complete cells (a treatment and, if any, a control)

    def arm_means(self) -> dict[str, dict[Any, float]]:
        """arm -> seed -> the mean of its cells' statistics, seeds in order."""
        return {
            arm: {s: float(np.mean(v)) for s, v in sorted(values.items(), key=_seed_order)}
            for arm, values in self.arm_values.items()
        }


def _pair_cells(
    claim: Claim,
    arms: Mapping[str, Sequence[RunData]],
    stats: Mapping[str, tuple[float, int]],
) -> _Pairs:
    """Cells of runs that agree on all but the compared key; a cell counts for a seed only
    where every arm has runs of that seed (repeat runs of an arm and seed are averaged)."""
    cells: dict[tuple, dict[str, dict[Any, list[RunData]]]] = {}
    for arm, members in arms.items():
        for run in members:
            cells.setdefault(_cell_key(claim, run), {}).setdefault(arm, {}).setdefault(
                run.seed, []
            ).append(run)
    pairs = _Pairs(cells, per_seed={}, arm_values={arm: {} for arm in arms}, paired=[])
    for cell in cells.values():
        seeds = set.intersection(*(set(cell.get(arm, {})) for arm in arms))
        for seed in seeds:
            value = {
                arm: float(np.mean([stats[r.run][0] for r in cell[arm][seed]])) for arm in arms
            }
            for arm in arms:
                pairs.arm_values[arm].setdefault(seed, []).append(value[arm])
                pairs.paired += cell[arm][seed]
            pairs.per_seed.setdefault(seed, []).append(_cell_effect(claim, value))
    return pairs


def _failed_precondition(
    claim: Claim,
    arms: Sequence[str],
    paired: Sequence[RunData],
    stats: Mapping[str, tuple[float, int]],
) -> str | None:
    """Why the paired runs cannot decide the claim, or None: the first run that did not
    finish, else the first of the claim's preconditions that fails, else the first statistic
    on too few points (a diverged run's statistic is chance or NaN by design: exempt)."""
    for arm in arms:
        for run in (r for r in paired if _arm_of(claim, r) == arm):
            if run.status == "finished" or (
                run.status == "diverged" and arm in claim.allow_diverged
            ):
                continue
            reason = f": {run.reason}" if run.reason else ""
            return f"{_describe_run(claim, run, arm)} {run.status}{reason}"
    paired_arms = {arm: [r for r in paired if _arm_of(claim, r) == arm] for arm in arms}
    for pre in claim.preconditions:
        failed = check_precondition(pre, claim, paired_arms)
        if failed:
            return failed
    for run in paired:
        value, points = stats[run.run]
        skip = run.status == "diverged"
        if not skip and (points < claim.statistic.min_points or not math.isfinite(value)):
            return (
                f"{_describe_run(claim, run, _arm_of(claim, run) or 'treatment')} has "
                f"{points} point(s) of {claim.statistic.metric} for its statistic "
                f"(needs {claim.statistic.min_points})"
            )
    return None


def _seed_effects(
    claim: Claim, per_seed: Mapping[Any, Sequence[float]], confidence: float
) -> tuple[dict[Any, float], dict[Any, float], tuple[float, float] | None]:
    """(effect per seed in seed order, the finite ones, their t interval or None).

    A ratio's interval is taken on the log scale, so it needs every finite effect positive.
    """
    effects = {
        seed: _seed_effect(claim, values)
        for seed, values in sorted(per_seed.items(), key=_seed_order)
    }
    finite = {s: e for s, e in effects.items() if math.isfinite(e)}
    if claim.comparison == "ratio":
        logs = [math.log(e) for e in finite.values() if e > 0]
        ci_log = t_interval(logs, confidence) if len(logs) == len(finite) else None
        ci = (math.exp(ci_log[0]), math.exp(ci_log[1])) if ci_log else None
    else:
        ci = t_interval(list(finite.values()), confidence)
    return effects, finite, ci


def _beside(claim: Claim, paired: Sequence[RunData]) -> dict[str, float]:
    """The claim's `beside` statistics of the paired treatment runs, each a mean over seeds
    (context for the why, never part of the verdict)."""
    treated = [r for r in paired if _arm_of(claim, r) == "treatment"]
    return {
        extra.metric: _seed_mean({r.seed: run_statistic(extra, r)[0] for r in treated})
        for extra in claim.beside
    }


def _seed_mean(values: Mapping[Any, float]) -> float:
    """The mean over seeds of a reported statistic (NaN when none is finite)."""
    finite = [v for v in values.values() if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _one_sided(data: np.ndarray, null: float) -> tuple[float, float]:
    """(p for mean > null, p for mean < null): one-sample t-tests, one-sided."""
    from scipy import stats

    n = len(data)
    mean, sd = float(data.mean()), float(data.std(ddof=1))
    if not sd > 0:  # every seed the same: the sign of mean - null decides outright
        if mean > null:
            return 0.0, 1.0
        if mean < null:
            return 1.0, 0.0
        return 1.0, 1.0
    t = (mean - null) / (sd / math.sqrt(n))
    return float(stats.t.sf(t, n - 1)), float(stats.t.cdf(t, n - 1))


def direction_p_values(claim: Claim, effects: Sequence[float]) -> tuple[float, float]:
    """(p_holds, p_fails): one-sided t-test p-values of the per-seed effects for the claim's
    direction and against it (ratios on the log scale).

    The uncorrected interval at level c clears the null in the claim's direction iff
    p_holds < (1 - c)/2, and lies on the wrong side iff p_fails < (1 - c)/2: the same
    decision as the interval, as a number Holm's correction can rank. For a band ("within"):
    p_holds is the larger of the two one-sided p-values of being inside (TOST), p_fails the
    smaller of those of being outside either edge.
    """
    data = np.asarray(effects, dtype=float)
    scale = np.log if claim.comparison == "ratio" else (lambda x: x)
    data = scale(data)
    if claim.direction == "within":
        low, high = (float(scale(b)) for b in claim.band)  # type: ignore[union-attr]
        above_low, below_low = _one_sided(data, low)
        above_high, below_high = _one_sided(data, high)
        return max(above_low, below_high), min(below_low, above_high)
    greater, less = _one_sided(data, float(scale(claim.null_value)))
    return (greater, less) if claim.direction == ">" else (less, greater)


def _matched_effect(
    claim: Claim, cells: Mapping[tuple, Mapping[str, Mapping[Any, list[RunData]]]], confidence
) -> dict[str, Any] | None:
    """The treatment / control effect at matched training loss, per seed (see `matched`)."""
    from smoothbench.claims.matched import matched_ratio

    per_seed: dict[Any, list[float]] = {}
    for cell in cells.values():
        if "control" not in cell:
            continue
        for seed in set(cell.get("treatment", {})) & set(cell["control"]):
            for treated in cell["treatment"][seed]:
                for control in cell["control"][seed]:
                    ratio = matched_ratio(treated, control, claim.statistic)
                    per_seed.setdefault(seed, []).append(ratio)
    if not per_seed:
        return None
    effects = {
        seed: _seed_effect(claim, values)
        for seed, values in sorted(per_seed.items(), key=_seed_order)
    }
    finite = [e for e in effects.values() if math.isfinite(e) and e > 0]
    mean = float(np.exp(np.mean(np.log(finite)))) if finite else None
    ci = None
    if len(finite) == len(effects) and len(finite) >= 2:
        low, high = t_interval(np.log(finite), confidence)  # type: ignore[misc]
        ci = (math.exp(low), math.exp(high))
    side = _side(claim, *ci) if ci else None
    interval = f"{_num(mean)} [{_num(ci[0])}, {_num(ci[1])}]" if ci else _num(mean)
    return {"effects": effects, "mean": mean, "ci": ci, "interval": interval, "side": side}


def _seed_order(item: tuple[Any, Any]) -> tuple:
    seed = item[0]
    return (0, seed, "") if isinstance(seed, int | float) else (1, 0, str(seed))


def _cell_effect(claim: Claim, value: Mapping[str, float]) -> float:
    if claim.comparison == "single":
        return value["treatment"]
    treatment, control = value["treatment"], value["control"]
    if claim.comparison == "difference":
        return treatment - control
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = treatment / control if control != 0 else math.nan
    return float(ratio) if ratio > 0 else math.nan


def _seed_effect(claim: Claim, values: Sequence[float]) -> float:
    """The mean over a seed's cells: geometric for ratios."""
    if claim.comparison == "ratio":
        if any(not (v > 0) for v in values):
            return math.nan
        return float(np.exp(np.mean(np.log(values))))
    return float(np.mean(values))


def evaluate(
    runs: Sequence[RunData],
    claims: Sequence[Claim] = CLAIMS,
    confidence: float = DEFAULT_CONFIDENCE,
    min_seeds: int = DEFAULT_MIN_SEEDS,
) -> list[Verdict]:
    """The verdict of every claim (registry order) on the loaded runs (of one scale: see
    `evaluate_by_scale`), Holm-corrected across the paper claims (`family.apply_holm`)."""
    from smoothbench.claims.family import apply_holm

    _check_options(confidence, min_seeds)
    verdicts = [evaluate_claim(c, runs, confidence, min_seeds) for c in claims]
    apply_holm(verdicts, confidence)
    return verdicts


def evaluate_budgets(
    runs: Sequence[RunData],
    claims: Sequence[Claim] = CLAIMS,
    confidence: float = DEFAULT_CONFIDENCE,
    min_seeds: int = DEFAULT_MIN_SEEDS,
) -> list[Verdict]:
    """`evaluate` on the full runs, each verdict with its verdicts on the runs' prefixes
    (25, 50, 75, 100 % of steps) and its robust mark (`family.attach_budgets`)."""
    from smoothbench.claims.family import BUDGETS, attach_budgets, prefix

    full = evaluate(runs, claims, confidence, min_seeds)
    by_budget = {
        share: full
        if share >= 1.0
        else evaluate([prefix(r, share) for r in runs], claims, confidence, min_seeds)
        for share in BUDGETS
    }
    attach_budgets(full, by_budget)
    return full


def _check_options(confidence: float, min_seeds: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if min_seeds < 1:
        raise ValueError(f"min_seeds must be >= 1, got {min_seeds!r}")


def scale_of(run: RunData) -> str:
    """The run's config `scale`, or "unknown" when the config has none."""
    scale = run.config.get("scale")
    return str(scale) if scale else UNKNOWN_SCALE


def scale_order(scales: Iterable[str]) -> list[str]:
    """Scales smallest first (smoke, cpu, paper), then any others by name."""
    names = set(scales)
    known = [s for s in SCALES if s in names]
    return known + sorted(names - set(SCALES))


def runs_by_scale(runs: Sequence[RunData]) -> dict[str, list[RunData]]:
    """The runs grouped by `scale_of`, in `scale_order`."""
    groups: dict[str, list[RunData]] = {}
    for run in runs:
        groups.setdefault(scale_of(run), []).append(run)
    return {scale: groups[scale] for scale in scale_order(groups)}


def evaluate_by_scale(
    runs: Sequence[RunData],
    claims: Sequence[Claim] = CLAIMS,
    confidence: float = DEFAULT_CONFIDENCE,
    min_seeds: int = DEFAULT_MIN_SEEDS,
    budgets: bool = True,
) -> dict[str, list[Verdict]]:
    """{scale: the verdict of every claim on that scale's runs alone}, smoke, cpu, paper first,
    Holm-corrected per scale, with the verdicts per budget unless `budgets` is False.

    A scale without runs has no entry: its verdicts are "not run" by absence, which the
    agreement table (`render.agreement_rows`) says in words.
    """
    _check_options(confidence, min_seeds)  # also when there are no runs at all
    judge = evaluate_budgets if budgets else evaluate
    out = {}
    for scale, group in runs_by_scale(runs).items():
        verdicts = judge(group, claims, confidence, min_seeds)
        for verdict in verdicts:
            verdict.scale = scale
        out[scale] = verdicts
    return out


def evaluate_paths(paths: Iterable[str | os.PathLike], **options: Any) -> list[Verdict]:
    """Every claim's verdict on the runs under sweep/reproduce/run dirs, per scale.

    The verdicts of each scale in turn (smoke, cpu, paper, then others), each with its
    `scale`: scales are never pooled. Options: see `evaluate`.
    """
    by_scale = evaluate_by_scale(load_paths(paths), **options)
    return [verdict for verdicts in by_scale.values() for verdict in verdicts]


def verdict_frame(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """One row per claim: id, verdict, n_seeds, mean, ci_low, ci_high, why."""
    return pd.DataFrame(
        [
            {
                "id": v.claim.id,
                "verdict": v.verdict,
                "n_seeds": v.n_seeds,
                "mean": v.mean,
                "ci_low": v.ci[0] if v.ci else None,
                "ci_high": v.ci[1] if v.ci else None,
                "why": v.why,
            }
            for v in verdicts
        ]
    )
