"""One build function per format of the table, each returning its artifact's record.

Every build starts from the float ONNX the ``export`` step writes (``model_fp32.onnx``); INT8
builds share one calibration set and one range cache. ``build(fmt, ...)`` calls the row's
``builder`` in the format table (``export.formats.DEPLOY_FORMATS``: one
``build_<target>_<precision>`` function per row), so the CLI and bench loop over the table
without asking which target they hold.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from calib.calibration import CalibrationSet, load_calibration_set
from densedepth.util.errors import ExportError
from densedepth.util.onnx_io import read_metadata, read_sidecar
from densedepth.util.optional import optional_torch
from export.artifact import saved_line
from export.formats import Format, get_format, module_found, require
from export.fp16 import convert_fp16
from export.int8_budget import AccuracyBudget, HeldOut
from export.quantize import DEFAULT_KEEP_FLOAT, quantize_int8


@dataclass
class BuildOptions:
    """Options shared by the builders (each uses what applies to it)."""

    stem: str = "model"
    calib: CalibrationSet | None = None
    method: str = "minmax"
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT
    workspace_gb: float = 2.0
    timing_cache: str | None = None
    max_batch: int = 1
    opt_batch: int = 1  # TensorRT profile's opt batch (kernels are tuned for it)
    opt_level: int | None = None  # TensorRT builder optimisation level 0..5 (None: its 3)
    hardware_compat: str = "none"  # TensorRT: none | ampere_plus | same_compute_capability
    version_compatible: bool = False  # TensorRT: runs on later versions of the same major
    build_log: str | None = None  # TensorRT's verbose build log, to this file
    dla_core: int | None = None  # TensorRT on a Jetson: build for this DLA core
    gpu_fallback: bool = False  # and let the layers DLA cannot run fall back to the GPU
    legacy_calibrator: bool = False  # TensorRT < 11: IInt8EntropyCalibrator2 on the fp32 ONNX
    int8_float: str = "fp16"  # TensorRT INT8: precision of the layers left in float
    producer: str = "auto"  # TensorRT Q/DQ writer: auto | modelopt | onnxruntime
    trt_version: tuple[int, int] | None = None  # plan for this TensorRT (default: installed)
    onnx_only: bool = False  # TensorRT: write the ONNX the build parses, do not build
    calib_source: str | None = None  # INT8 calibration data (None: the model's training data)
    calib_images: int = 500
    calib_kwargs: dict[str, Any] = field(default_factory=dict)
    budget: AccuracyBudget | None = None  # INT8: judged on held-out images (export.int8_budget)
    extra: dict[str, Any] = field(default_factory=dict)


def default_calibration_source(fp32_onnx: Path) -> str:
    """The training data the ONNX records (``export`` writes it into its metadata); for an
    older export, the data its source checkpoint names, read where torch is installed."""
    data = read_metadata(fp32_onnx).get("training_data")
    if data:
        return str(data)
    source = read_sidecar(fp32_onnx).get("source")
    if source and Path(source).is_file() and optional_torch() is not None:
        from densedepth.checkpoint import load_checkpoint

        data = load_checkpoint(source)["config"].get("data")
        if data:
            return str(data)
    raise ExportError(
        f"no --calib given and the training data of {fp32_onnx} is unknown; pass "
        f"--calib DATASET|IMAGE_FOLDER|synthetic"
    )


def calibration_for(
    fp32_onnx: Path,
    source: str | None,
    n: int,
    log: Callable[[str], None],
    warn: Callable[[str], None] | None = None,
    **dataset_kwargs: Any,
) -> CalibrationSet:
    """The calibration set of an INT8 build of ``fp32_onnx``: ``n`` images of ``source`` (else
    the model's training data) at its input size. Calibration warnings go to ``warn`` (default
    ``log``) as ``warning: ...``, then one summary line to ``log``."""
    size = tuple(read_metadata(fp32_onnx)["input_size"])
    data = source or default_calibration_source(fp32_onnx)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calib = load_calibration_set(data, size, n, **dataset_kwargs)
    for w in caught:
        (warn or log)(f"warning: {w.message}")
    skipped = f", {len(calib.skipped)} unreadable skipped" if calib.skipped else ""
    log(f"calibration: {len(calib)} images from {data}{skipped}")
    return calib


def keep_float_from(
    names: Sequence[str] | None, sidecar_of: str | os.PathLike[str] | None
) -> tuple[str, ...]:
    """The layers an INT8 build leaves in float: ``names``, else the list an earlier INT8
    build recorded in its sidecar (``--keep-float-from``: a reproducible rebuild), else the
    default. One line when both are given or the sidecar records none."""
    if sidecar_of is None:
        return tuple(names) if names else DEFAULT_KEEP_FLOAT
    if names:
        raise ExportError("--keep-float and --keep-float-from: give one of them")
    path = Path(sidecar_of)
    if path.suffix != ".json":
        path = path.with_name(path.name + ".json")
    recorded = read_sidecar(path.with_suffix("")) if path.is_file() else None
    fallback = ((recorded or {}).get("int8_budget") or {}).get("fallback")
    if isinstance(fallback, dict):  # (an engine's sidecar: what the fallback kept)
        return tuple(fallback["keep_float"])
    if not recorded or not isinstance(recorded.get("keep_float"), list):
        raise ExportError(
            f"{path} is not the sidecar of an INT8 build (no keep_float list); pass the "
            f"model_int8*.onnx.json an earlier build-engine --int8 wrote"
        )
    return tuple(recorded["keep_float"])


def _need_calib(opts: BuildOptions, what: str) -> CalibrationSet:
    if opts.calib is None:
        raise ExportError(f"{what} needs calibration images: pass --calib PATH|synthetic")
    return opts.calib


def build_onnx_fp32(fp32: Path, out: Path, opts: BuildOptions) -> dict[str, Any]:
    """The float ONNX itself (made by ``export``): its record."""
    record = read_sidecar(fp32)
    return {**record, "path": str(fp32)}


def build_onnx_fp16(fp32: Path, out: Path, opts: BuildOptions) -> dict[str, Any]:
    """FP16 ONNX with float32 input/output."""
    return convert_fp16(fp32, out)


def build_onnx_int8(fp32: Path, out: Path, opts: BuildOptions) -> dict[str, Any]:
    """Q/DQ ONNX for ONNX Runtime on CPU: u8 activations, s8 per-channel weights."""
    calib = _need_calib(opts, "INT8")
    return quantize_int8(fp32, calib, out, "cpu", opts.method, opts.keep_float)


def tensorrt_qdq_name(stem: str, float_precision: str) -> str:
    """File name of the TensorRT Q/DQ ONNX (its float layers in ``float_precision``)."""
    return f"{stem}_int8_trt.onnx" if float_precision == "fp32" else f"{stem}_int8_fp16_trt.onnx"


def build_tensorrt_qdq(
    fp32: Path,
    out_dir: Path,
    opts: BuildOptions,
    float_precision: str = "fp32",
    max_opset: int | None = None,
) -> dict[str, Any]:
    """Q/DQ ONNX for TensorRT: int8 symmetric, only where TensorRT fuses it."""
    calib = _need_calib(opts, "INT8")
    out = out_dir / tensorrt_qdq_name(opts.stem, float_precision)
    return quantize_int8(fp32, calib, out, "tensorrt", opts.method, opts.keep_float,
                         producer=opts.producer, float_precision=float_precision,
                         max_opset=max_opset)  # fmt: skip


def tensorrt_version_here(opts: BuildOptions) -> tuple[int, int] | None:
    """The TensorRT to plan for: ``opts.trt_version``, else the installed one; None with
    ``onnx_only`` and no TensorRT (plan for the newest: strongly typed)."""
    from export.tensorrt import import_tensorrt
    from export.tensorrt_versions import parse_version

    if opts.trt_version is not None:
        return opts.trt_version
    if opts.onnx_only and not all(map(module_found, get_format("tensorrt", "fp16").modules)):
        return None
    return parse_version(import_tensorrt().__version__)


def build_tensorrt_fp16(fp32: Path, out: Path, opts: BuildOptions) -> dict[str, Any]:
    """A TensorRT FP16 engine (see ``build_tensorrt``)."""
    return build_tensorrt("fp16", fp32, out, opts)


def build_tensorrt_int8(fp32: Path, out: Path, opts: BuildOptions) -> dict[str, Any]:
    """A TensorRT INT8 engine (see ``build_tensorrt``)."""
    return build_tensorrt("int8", fp32, out, opts)


def build_tensorrt(precision: str, fp32: Path, out: Path, opts: BuildOptions) -> dict[str, Any]:
    """A TensorRT engine at ``precision`` written to ``out``: makes and checks the ONNX its
    version parses (beside ``out``), then builds the engine (or, with ``onnx_only``, stops
    there: no TensorRT or GPU needed)."""
    from export.tensorrt import (
        BuilderKnobs,
        build_engine,
        build_plan,
        check_dla_options,
        check_for_version,
    )
    from export.tensorrt_versions import NEWEST_PLANNED, version_label

    version = tensorrt_version_here(opts)
    planned = version or NEWEST_PLANNED
    plan = build_plan(planned, precision, opts.legacy_calibrator, opts.int8_float)
    knobs = BuilderKnobs(
        opts.opt_level,
        opts.hardware_compat,
        opts.version_compatible,
        opts.build_log,
        dla_core=opts.dla_core,
        gpu_fallback=opts.gpu_fallback,
    )
    check_dla_options(knobs, precision, plan.calibrator)  # before anything is written
    if opts.onnx_only and plan.calibrator:
        raise ExportError("--legacy-calibrator builds from the fp32 ONNX itself: no --onnx-only")
    if plan.onnx_kind == "fp32":
        source = {"path": str(fp32)}
    elif plan.onnx_kind == "fp16":
        source = convert_fp16(
            fp32, out.parent / get_format("onnx", "fp16").artifact_name(opts.stem)
        )
    else:
        float_precision = plan.onnx_kind.removeprefix("int8-qdq-")
        source = build_tensorrt_qdq(fp32, out.parent, opts, float_precision, plan.max_opset)
    if opts.onnx_only:  # (build_engine checks it too, before parsing)
        check_for_version(Path(source["path"]), version)
        return {**source, "tensorrt_plan": asdict(plan),
                "planned_for": version_label(version), "onnx_only": True}  # fmt: skip
    calib = _need_calib(opts, "INT8") if plan.calibrator else None
    return build_engine(
        source["path"],
        out,
        precision,
        workspace_gb=opts.workspace_gb,
        timing_cache=opts.timing_cache,
        max_batch=opts.max_batch,
        opt_batch=opts.opt_batch,
        calib=calib,
        int8_float=opts.int8_float,
        knobs=knobs,
    )


def build_openvino_fp32(fp32: Path, out: Path, opts: BuildOptions) -> dict[str, Any]:
    """OpenVINO IR in FP32."""
    return build_openvino("fp32", fp32, out, opts)


def build_openvino_bf16(fp32: Path, out: Path, opts: BuildOptions) -> dict[str, Any]:
    """OpenVINO IR that runs in BF16 where the CPU has it."""
    return build_openvino("bf16", fp32, out, opts)


def build_openvino_int8(fp32: Path, out: Path, opts: BuildOptions) -> dict[str, Any]:
    """OpenVINO IR quantized to INT8 by NNCF on the calibration set."""
    return build_openvino("int8", fp32, out, opts)


def build_openvino(precision: str, fp32: Path, out: Path, opts: BuildOptions) -> dict[str, Any]:
    """OpenVINO IR at ``precision`` (fp32, bf16, or int8 through NNCF)."""
    from export.openvino import export_openvino

    calib = _need_calib(opts, "INT8") if precision == "int8" else None
    return export_openvino(fp32, out, precision, calib, opts.keep_float)


def build(
    fmt: Format,
    fp32_onnx: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    opts: BuildOptions,
) -> dict[str, Any]:
    """Build ``fmt`` from the float ONNX into ``out_dir`` as the file its row names
    (``Format.artifact_name(opts.stem)``); fails with one line when the format's backend is
    missing here."""
    builder = fmt.build_function()
    if opts.onnx_only and fmt.target != "tensorrt":
        raise ExportError("--onnx-only is for --target tensorrt (the ONNX its build parses)")
    if not opts.onnx_only:
        require(fmt)
    return builder(Path(fp32_onnx), Path(out_dir) / fmt.artifact_name(opts.stem), opts)


Log = Callable[[str], None]


class BuildJob:
    """Formats built from one source into one folder: a checkpoint (.pt, exported to
    ``out_dir/model_fp32.onnx`` at ``size`` first) or the fp32 ONNX from ``export``. The
    export and the calibration set are made once, when a build first needs them; every
    artifact is announced by its ``saved PATH (MB, s)`` line on ``log``."""

    def __init__(
        self,
        source: str | os.PathLike[str],
        out_dir: str | os.PathLike[str],
        opts: BuildOptions,
        log: Log = print,
        warn: Log | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.source, self.out_dir, self.opts = Path(source), Path(out_dir), opts
        self.log, self.warn, self.size = log, warn, size
        self._made: dict[str, Any] = {} if opts.calib is None else {"calib": opts.calib}
        self._fp32_scores: dict[str, Any] = {}  # every budget judges against one fp32 run

    def _once(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` the first time; later calls return its value or raise its error again."""
        if key not in self._made:
            try:
                self._made[key] = make()
            except Exception as exc:
                self._made[key] = exc
        if isinstance(self._made[key], Exception):
            raise self._made[key]
        return self._made[key]

    def fp32(self) -> Path:
        """The fp32 ONNX every format is built from (exported now from a checkpoint)."""
        return self._once("fp32", self._make_fp32)[0]

    def metadata(self) -> dict[str, Any]:
        """The fp32 ONNX's metadata (read once, with the check that it is the fp32 export)."""
        return self._once("fp32", self._make_fp32)[1]

    def _make_fp32(self) -> tuple[Path, dict[str, Any]]:
        source = self.source
        if source.suffix in (".pt", ".pth"):
            from export.onnx_export import export_onnx

            dynamic = self.opts.max_batch > 1  # an engine batch the fixed-size export cannot take
            record = export_onnx(source, self.out_dir / "model_fp32.onnx", self.size,
                                 dynamic_batch=dynamic)  # fmt: skip
            self.log(saved_line(record))
            source = Path(record["path"])
        meta = read_metadata(source)
        if meta.get("precision") != "fp32":
            raise ExportError(f"{source} is not the fp32 ONNX from `cli.py export`")
        return source, meta

    def held_out(self) -> HeldOut:
        """The images INT8 builds are judged on (``export.int8_budget.held_out_set``)."""
        from export.int8_budget import held_out_set

        budget = self.opts.budget or AccuracyBudget()
        return self._once("held_out", lambda: held_out_set(
            self.fp32(), budget, **self.opts.calib_kwargs
        ))  # fmt: skip

    def calibration(self) -> CalibrationSet:
        """The INT8 calibration set (``opts.calib_source``, else the model's training data),
        without the held-out images when it is drawn from the same data."""
        o = self.opts
        source = o.calib_source or default_calibration_source(self.fp32())
        exclude = ()
        if o.budget is not None and str(source) == self.held_out().source:
            if not self.held_out().exclude:  # --val-data: all of it is held out
                raise ExportError(
                    f"--calib and --val-data are both {source}: the budget would judge INT8 on "
                    f"its calibration images; give another --val-data (or leave it out: the "
                    f"training data's validation split is held out of calibration)"
                )
            exclude = tuple(self.held_out().exclude)
        return self._once("calib", lambda: calibration_for(
            self.fp32(), source, o.calib_images, self.log, self.warn, exclude=exclude,
            **o.calib_kwargs
        ))  # fmt: skip

    def build(self, fmt: Format) -> dict[str, Any]:
        """Build ``fmt``; its record (the fp32 ONNX's own for ``onnx-fp32``). An INT8 build
        with a budget is then judged (``export.int8_budget``): its line logged, a miss raised."""
        from export.int8_budget import budget_line, enforce_budget, measure_budget

        fp32 = self.fp32()
        stem = fp32.stem.removesuffix("_fp32")
        calib = self.calibration() if fmt.precision == "int8" else None
        if calib is not None and self.opts.budget is not None:
            self.held_out()  # (a missing held-out set is one line before the build)
        record = build(fmt, fp32, self.out_dir, replace(self.opts, stem=stem, calib=calib))
        if fmt.builder != "export.build:build_onnx_fp32" or fp32 == self.source:
            self.log(saved_line(record))  # (an fp32 ONNX exported here was announced then)
        if calib is not None and self.opts.budget is not None:
            result = measure_budget(fp32, record, self.held_out(), self.opts.budget,
                                    self._fp32_scores)  # fmt: skip
            if result["verdict"] == "missed" and self.opts.budget.fallback:
                record, result = self._fall_back(fmt, record, result, calib)
            if result["verdict"] != "missed":  # (a miss is the error's line)
                self.log(budget_line(result))
            record = enforce_budget(record, result)
        return record

    def _fall_back(
        self, fmt: Format, record: dict[str, Any], missed: dict[str, Any], calib: CalibrationSet
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A missed INT8 budget: find the groups to leave in float (``export.fallback``),
        rebuild ``fmt`` with them and judge it again; unchanged for TensorRT's implicit
        calibrator (no file to rewrite)."""
        from densedepth.util.outputs import replacing
        from export.fallback import fallback_settings, find_fallback
        from export.int8_budget import budget_line, measure_budget

        settings = fallback_settings(record)
        if settings is None:
            return record, {**missed, "fallback": "not offered for this format"}
        self.log(f"{budget_line(missed)}; searching for the groups to leave in float")
        found = find_fallback(self.fp32(), calib, self.held_out(), self.opts.budget, settings,
                              self.out_dir, self.log, self._fp32_scores)  # fmt: skip
        stem = self.fp32().stem.removesuffix("_fp32")
        again = replace(self.opts, stem=stem, calib=calib, keep_float=tuple(found["keep_float"]))
        with replacing(True):  # the file this run just wrote, replaced by its fallback
            record = build(fmt, self.fp32(), self.out_dir, again)
        self.log(saved_line(record))
        result = measure_budget(self.fp32(), record, self.held_out(), self.opts.budget,
                                self._fp32_scores)  # fmt: skip
        summary = {k: found[k] for k in ("count", "of", "keep_float", "tries")}
        return record, {**result, "fallback": summary, "full_int8": {
            k: missed[k] for k in ("int8", "delta1_drop", "rel_rise")}}  # fmt: skip


def build_from(
    source: str | os.PathLike[str],
    fmt: Format,
    out_dir: str | os.PathLike[str],
    opts: BuildOptions,
    log: Log = print,
    warn: Log | None = None,
) -> dict[str, Any]:
    """Build ``fmt`` from a checkpoint or the fp32 ONNX into ``out_dir`` (``BuildJob``)."""
    return BuildJob(source, out_dir, opts, log, warn).build(fmt)


def build_summary(
    fmt: Format, record: dict[str, Any], source: Path, opts: BuildOptions
) -> list[str]:
    """What a build says after its saved line: the calibration cache, the difference from
    fp32, and for an ``onnx_only`` TensorRT build the command to run on the GPU machine."""
    lines = []
    if record.get("calibration_cache"):
        state = "reused" if record.get("calibration_reused") else "saved"
        lines.append(f"calibration ranges {state}: {record['calibration_cache']}")
    if "fp32_max_abs_m" in record:
        where = record.get("fp32_diff_input", "the parity input")
        lines.append(f"max |{fmt.key} - fp32| on {where}: {record['fp32_max_abs_m']:.3g} m")
    if record.get("dla_core") is not None:
        fallback = record.get("dla_gpu_fallback_layers", 0)
        on_gpu = f"{fallback} layer(s) fall back to the GPU" if fallback else "all layers on DLA"
        lines.append(f"DLA core {record['dla_core']}: {on_gpu}")
    if record.get("onnx_only"):
        fp16_floats = opts.int8_float == "fp16"
        flags = {"fp16": "--fp16", "int8": f"--int8{' --fp16' * fp16_floats}"}[fmt.precision]
        lines.append(f"checked for {record['planned_for']}: 0 violations")
        dla = f" --dla-core {opts.dla_core}" if opts.dla_core is not None else ""
        dla += " --gpu-fallback" if opts.gpu_fallback else ""
        lines.append(f"on the GPU machine: cli.py build-engine {source} --target tensorrt "
                     f"{flags}{dla} --calib ...")  # fmt: skip
    return lines
