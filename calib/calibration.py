"""Calibration sets for INT8: chosen across scenes, preprocessed exactly as inference is.

One ``CalibrationSet`` (images at the network's input size, float32 NCHW in [0, 1], and a hash
of those bytes) feeds every quantizer: ONNX Runtime's ranges (``calib.ranges`` runs ONNX
Runtime's augmented model on the images itself; ``quantize_static`` reads the cached ranges and
is given no data reader), ModelOpt (``export.quantize``: the images as one array) and, for
TensorRT < 10.1, ``export.tensorrt``'s entropy calibrator (``CalibrationSet.batches``). Caches are
keyed by (ONNX hash, calibration set hash, input shape, method), so a cache made for something
else is never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.data.preprocess import rgb_to_input
from densedepth.data.readers import decode_rgb, open_dataset
from densedepth.util.errors import DataError
from densedepth.util.files import IMAGE_SUFFIXES, image_files
from densedepth.util.progress import progress

DEFAULT_IMAGES = 500  # TensorRT / Ultralytics practice
WARN_BELOW = 300


class CalibrationWarning(UserWarning):
    """Fewer calibration images than recommended."""


@dataclass
class CalibrationSet:
    """Preprocessed calibration images and where they came from."""

    images: np.ndarray  # (N, 3, H, W) float32 in [0, 1]
    source: str
    names: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the images."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def sha256(self) -> str:
        """Hash of the preprocessed bytes (what the quantizer sees) and their shape."""
        h = hashlib.sha256(str(self.images.shape).encode())
        h.update(np.ascontiguousarray(self.images).tobytes())
        return h.hexdigest()

    def batches(self, batch_size: int = 1) -> Iterator[np.ndarray]:
        """Full batches only (the last partial batch is dropped, as calibrators expect)."""
        for i in range(0, len(self.images) - batch_size + 1, batch_size):
            yield self.images[i : i + batch_size]

    def __len__(self) -> int:
        return len(self.images)


def spread_indices(groups: Sequence[str], n: int) -> list[int]:
    """``n`` indices taking scenes in turn (round robin over groups, evenly inside each).

    NYU frames come in long runs of the same scene; taking every k-th frame would favour the
    long scenes, so each scene contributes in turn until ``n`` are chosen.
    """
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    queues = []
    for members in by_group.values():  # evenly spaced order inside each scene
        order = np.argsort(np.abs(np.arange(len(members)) - (len(members) - 1) / 2))
        queues.append([members[j] for j in order])
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(n, len(groups)):
        for q in queues:
            if depth < len(q) and len(chosen) < n:
                chosen.append(q[depth])
        depth += 1
    return sorted(chosen)


def even_indices(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(total)``."""
    if n >= total:
        return list(range(total))
    return sorted({int(v) for v in np.rint(np.linspace(0, total - 1, n))})


def load_calibration_set(
    source: str | os.PathLike[str],
    input_size: tuple[int, int],
    n: int = DEFAULT_IMAGES,
    batch_size: int = 1,
    split: str = "train",
    exclude: Sequence[int] = (),
    **dataset_kwargs: Any,
) -> CalibrationSet:
    """``n`` calibration images from a dataset (any ``open_dataset`` format or 'synthetic') or
    a folder of RGB images; unreadable images are skipped and counted. ``exclude``: indices
    of the dataset never to take (the held-out images an INT8 build is judged on).

    Warns below 300 images; refuses fewer than one batch.
    """
    path = Path(source)
    if str(source) != "synthetic" and path.is_dir() and _is_image_folder(path):
        images, names, skipped = _from_image_folder(path, input_size, n)
    else:
        images, names, skipped = _from_dataset(source, input_size, n, split, dataset_kwargs,
                                               set(exclude))  # fmt: skip
    kept = len(images)
    if kept < batch_size or kept == 0:
        detail = f" ({len(skipped)} unreadable skipped)" if skipped else ""
        raise DataError(
            f"calibration needs at least one batch ({batch_size} image{'s' * (batch_size > 1)}) "
            f"but {source} gave "
            f"{kept}{detail}; point --calib at more images"
        )
    if kept < WARN_BELOW:
        warnings.warn(
            f"calibrating on {kept} images (fewer than {WARN_BELOW}); INT8 ranges may be "
            f"poorly estimated, {DEFAULT_IMAGES} is the usual choice",
            CalibrationWarning,
            stacklevel=2,
        )
    batch = np.concatenate(images).astype(np.float32)
    return CalibrationSet(batch, str(source), names, skipped)


def _is_image_folder(path: Path) -> bool:
    names = [p.name for p in path.iterdir()]
    has_pairs = any(n.endswith("_depth.png") for n in names)
    return not has_pairs and any(Path(n).suffix.lower() in IMAGE_SUFFIXES for n in names)


def _from_image_folder(
    path: Path, size: tuple[int, int], n: int
) -> tuple[list[np.ndarray], list[str], list[str]]:
    files = image_files(path)
    images, names, skipped = [], [], []
    chosen = [files[i] for i in even_indices(len(files), n)]
    with progress("reading calibration images", len(chosen)) as advance:
        for f in chosen:
            advance(1)
            try:
                rgb = decode_rgb(f.read_bytes(), str(f))
            except (DataError, OSError):
                skipped.append(f.name)
                continue
            images.append(rgb_to_input(rgb, size))
            names.append(f.name)
    return images, names, skipped


def _from_dataset(
    source: str | os.PathLike[str],
    size: tuple[int, int],
    n: int,
    split: str,
    kwargs: dict[str, Any],
    exclude: set[int] | None = None,
) -> tuple[list[np.ndarray], list[str], list[str]]:
    dataset = open_dataset(source, split, **kwargs)
    allowed = [i for i in range(len(dataset)) if i not in (exclude or set())]
    scene = getattr(dataset, "scene", None)
    if callable(scene):
        picked = spread_indices([scene(i) for i in allowed], n)
    else:
        picked = even_indices(len(allowed), n)
    indices = [allowed[k] for k in picked]
    images, names, skipped = [], [], []
    with progress("reading calibration images", len(indices)) as advance:
        for i in indices:
            advance(1)
            try:
                rgb, _ = dataset[i]
            except DataError:
                skipped.append(str(i))
                continue
            images.append(rgb_to_input(rgb, size))
            names.append(str(i))
    return images, names, skipped


def cache_key(onnx_sha256: str, calib: CalibrationSet, method: str, **extra: Any) -> str:
    """Key of a calibration cache: model, calibration images, input shape and method."""
    fields = {
        "onnx": onnx_sha256,
        "calibration_set": calib.sha256,
        "input_shape": list(calib.images.shape[1:]),
        "method": method,
        **extra,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
