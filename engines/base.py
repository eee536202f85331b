"""The runner interface: ``Runner`` (what every runner offers), ``ModelInfo`` (what the model
file says about the model, read once by ``model_info``) and ``load_runner`` (a model file ->
its runner, by suffix or by a format-table key).

Numpy only: the runtime path (.onnx, .xml, .engine) imports this without torch.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from densedepth.depth import MAX_DEPTH, MIN_DEPTH, DepthRange
from densedepth.util.errors import BackendUnavailable, DenseDepthError, missing_reason


@dataclass(frozen=True)
class ModelInfo:
    """What a model file records about its model (ONNX metadata, a sidecar or a checkpoint's
    config): read once, when the runner opens it, by ``model_info``."""

    backbone: str = ""
    decoder_width: float = 1.0
    min_depth: float = MIN_DEPTH  # metres the output is clamped to
    max_depth: float = MAX_DEPTH
    depth_numerator: float = MAX_DEPTH  # the network learns numerator / depth
    variant: dict[str, Any] = field(default_factory=dict, hash=False)  # densedepth.variant
    weights_origin: str = ""  # e.g. "published Keras nyu.h5"; "" for our own training
    precision: str = "fp32"  # fp32 | fp16 | bf16 | int8 | unknown (an engine without sidecar)
    input_size: tuple[int, int] | None = None  # (H, W) the runner runs at
    camera: dict[str, Any] | None = field(default=None, hash=False)  # training camera, if any
    quantization: str = ""  # INT8 only: "QAT, 200 steps" or "PTQ minmax" etc. (quantization_of)

    @property
    def depth_range(self) -> tuple[float, float]:
        """(min, max) metres of the output."""
        return self.min_depth, self.max_depth

    @property
    def depth_norm(self) -> DepthRange:
        """The numerator and valid range of the network's reciprocal target."""
        return DepthRange(self.min_depth, self.max_depth, self.depth_numerator)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (tuples become lists)."""
        d = asdict(self)
        if self.input_size is not None:
            d["input_size"] = list(self.input_size)
        return d


def model_info(meta: Mapping[str, Any]) -> ModelInfo:
    """The ModelInfo of a metadata dict: an ONNX file's ``densedepth.*`` metadata, an
    artifact's sidecar, or a checkpoint's config (plus its ``weights_origin``).

    The depth range is the top-level ``min_depth`` / ``max_depth`` / ``depth_numerator``
    (ONNX files, sidecars) or else the variant's (checkpoints), else NYU's 0.1..10 m; the
    variant is written out in full (``{}`` in an older checkpoint is the default variant).
    """
    from densedepth.variant import ModelVariant

    raw = meta.get("variant") or {}
    variant = dict(raw) if isinstance(raw, Mapping) else {}
    try:
        full = ModelVariant.from_dict(variant)
        variant, depth = full.to_dict(), full.depth
    except (DenseDepthError, TypeError, ValueError):  # a newer toolkit's fields: keep as written
        depth = DepthRange()
    lo = float(meta.get("min_depth", depth.min_depth))
    hi = float(meta.get("max_depth", depth.max_depth))
    numerator = meta.get("depth_numerator")
    if numerator is None:  # a sidecar without it: the variant's, else the far end (NYU, KITTI)
        numerator = depth.numerator if variant and raw else hi
    size = meta.get("input_size")
    camera = meta.get("camera", meta.get("training_camera"))
    return ModelInfo(
        backbone=str(meta.get("backbone") or ""),
        decoder_width=float(meta.get("decoder_width", 1.0)),
        min_depth=lo,
        max_depth=hi,
        depth_numerator=float(numerator),
        variant=variant,
        weights_origin=str(meta.get("weights_origin") or ""),
        precision=str(meta.get("precision") or "fp32"),
        input_size=(int(size[0]), int(size[1])) if size else None,
        camera=dict(camera) if isinstance(camera, Mapping) else None,
        quantization=quantization_of(meta),
    )


def file_info(path: str | os.PathLike[str]) -> ModelInfo:
    """What a model file records, without running it: an ONNX file's metadata, an IR's or
    engine's sidecar, a checkpoint's config (needs torch)."""
    from densedepth.util.onnx_io import read_metadata, read_sidecar

    p = Path(path)
    if p.suffix == ".onnx":
        return model_info({**read_metadata(p)})
    if p.suffix in (".pt", ".pth"):
        from densedepth.checkpoint import checkpoint_meta, load_checkpoint

        return model_info(checkpoint_meta(load_checkpoint(p)))
    sidecar = read_sidecar(p)
    if not sidecar:
        raise DenseDepthError(f"{p} has no sidecar ({p.name}.json) recording its model: "
                              f"build it with build-engine")  # fmt: skip
    return model_info(sidecar)


def info_lines(info: ModelInfo) -> list[str]:
    """``info MODEL``'s lines: backbone, precision, input, depth range, origin, camera."""
    from densedepth.camera import camera_line, intrinsics_from_dict

    size = f"{info.input_size[0]}x{info.input_size[1]}" if info.input_size else "any"
    quant = f" ({info.quantization})" if info.quantization else ""
    lines = [
        f"backbone: {info.backbone or 'unknown'}, decoder width {info.decoder_width:g}",
        f"precision: {info.precision}{quant}, input {size} (H x W)",
        f"depth: metres, {info.min_depth:g} to {info.max_depth:g}",
        f"weights: {info.weights_origin or 'trained with this toolkit'}",
    ]
    camera = camera_line(intrinsics_from_dict(info.camera))
    return [*lines, camera.replace("camera:", "training camera:", 1)]


def quantization_of(meta: Mapping[str, Any]) -> str:
    """How an INT8 model was quantized, from its metadata: ``QAT, N steps`` (``train --qat``)
    or ``PTQ METHOD`` (post-training: the calibration method, or NNCF for OpenVINO); "" for a
    float model."""
    if meta.get("precision") != "int8":
        return ""
    if meta.get("int8_producer") == "qat":
        qat = meta.get("qat")
        steps = qat.get("steps") if isinstance(qat, Mapping) else None
        return f"QAT, {steps} steps" if steps else "QAT"
    method = meta.get("calibration_method") or meta.get("quantizer") or "calibrated"
    return f"PTQ {method}"


@runtime_checkable
class Runner(Protocol):
    """Anything that maps an RGB batch (N,3,H,W float32 in [0,1]) to metres (N,1,H/2,W/2).

    Every runner has all of these; callers read them directly, whichever kind they hold:

    - ``name``: ``engine:file`` (``torch``, ``torch.compile``, ``onnxruntime``, ``openvino``,
      ``tensorrt``); ``precision`` (fp32 | fp16 | bf16 | int8 | unknown); ``device``
      (cpu | cuda...); ``input_shape`` (1, 3, H, W): the H x W it runs at;
    - ``max_batch``: the most images one engine call runs (None: any; a larger batch is split
      into calls);
    - ``info``: the ModelInfo its file records (backbone, decoder width, depth range, variant,
      weights origin, precision, input size, training camera);
    - ``threads``: the CPU threads it runs with (torch: ``torch.get_num_threads()`` after
      applying its own; ONNX Runtime: the intra-op threads set, 0 where ONNX Runtime picks its
      default; OpenVINO: the compiled model's; TensorRT: 0);
    - ``providers``: ONNX Runtime's execution providers in use, OpenVINO's device plugin,
      [] elsewhere; ``compile_seconds``: time spent in ``torch.compile`` (else 0.0);
    - ``close()`` releases the session / compiled model / engine context (idempotent; a call
      afterwards raises DenseDepthError); ``with load_runner(path) as r:`` closes on exit.

    Our runners also keep ``backbone``, ``decoder_width``, ``depth_range`` and
    ``weights_origin`` (shortcuts into ``info``); checkpoints and ONNX files offer
    ``predict_target`` (the network's raw reciprocal output, None where the graph's conversion
    cannot be walked back) and ``depth_norm`` (its DepthRange), which the densedepth protocol
    converts as the authors did.
    """

    name: str
    precision: str
    device: str
    input_shape: tuple[int, int, int, int]
    max_batch: int | None
    info: ModelInfo
    threads: int
    providers: list[str]
    compile_seconds: float

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...

    def __enter__(self) -> Runner: ...

    def __exit__(self, *exc: object) -> None: ...


class RunnerBase:
    """What the runners share: the ``info`` shortcuts, ``close`` and context-manager use.

    A subclass sets ``name``, ``precision``, ``device``, ``input_shape`` and ``info`` (and
    ``max_batch``, ``threads``, ``providers``, ``compile_seconds`` where not the defaults),
    releases its resources in ``_release_resources`` and calls ``_check_open`` first thing
    in every call.
    """

    name: str = "runner"
    max_batch: int | None = None
    threads: int = 0
    compile_seconds: float = 0.0
    closed: bool = False
    info: ModelInfo = ModelInfo()

    @property
    def providers(self) -> list[str]:
        """Execution providers / device plugin in use ([] by default)."""
        return list(getattr(self, "_providers", ()))

    @property
    def backbone(self) -> str:
        return self.info.backbone

    @property
    def decoder_width(self) -> float:
        return self.info.decoder_width

    @property
    def depth_range(self) -> tuple[float, float]:
        """(min, max) metres the output is clamped to."""
        return self.info.depth_range

    @property
    def weights_origin(self) -> str:
        return self.info.weights_origin

    def _release_resources(self) -> None:
        """Free what the runner holds (sessions, compiled models, buffers)."""

    def _check_open(self) -> None:
        if self.closed:
            raise DenseDepthError(f"{self.name} is closed; open the model again to run it")

    def close(self) -> None:
        """Release the runner's resources; later calls raise. Closing twice is harmless."""
        if self.closed:
            return
        self.closed = True
        self._release_resources()

    def __enter__(self) -> RunnerBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AdaptedRunner(RunnerBase):
    """A callable with the basic attributes (``name``, ``precision``, ``device``,
    ``input_shape``) seen as a full Runner: the missing parts take their defaults; every
    other attribute is the wrapped object's."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    name = property(lambda self: str(getattr(self._inner, "name", "runner")))
    precision = property(lambda self: str(getattr(self._inner, "precision", "fp32")))
    device = property(lambda self: str(getattr(self._inner, "device", "cpu")))
    input_shape = property(lambda self: tuple(self._inner.input_shape))
    max_batch = property(lambda self: getattr(self._inner, "max_batch", None))
    threads = property(lambda self: int(getattr(self._inner, "threads", 0) or 0))
    providers = property(lambda self: list(getattr(self._inner, "providers", []) or []))
    compile_seconds = property(
        lambda self: float(getattr(self._inner, "compile_seconds", 0.0) or 0.0)
    )

    @property
    def info(self) -> ModelInfo:
        info = getattr(self._inner, "info", None)
        if isinstance(info, ModelInfo):
            return info
        inner = self._inner
        lo, hi = getattr(inner, "depth_range", (MIN_DEPTH, MAX_DEPTH))
        return model_info({
            "backbone": getattr(inner, "backbone", ""),
            "decoder_width": getattr(inner, "decoder_width", None) or 1.0,
            "weights_origin": getattr(inner, "weights_origin", ""),
            "min_depth": lo,
            "max_depth": hi,
            "precision": self.precision,
            "input_size": self.input_shape[2:],
        })  # fmt: skip

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self._check_open()
        return self._inner(batch)

    def _release_resources(self) -> None:
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()

    def __getattr__(self, name: str) -> Any:  # predict_target, depth_norm, a fake's counters
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)


def as_runner(obj: Any) -> Runner:
    """``obj`` itself when it is a Runner; else a Runner view of it (for callables that
    carry only ``name``, ``precision``, ``device`` and ``input_shape``, like test fakes)."""
    if isinstance(obj, Runner):
        return obj
    if not callable(obj) or not hasattr(obj, "input_shape"):
        raise DenseDepthError(
            f"{type(obj).__name__} is not a runner: it needs __call__(batch) and input_shape"
        )
    return _AdaptedRunner(obj)


def check_batch(name: str, batch: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """The batch as contiguous float32 NCHW, or one clear error naming the expected shape."""
    x = np.ascontiguousarray(batch, dtype=np.float32)
    if x.ndim != 4 or x.shape[1:] != tuple(input_shape[1:]):
        want = "x".join(map(str, input_shape[1:]))
        raise DenseDepthError(f"{name} expects batches of N x {want} (RGB), got {x.shape}")
    return x


def load_runner(
    path: str | os.PathLike[str],
    device: str = "auto",
    threads: int = 0,
    format: str | None = None,
    input_size: tuple[int, int] | None = None,
) -> Runner:
    """Open a model file as a runner: the format table's runner for its suffix, or, with
    ``format`` (a format-table key such as ``torch-bf16``, ``torch.compile-fp32``,
    ``onnx-int8``), that row's runner and its options.

    ``threads`` is the CPU threads the runner uses (torch, ONNX Runtime, OpenVINO; 0 = their
    default). ``input_size`` (H, W) runs a checkpoint at that size; a file of fixed size
    (ONNX, OpenVINO, TensorRT) accepts only its own and refuses another in one line.
    A ``format`` whose suffix is not the file's, or whose precision differs from the one the
    file records, is refused in one line too.
    """
    from export.formats import DEPLOY_FORMATS, format_by_key, format_for_suffix, model_suffixes

    path = Path(path)
    if path.is_dir():
        raise DenseDepthError(f"{path} is a folder; pass a model file (bench also takes folders)")
    if format is not None:
        fmt = format_by_key(format)
        if fmt is None:
            keys = ", ".join(f.key for f in DEPLOY_FORMATS)
            raise DenseDepthError(f"unknown format {format!r}; choose one of: {keys}")
        suffixes = (fmt.suffix, *fmt.aliases)
        if path.suffix not in suffixes:
            fits = [f.key for f in DEPLOY_FORMATS if path.suffix in (f.suffix, *f.aliases)]
            hint = f"; for {path.suffix} use {', '.join(fits)}" if fits else ""
            raise DenseDepthError(
                f"{path.name}: format {fmt.key} runs {'/'.join(suffixes)} files, not "
                f"{path.suffix or 'a file without suffix'}{hint}"
            )
    else:
        fmt = format_for_suffix(path.suffix)
        if fmt is None:
            known = ", ".join(model_suffixes())
            raise DenseDepthError(
                f"{path}: unknown model file type {path.suffix!r}; expected {known}"
            )
    if not path.is_file():
        raise DenseDepthError(f"model file {path} {missing_reason(path)}")
    if fmt.needs_compiler:
        reason = fmt.unavailable_reason()
        if reason:
            raise BackendUnavailable(f"cannot run {path} as {fmt.key}: {reason}")
    try:
        cls = fmt.runner_class()
    except ModuleNotFoundError as exc:  # torch for a checkpoint, openvino for an IR...
        needed = {name for m in fmt.modules for name in m.split("|")}
        if (exc.name or "").split(".")[0] not in needed:
            raise
        how = f"pip install '.[{fmt.extra}]'" if fmt.extra else "pip install -e ."
        missing = f"{exc.name} is not installed ({how})"
        raise BackendUnavailable(f"cannot run {path}: {missing}") from None
    options = dict(fmt.runner_options)
    takes_size = "input_size" in inspect.signature(cls).parameters
    if input_size is not None and takes_size:
        options["input_size"] = (int(input_size[0]), int(input_size[1]))
    try:
        runner = cls(path, device=device, threads=threads, **options)
    except BackendUnavailable as exc:  # name the file: "which model could not run?"
        raise BackendUnavailable(f"cannot run {path}: {exc}") from None
    problem = _mismatch(runner, fmt, format, input_size, takes_size)
    if problem:
        runner.close()
        raise DenseDepthError(f"{path.name}: {problem}")
    return runner


def _mismatch(
    runner: Runner, fmt: Any, key: str | None, size: tuple[int, int] | None, takes_size: bool
) -> str:
    """Why the opened runner is not what was asked for ('' when it is)."""
    have = tuple(int(s) for s in runner.input_shape[2:])
    if size is not None and not takes_size and have != tuple(int(s) for s in size):
        h, w = have
        return (
            f"runs at its fixed input size {h}x{w}, not {size[0]}x{size[1]}; export (and "
            f"build) it again at that size: cli.py export --input-size {size[0]}x{size[1]}"
        )
    baked = key is not None and fmt.builder is not None  # an artifact: its precision is fixed
    if baked and runner.precision not in (fmt.precision, "unknown"):
        return f"its precision is {runner.precision} (fixed in the file), not {fmt.key}'s"
    return ""
