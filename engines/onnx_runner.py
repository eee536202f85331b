"""ONNX Runtime runner: the engine that runs everywhere (CPU by default)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.depth import DepthRange
from densedepth.util.errors import DenseDepthError, error_line
from densedepth.util.onnx_io import INPUT_NAME, OUTPUT_NAME, fixed_batch, ort_session, read_metadata
from engines.base import RunnerBase, check_batch, model_info
from export.onnx_graph import constant_tensors, producers

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def choose_providers(device: str) -> list[str]:
    """Execution providers for ``device`` (auto | cpu | cuda | tensorrt) that exist here."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device not in PROVIDERS:
        raise DenseDepthError(f"unknown device {device!r}; choose auto, cpu, cuda or tensorrt")
    wanted = PROVIDERS[device]
    if wanted[0] not in available:
        raise DenseDepthError(
            f"ONNX Runtime here has no {wanted[0]} (available: {', '.join(sorted(available))}); "
            f"install onnxruntime-gpu on a CUDA machine or use --device cpu"
        )
    return [p for p in wanted if p in available]


CONVERSION_OPS = ("Mul", "Div", "Reciprocal", "Cast")  # between the Clip and the output


def raw_output_name(path: Path) -> str | None:
    """The tensor the deployable graph clamps and inverts into metres (the input of the Clip
    that the output is computed from through Mul / Div / Reciprocal / Cast), or None where
    the graph is not of that shape (a quantized or foreign tail)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    made, consts = producers(graph), constant_tensors(graph)
    name = OUTPUT_NAME
    for _ in range(8):
        node = made.get(name)
        if node is None:
            return None
        if node.op_type == "Clip":
            return node.input[0]
        inputs = [i for i in node.input if i and i not in consts]
        if node.op_type not in CONVERSION_OPS or len(inputs) != 1:
            return None
        name = inputs[0]
    return None


def check_layout(path: Path, shape: list, size: list) -> None:
    """The graph's input is N x 3 x H x W with the metadata's H x W (symbolic dims pass), or
    one line naming both."""
    h, w = (int(s) for s in size)
    dims = list(shape)
    fits = len(dims) == 4 and all(
        not isinstance(d, int) or d == e for d, e in zip(dims[1:], (3, h, w), strict=True)
    )
    if fits:
        return
    text = "x".join(str(d) if isinstance(d, int) else "N" for d in dims)
    nhwc = len(dims) == 4 and dims[1:] == [h, w, 3]
    layout = " (NHWC: channels last)" if nhwc else ""
    raise DenseDepthError(
        f"{path}: its metadata says input Nx3x{h}x{w} (NCHW) but the graph's input is "
        f"{text}{layout}; the file was changed after export, re-export it with cli.py export"
    )


class OnnxRunner(RunnerBase):
    """An exported DenseDepth ONNX file (fp32, fp16 or int8 Q/DQ) run by ONNX Runtime."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: str = "auto",
        threads: int = 0,
        profile: str | None = None,
    ) -> None:
        self.path = Path(path)
        meta = read_metadata(self.path)
        if "input_size" not in meta:
            raise DenseDepthError(
                f"{self.path} is not a DenseDepth export (no densedepth.* metadata); "
                f"export it with cli.py export"
            )
        if threads < 0:
            raise DenseDepthError(f"threads must be 0 (the default) or more, not {threads}")
        self._providers = choose_providers(device)
        try:
            self.session: Any = ort_session(self.path, threads, self._providers, profile)
        except Exception as exc:
            first = error_line(exc, 200, with_type=False)
            raise DenseDepthError(f"ONNX Runtime cannot load {self.path}: {first}") from None
        names = [i.name for i in self.session.get_inputs()]
        if names != [INPUT_NAME] or self.session.get_outputs()[0].name != OUTPUT_NAME:
            raise DenseDepthError(
                f"{self.path}: expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}', got "
                f"{names}; export it with cli.py export"
            )
        size = meta["input_size"]
        check_layout(self.path, self.session.get_inputs()[0].shape, size)
        self.meta: dict[str, Any] = meta
        self.info = model_info(meta)
        self.precision = self.info.precision
        self.threads = int(self.session.get_session_options().intra_op_num_threads)
        self.device = "cpu" if self._providers[0] == "CPUExecutionProvider" else "cuda"
        self.name = f"onnxruntime:{self.path.name}"
        self.input_shape = (1, 3, int(size[0]), int(size[1]))
        self.max_batch = fixed_batch(self.session)  # images per engine call (None: any batch)
        self._target_session: Any = None
        self._target_name: str | bool | None = False  # False: not looked for yet

    @property
    def depth_norm(self) -> DepthRange:
        """The numerator and valid range of the network's reciprocal target."""
        return self.info.depth_norm

    def _release_resources(self) -> None:
        self.session = None  # ONNX Runtime frees a session with its last reference
        self._target_session = None

    @property
    def predict_target(self) -> Any:
        """The raw network output (``_predict_target``) where the graph's conversion can be
        walked back to it, else None; looked for on first use (it reads the file again)."""
        if self._target_name is False:
            self._target_name = raw_output_name(self.path)
        return self._predict_target if self._target_name else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """RGB batch (N,3,H,W) float32 in [0,1] -> metres (N,1,H/2,W/2) float32."""
        self._check_open()
        x = check_batch(self.name, batch, self.input_shape)
        if self.max_batch is not None and x.shape[0] != self.max_batch:
            parts = [self._run(x[i : i + 1]) for i in range(x.shape[0])]
            return np.concatenate(parts)
        return self._run(x)

    def _predict_target(self, batch: np.ndarray) -> np.ndarray:
        """The network's raw reciprocal output (N,1,H/2,W/2), read before the graph's clamp
        and inversion: a second session of the same file with that tensor as an output."""
        import onnx
        import onnxruntime as ort

        self._check_open()
        x = check_batch(self.name, batch, self.input_shape)
        if self._target_session is None:
            model = onnx.load(str(self.path))
            model.graph.output.append(onnx.ValueInfoProto(name=str(self._target_name)))
            self._target_session = ort.InferenceSession(
                model.SerializeToString(), self.session.get_session_options(),
                providers=self._providers,
            )  # fmt: skip
        step = self.max_batch or x.shape[0]
        parts = [
            self._target_session.run([self._target_name], {INPUT_NAME: x[i : i + step]})[0]
            for i in range(0, x.shape[0], step)
        ]
        return np.concatenate(parts).astype(np.float32)

    def _run(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        return np.asarray(out, dtype=np.float32)

    def end_profiling(self) -> str:
        """Stop ORT's profiler; returns the JSON trace path."""
        self._check_open()
        return self.session.end_profiling()
