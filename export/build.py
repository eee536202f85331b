"""One build function per format of the table, each returning its artifact's record.

Every build starts from the float ONNX the ``export`` step writes (``model_fp32.onnx``); INT8
builds share one calibration set and one range cache. ``build(fmt, ...)`` calls the row's
``builder`` in the format table (``export.formats.DEPLOY_FORMATS``: one
``build_<target>_<precision>`` function per row), so the CLI and bench loop over the table
without asking which target they hold.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from calib.calibration import CalibrationSet, load_calibration_set
from densedepth.checkpoint import load_checkpoint
from export.formats import ExportError, Format, require
from export.onnx_export import convert_fp16
from export.onnx_files import read_metadata, read_sidecar
from export.quantize import DEFAULT_KEEP_FLOAT, quantize_int8, resolve_keep_float


@dataclass
class BuildOptions:
    """Options shared by the builders (each uses what applies to it)."""

    stem: str = "model"
    calib: CalibrationSet | None = None
    method: str = "minmax"
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT
    workspace_gb: float = 2.0
    timing_cache: str | None = None
    max_batch: int = 1
    legacy_calibrator: bool = False  # TensorRT < 10.1: IInt8EntropyCalibrator2 on the fp32 ONNX
    int8_float: str = "fp16"  # TensorRT INT8: precision of the layers left in float
    producer: str = "auto"  # TensorRT Q/DQ writer: auto | modelopt | onnxruntime
    trt_version: tuple[int, int] | None = None  # plan for this TensorRT (default: installed)
    onnx_only: bool = False  # TensorRT: write the ONNX the build parses, do not build
    extra: dict[str, Any] = field(default_factory=dict)


def default_calibration_source(fp32_onnx: Path) -> str:
    """The training data recorded in the checkpoint the ONNX came from."""
    source = read_sidecar(fp32_onnx).get("source")
    if source and Path(source).is_file():
        data = load_checkpoint(source)["config"].get("data")
        if data:
            return str(data)
    raise ExportError(
        f"no --calib given and the training data of {fp32_onnx} is unknown; pass "
        f"--calib DATASET|IMAGE_FOLDER|synthetic"
    )


def calibration_for(
    fp32_onnx: Path,
    source: str | None,
    n: int,
    log: Callable[[str], None],
    warn: Callable[[str], None] | None = None,
    **dataset_kwargs: Any,
) -> CalibrationSet:
    """The calibration set of an INT8 build of ``fp32_onnx``: ``n`` images of ``source`` (else
    the model's training data) at its input size. Calibration warnings go to ``warn`` (default
    ``log``) as ``warning: ...``, then one summary line to ``log``."""
    size = tuple(read_metadata(fp32_onnx)["input_size"])
    data = source or default_calibration_source(fp32_onnx)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calib = load_calibration_set(data, size, n, **dataset_kwargs)
    for w in caught:
        (warn or log)(f"warning: {w.message}")
    skipped = f", {len(calib.skipped)} unreadable skipped" if calib.skipped else ""
    log(f"calibration: {len(calib)} images from {data}{skipped}")
    return calib


def _need_calib(opts: BuildOptions, what: str) -> CalibrationSet:
    if opts.calib is None:
        raise ExportError(f"{what} needs calibration images: pass --calib PATH|synthetic")
    return opts.calib


def build_onnx_fp32(fp32: Path, out_dir: Path, opts: BuildOptions) -> dict[str, Any]:
    """The float ONNX itself (made by ``export``): its record."""
    record = read_sidecar(fp32)
    return {**record, "path": str(fp32)}


def build_onnx_fp16(fp32: Path, out_dir: Path, opts: BuildOptions) -> dict[str, Any]:
    """FP16 ONNX with float32 input/output."""
    return convert_fp16(fp32, out_dir / f"{opts.stem}_fp16.onnx")


def build_onnx_int8(fp32: Path, out_dir: Path, opts: BuildOptions) -> dict[str, Any]:
    """Q/DQ ONNX for ONNX Runtime on CPU: u8 activations, s8 per-channel weights."""
    calib = _need_calib(opts, "INT8")
    out = out_dir / f"{opts.stem}_int8.onnx"
    return quantize_int8(fp32, calib, out, "cpu", opts.method, opts.keep_float)


def tensorrt_qdq_name(stem: str, float_precision: str) -> str:
    """File name of the TensorRT Q/DQ ONNX (its float layers in ``float_precision``)."""
    return f"{stem}_int8_trt.onnx" if float_precision == "fp32" else f"{stem}_int8_fp16_trt.onnx"


def build_tensorrt_qdq(
    fp32: Path,
    out_dir: Path,
    opts: BuildOptions,
    float_precision: str = "fp32",
    max_opset: int | None = None,
) -> dict[str, Any]:
    """Q/DQ ONNX for TensorRT: int8 symmetric, only where TensorRT fuses it."""
    calib = _need_calib(opts, "INT8")
    out = out_dir / tensorrt_qdq_name(opts.stem, float_precision)
    return quantize_int8(fp32, calib, out, "tensorrt", opts.method, opts.keep_float,
                         producer=opts.producer, float_precision=float_precision,
                         max_opset=max_opset)  # fmt: skip


def tensorrt_version_here(opts: BuildOptions) -> tuple[int, int] | None:
    """The TensorRT to plan for: ``opts.trt_version``, else the installed one; None with
    ``onnx_only`` and no TensorRT (plan for the newest: strongly typed)."""
    from export.tensorrt import import_tensorrt, parse_version

    if opts.trt_version is not None:
        return opts.trt_version
    if opts.onnx_only and importlib.util.find_spec("tensorrt") is None:
        return None
    return parse_version(import_tensorrt().__version__)


def build_tensorrt_fp16(fp32: Path, out_dir: Path, opts: BuildOptions) -> dict[str, Any]:
    """A TensorRT FP16 engine (see ``build_tensorrt``)."""
    return build_tensorrt("fp16", fp32, out_dir, opts)


def build_tensorrt_int8(fp32: Path, out_dir: Path, opts: BuildOptions) -> dict[str, Any]:
    """A TensorRT INT8 engine (see ``build_tensorrt``)."""
    return build_tensorrt("int8", fp32, out_dir, opts)


def build_tensorrt(precision: str, fp32: Path, out_dir: Path, opts: BuildOptions) -> dict[str, Any]:
    """A TensorRT engine at ``precision``: makes and checks the ONNX its version parses, then
    builds the engine (or, with ``onnx_only``, stops there: no TensorRT or GPU needed)."""
    from export.tensorrt import (
        NEWEST_PLANNED,
        build_engine,
        build_plan,
        check_for_version,
        version_label,
    )

    version = tensorrt_version_here(opts)
    planned = version or NEWEST_PLANNED
    plan = build_plan(planned, precision, opts.legacy_calibrator, opts.int8_float)
    if opts.onnx_only and plan.calibrator:
        raise ExportError("--legacy-calibrator builds from the fp32 ONNX itself: no --onnx-only")
    if plan.onnx_kind == "fp32":
        source = {"path": str(fp32)}
    elif plan.onnx_kind == "fp16":
        source = build_onnx_fp16(fp32, out_dir, opts)
    else:
        float_precision = plan.onnx_kind.removeprefix("int8-qdq-")
        source = build_tensorrt_qdq(fp32, out_dir, opts, float_precision, plan.max_opset)
    if opts.onnx_only:  # (build_engine checks it too, before parsing)
        check_for_version(Path(source["path"]), version)
        return {**source, "tensorrt_plan": asdict(plan),
                "planned_for": version_label(version), "onnx_only": True}  # fmt: skip
    calib = _need_calib(opts, "INT8") if plan.calibrator else None
    return build_engine(
        source["path"],
        out_dir / f"{opts.stem}_{precision}.engine",
        precision,
        workspace_gb=opts.workspace_gb,
        timing_cache=opts.timing_cache,
        max_batch=opts.max_batch,
        calib=calib,
        int8_float=opts.int8_float,
    )


def build_openvino_fp32(fp32: Path, out_dir: Path, opts: BuildOptions) -> dict[str, Any]:
    """OpenVINO IR in FP32."""
    return build_openvino("fp32", fp32, out_dir, opts)


def build_openvino_bf16(fp32: Path, out_dir: Path, opts: BuildOptions) -> dict[str, Any]:
    """OpenVINO IR that runs in BF16 where the CPU has it."""
    return build_openvino("bf16", fp32, out_dir, opts)


def build_openvino_int8(fp32: Path, out_dir: Path, opts: BuildOptions) -> dict[str, Any]:
    """OpenVINO IR quantized to INT8 by NNCF on the calibration set."""
    return build_openvino("int8", fp32, out_dir, opts)


def build_openvino(precision: str, fp32: Path, out_dir: Path, opts: BuildOptions) -> dict[str, Any]:
    """OpenVINO IR at ``precision`` (fp32, bf16, or int8 through NNCF)."""
    import onnx

    from export.openvino import export_openvino

    calib = _need_calib(opts, "INT8") if precision == "int8" else None
    ignored: list[str] = []
    if precision == "int8" and opts.keep_float:
        ignored = resolve_keep_float(onnx.load(str(fp32)), opts.keep_float)
    out = out_dir / f"{opts.stem}_{precision}.xml"
    return export_openvino(fp32, out, precision, calib, ignored)


def build(
    fmt: Format,
    fp32_onnx: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    opts: BuildOptions,
) -> dict[str, Any]:
    """Build ``fmt`` from the float ONNX into ``out_dir``; fails with one line when the
    format's backend is missing here."""
    builder = fmt.build_function()
    if opts.onnx_only and fmt.target != "tensorrt":
        raise ExportError("--onnx-only is for --target tensorrt (the ONNX its build parses)")
    if not opts.onnx_only:
        require(fmt)
    return builder(Path(fp32_onnx), Path(out_dir), opts)
