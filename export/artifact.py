"""The artifact step every build ends with (the Ultralytics ``@try_export`` idea).

Each format's artifact is named by its row of the format table (``Format.artifact_name``),
timed from the build's start, measured in bytes over every file it is made of (an OpenVINO
IR is its .xml and .bin), described by a JSON sidecar beside it, and announced by one line,
``saved PATH (N MB, S s)``, the same in ``export``, ``build-engine`` and ``bench``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from densedepth.util.onnx_io import write_sidecar

COMPANIONS = {".xml": (".bin",)}  # files an artifact is made of besides itself, by suffix


def artifact_files(path: Path) -> list[Path]:
    """The files of the artifact at ``path``: itself and its companions (an IR's .bin)."""
    path = Path(path)
    return [path, *(path.with_suffix(s) for s in COMPANIONS.get(path.suffix, ()))]


def artifact_bytes(path: Path) -> int:
    """Bytes of every file of the artifact at ``path`` (those that exist)."""
    return sum(p.stat().st_size for p in artifact_files(path) if p.is_file())


def finish_artifact(out: Path, record: dict[str, Any], started: float) -> dict[str, Any]:
    """Complete ``record`` for the artifact just written at ``out``: ``seconds`` since
    ``started`` (a ``time.perf_counter()`` value), ``path``, ``bytes`` of all its files; write
    its sidecar and return the record."""
    record.update(seconds=time.perf_counter() - started, path=str(out), bytes=artifact_bytes(out))
    write_sidecar(Path(out), record)
    return record


def saved_line(record: dict[str, Any]) -> str:
    """``saved PATH (N MB, S s)`` for an artifact's record."""
    mb = record.get("bytes", 0) / 1e6
    return f"saved {record['path']} ({mb:.1f} MB, {record.get('seconds', 0):.1f} s)"
