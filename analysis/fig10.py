"""Paper Fig. 10: Fig. 4's smoothness measures for the deep linear network (log-scale y).

python analysis/fig10.py multirun/fig10/<date> --out figures/
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from _common import DLN, add_smoothness_arguments, run_script, smoothness_figure

NAME = "fig10"
METRICS = ["landscape/*"]  # what the figure reads (fnmatch patterns)


def make_figure(
    df: pd.DataFrame, model: str | None = DLN, band: str = "minmax", logy: bool = True
) -> plt.Figure:
    """Fig. 4's panels for the DLN runs, y axes in log scale (the DLN's losses span decades)."""
    return smoothness_figure(df, model=model, band=band, logy=logy)


def add_arguments(parser) -> None:
    add_smoothness_arguments(parser, default_model=DLN, default_logy=True)


def build(df, args) -> plt.Figure:
    """The figure from the loaded runs and the parsed command line (also used by the report)."""
    return make_figure(df, args.model, args.band, args.logy)


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(
        NAME,
        argv,
        __doc__,
        build,
        add_arguments,
        metrics=METRICS,
    )


if __name__ == "__main__":
    sys.exit(main())
