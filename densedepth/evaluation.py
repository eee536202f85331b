"""Evaluate any predictor on any dataset with the Eigen protocol (``densedepth.metrics``).

A predictor is any callable mapping an RGB batch (N,3,H,W float32 in [0,1]) to metres at half
resolution: a model closure, or any runner of ``engines``. Images are brought to the
predictor's input size (area resampling); the ground truth keeps its own resolution: the
prediction is upsampled to it, so a model run at 288x384 is scored on the same 480x640 pixels
as one run at 480x640, as the literature does. The Eigen crop applies when the dataset carries
one and its ground truth is NYU's 480x640.

Under the ``densedepth`` protocol the network's raw output is converted as the authors' code
did (``densedepth.depth.authors_target_to_depth``: invert, then clip) wherever the predictor
offers it (``predict_target``: checkpoints, our float ONNX files); a graph that converts
inside (INT8 ONNX, OpenVINO, TensorRT) is scored as is, and the result says which
(``depth_conversion``; ``conversion_note`` is the line to print).

The result also gives delta1 and rel per range of ground-truth depth (``by_range``; NYU 0-2,
2-5, 5-10 m, KITTI 0-10, 10-20, 20-40, 40-80 m: ``densedepth.metrics.protocol_ranges``), since
quantization error grows with distance and one pooled number can hide a far-range collapse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from densedepth.data.preprocess import resize_rgb
from densedepth.data.readers import Sample
from densedepth.depth import authors_target_to_depth
from densedepth.metrics import EIGEN_CROP, eigen_evaluate, protocol_ranges
from densedepth.util.progress import progress

Predictor = Callable[[np.ndarray], np.ndarray]
NYU_SIZE = (480, 640)
PROTOCOL_OF = {"nyu": "eigen", "kitti": "kitti-garg"}  # the default protocol per depth kind


def protocol_for(dataset: Sequence[Sample], protocol: str = "auto") -> str:
    """``protocol``, or for ``"auto"`` the one the data calls for: KITTI's Garg-crop protocol
    on KITTI data (80 m street depth), NYU's Eigen protocol otherwise."""
    if protocol != "auto":
        return protocol
    return PROTOCOL_OF[getattr(dataset, "depth_kind", "nyu")]


def evaluation_arrays(
    dataset: Sequence[Sample], input_size: tuple[int, int], limit: int = 0
) -> tuple[np.ndarray, np.ndarray | list[np.ndarray], tuple[int, int, int, int] | None]:
    """The first ``limit`` samples (0 = all): RGB at ``input_size``, ground truth at its own
    resolution (one N x H x W array, or a list when sizes differ), and the crop that applies."""
    n = len(dataset) if limit <= 0 else min(limit, len(dataset))
    size = tuple(int(s) for s in input_size)
    rgb = np.empty((n, *size, 3), np.uint8)
    depths = []
    with progress("reading test images", n) as advance:
        for i in range(n):
            r, d = dataset[i]
            rgb[i] = resize_rgb(r, size)
            depths.append(np.asarray(d, np.float32))
            advance(1)
    shapes = {d.shape for d in depths}
    depth: np.ndarray | list[np.ndarray] = np.stack(depths) if len(shapes) == 1 else depths
    crop = getattr(dataset, "crop", None)
    if crop is not None and shapes == {NYU_SIZE}:
        return rgb, depth, tuple(crop)
    return rgb, depth, None


def evaluate_dataset(
    predict: Predictor,
    dataset: Sequence[Sample],
    input_size: tuple[int, int],
    protocol: str = "auto",
    limit: int = 0,
    batch_size: int | None = None,
    ranges: Sequence[Sequence[float]] | None = None,
) -> dict[str, Any]:
    """Metrics of ``predict`` on ``dataset`` under ``protocol`` (``"auto"``: ``protocol_for``;
    see the module docstring); the result names the protocol used.

    ``by_range``: one entry per range of ground-truth depth (``ranges`` in metres, None: the
    protocol's, ``protocol_ranges``), ``{"range_m": [low, high], "pixels", "images", "delta1",
    "rel"}``, pooled as the six metrics are (``densedepth.metrics.RangeSums``); an empty range
    has 0 pixels and None for its metrics.
    """
    rgb, depth, crop = evaluation_arrays(dataset, input_size, limit)
    kwargs: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    chosen = protocol_for(dataset, protocol)
    kwargs["ranges"] = protocol_ranges(chosen) if ranges is None else ranges
    extra = {}
    if chosen == "densedepth":
        predict, extra["depth_conversion"] = authors_predictor(predict)
    return {**eigen_evaluate(predict, rgb, depth, crop=crop, protocol=chosen, **kwargs), **extra}


AUTHORS = "authors (DepthNorm, then clip)"
CLAMP_FIRST = "clamp-first (inside the model's graph)"


def authors_predictor(predict: Predictor) -> tuple[Predictor, str]:
    """For the densedepth protocol: a predictor converting the network's raw output as the
    authors did (``authors_target_to_depth``) where ``predict`` offers it (``predict_target``
    and ``depth_norm``: checkpoints, our fp32/fp16 ONNX), else ``predict`` itself (a graph that
    converts inside, clamp first); and which conversion it is (``AUTHORS`` or
    ``CLAMP_FIRST``)."""
    target = getattr(predict, "predict_target", None)
    rng = getattr(predict, "depth_norm", None)
    if not callable(target) or rng is None:
        return predict, CLAMP_FIRST
    return (lambda x: authors_target_to_depth(np.asarray(target(x), np.float64), rng)), AUTHORS


def conversion_note(name: str) -> str:
    """The one line saying the densedepth protocol could not convert as the authors did."""
    return (
        f"{name} converts to metres inside its graph (clamp first), so --protocol densedepth "
        f"scores its output as is: where the network's output is < 0 it gives 10 m, the "
        f"authors' code 0.1 m; evaluate the .pt checkpoint or the float ONNX for the exact rule"
    )


__all__ = ["AUTHORS", "CLAMP_FIRST", "EIGEN_CROP", "PROTOCOL_OF", "authors_predictor",
           "conversion_note", "evaluate_dataset", "evaluation_arrays", "protocol_for"]  # fmt: skip
