"""``bench --peak``: this machine's fp32, bf16 and int8 peaks, so that a CPU row's GOP/s reads
as a share ("of peak") of what the hardware can do here.

Each precision's peak is the larger of two bounds, so no row should pass 100%:

- the instruction rate: ops per cycle per core of the widest multiply-add unit the CPU's flags
  show (FMA, VNNI, AMX; ``X86_RATES``, ``ARM_RATES``) x the cores the bench uses x the highest clock
  the machine states (``cpu_clock``). An upper bound by construction: every port busy every
  cycle at the highest stated clock (a clock below the turbo, as a VM's ``cpu MHz`` can be, is
  why the GEMM bound stays in the max);
- the best GEMM: square N x N x N products (2 N^3 operations) for N in ``PEAK_SIZES``, each
  timed for at least ``min_time`` seconds by every library here that does it: NumPy's BLAS
  and PyTorch (MKL / oneDNN) for fp32, PyTorch (oneDNN: AMX or AVX512-BF16 where the CPU has
  them) for bf16, PyTorch's ``_int_mm`` and ONNX Runtime's ``MatMulInteger`` (u8 x s8, VNNI /
  AMX in MLAS) for int8, and OpenVINO's CPU plugin for all three where it is installed; the
  fastest library and size counts.

A row above its peak anyway (an engine counting more operations than it executes, e.g.
Winograd convolutions) keeps its figure and gets ``of_peak_note`` saying so.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.util.cpu import cpu_flags, usable_cores
from densedepth.util.optional import optional_torch

PEAK_SIZES = (256, 512, 1024)  # the GEMM sizes timed: the best counts
PEAK_SIZE = max(PEAK_SIZES)  # the largest: past the caches on 2 cores, quick on 1
PEAK_PRECISIONS = ("fp32", "bf16", "int8")  # the peaks measured, named as rows' precisions
INSTRUCTION_BOUND, GEMM_BOUND = "instruction rate", "gemm"  # a peak's ``bound``

# Ops (2 per multiply-add) per cycle per core of the widest unit, per precision: the first
# entry whose flags (/proc/cpuinfo) the CPU all has counts. Each assumes every port that does
# the operation issues one instruction per cycle (x86: 2 FMA ports, Intel 64 and IA-32
# Architectures Optimization Reference Manual for Skylake-SP to Sapphire Rapids; AMD Zen 2-5
# also have 2 FMA pipes) at the highest stated clock: an upper bound, the safe direction (too
# high a bound can only lower of_peak, never lift a row past 100%). What one instruction
# does: Intel's instruction set reference (SDM) and AMX documentation.
Rate = tuple[tuple[str, ...], int, str]  # (flags needed, ops per cycle per core, the unit)
X86_RATES: dict[str, tuple[Rate, ...]] = {
    "fp32": (
        (("avx512f",), 2 * 16 * 2, "AVX-512 FMA"),  # 2 ports x 16 fp32 lanes x 2
        (("avx2", "fma"), 2 * 8 * 2, "AVX2 FMA"),  # 2 x 8 x 2
        (("sse",), 2 * 4 * 2, "SSE"),  # 2 x 4 x 2 (AVX without FMA: an 8-lane mul + add)
    ),
    "bf16": (
        # TDPBF16PS: a 16x16 fp32 tile += 16x32 by 32x16 bf16 = 8192 multiply-adds per 16
        # cycles, 512 per cycle (Intel: AMX does "1024 BF16 / 2048 INT8 operations per cycle")
        (("amx_bf16",), 1024, "AMX-BF16"),
        (("avx512_bf16",), 2 * 32 * 2, "AVX512-BF16"),  # VDPBF16PS: 32 bf16 pairs / 512 bits
    ),  # else bf16 is computed in fp32: the fp32 figure
    "int8": (
        (("amx_int8",), 2048, "AMX-INT8"),  # TDPBUSD: 16x16x64 multiply-adds per 16 cycles
        (("avx512_vnni",), 2 * 64 * 2, "AVX512-VNNI"),  # VPDPBUSD zmm: 64 u8 x s8 products
        (("avx512bw",), 2 * 64 * 2, "AVX-512BW"),  # VPMADDUBSW zmm: 64 (then VPMADDWD, add)
        (("avx_vnni",), 2 * 32 * 2, "AVX-VNNI"),  # VPDPBUSD ymm: 32
        (("avx2",), 2 * 32 * 2, "AVX2"),  # VPMADDUBSW ymm: 32
        (("ssse3",), 2 * 16 * 2, "SSSE3"),  # PMADDUBSW xmm: 16
        (("sse2",), 2 * 8 * 2, "SSE2"),  # PMADDWD xmm: 8 int16 products
    ),
}
# Arm (/proc/cpuinfo ``Features``): 4 x 128-bit NEON pipes, the most an Arm core has (Neoverse
# V1/V2, Cortex-X; a Jetson Orin's Cortex-A78AE has 2); what one instruction does: the Arm
# Architecture Reference Manual
ARM_RATES: dict[str, tuple[Rate, ...]] = {
    "fp32": ((("asimd",), 4 * 4 * 2, "NEON FMLA"),),  # 4 fp32 lanes
    "bf16": ((("bf16",), 4 * 16 * 2, "BFMMLA"),),  # 2x4 by 4x2 bf16: 16 multiply-adds
    "int8": (
        (("i8mm",), 4 * 32 * 2, "SMMLA"),  # 2x8 by 8x2 int8: 32
        (("asimddp",), 4 * 16 * 2, "SDOT"),  # 4 lanes x 4 int8 products: 16
        (("asimd",), 4 * 8 * 2, "NEON SMLAL"),  # 8 int8 -> int16 products
    ),
}
RATE_FLAGS = {f for t in (X86_RATES, ARM_RATES) for es in t.values() for e in es for f in e[0]}
CPUFREQ_MAX = "sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq"  # kHz, per CPU


def instruction_rates(flags: set[str]) -> dict[str, dict[str, Any]]:
    """``{precision: {"ops_per_cycle", "flags", "unit"}}``: per core, the widest unit the CPU
    ``flags`` show (x86 or Arm), never below fp32's (any precision can run as fp32); {} on
    another architecture."""
    table = ARM_RATES if "asimd" in flags else X86_RATES if {"sse", "sse2"} & flags else {}
    rates: dict[str, dict[str, Any]] = {}
    for precision, entries in table.items():
        found = next((e for e in entries if set(e[0]) <= flags), None)
        fp32 = rates.get("fp32")
        if found is not None and (fp32 is None or found[1] >= fp32["ops_per_cycle"]):
            flag, ops, unit = found
            rates[precision] = {"ops_per_cycle": ops, "flags": "+".join(flag), "unit": unit}
        elif fp32 is not None:
            rates[precision] = {**fp32, "unit": f"{fp32['unit']}, as fp32"}
    return rates


def instruction_gops(ops_per_cycle: int, cores: int, clock_ghz: float) -> float:
    """The instruction-rate bound in GOP/s: ops per cycle per core x cores x GHz."""
    return ops_per_cycle * cores * clock_ghz


def read_text(path: Path) -> str:
    """``path``'s text ('' where it cannot be read)."""
    try:
        return path.read_text()
    except OSError:
        return ""


def positive_number(text: str) -> float | None:
    """``text`` as a number above 0, else None."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value > 0 else None


def cpufreq_max_ghz(root: Path = Path("/")) -> float | None:
    """The highest ``cpuinfo_max_freq`` (kHz) of any CPU in sysfs, in GHz; None without
    cpufreq (most VMs). ``lscpu``'s "CPU max MHz" is read from these same files."""
    khz = [positive_number(read_text(path)) for path in root.glob(CPUFREQ_MAX)]
    known = [k for k in khz if k is not None]
    return max(known) / 1e6 if known else None


def cpuinfo_ghz(cpuinfo: str) -> float | None:
    """The highest clock /proc/cpuinfo states, in GHz: its ``cpu MHz`` lines (the current
    clock on bare metal, the nominal one in a VM) and a model name's ``@ 2.60GHz``."""
    mhz = [
        positive_number(m) for m in re.findall(r"^cpu MHz\s*:\s*([0-9.]+)", cpuinfo, re.M | re.I)
    ]
    ghz = [positive_number(g) for g in re.findall(r"@\s*([0-9.]+)\s*GHz", cpuinfo, re.I)]
    return max([m / 1e3 for m in mhz if m] + [g for g in ghz if g], default=None)


def cpu_clock(root: Path = Path("/")) -> dict[str, Any] | None:
    """``{"ghz", "source"}``: the larger clock of cpufreq's maximum and /proc/cpuinfo's
    (``cpuinfo_ghz``; in a VM often the only one, and maybe below the turbo clock), read
    under ``root``; None where the machine states none."""
    stated = {
        "cpufreq cpuinfo_max_freq": cpufreq_max_ghz(root),
        "/proc/cpuinfo": cpuinfo_ghz(read_text(root / "proc/cpuinfo")),
    }
    known = {source: ghz for source, ghz in stated.items() if ghz}
    if not known:
        return None
    source = max(known, key=known.__getitem__)
    return {"ghz": known[source], "source": source}


def cores_used(threads: int = 0) -> int:
    """The cores a bench on ``threads`` threads (0: the default, all) keeps busy: at most the
    CPUs this process may run on (SMT siblings count as cores: an upper bound)."""
    return min(threads, usable_cores()) if threads > 0 else usable_cores()


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
    """Per precision, ``library name -> one n x n x n product`` for every library here that
    builds it."""
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
        for precision in found:  # none where it cannot compile one (bf16 with its oneDNN
            with contextlib.suppress(RuntimeError):  # capped below the CPU: ONEDNN_MAX_CPU_ISA)
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


def measure_gemms(
    sizes: Sequence[int] = PEAK_SIZES, min_time: float = 0.5, threads: int = 0
) -> dict[str, dict[int, dict[str, float]]]:
    """``{precision: {n: {library: GOP/s}}}``: 2 n^3 / the median seconds of one product."""
    torch = optional_torch()
    if threads and torch is not None:
        torch.set_num_threads(threads)
    gemms: dict[str, dict[int, dict[str, float]]] = {p: {} for p in PEAK_PRECISIONS}
    for n in sizes:
        for precision, libraries in gemm_candidates(n, threads).items():
            seconds = {name: seconds_per_call(fn, min_time) for name, fn in libraries.items()}
            gemms[precision][n] = {name: 2 * n**3 / t / 1e9 for name, t in seconds.items()}
    return gemms


def precision_peak(
    gemm: dict[int, dict[str, float]],
    rate: dict[str, Any] | None,
    cores: int,
    clock_ghz: float | None,
) -> dict[str, Any] | None:
    """One precision's peak: ``gops`` = the larger of ``instruction_gops`` (its ``rate`` x
    ``cores`` x ``clock_ghz``) and ``gemm_gops`` (the best of ``gemm``'s sizes and libraries),
    ``bound`` saying which; None with neither."""
    timed = [(gops, library, n) for n, libs in gemm.items() for library, gops in libs.items()]
    best = max(timed, default=None)
    instruction = None
    if rate and clock_ghz:
        instruction = instruction_gops(rate["ops_per_cycle"], cores, clock_ghz)
    gemm_gops = best[0] if best else None
    bounds = [g for g in (instruction, gemm_gops) if g is not None]
    if not bounds:
        return None
    by_library: dict[str, float] = {}
    for gops, library, _ in timed:
        by_library[library] = max(gops, by_library.get(library, 0.0))
    return {
        "gops": max(bounds),
        "bound": INSTRUCTION_BOUND if instruction == max(bounds) else GEMM_BOUND,
        "instruction_gops": instruction,
        "ops_per_cycle": rate["ops_per_cycle"] if rate else None,
        "unit": rate["unit"] if rate else None,
        "flags": rate["flags"] if rate else None,
        "gemm_gops": gemm_gops,
        "library": best[1] if best else None,
        "size": best[2] if best else None,
        "by_library": by_library,
        "by_size": {str(n): libs for n, libs in gemm.items()},
    }


def combine_peaks(
    gemms: dict[str, dict[int, dict[str, float]]],
    flags: set[str],
    cores: int,
    clock: dict[str, Any] | None,
    sizes: Sequence[int] = PEAK_SIZES,
) -> dict[str, Any]:
    """The peaks record: per precision ``precision_peak`` of the GEMMs timed and the CPU's
    ``flags``, plus the sizes timed (``size``: the largest), ``cores`` and ``clock``."""
    rates = instruction_rates(flags)
    ghz = clock["ghz"] if clock else None
    peaks: dict[str, Any] = {
        "size": max(sizes),
        "sizes": list(sizes),
        "cores": cores,
        "clock_ghz": ghz,
        "clock_source": clock["source"] if clock else None,
        "cpu_flags": sorted(flags & RATE_FLAGS),
    }
    for precision in PEAK_PRECISIONS:
        peak = precision_peak(gemms.get(precision, {}), rates.get(precision), cores, ghz)
        if peak is not None:
            peaks[precision] = peak
    return peaks


def measure_peaks(
    sizes: Sequence[int] = PEAK_SIZES,
    min_time: float = 0.5,
    threads: int = 0,
    log: Callable[[str], None] = lambda s: None,
    root: Path = Path("/"),
) -> dict[str, Any]:
    """This machine's peaks (``combine_peaks``): GEMMs timed at ``sizes`` for ``min_time``
    seconds each, the flags and clock read under ``root`` (tests: a fake), the cores of
    ``threads``."""
    gemms = measure_gemms(sizes, min_time, threads)
    flags = cpu_flags(read_text(root / "proc/cpuinfo"))
    peaks = combine_peaks(gemms, flags, cores_used(threads), cpu_clock(root), sizes)
    log(peaks_line(peaks))
    return peaks


def peak_text(peak: dict[str, Any], cores: int | None, clock_ghz: float | None) -> str:
    """e.g. ``332 GOP/s (instruction rate: 2 cores x 64 ops/cycle (AVX-512 FMA) x 2.60 GHz;
    best GEMM 150, torch 1024^3)``."""
    rate = None
    if peak.get("instruction_gops"):
        rate = f"{cores} cores x {peak['ops_per_cycle']} ops/cycle ({peak['unit']}) x "
        rate += f"{clock_ghz:.2f} GHz"
    gemm = f"{peak['library']} {peak['size']}^3" if peak.get("gemm_gops") else None
    if peak.get("bound") == INSTRUCTION_BOUND:
        best = f"; best GEMM {peak['gemm_gops']:.0f}, {gemm}" if gemm else "; no GEMM timed"
        return f"{peak['gops']:.0f} GOP/s (instruction rate: {rate}{best})"
    other = f"; instruction rate {peak['instruction_gops']:.0f}: {rate}" if rate else ""
    return f"{peak['gops']:.0f} GOP/s (best GEMM: {gemm}{other})"


def peaks_line(peaks: dict[str, Any]) -> str:
    """One line of every precision's peak and which bound it is, e.g. ``CPU peaks (the larger
    of instruction rate and best GEMM): fp32 332 GOP/s (instruction rate: ...), ...``; a
    record of a GEMM-only ``bench --peak`` (no ``bound``) as it was written then."""
    present = [p for p in PEAK_PRECISIONS if p in peaks]
    if any("bound" not in peaks[p] for p in present):
        parts = [f"{p} {peaks[p]['gops']:.0f} GOP/s ({peaks[p]['library']})" for p in present]
        return f"GEMM peaks ({peaks['size']}^3, this machine): {', '.join(parts) or 'none'}"
    cores, ghz = peaks.get("cores"), peaks.get("clock_ghz")
    parts = [f"{p} {peak_text(peaks[p], cores, ghz)}" for p in present]
    head = "CPU peaks (this machine; each the larger of its instruction rate and best GEMM)"
    return f"{head}: {', '.join(parts) or 'none'}"


def add_peak_shares(rows: list[dict[str, Any]], peaks: dict[str, Any]) -> None:
    """``of_peak``: a CPU row's GOP/s as a share of the peak of its precision; a row above it
    keeps its share (never clipped) and gets ``of_peak_note`` saying why it can be."""
    for r in rows:
        precision = r.get("precision", "")
        peak = peaks.get(precision) if precision in PEAK_PRECISIONS else None
        if "gops" in r and peak and str(r.get("device", "cpu")).startswith("cpu"):
            r["of_peak"] = r["gops"] / peak["gops"]
            if r["of_peak"] > 1:
                r["of_peak_note"] = above_peak_note(peak)


ABOVE_INSTRUCTION_RATE = (
    "above the instruction rate: the row executes fewer operations than it counts (e.g. "
    "Winograd convolutions), or the CPU ran above its stated clock"
)
ABOVE_GEMM = (
    "above the best GEMM (no instruction rate: flags or clock unknown): the engine's kernels "
    "beat these GEMMs, or execute fewer operations than counted (e.g. Winograd convolutions)"
)


def above_peak_note(peak: dict[str, Any]) -> str:
    """Why a row can read above its peak (``of_peak`` > 1), by the peak's bound."""
    if peak.get("bound") == INSTRUCTION_BOUND:
        return ABOVE_INSTRUCTION_RATE
    return ABOVE_GEMM
