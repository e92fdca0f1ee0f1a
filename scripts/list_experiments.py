#!/usr/bin/env python
"""The experiment presets (`smoothbench-train -m experiment=NAME`), with what each reproduces
and its runtime per scale, read from the presets themselves: a `description:` key when a preset
has one, else its header comment (the first paragraph; the "Runtime per run" line).

    python scripts/list_experiments.py            # one block per preset
    python scripts/list_experiments.py --names    # the names only
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from smoothbench.presets import describe, presets

EXPERIMENTS = Path(__file__).resolve().parents[1] / "conf" / "experiment"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="list_experiments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--names", action="store_true", help="print the preset names only")
    args = parser.parse_args(argv)
    for path in presets(EXPERIMENTS):
        if args.names:
            print(path.stem)
            continue
        description, runtime = describe(path)
        print(path.stem)
        wrap = textwrap.TextWrapper(width=96, initial_indent="    ", subsequent_indent="    ")
        print(wrap.fill(description or "(no description)"))
        if runtime:
            print(wrap.fill(runtime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
