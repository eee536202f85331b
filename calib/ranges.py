"""Activation ranges for INT8, computed once per (model, calibration set, method) and cached.

ONNX Runtime's calibrators pick the tensors (inputs and outputs of every op type it quantizes)
and write the augmented model: ReduceMin/ReduceMax of each (``minmax``) or each tensor whole
(histograms). This module runs it with every graph optimisation, on the fastest provider here,
in batches where the model allows, and reduces each tensor as it arrives:

- ``minmax``: the observed range (ONNX Runtime's MinMax calibrator's, tested).
- ``percentile``: the 99.999th percentile of |x|, as ONNX Runtime's percentile calibrator reads
  it from the histogram (tested against its code).
- ``entropy``: TensorRT's entropy calibration: over a 2048-bin histogram of |x|, the threshold
  whose 128-level quantization loses the least information (KL divergence), computed here.
  ONNX Runtime's own entropy calibrator, as ``quantize_static`` drives it, uses 128 bins for 128
  levels: one candidate threshold, so its "entropy" ranges are the min/max ranges.

The histograms are ``AbsHistogram``: fixed-width bins from 0, the width set by the first batch
(2048 bins up to its largest |x|) and bins appended when a later batch goes beyond, as ONNX
Runtime's and pytorch-quantization's histogram calibrators do; filled in cache-sized chunks
with ``np.bincount`` (ONNX Runtime's collector copies every tensor of every image into one
array and searches 2048 edges per value). The ranges are ONNX Runtime's ``TensorsData`` JSON
(``save_tensors_data``): ``quantize_static`` reads them back through ``calibration_cache_path``,
so every INT8 flavour quantizes from one calibration. Memory holds one batch's outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from calib.calibration import CalibrationSet
from densedepth.histogram import (  # (shared with QAT: below train and export)
    PERCENTILE,
    AbsHistogram,
    entropy_threshold,
    percentile_threshold,
)
from densedepth.util.errors import DenseDepthError
from densedepth.util.onnx_io import fixed_batch
from densedepth.util.outputs import artifact_path, reusable_cache, scratch_beside
from densedepth.util.progress import progress

BATCH_BYTES = 1 << 30  # a batch's tensors stay under this when the model takes any batch
MAX_BATCH = 8
RANGES_VERSION = 3  # part of every cache key: caches of an older algorithm are not reused


class CalibrationError(DenseDepthError):
    """The model's activations cannot be calibrated (not finite)."""


def calibration_providers() -> list[str]:
    """ONNX Runtime providers for calibration: CUDA when this ONNX Runtime has it, then CPU
    (TensorRT's provider is left out: it would build an engine for the augmented model)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def _quantizable_op_types() -> list[str]:
    """The op types ONNX Runtime quantizes in either format (their tensors get ranges)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def augment(model_path: Path, folder: Path, histogram: bool) -> tuple[Path, dict[str, list[str]]]:
    """ONNX Runtime's augmented model in ``folder`` and, per tensor to calibrate, the outputs
    that carry it: the tensor itself (``histogram``) or its ReduceMin and ReduceMax."""
    from onnxruntime.quantization.calibrate import HistogramCalibrater, MinMaxCalibrater

    path = folder / "augmented.onnx"
    if histogram:
        hist = HistogramCalibrater(model_path, _quantizable_op_types(), str(path), symmetric=True)
        hist.augment_graph()  # every tensor to calibrate becomes a graph output
        return path, {t: [t] for t in sorted(hist.tensors_to_calibrate)}
    minmax = MinMaxCalibrater(model_path, _quantizable_op_types(), str(path))
    tensors, _ = minmax.select_tensors_to_calibrate(minmax.model)  # before the reductions
    minmax.augment_graph()
    return path, {t: [f"{t}_ReduceMin", f"{t}_ReduceMax"] for t in sorted(tensors)}


def collect_statistics(
    augmented: Path,
    carriers: dict[str, list[str]],
    calib: CalibrationSet,
    input_name: str,
    histogram: bool,
) -> dict[str, AbsHistogram]:
    """Run the augmented model over ``calib`` and reduce each tensor's outputs (``carriers``,
    see ``augment``) as they arrive.

    Batches: the model's fixed batch, or (any batch) one image, then as many as keep a batch's
    outputs under ``BATCH_BYTES`` (at most ``MAX_BATCH``). On 2 CPU cores batches ran no faster
    per image than single images (docs/deployment.md, "Calibration speed"); on a GPU they do.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(augmented), opts, providers=calibration_providers())
    fixed = fixed_batch(session)
    if fixed is not None and len(calib) % fixed:
        raise CalibrationError(
            f"the model takes batches of {fixed} but there are {len(calib)} calibration images; "
            f"pass a multiple of {fixed} to --calib-images"
        )
    names = [name for outputs in carriers.values() for name in outputs]
    stats = {tensor: AbsHistogram() for tensor in carriers}
    size, done = fixed or 1, 0
    label = "histograms" if histogram else "minmax"
    with progress(f"calibration ranges ({label})", len(calib)) as advance:
        while done < len(calib):
            batch = calib.images[done : done + size]
            outputs = dict(zip(names, session.run(names, {input_name: batch}), strict=True))
            if fixed is None and done == 0:
                per_image = sum(o.nbytes for o in outputs.values())
                size = int(np.clip(BATCH_BYTES // max(per_image, 1), 1, MAX_BATCH))
            for tensor, carried in carriers.items():
                values = [outputs.pop(name) for name in carried]  # memory: one batch at most
                try:
                    stats[tensor].add(values[0] if histogram else np.concatenate(values), histogram)
                except ValueError:
                    raise CalibrationError(
                        f"tensor {tensor!r} is not finite on calibration images {done + 1}.."
                        f"{done + len(batch)}: the model produces NaN or inf; check its weights"
                    ) from None
            done += len(batch)
            advance(len(batch))
    return stats


def ranges_from_statistics(stats: dict[str, AbsHistogram], method: str) -> Any:
    """ONNX Runtime ``TensorsData`` of ``method`` from the collected statistics."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    kinds = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
             "entropy": CalibrationMethod.Entropy}  # fmt: skip
    result = {}
    for name, s in stats.items():
        lo, hi = (s.lowest, s.highest) if s.highest >= s.lowest else (0.0, 0.0)  # empty tensor
        if method == "percentile" and s.counts.size:
            threshold = percentile_threshold(s.counts, s.edges, PERCENTILE)
            lo, hi = max(-threshold, lo), min(threshold, hi)
        elif method == "entropy" and s.counts.size:
            threshold, _ = entropy_threshold(s.counts, s.edges)
            lo, hi = max(-threshold, lo), min(threshold, hi)
        result[name] = TensorData(lowest=np.float32(lo), highest=np.float32(hi))
    return TensorsData(kinds[method], result)


def compute_ranges(
    model_path: str | Path,
    calib: CalibrationSet,
    method: str,
    input_name: str,
    scratch: str | Path | None = None,
) -> Any:
    """Ranges (ONNX Runtime ``TensorsData``) of the quantizable tensors of ``model_path``;
    ONNX Runtime's augmented model goes in a scratch folder beside ``scratch`` (default the
    model) and is removed."""
    if method not in ("minmax", "percentile", "entropy"):
        raise ValueError(f"unknown calibration method {method!r}")
    histogram = method != "minmax"
    with scratch_beside(Path(scratch or model_path)) as tmp:
        augmented, carriers = augment(Path(model_path), Path(tmp), histogram)
        stats = collect_statistics(augmented, carriers, calib, input_name, histogram)
    return ranges_from_statistics(stats, method)


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

    if reusable_cache(cache):  # only a cache the toolkit wrote, unchanged since
        return True
    ranges = compute_ranges(model_path, calib, method, input_name, scratch=cache)
    with artifact_path(cache) as tmp:  # a killed run never leaves a half cache to be reused
        save_tensors_data(ranges, tmp)
    return False
