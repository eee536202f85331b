"""What the CPU is and which vector/matrix extensions it has (torch-free; Linux /proc/cpuinfo).

Used by bench's environment block, the recommendation of an engine for this machine, and the
choice of training precision (bf16 pays only where the CPU multiplies bf16 natively).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# CPU flags (Linux /proc/cpuinfo) -> the names a user knows, in order of appearance
CPU_FEATURES = (
    ("avx2", "AVX2"),
    ("avx512f", "AVX-512"),
    ("avx512_vnni", "VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx512_bf16", "BF16"),
    ("amx_tile", "AMX"),
    ("asimd", "NEON"),
    ("asimddp", "DOTPROD"),
    ("i8mm", "I8MM"),
    ("bf16", "BF16"),
)


def read_cpuinfo() -> str:
    """``/proc/cpuinfo`` ('' where there is none)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """Every flag of the x86 ``flags`` or Arm ``Features`` lines."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


def cpu_capabilities(cpuinfo: str | None = None) -> list[str]:
    """The vector and matrix extensions the CPU reports (x86 ``flags``, Arm ``Features``):
    what decides whether INT8 (VNNI, DOTPROD, I8MM), BF16 and AMX are fast here."""
    flags = cpu_flags(cpuinfo)
    names: list[str] = []
    for flag, name in CPU_FEATURES:
        if flag in flags and name not in names:
            names.append(name)
    return names


def native_bf16(cpuinfo: str | None = None) -> str | None:
    """The extension that multiplies bf16 natively here ('AMX', 'AVX512-BF16'), or None."""
    flags = cpu_flags(cpuinfo)
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform``)."""
    for line in read_cpuinfo().splitlines():
        if line.lower().startswith(("model name", "hardware")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity: a container's or taskset's share), else
    the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1
