"""A GPU made of host memory, behind fake ``pycuda.driver`` and ``cuda.bindings.driver`` modules.

Both modules follow their libraries' documented APIs (pycuda's ``Device``, ``Context``,
``mem_alloc``, ``pagelocked_empty``, ``memcpy_*``, ``Stream``; cuda-python's ``cu*`` functions
returning ``(CUresult, values...)``, with the parameter names of the real docstrings, which a
test compares with the installed ``cuda.bindings``) and share one ``FakeGPU``: device memory is
bytearrays at made-up addresses, copies move bytes, and a context stack says what is current.
Every memory call and every kernel launch needs a current context, as on a real driver
(CUDA_ERROR_INVALID_CONTEXT), so code that allocates outside one fails here as it would there.
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
            gpu.require_context("Stream.synchronize")

        def __del__(self) -> None:  # pycuda destroys a stream when it is collected
            gpu.streams.discard(self.handle)

    def mem_alloc(bytes: int) -> DeviceAllocation:
        gpu.calls.append(f"mem_alloc({bytes})")
        return DeviceAllocation(gpu.alloc(bytes))

    def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> Any:
        gpu.calls.append("pagelocked_empty")
        return np.empty(shape, dtype, order)

    def _check_stream(stream: Any) -> None:
        if stream is not None and not isinstance(stream, Stream):
            raise TypeError(f"stream must be a pycuda Stream, got {type(stream).__name__}")

    def memcpy_htod(dest: Any, src: Any) -> None:
        gpu.write(int(dest), np.ascontiguousarray(src).tobytes())

    def memcpy_htod_async(dest: Any, src: Any, stream: Any = None) -> None:
        _check_stream(stream)
        memcpy_htod(dest, src)

    def memcpy_dtoh(dest: Any, src: Any) -> None:
        data = gpu.read(int(src), dest.nbytes)
        dest[...] = np.frombuffer(data, dtype=dest.dtype).reshape(dest.shape)

    def memcpy_dtoh_async(dest: Any, src: Any, stream: Any = None) -> None:
        _check_stream(stream)
        memcpy_dtoh(dest, src)

    for obj in (Error, LogicError, Context, Device, DeviceAllocation, Stream, init, mem_alloc,
                pagelocked_empty, memcpy_htod, memcpy_htod_async, memcpy_dtoh,
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

    def cuMemcpyHtoD(dstDevice: Any, srcHost: int, ByteCount: int) -> Any:
        gpu.write(int(dstDevice), ctypes.string_at(int(srcHost), int(ByteCount)))
        return (ok,)

    def cuMemcpyDtoH(dstHost: int, srcDevice: Any, ByteCount: int) -> Any:
        data = gpu.read(int(srcDevice), int(ByteCount))
        ctypes.memmove(int(dstHost), data, len(data))
        return (ok,)

    def cuMemcpyHtoDAsync(dstDevice: Any, srcHost: int, ByteCount: int, hStream: Any) -> Any:
        if not _stream_ok(hStream):
            return (CUresult.CUDA_ERROR_INVALID_HANDLE,)
        return cuMemcpyHtoD(dstDevice, srcHost, ByteCount)

    def cuMemcpyDtoHAsync(dstHost: int, srcDevice: Any, ByteCount: int, hStream: Any) -> Any:
        if not _stream_ok(hStream):
            return (CUresult.CUDA_ERROR_INVALID_HANDLE,)
        return cuMemcpyDtoH(dstHost, srcDevice, ByteCount)

    def cuStreamCreate(Flags: int) -> Any:
        return (ok, _Handle("CUstream", gpu.stream()))

    def cuStreamSynchronize(hStream: Any) -> Any:
        gpu.require_context("cuStreamSynchronize")
        return (ok,) if _stream_ok(hStream) else (CUresult.CUDA_ERROR_INVALID_HANDLE,)

    def cuStreamDestroy(hStream: Any) -> Any:
        if not _stream_ok(hStream):
            return (CUresult.CUDA_ERROR_INVALID_HANDLE,)
        gpu.streams.discard(int(hStream))
        return (ok,)

    for fn in (cuInit, cuDriverGetVersion, cuDeviceGetCount, cuDeviceGet, cuDeviceGetName,
               cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease, cuCtxPushCurrent,
               cuCtxPopCurrent, cuMemAlloc, cuMemFree, cuMemHostAlloc, cuMemFreeHost,
               cuMemcpyHtoD, cuMemcpyDtoH, cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuStreamCreate,
               cuStreamSynchronize, cuStreamDestroy):  # fmt: skip
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
