"""The accuracy budget of an INT8 build: its depth metrics against the FP32 ONNX's on held-out
images that are not calibration images, through the CPU runtimes, and a verdict.

Held-out images: ``--val-data`` (its train split; a nyu_test.zip's test split, all it holds)
when given, else the validation split of the model's training data, the scenes ``train`` held
out (its share and seed, which the export records; TrainConfig's defaults for an older
export). Drawn from the training data,
they are excluded from the calibration set (``calib.calibration.load_calibration_set``'s
``exclude``), so an INT8 model is never judged on the frames it was calibrated on.

What is measured for each INT8 format: the ONNX Runtime Q/DQ ONNX itself; a TensorRT build's
Q/DQ ONNX through ONNX Runtime on the CPU (what TensorRT computes, up to its kernels'
rounding; an engine from the implicit calibrator keeps its scales inside and is left
unmeasured); an OpenVINO INT8 IR through OpenVINO on the CPU. fp32 and int8 δ1 / rel / rms
are recorded in the artifact's sidecar (``int8_budget``) with the budget and the verdict; a
missed budget is one line and a non-zero exit, the artifact kept (complete, marked missed).

Per depth range too: a pooled δ1 can hold while one range collapses (measured: TensorRT Q/DQ
with entropy ranges at 480x640 kept the pooled δ1 while 0-2 m fell from 0.44 to 0.01), so the
δ1 of every range of ground truth holding at least ``MIN_RANGE_SHARE`` of the scored pixels
may drop by at most ``max_range_drop`` (a range with fewer pixels is reported, not gated:
its δ1 moves by whole pixels' worth of noise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.util.errors import DataError, ExportError, SplitNotInDataset, error_line
from densedepth.util.onnx_io import (
    INPUT_NAME,
    OUTPUT_NAME,
    ort_session,
    read_metadata,
    read_sidecar,
    write_sidecar,
)

DEFAULT_MAX_DROP = 0.01  # δ1 points against FP32
DEFAULT_MAX_RANGE_DROP = 0.05  # δ1 points against FP32 in any one depth range
MIN_RANGE_SHARE = 0.05  # of the scored pixels: a range gated by max_range_drop
DEFAULT_IMAGES = 64  # held-out images scored (ORT on 2 cores: about a second each at 480x640)
DEFAULT_VAL_SPLIT, DEFAULT_SEED = 0.02, 0  # train.config.TrainConfig's, for older exports


@dataclass(frozen=True)
class AccuracyBudget:
    """What an INT8 build must keep: at most ``max_drop`` δ1 lost (and, when set, rel risen
    by at most ``max_rel_rise``) on ``images`` held-out images, and at most ``max_range_drop``
    in any depth range holding ``MIN_RANGE_SHARE`` of the pixels (None: ranges not gated)."""

    max_drop: float = DEFAULT_MAX_DROP
    max_rel_rise: float | None = None
    val_data: str | None = None
    images: int = DEFAULT_IMAGES
    fallback: bool = True  # on a miss, leave the fewest groups in float that meet it
    max_range_drop: float | None = DEFAULT_MAX_RANGE_DROP


@dataclass
class HeldOut:
    """The images an INT8 build is judged on, where they come from, and the indices of
    ``source``'s train split the calibration set must leave out (empty: another dataset)."""

    dataset: Any
    label: str
    source: str
    exclude: list[int]


def held_out_set(fp32_onnx: Path, budget: AccuracyBudget, **dataset_kwargs: Any) -> HeldOut:
    """``budget.val_data``'s train split, else the validation split of the training data the
    ONNX records (one clear line when it records none)."""
    from densedepth.data.readers import open_dataset
    from densedepth.data.splits import Subset, split_by_scene

    meta = read_metadata(fp32_onnx)
    val_data = budget.val_data or meta.get("training_val_data")
    if val_data:
        try:
            dataset, split = open_dataset(val_data, "train", **dataset_kwargs), "train"
        except SplitNotInDataset:  # nyu_test.zip: the test split is all it holds
            dataset, split = open_dataset(val_data, "test", **dataset_kwargs), "test"
        return HeldOut(dataset, f"{val_data} ({split} split)", str(val_data), [])
    data = meta.get("training_data")
    if not data:
        raise ExportError(
            f"{fp32_onnx} records no training data to hold images out of: pass --val-data "
            f"PATH (images not used for calibration), or --no-budget"
        )
    try:
        base = open_dataset(data, "train", **dataset_kwargs)
    except DataError as exc:
        raise ExportError(
            f"the training data {fp32_onnx.name} records ({data}) cannot be opened here "
            f"({error_line(exc, with_type=False)}): pass --val-data PATH (images not used for "
            f"calibration), or --no-budget"
        ) from None
    share = float(meta.get("training_val_split", DEFAULT_VAL_SPLIT))
    split = split_by_scene(base, share, int(meta.get("training_seed", DEFAULT_SEED)))
    label = (f"validation split {share:g} of {data} ({split.val_groups} {split.grouped_by}s, "
             f"{len(split.val)} images)")  # fmt: skip
    return HeldOut(Subset(base, split.val, label), label, str(data), list(split.val))


def cpu_predictor(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """``batch -> metres`` on the CPU, one image at a time (static or dynamic batch alike):
    ONNX Runtime for an .onnx, OpenVINO's CPU plugin for an .xml (export's own sessions; the
    runners of ``engines`` sit above this layer)."""
    if path.suffix == ".xml":
        from export.openvino import compile_ir

        request = compile_ir(
            path, read_sidecar(path).get("precision", "int8")
        ).create_infer_request()

        def one(x: np.ndarray) -> np.ndarray:
            request.infer({0: x})
            return np.array(request.get_output_tensor(0).data, dtype=np.float32)

    else:
        session = ort_session(path)

        def one(x: np.ndarray) -> np.ndarray:
            return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]

    return lambda batch: np.concatenate([one(batch[i : i + 1]) for i in range(len(batch))])


def measured_file(record: dict[str, Any]) -> tuple[Path | None, str]:
    """The file whose INT8 arithmetic the CPU can run for this build's record, and how."""
    path = Path(record["path"])
    if path.suffix == ".xml":
        return path, "OpenVINO on the CPU"
    if path.suffix == ".onnx":
        return path, "ONNX Runtime on the CPU"
    if record.get("calibrator"):  # a TensorRT engine from the implicit calibrator
        return None, "not measured: the implicit calibrator's scales live in the engine only"
    return Path(record["source_onnx"]), "its Q/DQ ONNX through ONNX Runtime on the CPU"


def measure_budget(
    fp32_onnx: Path,
    record: dict[str, Any],
    held: HeldOut,
    budget: AccuracyBudget,
    reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """fp32 and int8 δ1 / rel / rms on the held-out images, the drop, and the verdict
    (met | missed | unmeasured); ``reference``: a dict keeping the fp32 scores between calls
    (the fallback's many candidates are judged against one fp32 run)."""
    from densedepth.evaluation import evaluate_dataset

    target, how = measured_file(record)
    result: dict[str, Any] = {**asdict(budget), "held_out": held.label, "measured": how}
    if target is None:
        return {**result, "verdict": "unmeasured"}
    size = tuple(read_metadata(fp32_onnx)["input_size"])
    scores = dict(reference or {})
    for name, path in (("fp32", fp32_onnx), ("int8", target)):
        if name in scores:
            continue
        m = evaluate_dataset(cpu_predictor(Path(path)), held.dataset, size, limit=budget.images)
        scores[name] = {k: m[k] for k in ("delta1", "rel", "rms", "by_range") if k in m}
        result["n_images"] = m.get("n_images")
    if reference is not None:
        reference["fp32"] = scores["fp32"]
    return {**result, **scores, **judge_scores(scores["fp32"], scores["int8"], budget)}


def judge_scores(
    fp32: dict[str, Any], int8: dict[str, Any], budget: AccuracyBudget
) -> dict[str, Any]:
    """The verdict on two score dicts (``delta1``, ``rel``, ``by_range``) of one image set:
    the δ1 drop, the rel rise, the drop per range and the worst gated one, met | missed."""
    drop = fp32["delta1"] - int8["delta1"]
    rise = int8["rel"] - fp32["rel"]
    ranges = range_drops(fp32.get("by_range", []), int8.get("by_range", []))
    worst = worst_range(ranges)
    met = (
        drop <= budget.max_drop
        and (budget.max_rel_rise is None or rise <= budget.max_rel_rise)
        and (budget.max_range_drop is None or worst is None
             or worst["delta1_drop"] <= budget.max_range_drop)
    )  # fmt: skip
    return {"delta1_drop": drop, "rel_rise": rise, "range_drops": ranges, "worst_range": worst,
            "verdict": "met" if met else "missed"}  # fmt: skip


def range_drops(fp32: list[dict[str, Any]], int8: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """δ1 drop per depth range (``RangeSums.result`` entries of one image set), with its share
    of the pixels in all ranges and whether it is gated (share >= ``MIN_RANGE_SHARE``)."""
    total = sum(e["pixels"] for e in fp32)
    out = []
    for a, b in zip(fp32, int8, strict=True):
        if a["range_m"] != b["range_m"]:
            raise ExportError(f"depth ranges {a['range_m']} and {b['range_m']} do not match")
        if a["delta1"] is None or b["delta1"] is None:
            continue
        share = a["pixels"] / total
        out.append({"range_m": a["range_m"], "pixels": a["pixels"], "share": share,
                    "delta1_drop": a["delta1"] - b["delta1"],
                    "gated": share >= MIN_RANGE_SHARE})  # fmt: skip
    return out


def worst_range(ranges: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The gated range that lost the most δ1 (None: no range is gated)."""
    gated = [e for e in ranges if e["gated"]]
    return max(gated, key=lambda e: e["delta1_drop"]) if gated else None


def budget_line(result: dict[str, Any]) -> str:
    """e.g. ``INT8 budget met: δ1 0.8123 -> 0.8087 (drop 0.0036 <= 0.01), rel ... on 64
    held-out images (validation split ...; ONNX Runtime on the CPU)``."""
    if result["verdict"] == "unmeasured":
        return f"INT8 budget unmeasured ({result['measured']}): bench the engine on the GPU"
    fallback = result.get("fallback")
    kept = ""
    if isinstance(fallback, dict):
        kept = f" with {fallback['count']} of {fallback['of']} quantized groups in float"
    f32, i8 = result["fp32"], result["int8"]
    limit = f" and rel rise <= {result['max_rel_rise']:g}" if result["max_rel_rise"] else ""
    return (
        f"INT8 budget {result['verdict']}{kept}: δ1 {f32['delta1']:.4f} -> {i8['delta1']:.4f} "
        f"(drop {signed(result['delta1_drop'])}, budget {result['max_drop']:g}{limit}"
        f"{worst_range_text(result)}), rel {f32['rel']:.4f} -> {i8['rel']:.4f}, rms "
        f"{f32['rms']:.3f} -> {i8['rms']:.3f} m on {result['n_images']} held-out images "
        f"({result['held_out']}; {result['measured']})"
    )


def worst_range_text(result: dict[str, Any]) -> str:
    """``; worst range 0-2 m drop +0.4340, budget 0.05`` (nothing without a gated range)."""
    worst = result.get("worst_range")
    if not worst:
        return ""
    lo, hi = worst["range_m"]
    limit = result.get("max_range_drop")
    gate = f", budget {limit:g}" if limit is not None else ", not gated"
    return f"; worst range {lo:g}-{hi:g} m drop {signed(worst['delta1_drop'])}{gate}"


def signed(value: float) -> str:
    """``+0.0036``; a value that rounds to zero is ``+0.0000``, never ``-0.0000``."""
    text = f"{value:+.4f}"
    return "+0.0000" if float(text) == 0 else text


def enforce_budget(record: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Record ``result`` in the artifact's sidecar (and the record); a missed budget is then
    one line (what was reached, the ways out)."""
    record["int8_budget"] = result
    path = Path(record["path"])
    write_sidecar(path, {**read_sidecar(path), "int8_budget": result})
    if result["verdict"] == "missed":
        raise ExportError(
            f"{budget_line(result)}; {path.name} is kept, marked missed in its sidecar: leave "
            f"layers in float (--keep-float), calibrate on more or other images (--calib), or "
            f"allow more (--max-drop, --max-range-drop)"
        )
    return record
