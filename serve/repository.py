"""Triton model repositories of the toolkit's engines: one model per file, its config.pbtxt
written from what the file itself says (tensor names, data types, dims, batch), and checked by
parsing it into Triton's own ``ModelConfig`` protobuf (``tritonclient.grpc.model_config_pb2``).

Per kind: a TensorRT engine (``.engine`` / ``.plan``) is ``tensorrt_plan`` with its shapes
from the engine's sidecar (the optimisation profile: ``max_batch_size`` is the profile's
largest batch when min != max, else 0 with the full static dims); an ONNX file is
``onnxruntime_onnx`` (optionally with the TensorRT or OpenVINO execution accelerator) with its
graph's input and output; an OpenVINO IR (``.xml`` + ``.bin``) is the ``openvino`` backend with
the IR's own shapes. A dynamic-batch ONNX / IR has no largest batch of its own: ``max_batch``
(8) is the one chosen. The layout is Triton's: ``REPO/NAME/config.pbtxt`` and
``REPO/NAME/1/model.{plan,onnx,xml}``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from densedepth.util.errors import DenseDepthError
from densedepth.util.onnx_io import INPUT_NAME, OUTPUT_NAME, read_sidecar
from densedepth.util.outputs import atomic_path, write_text_atomic
from engines.base import ModelInfo, file_info

ENGINE_SUFFIXES = (".engine", ".plan")
KINDS = {".onnx": "onnxruntime_onnx", ".xml": "openvino"}
KINDS.update(dict.fromkeys(ENGINE_SUFFIXES, "tensorrt_plan"))
MODEL_FILE = {"onnxruntime_onnx": "model.onnx", "openvino": "model.xml",
              "tensorrt_plan": "model.plan"}  # fmt: skip
ACCELERATORS = ("none", "tensorrt", "openvino")
NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")  # what Triton (and PyTriton) accept as a model name
ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 16: "TYPE_BF16", 11: "TYPE_FP64"}
OV_TYPES = {"f32": "TYPE_FP32", "f16": "TYPE_FP16", "bf16": "TYPE_BF16", "f64": "TYPE_FP64"}


class RepositoryError(DenseDepthError):
    """A model that cannot go into a Triton repository as asked (one line)."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, Triton data type and full shape (-1: any size)."""

    name: str
    data_type: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ServedModel:
    """What a Triton config says of one model file, read from the file."""

    name: str
    path: Path
    kind: str  # tensorrt_plan | onnxruntime_onnx | openvino
    input: TensorSpec
    output: TensorSpec
    max_batch_size: int  # 0: the model takes one fixed batch (dims are the full shape)
    info: ModelInfo
    batch_note: str = ""  # why the batch is what it is

    @property
    def dims(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The input's and output's config dims (without the batch when it is batched)."""
        cut = 1 if self.max_batch_size > 0 else 0
        return self.input.shape[cut:], self.output.shape[cut:]


def model_name(path: Path) -> str:
    """Triton's name for a model file: its stem (``model_fp32``), with characters Triton does
    not accept replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", path.stem) or "model"


def read_served_model(
    path: str | os.PathLike[str], name: str = "", max_batch: int = 8
) -> ServedModel:
    """The tensors, batch and model facts of ``path`` as a Triton config needs them; one line
    for a file of a kind Triton cannot serve or that does not say its shapes."""
    path = Path(path)
    kind = KINDS.get(path.suffix)
    if kind is None:
        raise RepositoryError(f"{path.name}: Triton serves .engine/.plan (TensorRT), .onnx and "
                              f".xml (OpenVINO) files; export or build one first")  # fmt: skip
    if not path.is_file():
        raise RepositoryError(f"{path}: no such model file")
    name = name or model_name(path)
    if not NAME_RE.match(name):
        raise RepositoryError(f"model name {name!r}: Triton takes letters, digits, '.', '_', '-'")
    if max_batch < 1:
        raise RepositoryError(f"--max-batch {max_batch} must be at least 1")
    reader = {"tensorrt_plan": _engine_io, "onnxruntime_onnx": _onnx_io, "openvino": _ir_io}[kind]
    inp, out, largest = reader(path)
    if inp.shape[0] != -1:
        batch, note = 0, f"static batch {inp.shape[0]}: max_batch_size 0, no dynamic batching"
    elif largest is not None:  # an engine: its profile says
        batch, note = largest, f"the engine's optimisation profile: batch 1..{largest}"
    else:
        batch, note = max_batch, f"dynamic batch: max_batch_size {max_batch} (--max-batch)"
    if out.shape[0] == -1 and inp.shape[0] != -1:
        out = TensorSpec(out.name, out.data_type, (inp.shape[0], *out.shape[1:]))
    info = file_info(path)
    return ServedModel(name, path, kind, inp, out, batch, info, note)


def _onnx_io(path: Path) -> tuple[TensorSpec, TensorSpec, None]:
    """The ONNX graph's input and output (symbolic dims as -1); no largest batch of its own."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initialisers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise RepositoryError(f"{path.name}: {len(inputs)} inputs and {len(graph.output)} "
                              f"outputs; a DenseDepth ONNX has one of each")  # fmt: skip

    def spec(value: Any) -> TensorSpec:
        t = value.type.tensor_type
        dtype = ONNX_TYPES.get(t.elem_type)
        if dtype is None:
            raise RepositoryError(f"{path.name}: {value.name} has ONNX element type "
                                  f"{t.elem_type}, which this writer does not map")  # fmt: skip
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        return TensorSpec(value.name, dtype, dims)

    return spec(inputs[0]), spec(graph.output[0]), None


def _ir_io(path: Path) -> tuple[TensorSpec, TensorSpec, None]:
    """The OpenVINO IR's input and output, as OpenVINO reads them; no largest batch."""
    try:
        import openvino as ov
    except ModuleNotFoundError:
        raise RepositoryError(f"{path.name}: reading an OpenVINO IR needs openvino "
                              f"(pip install '.[openvino]')") from None  # fmt: skip
    if not path.with_suffix(".bin").is_file():
        raise RepositoryError(f"{path.name}: its weights {path.with_suffix('.bin').name} are "
                              f"not beside it")  # fmt: skip
    model = ov.Core().read_model(str(path))

    def spec(port: Any) -> TensorSpec:
        dtype = OV_TYPES.get(port.get_element_type().get_type_name())
        if dtype is None:
            raise RepositoryError(f"{path.name}: element type {port.get_element_type()} is "
                                  f"not mapped")  # fmt: skip
        dims = tuple(-1 if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
        return TensorSpec(port.get_any_name(), dtype, dims)

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise RepositoryError(f"{path.name}: a DenseDepth IR has one input and one output")
    return spec(model.inputs[0]), spec(model.outputs[0]), None


def _engine_shapes(path: Path) -> dict[str, Any]:
    """The input's profile (min / opt / max) from the engine's sidecar."""
    shapes = (read_sidecar(path).get("shapes") or {}).get(INPUT_NAME)
    if not shapes or not all(k in shapes for k in ("min", "opt", "max")):
        raise RepositoryError(f"{path.name}: its sidecar ({path.name}.json) records no input "
                              f"shapes; build the engine with build-engine")  # fmt: skip
    return shapes


def _engine_io(path: Path) -> tuple[TensorSpec, TensorSpec, int]:
    """A TensorRT engine's tensors (what build-engine gives it: FP32 rgb in, depth out at
    half size), dims from its profile (batch -1 when the profile's min and max differ), and
    the profile's largest batch."""
    shapes = _engine_shapes(path)
    lo, hi = [int(v) for v in shapes["min"]], [int(v) for v in shapes["max"]]
    if len(hi) != 4 or lo[1:] != hi[1:]:
        raise RepositoryError(f"{path.name}: profile {lo} .. {hi} is not N x 3 x H x W")
    batch = -1 if lo[0] != hi[0] else hi[0]
    _, c, h, w = hi
    return (TensorSpec(INPUT_NAME, "TYPE_FP32", (batch, c, h, w)),
            TensorSpec(OUTPUT_NAME, "TYPE_FP32", (batch, 1, h // 2, w // 2)), hi[0])  # fmt: skip


def preferred_batches(max_batch_size: int) -> list[int]:
    """Dynamic batching's preferred sizes: the powers of two from 2 up to the largest batch,
    and the largest batch itself (8 -> [2, 4, 8]; 6 -> [2, 4, 6])."""
    sizes = [b for b in (2, 4, 8, 16, 32, 64) if b < max_batch_size]
    return [*sizes, max_batch_size] if max_batch_size > 1 else []


def _dims(dims: Sequence[int]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def info_parameters(info: ModelInfo) -> dict[str, str]:
    """The depth units, range and variant as string parameters (what a client needs to read
    the output: metres, clamped to min..max), the backbone and the precision."""
    return {
        "depth_units": "metres",
        "min_depth": f"{info.min_depth:g}",
        "max_depth": f"{info.max_depth:g}",
        "variant": json.dumps(info.variant, sort_keys=True),
        "backbone": info.backbone or "unknown",
        "precision": info.precision,
        "input_layout": "NCHW RGB float32 in [0, 1]",
    }


def config_text(
    model: ServedModel,
    instances: int = 1,
    queue_delay_us: int = 2000,
    accelerator: str = "none",
) -> str:
    """``config.pbtxt`` of ``model`` (Triton's protobuf text format)."""
    if accelerator not in ACCELERATORS:
        raise RepositoryError(f"--accelerator {accelerator!r}: choose {', '.join(ACCELERATORS)}")
    if accelerator != "none" and model.kind != "onnxruntime_onnx":
        raise RepositoryError(f"--accelerator {accelerator} is for ONNX models (onnxruntime's "
                              f"execution accelerators), not {model.path.name}")  # fmt: skip
    if instances < 1:
        raise RepositoryError(f"--instances {instances} must be at least 1")
    in_dims, out_dims = model.dims
    head = (f'backend: "{model.kind}"' if model.kind == "openvino"
            else f'platform: "{model.kind}"')  # fmt: skip
    gpu = model.kind == "tensorrt_plan" or accelerator == "tensorrt"
    lines = [
        f'name: "{model.name}"',
        head,
        f"max_batch_size: {model.max_batch_size}",
        f'default_model_filename: "{MODEL_FILE[model.kind]}"',
        "input [",
        f'  {{ name: "{model.input.name}" data_type: {model.input.data_type} '
        f"dims: {_dims(in_dims)} }}",
        "]",
        "output [",
        f'  {{ name: "{model.output.name}" data_type: {model.output.data_type} '
        f"dims: {_dims(out_dims)} }}",
        "]",
        f"instance_group [ {{ count: {instances} kind: {'KIND_GPU' if gpu else 'KIND_CPU'} }} ]",
    ]
    if model.max_batch_size > 1:
        preferred = preferred_batches(model.max_batch_size)
        lines.append(f"dynamic_batching {{ preferred_batch_size: {_dims(preferred)} "
                     f"max_queue_delay_microseconds: {queue_delay_us} }}")  # fmt: skip
    warm_batch = 1
    lines += [
        "model_warmup [",
        f'  {{ name: "zeros" batch_size: {warm_batch} inputs {{ key: "{model.input.name}" '
        f"value: {{ data_type: {model.input.data_type} dims: {_dims(in_dims)} "
        f"zero_data: true }} }} }}",
        "]",
    ]
    if accelerator != "none":
        where = "gpu" if accelerator == "tensorrt" else "cpu"
        extra = (' parameters { key: "precision_mode" value: "FP16" }'
                 if accelerator == "tensorrt" else "")  # fmt: skip
        lines.append(f"optimization {{ execution_accelerators {{ {where}_execution_accelerator "
                     f'[ {{ name: "{accelerator}"{extra} }} ] }} }}')  # fmt: skip
    for key, value in info_parameters(model.info).items():
        lines.append(
            f'parameters {{ key: "{key}" value: {{ string_value: {json.dumps(value)} }} }}'
        )
    return "\n".join(lines) + "\n"


def parse_config(text: str) -> Any:
    """``text`` parsed into Triton's own ``ModelConfig`` protobuf (tritonclient's copy); one
    line naming the line and column that Triton's parser refuses."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ModuleNotFoundError:
        raise RepositoryError("checking a config against Triton's ModelConfig needs tritonclient "
                              "(pip install '.[triton]')") from None  # fmt: skip
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise RepositoryError(f"config.pbtxt is not a valid Triton ModelConfig: {exc}") from None


def check_config(text: str, model: ServedModel) -> Any:
    """Parse ``text`` into Triton's ModelConfig and compare it with what the model file says:
    name, platform / backend, batch, tensor names, data types and dims; the parsed config, or
    one line naming the first difference."""
    from tritonclient.grpc import model_config_pb2 as pb

    cfg = parse_config(text)
    kind = cfg.backend if model.kind == "openvino" else cfg.platform
    in_dims, out_dims = model.dims
    want = {
        "name": (cfg.name, model.name),
        "platform": (kind, model.kind),
        "max_batch_size": (cfg.max_batch_size, model.max_batch_size),
        "inputs": (len(cfg.input), 1),
        "outputs": (len(cfg.output), 1),
    }
    for key, (got, expected) in want.items():
        if got != expected:
            raise RepositoryError(
                f"{model.path.name}: config {key} {got!r}, the file says {expected!r}"
            )
    for got, spec, dims in ((cfg.input[0], model.input, in_dims),
                            (cfg.output[0], model.output, out_dims)):  # fmt: skip
        seen = (got.name, pb.DataType.Name(got.data_type), tuple(got.dims))
        if seen != (spec.name, spec.data_type, tuple(dims)):
            raise RepositoryError(f"{model.path.name}: config tensor {seen} differs from the "
                                  f"file's {(spec.name, spec.data_type, tuple(dims))}")  # fmt: skip
    if model.max_batch_size > 1 and not cfg.HasField("dynamic_batching"):
        raise RepositoryError(f"{model.path.name}: a batched model without dynamic_batching")
    return cfg


def _copy_model(model: ServedModel, version_dir: Path) -> None:
    """The model file (and an IR's .bin, an ONNX file's external data) as Triton names it."""
    target = version_dir / MODEL_FILE[model.kind]
    pairs = [(model.path, target)]
    if model.kind == "openvino":
        pairs.append((model.path.with_suffix(".bin"), target.with_suffix(".bin")))
    if model.kind == "onnxruntime_onnx":
        pairs += [
            (model.path.parent / loc, version_dir / loc) for loc in _external_data(model.path)
        ]
    for src, dst in pairs:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def _external_data(path: Path) -> list[str]:
    """The files an ONNX model keeps its weights in (external data), relative to it."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    found = []
    for t in graph.initializer:
        for entry in t.external_data:
            if entry.key == "location" and entry.value not in found:
                found.append(entry.value)
    return found


def plan_repository(
    models: Sequence[str | os.PathLike[str]],
    max_batch: int = 8,
    instances: int = 1,
    queue_delay_us: int = 2000,
    accelerator: str = "none",
) -> list[tuple[ServedModel, str]]:
    """Every model read and its config.pbtxt written and checked against Triton's
    ModelConfig, before anything touches the disk: (model, config text) per file. The
    accelerator applies to the ONNX models among them (refused when there is none)."""
    served = [read_served_model(p, max_batch=max_batch) for p in models]
    names = [m.name for m in served]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RepositoryError(f"two models would both be named {dup[0]!r} in the repository: "
                              f"rename one of the files")  # fmt: skip
    if accelerator != "none" and not any(m.kind == "onnxruntime_onnx" for m in served):
        raise RepositoryError(f"--accelerator {accelerator} is for ONNX models (ONNX Runtime's "
                              f"execution accelerators); none of these is one")  # fmt: skip
    plan = []
    for m in served:
        text = config_text(m, instances, queue_delay_us,
                           accelerator if m.kind == "onnxruntime_onnx" else "none")  # fmt: skip
        check_config(text, m)
        plan.append((m, text))
    return plan


def write_repository(plan: Sequence[tuple[ServedModel, str]], out: str | os.PathLike[str]) -> None:
    """Write ``plan_repository``'s models and configs into ``out`` in Triton's layout."""
    root = Path(out)
    for m, text in plan:
        _copy_model(m, root / m.name / "1")
        write_text_atomic(root / m.name / "config.pbtxt", text)
