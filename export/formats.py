"""The format table: one row per deployment target and precision.

It drives the CLI's choices (``cli.py export`` / ``build-engine``), the build functions (one per
target, each returning the artifact's Path) and bench's loop, which marks a row "not available
here" with the reason instead of stopping.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from densedepth.errors import DenseDepthError


class ExportError(DenseDepthError):
    """An export or engine build failed; the message says what to do."""


class BackendUnavailable(ExportError):
    """The target's package or hardware is missing here (the message names the extra)."""


@dataclass(frozen=True)
class Format:
    """One deployment target at one precision."""

    target: str  # torch | onnx | openvino | tensorrt
    precision: str  # fp32 | fp16 | bf16 | int8
    suffix: str  # the artifact's file suffix (what load_runner dispatches on)
    needs_gpu: bool
    modules: tuple[str, ...]  # Python modules it needs
    extra: str | None  # pip extra that installs them (None: core dependencies)

    @property
    def key(self) -> str:
        """``target-precision``, e.g. ``onnx-int8``."""
        return f"{self.target}-{self.precision}"

    def artifact_name(self, stem: str = "model") -> str:
        """File name of this format's artifact for a model ``stem``."""
        if self.target == "torch":
            return f"{stem}{self.suffix}"
        return f"{stem}_{self.precision}{self.suffix}"

    def unavailable_reason(self) -> str | None:
        """Why this format cannot be built or run here, or None when it can."""
        missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if missing:
            how = f"pip install '.[{self.extra}]'" if self.extra else "pip install -e ."
            return f"{', '.join(missing)} not installed ({how})"
        if self.needs_gpu:
            return gpu_unavailable_reason()
        return None


def gpu_unavailable_reason() -> str | None:
    """Why no CUDA GPU can be used here (no CUDA binding, or no device), or None."""
    from export.cuda import backend_installed, cuda_device_count

    if backend_installed() is None:
        return "needs a CUDA binding: pip install cuda-python (or pycuda)"
    if cuda_device_count() == 0:
        return "needs an NVIDIA GPU with CUDA (none visible)"
    return None


FORMATS: tuple[Format, ...] = (
    Format("torch", "fp32", ".pt", False, ("torch",), None),
    Format("onnx", "fp32", ".onnx", False, ("onnx", "onnxruntime"), None),
    Format("onnx", "fp16", ".onnx", False, ("onnx", "onnxruntime"), None),
    Format("onnx", "int8", ".onnx", False, ("onnx", "onnxruntime"), None),
    Format("openvino", "fp32", ".xml", False, ("openvino",), "openvino"),
    Format("openvino", "bf16", ".xml", False, ("openvino",), "openvino"),
    Format("openvino", "int8", ".xml", False, ("openvino", "nncf"), "openvino"),
    Format("tensorrt", "fp16", ".engine", True, ("tensorrt",), "tensorrt"),
    Format("tensorrt", "int8", ".engine", True, ("tensorrt",), "tensorrt"),
)

TARGETS: tuple[str, ...] = tuple(dict.fromkeys(f.target for f in FORMATS))


def get_format(target: str, precision: str) -> Format:
    """The row for ``target`` at ``precision``; a clear error listing valid pairs otherwise."""
    for f in FORMATS:
        if f.target == target and f.precision == precision:
            return f
    valid = ", ".join(f.key for f in FORMATS)
    raise ExportError(f"no format {target}-{precision}; valid: {valid}")


def require(fmt: Format) -> None:
    """Raise ``BackendUnavailable`` (one line naming the extra) when ``fmt`` cannot run here."""
    reason = fmt.unavailable_reason()
    if reason:
        raise BackendUnavailable(f"{fmt.key}: {reason}")
