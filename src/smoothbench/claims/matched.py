"""A landscape comparison at matched training progress instead of matched step.

BN and the standard net move through training at different speeds: at step t the BN net may
already sit at a loss the standard net reaches only much later, and the roughness of a
landscape changes along the way (a VGG's is flat during its slow start). Comparing the two
at the same *loss* removes that confound. For each net:

  progress(t) = the running minimum of its training loss, smoothed over a short window
                (a non-increasing curve: the best loss reached by step t);
  m(ℓ)        = the landscape metric (on the log scale) at the step where progress reaches ℓ,
                interpolated linearly between probe steps.

The matched ratio of two runs is exp(median over ℓ of log m_T(ℓ) − log m_C(ℓ)) over 21 levels
spread evenly across the losses both runs pass through after warm-up. NaN when the two runs
share no range of losses.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from smoothbench.claims.registry import Statistic
    from smoothbench.claims.statistics import RunData

LEVELS = 21
SMOOTHING_SHARE = 0.025  # the smoothing window: 2.5 % of the run's steps (25 of 1,000)


def progress_curve(steps: np.ndarray, loss: np.ndarray, total_steps: int) -> np.ndarray:
    """The running minimum of the training loss after a centred moving average."""
    window = max(1, int(round(SMOOTHING_SHARE * total_steps)))
    if window > 1 and len(loss) >= window:
        kernel = np.ones(window) / window
        padded = np.pad(loss, (window // 2, window - 1 - window // 2), mode="edge")
        loss = np.convolve(padded, kernel, mode="valid")
    return np.minimum.accumulate(loss)


def _curve(run: RunData, stat: Statistic) -> tuple[np.ndarray, np.ndarray] | None:
    """(progress, log metric) at the run's probe steps after warm-up, or None."""
    names = run.matching(stat.metric)
    if not names:
        return None
    probe_steps, values = run.numbers(names[0])
    loss_steps, loss = run.numbers("train/loss")
    if len(loss) < 2 or not len(values):
        return None
    total = run.config.get("steps")
    total = int(total) if isinstance(total, int | float) and total > 0 else int(loss_steps[-1]) + 1
    keep = (probe_steps >= stat.warmup * total) & (values > 0)
    if keep.sum() < 2:
        return None
    progress = progress_curve(loss_steps, loss, total)
    at_probes = np.interp(probe_steps[keep], loss_steps, progress)
    return at_probes, np.log(values[keep])


def matched_ratio(treatment: RunData, control: RunData, stat: Statistic) -> float:
    """Treatment / control of `stat.metric` at matched training loss (see the module doc)."""
    curves = [_curve(run, stat) for run in (treatment, control)]
    if any(c is None for c in curves):
        return math.nan
    (progress_t, log_t), (progress_c, log_c) = curves  # type: ignore[misc]
    high = min(progress_t[0], progress_c[0])
    low = max(progress_t[-1], progress_c[-1])
    if not low < high:
        return math.nan
    levels = np.linspace(high, low, LEVELS)
    # progress falls with the step: interpolate against -progress, which rises
    at_t = np.interp(-levels, -progress_t, log_t)
    at_c = np.interp(-levels, -progress_c, log_c)
    return float(math.exp(np.median(at_t - at_c)))
