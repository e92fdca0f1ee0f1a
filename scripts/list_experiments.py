#!/usr/bin/env python
"""The experiment presets (`smoothbench-train -m experiment=NAME`), with what each reproduces
and its runtime per scale, read from the presets themselves: a `description:` key when a preset
has one, else its header comment (the first paragraph; the "Runtime per run" line).

    python scripts/list_experiments.py            # one block per preset
    python scripts/list_experiments.py --names    # the names only
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parents[1] / "conf" / "experiment"
# header lines that end the description paragraph
SECTION = re.compile(r"^(Runtime|Should show|Measured|Each |ICS costs|Step sizes|VGG surfaces)")


def header(path: Path) -> list[str]:
    """The comment lines at the top of a preset, without '# ' and the @package line."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line[1:].strip() if not line.startswith("#   ") else line[1:]
        if text.startswith("@package"):
            continue
        lines.append(text)
    return lines


def describe(path: Path) -> tuple[str, str | None]:
    """(description, runtime line or None) of one preset file."""
    key = re.search(r"^description:\s*(.+)$", path.read_text(), re.M)
    lines = header(path)
    runtime = next((ln for ln in lines if ln.startswith("Runtime")), None)
    if key:
        return key.group(1).strip().strip("'\""), runtime
    paragraph = []
    for line in lines:
        if line.startswith("  ") or SECTION.match(line):  # an example command or a new section
            break
        paragraph.append(line)
    return " ".join(paragraph).strip(), runtime


def presets(root: Path = EXPERIMENTS) -> list[Path]:
    return sorted(root.glob("*.yaml"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="list_experiments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--names", action="store_true", help="print the preset names only")
    args = parser.parse_args(argv)
    for path in presets():
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
