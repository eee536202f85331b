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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calib.calibration import CalibrationSet
from densedepth.util.errors import DenseDepthError
from densedepth.util.onnx_io import fixed_batch
from densedepth.util.outputs import artifact_path, reusable_cache, scratch_beside
from densedepth.util.progress import progress

HISTOGRAM_BINS = 2048  # TensorRT's entropy calibrator
QUANTIZED_LEVELS = 128  # int8 magnitudes 0..127
PERCENTILE = 99.999
BATCH_BYTES = 1 << 30  # a batch's tensors stay under this when the model takes any batch
MAX_BATCH = 8
CHUNK_VALUES = 1 << 16  # values per bincount pass: the chunk and its indices stay in cache
RANGES_VERSION = 3  # part of every cache key: caches of an older algorithm are not reused


class CalibrationError(DenseDepthError):
    """The model's activations cannot be calibrated (not finite)."""


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


def percentile_threshold(hist: np.ndarray, edges: np.ndarray, percentile: float) -> float:
    """ONNX Runtime's symmetric percentile threshold: the lower edge of the bin where the
    cumulative share of |x| reaches ``percentile`` %."""
    cdf = np.cumsum(hist / hist.sum())
    return float(edges[np.searchsorted(cdf, percentile / 100.0)])


@dataclass
class AbsHistogram:
    """Running range and histogram of |x| of one tensor over batches (see the module doc)."""

    bins: int = HISTOGRAM_BINS
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    width: float = 0.0  # 0 until a batch with a non-zero value sets it
    lowest: float = np.inf
    highest: float = -np.inf

    @property
    def edges(self) -> np.ndarray:
        """Bin edges, ``len(counts) + 1`` of them, from 0 (float32, as ONNX Runtime's)."""
        if self.width == 0.0:
            return np.zeros(len(self.counts) + 1, np.float32)
        return (np.arange(len(self.counts) + 1) * self.width).astype(np.float32)

    def add(self, values: np.ndarray, histogram: bool = True) -> None:
        """Add a batch of values: the range always, the histogram unless ``histogram`` is False."""
        if values.size == 0:
            return
        lo, hi = float(values.min()), float(values.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError("not finite")
        self.lowest, self.highest = min(self.lowest, lo), max(self.highest, hi)
        if histogram:
            self._fill(values.reshape(-1), max(hi, -lo))

    def _fill(self, flat: np.ndarray, top: float) -> None:
        if self.width == 0.0:
            if top == 0.0:  # all zero so far: one bin until a non-zero value sets the width
                self.counts = np.array([self.counts.sum() + flat.size], np.int64)
                return
            zeros = self.counts.sum()
            self.width = top / self.bins
            self.counts = np.zeros(self.bins, np.int64)
            self.counts[0] = zeros
        if top > len(self.counts) * self.width:  # extend: the same width, more bins
            extra = int(np.ceil(top / self.width)) - len(self.counts)
            self.counts = np.concatenate([self.counts, np.zeros(max(extra, 1), np.int64)])
        n = len(self.counts)
        scale = np.float32(1.0 / self.width)
        buf = np.empty(min(CHUNK_VALUES, flat.size), np.float32)
        index = np.empty(buf.size, np.intp)
        for start in range(0, flat.size, CHUNK_VALUES):
            part = flat[start : start + CHUNK_VALUES]
            f, i = buf[: part.size], index[: part.size]
            np.abs(part, out=f)
            np.multiply(f, scale, out=f)
            np.minimum(f, n - 1, out=f)  # the top edge belongs to the last bin
            i[:] = f  # truncation: floor of a non-negative value
            self.counts += np.bincount(i, minlength=n)


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
