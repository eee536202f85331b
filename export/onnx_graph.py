"""Small ONNX graph helpers shared by the quantizers and the TensorRT checker."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

DEFAULT_DOMAINS = ("", "ai.onnx")


def opset_of(model: Any) -> int:
    """The default-domain opset of ``model``."""
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return int(entry.version)
    raise ValueError("the model imports no default-domain opset")


def set_opset(model: Any, version: int) -> None:
    """Declare default-domain opset ``version`` (no conversion: the caller knows the ops agree)."""
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            entry.version = version
            return
    model.opset_import.add(domain="", version=version)


def drop_unused_domains(model: Any) -> list[str]:
    """Remove opset imports of domains no node uses (ONNX Runtime's quantizer adds several);
    returns the removed domains."""
    used = {n.domain for n in model.graph.node} | set(DEFAULT_DOMAINS)
    keep = [e for e in model.opset_import if e.domain in used]
    dropped = [e.domain for e in model.opset_import if e.domain not in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return dropped


def topological_sort(graph: Any) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (stable:
    nodes already in order keep it). Raises ValueError on a cycle."""
    nodes = list(graph.node)
    produced_by = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    waiting = [0] * len(nodes)
    users: dict[int, list[int]] = defaultdict(list)
    for i, node in enumerate(nodes):
        for name in {x for x in node.input if x in produced_by}:
            waiting[i] += 1
            users[produced_by[name]].append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    order: list[int] = []
    while ready:
        ready.sort()
        i = ready.pop(0)
        order.append(i)
        for j in users[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    if len(order) != len(nodes):
        raise ValueError("the graph has a cycle")
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


def producers(graph: Any) -> dict[str, Any]:
    """Tensor name -> the node that writes it."""
    return {out: n for n in graph.node for out in n.output}


def consumers(graph: Any) -> dict[str, list[Any]]:
    """Tensor name -> the nodes that read it."""
    found: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            if name:
                found[name].append(node)
    return found


def constant_tensors(graph: Any) -> dict[str, Any]:
    """Initializers and Constant-node outputs by name, as TensorProtos."""
    found = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    found[node.output[0]] = attr.t
    return found


def copy_message(message: Any) -> Any:
    """A detached copy of a protobuf message (to rebuild a repeated field)."""
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def fold_weight_quantizers(model: Any) -> int:
    """Replace each QuantizeLinear of a float initializer (a weight) by its int8 result, so the
    weight reaches its DequantizeLinear as an int8 initializer (the DQ-only weight form
    TensorRT and ModelOpt use); ONNX's rounding (half to even) and saturation. Returns how many
    were folded."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consts = constant_tensors(graph)
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for other in graph.node:
        for i, inp in enumerate(other.input):
            consumers.setdefault(inp, []).append((other, i))
    drop: set[str] = set()  # the folded QuantizeLinear nodes, by their (unique) output
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] not in inits:
            continue
        x = numpy_helper.to_array(inits[node.input[0]]).astype(np.float64)
        scale = numpy_helper.to_array(consts[node.input[1]]).astype(np.float64)
        zero_t = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        zero = numpy_helper.to_array(zero_t).astype(np.int64) if zero_t is not None else 0
        if zero_t is not None and zero_t.data_type != onnx.TensorProto.INT8:
            continue  # only the signed int8 weight form
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if np.ndim(scale) == 1:
            shape = [1] * x.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
        q = np.clip(np.rint(x / scale) + zero, -128, 127).astype(np.int8)
        name = f"{node.output[0]}_int8"
        graph.initializer.append(numpy_helper.from_array(q, name))
        for other, i in consumers.get(node.output[0], []):
            other.input[i] = name
        drop.add(node.output[0])
    keep_nodes = [copy_message(n) for n in graph.node if n.output[0] not in drop]
    del graph.node[:]
    graph.node.extend(keep_nodes)
    used = {i for n in graph.node for i in n.input}
    keep_inits = [copy_message(t) for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    return len(drop)
