"""The fp32 ONNX -> FP16 ONNX (float32 input and output), checked against the fp32 file.

Torch-free: it runs where engines are built (a Jetson, a slim container).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.util.errors import ExportError
from densedepth.util.files import file_sha256
from densedepth.util.onnx_io import (
    ort_predictor,
    output_difference,
    parity_input,
    read_metadata,
    set_metadata,
)
from densedepth.util.outputs import artifact_path, claim_output
from export.artifact import finish_artifact
from export.onnx_graph import topological_sort


def convert_fp16(
    onnx_fp32: str | os.PathLike[str], out: str | os.PathLike[str], tolerance: float = 0.05
) -> dict[str, Any]:
    """FP16 weights and activations with float32 input/output (for TensorRT 11's strongly
    typed builds and GPU providers); checked against the FP32 file on the parity input.

    The FP16 graph is run by ONNX Runtime's CPU provider for the check when it can; the max
    abs difference in metres is stored, and over ``tolerance`` is an error.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    src, out = Path(onnx_fp32), Path(out)
    meta = read_metadata(src)
    if meta.get("precision", "fp32") != "fp32" or "input_size" not in meta:
        raise ExportError(f"{src} is not a float32 DenseDepth export; convert the fp32 ONNX")
    claim_output(Path(out))
    t0 = time.perf_counter()
    size = tuple(meta["input_size"])
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    topological_sort(model.graph)  # the input/output casts are appended at the end: valid ONNX
    record: dict[str, Any] = dict(meta)
    record.update(format="onnx-fp16", precision="fp16", source_onnx_sha256=file_sha256(src))
    with artifact_path(out) as tmp:
        set_metadata(model, record)
        onnx.save(model, str(tmp))
        diff = output_difference(
            ort_predictor(src), ort_predictor(tmp), parity_input(size), "the parity input"
        )
        worst = diff["fp32_max_abs_m"]
        if not np.isfinite(worst) or worst > tolerance:
            raise ExportError(f"FP16 graph differs from FP32 by {worst:.3g} m (max {tolerance})")
    record.update(diff)
    return finish_artifact(out, record, t0)
