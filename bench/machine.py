"""The machine a bench ran on: CPU, cores, GPU, driver, Jetson release and package versions.

One record (``environment``) goes into every bench.json; ``same_machine`` compares one with
this machine, so a recommendation is only reused where it was measured.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from densedepth.util.cpu import cpu_capabilities, cpu_model, usable_cores
from densedepth.util.optional import optional_torch
from densedepth.util.support import cuda_version, parse_l4t_release

VERSIONED_PACKAGES = (
    "torch",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnx",
    "tensorrt",
    "pycuda",
    "openvino",
    "nncf",
    "numpy",
    "opencv-python",
    "opencv-python-headless",
)


SYSTEM_ROOT = Path("/")  # where a Jetson's release, model and clock files are read (tests: a fake)
SMI_FIELDS = ("name", "driver_version", "compute_cap")


def environment(threads: int) -> dict[str, Any]:
    """CPU model and cores, the GPU (name, driver, CUDA, compute capability: from nvidia-smi,
    never from torch), the Jetson (L4T release, model, power mode, clocks), and versions."""
    import onnxruntime as ort

    torch = optional_torch()
    jetson = jetson_identity()
    env: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_capabilities": cpu_capabilities(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "threads": threads or "default",
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ort_providers": ort.get_available_providers(),
        **gpu_identity(jetson),
        "jetson": jetson,
    }
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    env["versions"] = versions
    return env


def _nvidia_smi(*args: str) -> str | None:
    """``nvidia-smi ARGS``' output, None without nvidia-smi or when it fails (no driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def gpu_identity(jetson: dict[str, Any] | None = None) -> dict[str, Any]:
    """The first NVIDIA GPU as its driver reports it: ``gpu`` (name), ``driver``, ``cuda``
    (the driver's CUDA version) and ``compute_capability``; None each where there is none
    (on a Jetson without nvidia-smi, ``gpu`` is the board's model: ``jetson``, read here when
    not given)."""
    found: dict[str, Any] = dict.fromkeys(("gpu", "driver", "cuda", "compute_capability"))
    query = _nvidia_smi(f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader")
    if query is None:  # drivers before compute_cap was a query field (R510)
        query = _nvidia_smi(f"--query-gpu={','.join(SMI_FIELDS[:2])}", "--format=csv,noheader")
    first = query.strip().splitlines()[0] if query and query.strip() else ""
    values = [v.strip() for v in first.split(",")] if first else []
    for key, value in zip(("gpu", "driver", "compute_capability"), values, strict=False):
        found[key] = value if value and not value.startswith("[") else None  # [N/A]
    banner = _nvidia_smi() or ""
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", banner)
    found["cuda"] = cuda.group(1) if cuda else None
    if found["gpu"] is None:
        board = jetson or jetson_identity()
        found["gpu"] = (board or {}).get("model")
        if board and found["cuda"] is None:  # no nvidia-smi on JetPack 6: its CUDA toolkit
            found["cuda"] = cuda_version(SYSTEM_ROOT)
    return found


def _read(relative: str) -> str | None:
    try:
        return (SYSTEM_ROOT / relative).read_text().replace("\x00", "").strip()
    except OSError:
        return None


def jetson_identity() -> dict[str, Any] | None:
    """A Jetson's identity, read and never changed: ``l4t`` (e.g. 36.4.3, from
    /etc/nv_tegra_release), ``release`` (that line), ``model`` (the device tree's),
    ``power_mode`` (``nvpmodel -q``: name and id) and ``jetson_clocks`` (on when CPU 0's
    minimum frequency is pinned to its maximum, as jetson_clocks leaves it). None elsewhere."""
    text = _read("etc/nv_tegra_release")
    if not text:
        return None
    release = parse_l4t_release(text)
    cpufreq = "sys/devices/system/cpu/cpu0/cpufreq"
    low, high = _read(f"{cpufreq}/scaling_min_freq"), _read(f"{cpufreq}/scaling_max_freq")
    return {
        "l4t": release.version if release else None,
        "release": release.line if release else text.splitlines()[0].strip("# ").strip(),
        "model": _read("proc/device-tree/model"),
        "power_mode": nvpmodel_mode(),
        "jetson_clocks": None if low is None or high is None else ("on" if low == high else "off"),
    }


def nvpmodel_mode() -> str | None:
    """The power mode ``nvpmodel -q`` reports, e.g. ``MAXN (0)``; None without nvpmodel."""
    exe = shutil.which("nvpmodel")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    name = re.search(r"NV Power Mode:\s*(.+)", out)
    ids = [ln.strip() for ln in out.splitlines() if ln.strip().isdigit()]
    if name is None:
        return None
    return f"{name.group(1).strip()} ({ids[0]})" if ids else name.group(1).strip()


IDENTITY = ("cpu", "cpu_capabilities", "gpu", "compute_capability")
JETSON_IDENTITY = ("l4t", "model", "power_mode", "jetson_clocks")


def same_machine(env: dict[str, Any]) -> str | None:
    """Why a bench environment is not this machine's (CPU, its extensions, GPU and compute
    capability; on a Jetson its L4T release, model, power mode and clocks), or None."""
    ours = jetson_identity() or {}
    here = {"cpu": cpu_model(), "cpu_capabilities": cpu_capabilities(), **gpu_identity(ours)}
    for key in IDENTITY:
        if env.get(key) != here.get(key):
            what = key.replace("_", " ").replace("gpu", "GPU")
            return f"its {what} is {env.get(key)!r}, here {here.get(key)!r}"
    theirs = env.get("jetson") if isinstance(env.get("jetson"), dict) else {}
    for key in JETSON_IDENTITY:
        if theirs.get(key) != ours.get(key):
            return (
                f"its Jetson {key.replace('_', ' ')} is {theirs.get(key)!r}, here {ours.get(key)!r}"
            )
    return None
