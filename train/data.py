"""The data of a training job: which training, validation and test sets it opens, and the
conventions (input size, depth range, evaluation protocol) it adopts from them.

By default the validation set is a held-out share of the training scenes (``split_by_scene``,
chosen from the seed); ``--val-data`` validates on another source instead. The test split
scores best.pt once at the end, unless the data has none; a note says when it also chose
best.pt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from densedepth.camera import camera_record
from densedepth.data.readers import open_dataset
from densedepth.data.splits import Subset, split_by_scene
from densedepth.evaluation import PROTOCOL_OF
from densedepth.variant import preset
from train.config import TrainConfig
from train.errors import TrainingError

INPUT_SIZES = {"nyu": (480, 640), "kitti": (384, 1248)}  # KITTI's 375x1242, to multiples of 32


@dataclass(frozen=True)
class JobData:
    """What a job trains, validates and tests on, and the protocol that scores it."""

    train: Any
    val: Any
    test: Any  # None where there is no separate test split (``test_note`` says why)
    test_note: str
    protocol: str  # NYU's Eigen, or KITTI's Garg crop


def open_job_data(cfg: TrainConfig, warn: Any = None) -> JobData:
    """The job's data: records the split in ``cfg.validation`` and adopts the data's
    conventions into ``cfg`` (``adopt_data_conventions``); ``warn`` prints warnings (or None)."""
    train, val, cfg.validation = training_and_validation(cfg, warn)
    cfg.training_camera = camera_record(train)
    train_name = getattr(getattr(train, "base", train), "name", "")
    test, test_note = test_set_for(cfg, train_name, cfg.validation)
    protocol = adopt_data_conventions(cfg, getattr(train, "depth_kind", "nyu"))
    return JobData(train, val, test, test_note, protocol)


def _dataset_kwargs(cfg: TrainConfig, split: str) -> dict[str, Any]:
    """The synthetic generator's arguments for ``split`` (open_dataset ignores them for files)."""
    h, w = cfg.synthetic_size or cfg.input_size or INPUT_SIZES["nyu"]
    n = cfg.synthetic_train if split == "train" else cfg.synthetic_test
    return {"n": n, "seed": cfg.seed * 2 + (split == "test"), "height": h, "width": w,
            "kitti_split": cfg.kitti_split}  # fmt: skip


def training_and_validation(cfg: TrainConfig, warn: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """The training set, the validation set and what config.json records of the split.

    By default ``cfg.val_split`` of the training scenes (whole scenes; files where a dataset
    has none) are held out, chosen from ``cfg.seed``; ``cfg.val_data`` validates on another
    source instead, on its ``cfg.val_split_name`` split (``test`` is allowed, with a warning).
    """
    base = open_dataset(cfg.data, "train", **_dataset_kwargs(cfg, "train"))
    if cfg.val_data:
        split = _check_split_name(cfg.val_split_name)
        val = open_dataset(cfg.val_data, split, **_dataset_kwargs(cfg, split))
        if len(val) == 0:
            raise TrainingError(f"the validation set {cfg.val_data} ({split}) is empty")
        if split == "test" and warn is not None:
            warn(
                f"warning: validating on the test split of {cfg.val_data}: best.pt is chosen on "
                f"those images, so numbers measured on them are not held-out test numbers"
            )
        record = {"source": cfg.val_data, "split": split, "val_images": len(val)}
        return base, val, record
    held = split_by_scene(base, cfg.val_split, cfg.seed)
    train = Subset(base, held.train, "train")
    val = Subset(base, held.val, f"validation {cfg.val_split:g}")
    return train, val, {"source": f"{cfg.data} (train)", "val_split": cfg.val_split,
                        **held.record()}  # fmt: skip


def _check_split_name(split: str) -> str:
    if split not in ("train", "test"):
        raise TrainingError(f"--val-split-name {split!r}: choose train or test")
    return split


def test_set_for(cfg: TrainConfig, train_name: str, validation: dict[str, Any]) -> tuple[Any, str]:
    """The test split that scores best.pt at the end, or None and why there is none
    (``train_name``: the training dataset's name; a format without splits gives the same)."""
    test = open_dataset(cfg.data, "test", **_dataset_kwargs(cfg, "test"))
    if test.name == train_name:
        return None, f"{cfg.data} has no separate test split"
    if validation.get("source") == cfg.data and validation.get("split") == "test":
        return test, "the test split also chose best.pt (--val-split-name test)"
    return test, ""


def adopt_data_conventions(cfg: TrainConfig, depth_kind: str) -> str:
    """The data's conventions where the config leaves them open: on KITTI the model learns
    80 / depth over 1..80 m (the variant recorded in every checkpoint) at 384x1248; returns
    the protocol that validates and tests it (NYU's Eigen, or KITTI's Garg crop)."""
    if depth_kind == "kitti" and not cfg.variant:
        cfg.variant = preset("default", "kitti").to_dict()
    if cfg.input_size is None:
        cfg.input_size = INPUT_SIZES[depth_kind]
    cfg.extra["protocol"] = PROTOCOL_OF[depth_kind]
    return PROTOCOL_OF[depth_kind]
