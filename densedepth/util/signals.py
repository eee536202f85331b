"""SIGTERM handled as Ctrl-C: what ``timeout``, batch schedulers and ``docker stop`` send.

``handle_sigterm()`` makes SIGTERM raise ``Terminated``, a ``KeyboardInterrupt``, so every
clean-up written for Ctrl-C runs for it too (an ``--overwrite`` puts the previous folder back,
temp files go); the CLI then exits 143 (128 + 15) instead of 130. Training turns both signals
into a flag it checks between steps (``stop_on_signals``), saves ``last.pt`` and stops.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (raised where Ctrl-C's KeyboardInterrupt would be)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def handle_sigterm() -> None:
    """From now on SIGTERM raises ``Terminated`` in the main thread (no-op elsewhere)."""
    with suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, _raise_terminated)


def exit_code(exc: BaseException | int) -> int:
    """The shell's code for an interruption: 143 for SIGTERM, 130 for Ctrl-C."""
    if isinstance(exc, int):
        return EXIT_CODES.get(signal.Signals(exc), 128 + exc)
    return 143 if isinstance(exc, Terminated) else 130


@contextmanager
def stop_on_signals() -> Iterator[dict[str, int]]:
    """Turn Ctrl-C and SIGTERM into a flag (``{"stop": signum or 0}``) that a loop checks
    between steps (main thread only; elsewhere the flag stays 0)."""
    flag = {"stop": 0}

    def stop(signum: int, frame: FrameType | None) -> None:
        flag["stop"] = signum

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, stop)
    except ValueError:  # not the main thread
        pass
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
