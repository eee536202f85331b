"""The README's main job end to end, at a tiny size (slow: about three minutes on 2 cores)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from rich.console import Console

from demo import DemoConfig, run_demo
from export.formats import DEPLOY_FORMATS

# every row of the table but torch.compile (a minute of compiling per model; test_bench has it)
FORMATS = tuple(f.key for f in DEPLOY_FORMATS if f.target != "torch.compile")


@pytest.mark.slow
def test_demo_runs_every_stage_into_one_report_folder(tmp_path: Path) -> None:
    cfg = DemoConfig(
        out=tmp_path / "demo",
        input_size=(64, 64),
        steps=3,
        train_scenes=16,
        test_scenes=4,
        figure_images=2,
        bench_min_time=0.0,
        bench_iters=2,
        calib_images=8,
        device="cpu",
        formats=FORMATS,
    )
    demo = run_demo(cfg, Console(quiet=True), lambda ds: None)
    out = cfg.out
    formats = [r["format"] for r in demo["bench"]["rows"]]
    assert formats == list(FORMATS) * 2  # every row asked for, per backbone
    for r in demo["bench"]["rows"]:
        fmt = next(f for f in DEPLOY_FORMATS if f.key == r["format"])
        expected = "not available" if fmt.unavailable_reason() else "ok"
        assert r["status"] == expected, r
        if expected == "ok":
            assert r["p50_ms"] > 0 and 0.0 <= r["delta1"] <= 1.0, r
    backbones = [r.get("backbone") for r in demo["bench"]["rows"] if r["status"] == "ok"]
    assert set(backbones) == {"densenet169", "densenet121"}
    text = (out / "demo.md").read_text()
    assert "## Every engine (bench)" in text and "![δ1 vs latency](bench/pareto.png)" in text
    assert "densenet169 onnxruntime int8" in text and "densenet121 openvino int8" in text
    for figure in ("compare/compare.png", "bench/pareto.png", "samples.png"):
        assert cv2.imread(str(out / figure)) is not None, figure
    for name in ("bench.json", "bench.csv", "bench.md"):
        assert (out / "bench" / name).is_file()
    saved = json.loads((out / "demo.json").read_text())
    assert saved["bench"]["report"] == str(out / "bench" / "bench.md")
    assert saved["wall_seconds"] > 0
