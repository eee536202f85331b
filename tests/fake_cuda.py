"""A GPU made of host memory, behind fake ``pycuda.driver`` and ``cuda.bindings.driver`` modules.

Both modules follow their libraries' documented APIs (pycuda's ``Device``, ``Context``,
``mem_alloc``, ``pagelocked_empty``, ``memcpy_*``, ``Stream``; cuda-python's ``cu*`` functions
returning ``(CUresult, values...)``, with the parameter names of the real docstrings, which a
test compares with the installed ``cuda.bindings``) and share one ``FakeGPU``: device memory is
bytearrays at made-up addresses, copies move bytes, and a context stack says what is current.
Every memory call and every kernel launch needs a current context, as on a real driver
(CUDA_ERROR_INVALID_CONTEXT), so code that allocates outside one fails here as it would there.

Streams keep a virtual clock (milliseconds of GPU work): an asynchronous copy costs its bytes
over ``copy_gb_per_s``, a kernel what its launcher says, and a kernel enqueued from the host
one by one leaves the GPU idle for ``launch_gap_ms`` first (what a CUDA graph removes). Events
read that clock as CUDA's do: ``cuEventElapsedTime`` needs both events recorded and completed
(a stream or event synchronize completes them; CUDA_ERROR_NOT_READY before,
CUDA_ERROR_INVALID_HANDLE for one never recorded or made with CU_EVENT_DISABLE_TIMING).
Stream capture follows the driver's rules: work queued on a capturing stream is recorded, not
run; synchronizing a capturing stream, or a synchronous copy during capture, is
CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidates the capture (cuStreamEndCapture then
returns CUDA_ERROR_STREAM_CAPTURE_INVALIDATED and no graph); a launched graph replays the work.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import sys
import types
from typing import Any

import numpy as np


class FakeCudaError(RuntimeError):
    """What the fake driver raises (pycuda raises its own errors; cuda-python returns codes)."""


class FakeGPU:
    """Device memory, contexts and streams of one pretend GPU."""

    def __init__(
        self,
        name: str = "NVIDIA H100 80GB HBM3",
        count: int = 1,
        driver_cuda: int = 13000,
        memory_limit: int | None = None,
    ) -> None:
        self.name, self.count = name, count
        self.driver_cuda = driver_cuda  # cuDriverGetVersion: 13000 = CUDA 13.0 (an R580 driver)
        self.memory_limit = memory_limit  # bytes of device memory (None: unbounded)
        self.ordinals: list[int] = []  # devices asked for (cuDeviceGet / Device(n))
        self.memory: dict[int, bytearray] = {}
        self.freed: list[int] = []
        self.stack: list[str] = []  # current context on top
        self.retained = 0
        self.streams: set[int] = set()
        self.hosts: dict[int, Any] = {}  # pinned host allocations (cuda-python), kept alive
        self.calls: list[str] = []
        self._next = 0x7F0000000000
        self.launches = 0
        self.copy_gb_per_s = 12.0  # host <-> device bandwidth of the virtual clock
        self.launch_gap_ms = 0.05  # GPU idle before a kernel the host enqueues by itself
        self.clock: dict[int, float] = {}  # stream -> ms of GPU work done on it
        self.events: dict[int, dict[str, Any]] = {}
        self.recorded = 0  # events recorded so far (their order on the streams)
        self.capturing: dict[int, list[tuple[Any, float]]] = {}  # stream -> captured work
        self.invalidated: set[int] = set()
        self.graphs: dict[int, list[tuple[Any, float]]] = {}

    # contexts
    def push(self, ctx: str) -> None:
        self.stack.append(ctx)

    def pop(self) -> str:
        if not self.stack:
            raise FakeCudaError("cuCtxPopCurrent: no current context")
        return self.stack.pop()

    def require_context(self, what: str) -> None:
        if not self.stack:
            raise FakeCudaError(f"{what}: CUDA_ERROR_INVALID_CONTEXT (no current context)")

    # memory
    def alloc(self, nbytes: int) -> int:
        self.require_context("cuMemAlloc")
        if nbytes <= 0:
            raise FakeCudaError("cuMemAlloc: CUDA_ERROR_INVALID_VALUE (0 bytes)")
        if self.memory_limit is not None and self.live_bytes + nbytes > self.memory_limit:
            raise FakeCudaError(f"cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY ({nbytes} bytes)")
        ptr = self._next
        self._next += (nbytes + 0xFFF) & ~0xFFF
        self.memory[ptr] = bytearray(nbytes)
        return ptr

    def free(self, ptr: int) -> None:
        self.require_context("cuMemFree")
        if ptr not in self.memory:
            raise FakeCudaError(f"cuMemFree: {ptr:#x} is not an allocation")
        del self.memory[ptr]
        self.freed.append(ptr)

    def view(self, ptr: int, nbytes: int) -> memoryview:
        """The ``nbytes`` at device address ``ptr``; an error when they leave the allocation."""
        for base, buf in self.memory.items():
            if base <= ptr < base + len(buf):
                if ptr + nbytes > base + len(buf):
                    raise FakeCudaError(
                        f"access of {nbytes} bytes at {ptr:#x} overruns an allocation of "
                        f"{len(buf)} bytes"
                    )
                return memoryview(buf)[ptr - base : ptr - base + nbytes]
        raise FakeCudaError(f"{ptr:#x} is not device memory")

    def write(self, ptr: int, data: bytes) -> None:
        self.require_context("memcpy HtoD")
        self.view(ptr, len(data))[:] = data

    def read(self, ptr: int, nbytes: int) -> bytes:
        self.require_context("memcpy DtoH")
        return bytes(self.view(ptr, nbytes))

    def stream(self) -> int:
        self.require_context("cuStreamCreate")
        handle = 0x5000 + len(self.streams) + 1
        self.streams.add(handle)
        return handle

    @property
    def live_bytes(self) -> int:
        return sum(len(b) for b in self.memory.values())

    # the virtual clock, events and stream capture (see the module docstring)
    def copy_ms(self, nbytes: int) -> float:
        return nbytes / (self.copy_gb_per_s * 1e6)

    def enqueue(self, stream: int, work: Any, cost_ms: float, gap_ms: float = 0.0) -> None:
        """Run ``work`` on ``stream`` at ``cost_ms`` of GPU time (plus the idle ``gap_ms``
        of a host-enqueued kernel), or record it when the stream is capturing."""
        self.require_context("stream work")
        if stream not in self.streams:
            raise FakeCudaError(f"{stream:#x}: CUDA_ERROR_INVALID_HANDLE (not a stream)")
        if stream in self.capturing:
            self.capturing[stream].append((work, cost_ms))
            return
        work()
        self.clock[stream] = self.clock.get(stream, 0.0) + gap_ms + cost_ms

    def synchronous_copy(self, what: str) -> None:
        """A synchronous copy is not allowed while a stream captures (and ends that capture)."""
        if self.capturing:
            self.invalidated.update(self.capturing)
            raise FakeCudaError(f"{what} in a capture: CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED")

    def sync_stream(self, stream: int) -> None:
        self.require_context("cuStreamSynchronize")
        if stream in self.capturing:
            self.invalidated.add(stream)
            raise FakeCudaError("sync of a capturing stream: CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED")
        for event in self.events.values():
            if event["stream"] == stream:
                event["done"] = True

    def new_event(self, flags: int = 0) -> int:
        self.require_context("cuEventCreate")
        handle = 0xE000 + len(self.events) + 1
        self.events[handle] = {"time": None, "stream": None, "done": False, "order": 0,
                               "timing": not flags & 2}  # fmt: skip
        return handle

    def record_event(self, handle: int, stream: int) -> None:
        event = self.events[handle]

        def stamp() -> None:
            self.recorded += 1
            event.update(time=self.clock.get(stream, 0.0), stream=stream, done=False,
                         order=self.recorded)  # fmt: skip

        self.enqueue(stream, stamp, 0.0)

    def sync_event(self, handle: int) -> None:
        """The event and, by stream order, every event recorded before it on its stream."""
        this = self.events[handle]
        if this["time"] is None:
            return
        for event in self.events.values():
            if event["stream"] == this["stream"] and event["order"] <= this["order"]:
                event["done"] = True

    def elapsed(self, start: int, end: int) -> float:
        a, b = self.events[start], self.events[end]
        if a["time"] is None or b["time"] is None or not (a["timing"] and b["timing"]):
            raise FakeCudaError("cuEventElapsedTime: CUDA_ERROR_INVALID_HANDLE")
        if not (a["done"] and b["done"]):
            raise FakeCudaError("cuEventElapsedTime: CUDA_ERROR_NOT_READY")
        return float(b["time"] - a["time"])

    def begin_capture(self, stream: int) -> None:
        if stream in self.capturing:
            raise FakeCudaError("cuStreamBeginCapture: CUDA_ERROR_ILLEGAL_STATE (capturing)")
        self.capturing[stream] = []

    def end_capture(self, stream: int) -> int | None:
        """The graph's handle, or None for an invalidated capture (FakeCudaError)."""
        if stream not in self.capturing:
            raise FakeCudaError("cuStreamEndCapture: CUDA_ERROR_ILLEGAL_STATE (not capturing)")
        work = self.capturing.pop(stream)
        if stream in self.invalidated:
            self.invalidated.discard(stream)
            raise FakeCudaError("cuStreamEndCapture: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED")
        handle = 0x6000 + len(self.graphs) + 1
        self.graphs[handle] = work
        return handle

    def launch_graph(self, handle: int, stream: int) -> None:
        for work, cost in self.graphs[handle]:
            self.enqueue(stream, work, cost)


def _module(name: str, package: bool = False) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=package)
    if package:
        module.__path__ = []  # type: ignore[attr-defined]
    return module


# ------------------------------------------------------------------------------------------
# pycuda.driver
# ------------------------------------------------------------------------------------------


def make_pycuda(gpu: FakeGPU) -> dict[str, types.ModuleType]:
    """``pycuda`` and ``pycuda.driver`` modules over ``gpu`` (for ``sys.modules``)."""
    drv = _module("pycuda.driver")
    state = {"init": False}

    class Error(Exception):
        pass

    class LogicError(Error):
        pass

    def init(flags: int = 0) -> None:
        state["init"] = True

    def need_init() -> None:
        if not state["init"]:
            raise LogicError("cuInit has not been called")

    class Context:
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def push(self) -> None:
            gpu.calls.append("Context.push")
            gpu.push(self.tag)

        @staticmethod
        def pop() -> None:
            gpu.calls.append("Context.pop")
            gpu.pop()

        def detach(self) -> None:
            gpu.calls.append("Context.detach")

    class Device:
        def __init__(self, number: int) -> None:
            need_init()
            gpu.ordinals.append(int(number))
            if not 0 <= number < gpu.count:
                raise LogicError("cuDeviceGet failed: invalid device ordinal")
            self.number = number

        @staticmethod
        def count() -> int:
            need_init()
            return gpu.count

        def name(self) -> str:
            return gpu.name

        def retain_primary_context(self) -> Context:
            gpu.calls.append("Device.retain_primary_context")
            gpu.retained += 1
            return Context("primary")

        def make_context(self, flags: int = 0) -> Context:
            ctx = Context("own")
            gpu.push(ctx.tag)
            return ctx

    class DeviceAllocation:
        def __init__(self, ptr: int) -> None:
            self.ptr = ptr

        def __int__(self) -> int:
            return self.ptr

        __index__ = __int__

        def free(self) -> None:
            gpu.free(self.ptr)

    class Stream:
        def __init__(self, flags: int = 0) -> None:
            self.handle = gpu.stream()

        def synchronize(self) -> None:
            try:
                gpu.sync_stream(self.handle)
            except FakeCudaError as exc:
                raise LogicError(str(exc)) from None

        def __del__(self) -> None:  # pycuda destroys a stream when it is collected
            gpu.streams.discard(self.handle)

    class Event:  # pycuda.driver.Event: record(stream=None), synchronize(), time_since(event)
        def __init__(self, flags: int = 0) -> None:
            self.handle = gpu.new_event(flags)

        def record(self, stream: Any = None) -> Event:
            _check_stream(stream)
            if stream is None:
                raise LogicError("the fake GPU has no legacy stream: record on a Stream")
            gpu.record_event(self.handle, stream.handle)
            return self

        def synchronize(self) -> Event:
            gpu.sync_event(self.handle)
            return self

        def time_since(self, event: Event) -> float:
            try:
                return gpu.elapsed(event.handle, self.handle)
            except FakeCudaError as exc:
                raise LogicError(str(exc)) from None

    def mem_alloc(bytes: int) -> DeviceAllocation:
        gpu.calls.append(f"mem_alloc({bytes})")
        return DeviceAllocation(gpu.alloc(bytes))

    def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> Any:
        gpu.calls.append("pagelocked_empty")
        return np.empty(shape, dtype, order)

    def _check_stream(stream: Any) -> None:
        if stream is not None and not isinstance(stream, Stream):
            raise TypeError(f"stream must be a pycuda Stream, got {type(stream).__name__}")

    def _htod(dest: Any, src: Any) -> None:
        gpu.write(int(dest), np.ascontiguousarray(src).tobytes())

    def _dtoh(dest: Any, src: Any) -> None:
        data = gpu.read(int(src), dest.nbytes)
        dest[...] = np.frombuffer(data, dtype=dest.dtype).reshape(dest.shape)

    def memcpy_htod(dest: Any, src: Any) -> None:
        gpu.synchronous_copy("memcpy_htod")
        _htod(dest, src)

    def memcpy_htod_async(dest: Any, src: Any, stream: Any = None) -> None:
        _check_stream(stream)
        if stream is None:  # the legacy stream: ordered with everything, as a sync copy
            return memcpy_htod(dest, src)
        cost = gpu.copy_ms(np.asarray(src).nbytes)
        gpu.enqueue(stream.handle, lambda: _htod(dest, src), cost)

    def memcpy_dtoh(dest: Any, src: Any) -> None:
        gpu.synchronous_copy("memcpy_dtoh")
        _dtoh(dest, src)

    def memcpy_dtoh_async(dest: Any, src: Any, stream: Any = None) -> None:
        _check_stream(stream)
        if stream is None:
            return memcpy_dtoh(dest, src)
        gpu.enqueue(stream.handle, lambda: _dtoh(dest, src), gpu.copy_ms(dest.nbytes))

    for obj in (Error, LogicError, Context, Device, DeviceAllocation, Stream, Event, init,
                mem_alloc, pagelocked_empty, memcpy_htod, memcpy_htod_async, memcpy_dtoh,
                memcpy_dtoh_async):  # fmt: skip
        setattr(drv, obj.__name__, obj)
    package = _module("pycuda", package=True)
    package.driver = drv  # type: ignore[attr-defined]
    return {"pycuda": package, "pycuda.driver": drv}


# ------------------------------------------------------------------------------------------
# cuda.bindings.driver (cuda-python)
# ------------------------------------------------------------------------------------------


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_OUT_OF_MEMORY = 2
    CUDA_ERROR_NOT_INITIALIZED = 3
    CUDA_ERROR_NO_DEVICE = 100
    CUDA_ERROR_INVALID_DEVICE = 101
    CUDA_ERROR_INVALID_CONTEXT = 201
    CUDA_ERROR_INVALID_HANDLE = 400
    CUDA_ERROR_ILLEGAL_STATE = 401
    CUDA_ERROR_NOT_READY = 600
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900
    CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901


class CUstreamCaptureMode(enum.IntEnum):
    CU_STREAM_CAPTURE_MODE_GLOBAL = 0
    CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1
    CU_STREAM_CAPTURE_MODE_RELAXED = 2


# The functions the shim calls, with the parameters of cuda-python's docstrings.
CUDA_PYTHON_SIGNATURES = {
    "cuInit": ("Flags",),
    "cuDriverGetVersion": (),
    "cuDeviceGetCount": (),
    "cuDeviceGet": ("ordinal",),
    "cuDeviceGetName": ("length", "dev"),
    "cuDevicePrimaryCtxRetain": ("dev",),
    "cuDevicePrimaryCtxRelease": ("dev",),
    "cuCtxPushCurrent": ("ctx",),
    "cuCtxPopCurrent": (),
    "cuMemAlloc": ("bytesize",),
    "cuMemFree": ("dptr",),
    "cuMemHostAlloc": ("bytesize", "Flags"),
    "cuMemFreeHost": ("p",),
    "cuMemcpyHtoD": ("dstDevice", "srcHost", "ByteCount"),
    "cuMemcpyDtoH": ("dstHost", "srcDevice", "ByteCount"),
    "cuMemcpyHtoDAsync": ("dstDevice", "srcHost", "ByteCount", "hStream"),
    "cuMemcpyDtoHAsync": ("dstHost", "srcDevice", "ByteCount", "hStream"),
    "cuStreamCreate": ("Flags",),
    "cuStreamSynchronize": ("hStream",),
    "cuStreamDestroy": ("hStream",),
    "cuEventCreate": ("Flags",),
    "cuEventRecord": ("hEvent", "hStream"),
    "cuEventSynchronize": ("hEvent",),
    "cuEventElapsedTime": ("hStart", "hEnd"),
    "cuEventDestroy": ("hEvent",),
    "cuStreamBeginCapture": ("hStream", "mode"),
    "cuStreamEndCapture": ("hStream",),
    "cuGraphInstantiate": ("hGraph", "flags"),
    "cuGraphLaunch": ("hGraphExec", "hStream"),
    "cuGraphDestroy": ("hGraph",),
    "cuGraphExecDestroy": ("hGraphExec",),
}


class _Handle:
    """cuda-python's handle types (CUdevice, CUcontext, CUdeviceptr, CUstream): int() works."""

    def __init__(self, kind: str, value: int) -> None:
        self.kind, self.value = kind, value

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"<{self.kind} {self.value:#x}>"


def make_cuda_python(gpu: FakeGPU) -> dict[str, types.ModuleType]:
    """``cuda``, ``cuda.bindings`` and ``cuda.bindings.driver`` modules over ``gpu``."""
    drv = _module("cuda.bindings.driver")
    drv.CUresult = CUresult  # type: ignore[attr-defined]
    drv.CUstreamCaptureMode = CUstreamCaptureMode  # type: ignore[attr-defined]
    state = {"init": False}
    ok = CUresult.CUDA_SUCCESS

    def guarded(fn: Any) -> Any:
        def call(*args: Any) -> Any:
            gpu.calls.append(fn.__name__)
            if fn.__name__ != "cuInit" and not state["init"]:
                return (CUresult.CUDA_ERROR_NOT_INITIALIZED,)
            try:
                return fn(*args)
            except FakeCudaError as exc:
                named = [c for c in CUresult if c.name in str(exc)]
                code = named[0] if named else CUresult.CUDA_ERROR_INVALID_VALUE
                gpu.calls.append(f"{fn.__name__} -> {code.name}: {exc}")
                return (code,)

        call.__name__ = fn.__name__
        return call

    def cuInit(Flags: int) -> Any:
        state["init"] = True
        return (ok,)

    def cuDriverGetVersion() -> Any:
        return (ok, gpu.driver_cuda)

    def cuDeviceGetCount() -> Any:
        return (ok, gpu.count)

    def cuDeviceGet(ordinal: int) -> Any:
        gpu.ordinals.append(int(ordinal))
        if not 0 <= ordinal < gpu.count:
            return (CUresult.CUDA_ERROR_INVALID_DEVICE, None)
        return (ok, _Handle("CUdevice", ordinal))

    def cuDeviceGetName(length: int, dev: Any) -> Any:
        return (ok, gpu.name.encode()[: length - 1] + b"\0" * (length - len(gpu.name)))

    def cuDevicePrimaryCtxRetain(dev: Any) -> Any:
        gpu.retained += 1
        return (ok, _Handle("CUcontext", 0xC0))

    def cuDevicePrimaryCtxRelease(dev: Any) -> Any:
        gpu.retained -= 1
        return (ok,)

    def cuCtxPushCurrent(ctx: Any) -> Any:
        if not isinstance(ctx, _Handle) or ctx.kind != "CUcontext":
            return (CUresult.CUDA_ERROR_INVALID_CONTEXT,)
        gpu.push("primary")
        return (ok,)

    def cuCtxPopCurrent() -> Any:
        gpu.pop()
        return (ok, _Handle("CUcontext", 0xC0))

    def cuMemAlloc(bytesize: int) -> Any:
        return (ok, _Handle("CUdeviceptr", gpu.alloc(int(bytesize))))

    def cuMemFree(dptr: Any) -> Any:
        gpu.free(int(dptr))
        return (ok,)

    def cuMemHostAlloc(bytesize: int, Flags: int) -> Any:
        gpu.require_context("cuMemHostAlloc")
        buf = (ctypes.c_byte * int(bytesize))()
        ptr = ctypes.addressof(buf)
        gpu.hosts[ptr] = buf
        return (ok, ptr)

    def cuMemFreeHost(p: int) -> Any:
        if gpu.hosts.pop(int(p), None) is None:
            return (CUresult.CUDA_ERROR_INVALID_VALUE,)
        return (ok,)

    def _stream_ok(hStream: Any) -> bool:
        return isinstance(hStream, _Handle) and int(hStream) in gpu.streams

    def _htod(dst: int, src: int, n: int) -> None:
        gpu.write(dst, ctypes.string_at(src, n))

    def _dtoh(dst: int, src: int, n: int) -> None:
        data = gpu.read(src, n)
        ctypes.memmove(dst, data, len(data))

    def cuMemcpyHtoD(dstDevice: Any, srcHost: int, ByteCount: int) -> Any:
        gpu.synchronous_copy("cuMemcpyHtoD")
        _htod(int(dstDevice), int(srcHost), int(ByteCount))
        return (ok,)

    def cuMemcpyDtoH(dstHost: int, srcDevice: Any, ByteCount: int) -> Any:
        gpu.synchronous_copy("cuMemcpyDtoH")
        _dtoh(int(dstHost), int(srcDevice), int(ByteCount))
        return (ok,)

    def cuMemcpyHtoDAsync(dstDevice: Any, srcHost: int, ByteCount: int, hStream: Any) -> Any:
        if not _stream_ok(hStream):
            return (CUresult.CUDA_ERROR_INVALID_HANDLE,)
        args = (int(dstDevice), int(srcHost), int(ByteCount))
        gpu.enqueue(int(hStream), lambda: _htod(*args), gpu.copy_ms(args[2]))
        return (ok,)

    def cuMemcpyDtoHAsync(dstHost: int, srcDevice: Any, ByteCount: int, hStream: Any) -> Any:
        if not _stream_ok(hStream):
            return (CUresult.CUDA_ERROR_INVALID_HANDLE,)
        args = (int(dstHost), int(srcDevice), int(ByteCount))
        gpu.enqueue(int(hStream), lambda: _dtoh(*args), gpu.copy_ms(args[2]))
        return (ok,)

    def cuStreamCreate(Flags: int) -> Any:
        return (ok, _Handle("CUstream", gpu.stream()))

    def cuStreamSynchronize(hStream: Any) -> Any:
        if not _stream_ok(hStream):
            return (CUresult.CUDA_ERROR_INVALID_HANDLE,)
        gpu.sync_stream(int(hStream))
        return (ok,)

    def _event(hEvent: Any) -> int | None:
        ok_kind = isinstance(hEvent, _Handle) and hEvent.kind == "CUevent"
        return int(hEvent) if ok_kind and int(hEvent) in gpu.events else None

    def cuEventCreate(Flags: int) -> Any:
        return (ok, _Handle("CUevent", gpu.new_event(int(Flags))))

    def cuEventRecord(hEvent: Any, hStream: Any) -> Any:
        if _event(hEvent) is None or not _stream_ok(hStream):
            return (CUresult.CUDA_ERROR_INVALID_HANDLE,)
        gpu.record_event(int(hEvent), int(hStream))
        return (ok,)

    def cuEventSynchronize(hEvent: Any) -> Any:
        if _event(hEvent) is None:
            return (CUresult.CUDA_ERROR_INVALID_HANDLE,)
        gpu.sync_event(int(hEvent))
        return (ok,)

    def cuEventElapsedTime(hStart: Any, hEnd: Any) -> Any:
        if _event(hStart) is None or _event(hEnd) is None:
            return (CUresult.CUDA_ERROR_INVALID_HANDLE, 0.0)
        return (ok, gpu.elapsed(int(hStart), int(hEnd)))

    def cuEventDestroy(hEvent: Any) -> Any:
        if _event(hEvent) is None:
            return (CUresult.CUDA_ERROR_INVALID_HANDLE,)
        del gpu.events[int(hEvent)]
        return (ok,)

    def cuStreamBeginCapture(hStream: Any, mode: Any) -> Any:
        if not _stream_ok(hStream) or not isinstance(mode, CUstreamCaptureMode):
            return (CUresult.CUDA_ERROR_INVALID_VALUE,)
        gpu.begin_capture(int(hStream))
        return (ok,)

    def cuStreamEndCapture(hStream: Any) -> Any:
        if not _stream_ok(hStream):
            return (CUresult.CUDA_ERROR_INVALID_HANDLE, None)
        try:
            return (ok, _Handle("CUgraph", gpu.end_capture(int(hStream))))
        except FakeCudaError as exc:
            named = [c for c in CUresult if c.name in str(exc)]
            return (named[0], None)

    def cuGraphInstantiate(hGraph: Any, flags: int) -> Any:
        if not isinstance(hGraph, _Handle) or int(hGraph) not in gpu.graphs:
            return (CUresult.CUDA_ERROR_INVALID_VALUE, None)
        handle = 0x7000 + len(gpu.graphs)
        gpu.graphs[handle] = list(gpu.graphs[int(hGraph)])
        return (ok, _Handle("CUgraphExec", handle))

    def cuGraphLaunch(hGraphExec: Any, hStream: Any) -> Any:
        exec_ok = isinstance(hGraphExec, _Handle) and hGraphExec.kind == "CUgraphExec"
        if not exec_ok or int(hGraphExec) not in gpu.graphs or not _stream_ok(hStream):
            return (CUresult.CUDA_ERROR_INVALID_VALUE,)
        gpu.launch_graph(int(hGraphExec), int(hStream))
        return (ok,)

    def cuGraphDestroy(hGraph: Any) -> Any:
        if not isinstance(hGraph, _Handle) or hGraph.kind != "CUgraph":
            return (CUresult.CUDA_ERROR_INVALID_VALUE,)
        gpu.graphs.pop(int(hGraph), None)
        return (ok,)

    def cuGraphExecDestroy(hGraphExec: Any) -> Any:
        if not isinstance(hGraphExec, _Handle) or hGraphExec.kind != "CUgraphExec":
            return (CUresult.CUDA_ERROR_INVALID_VALUE,)
        gpu.graphs.pop(int(hGraphExec), None)
        return (ok,)

    def cuStreamDestroy(hStream: Any) -> Any:
        if not _stream_ok(hStream):
            return (CUresult.CUDA_ERROR_INVALID_HANDLE,)
        gpu.streams.discard(int(hStream))
        return (ok,)

    for fn in (cuInit, cuDriverGetVersion, cuDeviceGetCount, cuDeviceGet, cuDeviceGetName,
               cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease, cuCtxPushCurrent,
               cuCtxPopCurrent, cuMemAlloc, cuMemFree, cuMemHostAlloc, cuMemFreeHost,
               cuMemcpyHtoD, cuMemcpyDtoH, cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuStreamCreate,
               cuStreamSynchronize, cuStreamDestroy, cuEventCreate, cuEventRecord,
               cuEventSynchronize, cuEventElapsedTime, cuEventDestroy, cuStreamBeginCapture,
               cuStreamEndCapture, cuGraphInstantiate, cuGraphLaunch, cuGraphDestroy,
               cuGraphExecDestroy):  # fmt: skip
        setattr(drv, fn.__name__, guarded(fn))
    bindings = _module("cuda.bindings", package=True)
    bindings.driver = drv  # type: ignore[attr-defined]
    top = _module("cuda", package=True)
    top.bindings = bindings  # type: ignore[attr-defined]
    return {"cuda": top, "cuda.bindings": bindings, "cuda.bindings.driver": drv}


def install(monkeypatch: Any, gpu: FakeGPU, binding: str) -> None:
    """Put the fake ``binding`` (pycuda | cuda-python) over ``gpu`` into ``sys.modules`` and
    hide the other one, so ``export.cuda`` picks this one."""
    fakes = make_pycuda(gpu) if binding == "pycuda" else make_cuda_python(gpu)
    for name in ("pycuda", "pycuda.driver", "cuda", "cuda.bindings", "cuda.bindings.driver",
                 "cuda.cuda"):  # fmt: skip
        monkeypatch.delitem(sys.modules, name, raising=False)
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("DD_CUDA_BACKEND", binding)
