"""Automatic float fallback: an INT8 build that misses its accuracy budget keeps the fewest
quantized groups in float that meet it.

The groups are the nodes the writer quantizes (``export.sensitivity.quantized_groups``; for
OpenVINO the fp32 ONNX nodes whose ops NNCF quantized, ``export.openvino.quantized_onnx_nodes``,
left in float through its ignored scope), in graph order. The search is a bisection over
contiguous chunks (delta debugging, as Polygraphy's ``debug reduce`` narrows a failing model):
all groups in float must meet the budget (else the loss is not in the groups, and that is one
line); then chunks are given back to INT8 while the rest in float still meets it, halves
first, finer chunks when no half can go (``reduce_groups``). One culprit group takes about
2 log2(groups) builds; a loss spread over many groups more, capped at ``MAX_TRIES``. Each
build is re-quantized through the same writer and cached calibration ranges (NNCF: the same
calibration images) and judged on the budget's held-out images, instead of measuring every
group; the result is a sufficient set, not always the smallest. What it found, and every try,
go into the sidecar; the keep-float list rebuilds it (``build-engine --keep-float-from``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from densedepth.util.errors import ExportError
from densedepth.util.onnx_io import read_metadata
from densedepth.util.outputs import discard_scratch_build, scratch_beside
from export.int8_budget import (
    AccuracyBudget,
    HeldOut,
    measure_budget,
    signed,
    worst_range_text,
)

Log = Callable[[str], None]
MAX_TRIES = 64  # builds a fallback search may spend (each a re-quantization and a scoring)


def fallback_settings(record: dict[str, Any]) -> dict[str, Any] | None:
    """How a missed INT8 build can be rebuilt with groups in float: its measured Q/DQ file and
    how it was written (flavour, producer, method, float precision, keep-float), or its
    OpenVINO IR (NNCF's ignored scope); None for TensorRT's implicit calibrator (no file)."""
    path = Path(record["path"])
    if path.suffix == ".xml":
        return {"kind": "openvino", "path": str(path),
                "keep_float": list(record.get("keep_float") or [])}  # fmt: skip
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
        "kind": "qdq",
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
    reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The groups to leave in float (see the module docstring); one clear line when even all
    of them in float miss the budget. ``reference``: the fp32 scores already measured on
    ``held`` (``measure_budget``'s dict), filled here when empty."""
    base = settings["keep_float"]
    reference = {} if reference is None else reference
    tries: list[dict[str, Any]] = []
    with scratch_beside(cache_dir / "int8_fallback") as work:

        def judge(keep: Sequence[str]) -> bool:
            path = rebuild(fp32_onnx, calib, settings, [*base, *keep], work / f"try{len(tries)}",
                           cache_dir)  # fmt: skip
            r = measure_budget(fp32_onnx, {"path": str(path)}, held, budget, reference)
            discard_scratch_build(path)
            worst = r["worst_range"]
            tries.append({"groups_in_float": len(keep), "verdict": r["verdict"],
                          "delta1_drop": r["delta1_drop"], "rel_rise": r["rel_rise"],
                          "worst_range": worst})  # fmt: skip
            log(f"fallback try {len(tries)}: {len(keep)} group(s) in float, δ1 drop "
                f"{signed(r['delta1_drop'])}{worst_range_text(r)}: {r['verdict']}")  # fmt: skip
            return r["verdict"] == "met"

        groups = groups_of(fp32_onnx, settings)  # what the missed build itself quantized
        if not judge(groups):
            last = tries[-1]
            raise ExportError(
                f"INT8 misses its budget even with all {len(groups)} quantized groups in "
                f"float (δ1 drop {signed(last['delta1_drop'])}, rel rise "
                f"{signed(last['rel_rise'])}{range_note(last['worst_range'])}): the loss is "
                f"in what stays quantized outside them or in the calibration itself; "
                f"calibrate on other images (--calib)"
            )
        chosen = reduce_groups(list(groups), judge, lambda: len(tries) >= MAX_TRIES)
    return {"groups": chosen, "count": len(chosen), "of": len(groups),
            "keep_float": [*base, *chosen], "tries": tries,
            "tries_capped": len(tries) >= MAX_TRIES}  # fmt: skip


def reduce_groups(
    chosen: list[str], meets: Callable[[Sequence[str]], bool], spent: Callable[[], bool]
) -> list[str]:
    """The smaller sets of ``chosen`` (which meets the budget) that still meet it: delta
    debugging's reduction to the complement. Split into ``n`` contiguous chunks (2 first);
    when leaving one chunk quantized still meets the budget, drop it (and coarsen again);
    when none can go, split finer, until single groups. One culprit group costs at most two
    tries per halving, as a bisection; a loss spread over groups is still narrowed where a
    plain bisection stops. ``spent()``: stop early (the try budget), keeping what meets."""
    n = 2
    while len(chosen) > 1 and not spent():
        size = -(-len(chosen) // n)
        chunks = [chosen[i : i + size] for i in range(0, len(chosen), size)]
        for k in range(len(chunks)):
            rest = [g for j, c in enumerate(chunks) if j != k for g in c]
            if spent():
                return chosen
            if rest and meets(rest):
                chosen, n = rest, max(n - 1, 2)
                break
        else:
            if n >= len(chosen):
                break
            n = min(2 * n, len(chosen))
    return chosen


def groups_of(fp32_onnx: Path, settings: dict[str, Any]) -> list[str]:
    """The quantized groups of the missed build, in graph order, as fp32 ONNX node names."""
    if settings["kind"] == "openvino":
        import onnx

        from export.openvino import quantized_onnx_nodes

        nodes = [n.name for n in onnx.load(str(fp32_onnx), load_external_data=False).graph.node]
        return quantized_onnx_nodes(settings["path"], nodes)
    from export.sensitivity import quantized_groups

    return quantized_groups(Path(settings["path"]))


def rebuild(
    fp32_onnx: Path,
    calib: Any,
    settings: dict[str, Any],
    keep_float: Sequence[str],
    stem: Path,
    cache_dir: Path,
) -> Path:
    """The build of ``settings`` again with ``keep_float`` in float, at ``stem`` + suffix:
    the same writer, method and cached ranges (Q/DQ), or NNCF with that ignored scope."""
    if settings["kind"] == "openvino":
        from export.openvino import export_openvino

        path = stem.with_suffix(".xml")
        export_openvino(fp32_onnx, path, "int8", calib, keep_float)
        return path
    from export.quantize import quantize_int8

    path = stem.with_suffix(".onnx")
    quantize_int8(fp32_onnx, calib, path, settings["flavour"], settings["method"], keep_float,
                  cache_dir=cache_dir, producer=settings["producer"],
                  float_precision=settings["float_precision"], parity=False)  # fmt: skip
    return path


def range_note(worst: dict[str, Any] | None) -> str:
    """``, 0-2 m drop +0.4340`` for the worst gated range of a try (nothing without one)."""
    if not worst:
        return ""
    lo, hi = worst["range_m"]
    return f", {lo:g}-{hi:g} m drop {signed(worst['delta1_drop'])}"
