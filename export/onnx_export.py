"""Checkpoint -> the deployable ONNX graph, checked against PyTorch before it is kept.

The deployable graph takes RGB float32 in [0, 1], NCHW, and returns depth in metres at half
resolution, clamped to the valid range; ImageNet normalisation and the reciprocal-to-metres
conversion are inside it, so every engine is fed and read the same way. Metadata props record
the backbone, input size, depth range and the source checkpoint's SHA-256; the parity figure
(max abs difference to PyTorch on a fixed input, metres) is stored in the file and in a JSON
sidecar, and exceeding the tolerance is an error.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densedepth.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    training_camera,
    weights_origin,
)
from densedepth.model import DenseDepth, check_input_size
from densedepth.util.errors import ExportError, error_line
from densedepth.util.files import file_sha256
from densedepth.util.onnx_io import (
    INPUT_NAME,
    OUTPUT_NAME,
    ort_session,
    parity_input,
    set_metadata,
)
from densedepth.util.outputs import artifact_path, claim_output
from export.artifact import finish_artifact
from export.onnx_graph import fold_weight_quantizers

MAX_OPSET = 20
DEFAULT_OPSET = 17
EXPORTERS = ("torchscript", "dynamo")
PARITY_TOLERANCE = 1e-3  # metres, max abs over a fixed input (float32 vs float32)


class DeployableDepth(torch.nn.Module):
    """RGB [0, 1] NCHW -> metres at half resolution: the graph every engine runs."""

    def __init__(self, model: DenseDepth) -> None:
        super().__init__()
        self.model = model

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.model.predict_depth(rgb)


def export_onnx(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    input_size: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
    dynamic_batch: bool = False,
    tolerance: float = PARITY_TOLERANCE,
) -> dict[str, Any]:
    """Export ``checkpoint`` to ``out`` (.onnx) and verify it; returns the export record.

    ``input_size`` defaults to the size the checkpoint was trained at; any multiple of 32
    works (the network is fully convolutional). The record (also written as ``out.json``)
    holds the parity error, the sizes and the timing.
    """
    import onnx

    out = Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"{out}: the ONNX output must end in .onnx")
    if not 13 <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported; choose 13..{MAX_OPSET}")
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    claim_output(Path(out))  # before any work: never replaces a file the toolkit did not write
    t0 = time.perf_counter()
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt).eval()
    qat = bool(ckpt.get("qat"))  # quantization-aware fine-tuned: an INT8 Q/DQ file
    if qat:  # constant scales for Q/DQ
        from densedepth.fake_quant import freeze

        freeze(model)
    size = tuple(int(s) for s in (input_size or ckpt["config"].get("input_size", (480, 640))))
    check_input_size(*size)
    deployable = DeployableDepth(model).eval()
    x = parity_input(size, batch=2 if dynamic_batch else 1)
    with torch.inference_mode():
        expected = deployable(torch.from_numpy(x)).numpy()

    with artifact_path(out) as tmp:
        _torch_export(deployable, x[:1], tmp, opset, exporter, dynamic_batch)
        proto = onnx.load(str(tmp))
        if qat:  # int8 weights, as the TensorRT flavour writes them
            fold_weight_quantizers(proto)
            onnx.save(proto, str(tmp))
        try:
            onnx.checker.check_model(proto, full_check=True)
        except Exception as exc:
            raise ExportError(f"exported graph fails the ONNX checker: {exc}") from None
        got = ort_session(tmp).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        parity = float(np.max(np.abs(got - expected)))
        # QAT: float differences of 1e-7 upstream of a quantizer (ONNX Runtime's BatchNorm vs
        # torch's) move an activation across a rounding boundary: one int8 level apart, and
        # such flips compound over 130 quantized convs (measured: the first conv agrees to
        # 4e-6, the second already by one level); the parity is recorded, not bounded
        bound = np.inf if qat else tolerance
        if not np.isfinite(parity) or parity > bound:
            raise ExportError(
                f"ONNX Runtime differs from PyTorch by {parity:.3g} m (tolerance {tolerance:g}); "
                f"try another --opset or --exporter"
            )
        record = {
            "format": "onnx-fp32",
            "precision": "fp32",
            **qat_record(ckpt),
            "backbone": model.backbone,
            "decoder_width": model.decoder_width,
            "input_size": list(size),
            "dynamic_batch": dynamic_batch,
            "min_depth": model.variant.depth.min_depth,
            "max_depth": model.variant.depth.max_depth,
            "depth_numerator": model.variant.depth.numerator,
            "variant": model.variant.to_dict(),
            "source": str(checkpoint),
            "source_sha256": file_sha256(checkpoint),
            **weights_origin(ckpt),
            **training_data(ckpt),
            **({"training_camera": camera} if (camera := training_camera(ckpt)) else {}),
            "opset": opset,
            "exporter": exporter,
            "parity_max_abs_m": parity,
            "parity_reference": "pytorch-fake-quant" if qat else "pytorch-fp32",
        }
        if qat:
            from export.quantize import require_tensorrt_rules

            require_tensorrt_rules(tmp, out)
        set_metadata(proto, {k: v for k, v in record.items() if k != "source"})
        proto.doc_string = (
            "DenseDepth deployable graph: input 'rgb' float32 NCHW RGB in [0,1]; "
            "output 'depth' float32 metres at half resolution"
        )
        onnx.save(proto, str(tmp))
    return finish_artifact(out, record, t0)


def default_onnx_path(checkpoint: str | os.PathLike[str]) -> Path:
    """Where ``export`` writes without ``--out``: RUN/export/model_fp32.onnx, or
    RUN/export/model_qat_int8.onnx for a quantization-aware checkpoint (an INT8 file)."""
    qat = Path(checkpoint).is_file() and load_checkpoint(checkpoint).get("qat")
    name = "model_qat_int8.onnx" if qat else "model_fp32.onnx"  # (a missing file: export says)
    return Path(checkpoint).parent / "export" / name


def qat_record(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What an export of a quantization-aware checkpoint records instead of fp32: a TensorRT
    flavour INT8 Q/DQ file written by QAT (its steps and calibration), else {}."""
    qat = ckpt.get("qat")
    if not qat:
        return {}
    calibration = {k: qat[k] for k in ("calibration_method", "calibration_images") if k in qat}
    rest = {k: v for k, v in qat.items() if k not in calibration}
    return {"format": "onnx-int8", "precision": "int8", "int8_flavour": "tensorrt",
            "int8_producer": "qat", "calibration_method": "max", **calibration,
            "qat": rest}  # fmt: skip


def training_data(ckpt: dict[str, Any]) -> dict[str, Any]:
    """``{"training_data": ...}``: the data the checkpoint was trained on, as its config names
    it (an INT8 build's default calibration source), with its validation split (share, seed,
    or the separate ``val_data``: what an INT8 build's accuracy budget is judged on), or {}
    when it names none."""
    config = ckpt.get("config") or {}
    data = config.get("data")
    if not data:
        return {}
    found: dict[str, Any] = {"training_data": str(data)}
    if config.get("val_data"):
        found["training_val_data"] = str(config["val_data"])
    for key in ("val_split", "seed"):
        if config.get(key) is not None:
            found[f"training_{key}"] = config[key]
    return found


def _torch_export(
    module: torch.nn.Module,
    x: np.ndarray,
    path: Path,
    opset: int,
    exporter: str,
    dynamic_batch: bool,
) -> None:
    args = (torch.from_numpy(x),)
    names = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation chatter
            if exporter == "dynamo":
                try:
                    import onnxscript  # noqa: F401
                except ImportError:
                    raise ExportError(
                        "--exporter dynamo needs onnxscript (pip install onnxscript); "
                        "or use --exporter torchscript"
                    ) from None
                shapes = {"rgb": {0: torch.export.Dim("batch")}} if dynamic_batch else None
                torch.onnx.export(
                    module, args, str(path), dynamo=True, opset_version=opset,
                    dynamic_shapes=shapes, external_data=False, **names,
                )  # fmt: skip
            else:
                axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
                torch.onnx.export(
                    module, args, str(path), dynamo=False, opset_version=opset,
                    do_constant_folding=True, dynamic_axes=axes if dynamic_batch else None,
                    **names,
                )  # fmt: skip
    except ExportError:
        raise
    except Exception as exc:
        first = error_line(exc, 200, with_type=False)
        raise ExportError(f"torch.onnx.export ({exporter}) failed: {first}") from None
