"""Activation ranges for INT8, computed once per (model, calibration set, method) and cached.

ONNX Runtime's calibrators collect the statistics: min/max (``minmax``), or a histogram of |x|
per tensor (``percentile``, ``entropy``); this module turns them into ranges:

- ``minmax``: the observed range.
- ``percentile``: the 99.999th percentile of |x| (ONNX Runtime's percentile calibrator).
- ``entropy``: TensorRT's entropy calibration: over a 2048-bin histogram of |x|, the threshold
  whose 128-level quantization loses the least information (KL divergence), computed here.
  ONNX Runtime's own entropy calibrator, as ``quantize_static`` drives it, uses 128 bins for 128
  levels: one candidate threshold, so its "entropy" ranges are the min/max ranges.

The ranges are ONNX Runtime's ``TensorsData`` JSON (``save_tensors_data``): ``quantize_static``
reads them back through ``calibration_cache_path``, so every INT8 flavour quantizes from one
calibration. Images go through ONNX Runtime in chunks, so memory does not grow with their number.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from calib.calibration import CalibrationSet, OrtCalibrationReader
from densedepth.outputs import atomic_path, scratch_beside
from densedepth.progress import progress

HISTOGRAM_BINS = 2048  # TensorRT's entropy calibrator
QUANTIZED_LEVELS = 128  # int8 magnitudes 0..127
PERCENTILE = 99.999
CHUNK_IMAGES = 8  # images per ONNX Runtime pass when whole tensors are collected
RANGES_VERSION = 2  # part of every cache key: caches of an older algorithm are not reused


def _xlogx(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


def entropy_threshold(
    hist: np.ndarray, edges: np.ndarray, levels: int = QUANTIZED_LEVELS
) -> tuple[float, np.ndarray]:
    """TensorRT's entropy threshold of a histogram of |x|: (threshold, divergence per candidate).

    Candidate ``i`` (``levels`` .. number of bins) keeps bins ``[0, i)``: the reference P is
    those bins with every count beyond them added to the last; the candidate Q merges them into
    ``levels`` groups (bin ``j`` in group ``j * levels // i``) and spreads each group's count
    evenly over its non-empty bins. The threshold is the upper edge of the candidate with the
    smallest KL(P || Q). A histogram with fewer bins than ``levels`` keeps its whole range.

    Every candidate at once, from prefix sums: group ``g`` of candidate ``i`` is bins
    ``ceil(g*i/levels) .. ceil((g+1)*i/levels) - 1``, and KL(P || Q) expands into sums of
    ``h log h`` and ``group total * log(group mean)`` (tests/test_trt_onnx.py checks it against
    the per-candidate formula).
    """
    h = np.asarray(hist, dtype=np.float64)
    n = h.size
    total = h.sum()
    if n <= levels or total == 0:
        return float(edges[-1]), np.zeros(0)
    mass = np.concatenate([[0.0], np.cumsum(h)])
    filled = np.concatenate([[0], np.cumsum(h > 0)])
    hlogh = np.concatenate([[0.0], np.cumsum(_xlogx(h))])
    i = np.arange(levels, n + 1)
    g = np.arange(levels + 1)
    bounds = (i[:, None] * g[None, :] + levels - 1) // levels  # ceil(g * i / levels)
    group_mass = mass[bounds[:, 1:]] - mass[bounds[:, :-1]]
    group_bins = filled[bounds[:, 1:]] - filled[bounds[:, :-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_mean = np.where(group_mass > 0, np.log(group_mass / np.maximum(group_bins, 1)), 0.0)
    last = h[i - 1]  # the last kept bin, in group levels - 1
    p_last = last + (total - mass[i])  # ... with every count beyond it
    p_log_q = (group_mass * log_mean).sum(axis=1) + np.where(last > 0, (p_last - last), 0.0) * (
        log_mean[:, -1]
    )
    p_log_p = hlogh[i - 1] + _xlogx(p_last)
    kept = mass[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = (p_log_p - total * np.log(total) - p_log_q + total * np.log(kept)) / total
    divergences = np.where((p_last > 0) & (last == 0) | (kept == 0), np.inf, kl)
    best = int(np.argmin(divergences)) + levels
    return float(edges[best]), divergences


def _chunks(calib: CalibrationSet, size: int) -> Iterator[CalibrationSet]:
    for start in range(0, len(calib), size):
        yield CalibrationSet(calib.images[start : start + size], calib.source)


def _quantizable_op_types() -> list[str]:
    """The op types ONNX Runtime quantizes in either format (their tensors get ranges)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def optimise_session(calibrator: Any) -> bool:
    """Run the calibrator's augmented model with all of ONNX Runtime's graph optimisations.

    ONNX Runtime's calibrators open it with every optimisation off (ORT_DISABLE_ALL). The
    optimisers keep every graph output, so every tensor still gets its range: min/max agree
    to float rounding (tested), and on x86 the blocked-layout convolutions make DenseNet169 at
    480x640 calibrate faster (README, "Calibration speed"). Used for minmax only: an entropy
    threshold is an argmin over histogram bins, and that rounding moved one of DenseNet121's
    by 0.3%, for no measured gain. Returns False, changing nothing, where this ONNX Runtime's
    calibrator does not have the attributes it replaces.
    """
    import onnxruntime as ort

    needed = ("augmented_model_path", "execution_providers", "infer_session")
    if not all(hasattr(calibrator, a) for a in needed):
        return False
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    calibrator.infer_session = ort.InferenceSession(
        calibrator.augmented_model_path, sess_options=opts, providers=calibrator.execution_providers
    )
    return True


def compute_ranges(
    model_path: str | Path,
    calib: CalibrationSet,
    method: str,
    input_name: str,
    scratch: str | Path | None = None,
    optimise: bool = True,
) -> Any:
    """Ranges (ONNX Runtime ``TensorsData``) of the quantizable tensors of ``model_path``
    (ONNX Runtime's augmented model goes in a scratch folder beside ``scratch``, default the
    model; ``optimise``: run it with graph optimisations (minmax), see ``optimise_session``)."""
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        TensorData,
        TensorsData,
        create_calibrator,
    )

    if method not in ("minmax", "percentile", "entropy"):
        raise ValueError(f"unknown calibration method {method!r}")
    histogram = method != "minmax"
    with scratch_beside(Path(scratch or model_path)) as tmp:
        calibrator = create_calibrator(
            Path(model_path),
            _quantizable_op_types(),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.Percentile
            if histogram
            else CalibrationMethod.MinMax,
            providers=["CPUExecutionProvider"],
            extra_options={"symmetric": True, "num_bins": HISTOGRAM_BINS, "percentile": PERCENTILE}
            if histogram
            else {},
        )
        if optimise and not histogram:  # see optimise_session: minmax only
            optimise_session(calibrator)
        chunk = CHUNK_IMAGES if histogram else len(calib)
        with progress(f"calibration ranges ({method})", len(calib)) as advance:
            for part in _chunks(calib, chunk):
                calibrator.collect_data(OrtCalibrationReader(part, input_name, on_batch=advance))
        ranges = calibrator.compute_data()
        if method != "entropy":
            return ranges
        result = {}
        for name, (hist, edges, lowest, highest) in calibrator.collector.histogram_dict.items():
            threshold, _ = entropy_threshold(hist, edges)
            dtype = np.asarray(edges).dtype
            result[name] = TensorData(
                lowest=np.array(max(-threshold, float(lowest)), dtype=dtype),
                highest=np.array(min(threshold, float(highest)), dtype=dtype),
            )
        return TensorsData(CalibrationMethod.Entropy, result)


def ranges_cache(
    model_path: str | Path,
    calib: CalibrationSet,
    method: str,
    input_name: str,
    cache: Path,
) -> bool:
    """Make sure ``cache`` holds the ranges of ``model_path`` on ``calib`` by ``method``;
    returns True when an existing cache was reused (the caller keys its name)."""
    from onnxruntime.quantization.calibrate import save_tensors_data

    if cache.is_file():
        return True
    ranges = compute_ranges(model_path, calib, method, input_name, scratch=cache)
    with atomic_path(cache) as tmp:  # a killed run never leaves a half cache to be reused
        save_tensors_data(ranges, tmp)
    return False
