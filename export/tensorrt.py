"""TensorRT engines: every TensorRT version difference lives in this module.

What each version builds from (``build_plan``):

- TensorRT 11+: networks are always strongly typed, precision flags are gone. FP16 builds from
  the FP16 ONNX (``export.onnx_export.convert_fp16``), INT8 from the symmetric Q/DQ ONNX
  (``export.quantize`` flavour ``tensorrt``).
- TensorRT 10.1 .. 10.x: FP16 through ``BuilderFlag.FP16`` on the FP32 ONNX; INT8 from the
  Q/DQ ONNX with ``BuilderFlag.INT8`` (explicit quantization; FP16 allowed for float layers).
- TensorRT < 10.1 (older JetPack): as 10.x, plus INT8 can come from the FP32 ONNX through an
  ``IInt8EntropyCalibrator2`` fed by our calibration set, with a cache keyed by (ONNX hash,
  calibration set hash, input shape); a cache made for something else is never reused.

Every engine gets a JSON sidecar (TensorRT version, GPU, precision, shapes, ONNX hash); loading
one built by another TensorRT version or for another GPU is refused, naming both. The runtime
is in ``engines.tensorrt_runner``. Written against TensorRT's documented Python API; without
TensorRT or a GPU every entry point fails with one line naming the extra to install.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from densedepth.data import atomic_path
from export.formats import BackendUnavailable, ExportError, get_format, require
from export.onnx_export import INPUT_NAME, file_sha256, read_metadata, write_sidecar

DEFAULT_WORKSPACE_GB = 2.0


@dataclass(frozen=True)
class BuildPlan:
    """How one TensorRT version builds one precision."""

    onnx_kind: str  # fp32 | fp16 | int8-qdq: which ONNX the build parses
    flags: tuple[str, ...]  # BuilderFlag names to set
    strongly_typed: bool
    calibrator: bool  # implicit INT8 calibration (TensorRT < 10.1 only)
    explicit_batch_flag: bool  # TensorRT 8.x networks need EXPLICIT_BATCH


def parse_version(text: str) -> tuple[int, int]:
    """'10.3.0.26' -> (10, 3)."""
    parts = [*text.split("."), "0"][:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise ExportError(f"cannot read the TensorRT version {text!r}") from None


def build_plan(version: tuple[int, int], precision: str, use_calibrator: bool = False) -> BuildPlan:
    """The build recipe for ``precision`` on TensorRT ``version`` (see the module docstring)."""
    if precision not in ("fp16", "int8"):
        raise ExportError(f"TensorRT engines are fp16 or int8, not {precision}")
    major = version[0]
    legacy = version < (10, 1)
    if use_calibrator and not legacy:
        raise ExportError(
            f"TensorRT {version[0]}.{version[1]} has no implicit INT8 calibrator "
            f"(deprecated in 10.1, removed in 11); build INT8 from the Q/DQ ONNX"
        )
    if major >= 11:
        kind = "fp16" if precision == "fp16" else "int8-qdq"
        return BuildPlan(kind, (), True, False, False)
    explicit = major < 10
    if precision == "fp16":
        return BuildPlan("fp32", ("FP16",), False, False, explicit)
    if use_calibrator:
        return BuildPlan("fp32", ("INT8", "FP16"), False, True, explicit)
    return BuildPlan("int8-qdq", ("INT8", "FP16"), False, False, explicit)


def onnx_kind(path: str | os.PathLike[str]) -> str:
    """fp32 | fp16 | int8-qdq (TensorRT flavour) of one of our ONNX exports."""
    meta = read_metadata(path)
    precision = meta.get("precision", "")
    if precision == "int8":
        if meta.get("int8_flavour") != "tensorrt":
            raise ExportError(
                f"{path} is the ONNX Runtime CPU INT8 flavour (unsigned activations); TensorRT "
                f"needs symmetric int8: build-engine --int8 --target tensorrt makes it"
            )
        return "int8-qdq"
    if precision in ("fp32", "fp16"):
        return precision
    raise ExportError(f"{path} is not a DenseDepth ONNX export (no densedepth.precision)")


def engine_sidecar(
    trt_version: str, gpu: str, precision: str, onnx_path: Path, shapes: dict[str, Any]
) -> dict[str, Any]:
    """What identifies an engine: TensorRT version, GPU, precision, shapes, source ONNX."""
    meta = read_metadata(onnx_path)
    return {
        "format": f"tensorrt-{precision}",
        "precision": precision,
        "tensorrt_version": trt_version,
        "gpu": gpu,
        "shapes": shapes,
        "input_size": meta["input_size"],
        "backbone": meta.get("backbone", ""),
        "decoder_width": meta.get("decoder_width", 1.0),
        "source_onnx": str(onnx_path),
        "source_onnx_sha256": file_sha256(onnx_path),
    }


def check_engine_sidecar(sidecar: dict[str, Any], trt_version: str, gpu: str, path: Path) -> None:
    """Refuse an engine built by another TensorRT version or for another GPU, naming both."""
    if not sidecar:
        raise ExportError(f"{path} has no sidecar {path.name}.json; rebuild it with build-engine")
    built_v, built_gpu = sidecar.get("tensorrt_version", "?"), sidecar.get("gpu", "?")
    if built_v != trt_version:
        raise ExportError(
            f"{path} was built by TensorRT {built_v}, this is TensorRT {trt_version}; "
            f"rebuild the engine here"
        )
    if built_gpu != gpu:
        raise ExportError(f"{path} was built for {built_gpu}, this GPU is {gpu}; rebuild it here")


# --------------------------------------------------------------------------------------------
# Everything below needs TensorRT (and a GPU).
# --------------------------------------------------------------------------------------------


def import_tensorrt() -> Any:
    """``tensorrt`` or one clear line (what is missing, the extra to install)."""
    require(get_format("tensorrt", "fp16"))
    import tensorrt as trt

    return trt


def gpu_name() -> str:
    """Name of CUDA device 0 (through pycuda, as the runtime uses it)."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        return str(cuda.Device(0).name())
    except Exception as exc:  # pycuda raises its own LogicError/RuntimeError types
        raise BackendUnavailable(f"no usable CUDA GPU for TensorRT: {exc}") from None


def build_engine(
    onnx_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    precision: str,
    workspace_gb: float = DEFAULT_WORKSPACE_GB,
    timing_cache: str | os.PathLike[str] | None = None,
    max_batch: int = 1,
    calib: Any = None,
    calib_cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Build a serialized engine from one of our ONNX files; returns the sidecar record.

    ``onnx_path`` must be the kind ``build_plan`` names for this TensorRT (the CLI makes it).
    ``max_batch`` > 1 needs an ONNX exported with ``--dynamic-batch``: an optimisation profile
    covers batch 1..max_batch (opt = max). ``calib`` (a CalibrationSet) is used only on
    TensorRT < 10.1 when INT8 is built from the FP32 ONNX.
    """
    trt = import_tensorrt()
    onnx_path, out = Path(onnx_path), Path(out)
    version = trt.__version__
    plan = build_plan(parse_version(version), precision, use_calibrator=calib is not None)
    have = onnx_kind(onnx_path)
    if have != plan.onnx_kind:
        raise ExportError(
            f"TensorRT {version} builds {precision} from the {plan.onnx_kind} ONNX, "
            f"but {onnx_path} is {have}"
        )
    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        listed = "; ".join(f"[{i + 1}] {e}" for i, e in enumerate(errors)) or "no detail"
        raise ExportError(f"TensorRT cannot parse {onnx_path}: {listed}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    for flag in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    cache = _load_timing_cache(config, timing_cache)
    shapes = _add_profile(builder, network, config, max_batch)
    calibrator = None
    if plan.calibrator:
        from calib.calibration import cache_key

        key = cache_key(file_sha256(onnx_path), calib, "tensorrt-entropy2")
        cache_dir = Path(calib_cache_dir) if calib_cache_dir else out.parent
        calibrator = make_entropy_calibrator(trt, calib, cache_dir / f"trt_calib_{key}.cache")
        config.int8_calibrator = calibrator
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(
            f"TensorRT failed to build the {precision} engine (see its log above); "
            f"try a larger --workspace"
        )
    with atomic_path(out) as tmp:
        tmp.write_bytes(bytes(serialized))
    if timing_cache:
        _save_timing_cache(config, cache, Path(timing_cache))
    record = engine_sidecar(version, gpu_name(), precision, onnx_path, shapes)
    record.update(
        build_seconds=time.perf_counter() - t0,
        workspace_gb=workspace_gb,
        flags=list(plan.flags),
        strongly_typed=plan.strongly_typed,
        calibrator="IInt8EntropyCalibrator2" if calibrator else None,
        path=str(out),
        bytes=out.stat().st_size,
    )
    write_sidecar(out, record)
    return record


def _add_profile(builder: Any, network: Any, config: Any, max_batch: int) -> dict[str, Any]:
    tensor = network.get_input(0)
    if tensor.name != INPUT_NAME:
        raise ExportError(f"the ONNX input is {tensor.name!r}, expected {INPUT_NAME!r}")
    dims = list(tensor.shape)
    if dims[0] != -1:
        if max_batch > 1:
            raise ExportError("--max-batch > 1 needs an ONNX exported with --dynamic-batch")
        return {INPUT_NAME: {"min": dims, "opt": dims, "max": dims}}
    profile = builder.create_optimization_profile()
    lo, hi = [1, *dims[1:]], [max_batch, *dims[1:]]
    profile.set_shape(INPUT_NAME, lo, hi, hi)
    config.add_optimization_profile(profile)
    return {INPUT_NAME: {"min": lo, "opt": hi, "max": hi}}


def _load_timing_cache(config: Any, path: str | os.PathLike[str] | None) -> Any:
    data = Path(path).read_bytes() if path and Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _save_timing_cache(config: Any, cache: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))


def make_entropy_calibrator(trt: Any, calib: Any, cache_path: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` over a CalibrationSet (TensorRT < 10.1 only).

    The cache file's name carries the key, so only a cache made for this ONNX, calibration
    set and input shape is ever read.
    """
    import numpy as np
    import pycuda.driver as cuda

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.batches = calib.batches(1)
            self.device = cuda.mem_alloc(int(calib.images[:1].nbytes))

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self.batches, None)
            if batch is None:
                return None
            cuda.memcpy_htod(self.device, np.ascontiguousarray(batch, dtype=np.float32))
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            with atomic_path(cache_path) as tmp:
                tmp.write_bytes(bytes(cache))

    return EntropyCalibrator()
