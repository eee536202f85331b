"""NYU Depth v2 datasets: readers of the real file layouts, their writers, augmentation, batching.

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
- ``synthetic``: rendered indoor scenes (``densedepth.synthetic``), the embedded default.

Archives are read in place, never extracted. RGB images are converted when that loses nothing a
depth model uses (palette -> RGB, RGBA -> RGB by dropping alpha) and refused when they are
grayscale (a grayscale "RGB" is usually a depth map passed by mistake).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import struct
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from densedepth.errors import DataError, missing_reason
from densedepth.metrics import EIGEN_CROP
from densedepth.outputs import atomic_path

Sample = tuple[np.ndarray, np.ndarray]

NYU_TRAIN_CSV = "data/nyu2_train.csv"
NYU_TEST_CSV = "data/nyu2_test.csv"
EIGEN_FILES = ("eigen_test_rgb.npy", "eigen_test_depth.npy", "eigen_test_crop.npy")
LABELED_MAT = "nyu_depth_v2_labeled.mat"
SPLITS_MAT = "splits.mat"
NYU8_MAX_DEPTH = 10.0  # nyu_data.zip train depth: value / 255 * 10 m
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")  # RGB inputs
FORMATS = ("nyu-data-zip", "nyu-test-zip", "labeled-mat", "pairs")


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
    """Depth PNG bytes -> float32 metres. ``mm16``: uint16 millimetres; ``nyu8``: value/255*10 m."""
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

    def __init__(self, path: str | os.PathLike[str], split: str = "test") -> None:
        self.path = Path(path)
        if _check_split(split) != "test":
            raise DataError(f"{self.path} holds only the test split; use split 'test'")
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


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


class SyntheticDataset(DepthDataset):
    """Rendered indoor scenes with exact depth; train and test use disjoint seeds."""

    def __init__(self, n: int, seed: int = 0, height: int = 480, width: int = 640) -> None:
        from densedepth.synthetic import SyntheticScenes

        if n < 1:
            raise DataError(f"synthetic dataset size must be >= 1, got {n}")
        self.scenes = SyntheticScenes(n, seed=seed, height=height, width=width)
        self.name = f"synthetic(n={n}, seed={seed}, {height}x{width})"
        if (height, width) == (480, 640):
            self.crop = EIGEN_CROP

    def __len__(self) -> int:
        return len(self.scenes)

    def load(self, index: int) -> Sample:
        return self.scenes[index]


SYNTHETIC_DEFAULTS = {"train": {"n": 1000, "seed": 0}, "test": {"n": 100, "seed": 1}}


def open_dataset(path: str | os.PathLike[str], split: str = "train", **kwargs: Any) -> DepthDataset:
    """Open any supported dataset by path (or ``"synthetic"``); see the module docstring.

    ``kwargs`` go to the synthetic generator (``n``, ``seed``, ``height``, ``width``).
    """
    split = _check_split(split)
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
        if any(p.glob("*_rgb.png")) or (p / split).is_dir():
            return PairsFolder(p, split)
        raise DataError(
            f"{p}: no dataset found; expected nyu_data.zip, nyu_test.zip, {LABELED_MAT} or "
            f"*_rgb.png/*_depth.png pairs"
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
    raise DataError(f"{p}: unknown dataset format; supported: {', '.join(FORMATS)}, synthetic")


def _folder_candidates(p: Path, split: str) -> list[Path]:
    zips = ["nyu_test.zip", "nyu_data.zip"] if split == "test" else ["nyu_data.zip"]
    return [p / z for z in zips] + [p / LABELED_MAT]


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    return split


# ---------------------------------------------------------------------------------------------
# Writers: the same layouts, byte for byte, so every reader is tested on real-format files
# ---------------------------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def encode_png(array: np.ndarray) -> bytes:
    """uint8 RGB, uint8 gray or uint16 gray array -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """uint8 RGB -> JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def depth_to_mm16(depth: np.ndarray) -> np.ndarray:
    """Metres -> uint16 millimetres (rounded, 0 kept as missing)."""
    return np.clip(np.rint(depth * 1000.0), 0, 65535).astype(np.uint16)


def depth_to_nyu8(depth: np.ndarray) -> np.ndarray:
    """Metres -> nyu_data.zip's 8-bit train depth (value = depth / 10 m * 255)."""
    return np.clip(np.rint(depth / NYU8_MAX_DEPTH * 255.0), 0, 255).astype(np.uint8)


def write_nyu_data_zip(
    path: str | os.PathLike[str], train: Sequence[Sample], test: Sequence[Sample]
) -> Path:
    """Write DenseDepth's ``nyu_data.zip`` layout: JPEG + 8-bit depth train, PNG + mm16 test."""
    path = Path(path)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        rows = []
        for i, (rgb, depth) in enumerate(train):
            scene = f"data/nyu2_train/synthetic_room_{i:04d}_out"
            rows.append((f"{scene}/1.jpg", f"{scene}/1.png"))
            zf.writestr(rows[-1][0], encode_jpeg(rgb), compress_type=zipfile.ZIP_STORED)
            zf.writestr(rows[-1][1], encode_png(depth_to_nyu8(depth)))
        zf.writestr(NYU_TRAIN_CSV, "".join(f"{a},{b}\n" for a, b in rows))
        rows = []
        for i, (rgb, depth) in enumerate(test):
            rows.append((f"data/nyu2_test/{i:05d}_colors.png", f"data/nyu2_test/{i:05d}_depth.png"))
            zf.writestr(rows[-1][0], encode_png(rgb))
            zf.writestr(rows[-1][1], encode_png(depth_to_mm16(depth)))
        zf.writestr(NYU_TEST_CSV, "".join(f"{a},{b}\n" for a, b in rows))
    return path


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def write_nyu_test_zip(
    path: str | os.PathLike[str],
    test: Sequence[Sample],
    crop: tuple[int, int, int, int] = EIGEN_CROP,
    compress: bool = False,
) -> Path:
    """Write DenseDepth's ``nyu_test.zip``: three .npy arrays (stored, so they memory-map)."""
    path = Path(path)
    rgb = np.stack([s[0] for s in test]).astype(np.uint8)
    depth = np.stack([s[1] for s in test]).astype(np.float32)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", method) as zf:
        zf.writestr(EIGEN_FILES[0], _npy_bytes(rgb))
        zf.writestr(EIGEN_FILES[1], _npy_bytes(depth))
        zf.writestr(EIGEN_FILES[2], _npy_bytes(np.asarray(crop, dtype=np.int64)))
    return path


def _matlab_v73_header() -> bytes:
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: densedepth HDF5 schema 1.00 ."
    return text.ljust(116, b" ") + b" " * 8 + struct.pack("<H", 0x0200) + b"IM"


def write_labeled_mat(
    path: str | os.PathLike[str],
    samples: Sequence[Sample],
    train_indices: Sequence[int],
    test_indices: Sequence[int],
) -> Path:
    """Write the official layout: v7.3 ``nyu_depth_v2_labeled.mat`` + v5 ``splits.mat`` beside."""
    import h5py
    from scipy.io import savemat

    path = Path(path)
    rgb = np.stack([s[0] for s in samples]).astype(np.uint8)  # N,H,W,3
    depth = np.stack([s[1] for s in samples]).astype(np.float32)  # N,H,W
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=512) as f:
            # MATLAB is column-major: its H x W x 3 x N array reads as N x 3 x W x H here.
            images = f.create_dataset("images", data=rgb.transpose(0, 3, 2, 1))
            images.attrs["MATLAB_class"] = np.bytes_("uint8")
            depths = f.create_dataset("depths", data=depth.transpose(0, 2, 1))
            depths.attrs["MATLAB_class"] = np.bytes_("single")
        with open(tmp, "r+b") as raw:
            raw.write(_matlab_v73_header())
    splits = path.with_name(SPLITS_MAT)
    with atomic_path(splits) as tmp, open(tmp, "wb") as f:
        savemat(
            f,
            {
                "trainNdxs": np.asarray(train_indices, dtype=np.float64).reshape(-1, 1) + 1,
                "testNdxs": np.asarray(test_indices, dtype=np.float64).reshape(-1, 1) + 1,
            },
        )
    return path


def write_pairs(
    folder: str | os.PathLike[str], samples: Sequence[Sample], prefix: str = ""
) -> Path:
    """Write ``NAME_rgb.png`` + ``NAME_depth.png`` (uint16 mm) pairs into ``folder``."""
    folder = Path(folder)
    for i, (rgb, depth) in enumerate(samples):
        for suffix, array in (("rgb", rgb), ("depth", depth_to_mm16(depth))):
            with atomic_path(folder / f"{prefix}{i:05d}_{suffix}.png") as tmp:
                tmp.write_bytes(encode_png(array))
    return folder


def write_synthetic(
    out: str | os.PathLike[str],
    fmt: str,
    n_train: int = 16,
    n_test: int = 8,
    seed: int = 0,
    height: int = 480,
    width: int = 640,
) -> Path:
    """Render synthetic scenes and write them in format ``fmt`` (one of ``FORMATS``) under ``out``.

    Train scenes use ``seed``, test scenes ``seed + 1``, so the two never share a scene.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    out = Path(out)
    train = SyntheticDataset(n_train, seed, height, width) if n_train else []
    test = SyntheticDataset(n_test, seed + 1, height, width)
    if fmt == "nyu-data-zip":
        return write_nyu_data_zip(out / "nyu_data.zip", list(train), list(test))
    if fmt == "nyu-test-zip":
        crop = EIGEN_CROP if (height, width) == (480, 640) else (0, height - 1, 0, width - 1)
        return write_nyu_test_zip(out / "nyu_test.zip", list(test), crop)
    if fmt == "labeled-mat":
        samples = list(train) + list(test)
        idx = np.arange(len(samples))
        return write_labeled_mat(out / LABELED_MAT, samples, idx[:n_train], idx[n_train:])
    write_pairs(out / "train", train)
    write_pairs(out / "test", test)
    return out


# ---------------------------------------------------------------------------------------------
# Augmentation, resizing and torch batching
# ---------------------------------------------------------------------------------------------

CHANNEL_PERMUTATIONS = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))  # not identity


def augment(
    rgb: np.ndarray,
    depth: np.ndarray,
    rng: np.random.Generator,
    flip_p: float = 0.5,
    swap_p: float = 0.25,
) -> Sample:
    """The paper's augmentation: horizontal flip (image and depth) with probability ``flip_p``,
    and a colour-channel permutation (image only) with probability ``swap_p``; nothing else."""
    if rng.random() < flip_p:
        rgb, depth = rgb[:, ::-1], depth[:, ::-1]
    if rng.random() < swap_p:
        rgb = rgb[:, :, list(CHANNEL_PERMUTATIONS[rng.integers(len(CHANNEL_PERMUTATIONS))])]
    return np.ascontiguousarray(rgb), np.ascontiguousarray(depth)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 HxWx3 to ``size`` = (height, width): area when shrinking, bilinear otherwise."""
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    shrink = h < rgb.shape[0] or w < rgb.shape[1]
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize metres to ``size``; maps with holes (0) use nearest so no depth is invented."""
    h, w = size
    if depth.shape == (h, w):
        return depth
    if (depth <= 0).any():
        interp = cv2.INTER_NEAREST
    elif h < depth.shape[0] or w < depth.shape[1]:
        interp = cv2.INTER_AREA
    else:
        interp = cv2.INTER_LINEAR
    return cv2.resize(depth, (w, h), interpolation=interp)


def to_network_pair(rgb: np.ndarray, depth: np.ndarray, input_size: tuple[int, int]) -> Sample:
    """RGB resized to the network input and depth to half of it (the output resolution)."""
    h, w = input_size
    return resize_rgb(rgb, (h, w)), resize_depth(depth, (h // 2, w // 2))


def image_files(folder: Path) -> list[Path]:
    """The RGB image files directly inside ``folder`` (by suffix), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def rgb_to_input(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 HxWx3 -> the network's input: resized to ``size``, float32 1x3xHxW in [0, 1].

    The one preprocessing of inference: prediction, calibration and benchmarks all use it.
    """
    x = resize_rgb(rgb, size).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def rgb_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 (or NxHxWx3) -> float32 (N)x3xHxW in [0, 1]: what every model is fed."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).float().div_(255.0)
    return t.movedim(-1, -3).contiguous()


class TorchDepthDataset(torch.utils.data.Dataset):
    """Training/evaluation view of a dataset: tensors at the network's size.

    Item ``i`` is ``(image float32 3xHxW in [0,1], depth float32 1x(H/2)x(W/2) metres)``.
    Augmentation randomness comes from ``(seed, epoch, i)`` only, so results do not depend on
    the number of workers and a resumed run sees the same batches; call ``set_epoch`` per epoch.
    """

    def __init__(
        self,
        dataset: Sequence[Sample],
        input_size: tuple[int, int] = (480, 640),
        train: bool = True,
        seed: int = 0,
        augment_fn: Callable[..., Sample] = augment,
    ) -> None:
        from densedepth.model import check_input_size

        check_input_size(*input_size)
        self.dataset = dataset
        self.input_size = input_size
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.augment_fn = augment_fn

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rgb, depth = self.dataset[index]
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            rgb, depth = self.augment_fn(rgb, depth, rng)
        rgb, depth = to_network_pair(rgb, depth, self.input_size)
        return rgb_to_tensor(rgb), torch.from_numpy(np.ascontiguousarray(depth))[None]
