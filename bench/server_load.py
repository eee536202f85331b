"""Load on a Triton server: a concurrency sweep through tritonclient, as Triton's
perf_analyzer measures a served model (closed loop: each of C clients sends its next request
when the last one answered).

Per concurrency level: the requests sent, throughput (images / s over the level's wall time),
p50 / p90 / p99 request latency, and from Triton's statistics endpoint (the difference of two
snapshots around the level) the inferences and executions the server counted, its mean queue
and compute time per request, and the batch sizes dynamic batching formed. Every loop is
bounded: ``requests`` per level and ``max_seconds`` per level, each request with a timeout.
``write_perf_analyzer_input`` writes real frames in perf_analyzer's ``--input-data`` JSON.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.util.errors import DenseDepthError
from densedepth.util.outputs import write_text_atomic
from engines.triton_runner import TritonRunner, make_client, triton_call

LEVELS = (1, 2, 4, 8)
STATS_SETTLE_S = 3.0  # the statistics lag the last answers by a few milliseconds


def server_statistics(client: Any, model: str, url: str) -> dict[str, Any]:
    """The model's counters from Triton's statistics endpoint: inference and execution
    counts, queue / compute nanoseconds, and executions per batch size."""
    as_json = {"as_json": True} if "grpc" in type(client).__module__ else {}
    raw = triton_call("the statistics", url, client.get_inference_statistics, model_name=model,
                      **as_json)  # fmt: skip
    stats = (raw.get("model_stats") or [{}])[0]
    inf = stats.get("inference_stats") or {}

    def ns(key: str) -> int:
        return int((inf.get(key) or {}).get("ns", 0))

    batches = {int(b["batch_size"]): int((b.get("compute_infer") or {}).get("count", 0))
               for b in stats.get("batch_stats") or []}  # fmt: skip
    return {"inference_count": int(stats.get("inference_count", 0)),
            "execution_count": int(stats.get("execution_count", 0)),
            "queue_ns": ns("queue"), "compute_ns": ns("compute_infer"),
            "success": int((inf.get("success") or {}).get("count", 0)),
            "batches": batches}  # fmt: skip


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    out = {k: after[k] - before[k] for k in after if k != "batches"}
    sizes = set(after["batches"]) | set(before["batches"])
    out["batches"] = {s: after["batches"].get(s, 0) - before["batches"].get(s, 0)
                      for s in sorted(sizes)}  # fmt: skip
    out["batches"] = {s: n for s, n in out["batches"].items() if n}
    return out


def _clients_loop(runner: TritonRunner, frames: np.ndarray, count: int, level: dict[str, float],
                  start: threading.Barrier, latencies: list[float], errors: list[str],
                  lock: threading.Lock, sent: list[int]) -> None:  # fmt: skip
    """One closed-loop client: its own connection (made in its own thread: tritonclient's HTTP
    client cannot move between threads), opened before the level's clock starts at ``start``;
    then requests until the level's count is reached or its deadline passes."""
    own = None
    try:
        own = TritonRunner(runner.url, runner.model, runner.protocol, runner.timeout)
    except DenseDepthError as exc:
        with lock:
            errors.append(str(exc))
    with contextlib.suppress(threading.BrokenBarrierError):  # a client that never connected
        start.wait()
    try:
        while own is not None and not errors and time.monotonic() < level.get("deadline", 0.0):
            with lock:
                if sent[0] >= count:
                    return
                i = sent[0]
                sent[0] += 1
            x = frames[i % len(frames)][None]
            t0 = time.perf_counter()
            try:
                own(x)
            except DenseDepthError as exc:
                with lock:
                    errors.append(str(exc))
                return
            with lock:
                latencies.append(time.perf_counter() - t0)
    finally:
        if own is not None:
            own.close()


def measure_level(runner: TritonRunner, frames: np.ndarray, concurrency: int, requests: int,
                  max_seconds: float) -> dict[str, Any]:  # fmt: skip
    """One concurrency level (see the module docstring)."""
    client = runner.client
    before = server_statistics(client, runner.model, runner.url)
    latencies: list[float] = []
    errors: list[str] = []
    lock, sent = threading.Lock(), [0]
    level: dict[str, float] = {}

    def clock_starts() -> None:  # run once, when every client has connected
        level["t0"] = time.perf_counter()
        level["deadline"] = time.monotonic() + max_seconds

    start = threading.Barrier(concurrency, action=clock_starts, timeout=runner.timeout + 30)
    threads = [threading.Thread(target=_clients_loop, args=(runner, frames, requests, level,
                                start, latencies, errors, lock, sent), daemon=True)
               for _ in range(concurrency)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max_seconds + 2 * runner.timeout + 35)
    wall = time.perf_counter() - level.get("t0", time.perf_counter())
    if errors:
        raise DenseDepthError(errors[0])
    done = len(latencies)
    settle = time.monotonic() + STATS_SETTLE_S
    while True:
        delta = _delta(server_statistics(client, runner.model, runner.url), before)
        if delta["inference_count"] >= done or time.monotonic() > settle:
            break
        time.sleep(0.05)
    ms = np.asarray(latencies) * 1e3
    per = max(delta["success"], 1)
    return {
        "concurrency": concurrency,
        "requests": done,
        "seconds": wall,
        "throughput": done / wall if wall > 0 else 0.0,
        "p50_ms": float(np.percentile(ms, 50)) if done else None,
        "p90_ms": float(np.percentile(ms, 90)) if done else None,
        "p99_ms": float(np.percentile(ms, 99)) if done else None,
        "server_inferences": delta["inference_count"],
        "server_executions": delta["execution_count"],
        "queue_ms": delta["queue_ns"] / per / 1e6,
        "compute_ms": delta["compute_ns"] / per / 1e6,
        "batches": delta["batches"],
        "capped_by_time": done < requests,
    }


def concurrency_sweep(
    runner: TritonRunner,
    frames: np.ndarray,
    levels: Sequence[int] = LEVELS,
    requests: int = 64,
    max_seconds: float = 60.0,
    log: Callable[[str], None] = lambda s: None,
) -> list[dict[str, Any]]:
    """Every level of ``levels`` on ``runner``'s model with ``frames`` (N x 3 x H x W); one
    row per level."""
    if not levels or min(levels) < 1 or requests < 1:
        raise DenseDepthError("--concurrency levels and --requests must be at least 1")
    rows = []
    for c in levels:
        row = measure_level(runner, frames, int(c), requests, max_seconds)
        log(level_line(row))
        rows.append(row)
    return rows


def level_line(row: dict[str, Any]) -> str:
    """``concurrency 4: 64 requests, 120.3 img/s, p50 30.1 ms ..., batches {1: 4, 4: 15}``."""
    return (f"concurrency {row['concurrency']}: {row['requests']} requests, "
            f"{row['throughput']:.1f} img/s, p50 {row['p50_ms']:.1f} ms, p90 {row['p90_ms']:.1f} "
            f"ms, p99 {row['p99_ms']:.1f} ms; server: {row['server_executions']} executions for "
            f"{row['server_inferences']} inferences, queue {row['queue_ms']:.2f} ms, compute "
            f"{row['compute_ms']:.2f} ms per request, batches {row['batches']}")  # fmt: skip


def sweep_markdown(result: dict[str, Any]) -> str:
    """The sweep as a Markdown table with what it was measured on."""
    lines = [f"# Triton load: {result['model']} at {result['url']} ({result['protocol']})", "",
             f"{result['machine']}", "",
             "| concurrency | requests | img/s | p50 ms | p90 ms | p99 ms | executions | "
             "queue ms | compute ms | batches formed |", "|" + "---|" * 10]  # fmt: skip
    for r in result["levels"]:
        batches = ", ".join(f"{n}x{s}" for s, n in r["batches"].items())
        lines.append(f"| {r['concurrency']} | {r['requests']} | {r['throughput']:.1f} | "
                     f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['server_executions']} | {r['queue_ms']:.2f} | {r['compute_ms']:.2f} | "
                     f"{batches} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_perf_analyzer_input(
    path: Path, name: str, frames: np.ndarray, fixed_batch: int = 0
) -> Path:
    """``frames`` (N x 3 x H x W float32) in perf_analyzer's ``--input-data`` JSON, each tensor
    base64-encoded with its shape: for a batching model (``fixed_batch`` 0) one entry per
    frame, the shape without the batch; for one with ``max_batch_size 0`` the shape is the
    model's full dims, so each entry holds ``fixed_batch`` frames (taken in turn)."""
    if fixed_batch > 0:
        take = np.arange(-(-len(frames) // fixed_batch) * fixed_batch)  # every frame, once or more
        tensors = list(frames[take % len(frames)].reshape(-1, fixed_batch, *frames.shape[1:]))
    else:
        tensors = list(frames)
    data = [{name: {"b64": base64.b64encode(np.ascontiguousarray(f, np.float32).tobytes())
                    .decode("ascii"), "shape": list(f.shape)}} for f in tensors]  # fmt: skip
    return write_text_atomic(path, json.dumps({"data": data}) + "\n")


def check_server(url: str, protocol: str, timeout: float = 10.0) -> None:
    """One line when nothing answers at ``url`` (before any report folder is made)."""
    client = make_client(url, protocol, timeout)
    try:
        triton_call("a readiness check", url, client.is_server_live)
    finally:
        client.close()


def server_bench(
    url: str,
    model: str,
    protocol: str,
    out: Path,
    opts: Any,
    local_models: Sequence[Any] = (),
    levels: Sequence[int] = LEVELS,
    requests: int = 64,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """``bench --server``: the served model as a bench row (latency, accuracy on
    ``opts.data``), beside any local models, then the concurrency sweep on real frames;
    writes bench.*, server_load.json / .md and perf_analyzer_input.json into ``out``."""
    from bench.harness import run_bench
    from densedepth.data import open_dataset
    from densedepth.evaluation import evaluation_arrays
    from densedepth.util.cpu import cpu_capabilities, cpu_model, usable_cores

    runner = TritonRunner(url, model, protocol)
    try:
        result = run_bench([runner, *local_models], out, opts, log)
        size = tuple(int(s) for s in runner.input_shape[2:])
        data = opts.data if opts.data is not None else "synthetic"
        rgb, _, _ = evaluation_arrays(open_dataset(data, "test", **opts.data_kwargs), size, 8)
        frames = rgb.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        rows = concurrency_sweep(runner, frames, levels, requests, log=log)
        fixed_batch = 0 if runner.max_batch_size > 0 else runner.max_batch
    finally:
        runner.close()
    machine = f"client on {cpu_model()}, {usable_cores()} cores ({' '.join(cpu_capabilities())})"
    sweep = {"url": url, "model": model, "protocol": protocol, "machine": machine,
             "frames": f"{len(frames)} frames of {data} at {size[0]}x{size[1]}",
             "levels": rows}  # fmt: skip
    files = [write_text_atomic(out / "server_load.json", json.dumps(sweep, indent=2) + "\n"),
             write_text_atomic(out / "server_load.md", sweep_markdown(sweep)),
             write_perf_analyzer_input(out / "perf_analyzer_input.json", runner.input_name,
                                       frames, fixed_batch)]  # fmt: skip
    result["server_load"] = sweep
    result["files"] = [*result["files"], *map(str, files)]
    return result
