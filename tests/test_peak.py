"""bench --peak: the GEMM microbenchmark computes the products it times, the instruction rate
is cores x ops per cycle of the CPU's widest unit x its clock, each peak is the larger of the
two, and rows read against the peak of their own precision."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import peak
from bench.peak import (
    add_peak_shares,
    combine_peaks,
    cores_used,
    cpu_clock,
    gemm_candidates,
    instruction_gops,
    instruction_rates,
    measure_peaks,
    ort_int8_gemm,
    peaks_line,
    seconds_per_call,
)
from densedepth.util.cpu import cpu_flags, usable_cores


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
    # 7-bit weights: without VNNI (oneDNN capped at AVX2) u8 * s8 pairs are summed in saturating
    # int16, 255 * 64 * 2 = 32640 never saturates (full-range s8: ~20% off there)
    w = rng.integers(-64, 64, (96, 32), dtype=np.int8)
    exact = a.astype(np.float64) @ (w.astype(np.float64) * 0.01)
    scale = np.abs(exact).max()
    fp32 = openvino_gemm(a, w, "fp32", threads=1)()
    np.testing.assert_allclose(fp32, exact, atol=1e-4 * scale)
    for precision in ("bf16", "int8"):  # bf16 operands; u8 activations of step 8/255
        try:
            got = openvino_gemm(a, w, precision, threads=1)()
        except RuntimeError:  # bf16 where the CPU has it but oneDNN is capped below it
            if precision == "bf16" and os.environ.get("ONEDNN_MAX_CPU_ISA"):
                continue
            raise
        assert got.shape == (64, 32) and np.abs(got - exact).max() < 0.05 * scale, precision


def test_seconds_per_call_runs_enough_and_takes_the_median() -> None:
    calls = []
    seconds = seconds_per_call(lambda: calls.append(1), min_time=0.0, min_runs=5)
    assert len(calls) == 6 and 0 <= seconds < 0.01  # one untimed call, then 5 timed


def test_peaks_are_two_n_cubed_over_the_time_of_the_fastest_library_and_size() -> None:
    peaks = measure_peaks(sizes=(64, 128), min_time=0.0, threads=1)
    assert peaks["size"] == 128 and peaks["sizes"] == [64, 128] and peaks["cores"] == 1
    for precision in ("fp32", "int8"):
        p = peaks[precision]
        timed = {(n, lib): g for n, libs in p["by_size"].items() for lib, g in libs.items()}
        assert set(p["by_size"]) == {"64", "128"} and min(timed.values()) > 0
        assert p["gemm_gops"] == max(timed.values()) == max(p["by_library"].values())
        assert timed[(str(p["size"]), p["library"])] == p["gemm_gops"]
        for library, best in p["by_library"].items():
            assert best == max(g for (_, lib), g in timed.items() if lib == library)
        assert p["gops"] == max(p["gemm_gops"], p["instruction_gops"] or 0.0)
        assert p["bound"] == ("gemm" if p["gops"] > (p["instruction_gops"] or 0) else
                              "instruction rate")  # fmt: skip
    assert peaks_line(peaks).startswith("CPU peaks (this machine; ")


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


# CPU flag sets as /proc/cpuinfo writes them (trimmed to what matters, plus some noise)
BASE = "fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt"
SAPPHIRE_RAPIDS = (f"{BASE} avx fma avx2 avx512f avx512bw avx512_vnni avx_vnni avx512_bf16 "
                   "amx_tile amx_bf16 amx_int8")  # fmt: skip
CASCADE_LAKE = f"{BASE} avx fma avx2 avx512f avx512bw avx512_vnni"
ALDER_LAKE = f"{BASE} avx fma avx2 avx_vnni"
HASWELL = f"{BASE} avx fma avx2"
SANDY_BRIDGE = f"{BASE} avx"  # no FMA: the SSE figure
ORIN = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm asimddp"
GRAVITON3 = f"{ORIN} i8mm bf16 sve"


def cpuinfo(flags: str, mhz: float | None = 2000.0, model: str = "Some CPU") -> str:
    """Two processors' /proc/cpuinfo blocks with ``flags`` (Arm: ``Features``)."""
    key = "Features" if "asimd" in flags else "flags"
    clock = f"cpu MHz\t\t: {mhz:.3f}\n" if mhz else ""
    return "".join(f"processor\t: {i}\nmodel name\t: {model}\n{clock}{key}\t\t: {flags}\n\n"
                   for i in range(2))  # fmt: skip


def fake_root(tmp_path: Path, text: str, max_khz: dict[int, str] | None = None) -> Path:
    """A system root with ``text`` as /proc/cpuinfo and ``max_khz`` as CPUs' cpufreq maxima."""
    (tmp_path / "proc").mkdir(parents=True)
    (tmp_path / "proc/cpuinfo").write_text(text)
    for cpu, khz in (max_khz or {}).items():
        folder = tmp_path / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        folder.mkdir(parents=True)
        (folder / "cpuinfo_max_freq").write_text(f"{khz}\n")
    return tmp_path


# per core and cycle, by hand: ports x (multiply-adds per instruction) x 2 ops per multiply-add;
# AMX: one 16x16 tile of K (32 bf16 or 64 int8) per 16 cycles
AMX_BF16, AMX_INT8 = 16 * 16 * 32 // 16 * 2, 16 * 16 * 64 // 16 * 2
AVX512_FP32, AVX2_FP32, SSE_FP32 = 2 * 16 * 2, 2 * 8 * 2, 2 * 4 * 2
AVX512_BF16 = 2 * (512 // 16) * 2
VNNI_512, VNNI_256, AVX2_INT8 = 2 * (512 // 8) * 2, 2 * (256 // 8) * 2, 2 * (256 // 8) * 2
NEON = 4  # 128-bit pipes on the widest Arm cores
EXPECTED = {  # flags: (fp32, bf16, int8) ops per cycle per core
    SAPPHIRE_RAPIDS: (AVX512_FP32, AMX_BF16, AMX_INT8),
    CASCADE_LAKE: (AVX512_FP32, AVX512_FP32, VNNI_512),
    ALDER_LAKE: (AVX2_FP32, AVX2_FP32, VNNI_256),
    HASWELL: (AVX2_FP32, AVX2_FP32, AVX2_INT8),
    SANDY_BRIDGE: (SSE_FP32, SSE_FP32, 2 * 16 * 2),  # SSSE3 PMADDUBSW: 16 products
    ORIN: (NEON * 4 * 2, NEON * 4 * 2, NEON * 16 * 2),  # FMLA 4 lanes; SDOT 16 products
    GRAVITON3: (NEON * 4 * 2, NEON * 16 * 2, NEON * 32 * 2),  # BFMMLA 16; SMMLA 32
}


@pytest.mark.parametrize("flags", list(EXPECTED), ids=lambda f: f.split()[-1])
def test_the_instruction_rate_is_cores_times_ops_per_cycle_times_clock(flags: str) -> None:
    rates = instruction_rates(cpu_flags(cpuinfo(flags)))
    for precision, ops in zip(("fp32", "bf16", "int8"), EXPECTED[flags], strict=True):
        assert rates[precision]["ops_per_cycle"] == ops, precision
        assert instruction_gops(rates[precision]["ops_per_cycle"], 2, 2.0) == 2 * ops * 2.0


def test_an_amx_xeon_on_2_cores_at_2_ghz_reaches_4096_bf16_gops() -> None:
    rates = instruction_rates(cpu_flags(cpuinfo(SAPPHIRE_RAPIDS)))
    peaks = combine_peaks({}, cpu_flags(cpuinfo(SAPPHIRE_RAPIDS)), 2,
                          {"ghz": 2.0, "source": "test"})  # fmt: skip
    assert rates["bf16"]["unit"] == "AMX-BF16" and rates["int8"]["flags"] == "amx_int8"
    assert peaks["bf16"]["gops"] == 2 * 1024 * 2.0 == 4096
    assert peaks["int8"]["gops"] == 2 * 2048 * 2.0 and peaks["fp32"]["gops"] == 2 * 64 * 2.0
    assert peaks["bf16"]["bound"] == "instruction rate" and peaks["bf16"]["library"] is None


def test_no_rate_on_an_unknown_architecture() -> None:
    assert instruction_rates(set()) == {} == instruction_rates({"vector", "zba"})


def test_the_clock_is_the_highest_the_machine_states(tmp_path: Path) -> None:
    turbo = fake_root(tmp_path / "a", cpuinfo(HASWELL, 1200.0), {0: "3500000", 1: "3700000"})
    assert cpu_clock(turbo) == {"ghz": 3.7, "source": "cpufreq cpuinfo_max_freq"}
    vm = fake_root(tmp_path / "b", cpuinfo(HASWELL, 2596.122))  # no cpufreq
    assert cpu_clock(vm) == {"ghz": pytest.approx(2.596122), "source": "/proc/cpuinfo"}
    idle = fake_root(tmp_path / "c", cpuinfo(HASWELL, 800.0, "Intel Xeon @ 2.90GHz"),
                     {0: "not a number"})  # fmt: skip
    assert cpu_clock(idle) == {"ghz": pytest.approx(2.9), "source": "/proc/cpuinfo"}
    assert cpu_clock(fake_root(tmp_path / "d", cpuinfo(ORIN, None))) is None
    assert cpu_clock(tmp_path / "nothing") is None


def test_the_cores_are_the_threads_up_to_the_usable_cpus() -> None:
    assert cores_used(0) == usable_cores() == cores_used(10_000)
    assert cores_used(1) == 1


GEMMS = {"fp32": {256: {"numpy": 90.0, "torch": 100.0}, 1024: {"numpy": 120.0, "torch": 80.0}},
         "bf16": {256: {"torch": 700.0}, 1024: {"torch": 500.0}},
         "int8": {256: {"onnxruntime": 300.0}}}  # fmt: skip


def test_each_peak_is_the_larger_of_the_instruction_rate_and_the_best_gemm() -> None:
    flags = cpu_flags(cpuinfo(HASWELL))  # 32 / 32 / 128 ops per cycle, 2 cores, 2.5 GHz
    peaks = combine_peaks(GEMMS, flags, 2, {"ghz": 2.5, "source": "test"}, sizes=(256, 1024))
    assert (peaks["size"], peaks["cores"], peaks["clock_ghz"]) == (1024, 2, 2.5)
    fp32, bf16, int8 = peaks["fp32"], peaks["bf16"], peaks["int8"]
    assert fp32["instruction_gops"] == 2 * 32 * 2.5 == fp32["gops"] == 160
    assert (fp32["bound"], fp32["gemm_gops"], fp32["library"], fp32["size"]) == (
        "instruction rate", 120.0, "numpy", 1024)  # fmt: skip
    assert fp32["by_library"] == {"numpy": 120.0, "torch": 100.0}  # best of each over sizes
    assert bf16["gops"] == 700.0 > bf16["instruction_gops"] == 160  # bf16 here runs as fp32
    assert (bf16["bound"], bf16["library"], bf16["size"]) == ("gemm", "torch", 256)
    assert int8["gops"] == 2 * 128 * 2.5 == 640 > 300 and int8["bound"] == "instruction rate"
    unclocked = combine_peaks(GEMMS, flags, 2, None, sizes=(256, 1024))
    assert unclocked["fp32"]["gops"] == 120.0 and unclocked["fp32"]["bound"] == "gemm"
    assert unclocked["fp32"]["instruction_gops"] is None


def test_peaks_line_says_which_bound_each_precision_is() -> None:
    peaks = combine_peaks(GEMMS, cpu_flags(cpuinfo(HASWELL)), 2, {"ghz": 2.5, "source": "t"})
    line = peaks_line(peaks)
    assert line.startswith("CPU peaks (this machine; each the larger of its instruction rate")
    assert ("fp32 160 GOP/s (instruction rate: 2 cores x 32 ops/cycle (AVX2 FMA) x 2.50 GHz; "
            "best GEMM 120, numpy 1024^3)") in line  # fmt: skip
    assert ("bf16 700 GOP/s (best GEMM: torch 256^3; instruction rate 160: 2 cores x 32 "
            "ops/cycle (AVX2 FMA, as fp32) x 2.50 GHz)") in line  # fmt: skip
    int8 = "int8 640 GOP/s (instruction rate: 2 cores x 128 ops/cycle (AVX2) x 2.50 GHz; "
    assert line.endswith(f"{int8}best GEMM 300, onnxruntime 256^3)")
    legacy = {"size": 1024, "fp32": {"gops": 180.0, "library": "torch", "by_library": {}}}
    assert peaks_line(legacy) == "GEMM peaks (1024^3, this machine): fp32 180 GOP/s (torch)"


def test_a_row_past_the_best_gemm_stays_within_the_instruction_rate() -> None:
    peaks = combine_peaks(GEMMS, cpu_flags(cpuinfo(HASWELL)), 2, {"ghz": 2.5, "source": "t"})
    rows = [
        {"precision": "fp32", "device": "cpu", "gops": 150.0},  # > GEMM 120, < 160
        {"precision": "bf16", "device": "cpu", "gops": 770.0},
    ]  # > both: kept, noted
    add_peak_shares(rows, peaks)
    assert rows[0]["of_peak"] == pytest.approx(150 / 160) and "of_peak_note" not in rows[0]
    assert rows[1]["of_peak"] == pytest.approx(1.1) and "above the best GEMM" in (
        rows[1]["of_peak_note"])  # fmt: skip
    rows = [{"precision": "fp32", "device": "cpu", "gops": 200.0}]
    add_peak_shares(rows, peaks)
    assert rows[0]["of_peak"] == pytest.approx(1.25)
    assert rows[0]["of_peak_note"].startswith("above the instruction rate")


def test_measure_peaks_reads_flags_and_clock_under_its_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_root(tmp_path, cpuinfo(CASCADE_LAKE, 1000.0), {0: "3000000"})
    timed: list[tuple[tuple[int, ...], float, int]] = []

    def fake_gemms(sizes: tuple[int, ...], min_time: float, threads: int) -> dict[str, Any]:
        timed.append((tuple(sizes), min_time, threads))
        return GEMMS

    monkeypatch.setattr(peak, "measure_gemms", fake_gemms)
    lines: list[str] = []
    peaks = measure_peaks(sizes=(256, 1024), min_time=0.1, threads=1, log=lines.append,
                          root=root)  # fmt: skip
    assert timed == [((256, 1024), 0.1, 1)] and lines == [peaks_line(peaks)]
    assert (peaks["cores"], peaks["clock_ghz"], peaks["clock_source"]) == (
        1, 3.0, "cpufreq cpuinfo_max_freq")  # fmt: skip
    assert "avx512_vnni" in peaks["cpu_flags"] and "fpu" not in peaks["cpu_flags"]
    assert peaks["fp32"]["gops"] == 1 * 64 * 3.0  # 192 > GEMM 120
    assert peaks["bf16"]["gops"] == 700.0 > 1 * 64 * 3.0  # no BF16 on Cascade Lake: fp32's
    assert peaks["int8"]["gops"] == 1 * 256 * 3.0
