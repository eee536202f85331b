"""TensorRT runner: page-locked host buffers, one stream, tensors by name.

Needs the ``tensorrt`` extra, a CUDA binding (``export.cuda``: pycuda or cuda-python) and an
NVIDIA GPU; otherwise constructing it raises one line naming what is missing. Written against
TensorRT 8.6 .. 11's runtime API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``), checked name by name against NVIDIA's bindings (tests/tensorrt_api.py).

Input and output names, shapes, dtypes and the batch range come from the engine itself; the
sidecar (``model.engine.json``) adds what the engine does not say (precision, backbone) and is
checked against this TensorRT and GPU. An engine without one (built by ``trtexec``) loads with
a warning.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.util.errors import DenseDepthError, error_line
from densedepth.util.onnx_io import parity_input, read_sidecar
from engines.base import RunnerBase, check_batch, model_info
from export.cuda import CudaError
from export.tensorrt import check_engine_sidecar, import_tensorrt, set_dla_core


class EngineWarning(UserWarning):
    """An engine loads, but something about it could not be checked."""


# I/O tensor types the runner converts; a quantized type (INT8, FP8, ...) carries a scale set
# at build time that a serialized engine does not expose, so its codes cannot be made metres.
FLOAT_IO = ("FLOAT", "HALF", "BF16")
WARMUP_S = 0.2  # seconds of launches before timing: trtexec's --warmUp default (200 ms)


def float32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounded to nearest even as CUDA does."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32 (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def io_dtype(trt: Any, dtype: Any, tensor: str, path: Path) -> np.dtype:
    """The host dtype of an engine I/O tensor (BF16 as its uint16 bit patterns); one clear
    line for a type whose values cannot be read as RGB or metres."""
    name = getattr(dtype, "name", str(dtype)).split(".")[-1]
    if name not in FLOAT_IO:
        raise DenseDepthError(
            f"{path}: tensor {tensor!r} is {name}; the runner takes float I/O (FP32, FP16, "
            f"BF16): a quantized tensor's scale is not stored in the engine. Rebuild with "
            f"float I/O (trtexec --inputIOFormats=fp16:chw --outputIOFormats=fp16:chw)"
        )
    return np.dtype(np.uint16) if name == "BF16" else np.dtype(trt.nptype(dtype))


class TensorRTRunner(RunnerBase):
    """A serialized TensorRT engine (fp16 or int8), with or without its JSON sidecar."""

    device = "cuda"
    engine: Any = None
    context: Any = None

    def __init__(
        self, path: str | os.PathLike[str], device: str = "auto", threads: int = 0
    ) -> None:
        """``device`` and ``threads`` are the runners' common arguments: an engine runs on the
        GPU it was built for, with no CPU threads to set."""
        from export.cuda import cuda_backend, cuda_ordinal

        trt = import_tensorrt()
        self.cuda = cuda_backend(cuda_ordinal(device))
        self.device = f"cuda:{self.cuda.ordinal}"
        self._trt = trt
        self.path = Path(path)
        self.name = f"tensorrt:{self.path.name}"
        sidecar = read_sidecar(self.path)
        if sidecar:
            check_engine_sidecar(sidecar, trt.__version__, self.cuda.device_name(), self.path)
        else:
            warnings.warn(
                f"{self.path} has no sidecar ({self.path.name}.json): its TensorRT version and "
                f"GPU are not checked; shapes and types are read from the engine",
                EngineWarning,
                stacklevel=2,
            )
        self.sidecar = sidecar
        self.dla_core: int | None = sidecar.get("dla_core")
        self._buffers: dict[str, tuple[np.ndarray, int]] = {}
        self._batch = 0
        self.stream = 0
        with self.cuda.context():
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            if sidecar.get("version_compatible"):  # it carries its lean runtime
                runtime.engine_host_code_allowed = True
            if self.dla_core is not None:
                set_dla_core(runtime, self.dla_core, self.path)
            self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise DenseDepthError(f"TensorRT cannot deserialize {self.path}; rebuild it here")
            self.context = self.engine.create_execution_context()
            self.stream = self.cuda.stream()
        self.input_name, self.output_name = self._io_names()
        dims = tuple(int(d) for d in self.engine.get_tensor_shape(self.input_name))
        if len(dims) != 4 or dims[1] != 3 or min(dims[2:]) < 1:
            raise DenseDepthError(
                f"{self.path}: input {self.input_name!r} is {dims}; expected N x 3 x H x W "
                f"with a fixed H and W"
            )
        self.dynamic = dims[0] == -1
        if self.dynamic:
            profile = self.engine.get_tensor_profile_shape(self.input_name, 0)
            self.min_batch, self.max_batch = int(profile[0][0]), int(profile[2][0])
        else:
            self.min_batch = self.max_batch = dims[0]
        self.input_shape = (1, 3, dims[2], dims[3])
        kinds = {n: self.engine.get_tensor_dtype(n) for n in (self.input_name, self.output_name)}
        self.io_dtypes = {n: io_dtype(trt, kind, n, self.path) for n, kind in kinds.items()}
        self.bf16 = {n for n, kind in kinds.items() if getattr(kind, "name", "") == "BF16"}
        # the engine's own input size wins over the sidecar's; no sidecar: precision unknown
        self.info = model_info({"precision": "unknown", **sidecar, "input_size": dims[2:]})
        self.precision = self.info.precision

    def _io_names(self) -> tuple[str, str]:
        """(input, output) tensor names; exactly one of each."""
        trt, engine = self._trt, self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise DenseDepthError(
                f"{self.path} has inputs {inputs} and outputs {outputs}; a DenseDepth engine "
                f"has one RGB input and one depth output"
            )
        return inputs[0], outputs[0]

    def _release(self) -> None:
        for host, device in getattr(self, "_buffers", {}).values():
            self.cuda.free(device)
            self.cuda.host_free(host)
        self._buffers = {}
        self._batch = 0

    def _allocate(self, batch: int) -> None:
        """Page-locked host + device buffers for ``batch`` images, sized from the engine's
        shapes and dtypes and bound by tensor name (inside the CUDA context)."""
        engine, context = self.engine, self.context
        self._release()
        if -1 in tuple(engine.get_tensor_shape(self.input_name)):
            shape = (batch, *self.input_shape[1:])
            if not context.set_input_shape(self.input_name, shape):
                raise DenseDepthError(
                    f"{self.name}: TensorRT refused input shape {shape} (profile batch "
                    f"{self.min_batch}..{self.max_batch})"
                )
        for name in (self.input_name, self.output_name):
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            if min(shape) < 0:
                raise DenseDepthError(f"{self.name}: {name!r} still has an unknown size {shape}")
            host = self.cuda.host_empty(shape, self.io_dtypes[name])
            device = self.cuda.alloc(host.nbytes)
            self._buffers[name] = (host, device)
            if context.set_tensor_address(name, device) is False:
                raise DenseDepthError(f"{self.name}: TensorRT refused the address of {name!r}")
        self._batch = batch

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """RGB batch (N,3,H,W) float32 in [0,1] -> metres (N,1,H/2,W/2) float32."""
        self._check_open()
        x = check_batch(self.name, batch, self.input_shape)
        step = self.max_batch
        with self.cuda.context():
            parts = [self._run(x[i : i + step]) for i in range(0, x.shape[0], step)]
        return np.concatenate(parts)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """At most ``max_batch`` images; fewer than the engine takes (a static batch-N
        engine, a profile whose minimum is above 1) are padded with the last image, and only
        their own outputs returned."""
        n = x.shape[0]
        need = max(n if self.dynamic else self.max_batch, self.min_batch)
        if n < need:
            x = np.concatenate([x, np.repeat(x[-1:], need - n, axis=0)])
        if x.shape[0] != self._batch:
            self._allocate(x.shape[0])
        host_in, dev_in = self._buffers[self.input_name]
        host_out, dev_out = self._buffers[self.output_name]
        if self.input_name in self.bf16:
            np.copyto(host_in, float32_to_bf16_bits(x))
        else:
            np.copyto(host_in, x.astype(host_in.dtype, copy=False))
        self.cuda.htod(dev_in, host_in, self.stream)
        if not self.context.execute_async_v3(stream_handle=self.stream):
            raise DenseDepthError(f"{self.name}: TensorRT execution failed")
        self.cuda.dtoh(host_out, dev_out, self.stream)
        self.cuda.synchronize(self.stream)
        if self.output_name in self.bf16:
            return bf16_bits_to_float32(host_out)[:n].copy()
        return np.array(host_out[:n], dtype=np.float32, copy=True)

    def time_gpu_compute(
        self,
        batch: int,
        iters: int = 10,
        min_time: float = 3.0,
        warmup_s: float = WARMUP_S,
        cuda_graph: bool = False,
        max_iters: int = 100_000,
    ) -> tuple[list[float], dict[str, Any]]:
        """GPU compute time of one launch of ``batch`` images (at most ``max_batch``, padded
        as ``__call__`` pads), in milliseconds: CUDA events recorded on the stream around
        ``execute_async_v3`` (or the CUDA graph's launch) on device-resident buffers, the input
        copied once and no copies timed: trtexec's "GPU Compute Time". Launches for
        ``warmup_s`` seconds first (trtexec's --warmUp, 200 ms), then at least ``iters``
        launches and ``min_time`` seconds. ``cuda_graph``: capture one launch as a CUDA graph
        after the warm-up and time its launches; where the capture fails (an engine with ops
        not permitted under capture, a binding without graphs), time plain launches and say
        why, as trtexec --useCudaGraph does. Returns the times and what was used."""
        self._check_open()
        if not 1 <= batch <= self.max_batch:
            raise DenseDepthError(f"{self.name}: batch {batch} is outside 1..{self.max_batch}")
        need = max(batch if self.dynamic else self.max_batch, self.min_batch)
        x = parity_input(tuple(self.input_shape[2:]), batch=need)
        info: dict[str, Any] = {"cuda_graph": False, "launch_batch": need}
        with self.cuda.context():
            self._run(x)  # buffers for this batch, the input on the device, deferred setup done

            def enqueue() -> bool:
                return bool(self.context.execute_async_v3(stream_handle=self.stream))

            start = time.perf_counter()
            while time.perf_counter() - start < warmup_s:
                if not enqueue():
                    raise DenseDepthError(f"{self.name}: TensorRT execution failed")
                self.cuda.synchronize(self.stream)
            launch, graph = enqueue, None
            if cuda_graph:
                try:
                    graph = self.cuda.capture_graph(self.stream, enqueue)
                except CudaError as exc:
                    info["cuda_graph_note"] = f"timed without a CUDA graph: {error_line(exc)}"
                else:
                    info["cuda_graph"] = True

                    def launch() -> bool:
                        self.cuda.graph_launch(graph, self.stream)
                        return True

            try:
                times = self._timed_launches(launch, iters, min_time, max_iters)
            finally:
                if graph is not None:
                    self.cuda.graph_free(graph)
        return times, info

    def _timed_launches(
        self, launch: Any, iters: int, min_time: float, max_iters: int
    ) -> list[float]:
        """Milliseconds between two events around each ``launch()`` (see time_gpu_compute)."""
        first, last = self.cuda.event(), self.cuda.event()
        times: list[float] = []
        try:
            start = time.perf_counter()
            while len(times) < max_iters and (
                len(times) < iters or time.perf_counter() - start < min_time
            ):
                self.cuda.record(first, self.stream)
                if not launch():
                    raise DenseDepthError(f"{self.name}: TensorRT execution failed")
                self.cuda.record(last, self.stream)
                times.append(self.cuda.elapsed_ms(first, last))
        finally:
            self.cuda.event_free(first)
            self.cuda.event_free(last)
        return times

    def _release_resources(self) -> None:
        """Free the device and host buffers, the stream, the execution context and the
        engine (inside the CUDA context they were made in)."""
        if getattr(self, "cuda", None) is None:
            return
        with self.cuda.context():
            self._release()
            if getattr(self, "stream", 0):
                self.cuda.stream_free(self.stream)
                self.stream = 0
            self.context = None  # TensorRT destroys them with their last reference
            self.engine = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown, a context already gone
            self.close()
