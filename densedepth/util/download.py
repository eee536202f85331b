"""Resumable, verified downloads: weights on first use and the ``download`` verb's files.

One file at a time over HTTP(S) with the standard library (``urllib``):

- into ``DIR/.NAME.part`` first; a rerun after a stop continues from the part's size with an
  HTTP ``Range`` request (a server that answers 200 instead of 206 ignored it: the part is
  restarted, never appended to); the final name appears only after every check passed, by
  one rename, and goes into the folder's ledger as the toolkit's;
- checked before the rename: the size (when known), a zip's integrity (every member's CRC),
  the sha256 (when known) or torch hub's rule (the hex digest starts with the hash in the
  file's name, ``NAME-<hash>.pth``), and never an HTML page served in place of the file;
- a free-space check before starting (what is left to fetch, plus 1%), progress with rate and
  time left, one clear line for every network failure (unreachable host, HTTP status,
  a stall longer than ``timeout`` seconds, the connection cut, a full disk), always naming
  what to do; the part is kept for the rerun where it can be resumed.

A file of the final name that the toolkit did not write is never replaced: it is verified and
used when it matches, refused in one line when it does not.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from densedepth.util.errors import DenseDepthError
from densedepth.util.outputs import record_written, written_by_us
from densedepth.util.progress import progress

CHUNK = 1 << 20  # bytes per read
HASH_PREFIX = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's HASH_REGEX: NAME-<sha256 prefix>.EXT
USER_AGENT = "densedepth-edge"
Log = Callable[[str], None]


class DownloadError(DenseDepthError):
    """A download that failed, with what to do (one line)."""


@dataclass(frozen=True)
class Remote:
    """A file to fetch: its URL, final name, size in bytes and sha256 where published."""

    url: str
    name: str = ""
    size: int | None = None
    sha256: str | None = None
    hash_in_name: bool = False  # torch hub's rule: the name carries a sha256 prefix
    md5: str | None = None  # where only an md5 is on record (checked by a second read)

    @property
    def file_name(self) -> str:
        """The final name (the URL's last part unless given)."""
        return self.name or self.url.rstrip("/").rsplit("/", 1)[-1]


def mirrored(remote: Remote, mirror: str | None) -> str:
    """The URL to fetch: ``MIRROR/NAME`` (the file's own name appended) or the remote's."""
    if not mirror:
        return remote.url
    return f"{mirror.rstrip('/')}/{remote.file_name}"


def file_sha256(path: Path, start: Any = None) -> str:
    """The sha256 hex digest of ``path`` (read in chunks)."""
    h = start or hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path, remote: Remote, digest: str | None = None) -> str:
    """The sha256 of ``path`` once it passes every check ``remote`` allows (size, HTML, zip
    integrity, hash); a DownloadError naming the first that fails."""
    size = path.stat().st_size
    name = remote.file_name
    if remote.size is not None and size != remote.size:
        raise DownloadError(f"{name}: got {size:,} bytes, expected {remote.size:,}")
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) and not name.endswith((".html", ".htm")):
        raise DownloadError(
            f"{name}: the server sent an HTML page, not the file (a login or "
            f"error page): check the URL or pass --mirror"
        )
    if name.endswith((".h5", ".hdf5")) and not _is_hdf5(path):  # (.mat: v5 or v7.3 HDF5)
        raise DownloadError(f"{name}: not an HDF5 file (no HDF5 signature): a corrupt download")
    if name.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError) as exc:
            raise DownloadError(f"{name}: not a readable zip ({exc})") from None
        if bad is not None:
            raise DownloadError(f"{name}: member {bad} fails its CRC check (corrupt download)")
    digest = digest or file_sha256(path)
    if remote.sha256 and digest != remote.sha256.lower():
        raise DownloadError(f"{name}: sha256 {digest} does not match the published {remote.sha256}")
    if remote.md5:
        md5 = file_sha256(path, hashlib.md5())
        if md5 != remote.md5.lower():
            raise DownloadError(f"{name}: md5 {md5} does not match the recorded {remote.md5}")
    if remote.hash_in_name:
        m = HASH_PREFIX.search(name)
        if m is None or not digest.startswith(m.group(1)):
            want = m.group(1) if m else "?"
            raise DownloadError(
                f"{name}: sha256 {digest[:16]}... does not start with {want} "
                f"(the hash in its name): a corrupt or foreign file"
            )
    return digest


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    """Whether ``path`` has HDF5's signature where the format allows its superblock (byte 0,
    512, 1024, 2048, ...: a user block may come first)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        offset = 0
        while offset + 8 <= size and offset <= 1 << 20:
            f.seek(offset)
            if f.read(8) == HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def fetch(
    remote: Remote,
    folder: str | os.PathLike[str],
    mirror: str | None = None,
    timeout: float = 30.0,
    log: Log = lambda s: None,
) -> tuple[Path, str]:
    """Fetch ``remote`` into ``folder`` (see the module docstring): the final path and its
    sha256. A file already there is verified and kept (fetched again only if the toolkit
    wrote it and it fails)."""
    out = Path(folder)
    final = out / remote.file_name
    if final.exists():
        try:
            return final, check_file(final, remote)
        except DownloadError as exc:
            if not written_by_us(final):
                raise DownloadError(
                    f"{final} exists, was not written by this toolkit and fails "
                    f"its check ({exc}); move it away and rerun"
                ) from None
            log(f"{final} fails its check ({exc}); fetching it again")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create {out} ({exc.strerror}): choose another --to folder"
        ) from None
    part = out / f".{remote.file_name}.part"
    url = mirrored(remote, mirror)
    digest = _download(url, part, remote, timeout, log)
    try:
        digest = check_file(part, remote, digest)
    except DownloadError as exc:
        part.unlink(missing_ok=True)  # a complete but wrong file is not resumable
        todo = "" if "--mirror" in str(exc) else ": check the URL or --mirror"
        raise DownloadError(f"{exc} (from {url}); nothing was kept{todo}") from None
    os.replace(part, final)
    record_written(final)
    return final, digest


def _download(url: str, part: Path, remote: Remote, timeout: float, log: Log) -> str:
    """Bring ``part`` to the whole file (resuming where it stops); its sha256."""
    have = part.stat().st_size if part.exists() else 0
    if remote.size is not None and have > remote.size:
        part.unlink()
        have = 0
    if remote.size is not None and have == remote.size:
        return file_sha256(part)
    _check_space(part.parent, (remote.size or 0) - have, remote.file_name)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    response = _open(request, url, timeout)
    with response:
        status = getattr(response, "status", 200)
        if have and status != 206:
            log(f"{url} ignored the resume request (HTTP {status}): starting over")
            have = 0
        total = _total_size(response, have, remote)
        if total is not None and remote.size is None:
            _check_space(part.parent, total - have, remote.file_name)
        h = hashlib.sha256()
        if have:
            file_sha256(part, h)
        mode = "ab" if have else "wb"
        _stream(response, part, mode, h, have, total, url, timeout)
    return h.hexdigest()


def _open(request: urllib.request.Request, url: str, timeout: float) -> Any:
    """``urlopen`` with every failure as one line."""
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"{url}: HTTP {exc.code} {exc.reason}: the file is not there; "
            f"check the name or pass --mirror BASE_URL"
        ) from None
    except urllib.error.URLError as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"cannot reach {url} ({reason}): check the network, or use a copy of the file "
            f"(--mirror BASE_URL)"
        ) from None
    except TimeoutError:
        raise DownloadError(
            f"{url}: no answer within {timeout:g} s: check the network and rerun"
        ) from None


def _total_size(response: Any, have: int, remote: Remote) -> int | None:
    """The whole file's size from Content-Range (206) or Content-Length (200)."""
    rng = response.headers.get("Content-Range", "")
    m = re.match(r"bytes \d+-\d+/(\d+)", rng)
    if m:
        return int(m.group(1))
    length = response.headers.get("Content-Length")
    if length and length.isdigit():
        return int(length) + (have if getattr(response, "status", 200) == 206 else 0)
    return remote.size


def _stream(
    response: Any,
    part: Path,
    mode: str,
    h: Any,
    have: int,
    total: int | None,
    url: str,
    timeout: float,
) -> None:
    """Copy the body into ``part``, hashing it, with progress in MiB; one line on a stall,
    a cut or a full disk (the part kept for a rerun)."""
    done = have
    mib = (total or 0) >> 20
    try:
        with progress(f"downloading {part.name[1:-5]}", mib, "MiB") as advance, \
                open(part, mode) as f:  # fmt: skip
            advance(have >> 20)
            while True:
                try:
                    block = response.read(CHUNK)
                except TimeoutError:
                    raise DownloadError(
                        _stopped(url, done, total, f"stalled for {timeout:g} s")
                    ) from None
                except (ConnectionError, OSError) as exc:
                    raise DownloadError(
                        _stopped(url, done, total, f"connection lost ({exc})")
                    ) from None
                if not block:
                    break
                f.write(block)
                h.update(block)
                before, done = done, done + len(block)
                advance((done >> 20) - (before >> 20))
    except OSError as exc:  # a write or the final flush: the response's own are caught above
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DownloadError(_stopped(url, done, total, f"disk full in {part.parent}")) from None
        raise DownloadError(
            _stopped(url, done, total, f"cannot write {part} ({exc.strerror})")
        ) from None
    if total is not None and done < total:
        raise DownloadError(_stopped(url, done, total, "the connection closed early"))


def _stopped(url: str, done: int, total: int | None, why: str) -> str:
    of = f" of {total / 1e6:,.1f} MB" if total else ""
    return (
        f"download of {url} stopped at {done / 1e6:,.1f} MB{of}: {why}; rerun the same "
        f"command to resume"
    )


def _check_space(folder: Path, need: int, name: str) -> None:
    """Refuse to start when ``folder``'s disk cannot hold what is left (+1%)."""
    if need <= 0:
        return
    free = shutil.disk_usage(folder).free
    if free < need * 1.01:
        raise DownloadError(
            f"{name} needs {need / 1e9:,.2f} GB more and {folder} has "
            f"{free / 1e9:,.2f} GB free: free space or pass --to on another disk"
        )
