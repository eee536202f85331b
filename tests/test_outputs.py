"""Outputs never lose a user's file: marked folders, staged --overwrite, stale temp files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from densedepth.util.errors import OutputError
from densedepth.util.outputs import (
    MARKER,
    OutputFolder,
    atomic_path,
    check_output_file,
    read_marker,
    remove_stale_temps,
    write_text_atomic,
)

ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (hidden ones too) -> SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def dead_pid() -> int:
    """The id of a process that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


def written_report(folder: Path, text: str = "old report") -> Path:
    """A folder as a verb leaves it: its files and a complete marker."""
    with OutputFolder(folder, overwrite=False, verb="bench") as path:
        (path / "bench.md").write_text(text)
        (path / "sub").mkdir()
        (path / "sub" / "rows.json").write_text("[1, 2]")
    return folder


def test_a_new_folder_is_marked_complete(tmp_path: Path) -> None:
    out = written_report(tmp_path / "a" / "report")
    marker = read_marker(out)
    assert marker is not None and marker["state"] == "complete" and marker["verb"] == "bench"
    assert (out / "bench.md").read_text() == "old report"


@pytest.mark.parametrize(
    ("make", "overwrite", "message"),
    [
        (lambda t: t / "report", False, "already exists; pass --overwrite"),
        (lambda t: t / "user", True, "holds files this toolkit did not write"),
        (lambda t: t / "user" / "notes.txt", True, "is a file; pass a folder"),
    ],
)
def test_refusals_touch_nothing(tmp_path: Path, make, overwrite: bool, message: str) -> None:
    written_report(tmp_path / "report")
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("precious")
    before = snapshot(tmp_path)
    with pytest.raises(OutputError, match=message), OutputFolder(make(tmp_path), overwrite, "x"):
        pytest.fail("entered")
    assert snapshot(tmp_path) == before


def test_the_current_home_and_root_folders_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "home" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for out, why in (
        (Path("."), "it is the current folder"),
        (Path(".."), "it is the home folder"),
        (tmp_path, "it holds the current folder"),
        (Path("/"), "it is the root of the file system"),
    ):
        with pytest.raises(OutputError, match=why), OutputFolder(out, True, "bench"):
            pytest.fail("entered")


def test_overwrite_replaces_a_marked_folder_and_leaves_no_backup(tmp_path: Path) -> None:
    out = written_report(tmp_path / "report")
    with OutputFolder(out, overwrite=True, verb="bench") as path:
        assert path == out and not (out / "bench.md").exists()
        (path / "bench.md").write_text("new report")
    assert snapshot(out).keys() == {"bench.md", MARKER}
    assert (out / "bench.md").read_text() == "new report"
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_error_or_ctrl_c_puts_the_old_folder_back(tmp_path: Path, error: BaseException) -> None:
    out = written_report(tmp_path / "report")
    before = snapshot(out)
    with pytest.raises(type(error)), OutputFolder(out, overwrite=True, verb="bench") as path:
        (path / "bench.md").write_text("half")
        raise error
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_an_error_in_a_new_folder_removes_it_and_keeps_a_users_empty_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError), OutputFolder(tmp_path / "new", False, "x") as path:
        (path / "part.txt").write_text("half")
        raise ValueError
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError), OutputFolder(tmp_path / "empty", False, "x") as path:
        (path / "part.txt").write_text("half")
        raise ValueError
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())


def test_sigkill_mid_overwrite_then_the_next_run_restores_the_old_folder(tmp_path: Path) -> None:
    out = written_report(tmp_path / "report")
    before = snapshot(out)
    code = (
        "import os, signal, sys; from pathlib import Path; "
        "from densedepth.util.outputs import OutputFolder\n"
        "with OutputFolder(Path(sys.argv[1]), True, 'bench') as p:\n"
        "    (p / 'bench.md').write_text('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT)
    assert done.returncode == -9
    backups = [p.name for p in tmp_path.iterdir() if p.name.startswith(".dd-old-")]
    assert len(backups) == 1 and (out / "bench.md").read_text() == "half"
    folder = OutputFolder(out, overwrite=False, verb="bench")
    with pytest.raises(OutputError, match="already exists"), folder:
        pytest.fail("entered")
    assert folder.note is not None and folder.note.startswith(f"restored {out}")
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead, alive = dead_pid(), os.getpid()
    stale_file = tmp_path / f".dd-tmp-{dead}-last.pt.abc.tmp"
    stale_dir = tmp_path / f".dd-tmp-{dead}-quant.xyz"
    live = tmp_path / f".dd-tmp-{alive}-model.onnx.def.tmp"
    user = tmp_path / ".dd-tmp-notes.txt"  # not our pattern: no process id
    for p in (stale_file, live, user):
        p.write_bytes(b"x" * 10)
    stale_dir.mkdir()
    (stale_dir / "scratch.onnx").write_bytes(b"x")
    assert sorted(remove_stale_temps(tmp_path)) == sorted([stale_file, stale_dir])
    assert live.exists() and user.exists()


def test_atomic_writes_leave_nothing_on_failure_and_name_their_temp(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.name.startswith(f".dd-tmp-{os.getpid()}-summary.json.")
        tmp.write_text("half")
        raise RuntimeError
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["summary.json"]
    with pytest.raises(OutputError, match="is a folder; give a file name"):
        write_text_atomic(tmp_path, "x")


def test_check_output_file(tmp_path: Path) -> None:
    (tmp_path / "theirs.json").write_text("{}")
    (tmp_path / "a_file").write_text("x")
    check_output_file(tmp_path / "new" / "deeper" / "m.json")  # created later: fine
    check_output_file(tmp_path / "theirs.json", ours=lambda p: True)
    for path, message in (
        (tmp_path, "is a folder"),
        (tmp_path / "theirs.json", "was not written by this toolkit"),
        (tmp_path / "a_file" / "m.json", "is a file, not a folder"),
    ):
        with pytest.raises(OutputError, match=message):
            check_output_file(path)
    assert (tmp_path / "theirs.json").read_text() == "{}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: permissions cannot refuse it")
def test_an_unwritable_parent_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with (
            pytest.raises(OutputError, match="is not writable"),
            OutputFolder(locked / "report", False, "bench"),
        ):
            pytest.fail("entered")
        assert not any(locked.iterdir())
    finally:
        locked.chmod(0o755)


def test_overwrite_lists_what_it_wrote_and_refuses_a_folder_holding_anything_else(
    tmp_path: Path,
) -> None:
    out = written_report(tmp_path / "report")
    assert read_marker(out)["files"] == ["bench.md", "sub/rows.json"]
    (out / "sub" / "notes.md").write_text("mine")
    before = snapshot(out)
    with pytest.raises(OutputError, match=r"did not write \(sub/notes.md\)"):
        OutputFolder(out, overwrite=True, verb="bench").__enter__()
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_a_symlinked_output_folder_is_followed_not_replaced(tmp_path: Path) -> None:
    target = written_report(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(target)
    with OutputFolder(link, overwrite=True, verb="bench") as path:
        (path / "bench.md").write_text("new report")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert (target / "bench.md").read_text() == "new report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_the_lock_refuses_a_second_holder_and_dies_with_its_process(tmp_path: Path) -> None:
    out = tmp_path / "report"
    code = (
        "import os, signal, sys, time; from pathlib import Path; "
        "from densedepth.util.outputs import OutputLock\n"
        "with OutputLock(Path(sys.argv[1]), 'bench'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=rf"in use by another run \(bench, PID {holder.pid}"):
            OutputFolder(out, overwrite=True, verb="bench").__enter__()
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with OutputFolder(out, overwrite=False, verb="bench") as path:  # the kernel released it
        (path / "bench.md").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # the lock file went too


def test_single_files_are_replaced_only_when_ours_and_with_overwrite(tmp_path: Path) -> None:
    from densedepth.util.outputs import artifact_path, claim_output, replacing, written_by_us

    mine = tmp_path / "model.onnx"
    with artifact_path(mine) as tmp:
        tmp.write_bytes(b"ours")
    assert written_by_us(mine)
    with replacing(False), pytest.raises(OutputError, match="already exists; pass --overwrite"):
        claim_output(mine)
    with replacing(True), artifact_path(mine) as tmp:
        tmp.write_bytes(b"ours again")
    theirs = tmp_path / "notes.onnx"
    theirs.write_bytes(b"the user's")
    for overwrite in (False, True):
        with replacing(overwrite), pytest.raises(OutputError, match="not written by this toolkit"):
            claim_output(theirs)
    time.sleep(0.01)
    mine.write_bytes(b"edited by the user")  # changed since: no longer ours to replace
    with replacing(True), pytest.raises(OutputError, match="not written by this toolkit"):
        claim_output(mine)
    assert theirs.read_bytes() == b"the user's" and mine.read_bytes() == b"edited by the user"


def test_onnx_runtimes_quantizer_scratch_stays_beside_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime makes pre.quant.* / ort.quant.* folders with tempfile: during an INT8 build
    they are made in our scratch folder beside the output (a SIGKILL leaves them to our
    sweep), never in the system temp folder."""
    import tempfile

    from test_export import tiny_checkpoint

    from calib.calibration import load_calibration_set
    from export.onnx_export import export_onnx
    from export.quantize import quantize_int8

    onnx_path = export_onnx(tiny_checkpoint(tmp_path / "t.pt", "densenet121"),
                            tmp_path / "t_fp32.onnx")["path"]  # fmt: skip
    with pytest.warns(UserWarning, match="fewer than"):
        calib = load_calibration_set("synthetic", (64, 64), n=4, height=64, width=64, seed=5)
    made: list[Path] = []
    real = tempfile.mkdtemp

    def recording(*args: object, **kwargs: object) -> str:
        path = real(*args, **kwargs)  # type: ignore[arg-type]
        made.append(Path(path))
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", recording)
    out = tmp_path / "out" / "q.onnx"
    quantize_int8(onnx_path, calib, out, "cpu")
    ort_made = [p for p in made if p.name.startswith(("pre.quant.", "ort.quant."))]
    assert ort_made, made
    assert all(p.parent.parent == out.parent and p.parent.name.startswith(".dd-tmp-")
               for p in ort_made), ort_made  # fmt: skip
    assert tempfile.gettempdir() != str(out.parent) and os.environ.get("TMPDIR") != str(
        out.parent
    )  # restored


def test_a_cache_is_read_again_only_when_the_toolkit_wrote_it(tmp_path: Path) -> None:
    from densedepth.util.outputs import artifact_path, reusable_cache

    cache = tmp_path / "calib_minmax_abc.json"
    assert reusable_cache(cache) is False  # none yet: compute and write it
    with artifact_path(cache) as tmp:
        tmp.write_text("{}")
    assert reusable_cache(cache) is True
    foreign = tmp_path / "calib_minmax_def.json"
    foreign.write_text('{"the user": "file"}')
    with pytest.raises(OutputError, match="neither read as a calibration cache nor replaced"):
        reusable_cache(foreign)
    assert foreign.read_text() == '{"the user": "file"}'
