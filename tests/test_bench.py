"""Bench: latency statistics, rows with status per engine, ratios, report files, CLI."""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from bench.harness import BenchOptions, Candidate, discover_artifacts, run_bench, table_order
from bench.latency import measure_latency
from bench.report import pareto_front, row_label
from cli import app
from densedepth.model import count_flops
from densedepth.util.errors import DenseDepthError
from export.formats import format_by_key

cli_runner = CliRunner()


class SleepRunner:
    """A runner that takes a known time per batch and returns a correctly shaped answer."""

    name, precision, device = "sleep", "fp32", "cpu"
    input_shape = (1, 3, 32, 64)
    max_batch: int | None = None  # any batch (the runner protocol's attribute)

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls, self.batches = seconds, 0, []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.batches.append(batch.shape)
        time.sleep(self.seconds)
        return np.ones((batch.shape[0], 1, 16, 32), np.float32)


def test_latency_runs_warmup_iters_and_min_time() -> None:
    runner = SleepRunner(0.002)
    m = measure_latency(runner, iters=5, min_time=0.05, warmup=2, batch=3)
    assert m["runs"] >= 5 and runner.calls == m["runs"] + 2
    assert all(shape == (3, 3, 32, 64) for shape in runner.batches)
    assert 2.0 <= m["p50_ms"] <= m["p90_ms"] <= m["p99_ms"]
    assert m["runs"] * m["mean_ms"] >= 50 * 0.9  # ran for at least min_time
    assert abs(m["fps"] - 3 * 1000 / m["mean_ms"]) < 1e-6
    assert m["batch"] == 3 and m["std_ms"] >= 0
    assert (m["engine_batch"], m["calls_per_batch"]) == (3, 1)  # no max_batch: any batch
    runner.max_batch = 2  # an engine that takes at most 2 images per call
    m = measure_latency(runner, iters=1, min_time=0.0, warmup=0, batch=3)
    assert (m["engine_batch"], m["calls_per_batch"]) == (2, 2)


def test_warmup_is_by_count_and_by_time() -> None:
    """At least ``warmup`` runs and ``warmup_ms`` milliseconds before timing (trtexec's
    --warmUp): 10 ms runs for 60 ms of warm-up are at least 6 untimed calls."""
    runner = SleepRunner(0.01)
    m = measure_latency(runner, iters=2, min_time=0.0, warmup=1, warmup_ms=60.0)
    assert runner.calls - m["runs"] >= 6
    runner = SleepRunner(0.0)
    m = measure_latency(runner, iters=2, min_time=0.0, warmup=3, warmup_ms=0.0)
    assert runner.calls - m["runs"] == 3
    assert "gpu_timing" not in m  # no GPU compute time for a runner that cannot time it


class FlakyRunner(SleepRunner):
    """Fails on its ``fail_on``-th call (a runner that breaks on one batch)."""

    def __init__(self, fail_on: int) -> None:
        super().__init__(0.0)
        self.name, self.fail_on = "flaky", fail_on

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.calls + 1 == self.fail_on:
            self.calls += 1
            raise RuntimeError("device lost on this batch")
        return super().__call__(batch)


FAST = {"iters": 3, "min_time": 0.0, "warmup": 1, "warmup_ms": 0.0}  # (warm-up by count only)
TEST_SET = {"n": 6, "height": 64, "width": 64, "seed": 99}


@pytest.fixture(scope="module")
def bench_run(trained_tiny: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One bench run that builds torch, ONNX fp32, ONNX int8 (and TensorRT, absent here)."""
    out = tmp_path_factory.mktemp("bench")
    opts = BenchOptions(
        **FAST,
        batches=(1, 2),
        threads=1,
        device="cpu",
        data_kwargs=TEST_SET,
        build=("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8", "tensorrt-int8"),
        calib="synthetic",
        calib_images=16,
        calib_kwargs={"height": 64, "width": 64, "seed": 5},
    )
    lines: list[str] = []
    result = run_bench([trained_tiny["ckpt"]], out, opts, log=lines.append)
    return {"result": result, "out": out, "log": lines}


def test_bench_builds_and_measures_torch_onnx_int8_rows(bench_run: dict) -> None:
    rows = {r["format"]: r for r in bench_run["result"]["rows"]}
    assert list(rows) == ["torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8", "tensorrt-int8"]
    eager, fp32, int8 = rows["torch-fp32"], rows["onnx-fp32"], rows["onnx-int8"]
    bf16 = rows["torch-bf16"]  # eager under bf16 autocast, channels_last (emulated without AMX)
    for r in (eager, bf16, fp32, int8):
        assert r["status"] == "ok", r
        assert r["input_size"] == [64, 64] and r["backbone"] == "densenet121"
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["runs"] >= 3
        assert r["fps"] == pytest.approx(1e3 / r["mean_ms"])
        assert [t["batch"] for t in r["throughput"]] == [1, 2]
        # a sweep builds engines that take its batches (a dynamic-batch export): batch 2 is one
        # call of 2 on every row, never 2 calls of 1
        assert (r["throughput"][1]["engine_batch"], r["throughput"][1]["calls_per_batch"]) == (2, 1)
        assert r["speedup_vs_eager"] == pytest.approx(eager["p50_ms"] / r["p50_ms"])
        gflops = count_flops("densenet121", 0.125, (64, 64)) / 1e9
        assert r["gflops"] == pytest.approx(gflops)
        assert r["gops"] == pytest.approx(gflops / (r["p50_ms"] / 1e3))
        assert 0.0 <= r["delta1"] <= 1.0 and r["rms"] > 0
    assert eager["speedup_vs_eager"] == 1.0 and eager["delta1_drop"] == 0.0
    assert fp32["precision"] == "fp32" and int8["precision"] == "int8"
    assert fp32["engine"] == "onnxruntime" and fp32["threads"] == 1
    # ONNX fp32 is the same model as eager; INT8 keeps δ1 close; both read against eager
    assert abs(fp32["delta1"] - eager["delta1"]) < 1e-3
    assert eager["delta1"] > 0.2 and abs(int8["delta1_drop"]) < 0.03
    assert (bf16["engine"], bf16["precision"]) == ("torch", "bf16")
    assert abs(bf16["delta1_drop"]) < 0.03 and bf16["rms"] != eager["rms"]  # not the fp32 path
    assert int8["delta1_drop"] == pytest.approx(eager["delta1"] - int8["delta1"])
    trt = rows["tensorrt-int8"]
    assert trt["status"] == "not available" and "tensorrt" in trt["reason"]
    assert any("fewer than 300" in line for line in bench_run["log"])  # calibration warning


def test_bench_report_files_agree_with_the_result(bench_run: dict) -> None:
    out, result = bench_run["out"], bench_run["result"]
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        "bench.csv",
        "bench.json",
        "bench.md",
        "pareto.png",
    ]
    saved = json.loads((out / "bench.json").read_text())
    assert [r["status"] for r in saved["rows"]] == [r["status"] for r in result["rows"]]
    env = saved["environment"]
    assert env["cores"] >= 1 and env["cpu"] and env["versions"]["torch"]
    assert "onnxruntime" in env["versions"]
    with open(out / "bench.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["label"] for r in table] == [row_label(r) for r in result["rows"]]
    for line, row in zip(table, result["rows"], strict=True):
        if row["status"] == "ok":
            assert float(line["p50_ms"]) == pytest.approx(row["p50_ms"])
            assert float(line["delta1"]) == pytest.approx(row["delta1"])
            assert line["input_size"] == "64x64"
    md = (out / "bench.md").read_text()
    for row in result["rows"]:
        assert row_label(row) in md
    assert "not available: tensorrt" in md and "![δ1 vs latency](pareto.png)" in md
    assert "| 2 (2 x 1) |" not in md  # (the sweep's engines take batch 2 in one call)
    assert "capabilities: " in md and "- recommended for densenet121 64x64" in md
    assert result["recommended"][0]["delta1_drop"] <= 0.01  # the default limit
    png = cv2.imread(str(out / "pareto.png"))
    assert png is not None and png.shape[0] > 300 and png.shape[1] > 500
    assert png.std() > 10  # a drawn figure, not a blank canvas


def test_a_failing_runner_or_foreign_file_marks_its_row_and_others_go_on(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "foreign.pt").write_bytes(b"not a checkpoint at all")
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])), folder / "x.onnx")
    opts = BenchOptions(**FAST, data=None)
    flaky_latency, flaky_accuracy = FlakyRunner(fail_on=3), FlakyRunner(fail_on=6)
    good = SleepRunner(0.001)
    models = [folder, flaky_latency, good]
    result = run_bench(models, tmp_path / "out", opts)
    rows = result["rows"]
    assert [r["status"] for r in rows] == ["failed", "failed", "failed", "ok"]
    assert "foreign.pt" in rows[0]["reason"] or "checkpoint" in rows[0]["reason"]
    assert "x.onnx" in rows[1]["reason"] and "not a DenseDepth export" in rows[1]["reason"]
    assert rows[2]["reason"] == "latency at batch 1: RuntimeError: device lost on this batch"
    assert rows[3]["p50_ms"] >= 1.0
    # failing during accuracy keeps the latency it measured
    test = BenchOptions(**FAST, data="synthetic", data_kwargs=TEST_SET)
    row = run_bench([flaky_accuracy], tmp_path / "out2", test)["rows"][0]
    assert row["status"] == "failed" and row["reason"].startswith("accuracy: RuntimeError")
    assert row["p50_ms"] >= 0
    with pytest.raises(DenseDepthError, match="does not exist"):
        run_bench([tmp_path / "missing.onnx"], tmp_path / "out3", opts)


def test_discover_artifacts_of_a_run_folder(tmp_path: Path) -> None:
    names = [
        "train/best.pt",
        "train/last.pt",
        "solo/last.pt",
        "export/model_fp32.onnx",
        "export/model_int8.onnx",
        "export/model_int8_trt.onnx",
        "export/model_int8.xml",
        "export/model_int8.bin",
        "export/model_fp16.engine",
        "export/.model_fp32.onnx.abc.tmp",
        ".cache/x.onnx",
        "notes.txt",
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in discover_artifacts(tmp_path)]
    assert found == [
        "export/model_fp16.engine",
        "export/model_fp32.onnx",
        "export/model_int8.onnx",
        "export/model_int8.xml",
        "solo/last.pt",
        "train/best.pt",
    ]


def test_pareto_front_keeps_only_unbeaten_points() -> None:
    points = [(10.0, 0.80), (5.0, 0.70), (7.0, 0.65), (20.0, 0.79), (5.0, 0.60), (30.0, 0.85)]
    assert pareto_front(points) == [1, 0, 5]


def test_cli_bench_bad_input(trained_tiny: dict, tmp_path: Path) -> None:
    out = tmp_path / "occupied"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    model = str(trained_tiny["onnx"])
    cases = [
        (["bench", model, "--out", str(out)], "holds files this toolkit did not write"),
        (["bench", model, "--out", str(out), "--overwrite"], "did not write"),
        (["bench", model, "--out", ".", "--overwrite"], "it is the current folder"),
        (
            ["bench", str(tmp_path / "no.onnx"), "--out", str(out / "keep.txt"), "--overwrite"],
            "exist",
        ),
        (["bench", model, "--build", "onnx-int4"], "unknown format 'onnx-int4'"),
        (["bench", "--out", str(tmp_path / "o")], "at least one MODEL"),
        (["bench", str(tmp_path / "nope.onnx")], "does not exist"),
        (["bench", model, "--batch", "0"], "batch sizes must be >= 1"),
    ]
    for args, message in cases:
        result = cli_runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert (out / "keep.txt").read_text() == "x" and os.listdir(out) == ["keep.txt"]


def test_cli_bench_overwrite_replaces_its_own_report(trained_tiny: dict, tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["bench", str(trained_tiny["onnx"]), "--out", str(out)]
    args += ["--iters", "2", "--min-time", "0", "--limit", "2", "--threads", "1"]
    assert cli_runner.invoke(app, args, terminal_width=200).exit_code == 0
    (out / "bench.md").write_text("edited")  # a file bench wrote, edited: still bench's
    (out / "notes.txt").write_text("x")  # a file the user put there: never deleted
    refused = cli_runner.invoke(app, [*args, "--overwrite"], terminal_width=200)
    assert refused.exit_code == 1 and "did not write (notes.txt)" in refused.output
    assert (out / "notes.txt").read_text() == "x" and (out / "bench.md").read_text() == "edited"
    (out / "notes.txt").unlink()
    result = cli_runner.invoke(app, [*args, "--overwrite"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "densenet121 onnxruntime fp32" in result.output
    assert (out / "bench.md").read_text() != "edited"


def test_cli_bench_exits_non_zero_when_no_row_succeeds(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"not an onnx file")
    args = ["bench", str(foreign), "--out", str(tmp_path / "r"), "--iters", "1", "--no-accuracy"]
    result = cli_runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 1, result.output
    assert "no bench row succeeded (1 failed" in result.output
    assert (tmp_path / "r" / "bench.md").is_file()  # the report says why


def test_rows_are_ordered_by_backbone_then_format_table() -> None:
    cands = [Candidate("a", group=0), Candidate("b", group=0), Candidate("c", group=0)]
    cands += [Candidate("t", group=3), Candidate("d", group=3), Candidate("x", group=5)]
    rows = [
        {"backbone": "densenet121", "format": "openvino-int8"},
        {"backbone": "densenet169", "format": "onnx-int8"},
        {"backbone": "densenet121", "format": "torch-fp32"},
        {"format": "tensorrt-int8", "status": "not available"},  # built from checkpoint 3
        {"backbone": "densenet169", "format": "torch-fp32"},
        {"format": "", "status": "failed"},  # never loaded, alone in its group
    ]
    ordered = table_order(cands, rows)
    assert [(r.get("backbone", "-"), r["format"]) for r in ordered] == [
        ("densenet121", "torch-fp32"),
        ("densenet121", "openvino-int8"),
        ("densenet169", "torch-fp32"),
        ("densenet169", "onnx-int8"),
        ("-", "tensorrt-int8"),
        ("-", ""),
    ]


def test_compare_on_kitti_uses_its_protocol_published_row_and_80_m_scale(
    trained_tiny: dict, tmp_path: Path
) -> None:
    from bench.compare import compare_models
    from densedepth.data.writers import write_synthetic
    from densedepth.viz import widen_points

    root = write_synthetic(tmp_path / "k", "kitti", 0, 3, height=48, width=160)
    report = compare_models([trained_tiny["onnx"]], str(root), tmp_path / "cmp", n_images=2)
    assert report["protocol"] == "kitti-garg" and report["published_on"] == "KITTI Eigen split"
    assert report["published"][0]["delta1"] == 0.886 and "delta2" not in report["published"][0]
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "| 0.886 |  |  | 0.093 | 4.170 | 0.040 |" in md and "protocol: kitti-garg" in md
    sparse = np.zeros((9, 9), np.float32)
    sparse[4, 4] = 30.0
    grown = widen_points(sparse)
    assert (grown == 30.0).sum() == 25 and grown.sum() == 30.0 * 25  # a 5x5 square, nothing else


def test_cpu_capabilities_from_x86_and_arm_flags() -> None:
    from densedepth.util.cpu import cpu_capabilities

    xeon = "processor : 0\nflags : fpu avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_int8\n"
    assert cpu_capabilities(xeon) == ["AVX2", "AVX-512", "VNNI", "BF16", "AMX"]
    epyc = "flags\t\t: fpu sse4_2 avx2 fma\n"
    assert cpu_capabilities(epyc) == ["AVX2"]
    orin = "Features\t: fp asimd evtstrm aes asimddp sha512 i8mm bf16\n"
    assert cpu_capabilities(orin) == ["NEON", "DOTPROD", "I8MM", "BF16"]
    assert cpu_capabilities("") == []


def test_recommendation_is_the_fastest_row_within_the_drop() -> None:
    """Per backbone: int8 is fastest but loses 0.03 δ1, so bf16 is recommended at 0.01; with a
    0.05 limit int8 is; speed-ups are against the eager FP32 row of the same model."""
    from bench.recommend import recommend, recommendation_line

    def row(engine: str, precision: str, p50: float, drop: float, backbone: str) -> dict:
        return {"status": "ok", "engine": engine, "precision": precision, "p50_ms": p50,
                "delta1_drop": drop, "backbone": backbone, "decoder_width": 1.0,
                "input_size": [480, 640], "format": f"{engine}-{precision}"}  # fmt: skip

    rows = [
        row("torch", "fp32", 881.0, 0.0, "densenet169"),
        row("openvino", "bf16", 122.0, 0.004, "densenet169"),
        row("openvino", "int8", 80.0, 0.03, "densenet169"),
        row("onnxruntime", "fp32", 368.0, 0.0, "densenet121"),
        {"status": "failed", "engine": "tensorrt", "backbone": "densenet121"},
    ]
    picks = {p["backbone"]: p for p in recommend(rows, 0.01)}
    assert picks["densenet169"]["label"] == "openvino bf16"
    assert picks["densenet169"]["speedup"] == pytest.approx(881.0 / 122.0)
    assert picks["densenet121"]["label"] == "onnxruntime fp32"  # no eager row: against itself
    assert picks["densenet121"]["speedup"] == 1.0
    loose = {p["backbone"]: p for p in recommend(rows, 0.05)}
    assert loose["densenet169"]["label"] == "openvino int8"
    line = recommendation_line(loose["densenet169"])
    assert line == ("recommended for densenet169 480x640 (Δδ1 <= 0.05): openvino int8, p50 "
                    "80.00 ms, 11.01x torch fp32, Δδ1 +0.0300")  # fmt: skip


@pytest.mark.slow
def test_torch_compile_row_matches_eager_and_reports_its_compile_time(
    trained_tiny: dict, tmp_path: Path
) -> None:
    reason = format_by_key("torch.compile-fp32").unavailable_reason()
    if reason:
        pytest.skip(reason)
    one = {**TEST_SET, "n": 1}  # batches of 1 only: one compile (each new size compiles again)
    opts = BenchOptions(**FAST, threads=1, device="cpu", data_kwargs=one,
                        build=("torch-fp32", "torch.compile-fp32"))  # fmt: skip
    rows = {r["format"]: r for r in run_bench([trained_tiny["ckpt"]], tmp_path, opts)["rows"]}
    eager, compiled = rows["torch-fp32"], rows["torch.compile-fp32"]
    assert compiled["status"] == "ok", compiled
    assert (compiled["engine"], compiled["precision"]) == ("torch.compile", "fp32")
    assert compiled["compile_s"] > 0 and "compile_s" not in eager
    assert compiled["rms"] == pytest.approx(eager["rms"], rel=1e-4)  # the same function
    assert abs(compiled["delta1_drop"]) < 1e-3
    assert compiled["speedup_vs_eager"] == pytest.approx(eager["p50_ms"] / compiled["p50_ms"])


def test_torch_compile_without_a_cxx_compiler_is_not_available(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import export.formats as formats

    monkeypatch.setattr(formats.shutil, "which", lambda name: None)
    reason = formats.format_by_key("torch.compile-fp32").unavailable_reason()
    assert reason is not None and "C++ compiler" in reason
    assert formats.format_by_key("torch-bf16").unavailable_reason() is None


def test_build_engine_auto_builds_the_pick_of_a_bench_from_this_machine(
    trained_tiny: dict, tmp_path: Path
) -> None:
    from bench.machine import environment

    bench_json = tmp_path / "bench.json"
    pick = {"backbone": "densenet121", "input_size": [64, 64], "format": "onnx-int8",
            "label": "onnxruntime int8", "p50_ms": 1.0, "delta1_drop": 0.001, "speedup": 2.0,
            "against": "torch fp32", "max_drop": 0.01}  # fmt: skip
    other = {**pick, "input_size": [32, 32], "format": "onnx-fp16"}
    bench_json.write_text(json.dumps({"environment": environment(0), "recommended": [other, pick]}))
    out = tmp_path / "engines"
    result = cli_runner.invoke(app, ["build-engine", str(trained_tiny["onnx"]), "--target", "auto",
                                     "--from-bench", str(bench_json), "--calib", "synthetic",
                                     "--calib-images", "8", "--out-dir", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "onnxruntime int8" in result.output
    assert (out / "model_int8.onnx").is_file() and not (out / "model_fp16.onnx").exists()
    assert not (out / "auto-bench").exists()  # nothing measured: the bench's pick was used


@pytest.mark.slow
def test_build_engine_auto_measures_every_format_here_and_builds_the_fastest_within_the_drop(
    trained_tiny: dict, tmp_path: Path
) -> None:
    out = tmp_path / "engines"
    result = cli_runner.invoke(app, ["build-engine", str(trained_tiny["onnx"]), "--target", "auto",
                                     "--calib", "synthetic", "--calib-images", "16", "--limit", "4",
                                     "--out-dir", str(out)], terminal_width=200)  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "auto-bench" / "bench.json").read_text())
    formats = [r["format"] for r in report["rows"]]
    from bench.choose import buildable_here

    assert formats == list(buildable_here())  # every format that builds here, from the ONNX
    (pick,) = report["recommended"]
    ok = [r for r in report["rows"] if r["status"] == "ok"]
    fit = [r for r in ok if r["delta1_drop"] <= 0.01]
    assert pick["format"] == min(fit, key=lambda r: r["p50_ms"])["format"]
    assert "recommended for densenet121 64x64" in " ".join(result.output.split())
    last = result.output.strip().splitlines()[-1]  # the pick's artifact, built by the bench
    expected = trained_tiny["onnx"] if pick["format"] == "onnx-fp32" else pick["path"]
    assert last == str(expected) and Path(last).is_file()


def test_input_size_sweep_builds_each_size_from_one_checkpoint(
    trained_tiny: dict, tmp_path: Path
) -> None:
    from densedepth.util.onnx_io import read_metadata

    sizes = ((32, 32), (64, 96))
    opts = BenchOptions(**FAST, threads=1, device="cpu", data_kwargs=TEST_SET,
                        build=("torch-fp32", "onnx-fp32"), input_sizes=sizes)  # fmt: skip
    result = run_bench([trained_tiny["ckpt"]], tmp_path, opts)
    rows = result["rows"]
    assert [(r["format"], r["input_size"]) for r in rows] == [
        ("torch-fp32", [32, 32]), ("onnx-fp32", [32, 32]),
        ("torch-fp32", [64, 96]), ("onnx-fp32", [64, 96]),
    ]  # fmt: skip
    for r in rows:
        assert r["status"] == "ok", r
        if r["format"] == "onnx-fp32":
            assert read_metadata(r["path"])["input_size"] == r["input_size"]
    small, large = rows[:2], rows[2:]
    # the same network at the same size agrees across engines; sizes differ from each other
    assert small[0]["rms"] == pytest.approx(small[1]["rms"], rel=1e-3)
    assert large[0]["rms"] == pytest.approx(large[1]["rms"], rel=1e-3)
    assert small[0]["rms"] != pytest.approx(large[0]["rms"], rel=1e-3)
    # ratios within a size: each size has its own eager baseline and recommendation
    assert small[0]["speedup_vs_eager"] == 1.0 == large[0]["speedup_vs_eager"]
    assert [p["input_size"] for p in result["recommended"]] == [[32, 32], [64, 96]]
    assert small[0]["gflops"] < large[0]["gflops"]
    assert cv2.imread(str(tmp_path / "pareto.png")) is not None


def test_readme_figures_are_spliced_between_the_markers_from_a_bench_json(
    bench_run: dict, tmp_path: Path
) -> None:
    from bench.readme import END, START, figures_markdown, main

    result = json.loads((bench_run["out"] / "bench.json").read_text())
    block = figures_markdown(result)
    eager = next(r for r in result["rows"] if r["format"] == "torch-fp32")
    assert "Input 64x64:" in block and "extensions: " in block
    assert f"| PyTorch eager fp32 | {eager['p50_ms']:.0f} ms (1.00x) |" in block
    assert "| ONNX Runtime int8 |" in block and "| PyTorch eager bf16 |" in block
    assert "- recommended for densenet121 64x64" in block
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{START}\nold figures\n{END}\nafter\n")
    assert main([str(bench_run["out"] / "bench.json"), str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n") and text.endswith(f"{END}\nafter\n")
    assert "old figures" not in text and block in text
    readme.write_text("no markers\n")
    assert main([str(bench_run["out"] / "bench.json"), str(readme)]) == 1
    assert readme.read_text() == "no markers\n"  # refused, untouched


def test_a_float_onnx_builds_its_formats_and_never_gets_torch_rows(
    trained_tiny: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import export.formats as formats

    monkeypatch.setattr(formats.shutil, "which", lambda name: None)  # torch.compile unavailable
    build = ("torch-fp32", "torch.compile-fp32", "onnx-fp32", "onnx-fp16")
    opts = BenchOptions(**FAST, threads=1, device="cpu", data=None, build=build)
    rows = run_bench([trained_tiny["onnx"]], tmp_path, opts)["rows"]
    assert [(r["format"], r["status"]) for r in rows] == [("onnx-fp32", "ok"), ("onnx-fp16", "ok")]
    assert rows[0]["path"] == str(trained_tiny["onnx"])  # the source itself is the fp32 row


def test_rows_that_would_share_a_label_name_their_files(trained_tiny: dict, tmp_path: Path) -> None:
    """Two files of one backbone, engine and precision (a full INT8 build and its fallback,
    say) get labels that tell them apart, in every table and the recommendation; a row whose
    label is its own keeps it unchanged."""
    import shutil

    from bench.recommend import recommendation_line

    copies = []
    for name in ("full", "fallback"):
        (tmp_path / name).mkdir()
        copies.append(Path(shutil.copy(trained_tiny["onnx"], tmp_path / name / "model.onnx")))
    opts = BenchOptions(**FAST, threads=1, device="cpu", data_kwargs=TEST_SET, limit=2)
    result = run_bench(copies, tmp_path / "out", opts)
    labels = [row_label(r) for r in result["rows"]]
    assert labels == [
        f"densenet121 onnxruntime fp32 ({n}/model.onnx)" for n in ("full", "fallback")
    ]
    md = (tmp_path / "out" / "bench.md").read_text()
    assert all(f"| {label} |" in md for label in labels)
    with open(tmp_path / "out" / "bench.csv", newline="") as f:
        assert [r["label"] for r in csv.DictReader(f)] == labels
    (pick,) = result["recommended"]
    both = {f"onnxruntime fp32 ({n}/model.onnx)" for n in ("full", "fallback")}
    assert pick["label"] in both and pick["against"] in both  # (the slower is the baseline)
    assert pick["label"] in recommendation_line(pick)
    assert f"x {pick['against']}, " in recommendation_line(pick)
    alone = run_bench(copies[:1], tmp_path / "one", opts)["rows"]
    assert [row_label(r) for r in alone] == ["densenet121 onnxruntime fp32"]
    assert "label_file" not in alone[0]


# --- energy -----------------------------------------------------------------------------------


class RaplWriter:
    """A fake RAPL package counter in sysfs that a thread advances at ``watts`` (microjoules
    from the monotonic clock, so the value is exact whenever it is written), wrapping at
    ``max_uj`` as the kernel's counter does."""

    def __init__(self, root: Path, watts: float, max_uj: int = 262_143_328_850) -> None:
        self.zone = root / "sys/class/powercap/intel-rapl:0"
        self.zone.mkdir(parents=True)
        (self.zone / "name").write_text("package-0\n")
        (self.zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
        self.watts, self.max_uj, self.t0 = watts, max_uj, time.monotonic()
        self.offset = max_uj - 1_000_000  # wraps a fifth of a second in at 5 W
        self.write()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def write(self) -> None:
        uj = int(self.offset + (time.monotonic() - self.t0) * self.watts * 1e6) % self.max_uj
        tmp = self.zone / "energy_uj.tmp"
        tmp.write_text(f"{uj}\n")
        os.replace(tmp, self.zone / "energy_uj")

    def loop(self) -> None:
        while not self.done.wait(0.005):
            self.write()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=2)


def test_bench_rows_carry_energy_per_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 5 W package: mean power, mJ per image and images per joule of the timed runs, in the
    row, bench.md and bench.csv; the environment names the sensor."""
    import bench.power as power

    writer = RaplWriter(tmp_path / "root", watts=5.0)
    monkeypatch.setattr(power, "SYSTEM_ROOT", tmp_path / "root")
    try:
        opts = BenchOptions(iters=5, min_time=0.6, warmup=1, batches=(1, 2), data=None)
        result = run_bench([SleepRunner(0.01)], tmp_path / "out", opts)
    finally:
        writer.stop()
    row = result["rows"][0]
    assert row["power"] == "RAPL package-0" and result["environment"]["power"] == "RAPL package-0"
    for t in row["throughput"]:
        # the counter is stale by at most a write interval (+ scheduling) at each end of a
        # window of at least min_time: |P - 5| <= 5 W x 2 x 0.05 s / 0.6 s
        assert t["power_w"] == pytest.approx(5.0, abs=5.0 * 2 * 0.05 / 0.6)
        images = t["runs"] * t["batch"]
        assert t["mj_per_image"] * t["images_per_j"] == pytest.approx(1e3)
        # energy per image is power times the window over the images (the window is the
        # timed calls plus the loop's own overhead: at least their sum)
        window = t["mj_per_image"] * images / 1e3 / t["power_w"]
        assert window >= t["runs"] * t["mean_ms"] / 1e3 * 0.999
    md = (tmp_path / "out" / "bench.md").read_text()
    assert "Energy (RAPL package-0; during the timed runs):" in md and "none seen" in md
    with (tmp_path / "out" / "bench.csv").open() as f:
        first = next(csv.DictReader(f))
    assert float(first["power_w"]) == pytest.approx(row["power_w"])


def test_no_sensor_is_said_per_row_and_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.power as power

    monkeypatch.setattr(power, "SYSTEM_ROOT", tmp_path / "no-sysfs")
    result = run_bench([SleepRunner(0.001)], tmp_path / "out", BenchOptions(**FAST, data=None))
    row = result["rows"][0]
    assert "power_w" not in row and row["power"].startswith("no power sensor: ")
    assert result["environment"]["power"].startswith("not available: no power sensor")
    assert "Energy (" not in (tmp_path / "out" / "bench.md").read_text()


def test_the_recommendation_under_a_power_budget() -> None:
    from bench.recommend import nothing_fits_line, recommend, recommendation_line

    def row(engine: str, precision: str, p50: float, drop: float, watts: float | None) -> dict:
        r = {"status": "ok", "backbone": "densenet121", "decoder_width": 0.5,
             "input_size": [64, 64], "engine": engine, "precision": precision, "p50_ms": p50,
             "delta1_drop": drop, "format": f"{engine}-{precision}", "path": ""}  # fmt: skip
        if watts is not None:
            r.update(power_w=watts, mj_per_image=watts * p50)
        return r

    rows = [
        row("torch", "fp32", 40.0, 0.0, 30.0),
        row("tensorrt", "fp16", 4.0, 0.001, 25.0),
        row("tensorrt", "int8", 3.0, 0.004, 18.0),
        row("onnxruntime", "int8", 9.0, 0.002, 9.0),
    ]
    assert [p["label"] for p in recommend(rows, 0.01)] == ["tensorrt int8"]
    assert [p["label"] for p in recommend(rows, 0.003)] == ["tensorrt fp16"]
    assert [p["label"] for p in recommend(rows, 0.01, max_power=20.0)] == ["tensorrt int8"]
    low = recommend(rows, 0.01, max_power=10.0)
    assert [p["label"] for p in low] == ["onnxruntime int8"]
    assert "<= 10 W" in recommendation_line(
        low[0]
    ) and "9.0 W, 81.0 mJ/image" in recommendation_line(low[0])
    assert recommend(rows, 0.01, max_power=5.0) == []
    assert "the least was 9.0 W (onnxruntime int8)" in nothing_fits_line(rows, 5.0)
    unmeasured = [row("torch", "fp32", 40.0, 0.0, None) | {"power": "no power sensor: x"}]
    assert recommend(unmeasured, 0.01, max_power=50.0) == []
    assert nothing_fits_line(unmeasured, 50.0).endswith("not measured (no power sensor: x)")


def test_cli_bench_says_why_nothing_fits_a_power_budget(
    trained_tiny: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No sensor (an empty system root, no NVIDIA driver): the δ1 budget alone would pick the
    ONNX row, the power budget cannot be judged, and bench says so in one line, exit 0."""
    import bench.power as power

    monkeypatch.setattr(power, "SYSTEM_ROOT", tmp_path / "no-sensors")
    args = ["bench", str(trained_tiny["onnx"]), "--limit", "2", "--iters", "2", "--min-time",
            "0", "--out", str(tmp_path / "b")]  # fmt: skip
    free = cli_runner.invoke(app, args, terminal_width=200)
    assert free.exit_code == 0 and "recommended for densenet121" in free.output
    budget = cli_runner.invoke(app, [*args, "--max-power", "5", "--overwrite"], terminal_width=200)
    assert budget.exit_code == 0, budget.output
    assert "no engine fits --max-power 5 W: power was not measured (no power sensor:" in (
        " ".join(budget.output.split())
    )
    assert "recommended for" not in budget.output


def test_a_row_that_fails_mid_measurement_stops_its_power_sampler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sampler's thread (or tegrastats process) never outlives a row that raised."""
    import bench.power as power

    writer = RaplWriter(tmp_path / "root", watts=5.0)
    monkeypatch.setattr(power, "SYSTEM_ROOT", tmp_path / "root")
    sampler = power.power_sampler("cpu")
    assert not isinstance(sampler, str)
    try:
        with pytest.raises(RuntimeError, match="device lost"):
            measure_latency(FlakyRunner(fail_on=3), iters=5, min_time=0, warmup=1, power=sampler)
    finally:
        writer.stop()
    assert all(t.name != "rapl" for t in threading.enumerate())  # the sampler's poller ended
