"""User-facing errors: each carries one line that says what was wrong and what to do."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class DenseDepthError(Exception):
    """Base class of every error the CLI prints as one line and exits non-zero on."""


class DataError(DenseDepthError, ValueError):
    """A dataset, image or depth map is missing, corrupt or of the wrong form."""


class SplitNotInDataset(DataError):
    """A split was asked of a dataset that holds another one only (nyu_test.zip: test)."""


class ModelError(DenseDepthError, ValueError):
    """A model was asked for something it cannot do (unknown backbone, bad input size)."""


class WeightsNotFoundError(DenseDepthError, FileNotFoundError):
    """Pretrained weights were asked for but are not there and cannot be fetched."""


class OutputError(DenseDepthError, OSError):
    """An output file or folder cannot be written (permissions, disk full)."""


class ExportError(DenseDepthError):
    """An export or engine build failed; the message says what to do."""


class BackendUnavailable(ExportError):
    """The target's package or hardware is missing here (the message names the extra)."""


def error_line(exc: BaseException, limit: int = 300, with_type: bool = True) -> str:
    """One line for an exception: our errors' own message; others ``Type: first line`` (an
    ``err`` attribute, as OpenCV's errors carry, is preferred to their multi-line text)."""
    err = getattr(exc, "err", None)
    text = str(err if isinstance(err, str) and err else exc).strip()
    first = text.splitlines()[0][:limit] if text else ""
    if isinstance(exc, DenseDepthError) or not with_type:
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def missing_reason(path: str | os.PathLike[str]) -> str:
    """Why ``path`` cannot be opened as a file, in words: does not exist, is a broken link, is
    a symbolic link loop, cannot be reached, is a folder."""
    p = Path(path)
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if exc.errno == errno.EACCES:
            return "cannot be reached: permission denied"
        if exc.errno == errno.ENOTDIR:
            return "does not exist (a part of its path is a file)"
        if os.path.islink(p):
            return f"is a broken link (to {os.readlink(p)})"
        return "does not exist"
    return "is a folder, not a file" if p.is_dir() else "is not a regular file"
