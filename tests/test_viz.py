"""Jet colouring (near blue, far red, fixed range) and the qualitative grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedepth.viz import colorize, depth_range, save_grid


def test_jet_near_is_blue_far_is_red_missing_is_black() -> None:
    depth = np.array([[1.0, 5.5, 10.0, 0.0]], np.float32)
    rgb = colorize(depth, vmin=1.0, vmax=10.0)
    # jet's ends are fixed points: 0 -> (0, 0, 0.5), 1 -> (0.5, 0, 0); its middle is green-ish
    np.testing.assert_array_equal(rgb[0, 0], [0, 0, 128])
    np.testing.assert_array_equal(rgb[0, 2], [128, 0, 0])
    assert rgb[0, 1, 1] > 200 and rgb[0, 1, 1] > rgb[0, 1, 0] and rgb[0, 1, 1] > rgb[0, 1, 2]
    np.testing.assert_array_equal(rgb[0, 3], [0, 0, 0])
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)


def test_fixed_range_means_same_colour_for_same_distance() -> None:
    a = colorize(np.array([[2.0, 3.0]]), 0.5, 8.0)
    b = colorize(np.array([[2.0, 7.9]]), 0.5, 8.0)
    np.testing.assert_array_equal(a[0, 0], b[0, 0])
    with pytest.raises(ValueError, match="vmax > vmin"):
        colorize(np.ones((2, 2)), 3.0, 3.0)


def test_depth_range_ignores_missing_pixels() -> None:
    maps = [np.array([[0.0, 1.0, 2.0]]), np.array([[3.0, 0.0]])]
    lo, hi = depth_range(maps, percentile=0)
    assert (lo, hi) == (1.0, 3.0)


@pytest.mark.parametrize("range_per", ["figure", "row"])
def test_grid_has_one_row_per_image_and_a_column_per_map(tmp_path: Path, range_per: str) -> None:
    rng = np.random.default_rng(0)
    rgbs = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    gts = [np.linspace(1, 6, 48 * 64).reshape(48, 64).astype(np.float32) for _ in range(3)]
    preds = [g[::2, ::2] * 1.1 for g in gts]  # half resolution is drawn at the RGB size
    path = save_grid(tmp_path / "g.png", rgbs, {"GT": gts, "pred": preds}, range_per=range_per)
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] > img.shape[1] * 0.5  # three rows of three panels
    assert not list(tmp_path.glob(".*tmp*"))
    # jet blues and reds both appear
    assert ((img[..., 2] > 150) & (img[..., 0] < 60)).any()
    assert ((img[..., 0] > 150) & (img[..., 2] < 60)).any()
    with pytest.raises(ValueError, match="has 2 maps for 3 images"):
        save_grid(tmp_path / "x.png", rgbs, {"GT": gts[:2]})
