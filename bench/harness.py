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

import importlib.metadata
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.latency import measure_latency
from densedepth.cpu import cpu_capabilities, cpu_model, usable_cores
from densedepth.datasets import open_dataset
from densedepth.errors import DenseDepthError, error_line, missing_reason
from densedepth.evaluation import evaluate_dataset, protocol_for
from densedepth.files import file_sha256
from densedepth.optional import optional_torch
from densedepth.progress import progress
from engines.base import load_runner
from export.formats import DEPLOY_FORMATS, BackendUnavailable, format_by_key, format_for_suffix

Log = Callable[[str], None]

ARTIFACT_SUFFIXES = (".pt", ".pth", ".onnx", ".xml", ".engine")
TRT_QDQ_SUFFIX = "_trt.onnx"  # TensorRT's Q/DQ inputs (*_int8_trt, *_int8_fp16_trt.onnx)
VERSIONED_PACKAGES = (
    "torch",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnx",
    "tensorrt",
    "pycuda",
    "openvino",
    "nncf",
    "numpy",
    "opencv-python",
    "opencv-python-headless",
)


@dataclass
class BenchOptions:
    """What a bench run measures and how."""

    iters: int = 20
    min_time: float = 2.0
    warmup: int = 3
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
            result.append(Candidate(getattr(model, "name", "runner"), runner=model, group=group))
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
    from export.onnx_files import read_metadata

    try:
        return read_metadata(path).get("precision") == "fp32"
    except DenseDepthError:
        return False


def once(make: Callable[[], Any]) -> Callable[[], Any]:
    """``make`` called at most once: later calls return its value or raise its error again."""
    memo: list[Any] = []

    def call() -> Any:
        if not memo:
            try:
                memo.append(make())
            except Exception as exc:
                memo.append(exc)
        if isinstance(memo[0], Exception):
            raise memo[0]
        return memo[0]

    return call


def build_candidates(
    checkpoint: Path,
    opts: BenchOptions,
    root: Path,
    log: Log,
    size: tuple[int, int] | None = None,
) -> list:
    """The rows of ``opts.build`` for one checkpoint at input ``size`` (None: its training
    size), or for a float ONNX: export, then every format built from the float ONNX; a format
    that cannot be built here becomes a row saying why (torch rows need the checkpoint)."""
    from export.build import BuildOptions, build, calibration_for
    from export.onnx_export import export_onnx

    folder = root / f"{checkpoint.parent.name}_{checkpoint.stem}"
    if size is not None:
        folder = folder.with_name(f"{folder.name}_{size[0]}x{size[1]}")

    def export() -> Path:
        record = export_onnx(checkpoint, folder / "model_fp32.onnx", size)
        log(f"saved {record['path']} (parity {record['parity_max_abs_m']:.1e} m)")
        return Path(record["path"])

    fp32 = (lambda: checkpoint) if checkpoint.suffix == ".onnx" else once(export)
    calib = once(
        lambda: calibration_for(fp32(), opts.calib, opts.calib_images, log, **opts.calib_kwargs)
    )
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
            path = fp32()
            if fmt.key != "onnx-fp32":
                int8 = fmt.precision == "int8"
                bopts = BuildOptions(calib=calib() if int8 else None, method=opts.method)
                path = Path(build(fmt, path, folder, bopts)["path"])
                log(f"saved {path}")
            rows.append(Candidate(str(path), path, fmt=fmt.key, input_size=size))
        except Exception as exc:  # a failed build is a row, never the end of the run
            rows.append(Candidate(label, fmt=fmt.key, input_size=size, status="export failed",
                                  reason=error_line(exc)))  # fmt: skip
    return rows


def open_candidate(c: Candidate, opts: BenchOptions) -> Any:
    """The runner of a candidate (torch checkpoints at the candidate's input size)."""
    if c.runner is not None:
        return c.runner
    assert c.path is not None
    if c.path.suffix in (".pt", ".pth") and c.path.is_file():
        from engines.torch_runner import TorchRunner

        fmt = format_by_key(c.fmt)  # torch-bf16, torch.compile-fp32: the row's runner options
        options = dict(fmt.runner_options) if fmt is not None else {}
        return TorchRunner(c.path, device=opts.device, input_size=c.input_size, **options)
    return load_runner(c.path, device=opts.device, threads=opts.threads)


def describe(runner: Any) -> dict[str, Any]:
    """What identifies a runner in a row: engine, backbone, precision, device, threads, shape."""
    engine = str(runner.name).split(":")[0]
    return {
        "engine": engine,
        "backbone": getattr(runner, "backbone", "") or "",
        "decoder_width": getattr(runner, "decoder_width", None),
        "precision": runner.precision,
        "device": runner.device,
        "providers": list(getattr(runner, "providers", []) or []),
        "threads": getattr(runner, "threads", None)
        or (torch_threads() if engine == "torch" else 0),
        "input_size": [int(s) for s in runner.input_shape[2:]],
        **({"compile_s": runner.compile_seconds} if getattr(runner, "compile_seconds", 0) else {}),
    }


def model_gflops(backbone: str, decoder_width: float, size: tuple[int, int]) -> float | None:
    """GFLOPs of one forward pass, counted by torch (None without torch or for a foreign
    backbone: the GOP/s column stays empty)."""
    if optional_torch() is None:
        return None
    from densedepth.model import BACKBONES, count_flops

    if backbone not in BACKBONES:
        return None
    return count_flops(backbone, decoder_width, size) / 1e9


def torch_threads() -> int:
    """The intra-op threads PyTorch uses now."""
    import torch

    return torch.get_num_threads()


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
    stage = "load"
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
            lat = measure_latency(runner, opts.iters, opts.min_time, opts.warmup, batch)
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
    return row


def row_line(row: dict[str, Any]) -> str:
    """A one-line summary of a measured row for the log."""
    acc = f", δ1 {row['delta1']:.4f}" if "delta1" in row else ""
    return f"{row['model']}: p50 {row['p50_ms']:.2f} ms ({row['fps']:.1f} img/s){acc}"


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Speed-up against the eager FP32 row, δ1 drop against the FP32 model, and achieved
    GOP/s beside the model's GFLOPs; all among rows of the same backbone, width and size."""
    flops: dict[tuple, float | None] = {}

    def same_model(r: dict[str, Any]) -> tuple:
        return (r.get("backbone"), r.get("decoder_width"), tuple(r.get("input_size", ())))

    ok = [r for r in rows if r["status"] == "ok" and "p50_ms" in r]
    for r in ok:
        key = same_model(r)
        eager = next(
            (e for e in ok if same_model(e) == key and e["engine"] == "torch"
             and e["precision"] == "fp32" and e["device"] == r["device"]),
            None,
        )  # fmt: skip
        fp32 = [
            e for e in ok if same_model(e) == key and e["precision"] == "fp32" and "delta1" in e
        ]
        if eager is not None:
            r["speedup_vs_eager"] = eager["p50_ms"] / r["p50_ms"]
        if fp32 and "delta1" in r:
            ref = next((e for e in fp32 if e["engine"] == "torch"), fp32[0])
            r["delta1_drop"] = ref["delta1"] - r["delta1"]
        if r.get("backbone") and r.get("decoder_width"):
            if key not in flops:
                flops[key] = model_gflops(r["backbone"], r["decoder_width"], key[2])
            if flops[key] is not None:
                r["gflops"] = flops[key]
                r["gops"] = flops[key] * r["batch"] / (r["p50_ms"] / 1e3)


def environment(threads: int) -> dict[str, Any]:
    """CPU model and cores, GPU and driver, Jetson release, and the versions that matter."""
    import onnxruntime as ort

    torch = optional_torch()
    cuda = torch is not None and torch.cuda.is_available()
    gpu = gpu_name()
    env: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_capabilities": cpu_capabilities(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "threads": threads or "default",
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ort_providers": ort.get_available_providers(),
        "gpu": gpu,
        "cuda": torch.version.cuda if cuda else None,
        "driver": nvidia_driver(),
        "jetson": jetson_release(),
    }
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    env["versions"] = versions
    return env


def recommend(rows: list[dict[str, Any]], max_drop: float = 0.01) -> list[dict[str, Any]]:
    """Per backbone, width and input size: the fastest row (p50) whose δ1 is within
    ``max_drop`` of its FP32 model's, with its speed-up against the PyTorch eager FP32 row (or,
    without one, against the slowest FP32 row measured)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("status") == "ok" and "p50_ms" in r and "delta1_drop" in r:
            key = (r.get("backbone"), r.get("decoder_width"), tuple(r.get("input_size", ())))
            groups.setdefault(key, []).append(r)
    picks = []
    for (backbone, _, size), members in groups.items():
        fit = [r for r in members if r["delta1_drop"] <= max_drop]
        if not fit:
            continue
        best = min(fit, key=lambda r: r["p50_ms"])
        base = next((r for r in members if r.get("engine") == "torch"
                     and r.get("precision") == "fp32"), None)  # fmt: skip
        if base is None:
            base = max((r for r in members if r.get("precision") == "fp32"),
                       key=lambda r: r["p50_ms"], default=best)  # fmt: skip
        picks.append({
            "backbone": backbone, "input_size": list(size), "format": best.get("format"),
            "label": f"{best.get('engine')} {best.get('precision')}", "path": best.get("path"),
            "p50_ms": best["p50_ms"], "delta1_drop": best["delta1_drop"],
            "speedup": base["p50_ms"] / best["p50_ms"],
            "against": f"{base.get('engine')} {base.get('precision')}", "max_drop": max_drop,
        })  # fmt: skip
    return picks


def gpu_name() -> str | None:
    """The first CUDA GPU's name as torch sees it (None without torch or a GPU)."""
    torch = optional_torch()
    if torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def nvidia_driver() -> str | None:
    """The NVIDIA driver version from ``nvidia-smi`` (None without one)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


def jetson_release() -> str | None:
    """The L4T release line on a Jetson (``/etc/nv_tegra_release``), None elsewhere."""
    try:
        return Path("/etc/nv_tegra_release").read_text().splitlines()[0].strip("# ").strip()
    except (OSError, IndexError):
        return None


def run_bench(
    models: Sequence[Any],
    out: str | os.PathLike[str],
    opts: BenchOptions | None = None,
    log: Log = lambda s: None,
) -> dict[str, Any]:
    """Bench every model (files, folders, runners); write bench.json, bench.csv, bench.md and
    pareto.png into ``out``; returns the result (environment, options, rows)."""
    from bench.peak import add_peak_shares, measure_peaks
    from bench.report import write_bench_report

    opts = opts or BenchOptions()
    out = Path(out)
    if not models:
        raise DenseDepthError("bench needs at least one model file, folder or runner")
    missing = [str(m) for m in models if isinstance(m, (str, os.PathLike)) and not Path(m).exists()]
    if missing:
        raise DenseDepthError(
            f"model {missing[0]} {missing_reason(missing[0])}; pass model files or folders"
        )
    torch = optional_torch()
    if opts.threads and torch is not None:
        torch.set_num_threads(opts.threads)
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
    add_ratios(rows)
    if peaks is not None:
        add_peak_shares(rows, peaks)
    result = {
        "environment": {**environment(opts.threads), "peaks": peaks},
        "options": asdict(opts),
        "data": getattr(dataset, "name", opts.data) if dataset is not None else None,
        "rows": rows,
        "recommended": recommend(rows, opts.max_drop),
        "seconds": time.perf_counter() - t0,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    result["files"] = [str(p) for p in write_bench_report(result, out)]
    return result
