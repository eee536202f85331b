"""The machine a bench records, read without torch: nvidia-smi's GPU, driver, CUDA and compute
capability, and a Jetson's L4T release, model, power mode and clocks, from a fake system root
and fake ``nvidia-smi`` / ``nvpmodel`` executables printing what the real tools print."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

import bench.machine as machine
from bench.report import jetson_text

# nvidia-smi 570 on an H200: the CSV query and the banner's CUDA line, as the tool prints them.
H200_QUERY = "NVIDIA H200, 570.124.06, 9.0\n"
H200_BANNER = (
    "+-----------------------------------------------------------------------------------------+\n"
    "| NVIDIA-SMI 570.124.06             Driver Version: 570.124.06     CUDA Version: 12.8     |\n"
)
OLD_FIELD_ERROR = 'Field "compute_cap" is not a valid field to query.\n'
# JetPack 6.2 on an Orin Nano (L4T 36.4.3): /etc/nv_tegra_release, the device-tree model and
# `nvpmodel -q`.
ORIN_RELEASE = (
    "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
    "DATE: Wed Jan  8 01:49:37 UTC 2025\n"
    "# KERNEL_VARIANT: oot\n"
)
ORIN_MODEL = "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00"
NVPMODEL_Q = "NV Power Mode: MAXN_SUPER\n2\n"


def fake_tool(folder: Path, name: str, outputs: dict[str, tuple[str, int]]) -> None:
    """An executable ``name`` in ``folder`` printing ``outputs[args]`` (stdout, exit code)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    script.write_text(
        f"#!{sys.executable}\nimport sys\nOUT = {outputs!r}\n"
        "text, code = OUT.get(' '.join(sys.argv[1:]), ('unknown arguments', 2))\n"
        "(sys.stdout if code == 0 else sys.stderr).write(text)\nsys.exit(code)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only the fake tools (nothing of this machine's)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setattr(machine, "SYSTEM_ROOT", tmp_path / "empty-root")
    return folder


QUERY = "--query-gpu=name,driver_version,compute_cap --format=csv,noheader"
OLD_QUERY = "--query-gpu=name,driver_version --format=csv,noheader"


def jetson_root(root: Path, clocks_pinned: bool) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "nv_tegra_release").write_text(ORIN_RELEASE)
    (root / "proc" / "device-tree").mkdir(parents=True)
    (root / "proc" / "device-tree" / "model").write_text(ORIN_MODEL)
    cpufreq = root / "sys/devices/system/cpu/cpu0/cpufreq"
    cpufreq.mkdir(parents=True)
    (cpufreq / "scaling_max_freq").write_text("1728000\n")
    (cpufreq / "scaling_min_freq").write_text("1728000\n" if clocks_pinned else "115200\n")
    return root


def test_gpu_identity_from_nvidia_smi(tools: Path) -> None:
    fake_tool(tools, "nvidia-smi", {QUERY: (H200_QUERY, 0), "": (H200_BANNER, 0)})
    assert machine.gpu_identity() == {
        "gpu": "NVIDIA H200", "driver": "570.124.06", "cuda": "12.8", "compute_capability": "9.0",
    }  # fmt: skip


def test_a_driver_without_the_compute_cap_field_still_names_the_gpu(tools: Path) -> None:
    old_driver = {QUERY: (OLD_FIELD_ERROR, 2), OLD_QUERY: ("Tesla T4, 470.57.02\n", 0)}
    fake_tool(tools, "nvidia-smi", {**old_driver, "": ("", 0)})
    found = machine.gpu_identity()
    assert found == {"gpu": "Tesla T4", "driver": "470.57.02", "cuda": None,
                     "compute_capability": None}  # fmt: skip


def test_no_gpu_and_no_jetson_here(tools: Path) -> None:
    assert machine.gpu_identity() == dict.fromkeys(("gpu", "driver", "cuda", "compute_capability"))
    assert machine.jetson_identity() is None


@pytest.mark.parametrize("pinned", [True, False])
def test_jetson_identity_from_its_own_files(
    tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pinned: bool
) -> None:
    monkeypatch.setattr(machine, "SYSTEM_ROOT", jetson_root(tmp_path / "jetson", pinned))
    fake_tool(tools, "nvpmodel", {"-q": (NVPMODEL_Q, 0)})
    jetson = machine.jetson_identity()
    assert jetson == {
        "l4t": "36.4.3",
        "release": ORIN_RELEASE.splitlines()[0].lstrip("# "),
        "model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
        "power_mode": "MAXN_SUPER (2)",
        "jetson_clocks": "on" if pinned else "off",
    }
    gpu = machine.gpu_identity()  # no nvidia-smi: the board names the GPU
    assert gpu["gpu"] == jetson["model"] and gpu["driver"] is None
    assert "L4T 36.4.3" in jetson_text(jetson) and "MAXN_SUPER (2)" in jetson_text(jetson)


def test_a_bench_from_another_power_mode_is_another_machine(
    tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine, "SYSTEM_ROOT", jetson_root(tmp_path / "jetson", True))
    fake_tool(tools, "nvpmodel", {"-q": (NVPMODEL_Q, 0)})
    here = machine.environment(threads=0)
    assert here["jetson"]["power_mode"] == "MAXN_SUPER (2)" and here["gpu"].startswith("NVIDIA")
    assert machine.same_machine(here) is None
    other = {**here, "jetson": {**here["jetson"], "power_mode": "15W (0)"}}
    why = machine.same_machine(other)
    assert why == "its Jetson power mode is '15W (0)', here 'MAXN_SUPER (2)'"
    other_gpu = {**here, "compute_capability": "8.7", "jetson": here["jetson"]}
    assert machine.same_machine(other_gpu) == "its compute capability is '8.7', here None"


def test_a_jetson_without_nvidia_smi_names_its_cuda_toolkit(
    tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = jetson_root(tmp_path / "jetson", True)
    (root / "usr/local/cuda").mkdir(parents=True)
    (root / "usr/local/cuda/version.json").write_text('{"cuda": {"version": "12.6.68"}}')
    monkeypatch.setattr(machine, "SYSTEM_ROOT", root)
    assert machine.gpu_identity()["cuda"] == "12.6.68"
