"""``build-engine --target auto``: the format the bench recommends for this machine.

Either measured here (every format of the table that builds here, made from the float ONNX and
benched for latency and for accuracy on a test set; the fastest within ``max_drop`` δ1 of FP32
wins) or read from an earlier ``bench.json`` measured on this same machine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.harness import BenchOptions, Log, run_bench
from bench.recommend import pick_for, pick_from_bench, recommendation_line
from densedepth.util.errors import DenseDepthError
from densedepth.util.files import require_files
from densedepth.util.onnx_io import read_sidecar
from densedepth.util.outputs import OutputFolder
from export.build import BuildJob, BuildOptions
from export.formats import DEPLOY_FORMATS, Format, format_by_key, require


def buildable_here() -> tuple[str, ...]:
    """Keys of the formats built from ONNX that can be built and run on this machine."""
    return tuple(
        f.key for f in DEPLOY_FORMATS if f.builder is not None and f.unavailable_reason() is None
    )


def measure_and_pick(
    fp32_onnx: Path, meta: dict[str, Any], out: Path, opts: BenchOptions, log: Log
) -> dict[str, Any]:
    """Build and bench every format that builds here from ``fp32_onnx`` (report in ``out``);
    the recommendation for it."""
    keys = buildable_here()
    log(f"measuring {', '.join(keys)} on this machine (report in {out})")
    result = run_bench([fp32_onnx], out, replace(opts, build=keys), log=log)
    pick = pick_for(result["recommended"], meta, "the bench")
    log(recommendation_line(pick))
    return pick


@dataclass(frozen=True)
class AutoSettings:
    """What ``--target auto`` measures: the test set scoring each format, how many of its
    images, the largest δ1 loss against FP32, and an earlier bench.json to read instead."""

    data: str = "synthetic"
    limit: int = 32
    max_drop: float = 0.01
    from_bench: Path | None = None


def auto_bench_options(auto: AutoSettings, build: BuildOptions) -> BenchOptions:
    """The short bench ``--target auto`` runs: 10 timed runs and 1 s per format at least."""
    return BenchOptions(iters=10, min_time=1.0, warmup=2, data=auto.data, limit=auto.limit,
                        calib=build.calib_source, calib_images=build.calib_images,
                        max_drop=auto.max_drop, method=build.method)  # fmt: skip


def auto_format(
    fp32_onnx: Path,
    meta: dict[str, Any],
    out: Path,
    auto: AutoSettings,
    build: BuildOptions,
    log: Log,
    warn: Log,
) -> tuple[Format, dict[str, Any] | None]:
    """The format a bench recommends for ``fp32_onnx`` (its metadata ``meta``) on this
    machine, and the record of its artifact when measured now (every candidate built into
    ``out/auto-bench``), or None when the pick is read from ``auto.from_bench`` (to be
    built)."""
    built = None
    if auto.from_bench is not None:
        pick = pick_from_bench(auto.from_bench, meta)
        log(f"from {auto.from_bench}: {recommendation_line(pick)}")
    else:
        folder = OutputFolder(out / "auto-bench", True, "build-engine --target auto", [fp32_onnx])
        with folder as measured_in:
            if folder.note:
                warn(f"note: {folder.note}")
            pick = measure_and_pick(
                fp32_onnx, meta, measured_in, auto_bench_options(auto, build), log
            )
        path = pick["path"] if pick["format"] != "onnx-fp32" else str(fp32_onnx)
        built = {**read_sidecar(path), "path": path, "measured": True}
    fmt = format_by_key(pick["format"])
    if fmt is None or fmt.builder is None:
        raise DenseDepthError(f"the pick {pick['format']!r} is not a format build-engine builds")
    return fmt, built


def build_auto(
    source: Path, out_dir: Path, auto: AutoSettings, build: BuildOptions, log: Log, warn: Log
) -> tuple[Format, dict[str, Any]]:
    """``build-engine --target auto``: the recommended format for this machine, built from
    ``source`` (a checkpoint or the fp32 ONNX) into ``out_dir``; with the pick measured now,
    the artifact the bench built (its record says ``measured``)."""
    if auto.from_bench is not None:
        require_files([auto.from_bench], "bench file")
    job = BuildJob(source, out_dir, build, log, warn)
    fmt, built = auto_format(job.fp32(), job.metadata(), out_dir, auto, build, log, warn)
    if built is not None:
        log(f"the pick for this machine, {fmt.key}:")
        return fmt, built
    require(fmt)
    return fmt, job.build(fmt)
