"""Energy of a benchmark window: one interface over Jetson tegrastats, NVML and Linux RAPL.

``power_sampler(device)`` picks the sensor for this machine and device, or says in one line why
there is none. A sampler's ``start()`` / ``stop()`` bracket the measured work; ``stop()`` returns
an ``EnergyReading`` (joules, seconds, samples, throttling seen, hottest sensor).

- Jetson (``/etc/nv_tegra_release``): ``tegrastats`` as a normal user. The energy source is the
  board input rail: ``VDD_IN`` (TX1, TX2, Xavier NX, Orin NX/Nano), ``POM_5V_IN`` (Nano) or
  ``VIN`` (Thor's INA238). AGX Xavier and AGX Orin print no input rail, so their rails are summed
  (what jetson-stats does), and the source says so.
- x86 + NVIDIA GPU: NVML (nvidia-ml-py) total energy counter (Volta and newer), else power
  samples from a background thread; clock-event reasons give throttling.
- CPU: RAPL package domains under ``/sys/class/powercap`` (counter wraparound handled).

Nothing here needs root, changes clocks or power modes, or imports torch.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

SYSTEM_ROOT = Path("/")  # where sysfs, /etc/nv_tegra_release and /usr/bin are read (tests: a fake)

# Rails that are the board's total input, in the order they are looked for (see input_rail).
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN")
# Temperatures that are not a measurement: PMIC is a fixed 100C on the TX/Nano family (jetson-stats
# skips it too); -256C is a sensor that is off (Orin's CV/GPU zones when power-gated).
_FAKE_TEMPS = ("PMIC",)
_OFFLINE_TEMP_C = -200.0


@dataclass(frozen=True)
class EnergyReading:
    """Energy used between a sampler's start() and stop()."""

    source: str
    seconds: float
    joules: float
    samples: int
    throttling: tuple[str, ...] = ()
    max_temp_c: float | None = None

    @property
    def mean_watts(self) -> float:
        """Joules over seconds; 0.0 for an empty window."""
        return self.joules / self.seconds if self.seconds > 0 else 0.0

    def per_item(self, items: int) -> dict[str, float | None]:
        """Mean watts and the energy per image; None where items or joules are zero."""
        return {
            "mean_w": self.mean_watts,
            "mj_per_image": self.joules * 1e3 / items if items > 0 else None,
            "images_per_j": items / self.joules if self.joules > 0 else None,
        }

    def as_dict(self) -> dict[str, Any]:
        """The reading as plain JSON-ready values, mean watts included."""
        out = asdict(self)
        out["throttling"] = list(self.throttling)
        out["mean_w"] = self.mean_watts
        return out


@runtime_checkable
class PowerSampler(Protocol):
    """Brackets a window: start(), then stop() returns its EnergyReading."""

    source: str

    def start(self) -> None: ...

    def stop(self) -> EnergyReading: ...


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------------
# Integration


def integrate_power(samples: Sequence[tuple[float, float]], start: float, stop: float) -> float:
    """Joules from (seconds, watts) samples over [start, stop], by the trapezoid rule.

    Power is linear between samples and held at the first/last sample's value beyond them;
    samples outside the window only shape the power at its edges.
    """
    if stop <= start or not samples:
        return 0.0
    points = sorted(samples)
    times = [t for t, _ in points]
    watts = [w for _, w in points]

    def at(t: float) -> float:
        if t <= times[0]:
            return watts[0]
        if t >= times[-1]:
            return watts[-1]
        i = bisect.bisect_right(times, t)
        t0, t1 = times[i - 1], times[i]
        if t1 == t0:
            return watts[i]
        return watts[i - 1] + (watts[i] - watts[i - 1]) * (t - t0) / (t1 - t0)

    knots = [start, *(t for t in times if start < t < stop), stop]
    return sum((b - a) * (at(a) + at(b)) / 2 for a, b in itertools.pairwise(knots))


def counter_delta(first: int, last: int, max_range: int) -> int:
    """Increase of a counter that wraps to 0 at max_range (read at most one wrap apart)."""
    delta = last - first
    return delta + max_range if delta < 0 else delta


# ---------------------------------------------------------------------------------------------
# tegrastats

_NUM = r"-?\d+(?:\.\d+)?"
# "VDD_IN 4736mW/4736mW", "POM_5V_IN 2395/2395", JetPack 7: "VDD_IN 9761mW/9761mW/9761mW".
_RAIL_RE = re.compile(
    rf"(?<![\w@])([A-Za-z][A-Za-z0-9_]*) ({_NUM})(?:mW)?/({_NUM})(?:mW)?(?:/{_NUM}(?:mW)?)?(?=\s|$)"
)
# "GR3D_FREQ 0%@[305]", "GR3D_FREQ 12%@[1300,1300]", "GR3D_FREQ 0%@76", "GR3D_FREQ 0%",
# Thor "GR3D_FREQ @[1000,1000,1000]"; L4T 28 printed "GR3D 3%@76".
_GR3D_RE = re.compile(r"(?<![\w])GR3D(?:_FREQ)? (?:(\d+)%)?(?:@\[?([\d,]+)\]?)?")
# "cpu@45.5C", "CPU@45.5C", "tj@47.1C", "CV0@-256C", JetPack 7 "cpu@52.968C/52.968C".
_TEMP_RE = re.compile(rf"(?<![\w%])([A-Za-z][A-Za-z0-9_]*)@({_NUM})C(?![\w])")


def parse_tegrastats(line: str) -> dict[str, Any]:
    """One tegrastats line: rails and averages (mW), GPU load (%) and clock (MHz), temps (C).

    ``rails`` holds each rail's current milliwatts and ``averages`` its running average
    (tegrastats' second value); "NC" (not connected) channels are left out, and so are
    temperatures that are not readings (PMIC's fixed 100C, -256C for a sensor that is off).
    ``gpu_load_pct`` / ``gpu_mhz`` are None where the line has none (the highest GPC's clock
    where it prints one per GPC).
    """
    rails: dict[str, float] = {}
    averages: dict[str, float] = {}
    for name, current, average in _RAIL_RE.findall(line):
        if name == "NC":
            continue
        rails[name] = float(current)
        averages[name] = float(average)
    gpu_load = gpu_mhz = None
    match = _GR3D_RE.search(line)
    if match:
        if match.group(1) is not None:
            gpu_load = float(match.group(1))
        if match.group(2):
            clocks = [float(c) for c in match.group(2).split(",") if c]
            gpu_mhz = max(clocks) if clocks else None
    temps: dict[str, float] = {}
    for name, value in _TEMP_RE.findall(line):
        celsius = float(value)
        if name.upper() in _FAKE_TEMPS or celsius <= _OFFLINE_TEMP_C:
            continue
        temps[name] = celsius
    return {
        "rails": rails,
        "averages": averages,
        "gpu_load_pct": gpu_load,
        "gpu_mhz": gpu_mhz,
        "temps": temps,
    }


def input_rail(rails: dict[str, float]) -> str | None:
    """The rail that is the board's total input (VDD_IN, POM_5V_IN or Thor's VIN), or None.

    None on AGX Xavier (GPU, CPU, SOC, CV, VDDRQ, SYS5V) and AGX Orin (VDD_GPU_SOC, VDD_CPU_CV,
    VIN_SYS_5V0, VDDQ_VDD2_1V8AO): their module power is the sum of the rails (board_power).
    """
    return next((name for name in INPUT_RAILS if name in rails), None)


def board_power(rails: dict[str, float]) -> tuple[str, float] | None:
    """(label, milliwatts) of the board: its input rail, else the sum of all rails; None if none."""
    if not rails:
        return None
    name = input_rail(rails)
    if name is not None:
        return name, rails[name]
    return "sum of rails " + "+".join(rails), sum(rails.values())


def tegrastats_path() -> str | None:
    """The tegrastats executable: on PATH, else SYSTEM_ROOT/usr/bin/tegrastats; None if neither."""
    found = shutil.which("tegrastats")
    if found:
        return found
    fallback = SYSTEM_ROOT / "usr/bin/tegrastats"
    return str(fallback) if fallback.is_file() else None


class TegrastatsSampler:
    """Board energy on a Jetson from tegrastats lines read by a daemon thread."""

    def __init__(
        self,
        exe: str | Path,
        interval_ms: int = 100,
        kill_after_s: float = 2.0,
        clocks_pinned: bool = False,
    ) -> None:
        self.exe = str(exe)
        # jetson_clocks pins the GPU clock: a fall during the window is throttling (without
        # it DVFS moves the clock with the load, and a fall says nothing).
        self.clocks_pinned = clocks_pinned
        self._gpu_mhz: list[float] = []
        self.interval_ms = max(1, int(interval_ms))
        self.kill_after_s = kill_after_s
        self.source = "tegrastats"
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._power: list[tuple[float, float]] = []
        self._temps: list[tuple[float, float]] = []
        self._label: str | None = None
        self._got_power = threading.Event()
        self._t0 = 0.0
        self._reading: EnergyReading | None = None

    def start(self) -> None:
        """Start tegrastats and the thread that reads it."""
        if self._proc is not None:
            raise RuntimeError("TegrastatsSampler already started")
        self._power, self._temps, self._label, self._reading = [], [], None, None
        self._gpu_mhz = []
        self._got_power.clear()
        self._t0 = time.monotonic()
        self._proc = subprocess.Popen(
            [self.exe, "--interval", str(self.interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._thread = threading.Thread(
            target=self._read, args=(self._proc,), name="tegrastats", daemon=True
        )
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):  # the pipe closed under us at stop()
            for line in proc.stdout:
                now = time.monotonic()
                parsed = parse_tegrastats(line)
                with self._lock:
                    if parsed["gpu_mhz"]:
                        self._gpu_mhz.append(parsed["gpu_mhz"])
                    temps = parsed["temps"]
                    if temps:
                        self._temps.append((now, max(temps.values())))
                    milliwatts = self._board_mw(parsed["rails"])
                    if milliwatts is not None:
                        self._power.append((now, milliwatts / 1e3))
                        self._got_power.set()

    def _board_mw(self, rails: dict[str, float]) -> float | None:
        """This line's board power, from the same rail(s) as the window's first line."""
        if self._label is None:
            found = board_power(rails)
            if found is None:
                return None
            self._label = found[0]
            self.source = f"tegrastats {self._label}"
            return found[1]
        if self._label in rails:
            return rails[self._label]
        if self._label.startswith("sum of rails ") and rails and input_rail(rails) is None:
            names = self._label.removeprefix("sum of rails ").split("+")
            if all(n in rails for n in names):
                return sum(rails[n] for n in names)
        return None

    def _halt(self) -> None:
        proc, thread = self._proc, self._thread
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.kill_after_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2.0)
        if thread is not None:
            thread.join(timeout=2.0)
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()
        self._proc = self._thread = None

    def stop(self) -> EnergyReading:
        """Stop tegrastats (kill if it lingers) and integrate the input rail over the window."""
        if self._reading is not None and self._proc is None:
            return self._reading
        if self._proc is None:
            raise RuntimeError("TegrastatsSampler.stop() before start()")
        t1 = time.monotonic()
        if not self._got_power.is_set():  # a window shorter than one interval: take the next line
            self._got_power.wait(timeout=2 * self.interval_ms / 1e3 + 1.0)
        self._halt()
        with self._lock:
            power, temps = list(self._power), list(self._temps)
        if not power:
            raise RuntimeError(
                "tegrastats printed no power rails (some JetPack releases show them only to root)"
            )
        in_window = [c for t, c in temps if self._t0 <= t <= t1] or [c for _, c in temps]
        self._reading = EnergyReading(
            source=self.source,
            seconds=t1 - self._t0,
            joules=integrate_power(power, self._t0, t1),
            samples=len(power),
            throttling=self._clock_fall(),
            max_temp_c=max(in_window) if in_window else None,
        )
        return self._reading

    def _clock_fall(self) -> tuple[str, ...]:
        """``gpu clock fell A->B MHz`` when jetson_clocks pinned it and it fell anyway."""
        mhz = self._gpu_mhz
        if not self.clocks_pinned or not mhz or min(mhz) >= mhz[0]:
            return ()
        return (f"gpu clock fell {mhz[0]:.0f}->{min(mhz):.0f} MHz",)


def _tegrastats_sampler() -> TegrastatsSampler | str | None:
    """None off a Jetson; on one, a sampler or why there is none."""
    if not (SYSTEM_ROOT / "etc/nv_tegra_release").exists():
        return None
    exe = tegrastats_path()
    if exe is None:
        where = SYSTEM_ROOT / "usr/bin/tegrastats"
        return f"tegrastats: a Jetson, but tegrastats is neither on PATH nor at {where}"
    from bench.machine import jetson_identity

    pinned = (jetson_identity() or {}).get("jetson_clocks") == "on"
    return TegrastatsSampler(exe, clocks_pinned=pinned)


# ---------------------------------------------------------------------------------------------
# NVML

# Clock-event reasons that mean the GPU is held back; GpuIdle, ApplicationsClocksSetting,
# DisplayClockSetting and SyncBoost do not.
_THROTTLE_BITS = (
    ("SwPowerCap", "sw_power_cap"),
    ("HwSlowdown", "hw_slowdown"),
    ("HwThermalSlowdown", "hw_thermal"),
    ("SwThermalSlowdown", "sw_thermal"),
    ("HwPowerBrakeSlowdown", "hw_power_brake"),
)


def _throttle_labels(nvml: Any, mask: int) -> tuple[str, ...]:
    labels = []
    for suffix, label in _THROTTLE_BITS:
        bit = getattr(nvml, "nvmlClocksEventReason" + suffix, None)
        if bit is None:
            bit = getattr(nvml, "nvmlClocksThrottleReason" + suffix, 0)
        if bit and mask & bit:
            labels.append(label)
    return tuple(labels)


def _clock_reasons(nvml: Any, handle: Any) -> int:
    getter = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    if getter is None:  # older nvidia-ml-py has only the Throttle name
        getter = nvml.nvmlDeviceGetCurrentClocksThrottleReasons
    return int(getter(handle))


class NvmlSampler:
    """GPU energy from NVML: the total energy counter, or power samples where it is missing."""

    def __init__(self, index: int = 0, use_counter: bool = True, interval_s: float = 0.05) -> None:
        self.index = index
        self.use_counter = use_counter
        self.interval_s = interval_s
        what = "energy counter" if use_counter else "power samples"
        self.source = f"NVML {what} (GPU {index})"
        self._nvml: Any = None
        self._handle: Any = None
        self._thread: threading.Thread | None = None
        self._halt_event = threading.Event()
        self._lock = threading.Lock()
        self._power: list[tuple[float, float]] = []
        self._mask = 0
        self._max_temp: float | None = None
        self._t0 = 0.0
        self._e0 = 0
        self._reading: EnergyReading | None = None

    def start(self) -> None:
        """Initialise NVML, read the counter (or first power sample), start the poller."""
        import pynvml

        if self._nvml is not None:
            raise RuntimeError("NvmlSampler already started")
        pynvml.nvmlInit()
        try:
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
        except pynvml.NVMLError:
            pynvml.nvmlShutdown()
            raise
        self._nvml = pynvml
        self._power, self._mask, self._max_temp, self._reading = [], 0, None, None
        self._halt_event.clear()
        self._t0 = time.monotonic()
        if self.use_counter:
            self._e0 = int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        self._poll()
        self._thread = threading.Thread(target=self._run, name="nvml-power", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        nvml, handle = self._nvml, self._handle
        now = time.monotonic()
        with self._lock:
            if not self.use_counter:
                with contextlib.suppress(nvml.NVMLError):
                    self._power.append((now, nvml.nvmlDeviceGetPowerUsage(handle) / 1e3))
            with contextlib.suppress(nvml.NVMLError, AttributeError):
                self._mask |= _clock_reasons(nvml, handle)
            with contextlib.suppress(nvml.NVMLError, AttributeError):
                temp = float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
                self._max_temp = temp if self._max_temp is None else max(self._max_temp, temp)

    def _run(self) -> None:
        while not self._halt_event.wait(self.interval_s):
            self._poll()

    def stop(self) -> EnergyReading:
        """Read the counter (or last sample), stop the poller and shut NVML down."""
        if self._reading is not None and self._nvml is None:
            return self._reading
        if self._nvml is None:
            raise RuntimeError("NvmlSampler.stop() before start()")
        nvml = self._nvml
        try:
            t1 = time.monotonic()
            e1 = (
                int(nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
                if self.use_counter
                else 0
            )
            self._poll()
        finally:
            self._halt_event.set()
            if self._thread is not None:
                self._thread.join(timeout=2.0)
            self._thread = None
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlShutdown()
            self._nvml = None
        with self._lock:
            power, mask, max_temp = list(self._power), self._mask, self._max_temp
        if self.use_counter:
            if e1 < self._e0:
                raise RuntimeError("NVML energy counter went backwards (driver reloaded?)")
            joules, samples = (e1 - self._e0) / 1e3, 2
        else:
            joules, samples = integrate_power(power, self._t0, t1), len(power)
        self._reading = EnergyReading(
            source=self.source,
            seconds=t1 - self._t0,
            joules=joules,
            samples=samples,
            throttling=_throttle_labels(nvml, mask),
            max_temp_c=max_temp,
        )
        return self._reading


def _nvml_sampler(index: int) -> NvmlSampler | str:
    """An NVML sampler for GPU ``index``, or why there is none (one line)."""
    try:
        import pynvml
    except ImportError:
        return "NVML: nvidia-ml-py (pynvml) is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound as err:
        return _one_line(f"NVML: {err} (no NVIDIA driver)")
    except pynvml.NVMLError as err:
        return _one_line(f"NVML: nvmlInit failed: {err}")
    try:
        count = int(pynvml.nvmlDeviceGetCount())
        if not 0 <= index < count:
            return f"NVML: no GPU {index} ({count} visible)"
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            use_counter = True
        except pynvml.NVMLError_NotSupported:
            try:
                pynvml.nvmlDeviceGetPowerUsage(handle)
            except pynvml.NVMLError as err:
                return _one_line(f"NVML: GPU {index} reports neither energy nor power: {err}")
            use_counter = False
    except pynvml.NVMLError as err:
        return _one_line(f"NVML: {err}")
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    return NvmlSampler(index, use_counter=use_counter)


# ---------------------------------------------------------------------------------------------
# RAPL

_RAPL_DOMAIN_RE = re.compile(r"intel-rapl:(\d+)")


def _read_text(path: Path) -> str:
    return path.read_text()


def _read_int(path: Path) -> int:
    return int(_read_text(path).strip())


class RaplSampler:
    """CPU package energy from RAPL counters, polled so that each wrap is seen."""

    def __init__(self, domains: Sequence[tuple[str, Path]], poll_s: float = 1.0) -> None:
        self.domains = list(domains)
        self.poll_s = poll_s
        self.source = "RAPL " + "+".join(name for name, _ in self.domains)
        self._lock = threading.Lock()
        self._halt_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._ranges: list[int] = []
        self._last: list[int] = []
        self._total_uj = 0
        self._reads = 0
        self._t0 = 0.0
        self._reading: EnergyReading | None = None

    def _read_all(self) -> list[int]:
        return [_read_int(path / "energy_uj") for _, path in self.domains]

    def _accumulate(self) -> None:
        values = self._read_all()
        with self._lock:
            for i, value in enumerate(values):
                self._total_uj += counter_delta(self._last[i], value, self._ranges[i])
                self._last[i] = value
            self._reads += 1

    def start(self) -> None:
        """Read every package's counter and start the poller."""
        if self._thread is not None:
            raise RuntimeError("RaplSampler already started")
        self._ranges = [_read_int(path / "max_energy_range_uj") for _, path in self.domains]
        self._total_uj, self._reading = 0, None
        self._halt_event.clear()
        self._t0 = time.monotonic()
        self._last = self._read_all()
        self._reads = 1
        self._thread = threading.Thread(target=self._run, name="rapl", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._halt_event.wait(self.poll_s):
            with contextlib.suppress(OSError, ValueError):
                self._accumulate()

    def stop(self) -> EnergyReading:
        """Read the counters a last time and stop the poller."""
        if self._reading is not None and self._thread is None:
            return self._reading
        if self._thread is None:
            raise RuntimeError("RaplSampler.stop() before start()")
        t1 = time.monotonic()
        self._halt_event.set()
        self._thread.join(timeout=2.0)
        self._thread = None
        self._accumulate()
        self._reading = EnergyReading(
            source=self.source,
            seconds=t1 - self._t0,
            joules=self._total_uj / 1e6,
            samples=self._reads,
        )
        return self._reading


def rapl_domains() -> tuple[list[tuple[str, Path]], str | None]:
    """The readable RAPL package domains (name, folder), or none and why (one line)."""
    base = SYSTEM_ROOT / "sys/class/powercap"
    if not base.is_dir():
        return [], f"RAPL: no {base}"
    folders = sorted(
        (p for p in base.iterdir() if _RAPL_DOMAIN_RE.fullmatch(p.name)),
        key=lambda p: int(p.name.split(":")[1]),
    )
    domains = []
    for folder in folders:
        try:
            name = _read_text(folder / "name").strip()
        except OSError:
            continue
        if name.startswith("package"):  # not psys, which already includes the packages
            domains.append((name, folder))
    if not domains:
        return [], f"RAPL: no package domain (intel-rapl:N) in {base}"
    for _, folder in domains:
        for leaf in ("energy_uj", "max_energy_range_uj"):
            path = folder / leaf
            try:
                _read_int(path)
            except PermissionError:
                return [], (
                    f"RAPL: {path} is readable by root only "
                    "(kernels restrict it since CVE-2020-8694); run as root or grant read access"
                )
            except (OSError, ValueError) as err:
                return [], _one_line(f"RAPL: cannot read {path}: {err}")
    return domains, None


def _rapl_sampler() -> RaplSampler | str:
    domains, why = rapl_domains()
    return RaplSampler(domains) if why is None else why


def power_sensor(device: str = "auto") -> str:
    """The sensor bench reads for ``device`` (e.g. ``tegrastats``), or ``not available:
    <reason>``: the environment block's ``power``."""
    found = power_sampler(device)
    return f"not available: {found}" if isinstance(found, str) else found.source


def energy_fields(sampler: PowerSampler, images: int) -> dict[str, Any]:
    """Stop ``sampler`` and give a bench row's energy columns for ``images`` images:
    ``power_w``, ``mj_per_image``, ``images_per_j``, ``power`` (the source), ``throttling``
    and ``max_temp_c``; a sensor that read nothing gives ``power`` as the reason."""
    try:
        reading = sampler.stop()
    except RuntimeError as exc:  # e.g. tegrastats printed no rails for this user
        return {"power": f"not available: {_one_line(str(exc))}"}
    per = reading.per_item(images)
    return {
        "power_w": per["mean_w"],
        "mj_per_image": per["mj_per_image"],
        "images_per_j": per["images_per_j"],
        "power": reading.source,
        "throttling": list(reading.throttling),
        "max_temp_c": reading.max_temp_c,
    }


# ---------------------------------------------------------------------------------------------
# Selection

_GPU_DEVICES = ("cuda", "gpu", "tensorrt", "trt")


def _device_kind(device: str) -> str:
    name = device.strip().lower()
    if name.startswith(_GPU_DEVICES):
        return "gpu"
    if name.startswith("cpu"):
        return "cpu"
    return "auto"


def _gpu_index(device: str) -> int:
    match = re.search(r":(\d+)$", device.strip())
    return int(match.group(1)) if match else 0


def power_sampler(device: str = "cpu") -> PowerSampler | str:
    """The sampler for this machine and device, or the one-line reason there is none."""
    tegra = _tegrastats_sampler()
    if isinstance(tegra, TegrastatsSampler):
        return tegra
    if isinstance(tegra, str):
        return f"no power sensor: {tegra}"
    reasons = [f"tegrastats: not a Jetson (no {SYSTEM_ROOT / 'etc/nv_tegra_release'})"]
    kind = _device_kind(device)
    if kind in ("gpu", "auto"):
        nvml = _nvml_sampler(_gpu_index(device))
        if not isinstance(nvml, str):
            return nvml
        reasons.append(nvml)
    if kind in ("cpu", "auto"):
        rapl = _rapl_sampler()
        if not isinstance(rapl, str):
            return rapl
        reasons.append(rapl)
    return _one_line("no power sensor: " + ", ".join(reasons))


__all__ = [
    "INPUT_RAILS",
    "SYSTEM_ROOT",
    "EnergyReading",
    "NvmlSampler",
    "PowerSampler",
    "RaplSampler",
    "TegrastatsSampler",
    "board_power",
    "counter_delta",
    "energy_fields",
    "input_rail",
    "integrate_power",
    "parse_tegrastats",
    "power_sampler",
    "power_sensor",
    "rapl_domains",
    "tegrastats_path",
]
