"""The README's main job on the embedded synthetic data, end to end.

Like ``cli.py`` this sits above every stage (it may import train, engines and bench); the CLI's
``demo`` verb only parses options and calls ``run_demo``.

Steps: write the synthetic set in every real NYU layout and read each back; train DenseNet169
and DenseNet121 DenseDepth with the paper's recipe on held-in synthetic scenes; evaluate each
before (same initial weights) and after training on held-out scenes; compare both on the same
test images (report.md, report.json, compare.png); export each to every format of the format
table that builds here (INT8 calibrated on training scenes) and bench them all (latency and
accuracy, bench.md + pareto.png); write demo.md with every table and figure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape

from bench.compare import compare_models
from bench.harness import BenchOptions, run_bench
from bench.report import markdown_bench
from densedepth.data.readers import DATASET_LAYOUTS, open_dataset
from densedepth.data.writers import write_synthetic
from densedepth.evaluation import evaluate_dataset
from densedepth.metrics import METRIC_KEYS
from densedepth.model import imagenet_weights_path
from densedepth.precision import resolve_precision
from densedepth.util.device import resolve_device
from densedepth.util.outputs import write_text_atomic
from densedepth.viz import save_grid
from engines.torch_runner import TorchRunner
from export.formats import DEPLOY_FORMATS
from train.config import TrainConfig
from train.loop import build_model, fit


@dataclass
class DemoConfig:
    """Sizes chosen so both backbones train in about ten minutes on two CPU cores."""

    out: Path = Path("runs/demo")
    input_size: tuple[int, int] = (64, 96)
    steps: int | None = None  # None: FP32_STEPS, scaled by the chosen precision's speed-up
    precision: str = "auto"  # training precision (densedepth.precision)
    batch_size: int = 8
    lr: float = 1e-4
    train_scenes: int = 600
    test_scenes: int = 48
    figure_images: int = 4
    bench_min_time: float = 1.0  # seconds of timed runs per engine (and at least 20 runs)
    bench_iters: int = 20
    calib_images: int = 300  # INT8 calibration, from the training scenes (500 usual; time)
    seed: int = 0
    device: str = "auto"
    backbones: tuple[str, ...] = ("densenet169", "densenet121")  # the two the paper compares
    formats: tuple[str, ...] = tuple(f.key for f in DEPLOY_FORMATS)  # the rows benched


FP32_STEPS = 150  # about ten minutes for both backbones in fp32 on two CPU cores
# Training speed-up of the demo's steps against fp32, measured side by side (see docs/training.md:
# bf16 autocast + channels_last on a 2-core Xeon with AMX; fp16 on a GPU not measured here).
STEP_SPEEDUP = {"fp32": 1.0, "bf16": 1.4, "fp16": 1.0}


def demo_steps(cfg: DemoConfig, precision: str) -> int:
    """The steps of each backbone: ``cfg.steps`` when given, else the fp32 budget spent at the
    resolved ``precision``'s speed (bf16 where the CPU has it trains more steps in that time)."""
    if cfg.steps is not None:
        return cfg.steps
    return round(FP32_STEPS * STEP_SPEEDUP.get(precision, 1.0))


def default_weights(backbone: str) -> str:
    """ImageNet when torch hub's cache has the file (never downloaded), else from scratch."""
    return "imagenet" if imagenet_weights_path(backbone).is_file() else "none"


def write_every_layout(
    out: Path, size: tuple[int, int], table: Callable[[Any], None]
) -> list[Path]:
    """Write a few synthetic scenes in every real layout and read each back."""
    paths = []
    for fmt in DATASET_LAYOUTS:
        path = write_synthetic(out / fmt, fmt, 8, 4, seed=0, height=size[0], width=size[1])
        table(open_dataset(path, "test"))
        paths.append(path)
    return paths


def run_demo(cfg: DemoConfig, console: Console, table: Callable[[Any], None]) -> dict[str, Any]:
    """Run every step; returns the summary also written to demo.json and demo.md."""
    t0 = time.perf_counter()
    out = cfg.out
    h, w = cfg.input_size
    console.rule("1. synthetic NYU data written in every real layout, read back")
    write_every_layout(out / "data", cfg.input_size, table)
    test_kwargs = {"n": cfg.test_scenes, "seed": cfg.seed * 2 + 1, "height": h, "width": w}
    test_set = open_dataset("synthetic", "test", **test_kwargs)
    samples = [test_set[i] for i in range(cfg.figure_images)]
    save_grid(
        out / "samples.png", [s[0] for s in samples], {"ground truth": [s[1] for s in samples]}
    )

    precision = resolve_precision(cfg.precision, resolve_device(cfg.device))
    steps = demo_steps(cfg, precision.name)
    console.print(f"training precision {precision.name} ({precision.why}): {steps} steps each")
    results: dict[str, Any] = {}
    for backbone in cfg.backbones:
        console.rule(f"2. {backbone}: before, training, after")
        tcfg = TrainConfig(
            backbone=backbone,
            weights=default_weights(backbone),
            data="synthetic",
            epochs=10**6,
            max_steps=steps,
            precision=cfg.precision,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            input_size=cfg.input_size,
            out=str(out / backbone),
            device=cfg.device,
            seed=cfg.seed,
            checkpoint_every=100,
            val_samples=0,  # every validation scene (held out of the training scenes)
            synthetic_train=cfg.train_scenes,
            synthetic_test=cfg.test_scenes,
        )
        torch.manual_seed(tcfg.seed)  # the same initial weights fit() starts from
        before = evaluate_dataset(
            TorchRunner(build_model(tcfg), device=cfg.device), test_set, (h, w)
        )
        t_train = time.perf_counter()
        summary = fit(tcfg, console=console)
        train_s = time.perf_counter() - t_train
        best = Path(summary["best_path"])
        after = evaluate_dataset(TorchRunner(best, device=cfg.device), test_set, (h, w))
        results[backbone] = {
            "weights": tcfg.weights,
            "before": before,
            "after": after,
            "img_per_s": summary["img_per_s"],
            "precision": summary["precision"],
            "train_seconds": train_s,
            "steps": summary["steps"],
            "checkpoint": str(best),
        }
        console.print(
            f"{backbone}: δ1 {before['delta1']:.3f} -> {after['delta1']:.3f}, "
            f"rel {before['rel']:.3f} -> {after['rel']:.3f}, {summary['img_per_s']:.1f} img/s"
        )

    console.rule("3. compare on the same held-out images")
    models = [results[b]["checkpoint"] for b in cfg.backbones]
    report = compare_models(
        models,
        "synthetic",
        out / "compare",
        n_images=cfg.figure_images,
        device=cfg.device,
        data_kwargs=test_kwargs,
    )
    console.rule("4. export, INT8 calibration, every engine of the format table benched")
    log = lambda line: console.print(escape(line))  # noqa: E731 - file names may hold [brackets]
    bench = run_bench(models, out / "bench", bench_options(cfg, test_kwargs), log=log)
    ran = {"out": str(cfg.out), "steps": steps, "precision": precision.name}
    demo = {
        "config": {**cfg.__dict__, **ran},
        "wall_seconds": time.perf_counter() - t0,
        "models": results,
        "report": str(out / "compare" / "report.md"),
        "figure": report["figure"],
        "bench": {"report": str(out / "bench" / "bench.md"), "rows": bench["rows"]},
    }
    write_text_atomic(out / "demo.json", json.dumps(demo, indent=2, default=str) + "\n")
    write_text_atomic(out / "demo.md", demo_markdown(demo, bench))
    return demo


def bench_options(cfg: DemoConfig, test_kwargs: dict[str, Any]) -> BenchOptions:
    """Every format of the table from each checkpoint, benched at the training size on the
    held-out scenes; INT8 calibrated on training scenes."""
    h, w = cfg.input_size
    return BenchOptions(
        iters=cfg.bench_iters,
        min_time=cfg.bench_min_time,
        device=cfg.device,
        data="synthetic",
        data_kwargs=test_kwargs,
        build=cfg.formats,
        calib="synthetic",
        calib_images=cfg.calib_images,
        calib_kwargs={"seed": cfg.seed, "height": h, "width": w},
    )


def demo_markdown(demo: dict[str, Any], bench: dict[str, Any]) -> str:
    """Before/after table per backbone, training speed, and where the figures are."""
    cfg = demo["config"]
    lines = [
        "# DenseDepth demo on synthetic NYU-format scenes",
        "",
        f"Input {cfg['input_size'][0]}x{cfg['input_size'][1]}, {cfg['steps']} steps of batch "
        f"{cfg['batch_size']} (Adam {cfg['lr']}, {cfg['precision']}), {cfg['train_scenes']} "
        f"training scenes, "
        f"{cfg['test_scenes']} held-out test scenes; wall time {demo['wall_seconds']:.0f} s.",
        "",
        "Three disjoint sets: the networks train on the training scenes minus 2% held out for "
        "validation; `best.pt` is the checkpoint with the best validation δ1; every number "
        "below (before/after, comparison, bench) is measured on the test scenes, which neither "
        "training nor the choice of `best.pt` saw.",
        "",
        "| backbone | weights | when | δ1 | δ2 | δ3 | rel | rms | log10 | train img/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in demo["models"].items():
        for when in ("before", "after"):
            vals = " | ".join(f"{r[when][k]:.3f}" for k in METRIC_KEYS)
            speed = f"{r['img_per_s']:.1f}" if when == "after" else ""
            lines.append(f"| {name} | {r['weights']} | {when} | {vals} | {speed} |")
    lines += [
        "",
        "Before training both networks output a reciprocal near 0, which the depth conversion "
        "clamps to the 10 m limit everywhere: hence identical 'before' rows.",
        "",
        f"Comparison: {demo['report']}; figure: {demo['figure']}",
        "",
        "![qualitative comparison](compare/compare.png)",
        "",
        markdown_bench(bench, "bench/pareto.png", heading="## Every engine (bench)"),
    ]
    return "\n".join(lines)
