"""Paper Fig. 10: Fig. 4's smoothness measures for the deep linear network (log-scale y).

The Fig. 4 script (analysis/fig4.py) with the arguments of Fig. 10's row in the figure table
(smoothbench.paper); arguments given here come after them, so they win.

    python analysis/fig10.py multirun/fig10/<date> --out figures/
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import fig4
import matplotlib.pyplot as plt
import pandas as pd

from smoothbench import paper

ARGS = paper.figure("fig10").args  # --model dln --logy --name fig10


def make_figure(df: pd.DataFrame, band: str = "minmax") -> plt.Figure:
    """Fig. 4's panels as Fig. 10's row draws them."""
    args = fig4.parse(ARGS)
    return fig4.make_figure(df, args.model, band, args.logy)


def main(argv: Sequence[str] | None = None) -> int:
    return fig4.main([*ARGS, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
