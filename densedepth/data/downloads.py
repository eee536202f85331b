"""The one table of what ``cli.py download`` fetches: datasets and the authors' models.

Each name maps to its files (URL, size in bytes where the publisher or a record of it gives
one, sha256 where published: none of these publishers publishes one, so the sha256 of what was
fetched is recorded in ``DIR/downloads.json`` for a second machine to check against), where
the links come from, and the command that uses the result. Fetching is
``densedepth.util.download.fetch``: resumable, verified before the final rename.

KITTI raw drives are named ``2011_09_26_drive_0001``; each comes with its date's calibration
(``2011_09_26_calib.zip``: the camera the toolkit records for KITTI training). ``--split eigen``
(``eigen-train``, ``eigen-test``) expands to the drives BTS's Eigen split files use and fetches
those two files too (pinned to one commit, sha256 checked). KITTI's zips stay zips: the KITTI
reader reads the official archives in place, beside or instead of extracted folders.

Links as the publishers give them on 2026-12: DenseDepth's README moved nyu_data.zip to a
tinyurl redirect and the two models to Google Drive (its S3 links were the first ones);
nyu_test.zip is still on S3, and DenseDepth issue #189 reports that link failing: ``--mirror``.
Sizes on record: NYU's labeled .mat and splits.mat (a DVC record in the Hugging Face space
kingabzpro/savtadepth, with their md5; splits.mat's equals BTS's copy); every other size is
only stated rounded on the page (4.1 GB ...) and is learnt from the server.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from densedepth.util.download import Remote
from densedepth.util.errors import DataError
from densedepth.util.outputs import write_text_atomic

DENSEDEPTH_S3 = "https://s3-eu-west-1.amazonaws.com/densedepth"  # ialhashim/DenseDepth README
NYU_HORATIO = "http://horatio.cs.nyu.edu/mit/silberman"  # the NYU Depth v2 page's links
KITTI_S3 = "https://s3.eu-central-1.amazonaws.com/avg-kitti"  # KITTI's raw / depth pages
DRIVE = re.compile(r"^(20\d\d_\d\d_\d\d)_drive_(\d{4})(?:_sync)?$")
GDRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="
BTS_COMMIT = "5e3406b35d1497b2e55d2dd600524d1f4efacaed"  # cleinc/bts; split files as of 2019
BTS_SPLITS = f"https://raw.githubusercontent.com/cleinc/bts/{BTS_COMMIT}/train_test_inputs"

# The drives of BTS's train_test_inputs/eigen_{test,train}_files_with_gt.txt (at BTS_COMMIT;
# 697 test lines, 652 with ground truth, 23,158 train lines; no drive in both).
EIGEN_TEST_DRIVES: tuple[str, ...] = (
    "2011_09_26_drive_0002",
    "2011_09_26_drive_0009",
    "2011_09_26_drive_0013",
    "2011_09_26_drive_0020",
    "2011_09_26_drive_0023",
    "2011_09_26_drive_0027",
    "2011_09_26_drive_0029",
    "2011_09_26_drive_0036",
    "2011_09_26_drive_0046",
    "2011_09_26_drive_0048",
    "2011_09_26_drive_0052",
    "2011_09_26_drive_0056",
    "2011_09_26_drive_0059",
    "2011_09_26_drive_0064",
    "2011_09_26_drive_0084",
    "2011_09_26_drive_0086",
    "2011_09_26_drive_0093",
    "2011_09_26_drive_0096",
    "2011_09_26_drive_0101",
    "2011_09_26_drive_0106",
    "2011_09_26_drive_0117",
    "2011_09_28_drive_0002",
    "2011_09_29_drive_0071",
    "2011_09_30_drive_0016",
    "2011_09_30_drive_0018",
    "2011_09_30_drive_0027",
    "2011_10_03_drive_0027",
    "2011_10_03_drive_0047",
)

EIGEN_TRAIN_DRIVES: tuple[str, ...] = (
    "2011_09_26_drive_0001",
    "2011_09_26_drive_0005",
    "2011_09_26_drive_0011",
    "2011_09_26_drive_0014",
    "2011_09_26_drive_0015",
    "2011_09_26_drive_0017",
    "2011_09_26_drive_0018",
    "2011_09_26_drive_0019",
    "2011_09_26_drive_0022",
    "2011_09_26_drive_0028",
    "2011_09_26_drive_0032",
    "2011_09_26_drive_0035",
    "2011_09_26_drive_0039",
    "2011_09_26_drive_0051",
    "2011_09_26_drive_0057",
    "2011_09_26_drive_0060",
    "2011_09_26_drive_0061",
    "2011_09_26_drive_0070",
    "2011_09_26_drive_0079",
    "2011_09_26_drive_0087",
    "2011_09_26_drive_0091",
    "2011_09_26_drive_0095",
    "2011_09_26_drive_0104",
    "2011_09_26_drive_0113",
    "2011_09_28_drive_0001",
    "2011_09_29_drive_0004",
    "2011_09_29_drive_0026",
    "2011_09_30_drive_0020",
    "2011_09_30_drive_0028",
    "2011_09_30_drive_0033",
    "2011_09_30_drive_0034",
    "2011_10_03_drive_0034",
    "2011_10_03_drive_0042",
)

EIGEN_SPLIT_FILES = {
    "test": Remote(f"{BTS_SPLITS}/eigen_test_files_with_gt.txt", size=101_394,
                   sha256="8d0499af9ab4c0d1cd7944d572b0e0e4412feab1e73f4003038426fde699b53a"),
    "train": Remote(f"{BTS_SPLITS}/eigen_train_files_with_gt.txt", size=3_467_886,
                    sha256="3655308ee4a017094dc620402db3fc587d769cfbfa9a16c6d0f8de6dcbe109ec"),
}  # fmt: skip
SPLITS = {
    "eigen": (EIGEN_TRAIN_DRIVES + EIGEN_TEST_DRIVES, ("train", "test")),
    "eigen-train": (EIGEN_TRAIN_DRIVES, ("train",)),
    "eigen-test": (EIGEN_TEST_DRIVES, ("test",)),
}


@dataclass(frozen=True)
class Download:
    """One name of the table: its files, where the links were read, and what to run next
    (``{dir}`` is the folder it went into)."""

    files: tuple[Remote, ...]
    source: str
    then: str
    drives: bool = False  # kitti-raw: the files come from the drive names given


NYU_LABELED = Remote(f"{NYU_HORATIO}/nyu_depth_v2/nyu_depth_v2_labeled.mat",
                     size=2_972_037_809, md5="520609c519fba3ba5ac58c8fefcc3530")  # fmt: skip
NYU_SPLITS = Remote(
    f"{NYU_HORATIO}/indoor_seg_sup/splits.mat",
    size=2_626,
    md5="08e3c3aea27130ac7c01ffd739a4535f",
    sha256="6e081404491a8bfba2f066beaa9713ef6046f9007aa5f799f2a350506a580cee",
)

TABLE: dict[str, Download] = {
    "nyu-data": Download(
        (Remote("https://tinyurl.com/nyu-data-zip", name="nyu_data.zip"),),
        "ialhashim/DenseDepth README: NYU Depth V2 (50K), 4.1 GB (a tinyurl redirect; first "
        f"{DENSEDEPTH_S3}/nyu_data.zip); no checksum published",
        "cli.py train --backbone densenet169 --data {dir}/nyu_data.zip --out runs/nyu169",
    ),
    "nyu-test": Download(
        (Remote(f"{DENSEDEPTH_S3}/nyu_test.zip"),),
        "ialhashim/DenseDepth README: the Eigen test split, 654 images, 1.4 GB; no checksum "
        "published (DenseDepth#189 reports this link failing: --mirror)",
        "cli.py evaluate MODEL --data {dir}/nyu_test.zip",
    ),
    "nyu-labeled": Download(
        (NYU_LABELED, NYU_SPLITS),
        "the NYU Depth v2 page: labeled dataset (~2.8 GB) and the official train/test splits; "
        "sizes and md5 from a DVC record (huggingface.co/spaces/kingabzpro/savtadepth), "
        "splits.mat's sha256 from BTS's copy (cleinc/bts utils/splits.mat)",
        "cli.py evaluate MODEL --data {dir}/nyu_depth_v2_labeled.mat",
    ),
    "nyu-h5": Download(
        (Remote(f"{GDRIVE}19dfvGvDfCRYaqxVKypp1fRHwK7XtSjVu", name="nyu.h5"),),
        "ialhashim/DenseDepth README: the authors' NYU model, Keras HDF5, 165 MB (Google "
        f"Drive; first {DENSEDEPTH_S3}/nyu.h5); no checksum published",
        "cli.py import-keras {dir}/nyu.h5 --out nyu.pt && cli.py export nyu.pt && "
        "cli.py build-engine export/model_fp32.onnx --target tensorrt --int8",
    ),
    "kitti-h5": Download(
        (Remote(f"{GDRIVE}19flUnbJ_6q2xtjuUQvjt1Y1cJRwOr-XY", name="kitti.h5"),),
        "ialhashim/DenseDepth README: the authors' KITTI model, Keras HDF5, 165 MB (Google "
        f"Drive; first {DENSEDEPTH_S3}/kitti.h5); no checksum published",
        "cli.py import-keras {dir}/kitti.h5 --dataset kitti --out kitti.pt",
    ),
    "kitti-depth": Download(
        (Remote(f"{KITTI_S3}/data_depth_annotated.zip"),),
        "KITTI depth prediction page: annotated depth maps, 14 GB; no checksum published",
        "cli.py download kitti-raw --split eigen --to {dir} (the colour frames), then "
        "cli.py train --data {dir} --out runs/kitti",
    ),
    "kitti-raw": Download(
        (),
        "KITTI raw data page (per drive DRIVE_sync.zip, per date DATE_calib.zip; the URL "
        "pattern of KITTI's raw_data_downloader.sh); no checksum published",
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


def split_files(split: str) -> tuple[list[str], tuple[Remote, ...]]:
    """The drives of ``split`` (eigen, eigen-train, eigen-test) and its BTS list files."""
    if split not in SPLITS:
        raise DataError(f"unknown --split {split!r}; choose one of {', '.join(SPLITS)}")
    drives, lists = SPLITS[split]
    return list(drives), tuple(EIGEN_SPLIT_FILES[k] for k in lists)


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

    lists: tuple[Remote, ...] = ()
    if split is not None:
        if name != "kitti-raw":
            raise DataError("--split goes with kitti-raw only")
        split_drives, lists = split_files(split)
        drives = [*(drives or []), *(d for d in split_drives if d not in (drives or []))]
    remotes = (*files_for(name, drives), *lists)
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


def _fetched(folder: Path) -> dict[str, Any]:
    """What ``folder/downloads.json`` records (empty when absent or unreadable)."""
    try:
        return json.loads((folder / "downloads.json").read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}


def _record_fetched(folder: Path, record: dict[str, Any]) -> None:
    """Merge one file's record into ``folder/downloads.json`` (atomically)."""
    path = folder / "downloads.json"
    known = _fetched(folder)
    known[record["file"]] = {**record, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_text_atomic(path, json.dumps({"files": known}, indent=2, sort_keys=True) + "\n")


def next_command(name: str, folder: str | os.PathLike[str]) -> str:
    """The command that uses what ``download NAME`` fetched into ``folder``."""
    return TABLE[name].then.format(dir=folder)
