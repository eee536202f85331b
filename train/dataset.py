"""The torch view of a dataset for training and evaluation: augmented, resized tensors."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from densedepth.data.augment import augment
from densedepth.data.preprocess import to_network_pair
from densedepth.data.readers import Sample


def rgb_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 (or NxHxWx3) -> float32 (N)x3xHxW in [0, 1]: what every model is fed."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).float().div_(255.0)
    return t.movedim(-1, -3).contiguous()


class TorchDepthDataset(torch.utils.data.Dataset):
    """Training/evaluation view of a dataset: tensors at the network's size.

    Item ``i`` is ``(image float32 3xHxW in [0,1], depth float32 1x(H/2)x(W/2) metres)``.
    Augmentation randomness comes from ``(seed, epoch, i)`` only, so results do not depend on
    the number of workers and a resumed run sees the same batches; call ``set_epoch`` per epoch.
    """

    def __init__(
        self,
        dataset: Sequence[Sample],
        input_size: tuple[int, int] = (480, 640),
        train: bool = True,
        seed: int = 0,
        augment_fn: Callable[..., Sample] = augment,
    ) -> None:
        from densedepth.variant import check_input_size

        check_input_size(*input_size)
        self.dataset = dataset
        self.input_size = input_size
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.augment_fn = augment_fn

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rgb, depth = self.dataset[index]
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            rgb, depth = self.augment_fn(rgb, depth, rng)
        rgb, depth = to_network_pair(rgb, depth, self.input_size)
        return rgb_to_tensor(rgb), torch.from_numpy(np.ascontiguousarray(depth))[None]
