"""``make install-jetson``: the runtime in a virtual environment beside JetPack's TensorRT and
OpenCV, on the Jetson itself.

1. Reads the Jetson Linux release (/etc/nv_tegra_release) and finds its row of the support
   matrix (densedepth.util.support); JetPack 5 and 4 are refused in one line with the reason.
2. Checks that this Python is the one JetPack's bindings are built for, and that JetPack's
   ``tensorrt`` and ``cv2`` import in it (cv2's GStreamer support is reported: CSI cameras
   need it).
3. Makes the venv with ``--system-site-packages`` (so those two stay visible), installs the
   toolkit with ``--no-deps``, then its runtime requirements less OpenCV (pip's wheel would
   shadow JetPack's GStreamer build) under the row's constraints (numpy<2: JetPack's cv2 is
   built against numpy 1.x), and checks the imports again from inside the venv.

It prints what it found (JetPack / L4T, TensorRT, CUDA, OpenCV and GStreamer). ``--check``
stops after step 2. Standard library only, Python 3.8 syntax (JetPack 5 must get its line).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from densedepth.util.support import (
    L4TRelease,
    Platform,
    cuda_version,
    jetson_platform,
    parse_l4t_release,
    python_refusal,
    runtime_requirements,
)

REPO = Path(__file__).resolve().parents[2]
PROJECT = "densedepth-edge"
# Jetson Linux release -> JetPack (NVIDIA's release notes); others print as "JetPack N.x".
JETPACK_OF_L4T = {
    "36.2": "6.0 DP",
    "36.3": "6.0",
    "36.4": "6.1",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
    "38.2": "7.0",
}
APT_PACKAGE = {"tensorrt": "python3-libnvinfer", "cv2": "nvidia-opencv"}

# Run by the interpreter under test (JetPack's Python, then the venv's): one JSON line.
PROBE = r"""
import json, re
found = {}
for name in ("tensorrt", "cv2", "numpy"):
    try:
        module = __import__(name)
    except Exception as exc:  # ImportError, or a cv2 built against another numpy
        found[name + "_error"] = (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:200]
        continue
    found[name] = getattr(module, "__version__", "unknown")
    found[name + "_path"] = getattr(module, "__file__", None)
    if name == "cv2":
        info = module.getBuildInformation()
        found["gstreamer"] = bool(re.search(r"GStreamer:\s*YES", info))
print(json.dumps(found))
"""


class InstallRefused(Exception):
    """One line saying what is wrong and what to do."""


@dataclass
class Found:
    """What the Jetson has, as the installer reports it."""

    release: L4TRelease
    row: Platform
    python: str
    cuda: str | None
    modules: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The report: one fact per line."""
        jetpack = JETPACK_OF_L4T.get(self.release.version) or JETPACK_OF_L4T.get(
            ".".join(self.release.version.split(".")[:2])
        )
        major = self.row.key.replace("jetpack", "")
        gst = self.modules.get("gstreamer")
        return [
            f"JetPack:   {jetpack or major + '.x'} (L4T {self.release.version})",
            f"Python:    {self.python}",
            f"TensorRT:  {self.modules.get('tensorrt', 'not found')}",
            f"CUDA:      {self.cuda or 'not found (no /usr/local/cuda/version.json)'}",
            f"OpenCV:    {self.modules.get('cv2', 'not found')} "
            f"(GStreamer: {'yes' if gst else 'no: CSI cameras (nvarguscamerasrc) will not open'})",
        ]


def read_release(root: Path) -> L4TRelease:
    """The Jetson Linux release under ``root``, or InstallRefused when it is not a Jetson."""
    path = root / "etc" / "nv_tegra_release"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        raise InstallRefused(
            f"not a Jetson ({path} not found): on an x86-64 machine pip install "
            "'.[tensorrt]' (README: Support matrix)"
        ) from None
    release = parse_l4t_release(text)
    if release is None:
        raise InstallRefused(f"{path} does not name a Jetson Linux release: {text[:80]!r}")
    return release


def probe(python: str, env: dict | None = None) -> dict:
    """What ``python`` imports of tensorrt, cv2 and numpy (versions, paths, GStreamer)."""
    try:
        out = subprocess.run(
            [python, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise InstallRefused(f"cannot run {python}: {exc}") from None
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise InstallRefused(f"{python} failed to check its modules: {tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def system_problem(modules: dict, row: Platform) -> str | None:
    """Why JetPack's own modules are not usable from this Python, or None."""
    for name in row.system_modules:
        if name not in modules:
            why = modules.get(name + "_error", "not found")
            return (
                f"JetPack's {name} does not import ({why}): sudo apt install "
                f"{APT_PACKAGE.get(name, name)}, then run make install-jetson again"
            )
    return None


def inspect_jetson(root: Path, python: str, version: tuple, env: dict | None = None) -> Found:
    """Steps 1 and 2: the release, its row, this Python and JetPack's modules; InstallRefused
    with the reason where the toolkit cannot install."""
    release = read_release(root)
    row = jetson_platform(release)
    if isinstance(row, str):
        raise InstallRefused(row)
    too_old = python_refusal(version)
    if too_old:
        raise InstallRefused(too_old)
    have = ".".join(str(v) for v in version[:2])
    if have not in row.pythons:
        want = row.pythons[0]
        raise InstallRefused(
            f"{row.name} builds its TensorRT bindings for Python {want}, this is Python "
            f"{have}: make install-jetson PYTHON=/usr/bin/python{want}"
        )
    modules = probe(python, env)
    problem = system_problem(modules, row)
    if problem:
        raise InstallRefused(problem)
    full = ".".join(str(v) for v in version[:3])
    return Found(release, row, full, cuda_version(root), modules)


def venv_python(venv: Path) -> Path:
    """The interpreter of a virtual environment."""
    return venv / "bin" / "python"


def check_venv(venv: Path) -> bool:
    """Whether ``venv`` is to be made (False: reuse it); InstallRefused when it exists but
    cannot see JetPack's packages, or is not a virtual environment."""
    if not venv.exists():
        return True
    cfg = venv / "pyvenv.cfg"
    try:
        text = cfg.read_text()
    except OSError:
        raise InstallRefused(
            f"{venv} exists and is not a virtual environment: pass --venv another path"
        ) from None
    settings = dict(
        (k.strip(), v.strip()) for k, _, v in (ln.partition("=") for ln in text.splitlines())
    )
    if settings.get("include-system-site-packages", "false").lower() != "true":
        raise InstallRefused(
            f"{venv} was made without --system-site-packages (JetPack's tensorrt and cv2 are "
            "invisible in it): remove it, or pass --venv another path"
        )
    return False


def write_constraints(row: Platform, path: Path) -> Path:
    """The row's pins as a pip constraints file (written whole, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in row.constraints))
    os.replace(tmp, path)
    return path


def installed_requirements(python: Path) -> list[str]:
    """The toolkit's requirements as the venv's metadata lists them (extras' lines included)."""
    code = f"import importlib.metadata as m; print('\\n'.join(m.requires({PROJECT!r}) or []))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def pip_commands(python: Path, requirements: list[str], constraints: Path) -> list[list[str]]:
    """The pip runs after the toolkit itself: the runtime requirements under the row's pins."""
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    return [[*pip, "-c", str(constraints), *requirements]]


def run(command: list[str]) -> None:
    """Run one install step, or InstallRefused naming it."""
    print("+ " + " ".join(command), flush=True)
    if subprocess.run(command).returncode != 0:
        raise InstallRefused(f"{' '.join(command[:6])} ... failed (its output is above)")


def install(found: Found, system_python: str, venv: Path) -> None:
    """Step 3: the venv, the toolkit, its runtime requirements; then the imports again."""
    if check_venv(venv):
        run([system_python, "-m", "venv", "--system-site-packages", str(venv)])
    python = venv_python(venv)
    run([str(python), "-m", "pip", "install", "--no-deps", "-e", str(REPO)])
    requirements = runtime_requirements(installed_requirements(python), found.row)
    constraints = write_constraints(found.row, venv / "jetpack-constraints.txt")
    for command in pip_commands(python, requirements, constraints):
        run(command)
    inside = probe(str(python))
    problem = system_problem(inside, found.row)
    if problem:
        raise InstallRefused(f"after the install, {problem}")
    cv2_path = inside.get("cv2_path") or ""
    if str(venv.resolve()) in str(Path(cv2_path).resolve()):
        raise InstallRefused(
            f"cv2 comes from the venv ({cv2_path}), not JetPack: pip uninstall "
            "opencv-python opencv-python-headless inside it"
        )


def main(argv: list[str] | None = None) -> int:
    """Command line of ``make install-jetson``."""
    parser = argparse.ArgumentParser(prog="install-jetson", description=__doc__.split("\n")[0])
    parser.add_argument("--venv", default=".venv", help="virtual environment to make or reuse")
    parser.add_argument("--check", action="store_true", help="detect and report; install nothing")
    parser.add_argument("--root", default="/", help="system root to read (default /)")
    args = parser.parse_args(argv)
    try:
        found = inspect_jetson(Path(args.root), sys.executable, tuple(sys.version_info))
        print("\n".join(found.lines()))
        if args.check:
            return 0
        install(found, sys.executable, Path(args.venv))
    except InstallRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"ready: source {args.venv}/bin/activate, then densedepth --help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
