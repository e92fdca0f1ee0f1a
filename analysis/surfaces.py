"""Loss surfaces (Li et al. 2018) of trained nets: chaotic without BN or shortcuts.

One panel per `surfaces/<name>.npz` of the loaded runs (written by `smoothbench-surface`):
a 2-D surface as a loss map with contour lines, every map of the figure on one colour scale
(logarithmic when the losses span more than a decade) so the maps compare; a 1-D curve (or the
interpolation between two checkpoints) as loss and accuracy against the coordinate. The title
of a net with batch statistics says which ones the surface used (settings' bn_mode), since that
changes it by orders of magnitude.

    python analysis/surfaces.py multirun/surfaces/<date> --out figures/
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from _common import BATCH_STAT_NORMS, run_script
from _notes import annotate
from matplotlib.colors import LogNorm, Normalize

from smoothbench.plotting import condition_keys, condition_label, norm_color, varying_keys
from smoothbench.results import MissingMetricError, load_surfaces

NAME = "surfaces"
COLUMNS = 3
CONTOUR_LEVELS = 12
LOG_SPAN = 10.0  # max/min loss above which the shared colour scale is logarithmic


def surface_axes(surface: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, betas) of a 2-D surface; losses[i, j] is the loss at (alphas[i], betas[j])."""
    if surface["alphas"] is not None and surface["betas"] is not None:
        return surface["alphas"], surface["betas"]
    coords = surface["coords"]
    if coords is not None and coords.ndim == 3:  # a (n, m, 2) grid of points
        return coords[:, 0, 0], coords[0, :, 1]
    n, m = surface["losses"].shape
    return np.linspace(-1, 1, n), np.linspace(-1, 1, m)


def shared_norm(surfaces: pd.DataFrame, log: bool) -> Normalize | None:
    """One colour scale for every 2-D surface of the figure: log when asked for and the losses
    (all positive) span more than LOG_SPAN, else linear; None without a finite 2-D loss."""
    values = [
        np.asarray(s["losses"], dtype=float) for _, s in surfaces.iterrows() if s["kind"] == "2d"
    ]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    if finite.size == 0:
        return None
    lo, hi = float(finite.min()), float(finite.max())
    if log and lo > 0 and hi / lo > LOG_SPAN:
        return LogNorm(vmin=lo, vmax=hi)
    return Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1.0)


def draw_2d(ax, surface: pd.Series, norm: Normalize) -> Any:
    """A loss map on the figure's colour scale with contour lines at that scale's levels."""
    alphas, betas = surface_axes(surface)
    losses = np.asarray(surface["losses"], dtype=float)
    mesh = ax.pcolormesh(alphas, betas, losses.T, norm=norm, cmap="viridis", shading="nearest")
    mesh.set_gid("losses")
    finite = losses[np.isfinite(losses)]
    if finite.size and finite.max() > finite.min():
        lo, hi = max(finite.min(), norm.vmin), min(finite.max(), norm.vmax)
        log = isinstance(norm, LogNorm)
        levels = (
            np.geomspace(lo, hi, CONTOUR_LEVELS) if log else np.linspace(lo, hi, CONTOUR_LEVELS)
        )
        if len(np.unique(levels)) == CONTOUR_LEVELS:
            ax.contour(alphas, betas, losses.T, levels=levels, colors="white", linewidths=0.5)
    ax.set_xlabel(r"$\alpha$ (direction 1)")
    ax.set_ylabel(r"$\beta$ (direction 2)")
    return mesh


def bn_statistics(surface: pd.Series, condition: dict) -> str:
    """ " (BN statistics: eval)" for a net with batch statistics; "" for one without."""
    if str(condition.get("norm.name")) not in BATCH_STAT_NORMS:
        return ""
    return f" (BN statistics: {surface['settings'].get('bn_mode', 'unrecorded')})"


def draw_1d(ax, surface: pd.Series, color) -> None:
    coords = surface["coords"]
    if coords is None:
        coords = np.linspace(0, 1, len(surface["losses"]))
    (line,) = ax.plot(coords, surface["losses"], color=color, lw=1.2, label="loss")
    line.set_gid("losses")
    interpolation = surface["settings"].get("kind") == "interpolation"
    ax.set_xlabel(
        r"$\alpha$ (interpolation $\theta_0 \to \theta_1$)" if interpolation else r"$\alpha$"
    )
    ax.set_ylabel("loss")
    if surface["accs"] is not None:
        twin = ax.twinx()
        (acc,) = twin.plot(
            coords, surface["accs"], color=color, lw=1.0, linestyle="--", label="accuracy"
        )
        acc.set_gid("accs")
        twin.set_ylabel("accuracy (dashed)")
        twin.grid(False)


def make_figure(surfaces: pd.DataFrame, log: bool = True) -> plt.Figure:
    """One panel per surface file, titled by condition, file name and BN mode."""
    if surfaces.empty:
        raise MissingMetricError(
            "missing surfaces: no loaded run has surfaces/*.npz "
            "(make them with smoothbench-surface)"
        )
    keys = condition_keys(surfaces)
    conds = [
        dict(zip(keys, row, strict=True))
        for row in surfaces[keys].astype(object).itertuples(index=False)
    ]
    varying = varying_keys(conds) + (["seed"] if surfaces["seed"].nunique() > 1 else [])
    ncols = min(COLUMNS, len(surfaces))
    nrows = math.ceil(len(surfaces) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(2.6 * ncols, 2.4 * nrows), squeeze=False, layout="constrained"
    )
    norm = shared_norm(surfaces, log)
    mesh = None
    for ax, (_, surface), condition in zip(axes.ravel(), surfaces.iterrows(), conds, strict=False):
        if "seed" in varying:
            condition = {**condition, "seed": surface["seed"]}
        label = condition_label(condition, varying)
        ax.set_title(f"{label}\n{surface['name']}{bn_statistics(surface, condition)}", fontsize=7)
        if surface["kind"] == "2d":
            mesh = draw_2d(ax, surface, norm)
        else:
            draw_1d(ax, surface, norm_color(condition.get("norm.name")))
    for ax in axes.ravel()[len(surfaces) :]:
        ax.set_visible(False)
    if mesh is not None:  # one colour bar: every map is on the same scale
        maps = [ax for ax in axes.ravel() if any(c.get_gid() == "losses" for c in ax.collections)]
        log_scale = isinstance(norm, LogNorm)
        fig.colorbar(mesh, ax=maps, label="loss" + (" (log scale)" if log_scale else ""))
    annotate(fig, surfaces_context(surfaces), warn=False)
    return fig


def surfaces_context(surfaces: pd.DataFrame) -> pd.DataFrame:
    """The surfaces' config columns, one row per run, shaped for the provenance footer."""
    return surfaces.drop(columns=["kind"]).drop_duplicates("run").assign(metric="", step=0)


def load(args):
    if args.wandb:
        raise ValueError("surfaces are read from run dirs (surfaces/*.npz); W&B does not hold them")
    if not args.paths:
        raise ValueError("no runs given: pass run or sweep dirs")
    return load_surfaces(args.paths, status=args.status)


def add_arguments(parser) -> None:
    parser.add_argument("--linear", action="store_true", help="linear (not log) colour scale")


def build(surfaces, args) -> plt.Figure:
    """The figure from the loaded runs and the parsed command line (also used by the report)."""
    return make_figure(surfaces, log=not args.linear)


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(
        NAME,
        argv,
        __doc__,
        build,
        add_arguments,
        load=load,
    )


if __name__ == "__main__":
    sys.exit(main())
