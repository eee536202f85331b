"""bench.power: tegrastats lines of real Jetsons, the energy integral, RAPL counters, NVML."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import power
from bench.power import (
    EnergyReading,
    NvmlSampler,
    PowerSampler,
    RaplSampler,
    TegrastatsSampler,
    board_power,
    counter_delta,
    input_rail,
    integrate_power,
    parse_tegrastats,
    power_sampler,
)

# --- Real tegrastats lines --------------------------------------------------------------------
# DD = github.com/DataDog/datadog-agent, pkg/collector/corechecks/nvidia/jetson/jetson_test.go
# (commit a50b634caee0389882c39a7f2e8bc52991bebcbe), the samples its Jetson check is tested on.

# Jetson Nano, L4T 32 (DD nanoSample): POM_5V_IN is the 5 V board input, no unit printed.
NANO = (
    "RAM 534/3964MB (lfb 98x4MB) SWAP 5/1982MB (cached 1MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [16%@204,9%@204,0%@204,0%@204] EMC_FREQ 0%@204 GR3D_FREQ 0%@76 APE 25 PLL@34C "
    "CPU@36.5C PMIC@100C GPU@36C AO@39.5C thermal@36.25C POM_5V_IN 1022/1022 POM_5V_GPU 0/0 "
    "POM_5V_CPU 204/204"
)
# Jetson TX1 (DD tx1Sample): current 2532 mW, running average 2698 mW.
TX1 = (
    "RAM 1179/3983MB (lfb 120x4MB) IRAM 0/252kB(lfb 252kB) CPU [1%@102,4%@102,0%@102,0%@102] "
    "EMC_FREQ 7%@408 GR3D_FREQ 0%@76 APE 25 AO@42.5C CPU@37.5C GPU@39C PLL@37C Tdiode@42.75C "
    "PMIC@100C Tboard@42C thermal@38.5C VDD_IN 2532/2698 VDD_CPU 76/178 VDD_GPU 19/19"
)
# Jetson TX2, L4T 32 rail names (DD tx2Sample).
TX2 = (
    "RAM 2344/7852MB (lfb 1154x4MB) SWAP 0/3926MB (cached 0MB) CPU [1%@345,off,off,1%@345,"
    "0%@345,2%@345] EMC_FREQ 4%@1600 GR3D_FREQ 0%@624 APE 150 PLL@37.5C MCPU@37.5C PMIC@100C "
    "Tboard@32C GPU@35C BCPU@37.5C thermal@36.5C Tdiode@34.25C VDD_SYS_GPU 152/152 "
    "VDD_SYS_SOC 687/687 VDD_4V0_WIFI 0/0 VDD_IN 3056/3056 VDD_SYS_CPU 152/152 VDD_SYS_DDR 883/883"
)
# Jetson TX2 (github.com/henrygd/beszel agent/gpu_test.go, from PR #1631 "pre jetpack5").
TX2_BESZEL = (
    "RAM 3276/7859MB (lfb 5x4MB) SWAP 1626/12122MB (cached 181MB) CPU [44%@1421,49%@2031,"
    "67%@2034,17%@1420,25%@1419,8%@1420] EMC_FREQ 1%@1866 GR3D_FREQ 0%@114 APE 150 MTS fg 1% "
    "bg 1% PLL@42.5C MCPU@42.5C PMIC@50C Tboard@38C GPU@39.5C BCPU@42.5C thermal@41.3C "
    "Tdiode@39.25C VDD_SYS_GPU 182/182 VDD_SYS_SOC 730/730 VDD_4V0_WIFI 0/0 VDD_IN 5297/5297 "
    "VDD_SYS_CPU 1917/1917 VDD_SYS_DDR 1241/1241"
)
# Jetson AGX Xavier 32 GB (DD agXSample): no input rail; jetson-stats sums the rails.
AGX_XAVIER = (
    "RAM 721/31927MB (lfb 7291x4MB) SWAP 0/15963MB (cached 0MB) CPU [2%@1190,0%@1190,0%@1190,"
    "0%@1190,off,off,off,off] EMC_FREQ 0%@665 GR3D_FREQ 0%@318 APE 150 MTS fg 0% bg 0% AO@37.5C "
    "GPU@37.5C Tdiode@40C PMIC@100C AUX@36C CPU@37.5C thermal@36.9C Tboard@37C GPU 0/0 "
    "CPU 311/311 SOC 932/932 CV 0/0 VDDRQ 621/621 SYS5V 1482/1482"
)
# Jetson AGX Xavier 16 GB, JetPack 4.2, as a normal user: GR3D_FREQ without a clock
# (github.com/martinkersner/gtop/pull/7, comment of 2019-06-17).
AGX_XAVIER_JP42 = (
    "RAM 14700/15692MB (lfb 3x2MB) SWAP 898/8192MB (cached 23MB) CPU [0%@1190,0%@1190,0%@1190,"
    "0%@1190,0%@1190,0%@1190,0%@1190,0%@1190] EMC_FREQ 0% GR3D_FREQ 0% AO@30C GPU@30.5C "
    "Tboard@31C Tdiode@32C AUX@30.5C CPU@31.5C thermal@30.8C PMIC@100C GPU 463/463 CPU 618/618 "
    "SOC 2936/2936 CV 0/0 VDDRQ 309/309 SYS5V 3306/3306"
)
# Jetson Xavier NX (DD xavierNxSample).
XAVIER_NX = (
    "RAM 4412/7772MB (lfb 237x4MB) SWAP 139/3886MB (cached 2MB) CPU [9%@1190,6%@1190,6%@1190,"
    "5%@1190,4%@1190,8%@1267] EMC_FREQ 10%@1600 GR3D_FREQ 62%@306 APE 150 MTS fg 0% bg 0% "
    "AO@41.5C GPU@43C PMIC@100C AUX@41.5C CPU@43.5C thermal@42.55C VDD_IN 4067/4067 "
    "VDD_CPU_GPU_CV 738/738 VDD_SOC 1353/1353"
)
# Orin Nano/NX 8 GB (6 cores, 7620 MB), JetPack 6, "mW" units and GR3D_FREQ X%@[MHz]
# (github.com/henrygd/beszel agent/gpu_test.go, case "more valid data"; issue #286 is an
# Orin Nano's).
ORIN_NANO = (
    "11-15-2024 08:38:09 RAM 6185/7620MB (lfb 8x2MB) SWAP 851/3810MB (cached 1MB) "
    "CPU [15%@729,11%@729,14%@729,13%@729,11%@729,8%@729] EMC_FREQ 43%@2133 GR3D_FREQ 63%@[621] "
    "NVDEC off NVJPG off NVJPG1 off VIC off OFA off APE 200 cpu@53.968C soc2@52.437C soc0@50.75C "
    "gpu@53.343C tj@53.968C soc1@51.656C VDD_IN 12479mW/12479mW VDD_CPU_GPU_CV 4667mW/4667mW "
    "VDD_SOC 2817mW/2817mW"
)
# Orin Nano as a normal user: "GR3D_FREQ 0%" with no clock (henrygd/beszel agent/gpu_test.go,
# case "orin nano"; from issue #895).
ORIN_NANO_USER = (
    "06-18-2025 11:25:24 RAM 3452/7620MB (lfb 25x4MB) SWAP 1518/16384MB (cached 174MB) "
    "CPU [1%@1420,2%@1420,0%@1420,2%@1420,2%@729,1%@729] GR3D_FREQ 0% cpu@50.031C soc2@49.031C "
    "soc0@50C gpu@49.031C tj@50.25C soc1@50.25C VDD_IN 4824mW/4824mW VDD_CPU_GPU_CV 518mW/518mW "
    "VDD_SOC 1475mW/1475mW"
)
# AGX Orin 64 GB, JetPack 6: no input rail, NC channels, -256C for sensors that are off
# (github.com/GDWR/jetson_exporter/issues/14).
AGX_ORIN = (
    "04-11-2025 10:36:27 RAM 4321/62801MB (lfb 1759x4MB) SWAP 19/31400MB (cached 0MB) "
    "CPU [0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729] "
    "EMC_FREQ 0%@2133 GR3D_FREQ 0%@[0,0] VIC_FREQ 729 APE 174 CV0@-256C CPU@44.562C Tboard@32C "
    "SOC2@40.093C Tdiode@33C SOC0@41.093C CV1@-256C GPU@-256C tj@44.343C SOC1@41.25C CV2@-256C "
    "VDD_GPU_SOC 2340mW/2340mW VDD_CPU_CV 390mW/390mW VIN_SYS_5V0 4025mW/4025mW NC 0mW/0mW "
    "VDDQ_VDD2_1V8AO 301mW/301mW NC 0mW/0mW"
)
# AGX Orin, JetPack 7.2 (L4T R39.2): three values per rail, two per temperature, per-GPC clocks
# (github.com/rbonghi/jetson_stats jtop/tests/test_06_tegra_parse.py, TEGRASTATS_ORIN_JP7).
AGX_ORIN_JP7 = (
    "07-25-2026 09:08:28 RAM 20642/62817MB (lfb 1x2MB) "
    "CPU [23%@2201,10%@2201,4%@2201,14%@2201,30%@2201,18%@2201,10%@2201,10%@2201,33%@2201,"
    "7%@2201,5%@2201,27%@2201] "
    "EMC_FREQ 3%@3199 GR3D_FREQ 12%@[1300,1300] NVENC0 off NVDEC0 off NVJPG0 off NVJPG1 off "
    "VIC off OFA off NVDLA0 off NVDLA1 off PVA0_FREQ off APE 174 "
    "cpu@52.968C/52.968C soc2@48.406C/48.406C soc0@49.531C/49.531C gpu@47.625C/47.625C "
    "VDD_GPU_SOC 5139mW/5139mW/5139mW VDD_CPU_CV 3268mW/3268mW/3268mW "
    "VIN_SYS_5V0 5500mW/5500mW/5500mW"
)
# AGX Thor, JetPack 7: VIN (the carrier's INA238, the whole input) next to the module rails.
# A fragment quoted as "real output" in a public code comment found through code search (its
# repository is not named by the index); its author elided the CPU list as "...". Rail names
# agree with rbonghi/jetson_stats PR #900 (INA238 VIN = total) and NVIDIA forum thread 366461.
THOR_FRAGMENT = (
    "05-14-2026 21:36:35 RAM 26063/125772MB (lfb 35x4MB) CPU [2%@972,...] "
    "VDD_GPU -392mW/-392mW VDD_CPU_SOC_MSS 3924mW/3835mW VIN_SYS_5V0 5064mW/5055mW "
    "VIN 15004mW/15096mW"
)
# Thor's GPU field: per-GPC clocks, no load (jetson_stats test_06_tegra_parse.py TEGRASTATS_THOR).
THOR_GR3D = "RAM 4722/7844MB (lfb 1x512kB) EMC_FREQ 2%@1866 GR3D_FREQ @[1000,1000,1000] APE 150"

# An /etc/nv_tegra_release of an AGX Thor (rbonghi/jetson_stats issue #711).
NV_TEGRA_RELEASE = (
    "# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic, EABI: aarch64, "
    "DATE: Fri Aug 22 00:55:42 UTC 2025\n"
)

# (line, input rail, board mW, its average mW, GPU load %, GPU MHz, (a temp, C), hottest C);
# every number read off the line by hand; sums are the line's rails added up (NC left out).
CASES = {
    "nano": (NANO, "POM_5V_IN", 1022, 1022, 0, 76, ("AO", 39.5), 39.5),
    "tx1": (TX1, "VDD_IN", 2532, 2698, 0, 76, ("Tdiode", 42.75), 42.75),
    "tx2": (TX2, "VDD_IN", 3056, 3056, 0, 624, ("BCPU", 37.5), 37.5),
    "tx2_beszel": (TX2_BESZEL, "VDD_IN", 5297, 5297, 0, 114, ("GPU", 39.5), 42.5),
    # 0 + 311 + 932 + 0 + 621 + 1482
    "agx_xavier": (AGX_XAVIER, None, 3346, None, 0, 318, ("Tdiode", 40.0), 40.0),
    # 463 + 618 + 2936 + 0 + 309 + 3306
    "agx_xavier_jp42": (AGX_XAVIER_JP42, None, 7632, None, 0, None, ("AUX", 30.5), 32.0),
    "xavier_nx": (XAVIER_NX, "VDD_IN", 4067, 4067, 62, 306, ("CPU", 43.5), 43.5),
    "orin_nano": (ORIN_NANO, "VDD_IN", 12479, 12479, 63, 621, ("gpu", 53.343), 53.968),
    "orin_nano_user": (ORIN_NANO_USER, "VDD_IN", 4824, 4824, 0, None, ("soc0", 50.0), 50.25),
    # 2340 + 390 + 4025 + 301
    "agx_orin": (AGX_ORIN, None, 7056, None, 0, 0, ("tj", 44.343), 44.562),
    # 5139 + 3268 + 5500
    "agx_orin_jp7": (AGX_ORIN_JP7, None, 13907, None, 12, 1300, ("soc0", 49.531), 52.968),
    "thor": (THOR_FRAGMENT, "VIN", 15004, 15096, None, None, None, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_parse_real_lines(case: str) -> None:
    line, rail, board_mw, avg_mw, load, mhz, temp, hottest = CASES[case]
    parsed = parse_tegrastats(line)
    assert input_rail(parsed["rails"]) == rail
    label, milliwatts = board_power(parsed["rails"])
    assert milliwatts == pytest.approx(board_mw)
    if rail is not None:
        assert label == rail
        assert parsed["rails"][rail] == board_mw
        assert parsed["averages"][rail] == avg_mw
    else:
        assert label.startswith("sum of rails ")
    assert parsed["gpu_load_pct"] == load
    assert parsed["gpu_mhz"] == mhz
    temps = parsed["temps"]
    if temp is not None:
        assert temps[temp[0]] == temp[1]
    assert (max(temps.values()) if temps else None) == hottest
    assert "PMIC" not in temps  # a fixed 100C on the TX/Nano family, not a reading


def test_parse_keeps_rail_names_and_drops_what_is_not_a_reading() -> None:
    nano = parse_tegrastats(NANO)["rails"]
    assert nano == {"POM_5V_IN": 1022, "POM_5V_GPU": 0, "POM_5V_CPU": 204}  # not RAM/SWAP/IRAM
    xavier = parse_tegrastats(AGX_XAVIER)
    assert xavier["rails"]["CPU"] == 311 and xavier["temps"]["CPU"] == 37.5  # rail vs zone
    orin = parse_tegrastats(AGX_ORIN)
    assert set(orin["rails"]) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}
    assert not {"CV0", "CV1", "CV2", "GPU"} & set(orin["temps"])  # -256C: sensors that are off
    thor = parse_tegrastats(THOR_FRAGMENT)["rails"]
    assert thor["VDD_GPU"] == -392 and thor["VIN_SYS_5V0"] == 5064
    jp7 = parse_tegrastats(AGX_ORIN_JP7)
    assert jp7["temps"]["gpu"] == 47.625 and jp7["rails"]["VDD_CPU_CV"] == 3268


def test_thor_gpu_field_has_clocks_but_no_load() -> None:
    parsed = parse_tegrastats(THOR_GR3D)
    assert parsed["gpu_load_pct"] is None and parsed["gpu_mhz"] == 1000
    assert parse_tegrastats(THOR_GR3D)["rails"] == {}
    assert board_power({}) is None


def test_input_rail_prefers_the_board_input_to_module_rails() -> None:
    assert input_rail({"VDD_CPU_GPU_CV": 5000, "VDD_SOC": 2000, "VDD_IN": 9000}) == "VDD_IN"
    assert input_rail({"VIN_SYS_5V0": 5064, "VIN": 15004}) == "VIN"  # not the 5 V system rail
    assert input_rail({"VIN_SYS_5V0": 4025, "VDD_GPU_SOC": 2340}) is None


# --- Integration ------------------------------------------------------------------------------


def _ramp(t: float) -> float:
    return 2.0 + 3.0 * t  # watts


def _ramp_joules(a: float, b: float) -> float:
    return 2.0 * (b - a) + 1.5 * (b * b - a * a)  # the integral of 2 + 3t from a to b


def test_trapezoid_is_exact_on_a_ramp_with_uneven_samples() -> None:
    times = [3.1, 0.0, 0.1, 0.35, 0.4, 1.2, 2.0]  # unsorted, uneven
    samples = [(t, _ramp(t)) for t in times]
    joules = integrate_power(samples, 0.35, 2.0)
    assert joules == pytest.approx(_ramp_joules(0.35, 2.0), rel=1e-12)  # 9.11625
    inside = [w for t, w in samples if 0.35 <= t <= 2.0]
    mean_times_seconds = sum(inside) / len(inside) * 1.65
    assert abs(mean_times_seconds - joules) > 0.5  # what a mean of uneven samples would give


def test_window_is_clipped_between_samples() -> None:
    samples = [(t, _ramp(t)) for t in (0.0, 0.4, 1.2, 2.0)]
    assert integrate_power(samples, 0.5, 1.0) == pytest.approx(_ramp_joules(0.5, 1.0))  # 2.125
    # Samples before and after the window do not add energy of their own.
    assert integrate_power(samples, 1.2, 1.2) == 0.0
    assert integrate_power(samples, 0.0, 2.0) == pytest.approx(_ramp_joules(0.0, 2.0))


def test_edges_hold_the_nearest_sample_and_steps_are_trapezoids() -> None:
    assert integrate_power([(1.0, 10.0), (2.0, 10.0)], 0.0, 3.0) == pytest.approx(30.0)
    assert integrate_power([(0.0, 0.0), (1.0, 10.0)], 0.0, 1.0) == pytest.approx(5.0)
    assert integrate_power([(5.0, 7.0)], 0.0, 2.0) == pytest.approx(14.0)
    assert integrate_power([], 0.0, 2.0) == 0.0


def test_counter_delta_wraps_at_the_range() -> None:
    assert counter_delta(100, 350, 1000) == 250
    assert counter_delta(900, 150, 1000) == 250  # 100 to the wrap, 150 after it


def test_reading_per_item_and_guards() -> None:
    reading = EnergyReading("x", seconds=4.0, joules=2.0, samples=3)
    assert reading.mean_watts == 0.5
    assert reading.per_item(10) == {"mean_w": 0.5, "mj_per_image": 200.0, "images_per_j": 5.0}
    empty = EnergyReading("x", seconds=0.0, joules=0.0, samples=0)
    assert empty.mean_watts == 0.0
    assert empty.per_item(0) == {"mean_w": 0.0, "mj_per_image": None, "images_per_j": None}
    assert reading.as_dict()["mean_w"] == 0.5 and reading.as_dict()["throttling"] == []


# --- RAPL -------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    """Replace a file in one step, so a poller never reads half a value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _rapl_tree(root: Path, domains: dict[str, tuple[str, int, int]]) -> Path:
    base = root / "sys/class/powercap"
    for folder, (name, energy, max_range) in domains.items():
        _write(base / folder / "name", name + "\n")
        _write(base / folder / "energy_uj", f"{energy}\n")
        _write(base / folder / "max_energy_range_uj", f"{max_range}\n")
    return base


MAX_UJ = 262143328850  # a common max_energy_range_uj


@pytest.fixture
def rapl_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "root"
    _rapl_tree(
        root,
        {
            "intel-rapl:0": ("package-0", MAX_UJ - 1_000_000, MAX_UJ),
            "intel-rapl:0:0": ("core", 10, MAX_UJ),  # a subzone: already inside package-0
            "intel-rapl:1": ("package-1", 5_000_000, MAX_UJ),
            "intel-rapl:2": ("psys", 7, MAX_UJ),  # the platform domain includes the packages
        },
    )
    monkeypatch.setattr(power, "SYSTEM_ROOT", root)
    return root


def test_rapl_two_packages_one_wrapping(rapl_root: Path) -> None:
    sampler = power_sampler("cpu")
    assert isinstance(sampler, RaplSampler) and isinstance(sampler, PowerSampler)
    assert sampler.source == "RAPL package-0+package-1"
    sampler.start()
    base = rapl_root / "sys/class/powercap"
    _write(base / "intel-rapl:0/energy_uj", "2000000\n")  # wrapped: 1 J before, 2 J after
    _write(base / "intel-rapl:1/energy_uj", "9500000\n")  # 4.5 J
    _write(base / "intel-rapl:0:0/energy_uj", "999999999\n")  # never counted
    _write(base / "intel-rapl:2/energy_uj", "999999999\n")
    reading = sampler.stop()
    assert reading.joules == pytest.approx(3.0 + 4.5, abs=1e-9)
    assert reading.source == "RAPL package-0+package-1" and reading.samples >= 2
    assert sampler.stop() is reading  # a second stop returns the same reading


def test_rapl_permission_error_says_root(rapl_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = power._read_text

    def denied(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(power, "_read_text", denied)
    reason = power_sampler("cpu")
    assert isinstance(reason, str) and "\n" not in reason
    assert "RAPL" in reason and "root" in reason


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file anyway")
def test_rapl_mode_000_says_root(rapl_root: Path) -> None:
    (rapl_root / "sys/class/powercap/intel-rapl:0/energy_uj").chmod(0)
    reason = power_sampler("cpu")
    assert isinstance(reason, str) and "root" in reason


def test_no_powercap_is_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(power, "SYSTEM_ROOT", tmp_path)
    reason = power_sampler("cpu")
    assert isinstance(reason, str) and reason.startswith("no power sensor")
    assert "RAPL" in reason and "tegrastats" in reason and "\n" not in reason


@pytest.mark.skipif(Path("/sys/class/powercap").exists(), reason="this machine has powercap")
def test_this_machine_cpu_has_no_sensor() -> None:
    assert isinstance(power_sampler("cpu"), str)


# --- NVML -------------------------------------------------------------------------------------

NVML_FUNCTIONS = (
    "nvmlInit",
    "nvmlShutdown",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetTotalEnergyConsumption",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetTemperature",
)


@pytest.fixture
def fake_nvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The real pynvml with its device calls replaced: 250 W of energy counter, 150 W samples."""
    pynvml = pytest.importorskip("pynvml")
    for name in NVML_FUNCTIONS:
        assert hasattr(pynvml, name), name  # a misspelt name must fail here, not pass silently
    not_supported = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    assert isinstance(not_supported, pynvml.NVMLError_NotSupported)
    state = SimpleNamespace(
        inits=0,
        energy=True,
        counter_w=250.0,
        power_w=150.0,
        mask=0,
        base=time.monotonic(),
        nvml=pynvml,
    )

    def init() -> None:
        state.inits += 1

    def shutdown() -> None:
        state.inits -= 1

    def handle(index: int) -> tuple[str, int]:
        return ("gpu", index)

    def energy(h: object) -> int:
        if not state.energy:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return int(7_000_000 + state.counter_w * 1e3 * (time.monotonic() - state.base))  # mJ

    def temperature(h: object, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return 71

    fakes = {
        "nvmlInit": init,
        "nvmlShutdown": shutdown,
        "nvmlDeviceGetCount": lambda: 1,
        "nvmlDeviceGetHandleByIndex": handle,
        "nvmlDeviceGetTotalEnergyConsumption": energy,
        "nvmlDeviceGetPowerUsage": lambda h: int(state.power_w * 1e3),  # mW
        "nvmlDeviceGetCurrentClocksEventReasons": lambda h: state.mask,
        "nvmlDeviceGetTemperature": temperature,
    }
    for name, fake in fakes.items():
        monkeypatch.setattr(pynvml, name, fake)
    monkeypatch.setattr(power, "SYSTEM_ROOT", tmp_path)  # no Jetson, no RAPL
    return state


def test_nvml_energy_counter_and_throttling(fake_nvml: SimpleNamespace) -> None:
    nv = fake_nvml.nvml
    fake_nvml.mask = (
        nv.nvmlClocksEventReasonSwPowerCap
        | nv.nvmlClocksEventReasonHwThermalSlowdown
        | nv.nvmlClocksEventReasonGpuIdle
        | nv.nvmlClocksEventReasonApplicationsClocksSetting
    )
    sampler = power_sampler("cuda:0")
    assert isinstance(sampler, NvmlSampler) and isinstance(sampler, PowerSampler)
    assert sampler.source == "NVML energy counter (GPU 0)"
    assert fake_nvml.inits == 0  # the probe shut NVML down again
    sampler.start()
    time.sleep(0.2)
    reading = sampler.stop()
    # mJ counter at 250 W: joules = 250 W x the window, to within the microseconds between the
    # window's clock reads and the counter reads.
    assert reading.joules == pytest.approx(250.0 * reading.seconds, abs=250.0 * 0.005)
    assert reading.seconds >= 0.2 and reading.samples == 2
    assert reading.throttling == ("sw_power_cap", "hw_thermal")  # idle/app clocks are not
    assert reading.max_temp_c == 71.0
    assert fake_nvml.inits == 0


def test_nvml_without_energy_counter_samples_power(fake_nvml: SimpleNamespace) -> None:
    fake_nvml.energy = False
    fake_nvml.mask = fake_nvml.nvml.nvmlClocksEventReasonGpuIdle
    sampler = power_sampler("cuda")
    assert isinstance(sampler, NvmlSampler)
    assert sampler.source == "NVML power samples (GPU 0)"
    sampler.start()
    time.sleep(0.2)
    reading = sampler.stop()
    assert reading.source == "NVML power samples (GPU 0)"
    assert reading.joules == pytest.approx(150.0 * reading.seconds, rel=1e-6)
    assert reading.samples >= 2 and reading.throttling == ()
    assert fake_nvml.inits == 0


def test_nvml_library_not_found_is_a_reason(
    fake_nvml: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    nv = fake_nvml.nvml

    def missing() -> None:
        raise nv.NVMLError(nv.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(nv, "nvmlInit", missing)
    assert isinstance(nv.NVMLError(nv.NVML_ERROR_LIBRARY_NOT_FOUND), nv.NVMLError_LibraryNotFound)
    reason = power_sampler("cuda")
    assert isinstance(reason, str) and reason.startswith("no power sensor")
    assert "NVML" in reason and "driver" in reason and "\n" not in reason
    assert "RAPL" not in reason  # a GPU device: CPU package energy is not its energy


def test_nvml_missing_gpu_index_and_auto(
    fake_nvml: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = power_sampler("cuda:3")
    assert isinstance(reason, str) and "no GPU 3" in reason
    assert isinstance(power_sampler("auto"), NvmlSampler)
    nv = fake_nvml.nvml
    monkeypatch.setattr(
        nv, "nvmlInit", lambda: (_ for _ in ()).throw(nv.NVMLError(nv.NVML_ERROR_DRIVER_NOT_LOADED))
    )
    root = tmp_path / "rapl"
    _rapl_tree(root, {"intel-rapl:0": ("package-0", 0, MAX_UJ)})
    monkeypatch.setattr(power, "SYSTEM_ROOT", root)
    assert isinstance(power_sampler("auto"), RaplSampler)  # no GPU: the CPU packages


# --- tegrastats end to end --------------------------------------------------------------------

FAKE_TEGRASTATS = """\
import os, signal, sys, time
here = os.path.dirname(os.path.abspath(__file__))
if {ignore_term}:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
args = sys.argv[1:]
with open(os.path.join(here, "argv.txt"), "w") as f:
    f.write(" ".join(args))
with open(os.path.join(here, "pid.txt"), "w") as f:
    f.write(str(os.getpid()))
interval = int(args[args.index("--interval") + 1]) / 1000
lines = {lines!r}
for i in range(200):  # bounded: exits by itself
    sys.stdout.write(lines[i % len(lines)] + "\\n")
    sys.stdout.flush()
    time.sleep(interval)
"""


def _fake_tegrastats(folder: Path, lines: list[str], ignore_term: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "tegrastats"
    body = FAKE_TEGRASTATS.format(ignore_term=ignore_term, lines=lines)
    script.write_text(f"#!{sys.executable} -S\n{body}")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def _jetson_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "root"
    _write(root / "etc/nv_tegra_release", NV_TEGRA_RELEASE)
    monkeypatch.setattr(power, "SYSTEM_ROOT", root)
    return root


def _assert_gone(pid_file: Path) -> None:
    with pytest.raises(ProcessLookupError):  # terminated and reaped
        os.kill(int(pid_file.read_text()), 0)


def test_tegrastats_sampler_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _jetson_root(tmp_path, monkeypatch)
    script = _fake_tegrastats(tmp_path / "bin", [XAVIER_NX])
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    sampler = power_sampler("cuda")  # on a Jetson, tegrastats whatever the device
    assert isinstance(sampler, TegrastatsSampler) and isinstance(sampler, PowerSampler)
    assert sampler.exe == str(script)
    sampler.start()
    time.sleep(0.5)
    reading = sampler.stop()
    assert (tmp_path / "bin/argv.txt").read_text() == f"--interval {sampler.interval_ms}"
    assert reading.source == "tegrastats VDD_IN"
    # VDD_IN is 4067 mW on every line: the energy is that times the window, to within one
    # interval's worth of it (the edges before the first and after the last line).
    watts, interval = 4.067, sampler.interval_ms / 1e3
    assert reading.joules == pytest.approx(watts * reading.seconds, abs=watts * interval)
    assert reading.seconds >= 0.5 and reading.samples >= 2
    assert reading.max_temp_c == 43.5 and reading.throttling == ()
    _assert_gone(tmp_path / "bin/pid.txt")
    assert sampler.stop() is reading


def test_tegrastats_sums_rails_without_an_input_rail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _fake_tegrastats(tmp_path / "bin", [AGX_XAVIER])
    sampler = TegrastatsSampler(script, interval_ms=50)
    sampler.start()
    time.sleep(0.4)
    reading = sampler.stop()
    assert reading.source == "tegrastats sum of rails GPU+CPU+SOC+CV+VDDRQ+SYS5V"
    watts = 3.346  # 0 + 311 + 932 + 0 + 621 + 1482 mW
    assert reading.joules == pytest.approx(watts * reading.seconds, abs=watts * 0.05)
    assert reading.samples >= 2


def test_tegrastats_killed_when_it_ignores_sigterm(tmp_path: Path) -> None:
    script = _fake_tegrastats(tmp_path / "bin", [NANO], ignore_term=True)
    sampler = TegrastatsSampler(script, interval_ms=50, kill_after_s=0.3)
    sampler.start()
    time.sleep(0.25)
    began = time.monotonic()
    reading = sampler.stop()
    assert time.monotonic() - began < 2.0
    assert reading.source == "tegrastats POM_5V_IN"
    _assert_gone(tmp_path / "bin/pid.txt")


def test_tegrastats_from_usr_bin_or_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _jetson_root(tmp_path, monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    reason = power_sampler("cpu")
    assert isinstance(reason, str) and "tegrastats" in reason and "\n" not in reason
    script = _fake_tegrastats(root / "usr/bin", [ORIN_NANO])
    sampler = power_sampler("cpu")
    assert isinstance(sampler, TegrastatsSampler) and sampler.exe == str(script)


@pytest.mark.parametrize("pinned", [True, False])
def test_a_gpu_clock_falling_under_jetson_clocks_is_throttling(
    tmp_path: Path, pinned: bool
) -> None:
    """ORIN_NANO's line at 621 MHz, then the same line with the clock cut to 306 MHz: with the
    clocks pinned (jetson_clocks) that is throttling; without, DVFS and not reported."""
    slowed = ORIN_NANO.replace("GR3D_FREQ 63%@[621]", "GR3D_FREQ 99%@[306]")
    assert parse_tegrastats(slowed)["gpu_mhz"] == 306
    script = _fake_tegrastats(tmp_path / "bin", [ORIN_NANO, ORIN_NANO, slowed])
    sampler = TegrastatsSampler(script, interval_ms=50, clocks_pinned=pinned)
    sampler.start()
    time.sleep(0.4)
    reading = sampler.stop()
    assert reading.throttling == (("gpu clock fell 621->306 MHz",) if pinned else ())
