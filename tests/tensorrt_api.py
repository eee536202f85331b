"""Manifests of NVIDIA's TensorRT Python API, read from the real bindings wheels.

    python tests/tensorrt_api.py [--out tests/data/tensorrt] [VERSION ...]

For each version (default ``WHEELS``) pip downloads the bindings wheel alone into a throwaway
folder; stand-in ``libnvinfer`` / ``libnvinfer_plugin`` / ``libnvonnxparser`` (and, for 8.x,
``libnvparsers``) are compiled there, exporting the few entry points the bindings link to
(they return nothing and are never called); NVIDIA's real module is then imported in a
subprocess and described: classes, enums with their members and values, methods with their
pybind11 signatures, properties (read-only or not), module functions and values, and every
deprecation note in the docstrings. The JSON is what ``fake_tensorrt`` builds its module from
and what ``test_tensorrt_api`` checks the builder and runner against.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MANIFEST_DIR = HERE / "data" / "tensorrt"
# (pip requirement, version): one wheel per code path of export.tensorrt.build_plan
WHEELS = {
    "8.6.1": "tensorrt-bindings==8.6.1",  # < 10.1: legacy calibrator, EXPLICIT_BATCH (JetPack 6.0)
    "10.0.1": "tensorrt-cu12-bindings==10.0.1",  # < 10.1: legacy calibrator still there
    "10.8.0.43": "tensorrt-cu12-bindings==10.8.0.43",  # 10.1 .. 10.11: precision flags
    "10.16.1.11": "tensorrt-cu12-bindings==10.16.1.11",  # 10.12+: strongly typed
    "11.4.0.106": "tensorrt-cu12-bindings==11.4.0.106",  # 11: strongly typed only
}
C_ENTRY_POINTS = (
    "void* createInferBuilder_INTERNAL(void* a, int b)",
    "void* createInferRuntime_INTERNAL(void* a, int b)",
    "void* createInferRefitter_INTERNAL(void* a, void* b, int c)",
    "void* getPluginRegistry(void)",
    "void* getBuilderPluginRegistry(int a)",
    "int getInferLibVersion(void)",
    "int initLibNvInferPlugins(void* a, const char* b)",
    "void* createNvOnnxParser_INTERNAL(void* a, void* b, int c)",
    "void* createNvOnnxParserRefitter_INTERNAL(void* a, void* b, int c)",
    "int getNvOnnxParserVersion(void)",
)
# TensorRT 8.x links the Caffe and UFF parsers too (C++ symbols).
CXX_8X = """
namespace nvuffparser {
class IUffParser;
enum class FieldType : int {};
IUffParser* createUffParser() { return nullptr; }
class FieldMap { public: FieldMap(const char*, const void*, FieldType, int); };
FieldMap::FieldMap(const char*, const void*, FieldType, int) {}
}
namespace nvcaffeparser1 {
class ICaffeParser;
ICaffeParser* createCaffeParser() { return nullptr; }
void shutdownProtobufLibrary() {}
}
"""
SKIP_NAMES = {"__doc__", "__module__", "__dict__", "__weakref__", "__init__", "__new__"}


def build_standins(folder: Path, major: int) -> Path:
    """Compile the stand-in libraries for TensorRT ``major`` into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "standin.cpp"
    stubs = "\n".join(f"{sig} {{ return 0; }}" for sig in C_ENTRY_POINTS)
    extra = CXX_8X if major < 10 else ""
    source.write_text(f'extern "C" {{\n{stubs}\n}}\n{extra}')
    libs = ["nvinfer", "nvinfer_plugin", "nvonnxparser"] + (["nvparsers"] if major < 10 else [])
    for lib in libs:
        soname = f"lib{lib}.so.{major}"
        subprocess.run(
            ["g++", "-shared", "-fPIC", "-o", str(folder / soname), f"-Wl,-soname,{soname}",
             str(source)],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return folder


def download_wheel(requirement: str, folder: Path) -> Path:
    """``pip download --no-deps`` one wheel and unpack it; returns the unpacked folder."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
         "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}",
         "-q", "-d", str(folder), requirement],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    wheel = next(folder.glob("*.whl"))
    target = folder / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    return target


def read_manifest(requirement: str, work: Path) -> dict[str, Any]:
    """Download, stand in and describe one bindings wheel (in a subprocess)."""
    version = requirement.split("==")[1]
    major = int(version.split(".")[0])
    site = download_wheel(requirement, work / "wheel")
    libs = build_standins(work / "libs", major)
    env = {**os.environ, "LD_LIBRARY_PATH": str(libs), "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--describe"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    manifest = json.loads(out.stdout)
    manifest["wheel"] = requirement
    return manifest


def generate(versions: list[str], out: Path) -> list[Path]:
    """Write ``manifest-VERSION.json`` for each version into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for version in versions:
        with tempfile.TemporaryDirectory(prefix="trt-api-") as tmp:
            manifest = read_manifest(WHEELS.get(version, f"tensorrt-cu12-bindings=={version}"),
                                     Path(tmp))  # fmt: skip
        path = out / f"manifest-{version}.json"
        path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def load_manifest(version: str, folder: Path = MANIFEST_DIR) -> dict[str, Any]:
    """The committed manifest of one version."""
    return json.loads((folder / f"manifest-{version}.json").read_text())


def manifest_versions(folder: Path = MANIFEST_DIR) -> list[str]:
    """Versions with a committed manifest, oldest first."""
    found = [p.stem.removeprefix("manifest-") for p in folder.glob("manifest-*.json")]
    return sorted(found, key=lambda v: tuple(int(x) for x in re.findall(r"\d+", v)))


# ------------------------------------------------------------------------------------------
# Describing the module (runs inside the subprocess, where the real bindings import).
# ------------------------------------------------------------------------------------------

MODULE_PREFIX = re.compile(r"\btensorrt(_bindings)?\.(tensorrt\.)?")


def _clean(text: str) -> str:
    return MODULE_PREFIX.sub("", text)


def _deprecations(doc: str) -> list[str]:
    """The docstring lines that deprecate the thing itself (they start with "[DEPRECATED]" or
    "Deprecated"); a mention inside a sentence is about something else."""
    lines = [line.strip() for line in (doc or "").splitlines()]
    return [
        _clean(line) for line in lines if line.lower().startswith(("[deprecated]", "deprecated"))
    ]


def _signatures(name: str, doc: str) -> list[str]:
    """The pybind11 signature lines of a method or function (one per overload)."""
    found = []
    for line in (doc or "").splitlines():
        line = line.strip()
        line = re.sub(r"^\d+\.\s+", "", line)
        if line.startswith(f"{name}(") and ")" in line:
            found.append(_clean(line[len(name) :]))
    return found


def _enum_members(cls: type) -> dict[str, dict[str, Any]]:
    members = {}
    doc = cls.__doc__ or ""
    for member, value in cls.__members__.items():
        m = re.search(rf"^\s*{re.escape(member)} :(.*?)(?=^\s*\w+ :|\Z)", doc, re.M | re.S)
        members[member] = {
            "value": int(value),
            "deprecated": _deprecations(m.group(1)) if m else [],
        }
    return members


def _describe_class(cls: type) -> dict[str, Any]:
    own_doc = (cls.__doc__ or "").split("Members:")[0]  # an enum's members come after
    entry: dict[str, Any] = {
        "bases": [b.__name__ for b in cls.__mro__[1:] if b.__name__ not in ("object",)],
        "deprecated": _deprecations(own_doc),
    }
    if hasattr(cls, "__members__"):
        entry["kind"] = "enum"
        entry["members"] = _enum_members(cls)
        return entry
    entry["kind"] = "class"
    init = cls.__dict__.get("__init__")
    entry["init"] = _signatures("__init__", getattr(init, "__doc__", "") or "")
    methods, properties, values = {}, {}, {}
    for name in dir(cls):
        if name in SKIP_NAMES or (name.startswith("__") and name not in ("__len__", "__getitem__")):
            continue
        raw = None
        for klass in cls.__mro__:
            if name in klass.__dict__:
                raw = klass.__dict__[name]
                break
        if isinstance(raw, property):
            properties[name] = {
                "readonly": raw.fset is None,
                "deprecated": _deprecations(raw.__doc__ or ""),
            }
        elif callable(raw) and not isinstance(raw, type):
            doc = getattr(raw, "__doc__", "") or ""
            methods[name] = {"signatures": _signatures(name, doc), "deprecated": _deprecations(doc)}
        elif hasattr(type(raw), "__members__"):
            values[name] = {"enum": type(raw).__qualname__, "value": int(raw)}
    entry.update(methods=methods, properties=properties, values=values)
    return entry


def describe(trt: Any) -> dict[str, Any]:
    """The manifest of an imported tensorrt module."""
    import inspect

    classes, functions, values = {}, {}, {}
    for name in sorted(dir(trt)):
        if name.startswith("_") and name != "__version__":
            continue
        obj = getattr(trt, name)
        if inspect.isclass(obj):
            classes[name] = _describe_class(obj)
            for sub_name, sub in vars(obj).items():  # nested enums such as ILogger.Severity
                if inspect.isclass(sub) and hasattr(sub, "__members__"):
                    classes[f"{name}.{sub_name}"] = _describe_class(sub)
        elif inspect.isfunction(obj):
            functions[name] = {"signatures": [_clean(str(inspect.signature(obj)))]}
        elif callable(obj) and "(" in (obj.__doc__ or ""):
            functions[name] = {"signatures": _signatures(name, obj.__doc__)}
        elif hasattr(type(obj), "__members__"):
            values[name] = {"enum": type(obj).__qualname__, "value": int(obj)}
    return {
        "tensorrt_version": trt.__version__,
        "classes": classes,
        "functions": functions,
        "values": values,
    }


def main(argv: list[str] | None = None) -> None:
    """Command line: regenerate manifests, or (internal) describe the importable bindings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", help=f"default: {', '.join(WHEELS)}")
    parser.add_argument("--out", type=Path, default=MANIFEST_DIR)
    parser.add_argument("--describe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.describe:
        import tensorrt_bindings

        print(json.dumps(describe(tensorrt_bindings)))
        return
    if shutil.which("g++") is None:
        sys.exit("needs g++ to compile the stand-in libraries")
    for path in generate(args.versions or list(WHEELS), args.out):
        print(f"saved {path}")


if __name__ == "__main__":
    main()
