"""Progress of long loops (calibration, evaluation, prediction over folders, bench rows).

On a terminal: a rich progress bar on stderr with the count, rate and time left, removed when
the loop ends. Off a terminal (logs, CI): a line on stderr once the loop has run 5 s, then at
every further 10 % or every 30 s, whichever comes first. ``set_quiet(True)`` (the CLI's
``--quiet``) silences both. Library calls stay silent unless a caller turns progress on with
``set_enabled(True)``, which the CLI does.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

_STATE = {"enabled": False, "quiet": False}
_BAR: dict[str, Any] = {"progress": None}  # the one rich Progress on screen; nested loops add tasks
FIRST_LINE_AFTER_S = 5.0
LINE_EVERY_S = 30.0


def set_enabled(on: bool) -> None:
    """Show progress at all (the CLI turns it on; the library is silent by default)."""
    _STATE["enabled"] = on


def set_quiet(on: bool) -> None:
    """``--quiet``: no progress, whatever else says."""
    _STATE["quiet"] = on


@contextmanager
def suppressed() -> Iterator[None]:
    """No progress inside (a caller that shows its own bar, as training does)."""
    was = _STATE["enabled"]
    _STATE["enabled"] = False
    try:
        yield
    finally:
        _STATE["enabled"] = was


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class LineProgress:
    """The off-terminal form: occasional one-line reports."""

    def __init__(self, label: str, total: int, unit: str, stream: TextIO) -> None:
        self.label, self.total, self.unit, self.stream = label, total, unit, stream
        self.done = 0
        self.t0 = self.last_t = time.monotonic()
        self.last_tenth = 0

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units; print a line when one is due."""
        self.done += n
        now = time.monotonic()
        elapsed = now - self.t0
        tenth = int(10 * self.done / self.total) if self.total else 0
        due = elapsed >= FIRST_LINE_AFTER_S and (
            tenth > self.last_tenth or now - self.last_t >= LINE_EVERY_S
        )
        if due or (self.done >= self.total and self.last_t != self.t0):
            self.last_t, self.last_tenth = now, tenth
            self.stream.write(self.line(elapsed) + "\n")
            self.stream.flush()

    def line(self, elapsed: float) -> str:
        """``label: 50/500 images (10%), 3.2 images/s, 2 min left``."""
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        left = ""
        if rate > 0 and self.total and self.done < self.total:
            left = f", {_duration((self.total - self.done) / rate)} left"
        return (
            f"{self.label}: {self.done}/{self.total} {self.unit}{share}, "
            f"{rate:.2f} {self.unit}/s{left}"
        )


@contextmanager
def progress(label: str, total: int, unit: str = "images") -> Iterator[Callable[[int], None]]:
    """``with progress("calibrating", 500) as advance: ... advance(batch)``."""
    stream = sys.stderr
    if not _STATE["enabled"] or _STATE["quiet"] or total <= 0:
        yield lambda n=1: None
        return
    if not stream.isatty():
        bar = LineProgress(label, total, unit, stream)
        yield bar.advance
        return
    if _BAR["progress"] is not None:  # inside another loop's bar: one more line in it
        with _task(_BAR["progress"], label, total, unit) as advance:
            yield advance
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(file=stream), transient=True) as bar:
        _BAR["progress"] = bar
        try:
            with _task(bar, label, total, unit) as advance:
                yield advance
        finally:
            _BAR["progress"] = None


@contextmanager
def _task(bar: Any, label: str, total: int, unit: str) -> Iterator[Callable[[int], None]]:
    task = bar.add_task(label, total=total, rate="")
    t0 = time.monotonic()
    done = [0]

    def advance(n: int = 1) -> None:
        done[0] += n
        rate = done[0] / max(time.monotonic() - t0, 1e-9)
        bar.update(task, completed=done[0], rate=f"{rate:.2f} {unit}/s")

    try:
        yield advance
    finally:
        bar.refresh()  # the final count once, then the line goes
        bar.remove_task(task)
