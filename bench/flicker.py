"""Temporal stability of depth on live video: how much the depth of a still scene flickers.

For each pair of consecutive frames, the pixels whose image barely changed (the grey level of
the network input, area-averaged to the depth map's size, moved by less than ``threshold`` on
[0, 1]: still background, not the moving object or a panning view) are compared: the relative
depth change ``|d_t - d_{t-1}| / d_{t-1}``. Reported over the whole run: its median and p90
(from a histogram of 1e-4 wide bins up to 1, so to within 1e-4; changes beyond 1 count in the
last bin), the share of pixels that were still, and the frame pairs compared. 0 on a repeated
frame (a deterministic runner gives the same depth); with per-frame multiplicative noise
``d (1 + sigma e)``, ``e ~ N(0, 1)``, the change is ``sigma |e_t - e_{t-1}|`` to first order:
median ``0.6745 sqrt(2) sigma``, p90 ``1.6449 sqrt(2) sigma`` (tests/test_flicker.py).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

STILL_THRESHOLD = 0.04  # grey-level change on [0, 1] below which a pixel is still
BIN_WIDTH = 1e-4
BINS = 10_000  # relative changes 0 .. 1; beyond counts in the last bin


class FlickerMeter:
    """Feed ``update(x, depth)`` every frame (network input NCHW RGB [0,1], depth N1hw or hw
    metres); ``result()`` gives the run's flicker figures."""

    def __init__(self, threshold: float = STILL_THRESHOLD) -> None:
        if not threshold > 0:
            raise ValueError(f"still threshold must be positive, got {threshold}")
        self.threshold = float(threshold)
        self.counts = np.zeros(BINS, dtype=np.int64)  # changes > 0
        self.zeros = 0  # changes exactly 0 (the same depth)
        self.pairs = 0
        self.still = 0
        self.pixels = 0
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def update(self, x: np.ndarray, depth: np.ndarray) -> None:
        """One frame: its still pixels against the previous frame's go into the histogram."""
        d = np.asarray(depth, np.float32).reshape(np.shape(depth)[-2:])
        rgb = np.asarray(x, np.float32).reshape(3, *np.shape(x)[-2:])
        grey = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
        if grey.shape != d.shape:
            grey = cv2.resize(grey, (d.shape[1], d.shape[0]), interpolation=cv2.INTER_AREA)
        if self._prev is not None:
            prev_grey, prev_d = self._prev
            still = (np.abs(grey - prev_grey) < self.threshold) & (prev_d > 0) & np.isfinite(d)
            change = np.abs(d[still] - prev_d[still]) / prev_d[still]
            moved = change[change > 0]
            self.zeros += change.size - moved.size
            index = np.minimum((moved / BIN_WIDTH).astype(np.int64), BINS - 1)
            self.counts += np.bincount(index, minlength=BINS)
            self.pairs += 1
            self.still += int(still.sum())
            self.pixels += still.size
        self._prev = (grey, d.copy())

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of the relative changes (linear within a bin), None if none."""
        total = int(self.counts.sum()) + self.zeros
        if total == 0:
            return None
        target = q * total - self.zeros
        if target <= 0:
            return 0.0
        cum = np.cumsum(self.counts)
        i = min(int(np.searchsorted(cum, target, side="left")), BINS - 1)
        before = cum[i - 1] if i > 0 else 0
        inside = (target - before) / self.counts[i] if self.counts[i] else 0.0
        return float((i + inside) * BIN_WIDTH)

    def result(self) -> dict[str, Any]:
        """``median``, ``p90`` (relative change, None without a still pixel), ``still_share``,
        ``pairs`` and the ``threshold``."""
        return {
            "median": self.quantile(0.5),
            "p90": self.quantile(0.9),
            "still_share": self.still / self.pixels if self.pixels else None,
            "pairs": self.pairs,
            "threshold": self.threshold,
        }
