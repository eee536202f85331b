"""Compare models on the same test images: metrics table (Markdown + JSON) and one figure."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import range_lines
from densedepth.data.readers import open_dataset
from densedepth.evaluation import evaluate_dataset, protocol_for
from densedepth.metrics import METRIC_KEYS
from densedepth.util.errors import DenseDepthError
from densedepth.util.onnx_io import depth_parity
from densedepth.util.outputs import write_text_atomic
from densedepth.viz import save_grid, widen_points
from engines import Runner, load_runner
from engines.predict import predict_image

# Published figures on the NYU Depth v2 Eigen test split (not measured by this toolkit).
PUBLISHED = {  # by the test data's depth kind; a missing figure is left blank
    "nyu": [
        {
            "model": "DenseDepth-169, paper (published)",
            "source": "Alhashim & Wonka 2018, Table 1, NYU Depth v2",
            "delta1": 0.846,
            "delta2": 0.974,
            "delta3": 0.994,
            "rel": 0.123,
            "rms": 0.465,
            "log10": 0.053,
        },
    ],
    "kitti": [
        {
            "model": "DenseDepth-169, paper (published)",
            "source": "Alhashim & Wonka 2018, KITTI Eigen split (80 m cap)",
            "delta1": 0.886,
            "rel": 0.093,
            "rms": 4.170,
            "log10": 0.040,
        },
    ],
}
PUBLISHED_ON = {"nyu": "NYU Depth v2 Eigen split", "kitti": "KITTI Eigen split"}


def model_label(runner: Runner, path: Path) -> str:
    """A short column label: backbone and file, e.g. ``densenet169 (d169/best.pt)``; models
    with published weights say so: ``densenet169 (published Keras nyu.h5: nyu.pt)``; INT8
    models say how they were quantized, so PTQ and QAT stand side by side:
    ``densenet121 INT8 QAT, 200 steps (qat/model_qat_int8.onnx)``."""
    backbone = runner.info.backbone or runner.name
    if runner.info.quantization:
        backbone = f"{backbone} INT8 {runner.info.quantization}"
    origin = runner.info.weights_origin
    if origin:
        return f"{backbone} ({origin}: {path.name})"
    return f"{backbone} ({path.parent.name}/{path.name})"


def figure_indices(n_total: int, n_images: int) -> list[int]:
    """``n_images`` indices spread evenly over the set, the same for every model."""
    n = min(n_images, n_total)
    return sorted({round(float(i)) for i in np.linspace(0, n_total - 1, n)}) if n else []


def compare_models(
    models: list[str | os.PathLike[str]],
    data: str,
    out: str | os.PathLike[str],
    n_images: int = 4,
    protocol: str = "auto",
    limit: int = 0,
    device: str = "auto",
    published: bool = True,
    data_kwargs: dict[str, Any] | None = None,
    threads: int = 0,
) -> dict[str, Any]:
    """Evaluate every model on the same test images and write report.md, report.json and
    compare.png (rows RGB | ground truth | one column per model, one jet scale per row)."""
    if len(models) < 1:
        raise DenseDepthError("compare needs at least one model")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = open_dataset(data, "test", **(data_kwargs or {}))
    protocol = protocol_for(dataset, protocol)
    kind = getattr(dataset, "depth_kind", "nyu")
    rows = []
    runners = []
    for path in map(Path, models):
        runner = load_runner(path, device=device, threads=threads)
        size = runner.input_shape[2:]
        metrics = evaluate_dataset(runner, dataset, size, protocol=protocol, limit=limit)
        label = model_label(runner, path)
        rows.append({"model": label, "path": str(path), "input_size": list(size), **metrics})
        runners.append((label, runner))
    idx = figure_indices(len(dataset) if limit <= 0 else min(limit, len(dataset)), n_images)
    samples = [dataset[i] for i in idx]
    kitti = kind == "kitti"  # sparse lidar points, widened to show; one 1..80 m scale
    columns = {"ground truth": [widen_points(d) if kitti else d for _, d in samples]}
    for label, runner in runners:
        columns[label] = [predict_image(runner, rgb) for rgb, _ in samples]
    figure = save_grid(
        out / "compare.png",
        [rgb for rgb, _ in samples],
        columns,
        range_per="figure" if kitti else "row",
        vrange=(1.0, 80.0) if kitti else None,
        title=f"{getattr(dataset, 'name', data)}: test images {idx}",
    )
    report = {
        "data": getattr(dataset, "name", data),
        "protocol": protocol,
        "figure": str(figure),
        "figure_indices": idx,
        "measured": rows,
        "published": PUBLISHED[kind] if published else [],
        "published_on": PUBLISHED_ON[kind],
    }
    write_text_atomic(out / "report.json", json.dumps(report, indent=2, default=float) + "\n")
    write_text_atomic(out / "report.md", markdown_report(report))
    return report


def markdown_report(report: dict[str, Any]) -> str:
    """The comparison as Markdown: measured rows, then published rows clearly labelled."""
    lines = [
        "# Model comparison",
        "",
        f"Test data: {report['data']}; protocol: {report['protocol']}. "
        f"Higher is better for δ1..δ3, lower for rel, rms (m), log10.",
        "",
        "| model | δ1 | δ2 | δ3 | rel | rms | log10 | images |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["measured"]:
        vals = " | ".join(f"{r[k]:.3f}" for k in METRIC_KEYS)
        lines.append(f"| {r['model']} | {vals} | {r.get('n_images', '')} |")
    lines += range_lines(report["measured"], report["protocol"])
    if report["published"]:
        lines += [
            "",
            f"Published figures ({report['published_on']}; not measured here, not comparable "
            "with synthetic-data rows):",
            "",
            "| model | δ1 | δ2 | δ3 | rel | rms | log10 | source |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in report["published"]:
            vals = " | ".join(f"{r[k]:.3f}" if k in r else "" for k in METRIC_KEYS)
            lines.append(f"| {r['model']} | {vals} | {r['source']} |")
    lines += [
        "",
        f"![qualitative comparison]({Path(report['figure']).name})",
        "",
        f"Rows: the same test images {report['figure_indices']} for every model; "
        "columns RGB | ground truth | each model; one jet scale per row (blue near, red far).",
        "",
    ]
    return "\n".join(lines)


def output_parity(reference: Runner, candidate: Runner, images: np.ndarray) -> dict[str, Any]:
    """``depth_parity`` of two runners, naming them when their outputs do not match."""
    try:
        return depth_parity(reference, candidate, images)
    except DenseDepthError as exc:
        raise DenseDepthError(f"{candidate.name} vs {reference.name}: {exc}") from None


def compare_outputs(
    reference: str | os.PathLike[str],
    candidate: str | os.PathLike[str],
    data: str = "synthetic",
    limit: int = 8,
    device: str = "auto",
    **data_kwargs: Any,
) -> dict[str, Any]:
    """``output_parity`` of a candidate (an engine, a Q/DQ or FP16 ONNX, an IR) against the
    reference model run by ONNX Runtime in FP32 on the CPU, over ``limit`` images of ``data``
    (a dataset's test split, or a folder of RGB images, preprocessed as inference)."""
    import warnings

    from calib.calibration import load_calibration_set

    ref = load_runner(reference, device="cpu")
    cand = load_runner(candidate, device=device)
    try:
        size = tuple(int(s) for s in ref.input_shape[2:])
        if tuple(cand.input_shape[2:]) != size:
            raise DenseDepthError(
                f"{candidate} takes {cand.input_shape[2:]}, {reference} takes {size}: compare "
                f"files of one export"
            )
        with warnings.catch_warnings():  # (a few images are the point here, not a calibration)
            warnings.simplefilter("ignore")
            images = load_calibration_set(data, size, n=limit, split="test", **data_kwargs).images
        result = output_parity(ref, cand, images)
    finally:
        ref.close()
        cand.close()
    return {**result, "reference": str(reference), "candidate": str(candidate), "data": data,
            "candidate_precision": cand.precision}  # fmt: skip


def parity_line(result: dict[str, Any]) -> str:
    """One line: the errors in metres and the δ1 agreement of the two outputs."""
    return (
        f"{result['candidate']} vs {result['reference']} (ONNX Runtime fp32) on "
        f"{result['images']} images of {result['data']}: |Δdepth| max {result['max_abs_m']:.4f} m, "
        f"p99 {result['p99_abs_m']:.4f}, median {result['median_abs_m']:.4f}; δ1 agreement "
        f"{result['delta1_agreement']:.2%} of pixels"
    )
