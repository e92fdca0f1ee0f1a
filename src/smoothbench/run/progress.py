"""Progress of a run: a tqdm bar on a terminal, plain log lines elsewhere (a SLURM log, a pipe),
where a bar's carriage returns would pile up as one unreadable line."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)

# Seconds between two progress lines when the output is not a terminal.
LINE_EVERY_S = 30.0


class Progress:
    """The steps `start..steps-1` to iterate, shown as a bar or as lines; `show(row, rate)`
    after each written block of rows."""

    def __init__(
        self, start: int, steps: int, desc: str, enabled: bool, terminal: bool | None = None
    ):
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self.steps, self.desc = steps, desc
        self.lines = enabled and not terminal
        self.bar = tqdm(
            range(start, steps),
            initial=start,
            total=steps,
            disable=not enabled or self.lines,
            desc=desc,
            dynamic_ncols=True,
            mininterval=1.0,
        )
        self._last_line = time.monotonic()

    def __iter__(self):
        return iter(self.bar)

    def show(self, row: dict[str, Any], steps_per_s: float | None) -> None:
        postfix = {"loss": f"{row['train/loss']:.3f}"}
        if steps_per_s is not None:
            postfix["steps/s"] = f"{steps_per_s:.1f}"
        if not self.lines:
            self.bar.set_postfix(postfix, refresh=False)
            return
        now = time.monotonic()
        if now - self._last_line >= LINE_EVERY_S or row["step"] + 1 == self.steps:
            self._last_line = now
            rate = f", {postfix['steps/s']} steps/s" if "steps/s" in postfix else ""
            log.info(
                "%s: step %d/%d, loss %s%s",
                self.desc,
                row["step"] + 1,
                self.steps,
                postfix["loss"],
                rate,
            )

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
