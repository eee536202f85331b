"""Depth conventions: metres everywhere outside the network, the paper's reciprocal inside.

DenseDepth trains on ``target = numerator / depth`` ("DepthNorm"; 1000 / depth in centimetres in
the original code), with NYU's numerator 10 m mapping the valid range 0.1..10 m onto 100..1
(``kitti.h5``: 80 / depth over 1..80 m). A ``DepthRange`` holds the three numbers; these two
functions are the only place the conversion happens. Both clamp to the valid range and accept
numpy arrays and torch tensors alike; the default range is NYU's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

# NYU's valid depth, defined here only: this module imports no torch, so numpy-only code
# (densedepth.metrics, densedepth.data) imports it too.
MIN_DEPTH = 0.1  # metres
MAX_DEPTH = 10.0  # metres
MIN_TARGET = MAX_DEPTH / MAX_DEPTH  # 1.0, the target of the farthest valid depth
MAX_TARGET = MAX_DEPTH / MIN_DEPTH  # 100.0, the target of the nearest valid depth

ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


@dataclass(frozen=True)
class DepthRange:
    """Valid depth in metres and the numerator of the network's reciprocal target."""

    min_depth: float = MIN_DEPTH
    max_depth: float = MAX_DEPTH
    numerator: float = MAX_DEPTH  # target = numerator / depth

    @property
    def target_range(self) -> tuple[float, float]:
        """(smallest, largest) target: those of the farthest and the nearest valid depth."""
        return self.numerator / self.max_depth, self.numerator / self.min_depth


NYU_RANGE = DepthRange()


def _clip(x: Any, lo: float, hi: float) -> Any:
    if isinstance(x, np.ndarray | np.generic | float | int):
        return np.clip(x, lo, hi)
    return x.clamp(lo, hi)  # a torch tensor (torch is not imported for numpy callers)


def depth_to_target(depth_m: ArrayT, rng: DepthRange = NYU_RANGE) -> ArrayT:
    """Metres -> the network's reciprocal target, clamping depth to the valid range."""
    return rng.numerator / _clip(depth_m, rng.min_depth, rng.max_depth)


def target_to_depth(target: ArrayT, rng: DepthRange = NYU_RANGE) -> ArrayT:
    """The network's reciprocal output -> metres in the valid range (clamp first: the target
    is clamped to ``rng.target_range``, then inverted; what the deployable graph does)."""
    lo, hi = rng.target_range
    return rng.numerator / _clip(target, lo, hi)


def authors_target_to_depth(target: ArrayT, rng: DepthRange = NYU_RANGE) -> ArrayT:
    """The authors' conversion (DenseDepth utils.py ``predict``: ``np.clip(DepthNorm(y,
    maxDepth=1000), 10, 1000) / 1000``, times 10 in evaluate.py): invert first, then clip the
    depth. Equal to ``target_to_depth`` for positive targets; a negative target (or -0) gives
    the nearest depth (0.1 m), +0 the farthest."""
    if isinstance(target, np.ndarray | np.generic | float | int):
        with np.errstate(divide="ignore"):
            return np.clip(rng.numerator / np.asarray(target), rng.min_depth, rng.max_depth)
    return _clip(rng.numerator / target, rng.min_depth, rng.max_depth)
