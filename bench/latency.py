"""Latency of any runner: warm-up, then at least ``iters`` runs and ``min_time`` seconds.

Two figures, each labelled in every row:

- host end-to-end (``p50_ms`` ...): wall clock around ``runner(x)``, numpy in and out, so
  host-device copies and the synchronisation are included (runners return host arrays: the
  TensorRT runner synchronises its stream, CUDA torch runs copy back);
- GPU compute (``gpu_p50_ms`` ..., TensorRT rows): CUDA events around each launch on
  device-resident buffers, no copies: what trtexec reports as "GPU Compute Time"
  (``engines.tensorrt_runner.TensorRTRunner.time_gpu_compute``), optionally as CUDA graph
  launches.

Warm-up is by count and by time: at least ``warmup`` runs and ``warmup_ms`` milliseconds
(trtexec's --warmUp default, 200 ms, is bench's default).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.power import PowerSampler, energy_fields
from densedepth.util.onnx_io import parity_input
from densedepth.util.optional import optional_torch

# What every latency figure is, so no row reads as a GPU kernel time (trtexec's "GPU Compute
# Time" excludes the copies this includes).
TIMING = "host end-to-end: wall clock around runner(x), host-device copies and sync included"
GPU_TIMING = (
    "GPU compute: CUDA events around execute_async_v3 on device-resident buffers, no copies "
    "(trtexec's GPU Compute Time)"
)
WARMUP_MS = 200.0  # trtexec's --warmUp default


def cuda_synchronizer(runner: Any) -> Callable[[], None]:
    """``torch.cuda.synchronize`` for a runner on a CUDA device (so every timestamp follows
    the device's work), a no-op otherwise."""
    if str(runner.device).startswith("cuda"):
        torch = optional_torch()  # without it, ORT / TensorRT return after their work is done
        if torch is not None and torch.cuda.is_available():
            return torch.cuda.synchronize
    return lambda: None


def measure_latency(
    runner: Any,
    iters: int = 20,
    min_time: float = 2.0,
    warmup: int = 3,
    batch: int = 1,
    max_iters: int = 100_000,
    power: PowerSampler | str | None = None,
    warmup_ms: float = 0.0,
) -> dict[str, Any]:
    """Milliseconds per batch: p50/p90/p99, mean and std, and images per second; and the batch
    the engine really ran (``engine_batch``) with the calls it took (``calls_per_batch``): a
    runner whose engine takes at most ``max_batch`` images splits a larger batch. With a
    ``power`` sampler, the energy of the timed runs (bench.power.energy_fields); with a reason
    string, that reason as ``power``. Warm-up: at least ``warmup`` runs and ``warmup_ms``."""
    _, _, h, w = runner.input_shape
    most = runner.max_batch
    engine_batch = batch if most is None else min(batch, int(most))
    x = parity_input((h, w), batch=batch)
    sync = cuda_synchronizer(runner)
    warm_start, warmed = time.perf_counter(), 0
    while warmed < warmup or (time.perf_counter() - warm_start) * 1e3 < warmup_ms:
        runner(x)
        warmed += 1
    times: list[float] = []
    sampler = None if power is None or isinstance(power, str) else power
    if sampler is not None:
        sampler.start()
    start = time.perf_counter()
    try:
        while len(times) < max_iters and (
            len(times) < iters or time.perf_counter() - start < min_time
        ):
            sync()
            t0 = time.perf_counter()
            runner(x)
            sync()
            times.append(time.perf_counter() - t0)
    except BaseException:
        if sampler is not None:  # its thread / tegrastats process ends with the failed row
            sampler.stop()
        raise
    energy = energy_fields(sampler, batch * len(times)) if sampler is not None else {}
    if isinstance(power, str):
        energy = {"power": power}
    ms = np.asarray(times) * 1e3
    return {
        **energy,
        "timing": TIMING,
        "batch": batch,
        "engine_batch": engine_batch,
        "calls_per_batch": -(-batch // engine_batch),
        "runs": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "std_ms": float(ms.std()),
        "fps": float(batch * 1e3 / ms.mean()),
    }


def measure_gpu_compute(
    runner: Any,
    batch: int = 1,
    iters: int = 10,
    min_time: float = 2.0,
    warmup_ms: float = WARMUP_MS,
    cuda_graph: bool = False,
) -> dict[str, Any]:
    """GPU compute milliseconds per batch (``gpu_p50_ms`` ...) for a runner that times its
    own GPU work (TensorRT's ``time_gpu_compute``); ``{}`` for the others. A batch above the
    engine's ``max_batch`` is that many launches, so its time is the launch's times that
    many; ``cuda_graph`` says whether the launches were graph launches."""
    timer = getattr(runner, "time_gpu_compute", None)
    if timer is None:
        return {}
    most = runner.max_batch
    engine_batch = batch if most is None else min(batch, int(most))
    calls = -(-batch // engine_batch)
    times, info = timer(engine_batch, iters, min_time, warmup_ms / 1e3, cuda_graph)
    ms = np.asarray(times) * calls
    return {
        "gpu_timing": GPU_TIMING,
        **info,
        "gpu_runs": len(ms),
        "gpu_p50_ms": float(np.percentile(ms, 50)),
        "gpu_p90_ms": float(np.percentile(ms, 90)),
        "gpu_p99_ms": float(np.percentile(ms, 99)),
        "gpu_mean_ms": float(ms.mean()),
        "gpu_fps": float(batch * 1e3 / ms.mean()),
    }
