"""Does an ONNX file follow TensorRT's rules? One finding per violation, naming the node.

Run by ``cli.py check-onnx FILE --for tensorrt`` and before every TensorRT build; needs only
``onnx`` (no TensorRT). The rules, for the TensorRT version asked (default: the newest known):

- every op is one TensorRT's ONNX parser supports (the ``parser`` column of
  ``export.tensorrt_versions.VERSIONS``), at an opset inside its range; other domains need
  plugins;
- DequantizeLinear inputs are int8 (or fp8 / fp4 / int4 where the parser takes them): never the
  int32 of a quantized bias; QuantizeLinear outputs int8;
- zero points are 0, scales positive and finite; weight scales per channel on axis 0 (the
  output channels), activation scales per tensor;
- Q feeds only DQ, and every dequantized activation reaches an op TensorRT runs in INT8 (no
  Q/DQ pair left dangling before float-only ops or at a graph output);
- input shapes are static except the batch dimension (which a build profiles).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.util.errors import ExportError, missing_reason
from export.onnx_graph import DEFAULT_DOMAINS, constant_tensors, consumers, opset_of, producers
from export.tensorrt_versions import VERSIONS, ParserGeneration, row_for, version_label

WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
# Ops TensorRT runs in INT8 (or through which it moves Q/DQ) when their input is dequantized.
INT8_CONSUMERS = WEIGHTED_OPS | frozenset(
    {"MaxPool", "AveragePool", "GlobalAveragePool", "Resize", "BatchNormalization", "Add", "Concat"}
)


@dataclass(frozen=True)
class Finding:
    """One violation: the node (or tensor) it concerns and what is wrong."""

    node: str
    rule: str
    message: str

    def line(self) -> str:
        """``node: message [rule]``."""
        return f"{self.node}: {self.message} [{self.rule}]"


def generation_for(version: tuple[int, int] | None) -> ParserGeneration:
    """The parser rules of TensorRT ``version`` (None: the newest documented)."""
    if version is None:
        return VERSIONS[-1].parser
    row = row_for(version)
    if row is None:
        oldest = VERSIONS[0].since
        raise ExportError(
            f"{version_label(version)} is older than any this checker knows "
            f"({oldest[0]}.{oldest[1]}+)"
        )
    return row.parser


def _dtype_name(code: int) -> str:
    import onnx

    return onnx.TensorProto.DataType.Name(code)


class _Graph:
    """The lookups every rule needs, made once."""

    def __init__(self, model: Any) -> None:
        import onnx

        self.model = model
        self.graph = model.graph
        self.made_by = producers(self.graph)
        self.used_by = consumers(self.graph)
        self.constants = constant_tensors(self.graph)
        self.outputs = {o.name for o in self.graph.output}
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception:  # an op ONNX cannot infer (a custom domain): use the declared types
            inferred = model
        self.types = {
            v.name: v.type.tensor_type.elem_type
            for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
        }
        for t in self.graph.initializer:
            self.types[t.name] = t.data_type

    def array(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        tensor = self.constants.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def dtype(self, name: str) -> str:
        code = self.types.get(name, 0)
        return _dtype_name(code) if code else "unknown"


def check_model(model: Any, version: tuple[int, int] | None = None) -> list[Finding]:
    """Every TensorRT rule ``model`` (an onnx ModelProto) breaks, for TensorRT ``version``."""
    gen = generation_for(version)
    g = _Graph(model)
    findings = _check_opset(model, gen) + _check_inputs(g)
    for i, node in enumerate(g.graph.node):
        name = node.name or f"#{i} {node.op_type}"
        findings += _check_op(node, name, gen)
        if node.op_type == "DequantizeLinear":
            findings += _check_dequantize(node, name, g, gen)
        elif node.op_type == "QuantizeLinear":
            findings += _check_quantize(node, name, g, gen)
    return findings


def check_onnx_file(
    path: str | os.PathLike[str], version: tuple[int, int] | None = None
) -> list[Finding]:
    """``check_model`` on a file; a file that is not readable ONNX is an ExportError."""
    return check_model(read_onnx(path), version)


def read_onnx(path: str | os.PathLike[str]) -> Any:
    """The ModelProto of one of our ONNX files, or an ExportError saying why it is not."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file {path} {missing_reason(path)}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ExportError(f"{path} is not a readable ONNX file ({type(exc).__name__})") from None
    problem = model_problem(path, model)
    if problem:
        raise ExportError(
            f"{path} is not a readable ONNX model: {problem}; re-export it with cli.py export"
        )
    return model


def model_problem(path: str | os.PathLike[str], model: Any) -> str | None:
    """Why ONNX's full checker refuses the loaded ``model`` (read from ``path``), in words:
    an empty file, a tensor that no node, graph input or initializer defines, a cycle; None
    when it passes ``onnx.checker.check_model(full_check=True)``."""
    import onnx

    if Path(path).stat().st_size == 0:
        return "the file is empty (0 bytes)"
    graph = model.graph
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    written = {o for n in graph.node for o in n.output}
    for i, node in enumerate(graph.node):
        for name in node.input:
            if name not in defined:
                what = f"node #{i} {node.op_type} reads {name!r}"
                if name not in written:
                    return f"{what}, which no node, graph input or initializer defines"
                return f"{what} before any node writes it (a cycle, or nodes out of order)"
        defined.update(node.output)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # ValidationError, InferenceError
        return " ".join(str(exc).split())[:300] or type(exc).__name__
    return None


def _check_opset(model: Any, gen: ParserGeneration) -> list[Finding]:
    try:
        opset = opset_of(model)
    except ValueError:
        return [Finding("model", "opset", "imports no default-domain opset")]
    if gen.min_opset <= opset <= gen.max_opset:
        return []
    return [
        Finding(
            "model",
            "opset",
            f"opset {opset} is outside {gen.min_opset}..{gen.max_opset}, what "
            f"{version_label(gen.since)}'s parser reads",
        )
    ]


def _check_inputs(g: _Graph) -> list[Finding]:
    found = []
    inits = {t.name for t in g.graph.initializer}
    for tensor in g.graph.input:
        if tensor.name in inits:
            continue
        dims = tensor.type.tensor_type.shape.dim
        for axis, dim in enumerate(dims):
            static = dim.HasField("dim_value") and dim.dim_value > 0
            if axis > 0 and not static:
                label = dim.dim_param or "?"
                found.append(
                    Finding(
                        tensor.name,
                        "static-shape",
                        f"input dimension {axis} is dynamic ({label}); only the batch "
                        f"dimension is given an optimisation profile",
                    )
                )
    return found


def _check_op(node: Any, name: str, gen: ParserGeneration) -> list[Finding]:
    if node.domain not in DEFAULT_DOMAINS:
        return [
            Finding(name, "op", f"{node.domain}::{node.op_type} is not an ONNX op; needs a plugin")
        ]
    if node.op_type not in gen.ops:
        return [
            Finding(
                name,
                "op",
                f"{node.op_type} is not supported by {version_label(gen.since)}'s ONNX parser",
            )
        ]
    return []


def _check_scale_and_zero(
    node: Any, name: str, g: _Graph, gen: ParserGeneration | None = None
) -> tuple[list[Finding], np.ndarray]:
    found = []
    if gen is not None and gen.zero_point_input and (len(node.input) < 3 or not node.input[2]):
        found.append(Finding(name, "zero-point-input",
                             f"{version_label(gen.since)}'s parser requires 3 inputs "
                             f"(pass the zero point)"))  # fmt: skip
    scale = g.array(node.input[1])
    if scale is None:
        found.append(Finding(name, "scale", "scale is not a constant"))
        scale = np.ones(1, np.float32)
    elif not np.all(np.isfinite(scale)) or not np.all(scale > 0):
        found.append(Finding(name, "scale", "scale is not positive and finite"))
    if len(node.input) > 2 and node.input[2]:
        zero = g.array(node.input[2])
        if zero is None or np.any(zero.astype(np.float64) != 0):
            found.append(Finding(name, "zero-point", "zero point is not 0 (TensorRT is symmetric)"))
    return found, np.asarray(scale)


def _axis(node: Any) -> int:
    for attr in node.attribute:
        if attr.name == "axis":
            return int(attr.i)
    return 1  # ONNX's default


def _check_dequantize(node: Any, name: str, g: _Graph, gen: ParserGeneration) -> list[Finding]:
    found, scale = _check_scale_and_zero(node, name, g, gen)
    x = node.input[0]
    dtype = g.dtype(x)
    if dtype not in gen.dq_inputs:
        what = " (a quantized bias)" if dtype == "INT32" else ""
        allowed = "/".join(sorted(gen.dq_inputs)).lower()
        found.append(
            Finding(name, "dq-input", f"input is {dtype.lower()}{what}; TensorRT takes {allowed}")
        )
    users = g.used_by.get(node.output[0], [])
    weight = g.array(x)
    if weight is not None:
        found += _check_weight_scale(node, name, weight, scale, users)
        return found
    if scale.size != 1:
        found.append(Finding(name, "per-tensor", "activation scale is not per tensor"))
    if not any(u.op_type in INT8_CONSUMERS for u in users):
        ops = ", ".join(sorted({u.op_type for u in users})) or "nothing"
        where = " (a graph output)" if node.output[0] in g.outputs else ""
        found.append(
            Finding(
                name,
                "dangling",
                f"dequantized tensor feeds only {ops}{where}; TensorRT fuses no Q/DQ there",
            )
        )
    return found


def _check_weight_scale(
    node: Any, name: str, weight: np.ndarray, scale: np.ndarray, users: list[Any]
) -> list[Finding]:
    weighted = [u for u in users if u.op_type in WEIGHTED_OPS]
    if not weighted:
        return []
    channels = weight.shape[0] if weight.ndim else 1
    if scale.size == 1 and channels == 1:
        return []  # one output channel: per channel and per tensor agree
    if scale.size == 1 or scale.ndim != 1:
        return [Finding(name, "per-channel", "weight scale is per tensor, not per output channel")]
    if _axis(node) != 0 or scale.size != channels:
        return [
            Finding(
                name,
                "per-channel",
                f"weight scale has {scale.size} values on axis {_axis(node)}; expected "
                f"{channels} on axis 0 (output channels)",
            )
        ]
    return []


def _check_quantize(node: Any, name: str, g: _Graph, gen: ParserGeneration) -> list[Finding]:
    found, scale = _check_scale_and_zero(node, name, g, gen)
    out_type = g.dtype(node.output[0])
    if out_type not in ("INT8", "unknown"):
        found.append(
            Finding(name, "q-output", f"output is {out_type.lower()}; TensorRT needs int8")
        )
    if scale.size != 1:
        found.append(Finding(name, "per-tensor", "activation scale is not per tensor"))
    users = g.used_by.get(node.output[0], [])
    others = sorted({u.op_type for u in users if u.op_type != "DequantizeLinear"})
    if others or not users:
        found.append(
            Finding(
                name,
                "dangling",
                f"quantized tensor feeds {', '.join(others) or 'nothing'}, not a DequantizeLinear",
            )
        )
    return found


def flavour_note(path: str | os.PathLike[str]) -> str | None:
    """Why a file we wrote is not for TensorRT (the ONNX Runtime CPU INT8 flavour), or None."""
    from densedepth.util.onnx_io import read_metadata

    meta = read_metadata(path)
    if meta.get("precision") == "int8" and meta.get("int8_flavour") == "cpu":
        return (
            f"{Path(path).name} is the ONNX Runtime CPU INT8 flavour (uint8 activations with zero "
            f"points, quantized biases): it is for ONNX Runtime on x86, not TensorRT; "
            f"build-engine --target tensorrt --int8 writes the TensorRT one"
        )
    return None
