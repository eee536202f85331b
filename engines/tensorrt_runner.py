"""TensorRT runner through pycuda: page-locked host buffers, one stream, tensors by name.

Needs the ``tensorrt`` extra and an NVIDIA GPU; otherwise constructing it raises one line
naming what is missing. Written against TensorRT 10/11's documented runtime API
(``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.errors import DenseDepthError
from engines.base import check_batch
from export.onnx_export import INPUT_NAME, OUTPUT_NAME, read_sidecar
from export.tensorrt import check_engine_sidecar, gpu_name, import_tensorrt


class TensorRTRunner:
    """A serialized TensorRT engine (fp16 or int8) with its JSON sidecar."""

    device = "cuda"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        trt = import_tensorrt()
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
        import pycuda.driver as cuda

        self.path = Path(path)
        sidecar = read_sidecar(self.path)
        check_engine_sidecar(sidecar, trt.__version__, gpu_name(), self.path)
        self._cuda, self._trt = cuda, trt
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise DenseDepthError(f"TensorRT cannot deserialize {self.path}; rebuild it here")
        self.context = self.engine.create_execution_context()
        self.stream = cuda.Stream()
        h, w = sidecar["input_size"]
        self.input_shape = (1, 3, int(h), int(w))
        self.max_batch = int(sidecar["shapes"][INPUT_NAME]["max"][0])
        self.dynamic = sidecar["shapes"][INPUT_NAME]["min"][0] != self.max_batch
        self.precision = sidecar["precision"]
        self.backbone = sidecar.get("backbone", "")
        self.decoder_width = float(sidecar.get("decoder_width", 1.0))
        self.name = f"tensorrt:{self.path.name}"
        self._buffers: dict[str, tuple[Any, Any]] = {}
        self._batch = 0

    def _allocate(self, batch: int) -> None:
        """Page-locked host + device buffers for ``batch`` images, bound by tensor name."""
        trt, cuda = self._trt, self._cuda
        if self.dynamic:
            self.context.set_input_shape(INPUT_NAME, (batch, *self.input_shape[1:]))
        self._buffers = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            host = cuda.pagelocked_empty(shape, dtype)
            device = cuda.mem_alloc(host.nbytes)
            self.context.set_tensor_address(name, int(device))
            self._buffers[name] = (host, device)
        self._batch = batch

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """RGB batch (N,3,H,W) float32 in [0,1] -> metres (N,1,H/2,W/2) float32."""
        x = check_batch(self.name, batch, self.input_shape)
        step = self.max_batch
        parts = [self._run(x[i : i + step]) for i in range(0, x.shape[0], step)]
        return np.concatenate(parts)

    def _run(self, x: np.ndarray) -> np.ndarray:
        cuda = self._cuda
        if x.shape[0] != self._batch:
            if not self.dynamic and x.shape[0] != self.max_batch:
                return np.concatenate([self._run(x[i : i + 1]) for i in range(x.shape[0])])
            self._allocate(x.shape[0])
        host_in, dev_in = self._buffers[INPUT_NAME]
        host_out, dev_out = self._buffers[OUTPUT_NAME]
        np.copyto(host_in, x.astype(host_in.dtype, copy=False))
        cuda.memcpy_htod_async(dev_in, host_in, self.stream)
        if not self.context.execute_async_v3(stream_handle=self.stream.handle):
            raise DenseDepthError(f"{self.name}: TensorRT execution failed")
        cuda.memcpy_dtoh_async(host_out, dev_out, self.stream)
        self.stream.synchronize()
        return np.array(host_out, dtype=np.float32, copy=True)
