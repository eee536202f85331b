"""Datasets: readers of every NYU / KITTI layout (``open_dataset``), writers, the synthetic
scene generator, splits, augmentation, preprocessing and video sources.

Every dataset yields ``(rgb uint8 HxWx3, depth float32 metres HxW)``.
"""

from densedepth.data.readers import open_dataset

__all__ = ["open_dataset"]
