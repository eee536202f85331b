"""Automatic float fallback: an INT8 build that misses its accuracy budget keeps the fewest
quantized groups in float that meet it.

The groups are the nodes the writer quantizes (``export.sensitivity.quantized_groups``), in
graph order. The search is a bisection over contiguous halves (delta debugging, as Polygraphy's
``debug reduce`` narrows a failing model): all groups in float must meet the budget (else the
loss is not in the groups, and that is one line); then, while one half alone in float meets
it, keep that half; stop when neither half does (the loss is spread over both). It takes about
2 log2(groups) builds, each re-quantized through the same writer and cached calibration ranges
and judged on the budget's held-out images, instead of measuring every group; the result is a
sufficient set, not always the smallest. What it found, and every try, go into the sidecar;
the keep-float list rebuilds it (``build-engine --keep-float-from``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from densedepth.util.errors import ExportError
from densedepth.util.onnx_io import read_metadata
from densedepth.util.outputs import scratch_beside
from export.int8_budget import AccuracyBudget, HeldOut, measure_budget, signed

Log = Callable[[str], None]


def qdq_settings(record: dict[str, Any]) -> dict[str, Any] | None:
    """The measured Q/DQ file of a build and how it was written (flavour, producer, method,
    float precision, keep-float), from its metadata; None where there is no Q/DQ file to rewrite
    (OpenVINO's IR, TensorRT's implicit calibrator)."""
    path = Path(record["path"])
    if path.suffix != ".onnx":
        if record.get("calibrator") or not record.get("source_onnx"):
            return None
        path = Path(record["source_onnx"])
    if path.suffix != ".onnx":
        return None
    meta = read_metadata(path)
    if meta.get("precision") != "int8":
        return None
    return {
        "path": str(path),
        "flavour": meta.get("int8_flavour", "cpu"),
        "producer": meta.get("int8_producer", "auto"),
        "method": meta.get("calibration_method", "minmax"),
        "float_precision": meta.get("float_precision", "fp32"),
        "keep_float": list(meta.get("keep_float") or []),
    }


def find_fallback(
    fp32_onnx: Path,
    calib: Any,
    held: HeldOut,
    budget: AccuracyBudget,
    settings: dict[str, Any],
    cache_dir: Path,
    log: Log = lambda s: None,
) -> dict[str, Any]:
    """The groups to leave in float (see the module docstring); one clear line when even all
    of them in float miss the budget."""
    from export.quantize import quantize_int8
    from export.sensitivity import quantized_groups

    base = settings["keep_float"]
    reference: dict[str, Any] = {}
    tries: list[dict[str, Any]] = []
    with scratch_beside(cache_dir / "int8_fallback") as work:

        def judge(keep: Sequence[str]) -> bool:
            path = work / f"try{len(tries)}.onnx"
            quantize_int8(fp32_onnx, calib, path, settings["flavour"], settings["method"],
                          [*base, *keep], cache_dir=cache_dir, producer=settings["producer"],
                          float_precision=settings["float_precision"])  # fmt: skip
            r = measure_budget(fp32_onnx, {"path": str(path)}, held, budget, reference)
            tries.append({"groups_in_float": len(keep), "verdict": r["verdict"],
                          "delta1_drop": r["delta1_drop"], "rel_rise": r["rel_rise"]})  # fmt: skip
            log(f"fallback try {len(tries)}: {len(keep)} group(s) in float, δ1 drop "
                f"{signed(r['delta1_drop'])}: {r['verdict']}")  # fmt: skip
            return r["verdict"] == "met"

        groups = quantized_groups(Path(settings["path"]))  # the missed build's own Q/DQ file
        if not judge(groups):
            last = tries[-1]
            raise ExportError(
                f"INT8 misses its budget even with all {len(groups)} quantized groups in "
                f"float (δ1 drop {signed(last['delta1_drop'])}, rel rise "
                f"{signed(last['rel_rise'])}): the loss is in what stays quantized outside "
                f"them or in the calibration itself; calibrate on other images (--calib)"
            )
        chosen = list(groups)
        while len(chosen) > 1:
            half = len(chosen) // 2
            first, second = chosen[:half], chosen[half:]
            if judge(first):
                chosen = first
            elif judge(second):
                chosen = second
            else:
                break
    return {"groups": chosen, "count": len(chosen), "of": len(groups),
            "keep_float": [*base, *chosen], "tries": tries}  # fmt: skip
