"""One NVIDIA ModelOpt INT8 quantization, run in a child process by ``export.quantize``.

ModelOpt patches ONNX Runtime's quantization module when it runs (calibrators, the QDQ op
registry: BatchNormalization in, Concat out) and never restores it; in the parent process that
would silently change every later ONNX Runtime quantization (both of our flavours). A child
process keeps those patches, ModelOpt's imports and its logging out of the toolkit.

    python -m export.modelopt_job JOB.json

JOB.json: ``onnx_path`` (a copy: ModelOpt rewrites its input), ``output_path``,
``calibration_npy`` (N x 3 x H x W float32), ``input_name``, ``calibration_method``,
``high_precision_dtype``, ``nodes_to_exclude``. Exit 0 when the output was written; otherwise
the last stderr line says why.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path


def run(job: dict) -> None:
    """Quantize as ``job`` says (see the module docstring)."""
    import numpy as np
    from modelopt.onnx.quantization import quantize

    images = np.load(job["calibration_npy"])
    if images.ndim != 4 or len(images) == 0:
        raise SystemExit("no calibration images")  # ModelOpt would calibrate on random data
    for name in ("", "modelopt", "modelopt.onnx"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # it logs an ERROR for "no GPU"
    quantize(
        onnx_path=job["onnx_path"],
        quantize_mode="int8",
        calibration_data={job["input_name"]: images},
        calibration_method=job["calibration_method"],
        calibration_eps=["cpu"],  # its default tries CUDA and TensorRT first
        nodes_to_exclude=job["nodes_to_exclude"] or None,
        high_precision_dtype=job["high_precision_dtype"],
        dq_only=True,
        output_path=job["output_path"],
        log_level="ERROR",
    )
    if not Path(job["output_path"]).is_file():
        raise SystemExit("ModelOpt wrote no quantized model")


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()))
