"""The paper's training augmentation (numpy; the torch Dataset applies it per item)."""

from __future__ import annotations

import numpy as np

from densedepth.data.readers import Sample

CHANNEL_PERMUTATIONS = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))  # not identity


def augment(
    rgb: np.ndarray,
    depth: np.ndarray,
    rng: np.random.Generator,
    flip_p: float = 0.5,
    swap_p: float = 0.25,
) -> Sample:
    """The paper's augmentation: horizontal flip (image and depth) with probability ``flip_p``,
    and a colour-channel permutation (image only) with probability ``swap_p``; nothing else."""
    if rng.random() < flip_p:
        rgb, depth = rgb[:, ::-1], depth[:, ::-1]
    if rng.random() < swap_p:
        rgb = rgb[:, :, list(CHANNEL_PERMUTATIONS[rng.integers(len(CHANNEL_PERMUTATIONS))])]
    return np.ascontiguousarray(rgb), np.ascontiguousarray(depth)
