"""A dependency-free progress bar, drawn on stderr only when stderr is a terminal."""

from __future__ import annotations

import sys
from typing import TextIO

#: Width of the bar itself, in characters.
BAR_WIDTH = 30


class ProgressBar:
    """
    A one-line ``label [#####.....] done/total`` bar, redrawn in place with a carriage return.

    Disabled (every method does nothing) unless ``stream`` is a terminal, so pipes, CI logs and tests stay clean.
    Use it as a context manager; leaving the block ends the line.
    """

    def __init__(self, total: int, label: str, *, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.total = max(0, int(total))
        self.label = label
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        isatty = getattr(self._stream, "isatty", None)
        self.enabled = enabled if enabled is not None else bool(isatty and isatty())
        self._drawn = False

    def __enter__(self) -> ProgressBar:
        self._draw()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more items as done and redraw."""
        self.done = min(self.total, self.done + steps) if self.total else self.done + steps
        self._draw()

    def close(self) -> None:
        """End the bar's line (once)."""
        if self.enabled and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False

    def _draw(self) -> None:
        if not self.enabled:
            return
        filled = BAR_WIDTH if not self.total else BAR_WIDTH * self.done // self.total
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self._stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}")
        self._stream.flush()
        self._drawn = True
