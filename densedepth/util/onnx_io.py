"""ONNX files without torch: our input/output names, the ``densedepth.*`` metadata, JSON
sidecars, ONNX Runtime sessions and the parity input and difference every artifact is checked
with. The runners and the quantizers use these; only ``export.onnx_export`` needs torch."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.util.errors import DenseDepthError, ExportError, missing_reason
from densedepth.util.outputs import write_text_atomic

INPUT_NAME = "rgb"
OUTPUT_NAME = "depth"
META_PREFIX = "densedepth."


def parity_input(input_size: tuple[int, int], batch: int = 1, seed: int = 0) -> np.ndarray:
    """The fixed input of every parity check: a smooth gradient plus seeded noise in [0, 1]."""
    h, w = input_size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, None, None, :]
    x = 0.5 * ramp + 0.5 * rng.random((batch, 3, h, w), dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Our metadata props of an ONNX file (prefix stripped, values decoded from the JSON
    ``set_metadata`` wrote; plain strings stay strings), without loading its weights."""
    import onnx

    if not Path(path).is_file():
        raise ExportError(f"ONNX file {path} {missing_reason(path)}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ExportError(f"{path} is not a readable ONNX file ({type(exc).__name__})") from None
    return {
        p.key[len(META_PREFIX) :]: _maybe_json(p.value)
        for p in model.metadata_props
        if p.key.startswith(META_PREFIX)
    }


def set_metadata(model: Any, values: dict[str, Any]) -> None:
    """Write ``values`` as ``densedepth.*`` metadata props (replacing earlier ones)."""
    keep = [p for p in model.metadata_props if p.key[len(META_PREFIX) :] not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in values.items():
        prop = model.metadata_props.add()
        prop.key = META_PREFIX + key
        prop.value = value if isinstance(value, str) else json.dumps(value)


def ort_session(
    path: str | os.PathLike[str],
    threads: int = 0,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    profile: str | None = None,
) -> Any:
    """An ONNX Runtime session with all graph optimisations (CPU unless ``providers`` say
    otherwise); ``profile`` turns on ORT's profiler with that file prefix."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: not its notes on FP16 nodes it cannot fold
    if threads:
        opts.intra_op_num_threads = threads
    if profile:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile
    return ort.InferenceSession(str(path), opts, providers=list(providers))


def fixed_batch(session: Any) -> int | None:
    """The batch size an ONNX Runtime session's model is fixed to, or None when it takes any."""
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) and dim > 0 else None


def ort_predictor(path: str | os.PathLike[str]) -> Callable[[np.ndarray], np.ndarray]:
    """``batch -> metres`` through a CPU ONNX Runtime session of ``path``."""
    session = ort_session(path)
    return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def output_difference(
    reference: Callable[[np.ndarray], np.ndarray],
    candidate: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    label: str,
) -> dict[str, Any]:
    """Max and mean |candidate - reference| in metres over ``images`` (N,3,H,W), one at a time."""
    parity = depth_parity(reference, candidate, images)
    return {
        "fp32_max_abs_m": parity["max_abs_m"],
        "fp32_mean_abs_m": parity["mean_abs_m"],
        "fp32_diff_input": label,
    }


DELTA1_RATIO = 1.25  # the δ1 threshold, here between two predictions instead of truth


def depth_parity(
    reference: Callable[[np.ndarray], np.ndarray],
    candidate: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
) -> dict[str, Any]:
    """Both models on the same preprocessed images (N,3,H,W), one at a time, Polygraphy
    style: |candidate - reference| in metres (max, p99, median, mean) and the share of pixels
    whose two depths agree within δ1 (max(a/b, b/a) < 1.25)."""
    diffs, agree, total = [], 0, 0
    for x in images:
        a, b = np.asarray(reference(x[None])), np.asarray(candidate(x[None]))
        if a.shape != b.shape:
            raise DenseDepthError(f"the outputs differ in shape ({b.shape} vs {a.shape}): not "
                                  f"the same model")  # fmt: skip
        diffs.append(np.abs(b - a).ravel())
        pa, pb = (np.maximum(v.astype(np.float64), 1e-6) for v in (a, b))
        agree += int(np.count_nonzero(np.maximum(pa / pb, pb / pa) < DELTA1_RATIO))
        total += a.size
    d = np.concatenate(diffs)
    return {
        "images": len(images),
        "max_abs_m": float(d.max()),
        "p99_abs_m": float(np.percentile(d, 99)),
        "median_abs_m": float(np.median(d)),
        "mean_abs_m": float(d.mean()),
        "delta1_agreement": agree / total,
    }


def write_sidecar(artifact: Path, record: dict[str, Any]) -> Path:
    """``artifact.json`` beside the artifact, written atomically."""
    side = artifact.with_name(artifact.name + ".json")
    return write_text_atomic(side, json.dumps(record, indent=2, default=str) + "\n")


def read_sidecar(artifact: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON sidecar of an artifact ({} when absent)."""
    side = Path(str(artifact) + ".json")
    if not side.is_file():
        return {}
    try:
        return json.loads(side.read_text())
    except (OSError, ValueError):
        raise ExportError(f"{side} is not readable JSON; rebuild the artifact") from None


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value
