"""Progress of a long CLI command, on a terminal only: piped or redirected
output (cron, scripts) stays the plain result lines."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    """A line `label: done/total` rewritten in place while stdout is a TTY."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.label, self.total = label, total
        self.shown = self.stream.isatty()

    def update(self, done: int, step: str = "") -> None:
        """Show `done` of the total, and what is being done now."""
        if self.shown:
            text = f"{self.label}: {done}/{self.total}" + (f" {step}" if step else "")
            self.stream.write(f"\r\x1b[K{text}")
            self.stream.flush()

    def finish(self) -> None:
        """Clear the line, so the command's own output starts clean."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
