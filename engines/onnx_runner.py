"""ONNX Runtime runner: the engine that runs everywhere (CPU by default)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.errors import DenseDepthError, error_line
from engines.base import check_batch, depth_range_of
from export.onnx_files import INPUT_NAME, OUTPUT_NAME, fixed_batch, ort_session, read_metadata

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def choose_providers(device: str) -> list[str]:
    """Execution providers for ``device`` (auto | cpu | cuda | tensorrt) that exist here."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device not in PROVIDERS:
        raise DenseDepthError(f"unknown device {device!r}; choose auto, cpu, cuda or tensorrt")
    wanted = PROVIDERS[device]
    if wanted[0] not in available:
        raise DenseDepthError(
            f"ONNX Runtime here has no {wanted[0]} (available: {', '.join(sorted(available))}); "
            f"install onnxruntime-gpu on a CUDA machine or use --device cpu"
        )
    return [p for p in wanted if p in available]


class OnnxRunner:
    """An exported DenseDepth ONNX file (fp32, fp16 or int8 Q/DQ) run by ONNX Runtime."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: str = "auto",
        threads: int = 0,
        profile: str | None = None,
    ) -> None:
        self.path = Path(path)
        meta = read_metadata(self.path)
        if "input_size" not in meta:
            raise DenseDepthError(
                f"{self.path} is not a DenseDepth export (no densedepth.* metadata); "
                f"export it with cli.py export"
            )
        self.providers = choose_providers(device)
        try:
            self.session = ort_session(self.path, threads, self.providers, profile)
        except Exception as exc:
            first = error_line(exc, 200, with_type=False)
            raise DenseDepthError(f"ONNX Runtime cannot load {self.path}: {first}") from None
        names = [i.name for i in self.session.get_inputs()]
        if names != [INPUT_NAME] or self.session.get_outputs()[0].name != OUTPUT_NAME:
            raise DenseDepthError(
                f"{self.path}: expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}', got "
                f"{names}; export it with cli.py export"
            )
        size = meta["input_size"]
        self.meta: dict[str, Any] = meta
        self.backbone = meta.get("backbone", "")
        self.decoder_width = float(meta.get("decoder_width", 1.0))
        self.depth_range = depth_range_of(meta)
        self.weights_origin = str(meta.get("weights_origin", ""))
        self.precision = meta.get("precision", "fp32")
        self.threads = threads
        self.device = "cpu" if self.providers[0] == "CPUExecutionProvider" else "cuda"
        self.name = f"onnxruntime:{self.path.name}"
        self.input_shape = (1, 3, int(size[0]), int(size[1]))
        self.max_batch = fixed_batch(self.session)  # images per engine call (None: any batch)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """RGB batch (N,3,H,W) float32 in [0,1] -> metres (N,1,H/2,W/2) float32."""
        x = check_batch(self.name, batch, self.input_shape)
        if self.max_batch is not None and x.shape[0] != self.max_batch:
            parts = [self._run(x[i : i + 1]) for i in range(x.shape[0])]
            return np.concatenate(parts)
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        return np.asarray(out, dtype=np.float32)

    def end_profiling(self) -> str:
        """Stop ORT's profiler; returns the JSON trace path."""
        return self.session.end_profiling()
