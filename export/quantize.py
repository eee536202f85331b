"""INT8 Q/DQ ONNX from the float export, in two flavours.

- ``cpu``: for ONNX Runtime on x86: unsigned 8-bit activations, signed per-channel weights,
  every op ONNX Runtime quantizes (its u8s8 VNNI kernels run this layout fastest).
- ``tensorrt``: what TensorRT fuses (``export.trt_check`` holds the rules): Q/DQ on the
  activation and weight inputs of Conv and on the inputs of pooling and Resize, int8 per-tensor
  symmetric activations, int8 per-channel weights on axis 0, zero points 0, biases and
  BatchNorm never quantized, no output quantization. The layers left in float are FP16
  (``float_precision="fp16"``, opset 19 for FP16 scales) or FP32. Two producers write it:
  NVIDIA's TensorRT Model Optimizer (``modelopt``, extra ``tensorrt-quant``) and ONNX Runtime's
  quantizer (``onnxruntime``); ``auto`` takes ModelOpt when it is installed.

ONNX Runtime's ranges are computed once per (model, calibration images, input shape, method)
by ``calib.ranges`` and cached; both ONNX Runtime flavours quantize from that one file. ModelOpt
calibrates itself, on the same images. Named sensitive parts can stay in float: the input
normalisation, the first conv, the last conv and the depth conversion.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from calib.calibration import CalibrationSet, cache_key
from calib.ranges import RANGES_VERSION, ranges_cache
from densedepth.util.errors import ExportError, error_line
from densedepth.util.files import file_sha256
from densedepth.util.onnx_io import (
    INPUT_NAME,
    ort_predictor,
    output_difference,
    read_metadata,
    set_metadata,
)
from densedepth.util.outputs import artifact_path, claim_output, scratch_beside, system_temp_in
from export.artifact import finish_artifact
from export.onnx_graph import (
    constant_tensors,
    drop_unused_domains,
    opset_of,
    set_opset,
    topological_sort,
)

FLAVOURS = ("cpu", "tensorrt")
METHODS = ("minmax", "entropy", "percentile")
PRODUCERS = ("auto", "modelopt", "onnxruntime")
FLOAT_PRECISIONS = ("fp32", "fp16")
TRT_QDQ_OPS = ("Conv", "MaxPool", "AveragePool", "Resize")  # inputs quantized for TensorRT
FP16_SCALE_OPSET = 19  # the first opset whose Q/DQ take float16 scales
MODELOPT_METHODS = {"minmax": "max", "entropy": "entropy"}
SENSITIVE_GROUPS = ("input-norm", "first-conv", "last-conv", "depth-out")
DEFAULT_KEEP_FLOAT: tuple[str, ...] = ("depth-out",)


def sensitive_nodes(model: Any) -> dict[str, list[str]]:
    """Node names of each sensitive group in a DenseDepth graph (by topology, not by name).

    ``input-norm``: nodes before the first Conv; ``first-conv`` / ``last-conv``: the first and
    last Conv; ``depth-out``: every node after the last Conv (reciprocal -> metres, clamp).
    """
    nodes = list(model.graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    if not convs:
        raise ExportError("the graph has no Conv node; is this a DenseDepth export?")
    first, last = convs[0], convs[-1]
    return {
        "input-norm": [n.name for n in nodes[:first] if n.op_type not in ("Constant",)],
        "first-conv": [nodes[first].name],
        "last-conv": [nodes[last].name],
        "depth-out": [n.name for n in nodes[last + 1 :] if n.op_type not in ("Constant",)],
    }


def resolve_keep_float(model: Any, keep: Sequence[str]) -> list[str]:
    """Group names (``SENSITIVE_GROUPS``) or node names -> node names to leave in float."""
    groups = sensitive_nodes(model)
    names = {n.name for n in model.graph.node}
    out: list[str] = []
    for item in keep:
        if item in groups:
            out += groups[item]
        elif item in names:
            out.append(item)
        else:
            raise ExportError(
                f"--keep-float {item!r} is neither a group ({', '.join(SENSITIVE_GROUPS)}) "
                f"nor a node of the graph"
            )
    return list(dict.fromkeys(out))


def _ort_quant() -> Any:
    import inspect

    from onnxruntime import quantization as q

    if "calibration_cache_path" not in inspect.signature(q.quantize_static).parameters:
        import onnxruntime

        raise ExportError(
            f"onnxruntime {onnxruntime.__version__} cannot reuse calibration ranges (INT8 "
            f"through ONNX Runtime needs onnxruntime >= 1.27); pip install -U 'onnxruntime>=1.27'"
        )
    return q


def prepare_for_quantization(src: Path, dst: Path) -> None:
    """Shape inference and graph optimisation (ORT's quant_pre_process)."""
    q = _ort_quant()
    q.shape_inference.quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


class _DropAxisWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "is out-of-range for weight" not in record.getMessage()


@contextmanager
def quiet_axis_warnings() -> Iterator[None]:
    """Silence ONNX Runtime's per-node "Axis 1 is out-of-range for weight ..." warnings (one
    per BatchNormalization, whose 1-D weights it then quantizes per tensor)."""
    root = logging.getLogger()
    drop = _DropAxisWarnings()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def modelopt_available() -> bool:
    """NVIDIA's TensorRT Model Optimizer (``modelopt.onnx``) is importable here."""
    return importlib.util.find_spec("modelopt") is not None


def resolve_producer(flavour: str, producer: str) -> str:
    """The producer that writes ``flavour``: ``auto`` picks ModelOpt for TensorRT when installed."""
    if producer not in PRODUCERS:
        raise ExportError(f"unknown INT8 producer {producer!r}; choose {', '.join(PRODUCERS)}")
    if flavour == "cpu":
        if producer == "modelopt":
            raise ExportError(
                "ModelOpt writes the TensorRT flavour only; use --quantizer onnxruntime"
            )
        return "onnxruntime"
    if producer == "auto":
        return "modelopt" if modelopt_available() else "onnxruntime"
    if producer == "modelopt" and not modelopt_available():
        raise ExportError(
            "--quantizer modelopt needs NVIDIA's TensorRT Model Optimizer: "
            "pip install '.[tensorrt-quant]'"
        )
    return producer


def check_quantize_args(flavour: str, method: str, producer: str, float_precision: str) -> str:
    """Validate the INT8 options together; returns the resolved producer."""
    if flavour not in FLAVOURS:
        raise ExportError(f"unknown INT8 flavour {flavour!r}; choose {', '.join(FLAVOURS)}")
    if method not in METHODS:
        raise ExportError(f"unknown calibration method {method!r}; choose {', '.join(METHODS)}")
    if float_precision not in FLOAT_PRECISIONS:
        raise ExportError(f"float layers are fp32 or fp16, not {float_precision!r}")
    if flavour == "cpu" and float_precision != "fp32":
        raise ExportError("the ONNX Runtime CPU INT8 flavour keeps its float layers in fp32")
    resolved = resolve_producer(flavour, producer)
    if resolved == "modelopt" and method not in MODELOPT_METHODS:
        raise ExportError(
            f"ModelOpt calibrates with {' or '.join(MODELOPT_METHODS)}, not {method}; "
            f"use --quantizer onnxruntime for {method}"
        )
    return resolved


def quantize_int8(
    onnx_fp32: str | os.PathLike[str],
    calib: CalibrationSet,
    out: str | os.PathLike[str],
    flavour: str = "cpu",
    method: str = "minmax",
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
    cache_dir: str | os.PathLike[str] | None = None,
    per_channel: bool = True,
    producer: str = "auto",
    float_precision: str = "fp32",
    max_opset: int | None = None,
    parity: bool = True,
) -> dict[str, Any]:
    """Quantize ``onnx_fp32`` to a Q/DQ ONNX at ``out``; returns the record (also ``out.json``).

    ONNX Runtime's calibration ranges live in ``cache_dir`` (default: beside ``out``) under a
    name keyed by (model hash, calibration set hash, input shape, method); a second flavour
    reuses them. ``float_precision`` (TensorRT flavour) is the type of the layers left in
    float; ``max_opset`` lowers a ModelOpt file (opset 19) for parsers that read less (TensorRT
    8.x: 17), which works for FP32 float layers only. The TensorRT flavour is checked against
    ``export.trt_check`` before it is kept. ``parity``: record its depth difference from
    ``onnx_fp32`` on 8 calibration images (False for the scratch builds of the fallback
    search and the sensitivity report, which score every build on held-out images: at
    480x640 the parity runs cost more than the quantization itself).
    """
    import onnx

    resolved = check_quantize_args(flavour, method, producer, float_precision)
    src, out = Path(onnx_fp32), Path(out)
    meta = read_metadata(src)
    if meta.get("precision", "fp32") != "fp32" or "input_size" not in meta:
        raise ExportError(f"{src} is not a float DenseDepth export; quantize the fp32 ONNX")
    size = tuple(meta["input_size"])
    if calib.input_size != size:
        raise ExportError(
            f"calibration images are {calib.input_size[0]}x{calib.input_size[1]} but {src} "
            f"takes {size[0]}x{size[1]}"
        )
    if len(calib) == 0:
        raise ExportError("no calibration images; point --calib at a dataset or image folder")
    if max_opset is not None and float_precision == "fp16" and max_opset < FP16_SCALE_OPSET:
        raise ExportError(
            f"FP16 float layers need opset {FP16_SCALE_OPSET} (FP16 Q/DQ scales); this parser "
            f"reads opset {max_opset}: build INT8 with FP32 float layers (the FP16 flag)"
        )
    t0 = time.perf_counter()
    cache_dir = Path(cache_dir) if cache_dir else out.parent
    cache_dir.mkdir(parents=True, exist_ok=True)
    claim_output(out)
    # beside the output, not in the system temp folder (ONNX Runtime's own scratch included)
    with scratch_beside(out) as work, system_temp_in(work):
        if resolved == "modelopt":
            quantized, calibration = _modelopt_qdq(src, calib, work, method, keep_float,
                                                   float_precision)  # fmt: skip
        else:
            quantized, calibration = _ort_qdq(src, calib, work, flavour, method, keep_float,
                                              cache_dir, per_channel, float_precision)  # fmt: skip
        if flavour == "tensorrt":
            _finish_tensorrt_flavour(quantized, max_opset)
        counts = _qdq_counts(quantized)
        record = {
            **meta,
            "format": "onnx-int8",
            "precision": "int8",
            "int8_flavour": flavour,
            "int8_producer": resolved,
            "float_precision": float_precision,
            "opset": opset_of(quantized),
            "calibration_method": method,
            "calibration_images": len(calib),
            "calibration_source": calib.source,
            "calibration_sha256": calib.sha256,
            **calibration,
            "keep_float": list(keep_float),
            "per_channel": per_channel,
            "source_onnx_sha256": file_sha256(src),
            **counts,
        }
        with artifact_path(out) as tmp:
            set_metadata(quantized, {k: v for k, v in record.items() if k != "float_nodes"})
            onnx.save(quantized, str(tmp))
            if flavour == "tensorrt":
                require_tensorrt_rules(tmp, out)
            if parity:
                images = calib.images[:8]
                record.update(output_difference(ort_predictor(src), ort_predictor(tmp), images,
                                                f"{len(images)} calibration images"))  # fmt: skip
    return finish_artifact(out, record, t0)


def _ort_qdq(
    src: Path,
    calib: CalibrationSet,
    work: Path,
    flavour: str,
    method: str,
    keep_float: Sequence[str],
    cache_dir: Path,
    per_channel: bool,
    float_precision: str,
) -> tuple[Any, dict[str, Any]]:
    """ONNX Runtime's quantizer, from the cached ranges; returns (model, calibration record)."""
    import onnx

    q = _ort_quant()
    prepared = work / "prepared.onnx"
    prepare_for_quantization(src, prepared)
    excluded = resolve_keep_float(onnx.load(str(prepared)), keep_float)
    key = cache_key(file_sha256(src), calib, method, ranges=RANGES_VERSION)
    cache = cache_dir / f"calib_{method}_{key}.json"
    reused = ranges_cache(prepared, calib, method, INPUT_NAME, cache)
    trt = flavour == "tensorrt"
    extra: dict[str, Any] = {"ActivationSymmetric": trt, "WeightSymmetric": True}
    if trt:
        extra.update(
            QuantizeBias=False,
            ForceQuantizeNoInputCheck=True,
            OpTypesToExcludeOutputQuantization=list(TRT_QDQ_OPS),
        )
    tmp_model = work / "quantized.onnx"
    with quiet_axis_warnings():
        q.quantize_static(
            str(prepared),
            str(tmp_model),
            calibration_data_reader=None,
            quant_format=q.QuantFormat.QDQ,
            op_types_to_quantize=list(TRT_QDQ_OPS) if trt else None,
            per_channel=per_channel,
            reduce_range=False,
            activation_type=q.QuantType.QInt8 if trt else q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=_method(q, method),
            calibration_cache_path=str(cache),
            extra_options=extra,
        )
    model = onnx.load(str(tmp_model))
    if float_precision == "fp16":
        model = qdq_to_fp16(model)
    calibration = {"calibration_cache": str(cache), "calibration_reused": reused,
                   "float_nodes": excluded}  # fmt: skip
    return model, calibration


def qdq_to_fp16(model: Any) -> Any:
    """The float layers of a Q/DQ model in FP16 (Q/DQ scales too: opset 19), I/O in FP32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(model, keep_io_types=True)
    if opset_of(converted) < FP16_SCALE_OPSET:
        set_opset(converted, FP16_SCALE_OPSET)
    topological_sort(converted.graph)  # the I/O casts are appended at the end
    return converted


def _modelopt_qdq(
    src: Path,
    calib: CalibrationSet,
    work: Path,
    method: str,
    keep_float: Sequence[str],
    float_precision: str,
) -> tuple[Any, dict[str, Any]]:
    """NVIDIA ModelOpt's INT8 ONNX quantizer in a child process (``export.modelopt_job``: it
    patches ONNX Runtime for good), on a copy of ``src`` (it rewrites its input in place),
    calibrated on ``calib`` with ONNX Runtime's CPU provider only."""
    import json
    import re
    import subprocess
    import sys

    import onnx

    copy = work / "source.onnx"
    shutil.copyfile(src, copy)
    excluded = resolve_keep_float(onnx.load(str(copy)), keep_float)
    target = work / "modelopt.onnx"
    images = work / "calibration.npy"
    np.save(images, np.ascontiguousarray(calib.images, dtype=np.float32))
    job = work / "job.json"
    job.write_text(
        json.dumps(
            {
                "onnx_path": str(copy),
                "output_path": str(target),
                "calibration_npy": str(images),
                "input_name": INPUT_NAME,
                "calibration_method": MODELOPT_METHODS[method],
                "high_precision_dtype": float_precision,
                "nodes_to_exclude": [f"^{re.escape(n)}$" for n in excluded],
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "export.modelopt_job", str(job)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if done.returncode != 0 or not target.is_file():
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        why = lines[-1].strip() if lines else f"exit code {done.returncode}"
        raise ExportError(f"ModelOpt INT8 quantization failed: {why[:300]}")
    model = onnx.load(str(target))
    calibration = {"calibration_cache": None, "calibration_reused": False,
                   "float_nodes": excluded}  # fmt: skip
    return model, calibration


def _finish_tensorrt_flavour(model: Any, max_opset: int | None) -> None:
    """Drop the opset imports ONNX Runtime adds for domains nobody uses; lower the opset where
    the target parser reads less (FP32 float layers: the ops here agree from 17 to 19)."""
    drop_unused_domains(model)
    if max_opset is not None and opset_of(model) > max_opset:
        lower_opset(model, max_opset)


def lower_opset(model: Any, target: int) -> None:
    """Declare opset ``target`` for a Q/DQ graph written at a higher one, when nothing in it
    needs the higher opset: no FP16/BF16 Q/DQ scales, no op whose signature changed between
    ``target`` and the current opset for the attributes used (checked by the ONNX checker)."""
    import onnx

    consts = constant_tensors(model.graph)
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            scale = consts.get(node.input[1])
            if scale is not None and scale.data_type != onnx.TensorProto.FLOAT:
                raise ExportError(
                    f"{node.name} has a {onnx.TensorProto.DataType.Name(scale.data_type)} scale, "
                    f"which opset {target} cannot express"
                )
    before = opset_of(model)
    set_opset(model, target)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        set_opset(model, before)
        raise ExportError(
            f"cannot lower the Q/DQ graph to opset {target}: {error_line(exc)}"
        ) from None


def require_tensorrt_rules(path: Path, out: Path) -> None:
    """Refuse to keep a TensorRT-flavour file that breaks TensorRT's rules (a producer bug)."""
    from export.trt_check import check_onnx_file

    findings = check_onnx_file(path)
    if findings:
        first = "; ".join(f.line() for f in findings[:3])
        raise ExportError(
            f"the TensorRT Q/DQ ONNX for {out.name} breaks {len(findings)} TensorRT rule(s): "
            f"{first}"
        )


def _method(q: Any, name: str) -> Any:
    return {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }[name]


def _qdq_counts(model: Any) -> dict[str, int]:
    import onnx

    consts = constant_tensors(model.graph)
    int32_dq = sum(
        1
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in consts
        and consts[n.input[0]].data_type == onnx.TensorProto.INT32
    )
    ops = [n.op_type for n in model.graph.node]
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    produced_by_dq = {
        o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output
    }
    quant_convs = sum(1 for c in convs if c.input[0] in produced_by_dq)
    return {
        "quantize_nodes": ops.count("QuantizeLinear"),
        "dequantize_nodes": ops.count("DequantizeLinear"),
        "conv_nodes": len(convs),
        "int8_conv_nodes": quant_convs,
        "int32_dequantize_nodes": int32_dq,
    }
