"""Evaluate any predictor on any dataset with the Eigen protocol (``densedepth.metrics``).

A predictor is any callable mapping an RGB batch (N,3,H,W float32 in [0,1]) to metres at half
resolution: a model closure, or any runner of ``engines``. Images are brought to the
predictor's input size first (area resampling); ground truth too (nearest neighbour where it
has holes), so metrics are computed at the input resolution. The Eigen crop applies when the
dataset carries one and the input is 480x640 (NYU's own resolution).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from densedepth.data import EIGEN_CROP, Sample, resize_depth, resize_rgb
from densedepth.metrics import eigen_evaluate

Predictor = Callable[[np.ndarray], np.ndarray]
NYU_SIZE = (480, 640)


def evaluation_arrays(
    dataset: Sequence[Sample], input_size: tuple[int, int], limit: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int] | None]:
    """The first ``limit`` samples (0 = all) at ``input_size``, and the crop that applies."""
    n = len(dataset) if limit <= 0 else min(limit, len(dataset))
    size = tuple(int(s) for s in input_size)
    rgb = np.empty((n, *size, 3), np.uint8)
    depth = np.empty((n, *size), np.float32)
    for i in range(n):
        r, d = dataset[i]
        rgb[i] = resize_rgb(r, size)
        depth[i] = resize_depth(d, size)
    crop = getattr(dataset, "crop", None)
    if size != NYU_SIZE:
        crop = None
    elif crop is not None:
        crop = tuple(crop)
    return rgb, depth, crop


def evaluate_dataset(
    predict: Predictor,
    dataset: Sequence[Sample],
    input_size: tuple[int, int],
    protocol: str = "eigen",
    limit: int = 0,
    batch_size: int | None = None,
) -> dict[str, float]:
    """Metrics of ``predict`` on ``dataset`` (see the module docstring)."""
    rgb, depth, crop = evaluation_arrays(dataset, input_size, limit)
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    return eigen_evaluate(predict, rgb, depth, crop=crop, protocol=protocol, **kwargs)


__all__ = ["EIGEN_CROP", "evaluate_dataset", "evaluation_arrays"]
