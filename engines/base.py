"""The runner interface and the suffix -> runner table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from densedepth.errors import DenseDepthError


@runtime_checkable
class Runner(Protocol):
    """Anything that maps an RGB batch (N,3,H,W float32 in [0,1]) to metres (N,1,H/2,W/2)."""

    name: str
    precision: str
    device: str
    input_shape: tuple[int, int, int, int]

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


RUNNER_SUFFIXES = {".pt": "torch", ".pth": "torch"}


def load_runner(path: str | os.PathLike[str], device: str = "auto") -> Runner:
    """Open a model file as a runner, choosing the kind by suffix."""
    path = Path(path)
    kind = RUNNER_SUFFIXES.get(path.suffix)
    if kind is None:
        known = ", ".join(sorted(RUNNER_SUFFIXES))
        raise DenseDepthError(f"{path}: unknown model file type {path.suffix!r}; expected {known}")
    if not path.is_file():
        raise DenseDepthError(f"model file {path} does not exist")
    from engines.torch_runner import TorchRunner

    return TorchRunner(path, device=device)
