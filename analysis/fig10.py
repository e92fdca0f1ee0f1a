"""Paper Fig. 10: Fig. 4's smoothness measures for the deep linear network (log-scale y).

python analysis/fig10.py multirun/fig10/<date> --out figures/
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import fig4
import matplotlib.pyplot as plt
import pandas as pd
from _common import run_script

NAME = "fig10"
METRICS = ["landscape/*"]  # what the figure reads (fnmatch patterns)


def make_figure(
    df: pd.DataFrame, model: str | None = fig4.DLN, band: str = "minmax", logy: bool = True
) -> plt.Figure:
    """fig4.make_figure on the DLN runs, y axes in log scale (the DLN's losses span decades)."""
    return fig4.make_figure(df, model=model, band=band, logy=logy)


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(
        NAME,
        argv,
        __doc__,
        lambda df, args: make_figure(df, args.model, args.band, args.logy),
        lambda parser: fig4.add_arguments(parser, default_model=fig4.DLN, default_logy=True),
        metrics=METRICS,
    )


if __name__ == "__main__":
    sys.exit(main())
