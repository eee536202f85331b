"""INT8 sensitivity: each quantized group alone in float, measured as the writer builds it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from densedepth.data.preprocess import rgb_to_input
from densedepth.evaluation import evaluate_dataset
from engines import load_runner
from export.build import BuildJob, BuildOptions
from export.int8_budget import AccuracyBudget
from export.int8_report import int8_report
from export.quantize import quantize_int8
from export.sensitivity import delta1_recovered


def test_recovered_delta1_is_the_distance_to_fp32_taken_back() -> None:
    """Where INT8 loses δ1, a group's recovery is its δ1 gain (up to FP32); where broken INT8
    raises δ1 above a weak FP32 model's, moving back towards FP32 recovers and rising further
    does not, so the group that repairs the INT8 model ranks first in both regimes."""
    assert delta1_recovered(0.50, 0.40, 0.45) == pytest.approx(0.05)  # the gain
    assert delta1_recovered(0.50, 0.40, 0.55) == pytest.approx(0.05)  # overshoot counts against
    assert delta1_recovered(0.32, 0.42, 0.40) == pytest.approx(0.02)  # back towards FP32
    assert delta1_recovered(0.32, 0.42, 0.44) == pytest.approx(-0.02)  # further from it
    assert delta1_recovered(0.32, 0.42, 0.42) == 0.0


def test_each_group_is_what_the_writer_builds_with_it_in_float(
    trained_tiny: dict, tmp_path: Path
) -> None:
    """The report's δ1 for a group equals an independent build of that keep-float (the
    writer, the same calibration) scored on the same held-out images; the ranking is by δ1
    recovered towards FP32; a report interrupted after 2 groups resumes with the third only
    (the group checked is one measured before the interruption); a second report reads the
    cache; the plot and the Markdown are written; each group's scratch build is removed once
    scored."""
    model = tmp_path / "m" / "model_fp32.onnx"
    model.parent.mkdir()
    shutil.copy(trained_tiny["onnx"], model)
    shutil.copy(str(trained_tiny["onnx"]) + ".json", str(model) + ".json")
    opts = BuildOptions(calib_images=16, budget=AccuracyBudget())

    def interrupt(line: str) -> None:
        if line.startswith("group 2/3"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        int8_report(model, tmp_path / "r", opts, images=4, groups=3, log=interrupt)
    assert not (tmp_path / "r" / "int8_report.json").exists()
    logged: list[str] = []
    scratch: list[int] = []  # the builds in the scratch folder as each group is logged

    def log(line: str) -> None:
        logged.append(line)
        scratch.append(len(list(model.parent.glob(".dd-tmp-*/*.onnx"))))

    result, files = int8_report(model, tmp_path / "r", opts, images=4, groups=3, log=log)
    assert max(scratch) == 1  # the full build only: each group's is removed once scored
    assert any(line.startswith("sensitivity resumed: 2 of 3 groups") for line in logged)
    assert [line[:9] for line in logged if line.startswith("group ")] == ["group 3/3"]
    assert not list(model.parent.glob("*.partial.json"))  # gone once the result is cached
    assert [r["node"] for r in result["ranked"]] != [] and len(result["ranked"]) == 3
    measured = result["measured_groups"]  # the first 3 the writer quantizes, graph order
    assert len(measured) == 3 and {r["node"] for r in result["ranked"]} == set(measured)
    recovered = [r["delta1_recovered"] for r in result["ranked"]]
    assert recovered == sorted(recovered, reverse=True)
    assert any("about" in line and "s left" in line for line in logged)  # progress, estimate
    # brute force, independently: the writer with that one group in float, scored here
    job = BuildJob(model, model.parent, opts)
    held, calib = job.held_out(), job.calibration()
    pick = next(r for r in result["ranked"] if r["node"] == measured[0])  # measured before
    alone = tmp_path / "alone.onnx"
    quantize_int8(model, calib, alone, "cpu", "minmax", ["depth-out", pick["node"]])
    runner = load_runner(alone, device="cpu")
    m = evaluate_dataset(runner, held.dataset, (64, 64), limit=4)
    # the error against FP32: the plain (unmirrored) prediction of the same 4 images
    x = np.concatenate([rgb_to_input(held.dataset[i][0], (64, 64)) for i in range(4)])
    reference = load_runner(model, device="cpu")
    err = float(np.mean(np.abs(runner(x).reshape(4, -1) - reference(x).reshape(4, -1))))
    reference.close()
    runner.close()
    assert err > 0 and pick["abs_err_m"] == pytest.approx(err, rel=1e-6)
    assert m["delta1"] == pytest.approx(pick["delta1"], abs=1e-12)
    assert m["delta1"] - result["int8"]["delta1"] == pytest.approx(pick["delta1_gain"])
    fp32, int8 = result["fp32"]["delta1"], result["int8"]["delta1"]
    assert pick["delta1_recovered"] == pytest.approx(abs(int8 - fp32) - abs(m["delta1"] - fp32))
    saved = json.loads((tmp_path / "r" / "int8_report.json").read_text())
    assert saved["ranked"] == result["ranked"]
    assert "| 1 | " in (tmp_path / "r" / "int8_report.md").read_text()
    assert cv2.imread(str(tmp_path / "r" / "int8_sensitivity.png")) is not None
    again: list[str] = []
    result2, _ = int8_report(model, tmp_path / "r2", opts, images=4, groups=3, log=again.append)
    assert result2["ranked"] == result["ranked"]
    assert any(line.startswith("sensitivity reused") for line in again)
    assert len(files) == 3


def test_a_tensorrt_report_measures_the_writer_and_float_layers_it_is_given(
    trained_tiny: dict, tmp_path: Path
) -> None:
    """--flavour tensorrt --quantizer onnxruntime --fp16: the report's full INT8 is that build
    (an independent quantize_int8 with the same writer and FP16 float layers scores the same
    δ1 on the same held-out images), and the Markdown names both."""
    model = tmp_path / "m" / "model_fp32.onnx"
    model.parent.mkdir()
    shutil.copy(trained_tiny["onnx"], model)
    shutil.copy(str(trained_tiny["onnx"]) + ".json", str(model) + ".json")
    opts = BuildOptions(calib_images=16, budget=AccuracyBudget(), producer="onnxruntime",
                        int8_float="fp16")  # fmt: skip
    result, _ = int8_report(model, tmp_path / "r", opts, images=2, flavour="tensorrt", groups=1)
    assert (result["producer"], result["float_precision"]) == ("onnxruntime", "fp16")
    job = BuildJob(model, model.parent, opts)
    held, calib = job.held_out(), job.calibration()
    full = tmp_path / "full.onnx"
    quantize_int8(model, calib, full, "tensorrt", "minmax", opts.keep_float,
                  producer="onnxruntime", float_precision="fp16")  # fmt: skip
    runner = load_runner(full, device="cpu")
    m = evaluate_dataset(runner, held.dataset, (64, 64), limit=2)
    runner.close()
    assert m["delta1"] == pytest.approx(result["int8"]["delta1"], abs=1e-12)
    assert m["rel"] == pytest.approx(result["int8"]["rel"], rel=1e-9)
    md = (tmp_path / "r" / "int8_report.md").read_text()
    assert "tensorrt flavour (onnxruntime writer, fp16 float layers)" in md
