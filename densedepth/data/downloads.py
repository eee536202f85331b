"""The one table of what ``cli.py download`` fetches: datasets and the authors' models.

Each name maps to its files (URL, size in bytes where the publisher or a record of it gives
one, sha256 where published: none of these publishers publishes one, so the sha256 of what was
fetched is recorded in ``DIR/downloads.json`` for a second machine to check against), where
the links come from, and the command that uses the result. Fetching is
``densedepth.util.download.fetch``: resumable, verified before the final rename.

KITTI raw drives are named ``2011_09_26_drive_0001``; each comes with its date's calibration
(``2011_09_26_calib.zip``: the camera the toolkit records for KITTI training). ``--split eigen``
expands to the drives BTS's Eigen split files use.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from densedepth.util.download import Remote
from densedepth.util.errors import DataError
from densedepth.util.outputs import write_text_atomic

DENSEDEPTH_S3 = "https://s3-eu-west-1.amazonaws.com/densedepth"  # ialhashim/DenseDepth README
NYU_HORATIO = "http://horatio.cs.nyu.edu/mit/silberman"  # the NYU Depth v2 page's links
KITTI_S3 = "https://s3.eu-central-1.amazonaws.com/avg-kitti"  # KITTI's raw / depth pages
DRIVE = re.compile(r"^(20\d\d_\d\d_\d\d)_drive_(\d{4})(?:_sync)?$")
EIGEN_DRIVES: tuple[str, ...] = ()  # filled below from BTS's split files


@dataclass(frozen=True)
class Download:
    """One name of the table: its files, where the links were read, and what to run next
    (``{dir}`` is the folder it went into)."""

    files: tuple[Remote, ...]
    source: str
    then: str
    note: str = ""
    drives: bool = False  # kitti-raw: the files come from the drive names given
    extra: dict[str, str] = field(default_factory=dict)


TABLE: dict[str, Download] = {
    "nyu-data": Download(
        (Remote(f"{DENSEDEPTH_S3}/nyu_data.zip"),),
        "ialhashim/DenseDepth README (NYU Depth v2 training data, 4.1 GB)",
        "cli.py train --backbone densenet169 --data {dir}/nyu_data.zip --out runs/nyu169",
    ),
    "nyu-test": Download(
        (Remote(f"{DENSEDEPTH_S3}/nyu_test.zip"),),
        "ialhashim/DenseDepth README (the Eigen test split, 654 images)",
        "cli.py evaluate MODEL --data {dir}/nyu_test.zip",
    ),
    "nyu-labeled": Download(
        (
            Remote(f"{NYU_HORATIO}/nyu_depth_v2/nyu_depth_v2_labeled.mat"),
            Remote(f"{NYU_HORATIO}/indoor_seg_sup/splits.mat"),
        ),
        "the NYU Depth v2 page (labeled dataset, 2.8 GB, and the official train/test splits)",
        "cli.py evaluate MODEL --data {dir}/nyu_depth_v2_labeled.mat",
    ),
    "nyu-h5": Download(
        (Remote(f"{DENSEDEPTH_S3}/nyu.h5"),),
        "ialhashim/DenseDepth README (the authors' NYU model, Keras HDF5)",
        "cli.py import-keras {dir}/nyu.h5 --out nyu.pt && cli.py export nyu.pt && "
        "cli.py build-engine export/model_fp32.onnx --target tensorrt --int8",
    ),
    "kitti-h5": Download(
        (Remote(f"{DENSEDEPTH_S3}/kitti.h5"),),
        "ialhashim/DenseDepth README (the authors' KITTI model, Keras HDF5)",
        "cli.py import-keras {dir}/kitti.h5 --dataset kitti --out kitti.pt",
    ),
    "kitti-depth": Download(
        (Remote(f"{KITTI_S3}/data_depth_annotated.zip"),),
        "KITTI depth completion / prediction page (annotated depth maps, 14 GB)",
        "cli.py download kitti-raw --split eigen --to {dir} (the colour frames), then "
        "cli.py train --data {dir} --out runs/kitti",
    ),
    "kitti-raw": Download(
        (),
        "KITTI raw data page (per drive: DRIVE_sync.zip, and DATE_calib.zip)",
        "cli.py train --data {dir} --out runs/kitti (with kitti-depth in the same folder)",
        drives=True,
    ),
}


def drive_files(drives: list[str]) -> tuple[Remote, ...]:
    """The raw zips of ``drives`` (``2011_09_26_drive_0001``) and their dates' calibration,
    one line for a name that is not a drive."""
    files: list[Remote] = []
    dates: list[str] = []
    for name in drives:
        m = DRIVE.match(name)
        if m is None:
            raise DataError(f"{name!r} is not a KITTI raw drive: name it like "
                            f"2011_09_26_drive_0001, or pass --split eigen")  # fmt: skip
        date, number = m.groups()
        drive = f"{date}_drive_{number}"
        files.append(Remote(f"{KITTI_S3}/raw_data/{drive}/{drive}_sync.zip"))
        if date not in dates:
            dates.append(date)
    return (*files, *(Remote(f"{KITTI_S3}/raw_data/{d}_calib.zip") for d in dates))


def files_for(name: str, drives: list[str] | None = None) -> tuple[Remote, ...]:
    """What ``download NAME`` fetches, one line for an unknown name or missing drives."""
    entry = TABLE.get(name)
    if entry is None:
        raise DataError(f"unknown download {name!r}; choose one of {', '.join(TABLE)}")
    if entry.drives:
        if not drives:
            raise DataError("kitti-raw needs drive names (2011_09_26_drive_0001 ...) or "
                            "--split eigen")  # fmt: skip
        return drive_files(drives)
    if drives:
        raise DataError(f"{name} takes no drive names (only kitti-raw does)")
    return entry.files


def download(
    name: str,
    folder: str | os.PathLike[str],
    drives: list[str] | None = None,
    mirror: str | None = None,
    split: str | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> list[dict[str, Any]]:
    """Fetch ``name``'s files into ``folder`` (``drives`` / ``split`` for kitti-raw), each
    verified before its final rename, and record what was fetched (URL, size, sha256) in
    ``folder/downloads.json``; the records."""
    from densedepth.util.download import fetch

    if split is not None:
        if name != "kitti-raw" or split != "eigen":
            raise DataError("--split eigen goes with kitti-raw only")
        drives = [*(drives or []), *EIGEN_DRIVES]
    remotes = files_for(name, drives)
    out = Path(folder)
    records = []
    for i, remote in enumerate(remotes, start=1):
        log(f"[{i}/{len(remotes)}] {remote.file_name} from {mirror or remote.url}")
        path, digest = fetch(remote, out, mirror=mirror, log=log)
        record = {"name": name, "file": path.name, "url": remote.url, "mirror": mirror,
                  "bytes": path.stat().st_size, "sha256": digest,
                  "published_sha256": remote.sha256 or "not published"}  # fmt: skip
        records.append(record)
        _record_fetched(out, record)
    return records


def _record_fetched(folder: Path, record: dict[str, Any]) -> None:
    """Merge one file's record into ``folder/downloads.json`` (atomically)."""
    path = folder / "downloads.json"
    known: dict[str, Any] = {}
    if path.is_file():
        try:
            known = json.loads(path.read_text()).get("files", {})
        except (OSError, ValueError, AttributeError):
            known = {}
    known[record["file"]] = {**record, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_text_atomic(path, json.dumps({"files": known}, indent=2, sort_keys=True) + "\n")


def next_command(name: str, folder: str | os.PathLike[str]) -> str:
    """The command that uses what ``download NAME`` fetched into ``folder``."""
    return TABLE[name].then.format(dir=folder)
