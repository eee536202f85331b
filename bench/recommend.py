"""Ratios within one bench run and the recommendation they lead to.

Speed-up against the PyTorch eager FP32 row, δ1 drop against the FP32 model of the same
backbone, width and input size, achieved GOP/s; then per model the fastest row within
``max_drop`` δ1 of FP32, and the same pick read back from a bench.json of this machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.machine import same_machine
from densedepth.util.errors import DenseDepthError
from densedepth.util.optional import optional_torch


def model_gflops(backbone: str, decoder_width: float, size: tuple[int, int]) -> float | None:
    """GFLOPs of one forward pass, counted by torch (None without torch or for a foreign
    backbone: the GOP/s column stays empty)."""
    if optional_torch() is None:
        return None
    from densedepth.model import BACKBONES, count_flops

    if backbone not in BACKBONES:
        return None
    return count_flops(backbone, decoder_width, size) / 1e9


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Speed-up against the eager FP32 row, δ1 drop against the FP32 model, and achieved
    GOP/s beside the model's GFLOPs; all among rows of the same backbone, width and size."""
    flops: dict[tuple, float | None] = {}

    def same_model(r: dict[str, Any]) -> tuple:
        return (r.get("backbone"), r.get("decoder_width"), tuple(r.get("input_size", ())))

    ok = [r for r in rows if r["status"] == "ok" and "p50_ms" in r]
    for r in ok:
        key = same_model(r)
        eager = next(
            (e for e in ok if same_model(e) == key and e["engine"] == "torch"
             and e["precision"] == "fp32" and e["device"] == r["device"]),
            None,
        )  # fmt: skip
        fp32 = [
            e for e in ok if same_model(e) == key and e["precision"] == "fp32" and "delta1" in e
        ]
        if eager is not None:
            r["speedup_vs_eager"] = eager["p50_ms"] / r["p50_ms"]
        if fp32 and "delta1" in r:
            ref = next((e for e in fp32 if e["engine"] == "torch"), fp32[0])
            r["delta1_drop"] = ref["delta1"] - r["delta1"]
        if r.get("backbone") and r.get("decoder_width"):
            if key not in flops:
                flops[key] = model_gflops(r["backbone"], r["decoder_width"], key[2])
            if flops[key] is not None:
                r["gflops"] = flops[key]
                r["gops"] = flops[key] * r["batch"] / (r["p50_ms"] / 1e3)


def within_budget(row: dict[str, Any], max_drop: float, max_power: float | None) -> bool:
    """Whether a row loses at most ``max_drop`` δ1 and (with a power budget) drew at most
    ``max_power`` watts on average; a row without a power reading never fits a budget."""
    if row["delta1_drop"] > max_drop:
        return False
    return max_power is None or (row.get("power_w") is not None and row["power_w"] <= max_power)


def recommend(
    rows: list[dict[str, Any]], max_drop: float = 0.01, max_power: float | None = None
) -> list[dict[str, Any]]:
    """Per backbone, width and input size: the fastest row (p50) whose δ1 is within
    ``max_drop`` of its FP32 model's (and whose mean power is at most ``max_power`` W), with its
    speed-up against the PyTorch eager FP32 row (or, without one, against the slowest FP32 row
    measured)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("status") == "ok" and "p50_ms" in r and "delta1_drop" in r:
            key = (r.get("backbone"), r.get("decoder_width"), tuple(r.get("input_size", ())))
            groups.setdefault(key, []).append(r)
    picks = []
    for (backbone, _, size), members in groups.items():
        fit = [r for r in members if within_budget(r, max_drop, max_power)]
        if not fit:
            continue
        best = min(fit, key=lambda r: r["p50_ms"])
        base = next((r for r in members if r.get("engine") == "torch"
                     and r.get("precision") == "fp32"), None)  # fmt: skip
        if base is None:
            base = max((r for r in members if r.get("precision") == "fp32"),
                       key=lambda r: r["p50_ms"], default=best)  # fmt: skip
        picks.append({
            "backbone": backbone, "input_size": list(size), "format": best.get("format"),
            "label": pick_label(best), "path": best.get("path"),
            "p50_ms": best["p50_ms"], "delta1_drop": best["delta1_drop"],
            "speedup": base["p50_ms"] / best["p50_ms"],
            "against": pick_label(base), "max_drop": max_drop,
            "max_power": max_power, "power_w": best.get("power_w"),
            "mj_per_image": best.get("mj_per_image"),
        })  # fmt: skip
    return picks


def file_note(row: dict[str, Any]) -> str:
    """`` (d121/model_int8.onnx)`` where another row would share this one's label
    (``bench.report.label_rows``), else ""."""
    return f" ({row['label_file']})" if row.get("label_file") else ""


def pick_label(row: dict[str, Any]) -> str:
    """``engine precision``, and the file where another row shares them."""
    return f"{row.get('engine')} {row.get('precision')}{file_note(row)}"


def recommendation_line(pick: dict[str, Any]) -> str:
    """e.g. ``densenet121 480x640: openvino int8, 80.1 ms, 11.0x torch fp32, Δδ1 +0.0004``."""
    size = "x".join(map(str, pick["input_size"]))
    drop = format(pick["delta1_drop"], "+.4f")
    drop = drop.replace("-", "+") if float(drop) == 0 else drop  # -0.0000 reads as a loss
    budget = f"Δδ1 <= {pick['max_drop']:g}"
    if pick.get("max_power") is not None:
        budget += f", <= {pick['max_power']:g} W"
    energy = ""
    if pick.get("power_w") is not None and pick.get("mj_per_image") is not None:
        energy = f", {pick['power_w']:.1f} W, {pick['mj_per_image']:.1f} mJ/image"
    return (
        f"recommended for {pick['backbone']} {size} ({budget}): "
        f"{pick['label']}, p50 {pick['p50_ms']:.2f} ms, {pick['speedup']:.2f}x "
        f"{pick['against']}, Δδ1 {drop}{energy}"
    )


def nothing_fits_line(rows: list[dict[str, Any]], max_power: float) -> str:
    """Why no row fits a power budget: none had a reading (and the sensor's reason), or all
    drew more."""
    measured = [r for r in rows if r.get("power_w") is not None]
    if not measured:
        reasons = {r.get("power") for r in rows if r.get("power")}
        why = next(iter(reasons), "no row was measured")
        return f"no engine fits --max-power {max_power:g} W: power was not measured ({why})"
    least = min(measured, key=lambda r: r["power_w"])
    return (
        f"no engine fits --max-power {max_power:g} W and the Δδ1 budget: the least was "
        f"{least['power_w']:.1f} W ({least.get('engine')} {least.get('precision')})"
    )


def pick_for(picks: list[dict[str, Any]], meta: dict[str, Any], where: str) -> dict[str, Any]:
    """The recommendation for the model ``meta`` describes (backbone, input size)."""
    size = list(meta.get("input_size", []))
    for pick in picks:
        if pick.get("backbone") == meta.get("backbone") and list(pick["input_size"]) == size:
            return pick
    raise DenseDepthError(
        f"{where} recommends nothing for {meta.get('backbone')} "
        f"{'x'.join(map(str, size))}; bench that model here (or drop --from-bench)"
    )


def pick_from_bench(bench_json: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The recommendation an earlier bench made for this model on this machine."""
    try:
        result = json.loads(Path(bench_json).read_text())
        picks, env = result["recommended"], result["environment"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DenseDepthError(
            f"--from-bench {bench_json} is not a bench.json with recommendations; run "
            f"`cli.py bench` first"
        ) from None
    why = same_machine(env)
    if why:
        raise DenseDepthError(
            f"--from-bench {bench_json} was measured on another machine ({why}); bench here "
            f"or drop --from-bench"
        )
    return pick_for(picks, meta, str(bench_json))
