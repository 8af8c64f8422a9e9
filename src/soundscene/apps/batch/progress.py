"""Progress of a batch: hours of audio done, the rate (times real time) and the time left.

On a terminal, a bar (tqdm) in hours of audio; elsewhere (a log, a cluster job), one line at most once a
minute, and one at the end: ``batch: 12.50 of 100.00 h of audio (12%), 340x real time, 15 min left``.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts audio seconds done out of the total given to :meth:`begin`; ``enabled=False`` says nothing.
    ``bar``: a bar (default: when ``stream``, stderr by default, is a terminal)."""

    def __init__(self, *, enabled: bool = True, stream: TextIO | None = None, every_seconds: float = 60.0,
                 bar: bool | None = None):
        self.total, self.done = 0.0, 0.0
        self.enabled, self.stream = enabled, stream or sys.stderr
        self.every = every_seconds
        self.started = self._last = time.monotonic()
        self._want_bar = bar if bar is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = None

    def begin(self, total_seconds: float) -> None:
        """Start counting towards ``total_seconds`` of audio (the shards still to do)."""
        self.total, self.done = float(total_seconds), 0.0
        self.started = self._last = time.monotonic()
        if self.enabled and self._want_bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=round(self.total / 3600, 3), unit="h", desc="batch", file=self.stream,
                             bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} h audio [{elapsed}<{remaining}{postfix}]")

    def advance(self, seconds: float) -> None:
        self.done += seconds
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.rate:.0f}x real time", refresh=False)
            self._bar.update(round(seconds / 3600, 6))
        elif self.enabled and time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            print(self.line(), file=self.stream, flush=True)

    @property
    def rate(self) -> float:
        """Audio seconds per second of wall time, so far."""
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def line(self) -> str:
        share = self.done / self.total if self.total else 1.0
        left = (self.total - self.done) / self.rate if self.rate > 0 else float("inf")
        when = "unknown" if left == float("inf") else duration_text(left)
        return (f"batch: {self.done / 3600:.2f} of {self.total / 3600:.2f} h of audio ({share:.0%}), "
                f"{self.rate:.0f}x real time, {when} left")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.done:
            print(self.line(), file=self.stream, flush=True)


def duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
