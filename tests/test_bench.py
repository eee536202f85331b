"""Latency measurement: counts, percentiles and throughput are consistent."""

from __future__ import annotations

import time

import numpy as np

from bench.latency import measure_latency


class SleepRunner:
    """A runner that takes a known time per batch and returns a correctly shaped answer."""

    name, precision, device = "sleep", "fp32", "cpu"
    input_shape = (1, 3, 32, 64)

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls, self.batches = seconds, 0, []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.batches.append(batch.shape)
        time.sleep(self.seconds)
        return np.ones((batch.shape[0], 1, 16, 32), np.float32)


def test_latency_runs_warmup_iters_and_min_time() -> None:
    runner = SleepRunner(0.002)
    m = measure_latency(runner, iters=5, min_time=0.05, warmup=2, batch=3)
    assert m["runs"] >= 5 and runner.calls == m["runs"] + 2
    assert all(shape == (3, 3, 32, 64) for shape in runner.batches)
    assert 2.0 <= m["p50_ms"] <= m["p90_ms"] <= m["p99_ms"]
    assert m["runs"] * m["mean_ms"] >= 50 * 0.9  # ran for at least min_time
    assert abs(m["fps"] - 3 * 1000 / m["mean_ms"]) < 1e-6
    assert m["batch"] == 3 and m["std_ms"] >= 0
