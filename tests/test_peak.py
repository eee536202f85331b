"""bench --peak: the GEMM microbenchmark computes the products it times, and rows read against
the peak of their own precision."""

from __future__ import annotations

import numpy as np
import pytest

from bench.peak import (
    add_peak_shares,
    gemm_candidates,
    measure_peaks,
    ort_int8_gemm,
    peaks_line,
    seconds_per_call,
)


def test_onnxruntime_int8_gemm_is_the_exact_integer_product() -> None:
    rng = np.random.default_rng(3)
    # 7-bit activations: without VNNI (AVX2, AVX-512 F/BW) MLAS's U8S8 kernel sums adjacent
    # u8*s8 pairs in saturating int16 (vpmaddubsw); 127 * 128 * 2 = 32512 never saturates, so
    # the product is exact on every x86 CPU (full-range u8 here saturates ~4% of the pairs
    # there and changes ~58% of the outputs; exact only with VNNI)
    a = rng.integers(0, 128, (64, 48), dtype=np.uint8)
    w = rng.integers(-128, 128, (48, 32), dtype=np.int8)
    got = ort_int8_gemm(a, w, threads=1)()
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, a.astype(np.int64) @ w.astype(np.int64))


def test_every_candidate_computes_a_full_product_of_its_precision() -> None:
    found = gemm_candidates(96, threads=1)
    assert set(found) == {"fp32", "bf16", "int8"} and "numpy" in found["fp32"]
    assert "onnxruntime" in found["int8"]
    reference = np.asarray(found["fp32"]["numpy"]())
    found = {p: {k: f for k, f in libs.items() if k != "openvino"} for p, libs in found.items()}
    for name, fn in found["fp32"].items():  # (OpenVINO multiplies other operands: below)
        np.testing.assert_allclose(np.asarray(fn()), reference, rtol=1e-4, atol=1e-3, err_msg=name)
    for name, fn in found["bf16"].items():  # 8-bit mantissas: ~1% of the scale of a 96-term sum
        got = np.asarray(fn().float())
        assert np.abs(got - reference).max() < 0.05 * np.abs(reference).max(), name
    for name, fn in found["int8"].items():
        out = np.asarray(fn())
        assert out.shape == (96, 96) and out.dtype == np.int32 and out.any(), name


def test_openvino_gemm_multiplies_in_each_precision() -> None:
    pytest.importorskip("openvino")
    from bench.peak import openvino_gemm

    rng = np.random.default_rng(4)
    a = rng.uniform(-3, 3, (64, 96)).astype(np.float32)
    w = rng.integers(-128, 128, (96, 32), dtype=np.int8)
    exact = a.astype(np.float64) @ (w.astype(np.float64) * 0.01)
    scale = np.abs(exact).max()
    fp32 = openvino_gemm(a, w, "fp32", threads=1)()
    np.testing.assert_allclose(fp32, exact, atol=1e-4 * scale)
    for precision in ("bf16", "int8"):  # bf16 operands; u8 activations of step 8/255
        got = openvino_gemm(a, w, precision, threads=1)()
        assert got.shape == (64, 32) and np.abs(got - exact).max() < 0.05 * scale, precision


def test_seconds_per_call_runs_enough_and_takes_the_median() -> None:
    calls = []
    seconds = seconds_per_call(lambda: calls.append(1), min_time=0.0, min_runs=5)
    assert len(calls) == 6 and 0 <= seconds < 0.01  # one untimed call, then 5 timed


def test_peaks_are_two_n_cubed_over_the_time_of_the_fastest_library() -> None:
    peaks = measure_peaks(n=128, min_time=0.0, threads=1)
    assert peaks["size"] == 128
    for precision in ("fp32", "int8"):
        p = peaks[precision]
        assert p["gops"] == max(p["by_library"].values()) > 0
        assert p["library"] == max(p["by_library"], key=p["by_library"].get)
    assert peaks_line(peaks).startswith("GEMM peaks (128^3, this machine): fp32 ")


def test_rows_read_against_the_peak_of_their_precision_on_the_cpu_only() -> None:
    peaks = {"size": 8, "fp32": {"gops": 100.0, "library": "numpy"},
             "int8": {"gops": 400.0, "library": "onnxruntime"}}  # fmt: skip
    rows = [
        {"precision": "fp32", "device": "cpu", "gops": 25.0},
        {"precision": "int8", "device": "cpu", "gops": 100.0},
        {"precision": "bf16", "device": "cpu", "gops": 50.0},  # no bf16 peak measured
        {"precision": "fp16", "device": "cuda:0", "gops": 900.0},
        {"precision": "fp32", "device": "cpu"},  # no GOP/s (no torch to count FLOPs)
    ]
    add_peak_shares(rows, peaks)
    assert [r.get("of_peak") for r in rows] == [pytest.approx(0.25), pytest.approx(0.25),
                                                None, None, None]  # fmt: skip
