"""Writing outputs without ever losing a user's file.

- Files are written through a temp file beside the target, renamed over it on success
  (``atomic_path``). Temp files are named ``.dd-tmp-PID-NAME.XXXX`` so the next run can tell
  a dead process's leftovers from a live one's and remove them (``remove_stale_temps``).
- Folders a verb writes (reports, predictions, synthetic datasets) carry a marker file,
  ``.densedepth``. ``OutputFolder`` accepts a new or empty folder, or one with the marker;
  ``--overwrite`` replaces only marked folders. The old folder is moved aside, the new one is
  built in its place, and the old one is deleted only when the new one is complete: an error
  or Ctrl-C puts the old one back, and after a SIGKILL the next run restores it.
- The current folder, the home folder, the file system root and any folder holding files
  this toolkit did not write are refused with one line, before anything is touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from densedepth.errors import OutputError

MARKER = ".densedepth"
TEMP_PREFIX = ".dd-tmp-"
_TEMP_RE = re.compile(r"^\.dd-tmp-(\d+)-")
_BACKUP_RE = re.compile(r"^\.dd-old-(\d+)-(.+)$")

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """This process's umask, read without changing it where the OS tells (Linux
    /proc/self/status), else set and restored at once under a lock."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (ours included)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _temp_prefix(path: Path) -> str:
    """``.dd-tmp-PID-NAME.`` for a temp beside ``path``, once its folder exists and the dead
    processes' leftovers in it are gone (swept once per process)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, once=True)
    return f"{TEMP_PREFIX}{os.getpid()}-{path.name}."


def temp_file_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """Open ``.dd-tmp-PID-NAME.XXXX.tmp`` in ``path``'s folder (created if needed) with the
    permissions a new file gets from the umask (mkstemp alone gives 0600); returns (fd, name)."""
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=suffix, dir=path.parent)
    os.fchmod(fd, 0o666 & ~current_umask())
    return fd, tmp


def temp_dir_beside(path: Path) -> Path:
    """A scratch folder ``.dd-tmp-PID-NAME.XXXX`` beside ``path`` (removed as stale once this
    process is gone)."""
    return Path(tempfile.mkdtemp(prefix=_temp_prefix(path), dir=path.parent))


def parent_problem(path: Path) -> str | None:
    """Why nothing can be created at ``path`` (its nearest existing ancestor is a broken link,
    a file or not writable), or None."""
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():
            return f"{parent} is a broken link"
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable"
    return None


def check_output_file(path: Path, ours: Any = None) -> None:
    """Refuse, before any work, an output file that cannot be written or is not ours to
    replace (``ours(path) -> bool`` says whether an existing file is one we wrote)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output {path} is a folder; give a file name")
    if path.exists() and (ours is None or not ours(path)):
        raise OutputError(
            f"{path} exists and was not written by this toolkit; choose another file name"
        )
    why = parent_problem(path)
    if why:
        raise OutputError(f"cannot write {path}: {why}")


@contextmanager
def scratch_beside(path: Path) -> Iterator[Path]:
    """A scratch folder beside ``path`` (not in the system temp folder), removed on exit;
    a SIGKILL leaves it to the next run's sweep."""
    try:
        folder = temp_dir_beside(Path(path))
    except OSError as exc:
        raise OutputError(f"cannot write beside {path}: {exc.strerror or exc}") from None
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _check_target(path: Path) -> None:
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    if not path.parent.exists() and path.parent.is_symlink():
        raise OutputError(f"cannot write {path}: {path.parent} is a broken link")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    _check_target(path)
    try:
        fd, tmp = temp_file_beside(path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file renamed over it; returns ``path``."""
    with atomic_path(path) as tmp:
        try:
            tmp.write_text(text)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


_SWEPT: set[str] = set()


def remove_stale_temps(folder: Path, once: bool = False) -> list[Path]:
    """Remove ``.dd-tmp-PID-*`` files and folders in ``folder`` whose process is gone
    (``once``: skip a folder this process has swept before)."""
    removed: list[Path] = []
    key = os.path.abspath(folder)
    if once and key in _SWEPT:
        return removed
    _SWEPT.add(key)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if not m or pid_alive(int(m.group(1))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of a folder this toolkit wrote, or None."""
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == "densedepth" else None


def write_marker(folder: Path, verb: str, state: str, **extra: Any) -> None:
    """Mark ``folder`` as written by ``verb`` (``state``: writing | complete)."""
    record = {"tool": "densedepth", "verb": verb, "state": state, "pid": os.getpid(),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}  # fmt: skip
    write_text_atomic(folder / MARKER, json.dumps(record, indent=2) + "\n")


def _protected(path: Path) -> str | None:
    """Why ``path`` may never be an output folder, or None."""
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == Path(resolved.anchor):
        return "it is the root of the file system"
    if resolved == Path.home().resolve():
        return "it is the home folder"
    if resolved == cwd:
        return "it is the current folder"
    if resolved in cwd.parents:
        return "it holds the current folder"
    return None


def _backup_name(path: Path) -> Path:
    return path.with_name(f".dd-old-{os.getpid()}-{path.name}")


def recover_interrupted(path: Path) -> str | None:
    """Finish what a killed run left beside ``path``: when its new folder was incomplete,
    put the old one back; when it was complete, delete the old one. Returns a note or None."""
    note = None
    try:
        siblings = list(os.scandir(path.parent))
    except OSError:
        return None
    for entry in siblings:
        m = _BACKUP_RE.match(entry.name)
        if not m or m.group(2) != path.name or pid_alive(int(m.group(1))):
            continue
        backup = Path(entry.path)
        marker = read_marker(path) if path.is_dir() else None
        if marker is not None and marker.get("state") == "complete":
            shutil.rmtree(backup, ignore_errors=True)
            continue
        if path.is_dir() and (marker is not None or not any(path.iterdir())):
            shutil.rmtree(path)
        if not path.exists():
            os.replace(backup, path)
            note = f"restored {path} (a run that was killed had started to replace it)"
    return note


class OutputFolder:
    """A folder a verb writes, replaced only when it is ours (see the module docstring).

    ``with OutputFolder(out, overwrite, "bench") as folder: ...`` validates ``out`` on entry
    (one-line ``OutputError``), and on exit marks the folder complete and deletes the previous
    one, or, on any exception (Ctrl-C included), deletes what was written and puts the previous
    folder back.
    """

    def __init__(self, path: Path, overwrite: bool, verb: str, inputs: Sequence[Path] = ()) -> None:
        self.path, self.overwrite, self.verb = Path(path), overwrite, verb
        self.inputs = [Path(p) for p in inputs]  # what the run reads: never in a replaced folder
        self.backup: Path | None = None
        self.was_empty = False
        self.note: str | None = None

    def check(self) -> None:
        """Refuse an output that is not ours to (re)write; touches nothing."""
        path = self.path
        why = _protected(path)
        if why:
            raise OutputError(f"refusing to write into {path}: {why}; pass a new folder")
        if path.exists() and not path.is_dir():
            raise OutputError(f"output {path} is a file; pass a folder")
        ours = read_marker(path) is not None
        if path.is_dir() and any(path.iterdir()) and not ours:
            raise OutputError(
                f"output folder {path} holds files this toolkit did not write; "
                f"pass a new or empty folder"
            )
        if ours and not self.overwrite:
            raise OutputError(f"output {path} already exists; pass --overwrite or another --out")
        if path.exists():
            here = path.resolve()
            inside = [p for p in self.inputs if here in (p.resolve(), *p.resolve().parents)]
            if inside:
                raise OutputError(
                    f"{inside[0]} is inside {path}, which this run would replace; "
                    f"pass another --out"
                )
        why = parent_problem(path)
        if why:
            raise OutputError(f"cannot create {path}: {why}")

    def __enter__(self) -> Path:
        self.note = recover_interrupted(self.path)
        self.check()
        ours = read_marker(self.path) is not None
        self.was_empty = self.path.is_dir() and not ours
        if ours:
            self.backup = _backup_name(self.path)
            os.replace(self.path, self.backup)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            write_marker(self.path, self.verb, "writing")
        except OSError as exc:
            self._restore()
            raise OutputError(f"cannot create {self.path}: {exc.strerror or exc}") from None
        return self.path

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            write_marker(self.path, self.verb, "complete")
            if self.backup is not None:
                shutil.rmtree(self.backup, ignore_errors=True)
            return
        shutil.rmtree(self.path, ignore_errors=True)
        self._restore()
        if self.was_empty:
            self.path.mkdir(exist_ok=True)

    def _restore(self) -> None:
        if self.backup is not None and self.backup.exists() and not self.path.exists():
            os.replace(self.backup, self.path)
