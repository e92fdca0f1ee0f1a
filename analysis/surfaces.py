"""Loss surfaces (Li et al. 2018) of trained nets: chaotic without BN or shortcuts.

One panel per `surfaces/<name>.npz` of the loaded runs (written by `smoothbench-surface`):
a 2-D surface as a log-coloured loss map with contour lines, a 1-D curve (or the
interpolation between two checkpoints) as loss and accuracy against the coordinate. Each title
says which BN statistics the surface used (settings' bn_mode), since that changes it by orders
of magnitude (science.md §6).

    python analysis/surfaces.py multirun/surfaces/<date> --out figures/
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from _common import run_script
from matplotlib.colors import LogNorm

from smoothbench.plotting import condition_keys, condition_label, norm_color, varying_keys
from smoothbench.results import MissingMetricError, load_surfaces

NAME = "surfaces"
COLUMNS = 3
CONTOUR_LEVELS = 12


def surface_axes(surface: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, betas) of a 2-D surface; losses[i, j] is the loss at (alphas[i], betas[j])."""
    if surface["alphas"] is not None and surface["betas"] is not None:
        return surface["alphas"], surface["betas"]
    coords = surface["coords"]
    if coords is not None and coords.ndim == 3:  # a (n, m, 2) grid of points
        return coords[:, 0, 0], coords[0, :, 1]
    n, m = surface["losses"].shape
    return np.linspace(-1, 1, n), np.linspace(-1, 1, m)


def draw_2d(ax, surface: pd.Series, log: bool) -> None:
    alphas, betas = surface_axes(surface)
    losses = np.asarray(surface["losses"], dtype=float)
    finite = losses[np.isfinite(losses)]
    use_log = log and finite.size > 0 and finite.min() > 0
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if use_log else None
    mesh = ax.pcolormesh(alphas, betas, losses.T, norm=norm, cmap="viridis", shading="nearest")
    mesh.set_gid("losses")
    if finite.size and finite.max() > finite.min():
        levels = (
            np.geomspace(finite.min(), finite.max(), CONTOUR_LEVELS)
            if use_log
            else np.linspace(finite.min(), finite.max(), CONTOUR_LEVELS)
        )
        ax.contour(alphas, betas, losses.T, levels=levels, colors="white", linewidths=0.5)
    ax.figure.colorbar(mesh, ax=ax, label="loss" + (" (log colour)" if use_log else ""))
    ax.set_xlabel(r"$\alpha$ (direction 1)")
    ax.set_ylabel(r"$\beta$ (direction 2)")


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
    for ax, (_, surface), condition in zip(axes.ravel(), surfaces.iterrows(), conds, strict=False):
        if "seed" in varying:
            condition = {**condition, "seed": surface["seed"]}
        label = condition_label(condition, varying)
        mode = surface["settings"].get("bn_mode", "unrecorded")
        ax.set_title(f"{label}\n{surface['name']} (BN statistics: {mode})", fontsize=7)
        if surface["kind"] == "2d":
            draw_2d(ax, surface, log)
        else:
            draw_1d(ax, surface, norm_color(condition.get("norm.name")))
    for ax in axes.ravel()[len(surfaces) :]:
        ax.set_visible(False)
    return fig


def load(args):
    if args.wandb:
        raise ValueError("surfaces are read from run dirs (surfaces/*.npz); W&B does not hold them")
    if not args.paths:
        raise ValueError("no runs given: pass run or sweep dirs")
    return load_surfaces(args.paths, status=args.status)


def add_arguments(parser) -> None:
    parser.add_argument("--linear", action="store_true", help="linear (not log) colour scale")


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(
        NAME,
        argv,
        __doc__,
        lambda surfaces, args: make_figure(surfaces, log=not args.linear),
        add_arguments,
        load=load,
    )


if __name__ == "__main__":
    sys.exit(main())
