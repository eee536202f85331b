"""The resolved configuration of a training run (saved as config.json next to its outputs)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from densedepth.util.outputs import write_text_atomic


@dataclass
class TrainConfig:
    """Everything that determines a run. Defaults are the paper's recipe."""

    backbone: str = "densenet169"
    decoder_width: float = 1.0
    variant: dict[str, Any] = field(default_factory=dict)  # densedepth.variant ({}: default)
    data: str = "synthetic"
    kitti_split: str = "auto"  # on KITTI data: eigen (split files) | benchmark (drives) | auto
    val_data: str | None = None  # another validation source (default: a split of ``data``)
    val_split: float = 0.02  # share of the training scenes held out for validation
    val_split_name: str = "train"  # the split of ``val_data`` validated on ("test": warned)
    validation: dict[str, Any] = field(default_factory=dict)  # what was held out (fit fills it)
    training_camera: dict[str, Any] | None = None  # the data's camera (fit fills it; None: unknown)
    weights: str = "imagenet"  # imagenet | none | FILE
    epochs: int = 20
    max_steps: int | None = None  # stop after this many optimiser steps in total
    batch_size: int = 8
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    amsgrad: bool = False  # the released Keras training used Adam(amsgrad=True)
    input_size: tuple[int, int] | None = (
        480,
        640,
    )  # None: the data's (NYU 480x640, KITTI 384x1248)
    out: str = "runs/train"
    device: str = "auto"
    precision: str = "auto"  # fp32 | bf16 | fp16 | auto (densedepth.precision; fit records it)
    seed: int = 0
    workers: int = 0
    checkpoint_every: int = 200  # optimiser steps between last.pt writes
    val_samples: int = 64  # images of the validation set evaluated each epoch (0 = all)
    test_samples: int = 0  # images of the test split scoring best.pt at the end (0 = all)
    synthetic_train: int = 1000  # scenes, when data is "synthetic"
    synthetic_test: int = 100
    synthetic_size: tuple[int, int] | None = None  # render size; default: input_size
    log_every: int = 10
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys are ignored, tuples restored."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for key in ("betas", "input_size", "synthetic_size"):
            if isinstance(kw.get(key), list):
                kw[key] = tuple(kw[key])
        return cls(**kw)

    def save(self, path: Path) -> None:
        """Write config.json atomically."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
