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
  this toolkit did not write are refused with one line, before anything is touched. The
  complete marker lists every file the run wrote; ``--overwrite`` of a folder holding any
  other file (a notes.md the user put there) is refused.
- One run per output: a run holds an exclusive lock (``flock``) on ``.dd-lock-NAME`` beside its
  output folder (train: its --out) for as long as it writes, so a second run on the same output
  is refused in one line before anything is moved; the lock goes with the process, even on
  SIGKILL. The marker of a folder being written records the writer's PID and start time.
- Single output files (``export --out``, ``--record``, the files build-engine names) are
  recorded in a ledger, ``.densedepth-files.json`` in their folder (name, size, mtime): a file
  is replaced only when the ledger says the toolkit wrote it as it is now, and, in a verb,
  only with ``--overwrite`` (``claim_output`` / ``artifact_path``).
- A symbolic link given as an output folder is followed: the folder it points to is written.
"""

from __future__ import annotations

import contextvars
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any

from densedepth.util.errors import OutputError

MARKER = ".densedepth"
LEDGER = ".densedepth-files.json"
LOCK_PREFIX = ".dd-lock-"
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


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, Linux ``/proc/PID/stat``), to tell
    it from a later process given the same id; None where the OS does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return None


def same_process_alive(pid: int, start: int | None) -> bool:
    """Whether the process ``pid`` that started at ``start`` still runs (not a reused id)."""
    if not pid_alive(pid):
        return False
    now = process_start(pid)
    return start is None or now is None or now == start


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


def discard_scratch_build(path: Path) -> None:
    """Remove one build a search wrote in its scratch folder, once judged: the file, its
    ``.json`` sidecar and an OpenVINO ``.bin``. A search keeping every try would hold 85 MB a
    try for D169 at 480x640 (16 GB for a 187-group sensitivity report) until it ends."""
    for p in (path, Path(f"{path}.json"), path.with_suffix(".bin")):
        p.unlink(missing_ok=True)


def _check_target(path: Path) -> None:
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    if not path.parent.exists() and path.parent.is_symlink():
        raise OutputError(f"cannot write {path}: {path.parent} is a broken link")


_TEMPDIR_LOCK = threading.RLock()


@contextmanager
def system_temp_in(folder: Path) -> Iterator[None]:
    """Point Python's temp folder (``tempfile``: ONNX Runtime's quantizer makes its
    ``pre.quant.*`` / ``ort.quant.*`` models there) and child processes' ``TMPDIR`` at
    ``folder`` for the duration, so a killed run leaves them in our scratch, not in /tmp."""
    with _TEMPDIR_LOCK:
        previous, env = tempfile.tempdir, os.environ.get("TMPDIR")
        tempfile.tempdir = os.environ["TMPDIR"] = str(folder)
        try:
            yield
        finally:
            tempfile.tempdir = previous
            if env is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = env


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


# --------------------------------------------------------------------------------------------
# Single output files: the ledger of what the toolkit wrote, and the right to replace it
# --------------------------------------------------------------------------------------------

_OVERWRITE: contextvars.ContextVar[bool | None] = contextvars.ContextVar("overwrite", default=None)


@contextmanager
def replacing(overwrite: bool) -> Iterator[None]:
    """A verb's ``--overwrite`` for the single output files written inside: without it an
    existing file is refused; with it, replaced only when the toolkit wrote it. (Library calls
    outside this context replace the toolkit's own files and refuse any other.)"""
    token = _OVERWRITE.set(bool(overwrite))
    try:
        yield
    finally:
        _OVERWRITE.reset(token)


def _read_ledger(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / LEDGER).read_text())
    except (OSError, ValueError):
        return {}
    return data.get("files", {}) if isinstance(data, dict) else {}


def _stat_record(path: Path) -> dict[str, int]:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def written_by_us(path: Path) -> bool:
    """Whether ``path`` is a file the toolkit wrote and nobody has changed since (its folder's
    ledger has its name with its current size and modification time)."""
    path = Path(path)
    entry = _read_ledger(path.parent).get(path.name)
    try:
        return (
            isinstance(entry, dict)
            and not path.is_symlink()
            and path.is_file()
            and {k: entry.get(k) for k in ("size", "mtime_ns")} == _stat_record(path)
        )
    except OSError:
        return False


def record_written(*paths: Path) -> None:
    """Add files just written to their folders' ledgers (what ``written_by_us`` reads)."""
    by_folder: dict[Path, list[Path]] = {}
    for p in map(Path, paths):
        by_folder.setdefault(p.parent, []).append(p)
    for folder, files in by_folder.items():
        ledger = _read_ledger(folder)
        ledger = {k: v for k, v in ledger.items() if (folder / k).exists()}
        for f in files:
            ledger[f.name] = {**_stat_record(f), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        text = json.dumps({"tool": "densedepth", "files": ledger}, indent=2, sort_keys=True)
        write_text_atomic(folder / LEDGER, text + "\n")


def claim_output(path: Path) -> None:
    """Refuse, before any work, a single output file that exists and is not ours to replace:
    not written by the toolkit (or changed since), or written by it but no ``--overwrite``."""
    path = Path(path)
    check_output_file(path, ours=written_by_us)
    if os.path.lexists(path) and _OVERWRITE.get() is False:
        raise OutputError(f"{path} already exists; pass --overwrite to replace it or choose "
                          f"another name")  # fmt: skip


def reusable_cache(path: Path) -> bool:
    """Whether a cache file the toolkit wrote is there to be read again (False: none yet). A
    file of that name it did not write (or that changed since) is refused in one line: it is
    neither read as a cache nor replaced."""
    path = Path(path)
    if not os.path.lexists(path):
        return False
    if written_by_us(path):
        return True
    raise OutputError(
        f"{path} exists and was not written by this toolkit, so it is neither read as a "
        f"calibration cache nor replaced; move it away or pass another cache folder"
    )


@contextmanager
def artifact_path(path: Path) -> Iterator[Path]:
    """``atomic_path`` for a single output file: claimed first (``claim_output``), recorded
    in the ledger once it is in place."""
    path = Path(path)
    claim_output(path)
    with atomic_path(path) as tmp:
        yield tmp
    record_written(path)


# --------------------------------------------------------------------------------------------
# One run per output
# --------------------------------------------------------------------------------------------


def _lock_file(path: Path) -> Path:
    return path.parent / f"{LOCK_PREFIX}{path.name}"


class OutputLock:
    """Exclusive hold of an output path for one run: ``flock`` on ``.dd-lock-NAME`` beside it,
    which records the holder (PID, start time, verb). A second run is refused in one line;
    the lock is released on exit, and by the kernel when the process dies."""

    def __init__(self, path: Path, verb: str) -> None:
        self.path, self.verb = Path(path), verb
        self.fd: int | None = None

    def __enter__(self) -> OutputLock:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): the marker's PID check still applies
            return self
        lock = _lock_file(self.path)
        for _ in range(8):  # a holder may unlink the file between our open and our flock
            try:
                lock.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
            except OSError as exc:
                raise OutputError(f"cannot write beside {self.path}: "
                                  f"{exc.strerror or exc}") from None  # fmt: skip
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _holder_text(fd)
                os.close(fd)
                raise OutputError(
                    f"{self.path} is in use by another run ({holder}); wait for it to finish "
                    f"or pass another --out"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise OutputError(f"cannot lock {self.path}: its lock file keeps changing; retry")
        record = {"pid": os.getpid(), "start": process_start(os.getpid()), "verb": self.verb,
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(record) + "\n").encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is None:
            return
        with suppress(OSError):
            os.unlink(_lock_file(self.path))
        os.close(self.fd)
        self.fd = None


def _holder_text(fd: int) -> str:
    """Who holds a lock file, in words (PID, verb, since when)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        rec = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        rec = {}
    if not isinstance(rec, dict) or "pid" not in rec:
        return "a run that is starting"
    return f"{rec.get('verb', 'a run')}, PID {rec['pid']}, since {rec.get('time', '?')}"


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
              "start": process_start(os.getpid()),
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


def files_below(folder: Path) -> list[str]:
    """Every file (and link) below ``folder`` but its marker, as sorted relative POSIX paths."""
    found: list[str] = []
    for top, dirs, files in os.walk(folder):
        rel = Path(top).relative_to(folder)
        links = [d for d in dirs if os.path.islink(os.path.join(top, d))]
        for name in (*files, *links):
            if not (top == str(folder) and name == MARKER):
                found.append((rel / name).as_posix())
    return sorted(found)


def _unlisted(folder: Path, marker: dict[str, Any]) -> list[str]:
    """The files in a folder of ours that its marker does not list (a dead process's temp
    files count as ours: the next sweep removes them)."""
    listed = set(marker.get("files") or ())
    return [f for f in files_below(folder) if f not in listed and not _stale_temp(f)]


def _stale_temp(rel: str) -> bool:
    m = _TEMP_RE.match(Path(rel).name)
    return bool(m) and not pid_alive(int(m.group(1)))


def _follow_link(path: Path) -> Path:
    """The folder a symbolic link points to (a link given as an output is followed, never
    replaced); other paths, broken links and loops as given."""
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if target.exists():
            return target
    return path


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
        self.given = Path(path)
        self.path = _follow_link(self.given)  # a link is followed, never replaced
        self.overwrite, self.verb = overwrite, verb
        self.inputs = [Path(p) for p in inputs]  # what the run reads: never in a replaced folder
        self.backup: Path | None = None
        self.was_empty = False
        self.note: str | None = None
        self.lock = OutputLock(self.path, verb)

    def check(self) -> None:
        """Refuse an output that is not ours to (re)write; touches nothing."""
        path = self.path
        self._check_place()
        if path.is_symlink():
            raise OutputError(f"output {self.given} is a broken link or a link loop; pass a folder")
        if path.exists() and not path.is_dir():
            raise OutputError(f"output {path} is a file; pass a folder")
        marker = read_marker(path)
        ours = marker is not None
        if path.is_dir() and any(path.iterdir()) and not ours:
            raise OutputError(
                f"output folder {path} holds files this toolkit did not write; "
                f"pass a new or empty folder"
            )
        if marker is not None:
            self._check_writer(marker)
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
        if marker is not None:
            self._check_listed(marker)

    def _check_place(self) -> None:
        """The protected folders and an ancestor that cannot hold the output."""
        why = _protected(self.path)
        if why:
            raise OutputError(f"refusing to write into {self.path}: {why}; pass a new folder")
        why = parent_problem(self.path)
        if why:
            raise OutputError(f"cannot create {self.path}: {why}")

    def _check_writer(self, marker: dict[str, Any]) -> None:
        """Refuse a folder another live process is writing (its marker's PID and start)."""
        pid = marker.get("pid")
        if marker.get("state") != "writing" or not isinstance(pid, int) or pid == os.getpid():
            return
        if same_process_alive(pid, marker.get("start")):
            raise OutputError(
                f"output {self.path} is being written by another run (PID {pid}, "
                f"{marker.get('verb', '?')}); wait for it to finish or pass another --out"
            )

    def _check_listed(self, marker: dict[str, Any]) -> None:
        """Refuse to replace a folder of ours holding a file the toolkit did not write."""
        extra = _unlisted(self.path, marker)
        if not extra:
            return
        if "files" not in marker:
            raise OutputError(
                f"output folder {self.path} was left by an interrupted run or an older version: "
                f"its marker does not list its files; delete it yourself or pass another --out"
            )
        more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
        raise OutputError(
            f"output folder {self.path} holds files this toolkit did not write "
            f"({', '.join(extra[:3])}{more}); move them out or pass another --out"
        )

    def __enter__(self) -> Path:
        self._check_place()  # before the lock creates anything beside the output
        self.lock.__enter__()
        try:
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
        except BaseException:
            self.lock.__exit__()
            raise
        return self.path

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                write_marker(self.path, self.verb, "complete", files=files_below(self.path))
                if self.backup is not None:
                    shutil.rmtree(self.backup, ignore_errors=True)
                return
            shutil.rmtree(self.path, ignore_errors=True)
            self._restore()
            if self.was_empty:
                self.path.mkdir(exist_ok=True)
        finally:
            self.lock.__exit__()

    def _restore(self) -> None:
        if self.backup is not None and self.backup.exists() and not self.path.exists():
            os.replace(self.backup, self.path)
