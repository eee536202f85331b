"""``cli.py int8-report``: per-group INT8 sensitivity of an fp32 ONNX, calibrated and held
out as ``build-engine`` does (``export.build.BuildJob``), written as JSON, Markdown and a bar
plot (``export.sensitivity`` measures; this module only ties it to the build's data).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from densedepth.util.outputs import record_written, write_text_atomic
from export.sensitivity import Log, bar_plot, measure_sensitivity, report_markdown


def int8_report(
    fp32_onnx: Path,
    out: Path,
    opts: Any,
    images: int = 8,
    flavour: str = "cpu",
    groups: int = 0,
    top: int = 20,
    log: Log = lambda s: None,
) -> tuple[dict[str, Any], list[Path]]:
    """``cli.py int8-report``: the sensitivity of every quantized group (``groups``: the first N,
    0 = all) of ``fp32_onnx`` on ``images`` held-out images, calibrated as ``build-engine``
    does (``opts``: an ``export.build.BuildOptions`` with its budget's held-out source, and
    for the TensorRT flavour its writer, ``producer``, and float layers, ``int8_float``); the
    cache beside the ONNX, ``int8_report.json`` / ``.md`` / ``int8_sensitivity.png`` in
    ``out``."""
    from export.build import BuildJob
    from export.quantize import resolve_producer

    job = BuildJob(fp32_onnx, fp32_onnx.parent, opts, log=log)
    held, calib = job.held_out(), job.calibration()
    float_precision = opts.int8_float if flavour == "tensorrt" else "fp32"
    result = measure_sensitivity(fp32_onnx, calib, held, fp32_onnx.parent, images, flavour,
                                 opts.method, opts.keep_float, None, log, groups,
                                 resolve_producer(flavour, opts.producer),
                                 float_precision)  # fmt: skip
    plot = bar_plot(result, out / "int8_sensitivity.png", top)
    files = [
        write_text_atomic(out / "int8_report.json", json.dumps(result, indent=2) + "\n"),
        write_text_atomic(out / "int8_report.md", report_markdown(result, top, plot.name)),
        plot,
    ]
    record_written(*files)
    return result, files
