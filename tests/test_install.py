"""Where the toolkit installs: the support matrix (README == densedepth/util/support.py), each
row's install resolved by pip against the package index for that platform and Python (marked
``network``: skipped with the reason where the index does not answer), and ``make
install-jetson`` against a fake JetPack root, run by real Python 3.8 / 3.10 interpreters where
this machine has them (pyenv), with stub ``tensorrt`` / ``cv2`` modules on the path."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import tomllib

from densedepth.util import install_jetson
from densedepth.util.support import (
    JETPACK6,
    JETPACK7,
    MATRIX,
    NVIDIA_INDEX,
    X86,
    jetson_platform,
    matrix_markdown,
    parse_l4t_release,
    requirement_name,
    resolve_arguments,
    runtime_requirements,
)

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEPENDENCIES = PYPROJECT["project"]["dependencies"]

# /etc/nv_tegra_release first lines in the format Jetson Linux writes (JetPack 6.2 on an Orin
# Nano, as tests/test_machine.py; JetPack 5.1.3 and 7.0 with their releases' numbers).
RELEASES = {
    "jetpack6": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
    "DATE: Wed Jan  8 01:49:37 UTC 2025\n# KERNEL_VARIANT: oot\n",
    "jetpack5": "# R35 (release), REVISION: 5.0, GCID: 35550185, BOARD: t186ref, EABI: aarch64, "
    "DATE: Tue Feb 20 04:46:31 UTC 2024\n",
    "jetpack7": "# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic, EABI: aarch64, "
    "DATE: Fri Aug 22 00:55:42 UTC 2025\n",
}
CUDA_JSON = '{"cuda": {"name": "CUDA SDK", "version": "12.6.68"}}'
# cv2.getBuildInformation()'s Video I/O lines, as OpenCV prints them.
VIDEO_IO = "  Video I/O:\n    FFMPEG:                      YES\n"
GST_YES = VIDEO_IO + "    GStreamer:                   YES (1.20.3)\n"
GST_NO = VIDEO_IO + "    GStreamer:                   NO\n"


# --------------------------------------------------------------------------------------------
# The matrix
# --------------------------------------------------------------------------------------------


def test_the_readme_states_the_matrix_the_code_enforces() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- support-matrix -->\n(.*?)\n<!-- /support-matrix -->", readme, re.S)
    assert block is not None, "README.md lost its support-matrix markers"
    assert block.group(1).strip() == matrix_markdown()


def test_rows_cover_the_promised_platforms() -> None:
    assert X86.pythons == ("3.10", "3.11", "3.12", "3.13")
    assert PYPROJECT["project"]["requires-python"] == ">=3.10"
    assert (JETPACK6.pythons, JETPACK7.pythons) == (("3.10",), ("3.12",))
    for extra in X86.extras:  # every extra a row offers exists
        assert extra in PYPROJECT["project"]["optional-dependencies"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [("jetpack6", JETPACK6), ("jetpack7", JETPACK7), ("jetpack5", "Python 3.8")],
)
def test_releases_map_to_rows_or_refusals(key: str, expected: object) -> None:
    release = parse_l4t_release(RELEASES[key])
    assert release is not None
    row = jetson_platform(release)
    if isinstance(expected, str):
        assert isinstance(row, str) and expected in row and "\n" not in row
    else:
        assert row is expected
    assert parse_l4t_release("not a release\n") is None
    assert parse_l4t_release(RELEASES["jetpack6"]).version == "36.4.3"


def test_the_jetson_runtime_leaves_opencv_to_jetpack() -> None:
    """What make install-jetson installs: the base requirements less OpenCV (JetPack's cv2
    stays), plus cuda-python; metadata's extras' lines never leak in."""
    metadata_style = [*DEPENDENCIES, 'torch>=2.2; extra == "train"']
    reqs = runtime_requirements(metadata_style, JETPACK6)
    names = [requirement_name(r) for r in reqs]
    assert "opencv-python-headless" not in names and "torch" not in names
    assert names[-1] == "cuda-python"
    base = [requirement_name(r) for r in DEPENDENCIES]
    assert set(names) == (set(base) - {"opencv-python-headless"}) | {"cuda-python"}
    assert requirement_name("Typer_CLI.x>=1") == "typer-cli-x"


# --------------------------------------------------------------------------------------------
# Resolution against the package index (pip --dry-run, wheels only)
# --------------------------------------------------------------------------------------------


def index_reason(url: str) -> str | None:
    """Why ``url`` cannot be reached (None when it answers)."""
    try:
        with urllib.request.urlopen(url, timeout=8) as reply:
            reply.read(64)
    except OSError as exc:
        return f"{url} does not answer here ({type(exc).__name__}: {exc})"
    return None


def dry_run(args: list[str], folder: Path) -> dict:
    """pip's resolution report of an install (nothing is installed): name -> version, or
    the AssertionError with pip's last errors."""
    report = folder / "report.json"
    command = [sys.executable, "-m", "pip", *args, "--target", str(folder / "t")]
    command += ["--quiet", "--disable-pip-version-check", "--report", str(report)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    errors = [ln for ln in out.stderr.splitlines() if "ERROR" in ln]
    assert out.returncode == 0, f"{' '.join(args)}: {errors[-2:] or out.stderr[-400:]}"
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in
            json.loads(report.read_text())["install"]}  # fmt: skip


@pytest.fixture(scope="module")
def pypi() -> None:
    reason = index_reason("https://pypi.org/simple/numpy/")
    if reason:
        pytest.skip(reason)


# The base install on every Python; the extras (torch's CUDA wheels make them the slow ones)
# on the oldest, where a missing wheel shows first.
X86_CASES = [(py, "") for py in X86.pythons]
X86_CASES += [(X86.pythons[0], "[train,openvino]")]
JETPACK_ROWS = (JETPACK6, JETPACK7)


@pytest.fixture(scope="module")
def resolved(pypi: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future]]:
    """Every PyPI resolution of the matrix, started at once two at a time (pip is mostly CPU:
    two cores, half the wall time), keyed by case; each test waits for its own."""
    root = tmp_path_factory.mktemp("resolve")
    cases: dict[str, list[str]] = {}
    for py, extras in X86_CASES:
        cases[f"x86-{py}{extras}"] = [*resolve_arguments(X86, py), f".{extras}"]
    for row in JETPACK_ROWS:  # exactly what make install-jetson installs
        constraints = install_jetson.write_constraints(row, root / f"{row.key}.txt")
        reqs = runtime_requirements(DEPENDENCIES, row)
        cases[row.key] = [*resolve_arguments(row, row.pythons[0]), "-c", str(constraints), *reqs]
    pool = ThreadPoolExecutor(max_workers=2)
    futures = {}
    for key, args in cases.items():
        (root / key).mkdir()
        futures[key] = pool.submit(dry_run, args, root / key)
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.network
@pytest.mark.parametrize(("python", "extras"), X86_CASES)
def test_x86_installs_resolve(resolved: dict, python: str, extras: str) -> None:
    found = resolved[f"x86-{python}{extras}"].result(timeout=600)
    assert "densedepth-edge" in found and "onnxruntime" in found
    if extras:
        assert {"torch", "openvino", "nncf"} <= set(found)


@pytest.mark.network
@pytest.mark.parametrize("extra", ["tensorrt", "tensorrt-cu13"])
@pytest.mark.parametrize("python", [X86.pythons[0], X86.pythons[-1]])
def test_x86_tensorrt_resolves_with_nvidias_index(
    pypi: None, tmp_path: Path, python: str, extra: str
) -> None:
    reason = index_reason(f"{NVIDIA_INDEX}/tensorrt-cu12-libs/")
    if reason:
        pytest.skip(f"TensorRT's library wheels live on NVIDIA's index: {reason}")
    args = [*resolve_arguments(X86, python), "--extra-index-url", NVIDIA_INDEX, f".[{extra}]"]
    found = dry_run(args, tmp_path)
    cuda = "cu13" if extra.endswith("cu13") else "cu12"
    assert found[f"tensorrt-{cuda}-libs"] == found[f"tensorrt-{cuda}-bindings"]


@pytest.mark.network
@pytest.mark.parametrize("row", JETPACK_ROWS, ids=lambda r: r.key)
def test_jetpack_runtime_resolves_under_its_constraints(resolved: dict, row) -> None:
    """Exactly what make install-jetson installs, for JetPack's Python on aarch64."""
    found = resolved[row.key].result(timeout=600)
    assert int(found["numpy"].split(".")[0]) == 1  # JetPack's cv2 is built against numpy 1.x
    assert "opencv-python-headless" not in found and "opencv-python" not in found
    cuda_major = int(found["cuda-python"].split(".")[0])
    assert cuda_major == (12 if row is JETPACK6 else 13)


# --------------------------------------------------------------------------------------------
# make install-jetson against a fake JetPack root
# --------------------------------------------------------------------------------------------


def find_python(version: str) -> str | None:
    """A working ``python<version>``: on PATH, or in pyenv's versions folder."""
    candidates = [shutil.which(f"python{version}")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p) for p in pyenv.glob(f"{version}.*/bin/python{version}"))
    for exe in filter(None, candidates):
        probe = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True)  # fmt: skip
        if probe.returncode == 0 and probe.stdout.strip() == str(
            tuple(map(int, version.split(".")))
        ):
            return exe
    return None


def fake_jetson(root: Path, release: str, modules: dict[str, str]) -> tuple[Path, Path]:
    """A system root (release file, CUDA's version.json) and a site folder with stub modules
    (name -> source), as JetPack's system site-packages would hold them."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "nv_tegra_release").write_text(release)
    cuda = root / "usr" / "local" / "cuda"
    cuda.mkdir(parents=True)
    (cuda / "version.json").write_text(CUDA_JSON)
    site = root / "usr" / "lib" / "python3" / "dist-packages"
    for name, source in modules.items():
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(source)
    site.mkdir(parents=True, exist_ok=True)
    return root, site


TENSORRT_STUB = '__version__ = "10.3.0"\n'
# What `import cv2` of a numpy-1.x build raises under numpy 2 (the failure numpy<2 prevents).
CV2_AGAINST_NUMPY1 = 'raise ImportError("numpy.core.multiarray failed to import")\n'


def cv2_stub(build_info: str) -> str:
    return f'__version__ = "4.8.0"\n\ndef getBuildInformation():\n    return {build_info!r}\n'


def run_installer(python: str, root: Path, site: Path | None, *args: str):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site or ""), str(ROOT)]))}
    command = [python, "-m", "densedepth.util.install_jetson", "--root", str(root), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def one_line_refusal(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


def test_jetpack5_python38_is_refused_with_its_reason(tmp_path: Path) -> None:
    python38 = find_python("3.8")
    if python38 is None:
        pytest.skip("no Python 3.8 here to run the installer as JetPack 5 would")
    root, site = fake_jetson(tmp_path / "jp5", RELEASES["jetpack5"], {})
    line = one_line_refusal(run_installer(python38, root, site, "--check"))
    assert "JetPack 5" in line and "Python 3.8" in line and "trtexec" in line
    # and pip itself refuses the package on 3.8 (requires-python), before any of it runs
    assert PYPROJECT["project"]["requires-python"] == ">=3.10"


def test_jetpack6_check_reports_what_it_found(tmp_path: Path) -> None:
    python310 = find_python("3.10")
    if python310 is None:
        pytest.skip("no Python 3.10 here to run the installer as JetPack 6 would")
    modules = {"tensorrt": TENSORRT_STUB, "cv2": cv2_stub(GST_YES)}
    root, site = fake_jetson(tmp_path / "jp6", RELEASES["jetpack6"], modules)
    out = run_installer(python310, root, site, "--check")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "JetPack:   6.2 (L4T 36.4.3)"
    assert re.fullmatch(r"Python:    3\.10\.\d+", lines[1])
    assert lines[2:] == ["TensorRT:  10.3.0", "CUDA:      12.6.68",
                         "OpenCV:    4.8.0 (GStreamer: yes)"]  # fmt: skip
    doc = (ROOT / "docs" / "tensorrt-jetson.md").read_text()
    assert all(line in doc for line in [lines[0], *lines[2:]]), "the documented example drifted"


@pytest.mark.parametrize(
    ("modules", "expected"),
    [
        ({"cv2": cv2_stub(GST_YES)}, "JetPack's tensorrt does not import (ModuleNotFoundError"),
        ({"tensorrt": TENSORRT_STUB, "cv2": CV2_AGAINST_NUMPY1}, "JetPack's cv2 does not import"),
    ],
)
def test_missing_jetpack_modules_are_named_with_the_package(
    tmp_path: Path, modules: dict[str, str], expected: str
) -> None:
    root, site = fake_jetson(tmp_path / "jp6", RELEASES["jetpack6"], modules)
    with pytest.raises(install_jetson.InstallRefused, match=re.escape(expected)) as info:
        install_jetson.inspect_jetson(root, sys.executable, (3, 10, 12), env=stub_env(site))
    assert "sudo apt install" in str(info.value)


def stub_env(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site)}


def test_opencv_without_gstreamer_is_reported_not_refused(tmp_path: Path) -> None:
    modules = {"tensorrt": TENSORRT_STUB, "cv2": cv2_stub(GST_NO)}
    root, site = fake_jetson(tmp_path / "jp7", RELEASES["jetpack7"], modules)
    found = install_jetson.inspect_jetson(root, sys.executable, (3, 12, 3), env=stub_env(site))
    assert found.row is JETPACK7
    assert found.lines()[0] == "JetPack:   7.0 (L4T 38.2.0)"
    assert found.lines()[-1].startswith("OpenCV:    4.8.0 (GStreamer: no: CSI cameras")


def test_wrong_python_not_a_jetson_and_unknown_release_are_refused(tmp_path: Path) -> None:
    root, site = fake_jetson(tmp_path / "jp6", RELEASES["jetpack6"], {})
    line = one_line_refusal(run_installer(sys.executable, root, site, "--check"))
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if here != "3.10":
        assert f"for Python 3.10, this is Python {here}" in line and "PYTHON=" in line
    line = one_line_refusal(run_installer(sys.executable, tmp_path / "laptop", None, "--check"))
    assert "not a Jetson" in line and "[tensorrt]" in line
    odd, _ = fake_jetson(tmp_path / "r40", RELEASES["jetpack6"].replace("R36", "R40"), {})
    with pytest.raises(install_jetson.InstallRefused, match=r"L4T R40\.4\.3 is not a JetPack"):
        install_jetson.inspect_jetson(odd, sys.executable, (3, 10, 12))


def test_a_venv_that_cannot_see_jetpack_is_refused_and_ours_is_reused(tmp_path: Path) -> None:
    isolated, shared = tmp_path / "isolated", tmp_path / "shared"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(isolated)], check=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(shared)], check=True)  # fmt: skip
    with pytest.raises(install_jetson.InstallRefused, match="without --system-site-packages"):
        install_jetson.check_venv(isolated)
    assert install_jetson.check_venv(shared) is False  # reused as it is
    assert install_jetson.check_venv(tmp_path / "new") is True
    (tmp_path / "folder").mkdir()
    with pytest.raises(install_jetson.InstallRefused, match="not a virtual environment"):
        install_jetson.check_venv(tmp_path / "folder")


def test_install_runs_the_steps_in_order_under_the_constraints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commands install() runs (recorded, not run), its constraints file, and the import
    check from inside the venv that refuses a pip OpenCV shadowing JetPack's."""
    modules = {"tensorrt": TENSORRT_STUB, "cv2": cv2_stub(GST_YES)}
    root, site = fake_jetson(tmp_path / "jp6", RELEASES["jetpack6"], modules)
    found = install_jetson.inspect_jetson(root, sys.executable, (3, 10, 12), env=stub_env(site))
    venv = tmp_path / "venv"
    ran: list[list[str]] = []

    def record(command: list[str]) -> None:
        ran.append(command)
        if "venv" in command:
            (venv / "bin").mkdir(parents=True)
            (venv / "pyvenv.cfg").write_text("include-system-site-packages = true\n")

    inside = {"tensorrt": "10.3.0", "cv2": "4.8.0", "cv2_path": str(site / "cv2/__init__.py")}
    monkeypatch.setattr(install_jetson, "run", record)
    monkeypatch.setattr(install_jetson, "installed_requirements",
                        lambda python: [*DEPENDENCIES, 'torch>=2.2; extra == "train"'])  # fmt: skip
    monkeypatch.setattr(install_jetson, "probe", lambda python, env=None: inside)
    install_jetson.install(found, "/usr/bin/python3.10", venv)
    python = str(venv / "bin" / "python")
    assert ran[0] == ["/usr/bin/python3.10", "-m", "venv", "--system-site-packages", str(venv)]
    assert ran[1] == [python, "-m", "pip", "install", "--no-deps", "-e", str(ROOT)]
    constraints = venv / "jetpack-constraints.txt"
    assert constraints.read_text().splitlines() == list(JETPACK6.constraints)
    assert ran[2][:7] == [python, "-m", "pip", "install", "--disable-pip-version-check", "-c",
                          str(constraints)]  # fmt: skip
    assert ran[2][7:] == runtime_requirements(DEPENDENCIES, JETPACK6)
    inside["cv2_path"] = str(venv / "lib/python3.10/site-packages/cv2/__init__.py")
    with pytest.raises(install_jetson.InstallRefused, match="cv2 comes from the venv"):
        install_jetson.install(found, "/usr/bin/python3.10", venv)


def test_the_installer_parses_as_python_38() -> None:
    """JetPack 5's Python must get as far as its one-line refusal."""
    import ast

    for name in ("densedepth/__init__.py", "densedepth/util/__init__.py",
                 "densedepth/util/support.py", "densedepth/util/install_jetson.py"):  # fmt: skip
        ast.parse((ROOT / name).read_text(), name, feature_version=(3, 8))


def test_every_row_names_its_pythons_in_the_matrix() -> None:
    table = matrix_markdown()
    for row in MATRIX:
        assert row.name in table and row.pythons[0] in table
