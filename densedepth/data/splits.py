"""Validation held out from the training data: whole scenes, chosen from the seed.

NYU's training frames come in long runs of the same scene (the folder in ``nyu2_train.csv``);
a frame-level split would validate on near-copies of training frames. ``split_by_scene`` holds
out a fraction of the SCENES (of files, where a dataset has no scenes), the same ones for the
same seed, and ``Subset`` views either side without copying. Numpy only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from densedepth.data.readers import DepthDataset, Sample
from densedepth.util.errors import DataError

MAX_VAL_SPLIT = 0.5


@dataclass(frozen=True)
class SceneSplit:
    """Indices of the training and validation samples, and what the split was made of."""

    train: list[int]
    val: list[int]
    grouped_by: str  # "scene" | "file"
    train_groups: int
    val_groups: int
    val_groups_sha256: str  # of the sorted held-out scene (or file) names

    def record(self) -> dict[str, object]:
        """What config.json keeps of it."""
        return {
            "grouped_by": self.grouped_by,
            "train_images": len(self.train),
            "val_images": len(self.val),
            "train_groups": self.train_groups,
            "val_groups": self.val_groups,
            "val_groups_sha256": self.val_groups_sha256,
        }


def groups_of(dataset: Sequence[Sample]) -> tuple[list[str], str]:
    """The scene of every sample (``dataset.scene(i)``), or its index where there are none."""
    scene = getattr(dataset, "scene", None)
    if callable(scene):
        return [str(scene(i)) for i in range(len(dataset))], "scene"
    return [str(i) for i in range(len(dataset))], "file"


def check_val_split(fraction: float) -> None:
    """One line unless 0 < fraction <= 0.5."""
    if not 0 < fraction <= MAX_VAL_SPLIT:
        raise DataError(
            f"--val-split {fraction:g} is outside (0, {MAX_VAL_SPLIT}]: give the share of "
            f"training scenes to hold out for validation (default 0.02)"
        )


def split_by_scene(dataset: Sequence[Sample], fraction: float, seed: int) -> SceneSplit:
    """Hold out ``fraction`` of the scenes (at least one), the same ones for the same seed."""
    check_val_split(fraction)
    groups, kind = groups_of(dataset)
    unique = sorted(set(groups))
    if len(unique) < 2:
        raise DataError(
            f"the training data has {len(unique)} {kind}(s): a validation split would leave "
            f"no training {kind}; pass --val-data PATH for a separate validation set"
        )
    n_val = max(1, round(fraction * len(unique)))
    if n_val >= len(unique):
        raise DataError(
            f"--val-split {fraction:g} of {len(unique)} {kind}s leaves no training {kind}; "
            f"use a smaller share or --val-data PATH"
        )
    order = np.random.default_rng(seed).permutation(len(unique))
    held = {unique[k] for k in order[:n_val]}
    train = [i for i, g in enumerate(groups) if g not in held]
    val = [i for i, g in enumerate(groups) if g in held]
    digest = hashlib.sha256("\n".join(sorted(held)).encode()).hexdigest()
    return SceneSplit(train, val, kind, len(unique) - n_val, n_val, digest)


class Subset(DepthDataset):
    """The samples ``indices`` of another dataset, in that order (scenes and crop kept)."""

    def __init__(self, base: Sequence[Sample], indices: Sequence[int], label: str) -> None:
        if len(indices) == 0:
            raise DataError(f"{label}: no samples; choose a larger split or another source")
        self.base = base
        self.indices = list(indices)
        self.name = f"{getattr(base, 'name', 'dataset')}[{label}]"
        self.crop = getattr(base, "crop", None)
        self.depth_kind = getattr(base, "depth_kind", "nyu")
        self.camera = getattr(base, "camera", None)

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> Sample:
        return self.base[self.indices[index]]

    def scene(self, index: int) -> str:
        """The base dataset's scene of this sample (its index there where it has none)."""
        groups = getattr(self.base, "scene", None)
        return str(groups(self.indices[index])) if callable(groups) else str(self.indices[index])
