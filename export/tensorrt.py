"""TensorRT engines, built as the TensorRT version at hand needs.

What each version builds from (``build_plan``, from the rows of
``export.tensorrt_versions.VERSIONS``, where every TensorRT version difference lives):

- TensorRT 10.12+ and 11: strongly typed networks (10.12 deprecated the precision flags, 11
  removed them). FP16 builds from the FP16 ONNX (``export.fp16.convert_fp16``); INT8 from
  the TensorRT Q/DQ ONNX (``export.quantize``, flavour ``tensorrt``) whose float layers are
  FP16 (``--int8 --fp16``, the usual TensorRT INT8) or FP32 (``--int8``): under strong typing
  the layers take the types the ONNX gives them.
- TensorRT 10.1 .. 10.11: weakly typed with flags: FP16 is ``BuilderFlag.FP16`` on the FP32
  ONNX; INT8 is the Q/DQ ONNX (FP32 float layers) with ``BuilderFlag.INT8``, plus
  ``BuilderFlag.FP16`` for the float layers with ``--fp16``.
- TensorRT < 10.1 (8.5 / 8.6 on older JetPack, 10.0): as 10.1 .. 10.11, the Q/DQ ONNX at
  opset 17 for the 8.x parser; or INT8 from the FP32 ONNX through an
  ``IInt8EntropyCalibrator2`` fed by our calibration set (``--legacy-calibrator``), with a
  cache keyed by (ONNX hash, calibration set hash, input shape); a cache made for something
  else is never reused.

Every ONNX is checked against TensorRT's rules (``export.trt_check``) for the version at hand
before it is parsed. Every engine gets a JSON sidecar (TensorRT version, GPU, precision, shapes,
ONNX hash); loading one built by another TensorRT version or for another GPU is refused, naming
both; an engine without one (``trtexec``) loads with a warning. CUDA memory goes through
``export.cuda`` (pycuda or cuda-python). The runtime is ``engines.tensorrt_runner``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from densedepth.util.errors import ExportError
from densedepth.util.files import file_sha256
from densedepth.util.onnx_io import INPUT_NAME, read_metadata
from densedepth.util.outputs import (
    artifact_path,
    atomic_path,
    claim_output,
    record_written,
    reusable_cache,
)
from densedepth.util.support import NVIDIA_INDEX
from export.artifact import finish_artifact
from export.formats import get_format, require
from export.tensorrt_versions import (
    VERSIONS,
    implicit_int8_history,
    parse_version,
    row_for,
    version_label,
)

DEFAULT_WORKSPACE_GB = 2.0
INT8_FLOATS = ("fp16", "fp32")


@dataclass(frozen=True)
class BuildPlan:
    """How one TensorRT version builds one precision."""

    onnx_kind: str  # fp32 | fp16 | int8-qdq-fp32 | int8-qdq-fp16: which ONNX the build parses
    flags: tuple[str, ...]  # BuilderFlag names to set
    strongly_typed: bool
    calibrator: bool  # implicit INT8 calibration (TensorRT < 10.1 only)
    explicit_batch_flag: bool  # TensorRT 8.x networks need EXPLICIT_BATCH
    max_opset: int | None  # the highest opset this version's parser reads (None: any we write)
    typed_flag: bool = False  # set NetworkDefinitionCreationFlag.STRONGLY_TYPED (10.12 .. 10.x)


def build_plan(
    version: tuple[int, int],
    precision: str,
    use_calibrator: bool = False,
    int8_float: str = "fp16",
) -> BuildPlan:
    """The build recipe for ``precision`` on TensorRT ``version`` (see the module docstring);
    ``int8_float`` is the precision of the layers an INT8 engine leaves in float. A version
    older than every row of ``VERSIONS`` is planned as the oldest (the checker refuses it
    before any build)."""
    if precision not in ("fp16", "int8"):
        raise ExportError(f"TensorRT engines are fp16 or int8, not {precision}")
    if int8_float not in INT8_FLOATS:
        raise ExportError(f"INT8 float layers are fp16 or fp32, not {int8_float}")
    row = row_for(version) or VERSIONS[0]
    if use_calibrator and row.implicit_int8 == "removed":
        raise ExportError(
            f"{version_label(version)} has no implicit INT8 calibrator "
            f"({implicit_int8_history()}); build INT8 from the Q/DQ ONNX"
        )
    explicit = row.explicit_batch_flag
    max_opset = row.plan_max_opset
    if use_calibrator and precision == "int8":
        # deprecated from 10.1 but still built (explicit Q/DQ on concat-heavy decoders can
        # fuse worse, NVIDIA/TensorRT#4401): a weakly typed network with the INT8 flag, even
        # where strong typing is the default (10.12 .. 10.x)
        flags = ("INT8", "FP16") if int8_float == "fp16" else ("INT8",)
        return BuildPlan("fp32", flags, False, True, explicit, max_opset)
    if row.strongly_typed:
        kind = "fp16" if precision == "fp16" else f"int8-qdq-{int8_float}"
        return BuildPlan(kind, (), True, False, False, max_opset, row.typed_flag)
    if precision == "fp16":
        return BuildPlan("fp32", ("FP16",), False, False, explicit, max_opset)
    flags = ("INT8", "FP16") if int8_float == "fp16" else ("INT8",)
    kind = "fp32" if use_calibrator else "int8-qdq-fp32"
    return BuildPlan(kind, flags, False, use_calibrator, explicit, max_opset)


def int8_path(version: tuple[int, int], plan: BuildPlan) -> str:
    """Which INT8 path built an engine, as its sidecar says it."""
    if not plan.calibrator:
        return "explicit Q/DQ"
    row = row_for(version) or VERSIONS[0]
    note = ", deprecated since TensorRT 10.1" if row.implicit_int8 == "deprecated" else ""
    return f"implicit calibrator (IInt8EntropyCalibrator2{note})"


def onnx_kind(path: str | os.PathLike[str]) -> str:
    """fp32 | fp16 | int8-qdq-fp32 | int8-qdq-fp16 (TensorRT flavour) of one of our ONNX files."""
    meta = read_metadata(path)
    precision = meta.get("precision", "")
    if precision == "int8":
        if meta.get("int8_flavour") != "tensorrt":
            raise ExportError(
                f"{path} is the ONNX Runtime CPU INT8 flavour (unsigned activations); TensorRT "
                f"needs symmetric int8: build-engine --int8 --target tensorrt makes it"
            )
        return f"int8-qdq-{meta.get('float_precision', 'fp32')}"
    if precision in ("fp32", "fp16"):
        return precision
    raise ExportError(f"{path} is not a DenseDepth ONNX export (no densedepth.precision)")


def engine_sidecar(
    trt_version: str, gpu: str, precision: str, onnx_path: Path, shapes: dict[str, Any]
) -> dict[str, Any]:
    """What identifies an engine: TensorRT version, GPU, precision, shapes, source ONNX."""
    meta = read_metadata(onnx_path)
    return {
        "format": f"tensorrt-{precision}",
        "precision": precision,
        "tensorrt_version": trt_version,
        "gpu": gpu,
        "shapes": shapes,
        "input_size": meta["input_size"],
        "backbone": meta.get("backbone", ""),
        "decoder_width": meta.get("decoder_width", 1.0),
        **{
            k: meta[k]
            for k in ("min_depth", "max_depth", "variant", "weights_origin", "training_camera")
            if k in meta
        },
        "source_onnx": str(onnx_path),
        "source_onnx_sha256": file_sha256(onnx_path),
    }


def check_engine_sidecar(sidecar: dict[str, Any], trt_version: str, gpu: str, path: Path) -> None:
    """Refuse an engine built by another TensorRT version or for another GPU, naming both;
    a version-compatible engine runs on the same major at its version or later, one built
    with a hardware compatibility level on another GPU (TensorRT checks the architecture)."""
    built_v, built_gpu = sidecar.get("tensorrt_version", "?"), sidecar.get("gpu", "?")
    if built_v != trt_version and not _version_compatible(sidecar, built_v, trt_version):
        raise ExportError(
            f"{path} was built by TensorRT {built_v}, this is TensorRT {trt_version}; "
            f"rebuild the engine here"
        )
    if built_gpu != gpu and sidecar.get("hardware_compatibility", "none") == "none":
        raise ExportError(f"{path} was built for {built_gpu}, this GPU is {gpu}; rebuild it here")


def _version_compatible(sidecar: dict[str, Any], built: str, here: str) -> bool:
    """Whether a version-compatible engine from ``built`` runs on ``here`` (same major,
    not older)."""
    if not sidecar.get("version_compatible"):
        return False
    try:
        b, h = parse_version(built), parse_version(here)
    except ExportError:
        return False
    return b[0] == h[0] and h >= b


@dataclass(frozen=True)
class BuilderKnobs:
    """What a TensorRT user sets beyond precision and shapes; each is recorded in the sidecar."""

    opt_level: int | None = None  # builder optimisation level 0..5 (None: TensorRT's 3)
    hardware_compat: str = "none"  # none | ampere_plus | same_compute_capability
    version_compatible: bool = False  # runs on later TensorRT of the same major (lean runtime)
    build_log: str | None = None  # the builder's verbose log, written to this file
    layer_info: bool = True  # the engine inspector's per-layer JSON beside the engine
    dla_core: int | None = None  # build for this DLA core (Jetson Orin: 0 or 1)
    gpu_fallback: bool = False  # with dla_core: layers DLA cannot run go to the GPU


def apply_knobs(trt: Any, config: Any, knobs: BuilderKnobs) -> dict[str, Any]:
    """Set ``knobs`` on a builder config (profiling detailed enough for the inspector);
    returns them for the sidecar, one clear line for a value this TensorRT lacks."""
    if knobs.opt_level is not None:
        if not 0 <= knobs.opt_level <= 5:
            raise ExportError(f"--opt-level is 0..5 (TensorRT's default 3), got {knobs.opt_level}")
        config.builder_optimization_level = knobs.opt_level
    if knobs.hardware_compat != "none":
        levels = trt.HardwareCompatibilityLevel.__members__
        if knobs.hardware_compat.upper() not in levels:
            known = ", ".join(n.lower() for n in levels)
            raise ExportError(
                f"TensorRT {trt.__version__} has no hardware compatibility level "
                f"{knobs.hardware_compat!r} (it has {known})"
            )
        config.hardware_compatibility_level = levels[knobs.hardware_compat.upper()]
    if knobs.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if knobs.layer_info:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    return {
        "opt_level": knobs.opt_level,
        "hardware_compatibility": knobs.hardware_compat,
        "version_compatible": knobs.version_compatible,
    }


def check_dla_options(knobs: BuilderKnobs, precision: str, calibrator: bool) -> None:
    """The DLA options make sense together (before anything is written): a core for
    --gpu-fallback, FP16 or INT8, and DLA's INT8 through the calibrator only (implicit
    quantization, not Q/DQ: NVIDIA in NVIDIA/TensorRT#2222 and NVIDIA/Model-Optimizer#1661)."""
    if knobs.gpu_fallback and knobs.dla_core is None:
        raise ExportError("--gpu-fallback is for DLA builds: add --dla-core N")
    if knobs.dla_core is None:
        return
    if knobs.dla_core < 0:
        raise ExportError(f"--dla-core is 0 or more (Jetson Orin: 0 or 1), got {knobs.dla_core}")
    if precision not in ("fp16", "int8"):
        raise ExportError(f"DLA runs FP16 and INT8 only, not {precision}")
    if precision == "int8" and not calibrator:
        raise ExportError(
            "DLA runs INT8 from calibration scales only (implicit quantization), not from a "
            "Q/DQ ONNX: add --legacy-calibrator (TensorRT 8.6 / 10.x, JetPack 6)"
        )


def check_dla_build(
    onnx_path: Path, knobs: BuilderKnobs, precision: str, plan: BuildPlan
) -> dict[str, Any]:
    """Before a DLA build: the options (``check_dla_options``) and what DLA cannot run in the
    ONNX (``export.dla_check``), refused in one line unless GPU fallback is on. Returns the
    sidecar's DLA fields ({} for a GPU build)."""
    import onnx

    from export.dla_check import check_dla

    check_dla_options(knobs, precision, plan.calibrator)
    if knobs.dla_core is None:
        return {}
    model = onnx.load(str(onnx_path), load_external_data=False)
    findings = [f for f in check_dla(model) if f.rule != "dla-static-shape"]
    nodes = sorted({f.node for f in findings})
    if nodes and not knobs.gpu_fallback:
        shown = "; ".join(f.line() for f in findings[:3])
        raise ExportError(
            f"{len(nodes)} layer(s) of {onnx_path.name} cannot run on DLA ({shown}"
            f"{'; ...' if len(findings) > 3 else ''}): add --gpu-fallback to run them on the "
            f"GPU, or train and export the DLA variant (train --variant dla); cli.py "
            f"check-onnx --for dla lists them all"
        )
    return {"dla_core": knobs.dla_core, "gpu_fallback": knobs.gpu_fallback,
            "dla_gpu_fallback_layers": len(nodes)}  # fmt: skip


def apply_dla(trt: Any, builder: Any, config: Any, knobs: BuilderKnobs) -> None:
    """Put the build on DLA core ``knobs.dla_core`` (NVIDIA's API: default_device_type DLA,
    DLA_core, BuilderFlag.GPU_FALLBACK); one line where this device has no such core."""
    if knobs.dla_core is None:
        return
    count = int(builder.num_DLA_cores)
    if knobs.dla_core >= count:
        have = f"{count} DLA core(s)" if count else "no DLA (Jetson AGX Orin / Orin NX have 2)"
        raise ExportError(f"--dla-core {knobs.dla_core}: this device has {have}")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = knobs.dla_core
    if knobs.gpu_fallback:
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def make_logger(trt: Any, log_path: str | os.PathLike[str] | None) -> tuple[Any, Any]:
    """TensorRT's logger: its own at WARNING, or with ``log_path`` one that writes every
    message (VERBOSE up) to that file and WARNING up to stderr; returns (logger, close), close
    renaming the finished log into place."""
    if log_path is None:
        return trt.Logger(trt.Logger.WARNING), lambda: None
    import sys

    target = Path(log_path)
    claim_output(target)
    tmp = target.with_name(f".{target.name}.tmp")
    handle = tmp.open("w")
    loud = {"INTERNAL_ERROR", "ERROR", "WARNING"}

    class FileLogger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            name = getattr(severity, "name", str(severity))
            handle.write(f"[{name}] {msg}\n")
            if name in loud:
                print(f"TensorRT {name.lower()}: {msg}", file=sys.stderr)

    def close() -> None:
        handle.close()
        os.replace(tmp, target)
        record_written(target)

    return FileLogger(), close


def set_dla_core(runtime: Any, core: int, path: Path) -> None:
    """Run a DLA engine on DLA ``core`` (set before deserializing, as NVIDIA's samples do);
    one clear line where this device has no such core (TensorRT ignores the setting where
    it has none)."""
    count = int(runtime.num_DLA_cores)
    if not 0 <= core < count:
        have = f"{count} DLA core(s)" if count else "no DLA (a Jetson Orin / Xavier has 2)"
        raise ExportError(f"{path} runs on DLA core {core}, this device has {have}")
    runtime.DLA_core = core


def write_layer_info(
    trt: Any, serialized: Any, out: Path, host_code: bool, dla_core: int | None = None
) -> Path:
    """The engine inspector's per-layer JSON (precision, tactic, formats), beside the engine."""
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    if host_code:  # a version-compatible engine carries its lean runtime
        runtime.engine_host_code_allowed = True
    if dla_core is not None:
        set_dla_core(runtime, dla_core, out)
    engine = runtime.deserialize_cuda_engine(bytes(serialized))
    if engine is None:
        raise ExportError(f"TensorRT cannot read back the engine it built for {out}")
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    path = out.with_name(out.name + ".layers.json")
    claim_output(path)
    with atomic_path(path) as tmp:
        tmp.write_text(str(info))
    record_written(path)
    return path


# --------------------------------------------------------------------------------------------
# Everything below needs TensorRT (and a GPU).
# --------------------------------------------------------------------------------------------


def import_tensorrt() -> Any:
    """TensorRT's Python API, or one clear line (what is missing, the extra to install):
    ``tensorrt`` (JetPack, NVIDIA's meta package) or ``tensorrt_bindings`` (the standalone
    wheels of the [tensorrt] extra, whose libraries wheel must be the same release)."""
    require(get_format("tensorrt", "fp16"))
    if importlib.util.find_spec("tensorrt") is not None:
        return importlib.import_module("tensorrt")
    check_standalone_wheels()
    return importlib.import_module("tensorrt_bindings")


def check_standalone_wheels() -> None:
    """Refuse a bindings wheel beside a libraries wheel of another release (pip resolves the
    two independently; NVIDIA's meta package pins them equal)."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        match = re.fullmatch(r"tensorrt-cu(\d+)-(libs|bindings)", name)
        if match:
            found[match.group(2)] = (name, dist.version)
    if len(found) == 2 and found["libs"][1] != found["bindings"][1]:
        (libs, have), (bindings, want) = found["libs"], found["bindings"]
        raise ExportError(
            f"{bindings} {want} needs {libs} {want}, {have} is installed: "
            f"pip install '{libs}=={want}' --extra-index-url {NVIDIA_INDEX}"
        )


def check_for_version(onnx_path: Path, version: tuple[int, int] | None) -> None:
    """TensorRT's rules (``export.trt_check``) for ``version`` (None: the newest known);
    every finding in one error."""
    from export.trt_check import check_onnx_file

    findings = check_onnx_file(onnx_path, version)
    if findings:
        shown = "; ".join(f.line() for f in findings[:5])
        more = f" (and {len(findings) - 5} more: cli.py check-onnx lists them)"
        raise ExportError(
            f"{onnx_path} breaks {len(findings)} rule(s) of {version_label(version)}: "
            f"{shown}{more if len(findings) > 5 else ''}"
        )


def build_engine(
    onnx_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    precision: str,
    workspace_gb: float = DEFAULT_WORKSPACE_GB,
    timing_cache: str | os.PathLike[str] | None = None,
    max_batch: int = 1,
    opt_batch: int = 1,
    calib: Any = None,
    calib_cache_dir: str | os.PathLike[str] | None = None,
    int8_float: str = "fp16",
    knobs: BuilderKnobs | None = None,
) -> dict[str, Any]:
    """Build a serialized engine from one of our ONNX files; returns the sidecar record.
    ``knobs``: optimisation level, hardware / version compatibility, the verbose build log,
    the per-layer JSON (``BuilderKnobs``).

    ``knobs.dla_core``: a Jetson's DLA core runs it (FP16, or INT8 through the calibrator;
    static batch ``max_batch``; layers DLA cannot run refused unless ``knobs.gpu_fallback``).

    ``onnx_path`` must be the kind ``build_plan`` names for this TensorRT (``export.build``
    makes it). ``max_batch`` > 1 needs an ONNX exported with ``--dynamic-batch``: an
    optimisation profile covers batch 1..max_batch, its kernels tuned for ``opt_batch``
    (default 1: single images and the camera). ``calib`` (a CalibrationSet) is used only on
    TensorRT < 10.1 when INT8 is built from the FP32 ONNX; with a dynamic batch TensorRT
    calibrates at the calibration profile's opt shape, which is set to ``opt_batch``.
    """
    from export.cuda import cuda_backend

    trt = import_tensorrt()
    cuda = cuda_backend()
    onnx_path, out = Path(onnx_path), Path(out)
    claim_output(out)
    version_text = trt.__version__
    version = parse_version(version_text)
    plan = build_plan(version, precision, calib is not None, int8_float)
    have = onnx_kind(onnx_path)
    if have != plan.onnx_kind:
        raise ExportError(
            f"TensorRT {version_text} builds {precision} from the {plan.onnx_kind} ONNX, "
            f"but {onnx_path} is {have}"
        )
    check_for_version(onnx_path, version)
    knobs = knobs or BuilderKnobs()
    dla_record = check_dla_build(onnx_path, knobs, precision, plan)
    if dla_record:  # DLA: static shapes, the profile min = opt = max
        opt_batch = max_batch
    t0 = time.perf_counter()
    logger, close_log = make_logger(trt, knobs.build_log)
    with cuda.context():
        builder = trt.Builder(logger)
        network = builder.create_network(_network_flags(trt, plan))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            listed = "; ".join(f"[{i + 1}] {e}" for i, e in enumerate(errors)) or "no detail"
            raise ExportError(f"TensorRT cannot parse {onnx_path}: {listed}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
        for flag in plan.flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        cache_state = _attach_timing_cache(config, timing_cache)
        knob_record = apply_knobs(trt, config, knobs)
        apply_dla(trt, builder, config, knobs)
        shapes, profile = _add_profile(builder, network, config, max_batch, opt_batch,
                                       static=bool(dla_record))  # fmt: skip
        calibrator = None
        if plan.calibrator:
            if profile is not None:  # TensorRT calibrates at this profile's opt shape
                config.set_calibration_profile(profile)
            from calib.calibration import cache_key

            key = cache_key(file_sha256(onnx_path), calib, "tensorrt-entropy2")
            cache_dir = Path(calib_cache_dir) if calib_cache_dir else out.parent
            cache_file = cache_dir / f"trt_calib_{key}.cache"
            reusable_cache(cache_file)  # refuses a file of that name the toolkit did not write
            batch = int(shapes[INPUT_NAME]["opt"][0])
            calibrator = make_entropy_calibrator(trt, cuda, calib, cache_file, batch)
            config.int8_calibrator = calibrator
        try:
            serialized = builder.build_serialized_network(network, config)
        finally:
            if calibrator is not None:
                calibrator.release()
            close_log()
        if serialized is None:
            raise ExportError(
                f"TensorRT failed to build the {precision} engine (see its log above); "
                f"try a larger --workspace"
            )
        with artifact_path(out) as tmp:
            tmp.write_bytes(bytes(serialized))
        if knobs.layer_info:
            knob_record["layer_info"] = str(
                write_layer_info(trt, serialized, out, knobs.version_compatible, knobs.dla_core)
            )
        if timing_cache:
            with atomic_path(Path(timing_cache)) as tmp:
                tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
        gpu = cuda.device_name()
    record = engine_sidecar(version_text, gpu, precision, onnx_path, shapes)
    record.update(
        workspace_gb=workspace_gb,
        flags=list(plan.flags),
        strongly_typed=plan.strongly_typed,
        int8_float=int8_float if precision == "int8" else None,
        calibrator="IInt8EntropyCalibrator2" if calibrator else None,
        int8_path=int8_path(version, plan) if precision == "int8" else None,
        timing_cache=cache_state,
        cuda_binding=cuda.name,
        build_log=knobs.build_log,
        **knob_record,
        **dla_record,
    )
    return finish_artifact(out, record, t0)


def _network_flags(trt: Any, plan: BuildPlan) -> int:
    """The creation flags of ``plan`` as the bit field ``create_network`` takes."""
    flags = 0
    if plan.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed and plan.typed_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def _add_profile(
    builder: Any,
    network: Any,
    config: Any,
    max_batch: int,
    opt_batch: int = 1,
    static: bool = False,
) -> tuple[dict[str, Any], Any]:
    """The optimisation profile batch 1..max_batch, opt ``opt_batch`` (none for a static
    input; ``static``: min = opt = max = max_batch, as DLA needs); returns the shapes for the
    sidecar and the profile."""
    tensor = network.get_input(0)
    if tensor.name != INPUT_NAME:
        raise ExportError(f"the ONNX input is {tensor.name!r}, expected {INPUT_NAME!r}")
    if not 1 <= opt_batch <= max_batch:
        raise ExportError(f"--opt-batch {opt_batch} must be between 1 and --max-batch {max_batch}")
    dims = list(tensor.shape)
    if dims[0] != -1:
        if max_batch > 1:
            raise ExportError("--max-batch > 1 needs an ONNX exported with --dynamic-batch")
        return {INPUT_NAME: {"min": dims, "opt": dims, "max": dims}}, None
    profile = builder.create_optimization_profile()
    lo, mid, hi = [1, *dims[1:]], [opt_batch, *dims[1:]], [max_batch, *dims[1:]]
    if static:
        lo = mid = hi
    profile.set_shape(INPUT_NAME, lo, mid, hi)
    config.add_optimization_profile(profile)
    return {INPUT_NAME: {"min": lo, "opt": mid, "max": hi}}, profile


def _attach_timing_cache(config: Any, path: str | os.PathLike[str] | None) -> str:
    """Give the build a timing cache: the file's when TensorRT accepts it, else a new one (a
    cache from another TensorRT version or GPU is refused by ``set_timing_cache``). Returns
    what happened: new | reused | replaced."""
    data = Path(path).read_bytes() if path and Path(path).is_file() else b""
    if config.set_timing_cache(config.create_timing_cache(data), ignore_mismatch=False):
        return "reused" if data else "new"
    if not data or not config.set_timing_cache(
        config.create_timing_cache(b""), ignore_mismatch=False
    ):
        raise ExportError("TensorRT refused a new, empty timing cache")
    return "replaced"


def make_entropy_calibrator(
    trt: Any, cuda: Any, calib: Any, cache_path: Path, batch: int = 1
) -> Any:
    """An ``IInt8EntropyCalibrator2`` over a CalibrationSet (TensorRT < 10.1 only), giving
    ``batch`` images per call: the calibration shape's batch (a static engine's batch, or
    the calibration profile's opt batch: "Calibration is performed using kOPT values of the
    profile. Calibration input data size must match this profile", NVIDIA's developer guide),
    which is what TensorRT reads from the buffer.

    Its device buffer holds exactly ``batch`` images, allocated in the current CUDA context
    (``build_engine`` holds the primary context for the whole build) and freed by
    ``release()``; a last, partial batch is left out (the buffer would hold stale images).
    The cache file's name carries the key, so only a cache made for this ONNX, calibration
    set and input shape is ever read.
    """
    import numpy as np

    if len(calib.images) < batch:
        raise ExportError(
            f"{len(calib.images)} calibration images cannot fill one batch of {batch} (the "
            f"profile's opt batch): --calib-images {batch} or more, or a smaller --opt-batch"
        )

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.batches = (b for b in calib.batches(batch) if len(b) == batch)
            self.device = cuda.alloc(int(calib.images[:batch].nbytes))

        def get_batch_size(self) -> int:
            # explicit batch: the batch is the buffer's first dimension; trtexec's calibrator
            # returns 1 here too (implicit batch, where this mattered, left in TensorRT 10)
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch_images = next(self.batches, None)
            if batch_images is None:
                return None
            cuda.htod(self.device, np.ascontiguousarray(batch_images, dtype=np.float32))
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            # (checked before the build: absent, or the toolkit's own; raising inside a
            # TensorRT callback would not reach the user as one line)
            with atomic_path(cache_path) as tmp:
                tmp.write_bytes(bytes(cache))
            record_written(cache_path)

        def release(self) -> None:
            if self.device is not None:
                cuda.free(self.device)
                self.device = None

    return EntropyCalibrator()
