"""Depth conventions: metres everywhere outside the network, the paper's reciprocal inside.

DenseDepth trains on ``target = MAX_DEPTH / depth`` ("DepthNorm", 1000 / depth in centimetres in
the original code), which maps the valid range 0.1..10 m onto 100..1. These two functions are the
only place that conversion happens; both clamp to the valid range and accept numpy arrays and
torch tensors alike.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

MIN_DEPTH = 0.1  # metres
MAX_DEPTH = 10.0  # metres
MIN_TARGET = MAX_DEPTH / MAX_DEPTH  # 1.0, the target of the farthest valid depth
MAX_TARGET = MAX_DEPTH / MIN_DEPTH  # 100.0, the target of the nearest valid depth

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _clip(x: ArrayT, lo: float, hi: float) -> ArrayT:
    if isinstance(x, torch.Tensor):
        return x.clamp(lo, hi)
    return np.clip(x, lo, hi)


def depth_to_target(depth_m: ArrayT) -> ArrayT:
    """Metres -> the network's reciprocal target, clamping depth to [MIN_DEPTH, MAX_DEPTH]."""
    return MAX_DEPTH / _clip(depth_m, MIN_DEPTH, MAX_DEPTH)


def target_to_depth(target: ArrayT) -> ArrayT:
    """The network's reciprocal output -> metres in [MIN_DEPTH, MAX_DEPTH]."""
    return MAX_DEPTH / _clip(target, MIN_TARGET, MAX_TARGET)
