"""``bench --peak``: this machine's matrix-product peaks in fp32, bf16 and int8, so that a
row's GOP/s reads against what the hardware reaches here.

Each precision is a square N x N x N product (2 N^3 operations) timed for at least
``min_time`` seconds by every library here that does it: NumPy's BLAS and PyTorch (MKL /
oneDNN) for fp32, PyTorch (oneDNN: AMX or AVX512-BF16 where the CPU has them) for bf16,
PyTorch's ``_int_mm`` and ONNX Runtime's ``MatMulInteger`` (u8 x s8, VNNI / AMX in MLAS) for
int8, and OpenVINO's CPU plugin for all three where it is installed. The fastest library
counts. It is not the vendor's peak: it is what a large GEMM reaches
through the libraries our engines use, on the threads the bench uses.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from densedepth.util.optional import optional_torch

PEAK_SIZE = 1024  # large enough to leave the caches behind on 2 cores, quick on 1
PEAK_PRECISIONS = ("fp32", "bf16", "int8")  # the peaks measured, named as rows' precisions


def seconds_per_call(fn: Callable[[], Any], min_time: float, min_runs: int = 3) -> float:
    """Median seconds of ``fn()`` after one untimed call, over at least ``min_runs`` calls and
    ``min_time`` seconds."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def gemm_candidates(n: int, threads: int) -> dict[str, dict[str, Callable[[], Any]]]:
    """Per precision, ``library name -> one n x n x n product`` for every library here."""
    rng = np.random.default_rng(0)
    a32, b32 = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    found: dict[str, dict[str, Callable[[], Any]]] = {p: {} for p in PEAK_PRECISIONS}
    found["fp32"]["numpy"] = lambda: a32 @ b32
    torch = optional_torch()
    if torch is not None:
        ta, tb = torch.from_numpy(a32), torch.from_numpy(b32)
        found["fp32"]["torch"] = lambda: torch.mm(ta, tb)
        ha, hb = ta.bfloat16(), tb.bfloat16()
        found["bf16"]["torch"] = lambda: torch.mm(ha, hb)
        ia = torch.randint(-128, 128, (n, n), dtype=torch.int8)
        ib = torch.randint(-128, 128, (n, n), dtype=torch.int8)
        if hasattr(torch, "_int_mm"):
            found["int8"]["torch"] = lambda: torch._int_mm(ia, ib)
    activations = rng.integers(0, 256, (n, n), dtype=np.uint8)
    weights = rng.integers(-128, 128, (n, n), dtype=np.int8)
    found["int8"]["onnxruntime"] = ort_int8_gemm(activations, weights, threads)
    if importlib.util.find_spec("openvino") is not None:
        for precision in found:
            found[precision]["openvino"] = openvino_gemm(a32, weights, precision, threads)
    return found


def openvino_gemm(
    a: np.ndarray, weights: np.ndarray, precision: str, threads: int = 0
) -> Callable[[], Any]:
    """OpenVINO's CPU plugin multiplying ``a`` by constant ``weights`` / 100 in ``precision``:
    fp32 and bf16 as an fp32 MatMul compiled with that inference precision, int8 as the
    FakeQuantize -> MatMul(dequantized s8 weights) pattern its INT8 models (NNCF's) run as."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter(list(a.shape), np.float32, name="a")
    source: Any = x
    w: Any = ops.constant(weights.astype(np.float32) * np.float32(0.01))
    if precision == "int8":
        scale = ops.constant(np.float32(0.01))
        w = ops.multiply(ops.convert(ops.constant(weights), np.float32), scale)
        lo, hi = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4.0))
        source = ops.fake_quantize(x, lo, hi, lo, hi, 256)
    model = ov.Model([ops.matmul(source, w, False, False)], [x], "peak")
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
    return lambda: request.infer({0: a})[0]


def ort_int8_gemm(a: np.ndarray, weights: np.ndarray, threads: int = 0) -> Callable[[], Any]:
    """ONNX Runtime's ``MatMulInteger`` of u8 activations ``a`` by constant s8 ``weights``
    (the shape of a quantized layer) as one call returning the int32 product."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])],
        "peak_int8",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, list(a.shape))],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [a.shape[0], weights.shape[1]])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    session = ort.InferenceSession(
        model.SerializeToString(), so, providers=["CPUExecutionProvider"]
    )
    return lambda: session.run(None, {"a": a})[0]


def measure_peaks(
    n: int = PEAK_SIZE,
    min_time: float = 1.0,
    threads: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """``{precision: {"gops", "library", "by_library"}}`` plus the product size; GOP/s are
    2 n^3 / the median seconds of one product."""
    torch = optional_torch()
    if threads and torch is not None:
        torch.set_num_threads(threads)
    peaks: dict[str, Any] = {"size": n}
    for precision, libraries in gemm_candidates(n, threads).items():
        by_library = {
            name: 2 * n**3 / seconds_per_call(fn, min_time) / 1e9 for name, fn in libraries.items()
        }
        if by_library:
            best = max(by_library, key=by_library.__getitem__)
            peaks[precision] = {"gops": by_library[best], "library": best,
                                "by_library": by_library}  # fmt: skip
    log(peaks_line(peaks))
    return peaks


def peaks_line(peaks: dict[str, Any]) -> str:
    """e.g. ``GEMM peaks (1024^3): fp32 180 GOP/s (torch), bf16 950 (torch), int8 ...``."""
    parts = [f"{p} {peaks[p]['gops']:.0f} GOP/s ({peaks[p]['library']})"
             for p in PEAK_PRECISIONS if p in peaks]  # fmt: skip
    return f"GEMM peaks ({peaks['size']}^3, this machine): {', '.join(parts) or 'none'}"


def add_peak_shares(rows: list[dict[str, Any]], peaks: dict[str, Any]) -> None:
    """``of_peak``: a CPU row's GOP/s as a share of the peak of its precision."""
    for r in rows:
        precision = r.get("precision", "")
        peak = peaks.get(precision) if precision in PEAK_PRECISIONS else None
        if "gops" in r and peak and str(r.get("device", "cpu")).startswith("cpu"):
            r["of_peak"] = r["gops"] / peak["gops"]
