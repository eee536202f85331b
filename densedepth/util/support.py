"""Where the toolkit installs: one support matrix for the README, the install resolution tests
and ``make install-jetson``.

Standard library only, and Python 3.8 syntax (``from __future__ import annotations``, no
``match``, no ``X | Y`` outside annotations): JetPack 5's Python 3.8 runs the installer far
enough to be told, in one line, why it is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MIN_PYTHON = (3, 10)
NVIDIA_INDEX = "https://pypi.nvidia.com"  # where TensorRT's library wheels live (not on PyPI)


@dataclass(frozen=True)
class Platform:
    """One row of the support matrix."""

    key: str
    name: str
    arch: str  # uname -m: x86_64 | aarch64
    glibc: str  # the newest manylinux tag its wheels may carry (pip --platform)
    pythons: tuple[str, ...]
    cuda: str
    tensorrt: str
    extras: tuple[str, ...]  # extras this row supports (each resolved by the tests)
    l4t_major: int | None = None  # Jetson Linux release (R36 -> JetPack 6)
    constraints: tuple[str, ...] = ()  # pins JetPack's own packages impose on pip's
    system_modules: tuple[str, ...] = ()  # imported from JetPack, never pip-installed
    left_out: tuple[str, ...] = ()  # project requirements JetPack provides instead
    extra_requirements: tuple[str, ...] = ()  # what the row adds (JetPack's CUDA binding)

    def pip_platforms(self) -> list[str]:
        """``--platform`` values for a resolution on this row: every manylinux tag its glibc
        runs (pip does not widen an explicit --platform to older glibc versions itself)."""
        newest = int(self.glibc.split("_")[1])
        tags = [f"manylinux_2_{minor}_{self.arch}" for minor in range(newest, 16, -1)]
        return [*tags, f"manylinux2014_{self.arch}"]


X86 = Platform(
    key="x86-64",
    name="x86-64 Linux (+ NVIDIA GPU)",
    arch="x86_64",
    glibc="2_28",
    pythons=("3.10", "3.11", "3.12", "3.13"),
    cuda="12 or 13 (driver R525+ / R580+)",
    tensorrt="10.x from NVIDIA's wheels (`[tensorrt]`: CUDA 12, `[tensorrt-cu13]`: CUDA 13)",
    extras=("train", "openvino", "tensorrt", "tensorrt-cu13"),
)
# JetPack's cv2 is built against its numpy 1.x; a numpy 2 from pip breaks `import cv2`.
JETPACK6 = Platform(
    key="jetpack6",
    name="Jetson, JetPack 6.x (L4T R36, Ubuntu 22.04)",
    arch="aarch64",
    glibc="2_35",
    pythons=("3.10",),
    cuda="12.2 (6.0) / 12.6 (6.1, 6.2)",
    tensorrt="JetPack's: 8.6 (6.0), 10.3 (6.1, 6.2)",
    extras=(),
    l4t_major=36,
    constraints=("numpy<2", "cuda-python<13"),
    system_modules=("tensorrt", "cv2"),
    left_out=("opencv-python-headless",),
    extra_requirements=("cuda-python>=12.2",),
)
JETPACK7 = Platform(
    key="jetpack7",
    name="Jetson, JetPack 7.x (L4T R38, Ubuntu 24.04)",
    arch="aarch64",
    glibc="2_39",
    pythons=("3.12",),
    cuda="13.0",
    tensorrt="JetPack's: 10.13",
    extras=(),
    l4t_major=38,
    constraints=("numpy<2", "cuda-python>=13,<14"),
    system_modules=("tensorrt", "cv2"),
    left_out=("opencv-python-headless",),
    extra_requirements=("cuda-python>=13",),
)
MATRIX = (X86, JETPACK6, JETPACK7)

# Jetson Linux releases the toolkit does not install on: major -> (name, Python, CUDA,
# TensorRT, why).
REFUSED = {
    35: (
        "Jetson, JetPack 5.x (L4T R35, Ubuntu 20.04)",
        "3.8",
        "11.4",
        "8.5",
        "JetPack 5 (L4T R35) runs Python 3.8 and the toolkit needs Python 3.10+: build the "
        "TensorRT ONNX on a workstation (build-engine --target tensorrt --onnx-only "
        "--trt-version 8.6) and the engine on the Jetson with trtexec, or move to JetPack 6",
    ),
    32: (
        "Jetson, JetPack 4.x (L4T R32, Ubuntu 18.04)",
        "3.6",
        "10.2",
        "8.2",
        "JetPack 4 (L4T R32) runs Python 3.6 and TensorRT 8.2 and the toolkit needs Python "
        "3.10+ and TensorRT 8.6+: move to JetPack 6 where the board takes it",
    ),
}


def python_refusal(version: Sequence[int]) -> str | None:
    """Why this Python cannot run the toolkit, or None."""
    if tuple(version[:2]) >= MIN_PYTHON:
        return None
    have = ".".join(str(v) for v in version[:3])
    return f"Python {have} is too old: the toolkit needs Python 3.10 or newer"


@dataclass(frozen=True)
class L4TRelease:
    """A Jetson Linux release as /etc/nv_tegra_release states it."""

    major: int
    revision: str  # e.g. "4.3"
    line: str

    @property
    def version(self) -> str:
        """e.g. ``36.4.3``."""
        return f"{self.major}.{self.revision}"


def parse_l4t_release(text: str) -> L4TRelease | None:
    """The release in /etc/nv_tegra_release's first line (``# R36 (release), REVISION:
    4.3, ...``), None when the text is not one."""
    lines = text.replace("\x00", "").strip().splitlines()
    if not lines:
        return None
    line = lines[0].strip("# ").strip()
    found = re.match(r"R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)", line)
    if found is None:
        return None
    return L4TRelease(int(found.group(1)), found.group(2).rstrip("."), line)


def cuda_version(root: Path) -> str | None:
    """The CUDA toolkit under ``root``: usr/local/cuda/version.json, or version.txt."""
    cuda = root / "usr" / "local" / "cuda"
    try:
        return json.loads((cuda / "version.json").read_text())["cuda"]["version"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        return (cuda / "version.txt").read_text().split()[-1]
    except (OSError, IndexError):
        return None


def jetson_platform(release: L4TRelease) -> Platform | str:
    """The matrix row of a Jetson Linux release, or the one-line reason it is refused."""
    for row in MATRIX:
        if row.l4t_major == release.major:
            return row
    if release.major in REFUSED:
        return REFUSED[release.major][-1]
    return (
        f"L4T R{release.version} is not a JetPack release the toolkit knows "
        f"(supported: {', '.join(r.name for r in MATRIX if r.l4t_major)})"
    )


def requirement_name(requirement: str) -> str:
    """The normalised project name of a requirement string (PEP 503)."""
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if found is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", found.group(1)).lower()


def runtime_requirements(requirements: Iterable[str], row: Platform) -> list[str]:
    """The base install's requirements on ``row``: extras' lines dropped (``extra ==``
    markers, as importlib.metadata lists them), what the platform provides left out, and what
    it adds appended."""
    skip = {requirement_name(r) for r in row.left_out}
    kept = [
        r
        for r in requirements
        if "extra ==" not in r.replace('"', "'").replace("extra==", "extra ==")
        and requirement_name(r) not in skip
    ]
    return kept + list(row.extra_requirements)


def resolve_arguments(row: Platform, python: str) -> list[str]:
    """pip arguments that resolve an install for ``row`` and ``python`` without installing
    (wheels only, as a device with no compiler would)."""
    args = ["install", "--dry-run", "--ignore-installed", "--only-binary=:all:"]
    for tag in row.pip_platforms():
        args += ["--platform", tag]
    return [*args, "--python-version", python, "--implementation", "cp"]


def matrix_markdown() -> str:
    """The support matrix as the README's table (a test keeps the two equal)."""
    lines = [
        "| platform | Python | CUDA | TensorRT | install |",
        "|---|---|---|---|---|",
    ]
    for row in MATRIX:
        how = (
            "`pip install .` + " + ", ".join(f"`[{e}]`" for e in row.extras)
            if row.l4t_major is None
            else "`make install-jetson`"
        )
        pythons = row.pythons[0] if len(row.pythons) == 1 else f"{row.pythons[0]}-{row.pythons[-1]}"
        lines.append(f"| {row.name} | {pythons} | {row.cuda} | {row.tensorrt} | {how} |")
    for name, python, cuda, tensorrt, why in REFUSED.values():
        lines.append(f"| {name} | {python} | {cuda} | {tensorrt} | refused: {why.split(':')[0]} |")
    return "\n".join(lines)
