"""NYU Depth v2 datasets: readers of the real file layouts (no torch).

Every dataset is a sequence of ``(rgb uint8 HxWx3, depth float32 HxW metres)`` with 0 meaning
"no measurement". ``open_dataset(path, split)`` recognises the format:

- ``nyu_data.zip`` (DenseDepth's training archive): ``data/nyu2_train.csv`` / ``data/nyu2_test.csv``
  with rows ``rgb_path,depth_path``; train depth is 8-bit PNG (value / 255 * 10 m), test depth
  16-bit PNG in millimetres.
- ``nyu_test.zip`` (DenseDepth's Eigen test archive): ``eigen_test_rgb.npy`` (N,480,640,3 uint8),
  ``eigen_test_depth.npy`` (N,480,640 metres), ``eigen_test_crop.npy`` ([20,459,24,615]).
- ``nyu_depth_v2_labeled.mat`` (official, MATLAB v7.3 = HDF5; ``images`` N x 3 x 640 x 480 uint8
  and ``depths`` N x 640 x 480 metres, stored transposed) with the official ``splits.mat`` beside
  it (``trainNdxs`` / ``testNdxs``, 1-based; 795 / 654 images).
- a folder of ``NAME_rgb.png`` + ``NAME_depth.png`` pairs (uint16 millimetres), optionally with
  ``train/`` and ``test/`` subfolders.
- ``synthetic``: rendered indoor scenes (``densedepth.data.synthetic``), the embedded default.
- KITTI (a folder holding ``data_depth_annotated/``): raw colour frames
  ``2011_09_26/2011_09_26_drive_XXXX_sync/image_02/data/NNNNNNNNNN.png`` with the depth
  benchmark's annotated ground truth ``data_depth_annotated/{train,val}/DRIVE/proj_depth/
  groundtruth/image_02/NNNNNNNNNN.png`` (uint16, metres = value / 256, 0 = no lidar return).
  The split is ``eigen_{train,test}_files_with_gt.txt`` in the folder when present (BTS /
  AdaBins lists: ``rgb_path depth_path focal`` per line, ``None`` where a frame has no ground
  truth: those lines are skipped and counted), else the benchmark's own train / val drives.

Archives are read in place, never extracted. RGB images are converted when that loses nothing a
depth model uses (palette -> RGB, RGBA -> RGB by dropping alpha) and refused when they are
grayscale (a grayscale "RGB" is usually a depth map passed by mistake).
"""

from __future__ import annotations

import csv
import io
import os
import re
import struct
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from densedepth.camera import (
    KITTI_IMAGE_02,
    NYU_KINECT,
    Intrinsics,
    parse_kitti_calib,
    read_kitti_calib,
)
from densedepth.metrics import EIGEN_CROP
from densedepth.util.errors import DataError, SplitNotInDataset, missing_reason

Sample = tuple[np.ndarray, np.ndarray]

NYU_TRAIN_CSV = "data/nyu2_train.csv"
NYU_TEST_CSV = "data/nyu2_test.csv"
EIGEN_FILES = ("eigen_test_rgb.npy", "eigen_test_depth.npy", "eigen_test_crop.npy")
LABELED_MAT = "nyu_depth_v2_labeled.mat"
SPLITS_MAT = "splits.mat"
NYU8_MAX_DEPTH = 10.0  # nyu_data.zip train depth: value / 255 * 10 m
SPLITS = ("train", "test")
DATASET_LAYOUTS = ("nyu-data-zip", "nyu-test-zip", "labeled-mat", "pairs", "kitti")  # synth
KITTI_GT_DIR = "data_depth_annotated"
KITTI_CALIB = "calib_cam_to_cam.txt"  # per drive date: DATE/calib_cam_to_cam.txt
KITTI_LIST = "eigen_{split}_files_with_gt.txt"  # BTS / AdaBins split files
KITTI_DEPTH_SCALE = 256.0  # uint16 value per metre
KITTI_SPLITS = ("auto", "eigen", "benchmark")


# ---------------------------------------------------------------------------------------------
# Decoding and checking single samples
# ---------------------------------------------------------------------------------------------


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 HxWx3; palette and RGBA converted, grayscale refused."""
    img = _open_image(data, name)
    if img.mode in ("L", "LA", "I", "I;16", "I;16B", "F", "1"):
        raise DataError(
            f"{name}: image is grayscale (mode {img.mode}); an RGB image was expected "
            f"(were RGB and depth swapped?)"
        )
    if img.mode != "RGB":
        img = img.convert("RGB")  # P, RGBA (alpha dropped), CMYK, YCbCr
    return np.asarray(img, dtype=np.uint8).copy()


def decode_depth_png(data: bytes, name: str, encoding: str = "mm16") -> np.ndarray:
    """Depth PNG bytes -> float32 metres. ``mm16``: uint16 millimetres; ``nyu8``: value/255*10 m;
    ``kitti16``: uint16 value / 256 m (0 = missing)."""
    img = _open_image(data, name)
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise DataError(f"{name}: depth PNG has {arr.shape[-1]} channels; expected one channel")
    if encoding == "mm16":
        if arr.dtype == np.uint8:
            raise DataError(
                f"{name}: depth PNG is 8-bit; expected 16-bit millimetres (0 = missing)"
            )
        if arr.dtype.kind not in "ui" or arr.min() < 0 or arr.max() > 65535:
            raise DataError(f"{name}: depth PNG holds {arr.dtype} values; expected uint16 mm")
        return arr.astype(np.float32) / 1000.0
    if encoding == "kitti16":
        if arr.dtype.kind not in "ui" or arr.dtype.itemsize < 2:
            raise DataError(
                f"{name}: depth PNG is {arr.dtype}; KITTI ground truth is 16-bit "
                f"(metres = value / 256, 0 = no measurement)"
            )
        return arr.astype(np.float32) / np.float32(KITTI_DEPTH_SCALE)
    if encoding == "nyu8":
        if arr.dtype != np.uint8:
            raise DataError(
                f"{name}: depth PNG is {arr.dtype}; nyu_data.zip train depth is 8-bit "
                f"(value / 255 * 10 m)"
            )
        return arr.astype(np.float32) / 255.0 * NYU8_MAX_DEPTH
    raise ValueError(f"unknown depth encoding {encoding!r}")


def _open_image(data: bytes, name: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... on bad bytes
        first = re.sub(r"\s*<[^>]* at 0x[0-9a-f]+>", "", str(exc).splitlines()[0])
        raise DataError(
            f"{name}: cannot decode image ({type(exc).__name__}: {first}); "
            f"the file is corrupt or truncated, re-download it"
        ) from None
    return img


def check_sample(rgb: np.ndarray, depth: np.ndarray, name: str) -> Sample:
    """Validate one sample; return it as (uint8 HxWx3, float32 HxW metres)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"{name}: RGB must be uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
    if depth.ndim != 2 or depth.dtype.kind != "f":
        raise DataError(f"{name}: depth must be float HxW metres, got {depth.dtype} {depth.shape}")
    if depth.shape != rgb.shape[:2]:
        raise DataError(
            f"{name}: depth is {depth.shape} but RGB is {rgb.shape[:2]}; they must match"
        )
    if not np.isfinite(depth).all():
        raise DataError(f"{name}: depth contains NaN or inf; use 0 for missing measurements")
    if depth.min() < 0:
        raise DataError(f"{name}: depth contains negative values ({depth.min():.3g} m)")
    return rgb, depth.astype(np.float32, copy=False)


def check_member_name(name: str, archive: Path) -> str:
    """Refuse absolute or ``..`` member paths (a CSV must not point outside its archive)."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise DataError(f"{archive}: member path {name!r} is absolute or leaves the archive")
    return name


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------


class DepthDataset(Sequence[Sample]):
    """Base of every reader: ``len``, integer indexing (negative too), ``name``, ``crop``."""

    name = "dataset"
    crop: tuple[int, int, int, int] | None = None  # evaluation crop if the format carries one
    depth_kind = "nyu"  # "kitti": street depth to 80 m (the model's range, the KITTI protocol)
    camera: Intrinsics | None = None  # the camera its images come from, where known

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> Sample:
        """Read sample ``index`` (0 <= index < len)."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.name} of length {n}")
        return self.load(index % n)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self.load(i)


class _LazyZip:
    """A ZipFile opened on first use and re-opened in each process (safe for DataLoader workers)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zf: zipfile.ZipFile | None = None
        self._pid = -1
        self.open()

    def open(self) -> zipfile.ZipFile:
        if self._zf is None or self._pid != os.getpid():
            try:
                self._zf = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(
                    f"{self.path}: not a readable zip archive ({exc}); it is corrupt or "
                    f"truncated, re-download it"
                ) from None
            self._pid = os.getpid()
        return self._zf

    def names(self) -> set[str]:
        return set(self.open().namelist())

    def read(self, name: str) -> bytes:
        try:
            return self.open().read(name)
        except KeyError:
            raise DataError(f"{self.path}: member {name!r} is missing from the archive") from None
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise DataError(
                f"{self.path}: member {name!r} is corrupt ({exc}); re-download the archive"
            ) from None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_zf": None, "_pid": -1}


class NyuDataZip(DepthDataset):
    """DenseDepth's ``nyu_data.zip``: CSV rows ``rgb,depth`` naming members of the same zip."""

    camera = NYU_KINECT

    def __init__(self, path: str | os.PathLike[str], split: str = "train") -> None:
        self.path = Path(path)
        self.split = _check_split(split)
        self.zip = _LazyZip(self.path)
        self.name = f"{self.path.name}:{split}"
        csv_name = NYU_TRAIN_CSV if split == "train" else NYU_TEST_CSV
        text = self.zip.read(csv_name).decode("utf-8", errors="replace")
        names = self.zip.names()
        self.rows: list[tuple[str, str]] = []
        for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise DataError(f"{self.path}: {csv_name} line {lineno} has no depth column")
            rgb, depth = (check_member_name(c.strip(), self.path) for c in row[:2])
            for member in (rgb, depth):
                if member not in names:
                    raise DataError(
                        f"{self.path}: {csv_name} line {lineno} names {member!r}, which is not "
                        f"in the archive"
                    )
            self.rows.append((rgb, depth))
        self.depth_encoding = "nyu8" if split == "train" else "mm16"

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, index: int) -> Sample:
        rgb_name, depth_name = self.rows[index]
        rgb = decode_rgb(self.zip.read(rgb_name), f"{self.path.name}:{rgb_name}")
        depth = decode_depth_png(
            self.zip.read(depth_name), f"{self.path.name}:{depth_name}", self.depth_encoding
        )
        return check_sample(rgb, depth, f"{self.path.name}:{rgb_name}")

    def scene(self, index: int) -> str:
        """The scene folder a sample comes from (e.g. ``living_room_0038_out``)."""
        parts = self.rows[index][0].split("/")
        return parts[-2] if len(parts) > 1 else ""


def _stored_npy(zf: zipfile.ZipFile, path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    """Memory-map an uncompressed .npy member in place."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
        if header[:4] != b"PK\x03\x04":
            raise DataError(f"{path}: bad local header for {info.filename}; re-download it")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype.hasobject:
            raise DataError(f"{path}: {info.filename} holds Python objects; refusing to load")
        offset = f.tell()
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)


def load_npy_member(lazy: _LazyZip, name: str) -> np.ndarray:
    """A .npy member of a zip: memory-mapped when stored, decompressed once when deflated."""
    zf = lazy.open()
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise DataError(f"{lazy.path}: member {name!r} is missing from the archive") from None
    try:
        if info.compress_type == zipfile.ZIP_STORED:
            arr = _stored_npy(zf, lazy.path, info)
            expected = info.file_size
            if arr.nbytes > expected:
                raise ValueError("array is larger than its member")
            return arr
        return np.load(io.BytesIO(lazy.read(name)), allow_pickle=False)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"{lazy.path}: {name} is not a readable .npy array ({type(exc).__name__}: {exc})"
        ) from None


class NyuTestZip(DepthDataset):
    """DenseDepth's ``nyu_test.zip`` (the Eigen test split as three .npy arrays)."""

    camera = NYU_KINECT

    def __init__(self, path: str | os.PathLike[str], split: str = "test") -> None:
        self.path = Path(path)
        if _check_split(split) != "test":
            raise SplitNotInDataset(f"{self.path} holds only the test split; use split 'test'")
        self.zip = _LazyZip(self.path)
        self.name = self.path.name
        self.rgb = load_npy_member(self.zip, EIGEN_FILES[0])
        self.depth = load_npy_member(self.zip, EIGEN_FILES[1])
        crop = np.asarray(load_npy_member(self.zip, EIGEN_FILES[2])).ravel()
        if self.rgb.ndim != 4 or self.rgb.shape[3] != 3 or self.rgb.dtype != np.uint8:
            raise DataError(
                f"{self.path}: eigen_test_rgb.npy is {self.rgb.dtype} {self.rgb.shape}; "
                f"expected uint8 (N, H, W, 3)"
            )
        if self.depth.shape != self.rgb.shape[:3] or self.depth.dtype.kind != "f":
            raise DataError(
                f"{self.path}: eigen_test_depth.npy is {self.depth.dtype} {self.depth.shape}; "
                f"expected float metres {self.rgb.shape[:3]}"
            )
        h, w = self.rgb.shape[1:3]
        if crop.size != 4 or not (0 <= crop[0] <= crop[1] < h and 0 <= crop[2] <= crop[3] < w):
            raise DataError(
                f"{self.path}: eigen_test_crop.npy {crop.tolist()} does not fit {h}x{w}"
            )
        self.crop = tuple(int(c) for c in crop)

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    def load(self, index: int) -> Sample:
        rgb = np.ascontiguousarray(self.rgb[index])
        depth = np.asarray(self.depth[index], dtype=np.float32)
        return check_sample(rgb, depth, f"{self.name}[{index}]")


def read_splits(path: Path) -> dict[str, np.ndarray]:
    """The official ``splits.mat``: 0-based ``train`` / ``test`` index arrays."""
    if not path.is_file():
        raise DataError(
            f"{path} not found: the labeled .mat needs the official splits.mat (trainNdxs/"
            f"testNdxs) beside it; download it from the NYU Depth v2 page"
        )
    try:
        import h5py

        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                raw = {k: np.asarray(f[k]) for k in ("trainNdxs", "testNdxs") if k in f}
        else:
            from scipy.io import loadmat

            mat = loadmat(path)
            raw = {k: mat[k] for k in ("trainNdxs", "testNdxs") if k in mat}
    except Exception as exc:
        raise DataError(f"{path}: cannot read MATLAB file ({type(exc).__name__}: {exc})") from None
    if set(raw) != {"trainNdxs", "testNdxs"}:
        raise DataError(f"{path}: expected variables trainNdxs and testNdxs, found {sorted(raw)}")
    return {
        "train": np.asarray(raw["trainNdxs"]).ravel().astype(np.int64) - 1,
        "test": np.asarray(raw["testNdxs"]).ravel().astype(np.int64) - 1,
    }


class LabeledMat(DepthDataset):
    """The official ``nyu_depth_v2_labeled.mat`` (HDF5) with ``splits.mat`` beside it."""

    camera = NYU_KINECT

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str = "train",
        splits_path: str | os.PathLike[str] | None = None,
    ) -> None:
        import h5py

        self.path = Path(path)
        self.split = _check_split(split)
        self.name = f"{self.path.name}:{split}"
        if not h5py.is_hdf5(self.path):
            raise DataError(
                f"{self.path}: not a MATLAB v7.3 (HDF5) file; the labeled NYU set is v7.3, "
                f"re-download nyu_depth_v2_labeled.mat"
            )
        self._file: Any = None
        self._pid = -1
        f = self._h5()
        missing = [k for k in ("images", "depths") if k not in f]
        if missing:
            raise DataError(
                f"{self.path}: missing {missing}; expected 'images' and 'depths' (found "
                f"{sorted(f.keys())})"
            )
        images, depths = f["images"], f["depths"]
        if (
            images.ndim != 4
            or images.shape[1] != 3
            or depths.shape
            != (
                images.shape[0],
                images.shape[2],
                images.shape[3],
            )
        ):
            raise DataError(
                f"{self.path}: images {images.shape} / depths {depths.shape} are not "
                f"N x 3 x W x H / N x W x H"
            )
        n = images.shape[0]
        splits_file = Path(splits_path) if splits_path else self.path.with_name(SPLITS_MAT)
        self.indices = read_splits(splits_file)[split]
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
            raise DataError(f"{splits_file}: indices fall outside the {n} images of {self.path}")

    def _h5(self) -> Any:
        import h5py

        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise DataError(f"{self.path}: cannot open HDF5 file ({exc})") from None
            self._pid = os.getpid()
        return self._file

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None, "_pid": -1}

    def __len__(self) -> int:
        return int(self.indices.size)

    def load(self, index: int) -> Sample:
        f = self._h5()
        j = int(self.indices[index])
        try:
            rgb = np.ascontiguousarray(np.asarray(f["images"][j]).transpose(2, 1, 0))
            depth = np.ascontiguousarray(np.asarray(f["depths"][j]).T)
        except OSError as exc:
            raise DataError(f"{self.path}: image {j} is unreadable ({exc})") from None
        if rgb.dtype != np.uint8:
            raise DataError(f"{self.path}: images are {rgb.dtype}; expected uint8")
        return check_sample(rgb, depth, f"{self.path.name}[{j}]")


class PairsFolder(DepthDataset):
    """A folder of ``NAME_rgb.png`` + ``NAME_depth.png`` (uint16 millimetres, 0 = missing)."""

    def __init__(self, path: str | os.PathLike[str], split: str | None = None) -> None:
        root = Path(path)
        if split is not None and (root / _check_split(split)).is_dir():
            root = root / split
        self.path = root
        self.name = str(root)
        rgbs = sorted(root.glob("*_rgb.png"))
        if not rgbs:
            raise DataError(f"{root}: no *_rgb.png files found")
        self.pairs = []
        for rgb in rgbs:
            depth = rgb.with_name(rgb.name[: -len("_rgb.png")] + "_depth.png")
            if not depth.is_file():
                raise DataError(f"{rgb}: its depth {depth.name} is missing")
            self.pairs.append((rgb, depth))

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> Sample:
        rgb_path, depth_path = self.pairs[index]
        rgb = decode_rgb(_read_file(rgb_path), str(rgb_path))
        depth = decode_depth_png(_read_file(depth_path), str(depth_path), "mm16")
        return check_sample(rgb, depth, str(rgb_path))


class _KittiFiles:
    """The KITTI tree under a folder, extracted or not: files on disk, and the members of the
    official zips beside them (``*_sync.zip`` raw drives, ``data_depth_annotated.zip``), read in
    place. Paths are relative to the folder, with zip members where they would be extracted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.members: dict[str, tuple[_LazyZip, str]] = {}
        for path in sorted(root.glob("*.zip")):
            archive = _LazyZip(path)
            prefix = f"{KITTI_GT_DIR}/" if path.stem == KITTI_GT_DIR else ""
            for name in archive.names():
                if name.endswith(".png") and ("/image_02/" in name):
                    self.members[prefix + check_member_name(name, path)] = (archive, name)

    def exists(self, rel: str) -> bool:
        return rel in self.members or (self.root / rel).is_file()

    def read(self, rel: str) -> bytes:
        if (self.root / rel).is_file():
            return _read_file(self.root / rel)
        archive, name = self.members[rel]
        return archive.read(name)

    def cameras(self, dates: list[str]) -> dict[str, Intrinsics]:
        """Camera 02 of each drive date whose ``DATE/calib_cam_to_cam.txt`` is here (a folder
        or a ``DATE_calib.zip`` beside the drives)."""
        found = {}
        for date in dates:
            rel = f"{date}/{KITTI_CALIB}"
            if (self.root / rel).is_file():
                found[date] = read_kitti_calib(self.root / rel)
            elif (self.root / f"{date}_calib.zip").is_file():
                archive = _LazyZip(self.root / f"{date}_calib.zip")
                if rel in archive.names():
                    found[date] = parse_kitti_calib(archive.read(rel).decode("utf-8", "replace"),
                                                    f"{date}_calib.zip:{rel}", date)  # fmt: skip
        return found

    def ground_truth(self, gt_split: str) -> list[str]:
        """Every annotated depth PNG of ``gt_split`` (train | val), sorted."""
        base = f"{KITTI_GT_DIR}/{gt_split}/"
        on_disk = {
            p.relative_to(self.root).as_posix()
            for p in (self.root / base).glob("*_sync/proj_depth/groundtruth/image_02/*.png")
        }
        in_zips = {rel for rel in self.members if rel.startswith(base)}
        return sorted(on_disk | in_zips)


class KittiDataset(DepthDataset):
    """KITTI raw colour frames with the depth benchmark's annotated ground truth (see the module
    docstring), from folders or the official zips; ``skipped`` counts split-file lines without
    ground truth."""

    depth_kind = "kitti"

    def __init__(
        self, root: str | os.PathLike[str], split: str = "test", kitti_split: str = "auto"
    ) -> None:
        """``kitti_split``: ``eigen`` (the split files, required), ``benchmark`` (the train /
        val drives of data_depth_annotated) or ``auto`` (the split files when present)."""
        if kitti_split not in KITTI_SPLITS:
            raise DataError(
                f"unknown KITTI split {kitti_split!r}; choose {', '.join(KITTI_SPLITS)}"
            )
        self.path = Path(root)
        self.files = _KittiFiles(self.path)
        listing = self.path / KITTI_LIST.format(split=_check_split(split))
        self.skipped = 0
        if kitti_split == "eigen" and not listing.is_file():
            raise DataError(
                f"{self.path}: --split eigen needs {listing.name} there (BTS's Eigen split "
                f"lists); or use --split benchmark for the train / val drives"
            )
        if listing.is_file() and kitti_split != "benchmark":
            self.entries = self._from_list(listing)
            self.name = f"kitti {listing.name}"
        else:
            gt_split = "train" if split == "train" else "val"
            self.entries = self._from_ground_truth(gt_split)
            self.name = f"kitti {KITTI_GT_DIR}/{gt_split}"
        if not self.entries:
            raise DataError(f"{self.path}: no KITTI frames with ground truth for split {split!r}")
        self.cameras = self.files.cameras(sorted({rgb.split("/")[0] for rgb, _ in self.entries}))
        self.camera = self._main_camera()

    def _main_camera(self) -> Intrinsics:
        """The camera of the drive date with the most frames (its calib_cam_to_cam.txt), else
        2011_09_26's published P_rect_02."""
        dates = Counter(rgb.split("/")[0] for rgb, _ in self.entries)
        for date, _ in dates.most_common():
            if date in self.cameras:
                return self.cameras[date]
        return replace(KITTI_IMAGE_02, source=f"{KITTI_IMAGE_02.source} (no "
                       f"DATE/calib_cam_to_cam.txt under {self.path})")  # fmt: skip

    def _from_list(self, listing: Path) -> list[tuple[str, str]]:
        entries = []
        for lineno, line in enumerate(listing.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise DataError(f"{listing}:{lineno}: expected 'rgb_path depth_path [focal]'")
            if fields[1] == "None":
                self.skipped += 1
                continue
            rgb, depth_rel = (check_member_name(f, listing) for f in fields[:2])
            candidates = [f"{KITTI_GT_DIR}/{sub}{depth_rel}" for sub in ("", "train/", "val/")]
            depth = next((c for c in candidates if self.files.exists(c)), None)
            if not self.files.exists(rgb) or depth is None:
                what = rgb if not self.files.exists(rgb) else f"{KITTI_GT_DIR}/.../{depth_rel}"
                raise DataError(f"{listing}:{lineno}: {what} not found under {self.path}")
            entries.append((rgb, depth))
        return entries

    def _from_ground_truth(self, gt_split: str) -> list[tuple[str, str]]:
        entries = []
        for depth in self.files.ground_truth(gt_split):
            drive, name = depth.split("/")[2], depth.rsplit("/", 1)[1]
            rgb = f"{drive[:10]}/{drive}/image_02/data/{name}"
            if not self.files.exists(rgb):
                raise DataError(f"{self.path / depth}: its colour frame {rgb} is missing")
            entries.append((rgb, depth))
        return entries

    def __len__(self) -> int:
        return len(self.entries)

    def scene(self, index: int) -> str:
        """The drive of frame ``index`` (validation holds out whole drives)."""
        return self.entries[index][0].split("/")[1]

    def load(self, index: int) -> Sample:
        rgb_rel, depth_rel = self.entries[index]
        where = str(self.path / rgb_rel)
        rgb = decode_rgb(self.files.read(rgb_rel), where)
        depth = decode_depth_png(self.files.read(depth_rel), str(self.path / depth_rel), "kitti16")
        return check_sample(rgb, depth, where)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


class SyntheticDataset(DepthDataset):
    """Rendered indoor scenes with exact depth; train and test use disjoint seeds."""

    def __init__(self, n: int, seed: int = 0, height: int = 480, width: int = 640) -> None:
        from densedepth.data.synthetic import SyntheticScenes

        if n < 1:
            raise DataError(f"synthetic dataset size must be >= 1, got {n}")
        self.scenes = SyntheticScenes(n, seed=seed, height=height, width=width)
        self.name = f"synthetic(n={n}, seed={seed}, {height}x{width})"
        self.camera = replace(NYU_KINECT.scaled(width, height),
                              source="synthetic: the NYU Kinect's, scaled")  # fmt: skip
        if (height, width) == (480, 640):
            self.crop = EIGEN_CROP

    def __len__(self) -> int:
        return len(self.scenes)

    def load(self, index: int) -> Sample:
        return self.scenes[index]


SYNTHETIC_DEFAULTS = {"train": {"n": 1000, "seed": 0}, "test": {"n": 100, "seed": 1}}


def open_dataset(path: str | os.PathLike[str], split: str = "train", **kwargs: Any) -> DepthDataset:
    """Open any supported dataset by path (or ``"synthetic"``); see the module docstring.

    ``kwargs`` go to the synthetic generator (``n``, ``seed``, ``height``, ``width``), and
    ``kitti_split`` (auto | eigen | benchmark) to the KITTI reader.
    """
    split = _check_split(split)
    kitti_split = kwargs.pop("kitti_split", "auto")
    if str(path) == "synthetic":
        args = {**SYNTHETIC_DEFAULTS[split], **kwargs}
        return SyntheticDataset(**args)
    p = Path(path)
    if not p.exists():
        raise DataError(f"dataset {p} {missing_reason(p)}; pass a path or 'synthetic'")
    if p.is_dir():
        for candidate in _folder_candidates(p, split):
            if candidate.exists():
                return open_dataset(candidate, split)
        if (p / KITTI_GT_DIR).is_dir() or (p / f"{KITTI_GT_DIR}.zip").is_file():
            return KittiDataset(p, split, kitti_split)
        if any(p.glob("*_rgb.png")) or (p / split).is_dir():
            return PairsFolder(p, split)
        raise DataError(
            f"{p}: no dataset found; expected nyu_data.zip, nyu_test.zip, {LABELED_MAT}, "
            f"*_rgb.png/*_depth.png pairs or KITTI ({KITTI_GT_DIR}/ beside the raw drives)"
        )
    if p.suffix == ".zip":
        names = _LazyZip(p).names()
        if NYU_TRAIN_CSV in names or NYU_TEST_CSV in names:
            return NyuDataZip(p, split)
        if EIGEN_FILES[0] in names:
            return NyuTestZip(p, split)
        raise DataError(
            f"{p}: zip holds neither {NYU_TRAIN_CSV} (nyu_data.zip) nor {EIGEN_FILES[0]} "
            f"(nyu_test.zip)"
        )
    if p.suffix == ".mat":
        return LabeledMat(p, split)
    known = ", ".join(DATASET_LAYOUTS)
    raise DataError(f"{p}: unknown dataset format; supported: {known}, synthetic")


def _folder_candidates(p: Path, split: str) -> list[Path]:
    zips = ["nyu_test.zip", "nyu_data.zip"] if split == "test" else ["nyu_data.zip"]
    return [p / z for z in zips] + [p / LABELED_MAT]


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    return split
