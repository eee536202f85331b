"""Progress of long loops: occasional lines off a terminal, a bar on one, nothing when quiet."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

import densedepth.util.progress as prog


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(prog.time, "monotonic", c)
    monkeypatch.setattr(prog, "_STATE", {"enabled": True, "quiet": False})
    return c


def run(clock: Clock, total: int, seconds_per_item: float, stream: io.StringIO) -> list[str]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stderr", stream)
        with prog.progress("calibrating", total) as advance:
            for _ in range(total):
                clock.t += seconds_per_item
                advance(1)
    return stream.getvalue().splitlines()


def test_off_a_terminal_a_line_after_5_s_then_every_10_percent(clock: Clock) -> None:
    lines = run(clock, 100, 1.0, io.StringIO())  # 100 s in all
    # first line once 5 s have passed and a new tenth began (10 %), then one per tenth
    assert [line.split(":")[1].split()[0] for line in lines] == [
        f"{k}/100" for k in range(10, 101, 10)
    ]
    assert lines[0] == "calibrating: 10/100 images (10%), 1.00 images/s, 90 s left"
    assert lines[-1] == "calibrating: 100/100 images (100%), 1.00 images/s"


def test_every_30_s_on_slow_loops_and_nothing_on_fast_ones(clock: Clock) -> None:
    lines = run(clock, 2000, 0.5, io.StringIO())  # 10 % = 100 s: a line every 30 s as well
    assert len(lines) > 30 and "min left" in lines[0]
    assert run(clock, 50, 0.01, io.StringIO()) == []  # half a second: silent


def test_quiet_and_library_default_are_silent(clock: Clock, monkeypatch) -> None:
    prog.set_quiet(True)
    assert run(clock, 100, 1.0, io.StringIO()) == []
    monkeypatch.setattr(prog, "_STATE", {"enabled": False, "quiet": False})
    assert run(clock, 100, 1.0, io.StringIO()) == []


def test_on_a_terminal_a_rich_bar(clock: Clock) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    run(clock, 20, 1.0, out)
    text = out.getvalue()
    assert "calibrating" in text and "20/20" in text and "images/s" in text


def test_nested_loops_share_one_bar_and_training_suppresses_it(clock: Clock) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stderr", out)
        with prog.progress("bench rows", 2, "rows") as rows:
            for _ in range(2):
                with prog.progress("evaluating", 3) as images:  # no second live display
                    for _ in range(3):
                        clock.t += 1.0
                        images(1)
                rows(1)
        assert prog._BAR["progress"] is None
        with prog.suppressed(), prog.progress("validating", 3) as advance:
            advance(3)
    text = out.getvalue()
    assert "bench rows" in text and "evaluating" in text and "validating" not in text
    assert prog._STATE["enabled"]


def test_cli_evaluate_reports_progress_unless_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_export import tiny_checkpoint
    from typer.testing import CliRunner

    from cli import app

    ckpt = tiny_checkpoint(tmp_path / "c.pt", "densenet121")
    monkeypatch.setattr(prog, "FIRST_LINE_AFTER_S", 0.0)
    args = ["evaluate", str(ckpt), "--limit", "3", "--device", "cpu"]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "evaluating: 3/3 images (100%)" in result.output
    result = CliRunner().invoke(app, ["--quiet", *args], terminal_width=200)
    assert result.exit_code == 0 and "evaluating:" not in result.output
