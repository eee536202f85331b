"""The format table: one row per deployment target and precision, the only list of formats.

Each row knows its target, precision, suffix, whether it needs a GPU, the modules and the pip
extra that provide them, the function that builds it from the float ONNX and the runner class
that runs it (both named as ``module:attribute`` and imported only when used, so reading the
table needs neither torch nor any engine). The CLI's choices (``build-engine --target``,
``bench --build``), ``export.build.build``, ``engines.load_runner`` and bench's loop are all
derived from it; bench marks a row "not available here" with the reason instead of stopping.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from densedepth.util.errors import BackendUnavailable, ExportError
from export.cuda import gpu_unavailable_reason


@dataclass(frozen=True)
class Format:
    """One deployment target at one precision."""

    target: str  # torch | onnx | openvino | tensorrt
    precision: str  # fp32 | fp16 | bf16 | int8
    suffix: str  # the artifact's file suffix (what load_runner dispatches on)
    needs_gpu: bool
    modules: tuple[str, ...]  # Python modules it needs ("a|b": either one)
    extra: str | None  # pip extra that installs them (None: the base install)
    builder: str | None  # "module:function" building it from the float ONNX (None: no build)
    runner: str  # "module:Class" running it: Class(path, device=..., threads=...)
    aliases: tuple[str, ...] = ()  # other suffixes its runner opens
    runner_options: tuple[tuple[str, Any], ...] = ()  # more keyword arguments of its runner
    needs_compiler: bool = False  # TorchInductor builds C++ for a CPU

    @property
    def key(self) -> str:
        """``target-precision``, e.g. ``onnx-int8``."""
        return f"{self.target}-{self.precision}"

    def artifact_name(self, stem: str = "model") -> str:
        """File name of this format's artifact for a model ``stem``."""
        if self.builder is None:  # the checkpoint itself
            return f"{stem}{self.suffix}"
        return f"{stem}_{self.precision}{self.suffix}"

    def build_function(self) -> Callable[..., Any]:
        """The function that builds this format (imported now)."""
        if self.builder is None:
            raise ExportError(f"{self.key} is not built from ONNX (the checkpoint is the artifact)")
        return _resolve(self.builder)

    def runner_class(self) -> Callable[..., Any]:
        """The runner class of this format (imported now)."""
        return _resolve(self.runner)

    def unavailable_reason(self) -> str | None:
        """Why this format cannot be built or run here, or None when it can."""
        missing = [m.split("|")[0] for m in self.modules if not module_found(m)]
        if missing:
            how = f"pip install '.[{self.extra}]'" if self.extra else "pip install -e ."
            return f"{', '.join(missing)} not installed ({how})"
        if self.needs_compiler and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
            return "torch.compile on a CPU needs a C++ compiler (apt install g++)"
        if self.needs_gpu:
            return gpu_unavailable_reason()
        return None


def module_found(alternatives: str) -> bool:
    """Whether one of the ``|``-separated modules can be imported here."""
    return any(importlib.util.find_spec(m) is not None for m in alternatives.split("|"))


def _resolve(reference: str) -> Any:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


_TORCH = ("torch",), "train", None, "engines.torch_runner:TorchRunner", (".pth",)
_ORT = ("onnx", "onnxruntime"), None
_ORT_RUN = "engines.onnx_runner:OnnxRunner"
_OV_RUN = "engines.openvino_runner:OpenVinoRunner"
_TRT_RUN = "engines.tensorrt_runner:TensorRTRunner"
# JetPack's and NVIDIA's meta package install ``tensorrt``; the standalone wheels of the
# [tensorrt] extra (tensorrt-cu12-bindings + -libs) install ``tensorrt_bindings``.
_TRT_MODULES = ("tensorrt|tensorrt_bindings",)

DEPLOY_FORMATS: tuple[Format, ...] = (
    Format("torch", "fp32", ".pt", False, *_TORCH),
    Format("torch", "bf16", ".pt", False, *_TORCH, runner_options=(("precision", "bf16"),)),
    Format("torch.compile", "fp32", ".pt", False, *_TORCH, runner_options=(("compile", True),),
           needs_compiler=True),
    Format("onnx", "fp32", ".onnx", False, *_ORT, "export.build:build_onnx_fp32", _ORT_RUN),
    Format("onnx", "fp16", ".onnx", False, *_ORT, "export.build:build_onnx_fp16", _ORT_RUN),
    Format("onnx", "int8", ".onnx", False, *_ORT, "export.build:build_onnx_int8", _ORT_RUN),
    Format("openvino", "fp32", ".xml", False, ("openvino",), "openvino",
           "export.build:build_openvino_fp32", _OV_RUN),
    Format("openvino", "bf16", ".xml", False, ("openvino",), "openvino",
           "export.build:build_openvino_bf16", _OV_RUN),
    Format("openvino", "int8", ".xml", False, ("openvino", "nncf"), "openvino",
           "export.build:build_openvino_int8", _OV_RUN),
    Format("tensorrt", "fp16", ".engine", True, _TRT_MODULES, "tensorrt",
           "export.build:build_tensorrt_fp16", _TRT_RUN),
    Format("tensorrt", "int8", ".engine", True, _TRT_MODULES, "tensorrt",
           "export.build:build_tensorrt_int8", _TRT_RUN),
)  # fmt: skip

TARGETS: tuple[str, ...] = tuple(dict.fromkeys(f.target for f in DEPLOY_FORMATS))
BUILD_TARGETS: tuple[str, ...] = tuple(
    dict.fromkeys(f.target for f in DEPLOY_FORMATS if f.builder is not None)
)


def format_for_suffix(suffix: str) -> Format | None:
    """The first row whose runner opens files with ``suffix`` (None: no runner does)."""
    return next((f for f in DEPLOY_FORMATS if suffix in (f.suffix, *f.aliases)), None)


def model_suffixes() -> list[str]:
    """Every suffix a runner opens, sorted."""
    return sorted({s for f in DEPLOY_FORMATS for s in (f.suffix, *f.aliases)})


def format_by_key(key: str) -> Format | None:
    """The row whose key is ``key`` (e.g. ``torch-bf16``), or None."""
    return next((f for f in DEPLOY_FORMATS if f.key == key), None)


def get_format(target: str, precision: str) -> Format:
    """The row for ``target`` at ``precision``; a clear error listing valid pairs otherwise."""
    fmt = format_by_key(f"{target}-{precision}")
    if fmt is not None:
        return fmt
    valid = ", ".join(f.key for f in DEPLOY_FORMATS)
    raise ExportError(f"no format {target}-{precision}; valid: {valid}")


def require(fmt: Format) -> None:
    """Raise ``BackendUnavailable`` (one line naming the extra) when ``fmt`` cannot run here."""
    reason = fmt.unavailable_reason()
    if reason:
        raise BackendUnavailable(f"{fmt.key}: {reason}")


def format_for_flags(
    target: str, int8: bool = False, fp16: bool = False, bf16: bool = False, onnx_only: bool = False
) -> tuple[Format | None, str]:
    """``build-engine``'s row from its flags, and the float precision of TensorRT's INT8
    layers: ``(None, "fp16")`` for ``--target auto`` (the bench picks the row). TensorRT takes
    ``--int8 --fp16`` (INT8 with FP16 float layers); any other pair of flags is refused, and a
    row that cannot be built here fails with the reason (not with ``onnx_only``)."""
    chosen = [p for p, on in (("int8", int8), ("fp16", fp16), ("bf16", bf16)) if on]
    if target == "auto":
        if chosen or onnx_only:
            raise ExportError(
                "--target auto chooses the format and precision; drop --int8, --fp16, "
                "--bf16 and --onnx-only (or name a --target)"
            )
        return None, "fp16"
    if target == "tensorrt" and chosen == ["int8", "fp16"]:
        precision, int8_float = "int8", "fp16"
    elif len(chosen) > 1:
        both = " (TensorRT takes --int8 --fp16)" if target != "tensorrt" else ""
        raise ExportError(f"choose one of --int8, --fp16, --bf16{both}")
    else:
        precision, int8_float = chosen[0] if chosen else default_precision(target), "fp32"
    fmt = get_format(target, precision)
    if onnx_only and target != "tensorrt":
        raise ExportError("--onnx-only is for --target tensorrt (the ONNX its build parses)")
    if not onnx_only:
        require(fmt)
    return fmt, int8_float


def default_precision(target: str) -> str:
    """The precision a target builds without a precision flag (TensorRT: fp16, else fp32)."""
    return "fp16" if target == "tensorrt" else "fp32"


def formats_for_keys(values: Sequence[str] | None) -> tuple[str, ...]:
    """Format keys from ``bench --build`` values (comma lists; ``all`` = the whole table);
    an unknown key is one error line listing the valid ones."""
    if not values:
        return ()
    keys = [k.strip() for v in values for k in v.split(",") if k.strip()]
    if "all" in keys:
        return tuple(f.key for f in DEPLOY_FORMATS)
    valid = {f.key for f in DEPLOY_FORMATS}
    unknown = [k for k in keys if k not in valid]
    if unknown:
        raise ExportError(
            f"unknown format {unknown[0]!r} for --build; valid: all, {', '.join(sorted(valid))}"
        )
    return tuple(keys)
