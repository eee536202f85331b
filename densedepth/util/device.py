"""Device choice shared by training and the runners."""

from __future__ import annotations

import torch

from densedepth.util.errors import DenseDepthError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DenseDepthError(
                f"--device {name} was asked for but torch sees no CUDA GPU; use cpu"
            )
        return torch.device(name)
    if name != "cpu":
        raise DenseDepthError(f"unknown device {name!r}; use one of: {', '.join(DEVICES)}")
    return torch.device("cpu")
