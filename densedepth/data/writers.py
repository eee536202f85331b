"""Writers of the NYU dataset layouts ``densedepth.data.readers`` reads, byte for byte the real
formats, so every reader is tested on real-format files; ``write_synthetic`` fills them with
rendered scenes (``cli.py synth``)."""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from densedepth.data.readers import (
    DATASET_LAYOUTS,
    EIGEN_FILES,
    KITTI_DEPTH_SCALE,
    KITTI_GT_DIR,
    KITTI_LIST,
    LABELED_MAT,
    NYU8_MAX_DEPTH,
    NYU_TEST_CSV,
    NYU_TRAIN_CSV,
    SPLITS_MAT,
    Sample,
    SyntheticDataset,
)
from densedepth.metrics import EIGEN_CROP
from densedepth.util.errors import DataError
from densedepth.util.outputs import atomic_path, write_text_atomic


def encode_png(array: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """uint8 RGB, uint8 gray or uint16 gray array -> PNG bytes (``text``: tEXt chunks)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", pnginfo=info)
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


KITTI_DATE = "2011_09_26"
KITTI_INTRINSICS_FX = "721.5377"  # the focal length column of the split files
KITTI_FRAMES_PER_DRIVE = 4
KITTI_FIRST_FRAME = 5  # the annotated ground truth starts 5 frames into a drive


def depth_to_kitti16(depth: np.ndarray) -> np.ndarray:
    """Metres -> KITTI's uint16 (value = depth x 256, rounded; 0 kept as no measurement)."""
    return np.clip(np.rint(depth * KITTI_DEPTH_SCALE), 0, 65535).astype(np.uint16)


def write_kitti(
    out: str | os.PathLike[str],
    n_train: int,
    n_test: int,
    seed: int = 0,
    height: int = 375,
    width: int = 1242,
) -> Path:
    """Synthetic street frames (``densedepth.data.synthetic_street``) in KITTI's layout under
    ``out``: raw colour PNGs, the annotated sparse ground truth in ``data_depth_annotated/
    {train,val}`` (test frames in val), the BTS-style split files, the test list ending
    with one frame that has no ground truth (``None``), as the real Eigen test list has 45,
    and the date's ``calib_cam_to_cam.txt`` holding the camera the frames were rendered by."""
    from densedepth.camera import Intrinsics, kitti_calib_text
    from densedepth.data.synthetic_street import kitti_intrinsics, lidar_ground_truth, render_street

    out = Path(out)
    lists: dict[str, list[str]] = {"train": [], "test": []}
    drive = 0
    for split, n, gt_split, base_seed in (("train", n_train, "train", seed),
                                           ("test", n_test, "val", seed + 1)):  # fmt: skip
        for k in range(n + (split == "test")):
            if k % KITTI_FRAMES_PER_DRIVE == 0:
                drive += 1
            name = f"{KITTI_DATE}_drive_{drive:04d}_sync"
            frame = f"{KITTI_FIRST_FRAME + k % KITTI_FRAMES_PER_DRIVE:010d}.png"
            scene = base_seed * 1_000_003 + drive
            rgb, depth = render_street(scene, k % KITTI_FRAMES_PER_DRIVE, height, width)
            rgb_rel = f"{KITTI_DATE}/{name}/image_02/data/{frame}"
            with atomic_path(out / rgb_rel) as tmp:
                tmp.write_bytes(encode_png(rgb))
            if k == n:  # the extra test frame: colour only, as a 'None' line
                lists[split].append(f"{rgb_rel} None {KITTI_INTRINSICS_FX}")
                continue
            gt_rel = f"{name}/proj_depth/groundtruth/image_02/{frame}"
            sparse = lidar_ground_truth(depth, scene * 31 + k)
            with atomic_path(out / KITTI_GT_DIR / gt_split / gt_rel) as tmp:
                tmp.write_bytes(encode_png(depth_to_kitti16(sparse)))
            lists[split].append(f"{rgb_rel} {gt_rel} {KITTI_INTRINSICS_FX}")
    for split, lines in lists.items():
        if lines:
            write_text_atomic(out / KITTI_LIST.format(split=split), "\n".join(lines) + "\n")
    intr = Intrinsics(*kitti_intrinsics(height, width), width, height)  # what was rendered
    write_text_atomic(out / KITTI_DATE / "calib_cam_to_cam.txt", kitti_calib_text(intr))
    return out


def write_synthetic(
    out: str | os.PathLike[str],
    fmt: str,
    n_train: int = 16,
    n_test: int = 8,
    seed: int = 0,
    height: int = 480,
    width: int = 640,
) -> Path:
    """Render synthetic scenes and write them in layout ``fmt`` (one of ``DATASET_LAYOUTS``)
    under ``out``.

    Train scenes use ``seed``, test scenes ``seed + 1``, so the two never share a scene.
    """
    if fmt not in DATASET_LAYOUTS:
        raise DataError(f"unknown format {fmt!r}; choose one of: {', '.join(DATASET_LAYOUTS)}")
    out = Path(out)
    train = SyntheticDataset(n_train, seed, height, width) if n_train else []
    test = SyntheticDataset(n_test, seed + 1, height, width)
    if fmt == "nyu-data-zip":
        return write_nyu_data_zip(out / "nyu_data.zip", list(train), list(test))
    if fmt == "nyu-test-zip":
        crop = EIGEN_CROP if (height, width) == (480, 640) else (0, height - 1, 0, width - 1)
        return write_nyu_test_zip(out / "nyu_test.zip", list(test), crop)
    if fmt == "kitti":
        return write_kitti(out, n_train, n_test, seed, height, width)
    if fmt == "labeled-mat":
        samples = list(train) + list(test)
        idx = np.arange(len(samples))
        return write_labeled_mat(out / LABELED_MAT, samples, idx[:n_train], idx[n_train:])
    write_pairs(out / "train", train)
    write_pairs(out / "test", test)
    return out
