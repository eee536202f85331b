"""The runner interface and the suffix -> runner table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from densedepth.depth import MAX_DEPTH, MIN_DEPTH
from densedepth.errors import DenseDepthError, missing_reason


@runtime_checkable
class Runner(Protocol):
    """Anything that maps an RGB batch (N,3,H,W float32 in [0,1]) to metres (N,1,H/2,W/2).

    Our runners also carry ``backbone`` and ``decoder_width`` (what bench uses to count the
    model's operations), ``depth_range`` (the metres their output is clamped to) and
    ``max_batch`` (the most images one engine call runs, None: any; a larger batch is split
    into calls, and bench says so); code that takes any runner reads them with ``getattr``.
    Checkpoints and ONNX files also offer ``predict_target`` (the network's raw reciprocal
    output, None where the graph's conversion cannot be walked back) and ``depth_norm`` (its
    DepthRange), which the densedepth protocol converts as the authors did.
    """

    name: str
    precision: str
    device: str
    input_shape: tuple[int, int, int, int]

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def depth_range_of(meta: dict) -> tuple[float, float]:
    """(min, max) metres from an ONNX file's metadata or a sidecar (NYU's when absent)."""
    return float(meta.get("min_depth", MIN_DEPTH)), float(meta.get("max_depth", MAX_DEPTH))


def check_batch(name: str, batch: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """The batch as contiguous float32 NCHW, or one clear error naming the expected shape."""
    x = np.ascontiguousarray(batch, dtype=np.float32)
    if x.ndim != 4 or x.shape[1:] != tuple(input_shape[1:]):
        want = "x".join(map(str, input_shape[1:]))
        raise DenseDepthError(f"{name} expects batches of N x {want} (RGB), got {x.shape}")
    return x


def load_runner(path: str | os.PathLike[str], device: str = "auto", threads: int = 0) -> Runner:
    """Open a model file as a runner: the format table's runner for its suffix.

    ``threads`` sets the CPU threads of ONNX Runtime and OpenVINO (0 = their default).
    """
    from export.formats import BackendUnavailable, format_for_suffix, model_suffixes

    path = Path(path)
    fmt = format_for_suffix(path.suffix)
    if path.is_dir():
        raise DenseDepthError(f"{path} is a folder; pass a model file (bench also takes folders)")
    if fmt is None:
        known = ", ".join(model_suffixes())
        raise DenseDepthError(f"{path}: unknown model file type {path.suffix!r}; expected {known}")
    if not path.is_file():
        raise DenseDepthError(f"model file {path} {missing_reason(path)}")
    try:
        return fmt.runner_class()(path, device=device, threads=threads)
    except BackendUnavailable as exc:  # name the file: "which model could not run?"
        raise BackendUnavailable(f"cannot run {path}: {exc}") from None
