"""OpenVINO runner for x86 CPUs (FP32, BF16 and NNCF INT8 IRs)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from densedepth.errors import DenseDepthError
from engines.base import check_batch, depth_range_of
from export.onnx_files import read_sidecar
from export.openvino import compile_ir


class OpenVinoRunner:
    """An OpenVINO IR (.xml + .bin) with its sidecar, compiled for the CPU."""

    device = "cpu"

    def __init__(
        self, path: str | os.PathLike[str], device: str = "auto", threads: int = 0
    ) -> None:
        if device not in ("auto", "cpu"):
            raise DenseDepthError(f"the OpenVINO runner runs on the CPU, not {device!r}")
        self.path = Path(path)
        sidecar = read_sidecar(self.path)
        if "input_size" not in sidecar:
            raise DenseDepthError(
                f"{self.path} has no DenseDepth sidecar ({self.path.name}.json); "
                f"make it with cli.py build-engine --target openvino"
            )
        self.precision = sidecar["precision"]
        self.backbone = sidecar.get("backbone", "")
        self.decoder_width = float(sidecar.get("decoder_width", 1.0))
        self.depth_range = depth_range_of(sidecar)
        self.weights_origin = str(sidecar.get("weights_origin", ""))
        self.threads = threads
        self.compiled = compile_ir(self.path, self.precision, threads)
        self.request = self.compiled.create_infer_request()
        h, w = sidecar["input_size"]
        self.input_shape = (1, 3, int(h), int(w))
        self.name = f"openvino:{self.path.name}"
        self.max_batch = 1  # one image per infer request; a batch is that many calls

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """RGB batch (N,3,H,W) float32 in [0,1] -> metres (N,1,H/2,W/2) float32."""
        x = check_batch(self.name, batch, self.input_shape)
        parts = []
        for i in range(x.shape[0]):
            self.request.infer({0: x[i : i + 1]})
            parts.append(np.array(self.request.get_output_tensor(0).data, dtype=np.float32))
        return np.concatenate(parts)
