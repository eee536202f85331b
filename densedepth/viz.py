"""Depth pictures: matplotlib's jet colormap (near = blue, far = red) on a fixed metric range.

Maps drawn for one figure share one range (or one per row, when rows are different scenes), so
the same colour means the same distance everywhere it is compared. Missing depth (0) is black.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.depth import MAX_DEPTH, MIN_DEPTH
from densedepth.util.outputs import atomic_path


def colorize(
    depth: np.ndarray, vmin: float = MIN_DEPTH, vmax: float = MAX_DEPTH, cmap: str = "jet"
) -> np.ndarray:
    """Metres HxW -> uint8 HxWx3 with ``cmap`` over [vmin, vmax]; 0 (missing) is black."""
    from matplotlib import colormaps

    if vmax <= vmin:
        raise ValueError(f"colour range must have vmax > vmin, got {vmin}..{vmax}")
    depth = np.asarray(depth, dtype=np.float32)
    scaled = np.clip((depth - vmin) / (vmax - vmin), 0.0, 1.0)
    rgb = (colormaps[cmap](scaled)[..., :3] * 255.0 + 0.5).astype(np.uint8)
    rgb[~(depth > 0)] = 0
    return rgb


def depth_range(maps: Sequence[np.ndarray], percentile: float = 1.0) -> tuple[float, float]:
    """A robust common range (percentiles of all valid pixels) for maps drawn together."""
    valid = np.concatenate([np.asarray(m, np.float32)[np.asarray(m) > 0].ravel() for m in maps])
    if valid.size == 0:
        return MIN_DEPTH, MAX_DEPTH
    lo, hi = np.percentile(valid, [percentile, 100.0 - percentile])
    return float(lo), float(max(hi, lo + 1e-3))


def widen_points(depth: np.ndarray, size: int = 5) -> np.ndarray:
    """Sparse depth (0 = none, like KITTI's lidar ground truth) with each point grown to a
    ``size`` x ``size`` square, so it shows in a figure (for display only, never for scoring)."""
    import cv2

    kernel = np.ones((size, size), np.uint8)
    return cv2.dilate(np.asarray(depth, np.float32), kernel)


def save_grid(
    path: str | os.PathLike[str],
    rgbs: Sequence[np.ndarray],
    columns: dict[str, Sequence[np.ndarray]],
    range_per: str = "figure",
    vrange: tuple[float, float] | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG grid: one row per image, columns RGB | each depth column (e.g. ground truth,
    then each model's prediction), all depth maps of a row (or of the figure) on one jet range.

    Depth maps of any resolution are drawn at the RGB's size. ``range_per``: ``"figure"`` (one
    range for everything) or ``"row"``; ``vrange`` fixes the range explicitly.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    if range_per not in ("figure", "row"):
        raise ValueError(f"range_per must be 'figure' or 'row', got {range_per!r}")
    n = len(rgbs)
    names = list(columns)
    for name, maps in columns.items():
        if len(maps) != n:
            raise ValueError(f"column {name!r} has {len(maps)} maps for {n} images")
    all_maps = [m for maps in columns.values() for m in maps]
    fig_range = vrange or depth_range(all_maps)
    ncols = 1 + len(names)
    h, w = rgbs[0].shape[:2]
    cell = 2.6
    fig, axes = plt.subplots(
        n, ncols, figsize=(cell * ncols * w / h + 0.8, cell * n + 0.6), squeeze=False
    )
    for r in range(n):
        row_maps = [columns[name][r] for name in names]
        lo, hi = fig_range if range_per == "figure" else vrange or depth_range(row_maps)
        axes[r][0].imshow(rgbs[r])
        for c, depth in enumerate(row_maps, start=1):
            axes[r][c].imshow(colorize(_resize_nearest(depth, (h, w)), lo, hi))
        if range_per == "row":
            sm = ScalarMappable(Normalize(lo, hi), cmap="jet")
            fig.colorbar(sm, ax=list(axes[r]), fraction=0.02, pad=0.01, label="m")
        for c, label in enumerate(["RGB", *names]):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=10)
    if range_per == "figure":
        sm = ScalarMappable(Normalize(*fig_range), cmap="jet")
        fig.colorbar(sm, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, label="depth (m)")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi=100)


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: float | None = None) -> Path:
    """Write a matplotlib figure as PNG through a temporary file, then close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


def _resize_nearest(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if depth.shape == (h, w):
        return depth
    rows = (np.arange(h) * depth.shape[0] // h).clip(0, depth.shape[0] - 1)
    cols = (np.arange(w) * depth.shape[1] // w).clip(0, depth.shape[1] - 1)
    return depth[rows[:, None], cols[None, :]]
