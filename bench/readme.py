"""``make figures``: the benchmarks page's measured CPU tables, regenerated from one bench.json.

``python -m bench.readme BENCH_JSON PAGE`` (``make figures`` passes ``docs/benchmarks.md``; any
Markdown file with the markers will do) replaces the text between the page's
``<!-- figures:start -->`` and ``<!-- figures:end -->`` markers with: the machine (CPU, its
extensions, threads, GEMM peaks of ``bench --peak``, versions), one table per input size with
every engine's p50, speed-up against PyTorch eager FP32, GOP/s and its share of the peak of its
precision, and Δδ1 against FP32, per backbone; and the recommendation lines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.peak import peaks_line
from bench.recommend import recommendation_line
from bench.report import number_cell, size_text
from densedepth.util.errors import DenseDepthError
from densedepth.util.outputs import write_text_atomic

START, END = "<!-- figures:start -->", "<!-- figures:end -->"
ENGINE_NAMES = {
    "torch": "PyTorch eager",
    "torch.compile": "torch.compile",
    "onnxruntime": "ONNX Runtime",
    "openvino": "OpenVINO",
    "tensorrt": "TensorRT",
}


def machine_lines(result: dict[str, Any]) -> list[str]:
    """Where the figures were measured."""
    env, opts = result["environment"], result["options"]
    versions = env.get("versions", {})
    keep = ("torch", "onnxruntime", "openvino", "nncf", "tensorrt")
    lines = [
        f"- CPU: {env['cpu']}, {env.get('usable_cores') or env['cores']} usable cores, "
        f"threads {env['threads']}; extensions: {' '.join(env.get('cpu_capabilities') or [])}",
        f"- versions: {', '.join(f'{k} {versions[k]}' for k in keep if k in versions)}",
        f"- batch {opts['batches'][0]}, at least {opts['iters']} runs and {opts['min_time']:g} s "
        f"per row; accuracy: {result.get('data')} ({opts['protocol']}"
        + (f", first {opts['limit']} images" if opts.get("limit") else "")
        + f"); run {result.get('finished', '')[:16].replace('T', ' ')} UTC, "
        f"{result['seconds'] / 60:.0f} min",
    ]
    if env.get("peaks"):
        lines.insert(1, f"- {peaks_line(env['peaks'])}")
    return lines


def size_table(rows: list[dict[str, Any]], size: str, backbones: list[str]) -> list[str]:
    """One row per engine and precision, two columns groups per backbone."""
    head = "| engine |" + "".join(
        f" {b} p50 (speed-up) | GOP/s (of peak) | Δδ1 |" for b in backbones
    )
    lines = [f"Input {size}:", "", head, "|---|" + "---|---|---|" * len(backbones)]
    engines: list[tuple[str, str]] = []
    for r in rows:
        if size_text(r) == size and _key(r) not in engines:
            engines.append(_key(r))
    for engine, precision in engines:
        cells = [f"{ENGINE_NAMES.get(engine, engine)} {precision}".strip()]
        same = [r for r in rows if size_text(r) == size and _key(r) == (engine, precision)]
        for b in backbones:  # a row that did not run never learned its backbone: its status
            r = next((r for r in same if r.get("backbone") == b), None)
            cells += row_cells(r or next((r for r in same if not r.get("backbone")), None))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _key(r: dict[str, Any]) -> tuple[str, str]:
    """(engine, precision) of a row that ran, (format key, '') of one that did not."""
    return r.get("engine") or r.get("format", ""), r.get("precision", "")


def row_cells(r: dict[str, Any] | None) -> list[str]:
    """p50 (speed-up), GOP/s (share of peak), Δδ1 of one row; its status when it did not run."""
    if r is None:
        return ["", "", ""]
    if r.get("status") != "ok":
        return [f"{r.get('status', '')}: {r.get('reason', '')}".replace("|", "/"), "", ""]
    speed = f" ({r['speedup_vs_eager']:.2f}x)" if "speedup_vs_eager" in r else ""
    share = f" ({r['of_peak']:.0%}{'*' * ('of_peak_note' in r)})" if "of_peak" in r else ""
    gops = number_cell(r.get("gops"), ".0f")
    return [f"{r['p50_ms']:.0f} ms{speed}", f"{gops}{share}" if gops else "",
            number_cell(r.get("delta1_drop"), "+.4f")]  # fmt: skip


def figures_markdown(result: dict[str, Any]) -> str:
    """The block between the markers."""
    rows = result["rows"]
    backbones = list(dict.fromkeys(r["backbone"] for r in rows if r.get("backbone")))
    sizes = list(dict.fromkeys(size_text(r) for r in rows if size_text(r)))
    lines = [*machine_lines(result), ""]
    for size in sizes:
        lines += [*size_table(rows, size, backbones), ""]
    lines += [f"- {recommendation_line(p)}" for p in result.get("recommended", [])]
    return "\n".join(lines).rstrip() + "\n"


def splice(text: str, block: str) -> str:
    """``text`` with the part between START and END replaced by ``block``."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise DenseDepthError(
            f"the benchmarks page needs one {START} ... {END} pair around the figures"
        )
    head, rest = text.split(START, 1)
    return f"{head}{START}\n{block}{END}{rest.split(END, 1)[1]}"


def main(argv: list[str]) -> int:
    """``python -m bench.readme BENCH_JSON PAGE``: the figures spliced into PAGE (for
    ``make figures``, the benchmarks page ``docs/benchmarks.md``)."""
    if len(argv) != 2:
        print("usage: python -m bench.readme BENCH_JSON PAGE (docs/benchmarks.md)", file=sys.stderr)
        return 2
    bench_json, page = map(Path, argv)
    try:
        result = json.loads(bench_json.read_text())
        text = splice(page.read_text(), figures_markdown(result))
    except (OSError, ValueError, KeyError, DenseDepthError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_text_atomic(page, text)
    print(f"updated {page} from {bench_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
