"""OpenVINO IR for x86 CPUs: FP32 and BF16 from the float ONNX, INT8 through NNCF.

NNCF post-training quantization is fed by the same calibration set as ONNX Runtime and
TensorRT, and quantizes from the float ONNX (OpenVINO was seen to crash compiling an ONNX
Runtime Q/DQ file). BF16 is the FP32 IR compiled with ``INFERENCE_PRECISION_HINT=bf16``; the
sidecar JSON tells the runner which precision an IR is for. Needs the ``openvino`` extra.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.util.errors import ExportError
from densedepth.util.files import file_sha256
from densedepth.util.onnx_io import (
    ort_predictor,
    output_difference,
    parity_input,
    read_metadata,
)
from densedepth.util.outputs import claim_output, record_written, scratch_beside
from export.artifact import finish_artifact
from export.formats import get_format, require

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}


def compile_ir(path: str | os.PathLike[str], precision: str, threads: int = 0) -> Any:
    """Compile an IR for the CPU with the precision hint its sidecar names."""
    require(get_format("openvino", "fp32"))
    import openvino as ov

    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if precision in PRECISION_HINTS:
        config["INFERENCE_PRECISION_HINT"] = PRECISION_HINTS[precision]
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    check_weights_file(Path(path))
    return ov.Core().compile_model(str(path), "CPU", config)


def weights_needed(xml: Path) -> int:
    """The bytes of the .bin the IR's constants reach (max offset + size; 0 when unreadable)."""
    import re

    try:
        text = xml.read_text(errors="replace")
    except OSError:
        return 0
    spans = re.findall(r'<data\b[^>]*?\boffset="(\d+)"[^>]*?\bsize="(\d+)"', text)
    return max((int(o) + int(s) for o, s in spans), default=0)


def check_weights_file(xml: Path) -> None:
    """One line when an IR's .bin is missing or shorter than its constants need."""
    weights = xml.with_suffix(".bin")
    rebuild = "or rebuild it with cli.py build-engine --target openvino"
    if not weights.is_file():
        raise ExportError(
            f"{xml}: its weights file {weights.name} is missing; put it beside the .xml "
            f"(an IR is the .xml and the .bin together) {rebuild}"
        )
    have, need = weights.stat().st_size, weights_needed(xml)
    if have < need:
        raise ExportError(
            f"{xml}: its weights file {weights.name} is truncated ({have:,} bytes, the IR "
            f"needs {need:,}); copy it again {rebuild}"
        )


def export_openvino(
    onnx_fp32: str | os.PathLike[str],
    out: str | os.PathLike[str],
    precision: str = "fp32",
    calib: Any = None,
    keep_float: Sequence[str] = (),
) -> dict[str, Any]:
    """Convert the float ONNX to an IR at ``out`` (.xml + .bin); INT8 quantizes with NNCF
    on ``calib`` (a CalibrationSet), leaving ``keep_float`` (groups of
    ``export.quantize.SENSITIVE_GROUPS`` or fp32 ONNX node names) in float through NNCF's
    ignored scope. Returns the record (also ``out.json``)."""
    require(get_format("openvino", precision))
    import openvino as ov

    src, out = Path(onnx_fp32), Path(out)
    if out.suffix != ".xml":
        raise ExportError(f"{out}: an OpenVINO IR must end in .xml")
    meta = read_metadata(src)
    if meta.get("precision") != "fp32":
        raise ExportError(f"{src} is not the fp32 DenseDepth ONNX; OpenVINO converts from it")
    size = tuple(meta["input_size"])
    claim_output(out)
    claim_output(out.with_suffix(".bin"))
    t0 = time.perf_counter()
    model = ov.convert_model(str(src))
    record: dict[str, Any] = dict(meta)
    if precision == "int8":
        if calib is None:
            raise ExportError("OpenVINO INT8 needs a calibration set (--calib)")
        import onnx

        from export.quantize import resolve_keep_float

        ignored_nodes = resolve_keep_float(onnx.load(str(src)), keep_float)
        ignored_ops = openvino_ops_of(model, ignored_nodes)
        model = _nncf_quantize(model, calib, ignored_ops)
        record.update(
            calibration_images=len(calib),
            calibration_sha256=calib.sha256,
            calibration_source=calib.source,
            keep_float=list(keep_float),
            ignored_nodes=ignored_nodes,
            ignored_openvino_ops=ignored_ops,
            quantizer="nncf",
            nncf_preset="mixed",
        )
    record.update(
        format=f"openvino-{precision}",
        precision=precision,
        openvino_version=ov.get_version(),
        source_onnx_sha256=file_sha256(src),
    )
    save_ir(model, out)
    compiled = compile_ir(out, precision)
    output = compiled.output(0)
    images = calib.images[:8] if calib is not None else parity_input(size)
    label = f"{len(images)} calibration images" if calib is not None else "the parity input"
    record.update(
        output_difference(
            ort_predictor(src), lambda x: np.asarray(compiled(x)[output]), images, label
        )
    )
    return finish_artifact(out, record, t0)


def save_ir(model: Any, out: Path) -> None:
    """Write ``out`` (.xml) and its .bin together: into a temp folder, then renamed."""
    import openvino as ov

    with scratch_beside(out) as tmpdir:
        ov.save_model(model, str(tmpdir / out.name), compress_to_fp16=False)
        os.replace(tmpdir / out.with_suffix(".bin").name, out.with_suffix(".bin"))
        os.replace(tmpdir / out.name, out)
    record_written(out, out.with_suffix(".bin"))


def openvino_ops_of(model: Any, onnx_nodes: Sequence[str]) -> list[str]:
    """The OpenVINO ops (friendly names) the ONNX nodes became in ``model`` (``convert_model``
    of the fp32 ONNX): the op named as a node and those named under it (a Conv with a bias
    is ``NAME/WithoutBiases`` + ``NAME``, and NNCF quantizes the former). NNCF's ignored scope
    takes these names; an ONNX node name alone misses a biased Conv without a word. A node the
    conversion folded into a neighbour (the input normalization's Div into the first Conv's
    weights) has no op of its own and contributes none."""
    names = [op.get_friendly_name() for op in model.get_ordered_ops()]
    out = [n for node in onnx_nodes for n in names if n == node or n.startswith(node + "/")]
    return list(dict.fromkeys(out))


def quantized_onnx_nodes(xml: str | os.PathLike[str], onnx_nodes: Sequence[str]) -> list[str]:
    """The fp32 ONNX nodes whose OpenVINO ops take a quantized activation in an INT8 IR (a
    FakeQuantize of a non-constant input: Convolution, Concat, pooling, Interpolate), in graph
    order: the groups NNCF's ignored scope can leave in float. Ops that come from no ONNX
    node (a shape computation) are not groups."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    fed: set[str] = set()
    for op in model.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        if op.input_value(0).get_node().get_type_name() == "Constant":
            continue  # a weight
        fed.update(t.get_node().get_friendly_name() for t in op.output(0).get_target_inputs())
    known = set(onnx_nodes)
    groups: list[str] = []
    for name in fed:
        parts = name.split("/")
        owner = next(("/".join(parts[:k]) for k in range(len(parts), 0, -1)
                      if "/".join(parts[:k]) in known), None)  # fmt: skip
        if owner is not None:
            groups.append(owner)
    order = {n: i for i, n in enumerate(onnx_nodes)}
    return sorted(set(groups), key=order.__getitem__)


def _nncf_quantize(model: Any, calib: Any, ignored_nodes: Sequence[str]) -> Any:
    import nncf

    dataset = nncf.Dataset(list(calib.batches(1)))
    # (every name is an op of the model: openvino_ops_of)
    scope = nncf.IgnoredScope(names=list(ignored_nodes), validate=False) if ignored_nodes else None
    # MIXED: symmetric weights, asymmetric activations. PERFORMANCE (symmetric activations)
    # cost 0.06 δ1 on the demo's DenseDepth models (ReLU outputs are non-negative, so
    # symmetric int8 leaves half the range unused).
    kwargs: dict[str, Any] = {
        "subset_size": len(calib),
        "preset": nncf.QuantizationPreset.MIXED,
    }
    if scope is not None:
        kwargs["ignored_scope"] = scope
    logger = logging.getLogger("nncf")  # (INFO lists every ignored node, a screen a build)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        return nncf.quantize(model, dataset, **kwargs)
    finally:
        logger.setLevel(level)
