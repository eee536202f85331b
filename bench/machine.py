"""The machine a bench ran on: CPU, cores, GPU, driver, Jetson release and package versions.

One record (``environment``) goes into every bench.json; ``same_machine`` compares one with
this machine, so a recommendation is only reused where it was measured.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from densedepth.util.cpu import cpu_capabilities, cpu_model, usable_cores
from densedepth.util.optional import optional_torch

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


def environment(threads: int) -> dict[str, Any]:
    """CPU model and cores, GPU and driver, Jetson release, and the versions that matter."""
    import onnxruntime as ort

    torch = optional_torch()
    cuda = torch is not None and torch.cuda.is_available()
    gpu = gpu_name()
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
        "gpu": gpu,
        "cuda": torch.version.cuda if cuda else None,
        "driver": nvidia_driver(),
        "jetson": jetson_release(),
    }
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    env["versions"] = versions
    return env


def gpu_name() -> str | None:
    """The first CUDA GPU's name as torch sees it (None without torch or a GPU)."""
    torch = optional_torch()
    if torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def nvidia_driver() -> str | None:
    """The NVIDIA driver version from ``nvidia-smi`` (None without one)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


def jetson_release() -> str | None:
    """The L4T release line on a Jetson (``/etc/nv_tegra_release``), None elsewhere."""
    try:
        return Path("/etc/nv_tegra_release").read_text().splitlines()[0].strip("# ").strip()
    except (OSError, IndexError):
        return None


def same_machine(env: dict[str, Any]) -> str | None:
    """Why a bench environment is not this machine's (CPU, its extensions, GPU), or None."""
    here = {"cpu": cpu_model(), "cpu_capabilities": cpu_capabilities()}
    for key, value in here.items():
        if env.get(key) != value:
            return f"its {key.replace('_', ' ')} is {env.get(key)!r}, here {value!r}"
    gpu = gpu_name()
    if env.get("gpu") != gpu:
        return f"its GPU is {env.get('gpu')!r}, here {gpu!r}"
    return None
