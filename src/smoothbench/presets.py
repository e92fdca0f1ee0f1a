"""The experiment presets (`conf/experiment/*.yaml`) described from their own headers: a
`description:` key when a preset has one, else the first paragraph of its header comment, and
its "Runtime" line. `smoothbench-train --help` lists them one line each;
`scripts/list_experiments.py` prints them whole.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

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


def presets(experiment_dir: Path) -> list[Path]:
    return sorted(Path(experiment_dir).glob("*.yaml"))


def one_line_each(experiment_dir: Path, width: int = 100) -> str:
    """`name  description` per preset, each cut to `width` characters (for --help)."""
    files = presets(experiment_dir)
    pad = max((len(p.stem) for p in files), default=0) + 2
    lines = []
    for path in files:
        description = describe(path)[0] or "(no description)"
        text = textwrap.shorten(description, width=width - pad - 2, placeholder=" ...")
        lines.append(f"  {path.stem.ljust(pad)}{text}")
    return "\n".join(lines)
