"""The files of a bench run: bench.json, bench.csv, bench.md and the δ1-vs-latency plot."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.latency import TIMING
from bench.peak import peaks_line
from bench.recommend import file_note, recommendation_line
from densedepth.metrics import METRIC_KEYS
from densedepth.util.outputs import write_text_atomic
from densedepth.viz import save_figure

ENGINE_SHORT = {"onnxruntime": "ORT", "openvino": "OV", "tensorrt": "TRT", "torch": "torch",
                "torch.compile": "compiled"}  # fmt: skip
CSV_COLUMNS = (
    "label",
    "status",
    "reason",
    "format",
    "engine",
    "backbone",
    "precision",
    "device",
    "threads",
    "input_size",
    "batch",
    "engine_batch",
    "calls_per_batch",
    "runs",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "gpu_p50_ms",
    "gpu_p99_ms",
    "cuda_graph",
    "trtexec_gpu_median_ms",
    "accelerator",
    "std_ms",
    "fps",
    "speedup_vs_eager",
    "gflops",
    "gops",
    "of_peak",
    "of_peak_note",
    *METRIC_KEYS,
    "delta1_drop",
    "power_w",
    "mj_per_image",
    "images_per_j",
    "max_temp_c",
    "power",
    "path",
)


def row_label(row: dict[str, Any]) -> str:
    """``base_label``, and the file where another row would share it (``label_rows``)."""
    return base_label(row) + file_note(row)


def base_label(row: dict[str, Any]) -> str:
    """``backbone engine precision`` for a row that ran, else the model it was given as."""
    if row.get("engine"):
        parts = (row.get("backbone") or "?", row["engine"], row.get("precision", ""))
        return " ".join(p for p in parts if p)
    return row["model"]


def label_rows(rows: list[dict[str, Any]]) -> None:
    """Where rows at one input size would share a ``base_label`` (a full INT8 build beside
    its fallback, say), give each its ``label_file`` (``d121/model_int8.onnx``), which
    ``row_label`` and the recommendation add."""
    keys = [(base_label(r), size_text(r)) for r in rows]
    for row, key in zip(rows, keys, strict=True):
        path = Path(row.get("path") or row.get("model") or "")
        if keys.count(key) > 1 and path.name:
            row["label_file"] = f"{path.parent.name}/{path.name}"


def batch_text(row: dict[str, Any]) -> str:
    """``4``, or ``4 (4 x 1)`` when the engine ran the batch in several calls."""
    if "batch" not in row:
        return ""
    calls = row.get("calls_per_batch", 1)
    return f"{row['batch']} ({calls} x {row['engine_batch']})" if calls > 1 else str(row["batch"])


def size_text(row: dict[str, Any]) -> str:
    """``480x640`` (empty when unknown)."""
    return "x".join(map(str, row.get("input_size", []))) if row.get("input_size") else ""


def write_bench_report(result: dict[str, Any], out: Path) -> list[Path]:
    """bench.json, bench.csv, bench.md and pareto.png in ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        write_text_atomic(
            out / "bench.json", json.dumps(result, indent=2, default=_jsonable) + "\n"
        ),
        write_text_atomic(out / "bench.csv", csv_text(result["rows"])),
    ]
    plot = pareto_plot(result["rows"], out / "pareto.png")
    text = markdown_bench(result, plot.name if plot else None)
    paths.append(write_text_atomic(out / "bench.md", text))
    if plot is not None:
        paths.append(plot)
    return paths


def csv_text(rows: list[dict[str, Any]]) -> str:
    """One CSV line per row (its first batch size), ``CSV_COLUMNS`` in order."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "label": row_label(r), "input_size": size_text(r)})
    return buf.getvalue()


def number_cell(value: Any, fmt: str) -> str:
    """``value`` formatted, '' when absent; a signed figure that rounds to 0 prints as +0."""
    if not isinstance(value, (int, float)):
        return ""
    text = format(value, fmt)
    return text.replace("-", "+") if float(text) == 0 else text


def jetson_text(jetson: dict[str, Any] | str) -> str:
    """A Jetson's identity in words: model, L4T, power mode, jetson_clocks."""
    if isinstance(jetson, str):  # a bench.json from before the identity was a record
        return jetson
    parts = [jetson.get("model"), f"L4T {jetson.get('l4t') or '?'}",
             f"power mode {jetson.get('power_mode') or '?'}",
             f"jetson_clocks {jetson.get('jetson_clocks') or '?'}"]  # fmt: skip
    return ", ".join(p for p in parts if p)


def markdown_bench(result: dict[str, Any], plot: str | None, heading: str = "# Bench") -> str:
    """The report: environment, the latency + accuracy table, batch sweep, statuses, and the
    plot at the relative path ``plot``."""
    env, opts, rows = result["environment"], result["options"], result["rows"]
    gpu = env.get("gpu") or "none"
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
    lines = [
        heading,
        "",
        f"- CPU: {env['cpu']}, {env['cores']} cores ({env.get('usable_cores')} usable); "
        f"threads: {env['threads']}; capabilities: "
        f"{' '.join(env.get('cpu_capabilities') or []) or 'unknown'}",
        f"- GPU: {gpu}; driver: {env.get('driver') or 'n/a'}; CUDA: {env.get('cuda') or 'n/a'}; "
        f"compute capability: {env.get('compute_capability') or 'n/a'}"
        + (f"; Jetson: {jetson_text(env['jetson'])}" if env.get("jetson") else ""),
        f"- ONNX Runtime providers: {', '.join(env.get('ort_providers', []))}",
        *([f"- {peaks_line(env['peaks'])}"] if env.get("peaks") else []),
        f"- power: {env.get('power') or 'not recorded'}",
        f"- versions: {versions}; Python {env['python']} on {env['platform']}",
        f"- latency: {opts['warmup']} warm-up runs, then at least {opts['iters']} runs and "
        f"{opts['min_time']:g} s per batch size; p50/p90/p99 of one batch; {TIMING}",
        f"- accuracy: {result.get('data') or 'not measured'} ({opts['protocol']} protocol"
        + (f", first {opts['limit']} images" if opts.get("limit") else "")
        + ")",
        "",
        "| model | input | batch | status | p50 ms | p90 ms | p99 ms | mean ± std ms | FPS "
        "| speed-up | GFLOPs | GOP/s | of peak | δ1 | Δδ1 vs fp32 | rel | rms | log10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('reason', '')}"
        mean = f"{r['mean_ms']:.2f} ± {r['std_ms']:.2f}" if "mean_ms" in r else ""
        speed = f"{r['speedup_vs_eager']:.2f}x" if "speedup_vs_eager" in r else ""
        cells = [
            row_label(r),
            size_text(r),
            batch_text(r),
            status.replace("|", "/"),
            number_cell(r.get("p50_ms"), ".2f"),
            number_cell(r.get("p90_ms"), ".2f"),
            number_cell(r.get("p99_ms"), ".2f"),
            mean,
            number_cell(r.get("fps"), ".1f"),
            speed,
            number_cell(r.get("gflops"), ".2f"),
            number_cell(r.get("gops"), ".1f"),
            f"{r['of_peak']:.0%}{'*' * ('of_peak_note' in r)}" if "of_peak" in r else "",
            number_cell(r.get("delta1"), ".4f"),
            number_cell(r.get("delta1_drop"), "+.4f"),
            *(number_cell(r.get(k), ".4f") for k in ("rel", "rms", "log10")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    sweep = [(r, t) for r in rows for t in r.get("throughput", [])[1:]]
    if sweep:
        lines += ["", "Batch sweep (throughput):", "", "| model | batch | p50 ms | images/s |"]
        lines.append("|---|---|---|---|")
        for r, t in sweep:
            cells = f"{row_label(r)} | {batch_text(t)} | {t['p50_ms']:.2f} | {t['fps']:.1f}"
            lines.append(f"| {cells} |")
    lines += range_lines(rows, opts.get("protocol", ""))
    lines += gpu_timing_lines(rows)
    lines += energy_lines(rows)
    picks = result.get("recommended") or []
    if picks:
        lines += ["", "Recommended here (the fastest row within the Δδ1 limit):", ""]
        lines += [f"- {recommendation_line(pick)}" for pick in picks]
    lines += [
        "",
        "speed-up: p50 of the PyTorch eager FP32 row of the same backbone and size divided by "
        "this row's. Δδ1: δ1 of the FP32 model minus this row's (positive = lost). GOP/s: the "
        "model's operations (2 per multiply-add, convolutions and matrix products) per second "
        "at p50. of peak: GOP/s over this machine's peak of the row's precision (`bench "
        "--peak`; CPU rows): the larger of its instruction rate (cores x ops/cycle of the "
        "widest FMA/VNNI/AMX unit x clock) and its best GEMM, the peaks line says which; * "
        "above 100% (the row's of_peak_note says why). Files:",
        "",
    ]
    lines += [f"- {row_label(r)}: `{r['path']}`" for r in rows if r.get("path")]
    if plot is not None:
        lines += ["", f"![δ1 vs latency]({plot})", ""]
    return "\n".join(lines) + "\n"


def range_text(bounds: list[float]) -> str:
    """``0-2 m`` for a ``range_m`` of [0, 2]."""
    return f"{bounds[0]:g}-{bounds[1]:g} m"


def fp32_reference(row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The FP32 row that ``row``'s δ1 drop is taken against, by ``bench.recommend.add_ratios``'s
    rule (same backbone, decoder width and input size; the torch one first), among the rows
    with per-range figures; None without one."""

    def same_model(r: dict[str, Any]) -> tuple:
        return (r.get("backbone"), r.get("decoder_width"), tuple(r.get("input_size", ())))

    fp32 = [e for e in rows if e.get("status") == "ok" and "p50_ms" in e and "by_range" in e
            and e.get("precision") == "fp32" and same_model(e) == same_model(row)]  # fmt: skip
    return next((e for e in fp32 if e.get("engine") == "torch"), fp32[0] if fp32 else None)


def range_cells(row: dict[str, Any], ref: dict[str, Any] | None, ranges: list) -> list[str]:
    """δ1, rel and Δδ1 against ``ref`` for each of ``ranges`` (empty where a range has no
    pixels, or the row or its reference lacks it)."""
    mine = {tuple(e["range_m"]): e for e in row["by_range"]}
    theirs = {tuple(e["range_m"]): e for e in (ref or {}).get("by_range", [])}
    cells = []
    for bounds in ranges:
        entry, base = mine.get(bounds, {}), theirs.get(bounds, {})
        d1, base_d1 = entry.get("delta1"), base.get("delta1")
        drop = base_d1 - d1 if d1 is not None and base_d1 is not None else None
        cells += [number_cell(d1, ".4f"), number_cell(entry.get("rel"), ".4f"),
                  number_cell(drop, "+.4f")]  # fmt: skip
    return cells


def range_lines(rows: list[dict[str, Any]], protocol: str) -> list[str]:
    """The per-depth-range table (δ1, rel, Δδ1 vs FP32 per ground-truth range, one line per
    row with ``by_range``), with the pixels per range; nothing when no row has them."""
    ranged = [r for r in rows if r.get("by_range")]
    if not ranged:
        return []
    ranges = [tuple(e["range_m"]) for e in ranged[0]["by_range"]]
    head = [f"{range_text(b)} {k}" for b in ranges for k in ("δ1", "rel", "Δδ1")]
    lines = ["", "δ1 and rel by depth range (ground truth):", "",
             "| model | input | " + " | ".join(head) + " |",
             "|---|---|" + "---|" * len(head)]  # fmt: skip
    for r in ranged:
        cells = [row_label(r), size_text(r), *range_cells(r, fp32_reference(r, rows), ranges)]
        lines.append("| " + " | ".join(cells) + " |")
    counts = ", ".join(f"{range_text(e['range_m'])} {e['pixels']:,}" for e in ranged[0]["by_range"])
    pooled = ("each image's figures averaged over the images with a pixel in the range, as "
              "the KITTI protocol averages" if protocol.startswith("kitti")
              else "pooled over every pixel in the range, as δ1 and rel above")  # fmt: skip
    lines += ["", f"Pixels are binned by their ground-truth depth (each range includes its lower "
              f"edge, the last also its upper), never by the prediction, so every row is scored "
              f"on the same pixels per range: {counts} pixels. Figures are {pooled}; Δδ1 is the "
              f"FP32 row's δ1 in the range minus this row's (positive = lost); an empty range "
              f"has no figures."]  # fmt: skip
    return lines


def gpu_timing_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The GPU timing table (TensorRT rows): host end-to-end and GPU compute p50 side by side
    per batch, CUDA graph or not, and trtexec's GPU compute median where it ran; nothing when
    no row has GPU compute time."""
    timed = [(r, t) for r in rows for t in r.get("throughput", []) if "gpu_p50_ms" in t]
    if not timed:
        return []
    lines = ["", f"GPU timing ({timed[0][1]['gpu_timing']}; host end-to-end beside it):", "",
             "| model | on | batch | host p50 ms | GPU compute p50 ms | CUDA graph | "
             "trtexec GPU median ms |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r, t in timed:
        graph = "yes" if t.get("cuda_graph") else t.get("cuda_graph_note", "no")
        trtexec = number_cell(t.get("trtexec_gpu_median_ms"), ".3f") or t.get("trtexec", "")
        cells = [row_label(r), r.get("accelerator", ""), batch_text(t),
                 number_cell(t["p50_ms"], ".3f"), number_cell(t["gpu_p50_ms"], ".3f"), graph,
                 trtexec]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    commands = [t["trtexec_command"] for _, t in timed if t.get("trtexec_command")]
    lines += ["", *(f"- `{c}`" for c in commands)] if commands else []
    return lines


def energy_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The energy table (mean power, mJ per image, images per joule, hottest sensor and
    throttling seen, per row and batch size), or nothing when no row had a sensor."""
    measured = [(r, t) for r in rows for t in r.get("throughput", []) if "power_w" in t]
    if not measured:
        return []
    lines = ["", f"Energy ({measured[0][1]['power']}; during the timed runs):", "",
             "| model | batch | mean W | mJ/image | images/J | max °C | throttling |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r, t in measured:
        cells = [row_label(r), batch_text(t), number_cell(t["power_w"], ".2f"),
                 number_cell(t.get("mj_per_image"), ".1f"),
                 number_cell(t.get("images_per_j"), ".2f"),
                 number_cell(t.get("max_temp_c"), ".1f"),
                 ", ".join(t.get("throttling") or []) or "none seen"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (lower latency and higher δ1), fastest
    first."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """δ1 against p50 latency (log scale) for every measured row, one colour per backbone, one
    marker per engine, and where several input sizes were measured a marker area growing with
    the size and the size in the label; the Pareto front (over engines and sizes together)
    drawn through the best trade-offs; None when nothing has both figures."""
    pts = [r for r in rows if r["status"] == "ok" and "delta1" in r and "p50_ms" in r]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(11, 7.5) if len(pts) > 16 else (8, 5.5), dpi=110)
    backbones = sorted({r.get("backbone") or "?" for r in pts})
    colors = dict(zip(backbones, plt.get_cmap("tab10").colors, strict=False))
    markers = {"torch": "o", "torch.compile": "v", "onnxruntime": "s", "openvino": "D",
               "tensorrt": "^"}  # fmt: skip
    span = max(r["delta1"] for r in pts) - min(r["delta1"] for r in pts) or 1.0
    pixels = {size_text(r): float(np.prod(r.get("input_size") or [1])) for r in pts}
    several = len(pixels) > 1
    placed: list[tuple[float, float]] = []
    for r in sorted(pts, key=lambda r: r["p50_ms"]):
        x, y = r["p50_ms"], r["delta1"]
        area = 60 * (pixels[size_text(r)] / max(pixels.values())) ** 0.5 if several else 60
        ax.scatter(
            x,
            y,
            color=colors[r.get("backbone") or "?"],
            marker=markers.get(r["engine"], "x"),
            s=max(area, 12),
            zorder=3,
        )
        # points close together get their labels stacked instead of printed over each other
        near = sum(abs(np.log10(x / px)) < 0.15 and abs(y - py) < 0.04 * span for px, py in placed)
        placed.append((x, y))
        size = f" @{r['input_size'][0]}" if several else ""  # the height; area says it too
        ax.annotate(
            f"{ENGINE_SHORT.get(r['engine'], r['engine'])} {r['precision']}{size}",
            (x, y),
            textcoords="offset points",
            xytext=(5, 4 + 9 * near if near % 2 == 0 else -9 * (near + 1) // 2 - 4),
            fontsize=7,
            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"} if near else None,
        )
    front = pareto_front([(r["p50_ms"], r["delta1"]) for r in pts])
    ax.plot(
        [pts[i]["p50_ms"] for i in front],
        [pts[i]["delta1"] for i in front],
        color="0.4",
        linestyle="--",
        drawstyle="steps-post",
        zorder=2,
        label="Pareto front",
    )
    for b in backbones:
        ax.scatter([], [], color=colors[b], label=b)
    for engine, m in markers.items():
        if any(r["engine"] == engine for r in pts):
            ax.scatter([], [], color="0.5", marker=m, label=engine)
    ax.set_xscale("log")
    ax.margins(x=0.08, y=0.18)  # room for stacked labels
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("p50 latency per batch (ms, log scale)")
    ax.set_ylabel("δ1 (higher is better)")
    sizes = sorted({size_text(r) for r in pts})
    scale = " (marker area grows with the input)" if several else ""
    title = f"Accuracy vs latency, batch {pts[0].get('batch', 1)}, input {', '.join(sizes)}"
    ax.set_title(title + scale, fontsize=10 if several else None)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)
