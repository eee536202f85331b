"""Depth maps for image files: 16-bit PNG in millimetres plus a jet-coloured PNG per image."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from densedepth.camera import (
    CameraPlan,
    backproject,
    camera_fields,
    plan_camera,
    write_ply,
)
from densedepth.data.preprocess import rgb_to_input
from densedepth.data.readers import decode_rgb
from densedepth.data.writers import depth_to_mm16, encode_png
from densedepth.metrics import upsample2x
from densedepth.util.errors import DataError, missing_reason
from densedepth.util.files import image_files
from densedepth.util.outputs import atomic_path, write_text_atomic
from densedepth.util.progress import progress
from densedepth.viz import colorize
from engines.base import Runner


def list_images(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand folders into their images (sorted); files are kept as given."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += image_files(p)
        elif p.is_file():
            found.append(p)
        else:
            raise DataError(f"input {p} {missing_reason(p)}")
    if not found:
        raise DataError("no images found in the inputs; pass image files or folders of them")
    unique = {os.path.realpath(p): p for p in reversed(found)}  # an image given twice: once
    return [p for p in found if unique[os.path.realpath(p)] is p]


def output_stems(paths: list[Path]) -> list[str]:
    """A distinct output name per image: its stem, or where stems clash, its path below the
    clashing images' common folder, parts joined by ``__`` and the extension kept
    (``a/img.png``, ``b/img.png`` -> ``a__img_png``, ``b__img_png``)."""
    counts = Counter(p.stem for p in paths)
    clashing = [Path(os.path.realpath(p)) for p in paths if counts[p.stem] > 1]
    root = Path(os.path.commonpath(clashing)) if clashing else Path()
    names = []
    for p in paths:
        if counts[p.stem] == 1:
            names.append(p.stem)
            continue
        rel = Path(os.path.realpath(p)).relative_to(root)
        names.append("__".join([*rel.parts[:-1], f"{rel.stem}_{rel.suffix.lstrip('.')}"]))
    seen: Counter[str] = Counter()
    for i, name in enumerate(names):  # a stem that happens to equal a made-up name
        seen[name] += 1
        if seen[name] > 1:
            names[i] = f"{name}-{seen[name]}"
    return names


def predict_image(runner: Runner, rgb: np.ndarray, flip: bool = True) -> np.ndarray:
    """Metres at the image's own resolution, preprocessed exactly as evaluation does.

    The image is resized to the runner's input, predicted (averaged with the mirrored
    prediction when ``flip``), upsampled 2x, resized back to the image size and clamped.
    """
    _, _, h, w = runner.input_shape
    x = rgb_to_input(rgb, (h, w))
    pred = np.asarray(runner(x), dtype=np.float32).reshape(h // 2, w // 2)
    if flip:
        mirrored = np.asarray(runner(np.ascontiguousarray(x[..., ::-1])), np.float32)
        pred = 0.5 * (pred + mirrored.reshape(h // 2, w // 2)[:, ::-1])
    full = upsample2x(pred)
    if full.shape != rgb.shape[:2]:
        full = cv2.resize(full, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    lo, hi = runner.info.depth_range
    return np.clip(full, lo, hi).astype(np.float32)


def predict_files(
    runner: Runner,
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    flip: bool = True,
    vrange: tuple[float, float] | None = None,
    camera: CameraPlan | None = None,
    pointcloud_stride: int = 0,
    warn: Callable[[str], None] = lambda s: None,
) -> list[tuple[Path, ...]]:
    """Write ``NAME_depth.png`` (uint16 mm) and ``NAME_depth_jet.png`` for every input image
    (``output_stems`` keeps the names distinct); with ``pointcloud_stride`` K > 0 also
    ``NAME.ply`` of every K-th pixel. ``camera`` (default: the model's training camera, no
    correction) scales the depth by ``--focal-scale`` and gives the point clouds their
    intrinsics; what was used is recorded in ``camera.json`` and in every file."""
    out = Path(out_dir)
    plan = camera or plan_camera(runner.info.camera, None, "none", need=pointcloud_stride > 0)
    written, records, warned = [], {}, False
    images = list_images(inputs)
    with progress("predicting", len(images)) as advance:
        for path, name in zip(images, output_stems(images), strict=True):
            files, record = _predict_one(runner, path, out / name, flip, vrange, plan,
                                         pointcloud_stride)  # fmt: skip
            line = plan.warning(record["focal_ratio"])
            if line and not warned:
                warn(line)
                warned = True
            written.append(files)
            records[name] = record
            advance(1)
    if camera is not None or pointcloud_stride:
        body = {**plan.record(), "pointcloud_stride": pointcloud_stride, "images": records}
        write_text_atomic(out / "camera.json", json.dumps(body, indent=2) + "\n")
    return written


def _predict_one(
    runner: Runner,
    path: Path,
    stem: Path,
    flip: bool,
    vrange: tuple[float, float] | None,
    plan: CameraPlan,
    stride: int,
) -> tuple[tuple[Path, ...], dict]:
    """Predict one image file; write ``STEM_depth.png``, ``STEM_depth_jet.png`` and with a
    ``stride`` ``STEM.ply``; the files and what the image's camera record holds."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    rgb = decode_rgb(data, str(path))
    raw = predict_image(runner, rgb, flip=flip)
    lo, hi = runner.info.depth_range
    measured = (raw > lo) & (raw < hi)  # clamped pixels are not measurements
    image = plan.for_image(rgb.shape[1], rgb.shape[0])
    depth = raw * np.float32(image.applied)
    record = image.record()
    text = camera_fields(plan, image)
    lo_v, hi_v = vrange or (float(depth.min()), float(max(depth.max(), depth.min() + 1e-3)))
    pair = (stem.with_name(f"{stem.name}_depth.png"), stem.with_name(f"{stem.name}_depth_jet.png"))
    for target, array in zip(
        pair, (depth_to_mm16(depth), colorize(depth, lo_v, hi_v)), strict=True
    ):
        with atomic_path(target) as tmp:
            tmp.write_bytes(encode_png(array, text))
    if not stride:
        return pair, record
    assert image.intrinsics is not None  # plan_camera(need=True) made sure
    points, colours = backproject(depth, image.intrinsics, rgb, stride, measured)
    ply = write_ply(stem.with_name(f"{stem.name}.ply"), points, colours,
                    [f"{k} {v}" for k, v in text.items()])  # fmt: skip
    record["points"] = len(points)
    return (*pair, ply), record
