"""Can Jetson Orin's DLA run an ONNX? Every node it cannot, with the rule, before any build.

``cli.py check-onnx FILE --for dla``. A node DLA cannot run falls back to the GPU only with
``BuilderFlag.GPU_FALLBACK`` (and splits the DLA graph there, costing a copy each way); without
it the build fails. The rules are NVIDIA's (TensorRT developer guide, "DLA Supported Layers and
Restrictions", 8.6 / 10.x), for the layers a DenseDepth graph holds:

- shapes are static (DLA: min = opt = max), precision FP16 or INT8 (a build setting);
- Convolution: kernel 1..32, stride 1..8, padding 0..31, dilation 1..32;
- Max / Average pooling: window 1..8, stride 1..16, padding 0..7;
- Concatenation: on the channel axis only (one of a single input is a no-op the builder
  removes);
- Resize: bilinear only with half-pixel coordinates (an ``align_corners`` Resize, as the
  authors' model uses, falls back), nearest with integer scales; constant scales ``{1, 1, s,
  s}``, ``s`` an integer 1..4 for bilinear: a Resize given output ``sizes`` becomes a
  dynamic-output layer DLA does not take;
- activations ReLU, Leaky ReLU, Sigmoid, TanH, Clip; element-wise Add, Sub, Mul, Div, Max, Min,
  Pow, Equal, Greater, Less; BatchNormalization (a scale layer);
- Q/DQ: DLA's INT8 is implicit quantization (calibrator scales) only, so a Q/DQ ONNX does not
  run there (NVIDIA in NVIDIA/TensorRT#2222 and NVIDIA/Model-Optimizer#1661);
- anything else is not a DLA layer. Shape arithmetic on constants and static shapes (Shape,
  Slice, Gather, Concat of those) is folded by the builder and needs nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from export.onnx_graph import constant_tensors
from export.trt_check import Finding

DLA_ACTIVATIONS = frozenset({"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip"})
DLA_ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Equal", "Greater",
                             "Less"})  # fmt: skip
DLA_SCALE = frozenset({"BatchNormalization"})
LIMITS = {  # op: (attribute, low, high) per rule
    "Conv": (("kernel_shape", 1, 32), ("strides", 1, 8), ("pads", 0, 31), ("dilations", 1, 32)),
    "MaxPool": (("kernel_shape", 1, 8), ("strides", 1, 16), ("pads", 0, 7)),
    "AveragePool": (("kernel_shape", 1, 8), ("strides", 1, 16), ("pads", 0, 7)),
}


def _attr(node: Any, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            if a.ints:
                return list(a.ints)
            if a.s:
                return a.s.decode()
            return a.i if a.type == 2 else a.f
    return default


def folded_tensors(graph: Any) -> set[str]:
    """Tensors the builder computes at build time: constants, static shapes and arithmetic on
    them (what feeds a Resize's ``sizes``, a Reshape's shape)."""
    folded = set(constant_tensors(graph))
    for node in graph.node:
        if node.op_type == "Shape" or all(i in folded for i in node.input if i):
            folded.update(node.output)
    return folded


def check_resize(node: Any, name: str, constants: dict[str, Any]) -> list[Finding]:
    """DLA's Resize rules (see the module docstring)."""
    import onnx.numpy_helper as nh

    found = []
    mode = _attr(node, "mode", "nearest")
    coords = _attr(node, "coordinate_transformation_mode", "half_pixel")
    if mode == "linear" and coords != "half_pixel":
        found.append(Finding(name, "dla-resize-coords",
                             f"bilinear Resize with {coords} coordinates: DLA takes half_pixel "
                             f"only (GPU fallback)"))  # fmt: skip
    if mode not in ("linear", "nearest"):
        found.append(Finding(name, "dla-resize-mode", f"{mode} Resize is not a DLA mode"))
    scales = node.input[2] if len(node.input) > 2 else ""
    if len(node.input) > 3 and node.input[3]:
        found.append(Finding(name, "dla-resize-sizes",
                             "Resize given output sizes: DLA takes constant integer scales "
                             "(export with scale_factor)"))  # fmt: skip
    elif scales in constants:
        s = nh.to_array(constants[scales]).astype(np.float64)
        top = 4 if mode == "linear" else 32
        ok = s.size == 4 and s[0] == s[1] == 1 and s[2] == s[3] and float(s[2]).is_integer()
        if not ok or not 1 <= s[2] <= top:
            found.append(Finding(name, "dla-resize-scales",
                                 f"scales {s.tolist()}: DLA takes [1, 1, s, s] with s an integer "
                                 f"1..{top}"))  # fmt: skip
    elif scales:
        found.append(Finding(name, "dla-resize-scales", "scales are not a constant"))
    return found


def check_node(node: Any, name: str, constants: dict[str, Any]) -> list[Finding]:
    """What keeps one node off DLA (empty: DLA runs it)."""
    op = node.op_type
    if op in DLA_ACTIVATIONS or op in DLA_ELEMENTWISE or op in DLA_SCALE:
        return []
    if op in LIMITS:
        found = []
        for attr, low, high in LIMITS[op]:
            values = _attr(node, attr) or []
            if any(not low <= v <= high for v in values):
                found.append(Finding(name, f"dla-{attr}",
                                     f"{op} {attr} {values}: DLA takes {low}..{high}"))  # fmt: skip
        return found
    if op == "Concat":  # (of one input, as torchvision's first dense layer writes, a no-op)
        if _attr(node, "axis", 0) != 1 and len([i for i in node.input if i]) > 1:
            return [Finding(name, "dla-concat", "Concat off the channel axis")]
        return []
    if op == "Resize":
        return check_resize(node, name, constants)
    if op in ("QuantizeLinear", "DequantizeLinear"):
        return [Finding(name, "dla-qdq",
                        f"{op}: DLA's INT8 is implicit quantization only (build the FP32 ONNX "
                        f"with --legacy-calibrator)")]  # fmt: skip
    return [Finding(name, "dla-layer", f"{op} is not a DLA layer (GPU fallback)")]


def check_dla(model: Any) -> list[Finding]:
    """Every rule of DLA an ONNX model (a ModelProto) breaks, node by node."""
    graph = model.graph
    found = []
    inits = {t.name for t in graph.initializer}
    for value in graph.input:
        if value.name in inits:
            continue
        dims = value.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            found.append(Finding(value.name, "dla-static-shape",
                                 "dynamic dimension: DLA needs a static shape (export without "
                                 "--dynamic-batch)"))  # fmt: skip
    folded = folded_tensors(graph)
    constants = constant_tensors(graph)
    for i, node in enumerate(graph.node):
        if node.op_type == "Constant" or all(o in folded for o in node.output):
            continue  # computed by the builder, no layer
        found += check_node(node, node.name or f"#{i} {node.op_type}", constants)
    return found


def dla_summary(model: Any, findings: list[Finding]) -> str:
    """e.g. ``4 of 412 layers cannot run on DLA (dla-resize-coords x4): ...``."""
    folded = folded_tensors(model.graph)
    layers = [n for n in model.graph.node
              if n.op_type != "Constant" and not all(o in folded for o in n.output)]  # fmt: skip
    nodes = {f.node for f in findings if f.rule != "dla-static-shape"}
    rules: dict[str, int] = {}
    for f in findings:
        rules[f.rule] = rules.get(f.rule, 0) + 1
    counted = ", ".join(f"{r} x{n}" for r, n in sorted(rules.items()))
    if not findings:
        return f"all {len(layers)} layers can run on DLA (build FP16 or INT8, static batch)"
    if not nodes:  # only the dynamic batch
        return (
            f"all {len(layers)} layers can run on DLA once the batch is static (export "
            f"without --dynamic-batch, or build with --max-batch N: DLA's min = opt = max)"
        )
    return (
        f"{len(nodes)} of {len(layers)} layers cannot run on DLA ({counted}): they need GPU "
        f"fallback, and the DLA graph splits at each"
    )
