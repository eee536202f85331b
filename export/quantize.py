"""INT8 Q/DQ ONNX from the float export: one calibration, two quantized flavours.

Ranges are computed once from the calibration set and saved (a cache keyed by the model, the
calibration images, the input shape and the method); both flavours are quantized from them:

- ``cpu``: unsigned 8-bit activations, signed per-channel 8-bit weights, the layout ONNX
  Runtime's x86 VNNI kernels run fastest (u8s8).
- ``tensorrt``: symmetric signed 8-bit activations and weights, what TensorRT's explicit
  quantization accepts.

Named sensitive parts can stay in float: the input normalisation, the first conv, the last conv
and the depth conversion (reciprocal -> metres, clamp).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from calib.calibration import CalibrationSet, OrtCalibrationReader, cache_key
from densedepth.data import atomic_path
from export.formats import ExportError
from export.onnx_export import (
    INPUT_NAME,
    file_sha256,
    ort_predictor,
    output_difference,
    read_metadata,
    set_metadata,
    write_sidecar,
)

FLAVOURS = ("cpu", "tensorrt")
METHODS = ("minmax", "entropy", "percentile")
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
            f"onnxruntime {onnxruntime.__version__} cannot reuse calibration ranges; "
            f"pip install -U onnxruntime"
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


def quantize_int8(
    onnx_fp32: str | os.PathLike[str],
    calib: CalibrationSet,
    out: str | os.PathLike[str],
    flavour: str = "cpu",
    method: str = "minmax",
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
    cache_dir: str | os.PathLike[str] | None = None,
    per_channel: bool = True,
) -> dict[str, Any]:
    """Quantize ``onnx_fp32`` to a Q/DQ ONNX at ``out``; returns the record (also ``out.json``).

    Calibration ranges live in ``cache_dir`` (default: beside ``out``) under a name keyed by
    (model hash, calibration set hash, input shape, method); a second flavour reuses them.
    """
    import onnx

    if flavour not in FLAVOURS:
        raise ExportError(f"unknown INT8 flavour {flavour!r}; choose {', '.join(FLAVOURS)}")
    if method not in METHODS:
        raise ExportError(f"unknown calibration method {method!r}; choose {', '.join(METHODS)}")
    q = _ort_quant()
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
    t0 = time.perf_counter()
    cache_dir = Path(cache_dir) if cache_dir else out.parent
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dd-quant-") as tmpdir:
        prepared = Path(tmpdir) / "prepared.onnx"
        prepare_for_quantization(src, prepared)
        model = onnx.load(str(prepared))
        excluded = resolve_keep_float(model, keep_float)
        key = cache_key(file_sha256(src), calib, method)
        cache = cache_dir / f"calib_{method}_{key}.json"
        reused = cache.is_file()
        reader = None if reused else OrtCalibrationReader(calib, INPUT_NAME)
        signed_acts = flavour == "tensorrt"
        with atomic_path(out) as tmp, quiet_axis_warnings():
            tmp_model = tmp.with_suffix(".onnx")
            try:
                q.quantize_static(
                    str(prepared),
                    str(tmp_model),
                    calibration_data_reader=reader,
                    quant_format=q.QuantFormat.QDQ,
                    per_channel=per_channel,
                    reduce_range=False,
                    activation_type=q.QuantType.QInt8 if signed_acts else q.QuantType.QUInt8,
                    weight_type=q.QuantType.QInt8,
                    nodes_to_exclude=excluded,
                    calibrate_method=_method(q, method),
                    calibration_cache_path=str(cache),
                    extra_options={
                        "ActivationSymmetric": signed_acts,
                        "WeightSymmetric": True,
                    },
                )
                quantized = onnx.load(str(tmp_model))
            finally:
                if tmp_model.exists():
                    tmp_model.unlink()
            counts = _qdq_counts(quantized)
            record = {
                **meta,
                "format": "onnx-int8",
                "precision": "int8",
                "int8_flavour": flavour,
                "calibration_method": method,
                "calibration_images": len(calib),
                "calibration_source": calib.source,
                "calibration_sha256": calib.sha256,
                "calibration_cache": str(cache),
                "calibration_reused": reused,
                "keep_float": list(keep_float),
                "float_nodes": excluded,
                "per_channel": per_channel,
                "source_onnx_sha256": file_sha256(src),
                **counts,
            }
            set_metadata(quantized, {k: v for k, v in record.items() if k != "float_nodes"})
            onnx.save(quantized, str(tmp))
            images = calib.images[:8]
            diff = output_difference(
                ort_predictor(src), ort_predictor(tmp), images, f"{len(images)} calibration images"
            )
    record.update(diff)
    record["seconds"] = time.perf_counter() - t0
    record["path"] = str(out)
    record["bytes"] = out.stat().st_size
    write_sidecar(out, record)
    return record


def _method(q: Any, name: str) -> Any:
    return {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }[name]


def _qdq_counts(model: Any) -> dict[str, int]:
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
    }
