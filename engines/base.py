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
    model's operations) and ``depth_range`` (the metres their output is clamped to); code that
    takes any runner reads them with ``getattr``.
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


RUNNER_SUFFIXES = {
    ".pt": "torch",
    ".pth": "torch",
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".xml": "openvino",
}


def load_runner(path: str | os.PathLike[str], device: str = "auto", threads: int = 0) -> Runner:
    """Open a model file as a runner, choosing the kind by suffix.

    ``threads`` sets the CPU threads of ONNX Runtime and OpenVINO (0 = their default).
    """
    path = Path(path)
    kind = RUNNER_SUFFIXES.get(path.suffix)
    if path.is_dir():
        raise DenseDepthError(f"{path} is a folder; pass a model file (bench also takes folders)")
    if kind is None:
        known = ", ".join(sorted(RUNNER_SUFFIXES))
        raise DenseDepthError(f"{path}: unknown model file type {path.suffix!r}; expected {known}")
    if not path.is_file():
        raise DenseDepthError(f"model file {path} {missing_reason(path)}")
    from export.formats import BackendUnavailable

    try:
        return _open_runner(kind, path, device, threads)
    except BackendUnavailable as exc:  # name the file: "which model could not run?"
        raise BackendUnavailable(f"cannot run {path}: {exc}") from None


def _open_runner(kind: str, path: Path, device: str, threads: int) -> Runner:
    if kind == "onnxruntime":
        from engines.onnx_runner import OnnxRunner

        return OnnxRunner(path, device=device, threads=threads)
    if kind == "tensorrt":
        from engines.tensorrt_runner import TensorRTRunner

        return TensorRTRunner(path)
    if kind == "openvino":
        from engines.openvino_runner import OpenVinoRunner

        return OpenVinoRunner(path, device=device, threads=threads)
    from engines.torch_runner import TorchRunner

    return TorchRunner(path, device=device)
