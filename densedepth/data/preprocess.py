"""Resizing and the one preprocessing of inference (numpy and OpenCV, no torch)."""

from __future__ import annotations

import cv2
import numpy as np

from densedepth.data.readers import Sample


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 HxWx3 to ``size`` = (height, width): area when shrinking, bilinear otherwise."""
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    shrink = h < rgb.shape[0] or w < rgb.shape[1]
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize metres to ``size``; maps with holes (0) use nearest so no depth is invented."""
    h, w = size
    if depth.shape == (h, w):
        return depth
    if (depth <= 0).any():
        interp = cv2.INTER_NEAREST
    elif h < depth.shape[0] or w < depth.shape[1]:
        interp = cv2.INTER_AREA
    else:
        interp = cv2.INTER_LINEAR
    return cv2.resize(depth, (w, h), interpolation=interp)


def to_network_pair(rgb: np.ndarray, depth: np.ndarray, input_size: tuple[int, int]) -> Sample:
    """RGB resized to the network input and depth to half of it (the output resolution)."""
    h, w = input_size
    return resize_rgb(rgb, (h, w)), resize_depth(depth, (h // 2, w // 2))


def rgb_to_input(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 HxWx3 -> the network's input: resized to ``size``, float32 1x3xHxW in [0, 1].

    The one preprocessing of inference: prediction, calibration and benchmarks all use it.
    """
    x = resize_rgb(rgb, size).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])
