"""``cli.py bench``: latency and accuracy of every engine through the one runner interface.

A bench run takes model files (checkpoints, .onnx, OpenVINO .xml, TensorRT .engine), folders
(every artifact in them) and runner objects, and can first build the formats of the format table
from each checkpoint (``build=``), Ultralytics style. Each becomes one row with a status:

- ``ok``: latency (warm-up, then at least ``iters`` runs and ``min_time`` seconds, per batch
  size of the sweep) and accuracy on a test set with the Eigen protocol of ``evaluate``;
- ``not available``: the backend or hardware is missing here (the reason names the extra);
- ``export failed`` / ``failed``: building, loading or running it raised (the first line of
  the error is kept); the other rows go on.

Ratios are computed within the run: speed-up against the PyTorch eager FP32 row and the δ1
drop against the FP32 model of the same backbone, input size and decoder width.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.latency import WARMUP_MS, measure_gpu_compute, measure_latency
from bench.machine import environment
from bench.power import power_sampler, power_sensor
from bench.recommend import add_ratios, recommend
from densedepth.data.readers import open_dataset
from densedepth.evaluation import evaluate_dataset, protocol_for
from densedepth.util.errors import BackendUnavailable, DenseDepthError, error_line, missing_reason
from densedepth.util.files import file_sha256
from densedepth.util.progress import progress
from engines.base import Runner, as_runner, load_runner
from export.formats import DEPLOY_FORMATS, format_for_suffix

Log = Callable[[str], None]

ARTIFACT_SUFFIXES = (".pt", ".pth", ".onnx", ".xml", ".engine")
TRT_QDQ_SUFFIX = "_trt.onnx"  # TensorRT's Q/DQ inputs (*_int8_trt, *_int8_fp16_trt.onnx)


@dataclass
class BenchOptions:
    """What a bench run measures and how."""

    iters: int = 20
    min_time: float = 2.0
    warmup: int = 3
    warmup_ms: float = WARMUP_MS  # and at least this long (trtexec's --warmUp default)
    cuda_graph: bool = False  # TensorRT rows' GPU compute timed as CUDA graph launches
    trtexec: bool = False  # and NVIDIA's trtexec on the same engine, beside ours
    batches: tuple[int, ...] = (1,)
    threads: int = 0  # CPU threads of ONNX Runtime, OpenVINO and torch (0 = their default)
    device: str = "auto"
    data: str | None = "synthetic"  # None: latency only
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    protocol: str = "auto"  # the test data's (evaluate_dataset)
    limit: int = 0
    build: tuple[str, ...] = ()  # format keys built from each checkpoint first
    input_sizes: tuple[tuple[int, int], ...] = ()  # sizes built formats and .pt files run at
    calib: str | None = None  # calibration data for INT8 builds (default: the training data)
    calib_images: int = 500  # the usual INT8 calibration set (the demo uses 300, for time)
    calib_kwargs: dict[str, Any] = field(default_factory=dict)
    max_drop: float = 0.01  # the recommendation's largest delta1 loss against FP32
    max_power: float | None = None  # and its largest mean power in watts (None: no budget)
    energy: bool = True  # sample power during the timed runs where a sensor exists
    peak: bool = False  # measure this machine's GEMM peaks first (bench.peak) and compare rows
    method: str = "minmax"


@dataclass
class Candidate:
    """One row to measure: a model file or runner, or a build that did not happen."""

    label: str
    path: Path | None = None
    runner: Any = None
    fmt: str = ""
    input_size: tuple[int, int] | None = None  # the size it was built at / a .pt runs at
    status: str = "ok"
    reason: str = ""
    group: int = 0  # which argument (or checkpoint) it came from


def format_of(path: Path, precision: str = "") -> str:
    """Format-table key of a model file, e.g. ``onnx-int8`` (precision when known)."""
    fmt = format_for_suffix(path.suffix)
    target = fmt.target if fmt is not None else "torch"
    return f"{target}-{precision}" if precision else target


def discover_artifacts(path: Path) -> list[Path]:
    """``path`` itself when a file; for a folder every artifact in it, recursively.

    A training run's ``best.pt`` stands for it (``last.pt`` only where there is no best);
    hidden files and TensorRT's Q/DQ inputs (``*_trt.onnx``) are left out.
    """
    if path.is_file() or not path.exists():
        return [path]
    found = []
    for p in sorted(path.rglob("*")):
        if not p.is_file() or p.suffix not in ARTIFACT_SUFFIXES:
            continue
        if any(part.startswith(".") for part in p.relative_to(path).parts):
            continue
        if p.name.endswith(TRT_QDQ_SUFFIX):
            continue
        if p.name == "last.pt" and (p.parent / "best.pt").is_file():
            continue
        found.append(p)
    return found


def candidates_from(models: Sequence[Any], opts: BenchOptions, out: Path, log: Log) -> list:
    """Expand folders into files, runners into themselves, and build ``opts.build`` formats
    from each checkpoint (at each of ``opts.input_sizes``) and each float ONNX from ``export``
    (at its size) into ``out/artifacts``."""
    result: list[Candidate] = []
    seen: set[Path] = set()
    for model in models:
        group = len(result)
        if not isinstance(model, (str, os.PathLike)):
            runner = as_runner(model)
            result.append(Candidate(runner.name, runner=runner, group=group))
            continue
        for path in discover_artifacts(Path(model)):
            key = path.resolve()
            if key in seen:
                continue
            seen.add(key)
            checkpoint = path.suffix in (".pt", ".pth")
            if opts.build and is_float_onnx(path):  # formats built from it, at its size
                built = build_candidates(path, opts, out / "artifacts", log)
                result += [replace(c, group=len(result)) for c in built]
                continue
            if not checkpoint:  # a file of fixed size runs at its own
                result.append(Candidate(str(path), path, group=group))
                continue
            for size in opts.input_sizes or (None,):
                if opts.build:
                    built = build_candidates(path, opts, out / "artifacts", log, size)
                    result += [replace(c, group=len(result)) for c in built]
                else:
                    result.append(Candidate(str(path), path, input_size=size, group=group))
    return result


def table_order(candidates: Sequence[Candidate], rows: list[dict[str, Any]]) -> list[dict]:
    """Rows by backbone, then input size (both in order of first appearance), then in
    format-table order; a row that never learned its backbone or size goes with the rows of
    the argument or checkpoint it came from."""
    pairs = list(zip(candidates, rows, strict=True))
    backbone = _by_group(pairs, lambda c, r: r.get("backbone") or "")
    size = _by_group(pairs, lambda c, r: tuple(r.get("input_size") or c.input_size or ()))
    backbone_rank = {b: i for i, b in reversed(list(enumerate(backbone)))}  # first appearance
    size_rank = {s: i for i, s in reversed(list(enumerate(size)))}
    formats = {f.key: i for i, f in enumerate(DEPLOY_FORMATS)}

    def key(i: int) -> tuple[int, int, int, int]:
        fmt = formats.get(rows[i].get("format", ""), len(formats))
        return backbone_rank[backbone[i]], size_rank[size[i]], fmt, i

    return [rows[i] for i in sorted(range(len(rows)), key=key)]


def _by_group(pairs: list[tuple[Candidate, dict]], value: Callable[[Candidate, dict], Any]) -> list:
    """``value`` of each row, or where it has none the first one of its group's rows."""
    first: dict[int, Any] = {}
    for c, r in pairs:
        if value(c, r):
            first.setdefault(c.group, value(c, r))
    return [value(c, r) or first.get(c.group, value(c, r)) for c, r in pairs]


def is_float_onnx(path: Path) -> bool:
    """Whether ``path`` is the float ONNX ``export`` writes (what formats are built from)."""
    if path.suffix != ".onnx" or not path.is_file():
        return False
    from densedepth.util.onnx_io import read_metadata

    try:
        return read_metadata(path).get("precision") == "fp32"
    except DenseDepthError:
        return False


def onnx_batch_is_dynamic(path: Path) -> bool:
    """Whether an ONNX file's input batch is symbolic (``export --dynamic-batch``)."""
    import onnx

    dim = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type
    first = dim.shape.dim[0] if dim.shape.dim else None
    return first is not None and not first.HasField("dim_value")


def build_candidates(
    checkpoint: Path,
    opts: BenchOptions,
    root: Path,
    log: Log,
    size: tuple[int, int] | None = None,
) -> list:
    """The rows of ``opts.build`` for one checkpoint at input ``size`` (None: its training
    size), or for a float ONNX: export, then every format built from the float ONNX
    (``export.build.BuildJob``); a format that cannot be built here becomes a row saying why
    (torch rows need the checkpoint)."""
    from export.build import BuildJob, BuildOptions

    folder = root / f"{checkpoint.parent.name}_{checkpoint.stem}"
    if size is not None:
        folder = folder.with_name(f"{folder.name}_{size[0]}x{size[1]}")
    # the engines take the batches the row measures: a dynamic-batch export, TensorRT's
    # profile up to the largest batch, tuned for the smallest (a fixed-batch ONNX given as
    # the source stays as it is: its rows split a batch into calls, and say so)
    sweep = checkpoint.suffix != ".onnx" or onnx_batch_is_dynamic(checkpoint)
    bopts = BuildOptions(
        method=opts.method,
        calib_source=opts.calib,
        calib_images=opts.calib_images,
        calib_kwargs=opts.calib_kwargs,
        max_batch=max(opts.batches) if sweep else 1,
        opt_batch=min(opts.batches) if sweep else 1,
    )
    job = BuildJob(checkpoint, folder, bopts, log, size=size)
    rows = []
    for fmt in (f for f in DEPLOY_FORMATS if f.key in opts.build):
        if fmt.builder is None and checkpoint.suffix == ".onnx":
            continue  # torch rows run checkpoints, not ONNX: no row, available or not
        label = f"{checkpoint.parent.name}/{checkpoint.name} -> {fmt.key}"
        reason = fmt.unavailable_reason()
        if reason:
            rows.append(Candidate(label, fmt=fmt.key, input_size=size, status="not available",
                                  reason=reason))  # fmt: skip
            continue
        if fmt.builder is None:  # torch rows: the checkpoint itself, run as the row says
            rows.append(Candidate(str(checkpoint), checkpoint, fmt=fmt.key, input_size=size))
            continue
        try:
            path = Path(job.build(fmt)["path"])
            rows.append(Candidate(str(path), path, fmt=fmt.key, input_size=size))
        except Exception as exc:  # a failed build is a row, never the end of the run
            rows.append(Candidate(label, fmt=fmt.key, input_size=size, status="export failed",
                                  reason=error_line(exc)))  # fmt: skip
    return rows


def open_candidate(c: Candidate, opts: BenchOptions) -> Runner:
    """The runner of a candidate: a given runner as is (a bare callable gets the protocol's
    defaults), a file through ``load_runner`` with its row's format (torch-bf16,
    torch.compile-fp32: the row's runner options) and input size (checkpoints run at it)."""
    if c.runner is not None:
        return as_runner(c.runner)
    assert c.path is not None
    return load_runner(c.path, device=opts.device, threads=opts.threads,
                       format=c.fmt or None, input_size=c.input_size)  # fmt: skip


def describe(runner: Runner) -> dict[str, Any]:
    """What identifies a runner in a row: engine, backbone, precision, device, threads, shape."""
    info = runner.info
    row = {
        "engine": runner.name.split(":")[0],
        "backbone": info.backbone,
        "decoder_width": info.decoder_width,
        "precision": runner.precision,
        "device": runner.device,
        "accelerator": accelerator(runner),
        "providers": list(runner.providers),
        "threads": runner.threads,
        "input_size": [int(s) for s in runner.input_shape[2:]],
    }
    if runner.compile_seconds:
        row["compile_s"] = runner.compile_seconds
    return row


def accelerator(runner: Runner) -> str:
    """What runs a row: ``cpu``, ``gpu`` or a Jetson's ``dla:N`` (the engine's DLA core)."""
    dla = getattr(runner, "dla_core", None)
    if dla is not None:
        return f"dla:{dla}"
    return "gpu" if str(runner.device).startswith("cuda") else "cpu"


def trtexec_fields(runner: Any, batch: int, opts: BenchOptions) -> dict[str, Any]:
    """trtexec's GPU compute summary on the row's engine at ``batch`` (the launch batch),
    with the command it ran; ``trtexec`` says why there is none when it fails (our own
    figures stand)."""
    from bench.trtexec import find_trtexec, run_trtexec, trtexec_command

    shape = (batch, *runner.input_shape[1:]) if runner.dynamic else None
    cmd = trtexec_command(runner.path, runner.input_name, shape, opts.warmup_ms,
                          opts.min_time, opts.iters, opts.cuda_graph, runner.dla_core,
                          bool(runner.sidecar.get("version_compatible")),
                          find_trtexec())  # fmt: skip
    try:
        return run_trtexec(cmd)
    except DenseDepthError as exc:
        return {"trtexec": f"failed: {error_line(exc)}", "trtexec_command": " ".join(cmd)}


def measured_sha256(path: Path) -> dict[str, str]:
    """File name -> SHA-256 of every file a row measured: the model file, and an OpenVINO
    IR's .bin beside its .xml."""
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return {p.name: file_sha256(p) for p in files if p.is_file()}


def measure_row(
    c: Candidate, opts: BenchOptions, dataset: Any, log: Log = lambda s: None
) -> dict[str, Any]:
    """One row: open the runner, time each batch size, evaluate; failures mark the row."""
    row: dict[str, Any] = {"model": c.label, "path": str(c.path or ""), "format": c.fmt}
    row.update(status=c.status, reason=c.reason)
    if c.status != "ok":
        if c.input_size is not None:
            row["input_size"] = list(c.input_size)
        return row
    stage, runner = "load", None
    try:
        runner = open_candidate(c, opts)
        row.update(describe(runner))
        if c.path is not None:
            row["sha256"] = measured_sha256(Path(c.path))
        if c.path is not None and not c.fmt:
            row["format"] = format_of(c.path, runner.precision)
        row["throughput"] = []
        for batch in opts.batches:
            stage = f"latency at batch {batch}"
            power = power_sampler(runner.device) if opts.energy else None
            lat = measure_latency(runner, opts.iters, opts.min_time, opts.warmup, batch,
                                  power=power, warmup_ms=opts.warmup_ms)  # fmt: skip
            stage = f"GPU compute time at batch {batch}"
            lat.update(measure_gpu_compute(runner, batch, opts.iters, opts.min_time,
                                           opts.warmup_ms, opts.cuda_graph))  # fmt: skip
            if opts.trtexec and "gpu_timing" in lat:
                lat.update(trtexec_fields(runner, lat["launch_batch"], opts))
            row["throughput"].append(lat)
        row.update(row["throughput"][0])
        if dataset is not None:
            stage = "accuracy"
            size = tuple(runner.input_shape[2:])
            row.update(evaluate_dataset(runner, dataset, size, opts.protocol, opts.limit))
        log(row_line(row))
    except BackendUnavailable as exc:
        row.update(status="not available", reason=error_line(exc))
    except Exception as exc:  # one broken runner never stops the others
        row.update(status="failed", reason=f"{stage}: {error_line(exc)}")
    finally:
        if runner is not None and c.runner is None:  # ours: its memory goes before the next row
            runner.close()
    return row


def row_line(row: dict[str, Any]) -> str:
    """A one-line summary of a measured row for the log."""
    acc = f", δ1 {row['delta1']:.4f}" if "delta1" in row else ""
    return f"{row['model']}: p50 {row['p50_ms']:.2f} ms ({row['fps']:.1f} img/s){acc}"


def run_bench(
    models: Sequence[Any],
    out: str | os.PathLike[str],
    opts: BenchOptions | None = None,
    log: Log = lambda s: None,
) -> dict[str, Any]:
    """Bench every model (files, folders, runners); write bench.json, bench.csv, bench.md and
    pareto.png into ``out``; returns the result (environment, options, rows)."""
    from bench.peak import add_peak_shares, measure_peaks
    from bench.report import label_rows, write_bench_report

    opts = opts or BenchOptions()
    out = Path(out)
    if not models:
        raise DenseDepthError("bench needs at least one model file, folder or runner")
    missing = [str(m) for m in models if isinstance(m, (str, os.PathLike)) and not Path(m).exists()]
    if missing:
        raise DenseDepthError(
            f"model {missing[0]} {missing_reason(missing[0])}; pass model files or folders"
        )
    check_bench_tools(opts)
    t0 = time.perf_counter()
    peaks = measure_peaks(threads=opts.threads, log=log) if opts.peak else None
    dataset = None
    if opts.data is not None:
        dataset = open_dataset(opts.data, "test", **opts.data_kwargs)
        opts = replace(opts, protocol=protocol_for(dataset, opts.protocol))
    candidates = candidates_from(models, opts, out, log)
    if not candidates:
        raise DenseDepthError(f"no model files found in {', '.join(map(str, models))}")
    measured = []
    with progress("bench rows", len(candidates), "rows") as advance:
        for candidate in candidates:
            measured.append(measure_row(candidate, opts, dataset, log))
            advance(1)
    rows = table_order(candidates, measured)
    label_rows(rows)
    add_ratios(rows)
    if peaks is not None:
        add_peak_shares(rows, peaks)
    result = {
        "environment": {**environment(opts.threads), "power": power_sensor(), "peaks": peaks},
        "options": asdict(opts),
        "data": getattr(dataset, "name", opts.data) if dataset is not None else None,
        "rows": rows,
        "recommended": recommend(rows, opts.max_drop, opts.max_power),
        "seconds": time.perf_counter() - t0,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    result["files"] = [str(p) for p in write_bench_report(result, out)]
    return result


def check_bench_tools(opts: BenchOptions) -> None:
    """The tools a run asks for are here (trtexec for ``trtexec``), before anything is
    measured or written; one line naming what is missing."""
    if opts.trtexec:
        from bench.trtexec import find_trtexec

        find_trtexec()


def failed_rows_warning(rows: Sequence[dict[str, Any]]) -> str | None:
    """``"N of M bench rows failed"`` when some did, None when none did; an error when no
    row succeeded (the reasons are in the table)."""
    failed = sum(r["status"] != "ok" for r in rows)
    if failed == len(rows):
        raise DenseDepthError(f"no bench row succeeded ({failed} failed; reasons above)")
    return f"{failed} of {len(rows)} bench rows failed" if failed else None
