"""OpenVINO runner for x86 CPUs (FP32, BF16 and NNCF INT8 IRs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.util.errors import DenseDepthError
from densedepth.util.onnx_io import read_sidecar
from engines.base import RunnerBase, check_batch, model_info
from export.openvino import compile_ir


class OpenVinoRunner(RunnerBase):
    """An OpenVINO IR (.xml + .bin) with its sidecar, compiled for the CPU."""

    device = "cpu"
    max_batch = 1  # one image per infer request; a batch is that many calls

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
        self.info = model_info(sidecar)
        self.precision = self.info.precision
        self.compiled: Any = compile_ir(self.path, self.precision, threads)
        self.request: Any = self.compiled.create_infer_request()
        self.threads = _compiled_threads(self.compiled, threads)
        self._providers = ["CPU"]  # the device plugin it is compiled for
        h, w = sidecar["input_size"]
        self.input_shape = (1, 3, int(h), int(w))
        self.name = f"openvino:{self.path.name}"

    def _release_resources(self) -> None:
        self.request = None
        self.compiled = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """RGB batch (N,3,H,W) float32 in [0,1] -> metres (N,1,H/2,W/2) float32."""
        self._check_open()
        x = check_batch(self.name, batch, self.input_shape)
        parts = []
        for i in range(x.shape[0]):
            self.request.infer({0: x[i : i + 1]})
            parts.append(np.array(self.request.get_output_tensor(0).data, dtype=np.float32))
        return np.concatenate(parts)


def _compiled_threads(compiled: Any, asked: int) -> int:
    """The CPU threads the compiled model runs inference with (what was asked where OpenVINO
    does not say)."""
    try:
        return int(compiled.get_property("INFERENCE_NUM_THREADS")) or asked
    except Exception:  # an older plugin without the property
        return asked
