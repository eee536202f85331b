"""CUDA memory for TensorRT through one small interface, backed by pycuda or cuda-python.

TensorRT's Python API takes device pointers and stream handles as integers; moving data needs
a CUDA binding. Two are supported, the first importable one is used (``DD_CUDA_BACKEND=pycuda``
or ``cuda-python`` picks one):

- ``pycuda`` (the design card's choice; on Jetson it is built against JetPack's CUDA),
- ``cuda-python`` (``cuda.bindings.driver``; wheels on PyPI, no CUDA toolkit needed: what
  NVIDIA's TensorRT 10 Python samples use).

Both work on the device's primary context: retained once, pushed around every piece of work
and popped after, so TensorRT (which uses the primary context through the runtime API), the
builder's calibrator and the runner share one context and nothing is left current.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from densedepth.util.errors import BackendUnavailable, DenseDepthError

BACKENDS = ("pycuda", "cuda-python")
ENV_VAR = "DD_CUDA_BACKEND"
# The oldest Linux driver of each CUDA major (NVIDIA's CUDA release notes, "CUDA Toolkit and
# Corresponding Driver Versions", minor-version compatibility): a cuda-python of major M
# needs a driver whose CUDA is M or newer (cuDriverGetVersion >= M * 1000).
DRIVER_FOR_CUDA = {12: "525.60.13", 13: "580.65.06"}
# CUresult names that mean "no usable GPU here" (bench: not available); any other failure
# (out of memory, an illegal address, a failed launch) is the row's failure.
UNAVAILABLE_CODES = frozenset({
    "CUDA_ERROR_NOT_INITIALIZED", "CUDA_ERROR_DEINITIALIZED", "CUDA_ERROR_NO_DEVICE",
    "CUDA_ERROR_STUB_LIBRARY", "CUDA_ERROR_DEVICE_UNAVAILABLE",
    "CUDA_ERROR_INVALID_DEVICE", "CUDA_ERROR_INSUFFICIENT_DRIVER",
    "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
})  # fmt: skip


class CudaError(DenseDepthError):
    """A CUDA call failed at run time (out of memory, illegal address); the message says
    which call and the driver's code."""


class CudaUnavailable(CudaError, BackendUnavailable):
    """No usable CUDA here: no driver, no such device, a driver too old for the binding."""


class DriverTooOld(CudaUnavailable):
    """The driver's CUDA is older than the cuda-python binding's major (NVIDIA's rule)."""


def cuda_ordinal(device: str) -> int:
    """The CUDA device number of a runner's ``device``: ``auto``, ``cuda`` or ``gpu`` -> 0,
    ``cuda:N`` -> N; anything else is one clear line."""
    name = str(device).strip().lower()
    if name in ("auto", "cuda", "gpu", ""):
        return 0
    head, _, index = name.partition(":")
    if head == "cuda" and index.isdigit():
        return int(index)
    raise DenseDepthError(f"device {device!r} is not a CUDA device; use cuda or cuda:N")


def binding_version() -> str | None:
    """The installed cuda-python's version (cuda-bindings since 12.6, else cuda-python)."""
    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def driver_mismatch(driver_cuda: int, binding: str | None) -> str | None:
    """Why a cuda-python ``binding`` cannot run on a driver whose CUDA is ``driver_cuda``
    (cuDriverGetVersion: 12080 = 12.8), or None."""
    if not binding or not binding.split(".")[0].isdigit():
        return None
    major, have = int(binding.split(".")[0]), driver_cuda // 1000
    if have >= major:
        return None
    floor = DRIVER_FOR_CUDA.get(major, "newer")
    return (
        f"cuda-python {binding} needs a driver for CUDA {major} ({floor} or newer); this "
        f"driver runs CUDA {have}.{driver_cuda % 1000 // 10}: pip install 'cuda-python<{major}'"
        f" (or update the driver)"
    )


class CudaBackend:
    """What TensorRT's builder and runner need from CUDA (one device, its primary context)."""

    name = ""
    ordinal = 0

    def device_count(self) -> int:
        """CUDA devices visible here (0 when there is no driver)."""
        raise NotImplementedError

    def device_name(self) -> str:
        """Name of this device (what engine sidecars record)."""
        raise NotImplementedError

    def push(self) -> None:
        """Make this device's primary context current (retained on first use)."""
        raise NotImplementedError

    def pop(self) -> None:
        """Undo one ``push``."""
        raise NotImplementedError

    @contextmanager
    def context(self) -> Iterator[None]:
        """The primary context, current for the duration."""
        self.push()
        try:
            yield
        finally:
            self.pop()

    def alloc(self, nbytes: int) -> int:
        """Device memory of ``nbytes``; returns its address."""
        raise NotImplementedError

    def free(self, ptr: int) -> None:
        """Release device memory from ``alloc``."""
        raise NotImplementedError

    def host_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A page-locked host array (fast, asynchronous copies)."""
        raise NotImplementedError

    def host_free(self, array: np.ndarray) -> None:
        """Release a page-locked array from ``host_empty`` (a no-op where GC does it)."""

    def stream(self) -> int:
        """A new stream; returns its handle."""
        raise NotImplementedError

    def stream_free(self, handle: int) -> None:
        """Destroy a stream from ``stream``."""

    def htod(self, ptr: int, host: np.ndarray, stream: int | None = None) -> None:
        """Copy ``host`` to device address ``ptr`` (asynchronously on ``stream`` when given)."""
        raise NotImplementedError

    def dtoh(self, host: np.ndarray, ptr: int, stream: int | None = None) -> None:
        """Copy device address ``ptr`` into ``host`` (asynchronously on ``stream`` when given)."""
        raise NotImplementedError

    def synchronize(self, handle: int) -> None:
        """Wait for everything queued on the stream."""
        raise NotImplementedError

    def event(self) -> int:
        """A timing event (CU_EVENT_DEFAULT: timing enabled); returns its handle."""
        raise NotImplementedError

    def event_free(self, event: int) -> None:
        """Destroy an event from ``event``."""

    def record(self, event: int, stream: int) -> None:
        """Record ``event`` on ``stream``: it completes when the work queued before it does."""
        raise NotImplementedError

    def elapsed_ms(self, start: int, end: int) -> float:
        """GPU milliseconds between two recorded events (waits for ``end`` first)."""
        raise NotImplementedError

    def capture_graph(self, stream: int, enqueue: Callable[[], bool]) -> int:
        """A CUDA graph of what ``enqueue()`` queues on ``stream``, instantiated (trtexec's
        protocol: capture thread-local, instantiate, drop the graph); CudaError when the
        capture fails or ``enqueue`` returns False, the capture ended either way."""
        raise CudaError(f"CUDA graphs are not offered through {self.name}: pip install cuda-python")

    def graph_launch(self, graph: int, stream: int) -> None:
        """Launch an instantiated graph from ``capture_graph`` on ``stream``."""
        raise NotImplementedError

    def graph_free(self, graph: int) -> None:
        """Destroy an instantiated graph."""


class PyCudaBackend(CudaBackend):
    """pycuda.driver: explicit primary context, ``DeviceAllocation`` and ``Stream`` objects
    kept alive here and handed out as integers."""

    name = "pycuda"

    def __init__(self, ordinal: int = 0) -> None:
        self.cuda = importlib.import_module("pycuda.driver")
        try:
            self.cuda.init()
        except Exception as exc:  # pycuda raises its own RuntimeError/LogicError types
            raise CudaUnavailable(f"CUDA (pycuda) cannot start: {exc}") from None
        self.ordinal = _check_ordinal(ordinal, int(self.cuda.Device.count()))
        self._context: Any = None
        self._allocs: dict[int, Any] = {}
        self._streams: dict[int, Any] = {}
        self._events: dict[int, Any] = {}

    def device_count(self) -> int:
        return int(self.cuda.Device.count())

    def device_name(self) -> str:
        return str(self.cuda.Device(self.ordinal).name())

    def push(self) -> None:
        if self._context is None:
            self._context = self.cuda.Device(self.ordinal).retain_primary_context()
        self._context.push()

    def pop(self) -> None:
        self.cuda.Context.pop()

    def alloc(self, nbytes: int) -> int:
        allocation = self.cuda.mem_alloc(max(int(nbytes), 1))
        self._allocs[int(allocation)] = allocation
        return int(allocation)

    def free(self, ptr: int) -> None:
        allocation = self._allocs.pop(ptr, None)
        if allocation is not None:
            allocation.free()

    def host_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return self.cuda.pagelocked_empty(tuple(shape), np.dtype(dtype))

    def stream(self) -> int:
        stream = self.cuda.Stream()
        self._streams[int(stream.handle)] = stream
        return int(stream.handle)

    def stream_free(self, handle: int) -> None:
        self._streams.pop(handle, None)

    def htod(self, ptr: int, host: np.ndarray, stream: int | None = None) -> None:
        if stream is None:
            self.cuda.memcpy_htod(ptr, host)
        else:
            self.cuda.memcpy_htod_async(ptr, host, self._streams[stream])

    def dtoh(self, host: np.ndarray, ptr: int, stream: int | None = None) -> None:
        if stream is None:
            self.cuda.memcpy_dtoh(host, ptr)
        else:
            self.cuda.memcpy_dtoh_async(host, ptr, self._streams[stream])

    def synchronize(self, handle: int) -> None:
        self._streams[handle].synchronize()

    def event(self) -> int:
        made = self.cuda.Event()
        self._events[id(made)] = made
        return id(made)

    def event_free(self, event: int) -> None:
        self._events.pop(event, None)

    def record(self, event: int, stream: int) -> None:
        self._events[event].record(self._streams[stream])

    def elapsed_ms(self, start: int, end: int) -> float:
        self._events[end].synchronize()
        return float(self._events[end].time_since(self._events[start]))


def _check_ordinal(ordinal: int, count: int) -> int:
    """``ordinal`` when such a device exists, else CudaUnavailable saying how many do."""
    if not 0 <= ordinal < count:
        raise CudaUnavailable(f"cuda:{ordinal} asked for, {count} CUDA device(s) visible")
    return ordinal


def _driver_module() -> Any:
    """cuda-python's driver API: ``cuda.bindings.driver`` (12.6+) or the older ``cuda.cuda``."""
    try:
        return importlib.import_module("cuda.bindings.driver")
    except ImportError:
        return importlib.import_module("cuda.cuda")


class CudaPythonBackend(CudaBackend):
    """cuda-python's driver API: every call returns ``(CUresult, values...)``, checked here."""

    name = "cuda-python"

    def __init__(self, ordinal: int = 0) -> None:
        self.drv = _driver_module()
        try:
            started = self.drv.cuInit(0)
        except Exception as exc:  # cuda-python raises when the driver library is missing
            raise CudaUnavailable(f"CUDA (cuda-python) cannot start: {exc}") from None
        self._check(started, "cuInit")
        driver = int(self._check(self.drv.cuDriverGetVersion(), "cuDriverGetVersion"))
        mismatch = driver_mismatch(driver, binding_version())
        if mismatch:
            raise DriverTooOld(mismatch)
        self.ordinal = _check_ordinal(ordinal, self.device_count())
        self._device: Any = None
        self._context: Any = None
        self._hosts: dict[int, int] = {}  # id(array) -> pinned address
        self._streams: dict[int, Any] = {}
        self._events: dict[int, Any] = {}
        self._graphs: dict[int, Any] = {}

    def _check(self, result: Any, what: str) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.drv.CUresult.CUDA_SUCCESS:
            code = getattr(err, "name", str(err))
            kind = CudaUnavailable if code in UNAVAILABLE_CODES else CudaError
            raise kind(f"CUDA (cuda-python) {what} failed: {code}")
        return values[0] if len(values) == 1 else values

    def _dev(self) -> Any:
        if self._device is None:
            self._device = self._check(self.drv.cuDeviceGet(self.ordinal), "cuDeviceGet")
        return self._device

    def device_count(self) -> int:
        return int(self._check(self.drv.cuDeviceGetCount(), "cuDeviceGetCount"))

    def device_name(self) -> str:
        raw = self._check(self.drv.cuDeviceGetName(256, self._dev()), "cuDeviceGetName")
        return bytes(raw).split(b"\0", 1)[0].decode()

    def push(self) -> None:
        if self._context is None:
            retain = self.drv.cuDevicePrimaryCtxRetain(self._dev())
            self._context = self._check(retain, "cuDevicePrimaryCtxRetain")
        self._check(self.drv.cuCtxPushCurrent(self._context), "cuCtxPushCurrent")

    def pop(self) -> None:
        self._check(self.drv.cuCtxPopCurrent(), "cuCtxPopCurrent")

    def alloc(self, nbytes: int) -> int:
        return int(self._check(self.drv.cuMemAlloc(max(int(nbytes), 1)), "cuMemAlloc"))

    def free(self, ptr: int) -> None:
        self._check(self.drv.cuMemFree(ptr), "cuMemFree")

    def host_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = max(count * dtype.itemsize, 1)
        ptr = int(self._check(self.drv.cuMemHostAlloc(nbytes, 0), "cuMemHostAlloc"))
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        array = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
        self._hosts[id(array)] = ptr
        return array

    def host_free(self, array: np.ndarray) -> None:
        ptr = self._hosts.pop(id(array), None)
        if ptr is not None:
            self._check(self.drv.cuMemFreeHost(ptr), "cuMemFreeHost")

    def stream(self) -> int:
        stream = self._check(self.drv.cuStreamCreate(0), "cuStreamCreate")
        self._streams[int(stream)] = stream
        return int(stream)

    def stream_free(self, handle: int) -> None:
        stream = self._streams.pop(handle, None)
        if stream is not None:
            self._check(self.drv.cuStreamDestroy(stream), "cuStreamDestroy")

    def htod(self, ptr: int, host: np.ndarray, stream: int | None = None) -> None:
        src, n = host.ctypes.data, host.nbytes
        if stream is None:
            self._check(self.drv.cuMemcpyHtoD(ptr, src, n), "cuMemcpyHtoD")
        else:
            call = self.drv.cuMemcpyHtoDAsync(ptr, src, n, self._streams[stream])
            self._check(call, "cuMemcpyHtoDAsync")

    def dtoh(self, host: np.ndarray, ptr: int, stream: int | None = None) -> None:
        dst, n = host.ctypes.data, host.nbytes
        if stream is None:
            self._check(self.drv.cuMemcpyDtoH(dst, ptr, n), "cuMemcpyDtoH")
        else:
            call = self.drv.cuMemcpyDtoHAsync(dst, ptr, n, self._streams[stream])
            self._check(call, "cuMemcpyDtoHAsync")

    def synchronize(self, handle: int) -> None:
        self._check(self.drv.cuStreamSynchronize(self._streams[handle]), "cuStreamSynchronize")

    def event(self) -> int:
        made = self._check(self.drv.cuEventCreate(0), "cuEventCreate")  # CU_EVENT_DEFAULT
        self._events[int(made)] = made
        return int(made)

    def event_free(self, event: int) -> None:
        made = self._events.pop(event, None)
        if made is not None:
            self._check(self.drv.cuEventDestroy(made), "cuEventDestroy")

    def record(self, event: int, stream: int) -> None:
        call = self.drv.cuEventRecord(self._events[event], self._streams[stream])
        self._check(call, "cuEventRecord")

    def elapsed_ms(self, start: int, end: int) -> float:
        self._check(self.drv.cuEventSynchronize(self._events[end]), "cuEventSynchronize")
        call = self.drv.cuEventElapsedTime(self._events[start], self._events[end])
        return float(self._check(call, "cuEventElapsedTime"))

    def capture_graph(self, stream: int, enqueue: Callable[[], bool]) -> int:
        drv, handle = self.drv, self._streams[stream]
        mode = drv.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        self._check(drv.cuStreamBeginCapture(handle, mode), "cuStreamBeginCapture")
        try:
            queued = enqueue()
        except Exception:
            drv.cuStreamEndCapture(handle)  # end it; the graph (if any) is dropped
            raise
        ended = drv.cuStreamEndCapture(handle)
        err, graph = ended if isinstance(ended, tuple) else (ended, None)
        if not queued or err != drv.CUresult.CUDA_SUCCESS:
            if err == drv.CUresult.CUDA_SUCCESS and graph is not None:
                drv.cuGraphDestroy(graph)
            why = "enqueue failed under capture" if queued is False else getattr(err, "name", err)
            raise CudaError(f"CUDA graph capture failed: {why}")
        try:
            made = self._check(drv.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")
        finally:
            drv.cuGraphDestroy(graph)
        self._graphs[int(made)] = made
        return int(made)

    def graph_launch(self, graph: int, stream: int) -> None:
        call = self.drv.cuGraphLaunch(self._graphs[graph], self._streams[stream])
        self._check(call, "cuGraphLaunch")

    def graph_free(self, graph: int) -> None:
        made = self._graphs.pop(graph, None)
        if made is not None:
            self._check(self.drv.cuGraphExecDestroy(made), "cuGraphExecDestroy")


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def backend_installed() -> str | None:
    """The CUDA binding that would be used here (``pycuda`` / ``cuda-python``), or None."""
    wanted = os.environ.get(ENV_VAR, "")
    if wanted and wanted not in BACKENDS:
        raise CudaUnavailable(f"{ENV_VAR}={wanted!r}; choose {' or '.join(BACKENDS)}")
    found = {
        "pycuda": _installed("pycuda"),
        "cuda-python": _installed("cuda.bindings") or _installed("cuda.cuda"),
    }
    if wanted:
        return wanted if found[wanted] else None
    return next((name for name in BACKENDS if found[name]), None)


def cuda_backend(ordinal: int = 0) -> CudaBackend:
    """The CUDA binding to use here, started on device ``ordinal``; one clear line when
    there is none."""
    name = backend_installed()
    if name is None:
        raise BackendUnavailable(
            "TensorRT needs a CUDA binding: pip install cuda-python (or pycuda, built against "
            "the CUDA toolkit; JetPack ships both)"
        )
    return PyCudaBackend(ordinal) if name == "pycuda" else CudaPythonBackend(ordinal)


def cuda_device_count() -> int:
    """CUDA devices visible through the installed binding; 0 when none or no driver."""
    try:
        return cuda_backend().device_count()
    except Exception:  # no binding, no driver library, no device: all mean "no GPU here"
        return 0


def gpu_unavailable_reason() -> str | None:
    """Why no CUDA GPU can be used here (no CUDA binding, or no device), or None."""
    if backend_installed() is None:
        return "needs a CUDA binding: pip install cuda-python (or pycuda)"
    try:
        count = cuda_backend().device_count()
    except DriverTooOld as exc:  # a GPU is there, but not for this binding: say how to fix it
        return str(exc)
    except Exception:  # no driver library, no device: "no GPU here"
        count = 0
    if count == 0:
        return "needs an NVIDIA GPU with CUDA (none visible)"
    return None
