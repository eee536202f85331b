"""File helpers: the RGB image files of a folder, and a file's SHA-256."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from densedepth.util.errors import DenseDepthError, missing_reason

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")  # RGB inputs


def image_files(folder: Path) -> list[Path]:
    """The RGB image files directly inside ``folder`` (by suffix), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def require_files(paths: Sequence[Path], what: str = "model") -> None:
    """One line for the first input that does not exist (before any output is touched)."""
    for p in paths:
        if not p.exists():
            raise DenseDepthError(f"{what} {p} {missing_reason(p)}; pass existing files or folders")
