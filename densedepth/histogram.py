"""Histograms of |x| and the thresholds INT8 calibration reads from them (numpy only).

``AbsHistogram``: fixed-width bins from 0, the width set by the first batch (2048 bins up to
its largest |x|), bins appended when a later batch goes beyond, as ONNX Runtime's and
pytorch-quantization's histogram calibrators do; filled in cache-sized chunks with
``np.bincount``. ``entropy_threshold`` is TensorRT's entropy calibration (KL divergence over
128 levels), ``percentile_threshold`` ONNX Runtime's percentile. Used by ``calib.ranges`` (the
ONNX writers' ranges) and ``densedepth.fake_quant`` (QAT's ranges), so both read the same
thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HISTOGRAM_BINS = 2048  # TensorRT's entropy calibrator
QUANTIZED_LEVELS = 128  # int8 magnitudes 0..127
PERCENTILE = 99.999
CHUNK_VALUES = 1 << 16  # values per bincount pass: the chunk and its indices stay in cache


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
