"""Which INT8 layers cost the depth: per-group sensitivity on held-out images.

A group is one node the writer quantizes with its Q/DQ inputs (a Conv with its activation and
weights; a Concat, BatchNormalization, pooling or Resize where the writer quantizes one), named
as in the fp32 graph. Each group is measured by leaving ONLY it in float, everything else INT8,
through the same writer, calibration ranges (cached: calibrated once) and keep-float base as
the full INT8 build: its δ1 gain and output-error reduction against the full INT8 model, on a
small fixed set of held-out images (``export.int8_budget.held_out_set``), ranked by the δ1
distance to FP32 it recovers (``delta1_recovered``: the gain where INT8 loses δ1; a weak FP32
model can gain δ1 from broken INT8, and then moving back towards FP32 is the repair).
Leave-one-in-float, not quantize-one-only: it measures what each group costs inside the INT8
model, upstream errors included, which is what leaving it in float buys (the fallback's question);
quantize-one-only would measure each group against a float neighbourhood that the deployed
model does not have.

Results are cached beside the report by (fp32 ONNX hash, calibration set hash, held-out images,
flavour, method, keep-float base, groups), so a second report reads them again; the rows so
far are saved after every group, so an interrupted report resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.util.files import file_sha256
from densedepth.util.onnx_io import read_metadata
from densedepth.util.outputs import (
    discard_scratch_build,
    record_written,
    reusable_cache,
    scratch_beside,
    write_text_atomic,
    written_by_us,
)

Log = Callable[[str], None]


def quantized_groups(int8_onnx: Path) -> list[str]:
    """The groups a Q/DQ model quantizes, in graph order: every node (not Q/DQ itself) with an
    input the writer dequantizes (Conv, and the Concat / BatchNormalization / pooling / Resize
    neighbourhoods where it quantizes one), named as in the fp32 graph."""
    import onnx

    model = onnx.load(str(int8_onnx), load_external_data=False)
    made_by = {out: n.op_type for n in model.graph.node for out in n.output}
    return [n.name for n in model.graph.node
            if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(made_by.get(i) == "DequantizeLinear" for i in n.input)]  # fmt: skip


def _remembering(predict: Callable[[np.ndarray], np.ndarray]) -> tuple[Callable, dict]:
    """``predict``, remembering each image's output by its input bytes: the evaluation's
    unmirrored pass is the plain prediction, so the error against FP32 needs no second run."""
    seen: dict[bytes, np.ndarray] = {}

    def remembered(batch: np.ndarray) -> np.ndarray:
        out = predict(batch)
        for i in range(len(batch)):
            seen[np.ascontiguousarray(batch[i : i + 1]).tobytes()] = out[i : i + 1]
        return out

    return remembered, seen


def _score(path: Path, held: Any, size: tuple[int, int], rgb: np.ndarray, ref: np.ndarray | None,
           images: int) -> dict[str, Any]:  # fmt: skip
    """δ1 / rel of ``path`` on the held-out images, and its mean |depth - ref| in metres."""
    from densedepth.evaluation import evaluate_dataset
    from export.int8_budget import cpu_predictor

    predict, seen = _remembering(cpu_predictor(path))
    m = evaluate_dataset(predict, held.dataset, size, limit=images)
    keys = [rgb[i : i + 1].tobytes() for i in range(len(rgb))]
    known = all(k in seen for k in keys)
    depth = np.concatenate([seen[k] for k in keys]) if known else predict(rgb)
    score = {"delta1": m["delta1"], "rel": m["rel"], "by_range": m.get("by_range", []),
             "depth": depth}  # fmt: skip
    if ref is not None:
        score["abs_err_m"] = float(np.mean(np.abs(depth - ref)))
    return score


RANK_BY = "delta1-recovered, then error drop"


def delta1_recovered(fp32: float, int8: float, group_float: float) -> float:
    """How much of the full INT8 model's δ1 distance from FP32 leaving one group in float
    takes back: |int8 - fp32| - |group_float - fp32|. Where INT8 loses δ1 this is the δ1
    gain up to FP32 (beyond it, the overshoot counts against); where broken INT8 raises δ1
    (a weak FP32 model), moving back towards FP32 counts and rising further counts against."""
    return abs(int8 - fp32) - abs(group_float - fp32)


def cache_key(fp32_onnx: Path, calib: Any, held: Any, images: int, **settings: Any) -> str:
    """What a sensitivity result depends on, hashed."""
    text = json.dumps({"onnx": file_sha256(fp32_onnx), "calib": calib.sha256,
                       "held_out": held.label, "images": images, **settings},
                      sort_keys=True, default=str)  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def measure_sensitivity(
    fp32_onnx: Path,
    calib: Any,
    held: Any,
    out_dir: Path,
    images: int = 8,
    flavour: str = "cpu",
    method: str = "minmax",
    keep_float: Sequence[str] = ("depth-out",),
    groups: Sequence[str] | None = None,
    log: Log = lambda s: None,
    limit: int = 0,
    producer: str = "auto",
    float_precision: str = "fp32",
) -> dict[str, Any]:
    """fp32, full INT8 and every group left alone in float (``groups``: those, default every
    group the writer quantizes, ``quantized_groups``; ``limit``: the first N), ranked by the
    δ1 they recover (``delta1_recovered``) then output-error reduction; read from / written
    to the cache in ``out_dir``.
    ``producer`` and ``float_precision``: the TensorRT flavour's writer and float layers, as
    ``export.quantize.quantize_int8`` takes them."""
    from densedepth.data.preprocess import rgb_to_input
    from densedepth.evaluation import evaluation_arrays
    from export.quantize import quantize_int8

    size = tuple(read_metadata(fp32_onnx)["input_size"])
    chosen_spec = list(groups) if groups is not None else "all"
    settings = {"flavour": flavour, "method": method, "keep_float": list(keep_float),
                "groups": chosen_spec, "limit": limit, "producer": producer,
                "float_precision": float_precision, "rank_by": RANK_BY}  # fmt: skip
    cache = (
        out_dir / f"int8_sensitivity_{cache_key(fp32_onnx, calib, held, images, **settings)}.json"
    )
    if reusable_cache(cache):
        log(f"sensitivity reused: {cache}")
        return json.loads(cache.read_text())
    raw, _, _ = evaluation_arrays(held.dataset, size, images)
    rgb = np.concatenate([rgb_to_input(r, size) for r in raw])
    fp32 = _score(fp32_onnx, held, size, rgb, None, images)
    out_dir.mkdir(parents=True, exist_ok=True)
    with scratch_beside(cache) as work:

        def quantized(name: str, keep: Sequence[str]) -> dict[str, Any]:
            path = work / f"{name}.onnx"
            quantize_int8(fp32_onnx, calib, path, flavour, method, keep, cache_dir=out_dir,
                          producer=producer, float_precision=float_precision,
                          parity=False)  # fmt: skip
            scores = _score(path, held, size, rgb, fp32["depth"], images)
            if name != "full":  # (the full build names the groups below)
                discard_scratch_build(path)
            return scores

        full = quantized("full", keep_float)
        chosen = list(groups) if groups is not None else quantized_groups(work / "full.onnx")
        chosen = chosen[:limit] if limit > 0 else chosen
        partial = cache.with_name(f"{cache.stem}.partial.json")
        before = _measured_before(partial, chosen, log)
        rows, started, new = [], time.perf_counter(), 0
        for i, node in enumerate(chosen, 1):
            if node in before:
                rows.append(before[node])
                continue
            s = quantized(f"g{i}", [*keep_float, node])
            rows.append({"node": node, "delta1": s["delta1"], "rel": s["rel"],
                         "abs_err_m": s["abs_err_m"],
                         "delta1_gain": s["delta1"] - full["delta1"],
                         "delta1_recovered": delta1_recovered(fp32["delta1"], full["delta1"],
                                                              s["delta1"]),
                         "abs_err_drop_m": full["abs_err_m"] - s["abs_err_m"]})  # fmt: skip
            write_text_atomic(partial, json.dumps({"groups": chosen, "rows": rows}) + "\n")
            record_written(partial)
            new += 1
            left = (time.perf_counter() - started) / new * (len(chosen) - i)
            log(f"group {i}/{len(chosen)} {node}: δ1 {s['delta1']:.4f} (recovered "
                f"{rows[-1]['delta1_recovered']:+.4f}); about {left:.0f} s left")  # fmt: skip
    rows.sort(key=lambda r: (-r["delta1_recovered"], -r["abs_err_drop_m"]))
    result = {
        "fp32": {k: fp32[k] for k in ("delta1", "rel", "by_range")},
        "int8": {k: full[k] for k in ("delta1", "rel", "abs_err_m", "by_range")},
        "held_out": held.label, "images": images, **settings, "measured_groups": chosen,
        "ranked": rows,
    }  # fmt: skip
    write_text_atomic(cache, json.dumps(result, indent=2) + "\n")
    record_written(cache)
    if written_by_us(partial):
        partial.unlink()
    return result


def _measured_before(partial: Path, chosen: list[str], log: Log) -> dict[str, dict[str, Any]]:
    """The rows an interrupted report of the same key measured (``partial``, written after
    every group), by node; nothing where there is none or it measured other groups."""
    if not reusable_cache(partial):
        return {}
    saved = json.loads(partial.read_text())
    if saved.get("groups") != chosen:
        return {}
    log(f"sensitivity resumed: {len(saved['rows'])} of {len(chosen)} groups measured before "
        f"({partial})")  # fmt: skip
    return {r["node"]: r for r in saved["rows"]}


def report_markdown(result: dict[str, Any], top: int = 20, plot: str | None = None) -> str:
    """The ranked table (the ``top`` groups) as Markdown."""
    f32, i8 = result["fp32"], result["int8"]
    lines = [
        "# INT8 sensitivity", "",
        f"{result['images']} held-out images ({result['held_out']}); {result['flavour']} "
        f"flavour{writer_text(result)}, {result['method']} calibration; fp32 δ1 "
        f"{f32['delta1']:.4f}, full INT8 δ1 {i8['delta1']:.4f} (mean |Δdepth| "
        f"{i8['abs_err_m']:.4f} m). Each row: that group alone left in float, everything "
        "else INT8; ranked by the δ1 distance to fp32 it recovers (|int8 - fp32| - "
        "|row - fp32|: the δ1 gain where INT8 loses δ1), then by the error drop.", "",
        "| rank | group (node) | δ1 | δ1 recovered | δ1 gain | rel | mean abs err m | "
        "err drop m |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for rank, r in enumerate(result["ranked"][:top], 1):
        cells = (
            f"{rank} | {r['node']} | {r['delta1']:.4f} | {r['delta1_recovered']:+.4f} | "
            f"{r['delta1_gain']:+.4f} | "
            f"{r['rel']:.4f} | {r['abs_err_m']:.4f} | {r['abs_err_drop_m']:+.4f}"
        )
        lines.append(f"| {cells} |")
    lines += range_table(f32.get("by_range", []), i8.get("by_range", []))
    if plot:
        lines += ["", f"![top groups]({plot})"]
    return "\n".join(lines) + "\n"


def writer_text(result: dict[str, Any]) -> str:
    """`` (onnxruntime writer, fp16 float layers)`` for a TensorRT-flavour report (nothing
    for the CPU flavour or a report cached before these were recorded)."""
    if result.get("flavour") != "tensorrt" or "producer" not in result:
        return ""
    return f" ({result['producer']} writer, {result['float_precision']} float layers)"


def range_table(fp32: list[dict[str, Any]], int8: list[dict[str, Any]]) -> list[str]:
    """fp32 and full-INT8 δ1 / rel per ground-truth depth range (nothing without ranges)."""
    if not fp32 or not int8:
        return []
    lines = ["", "By ground-truth depth range (full INT8):", "",
             "| range | pixels | fp32 δ1 | int8 δ1 | Δδ1 | fp32 rel | int8 rel |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for a, b in zip(fp32, int8, strict=True):
        lo, hi = a["range_m"]
        if not a["pixels"]:
            lines.append(f"| {lo:g}-{hi:g} m | 0 | | | | | |")
            continue
        lines.append(f"| {lo:g}-{hi:g} m | {a['pixels']} | {a['delta1']:.4f} | "
                     f"{b['delta1']:.4f} | {a['delta1'] - b['delta1']:+.4f} | {a['rel']:.4f} | "
                     f"{b['rel']:.4f} |")  # fmt: skip
    return lines


def bar_plot(result: dict[str, Any], path: Path, top: int = 20) -> Path:
    """The ``top`` groups' recovered δ1 (``delta1_recovered``) as horizontal bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = result["ranked"][:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5), dpi=110)
    ax.barh([r["node"] for r in rows], [r["delta1_recovered"] for r in rows], color="tab:blue")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel("δ1 distance to fp32 recovered when this group alone stays in float")
    ax.set_title(f"INT8 sensitivity (fp32 δ1 {result['fp32']['delta1']:.4f}, full INT8 "
                 f"{result['int8']['delta1']:.4f})")  # fmt: skip
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    with scratch_beside(path) as work:
        tmp = work / path.name
        fig.savefig(tmp)
        plt.close(fig)
        tmp.replace(path)
    record_written(path)
    return path
