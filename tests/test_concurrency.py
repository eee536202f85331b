"""One run per output, and SIGTERM handled as Ctrl-C: real processes through the CLI.

Two runs on one output are started together; exactly one may write it, the other is refused
in one line before anything is moved (``densedepth.util.outputs.OutputLock``). SIGTERM (what
``timeout``, schedulers and ``docker stop`` send) puts an --overwrite's previous folder back
and ends with exit 143. Every wait is bounded in time.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HOME": os.environ.get("HOME", "/tmp")}


def _both(cmd: list[str], timeout: float = 300) -> list[tuple[int, str, str]]:
    """Start two copies of ``cmd`` together; (exit code, stdout, stderr) of each."""
    procs = [
        subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT
        )
        for _ in range(2)
    ]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        done.append((p.returncode, out, err))
    return done


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_export import tiny_checkpoint

    from export.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("models")
    ckpt = tiny_checkpoint(root / "tiny.pt", "densenet121")
    return Path(export_onnx(ckpt, root / "tiny_fp32.onnx")["path"])


def _bench(model: Path, out: Path, min_time: float, *extra: str) -> list[str]:
    return _cli("bench", str(model), "--out", str(out), "--no-accuracy", "--iters", "2",
                "--min-time", str(min_time), "--threads", "1", *extra)  # fmt: skip


def _one_won(results: list[tuple[int, str, str]], refusal: str) -> tuple[int, str, str]:
    """Exactly one run succeeded and the other was refused in one line naming ``refusal``."""
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], [(r[0], r[2][-600:]) for r in results]
    loser = next(r for r in results if r[0] == 1)
    errors = [line for line in loser[2].splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and refusal in errors[0] and "Traceback" not in loser[2], loser[2]
    return next(r for r in results if r[0] == 0)


def _old_report(model: Path, out: Path) -> Path:
    """A report folder a bench run wrote (what the --overwrite runs replace)."""
    first = subprocess.run(_bench(model, out, 0.1), capture_output=True, text=True,
                           env=_env(), timeout=300)  # fmt: skip
    assert first.returncode == 0, first.stderr
    return out


@pytest.mark.slow
def test_two_bench_overwrite_runs_on_one_folder_one_writes_the_other_is_refused(
    tiny_onnx: Path, tmp_path: Path
) -> None:
    out = _old_report(tiny_onnx, tmp_path / "report")
    # each run measures for 4 s while it holds the folder: started together, they overlap
    winner = _one_won(_both(_bench(tiny_onnx, out, 4.0, "--overwrite")), "is in use by another run")
    assert "saved" in winner[1]
    marker = json.loads((out / ".densedepth").read_text())
    assert marker["state"] == "complete" and "bench.json" in marker["files"]
    assert sorted(marker["files"]) == sorted(snapshot(out).keys() - {".densedepth"})
    assert not list(tmp_path.glob(".dd-*")), list(tmp_path.iterdir())  # no backup, no lock left


@pytest.mark.slow
def test_two_trains_on_one_out_one_trains_the_other_is_refused(tmp_path: Path) -> None:
    from test_train import _train_cmd

    out = tmp_path / "run"
    cmd = _train_cmd(out, "--max-steps", "6", "--checkpoint-every", "0")
    winner = _one_won(_both(cmd), "is in use by another run")
    assert "done: 6 steps" in winner[1]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [4, 6]  # one run's epochs (4 batches an epoch)
    assert not list(tmp_path.glob(".dd-lock-*"))


def _wait_for(cond: object, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ended early: {proc.communicate()[1][-2000:]}")
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("timed out waiting")


@pytest.mark.slow
def test_sigterm_during_bench_overwrite_puts_the_old_report_back_and_exits_143(
    tiny_onnx: Path, tmp_path: Path
) -> None:
    out = _old_report(tiny_onnx, tmp_path / "report")
    before = snapshot(out)
    proc = subprocess.Popen(_bench(tiny_onnx, out, 60.0, "--overwrite"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())  # fmt: skip

    def replacing() -> bool:  # the old folder moved aside, the new one being written
        return any(p.name.startswith(".dd-old-") for p in tmp_path.iterdir())

    _wait_for(replacing, proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "terminated" and "Traceback" not in err
    assert snapshot(out) == before  # byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no backup, no lock
