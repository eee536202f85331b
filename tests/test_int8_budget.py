"""The INT8 accuracy budget: judged on held-out images that calibration never saw."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from calib.calibration import load_calibration_set
from cli import app
from densedepth.data.readers import open_dataset
from densedepth.data.splits import split_by_scene
from densedepth.evaluation import evaluate_dataset
from densedepth.util.onnx_io import read_metadata, read_sidecar
from engines import load_runner
from export.int8_budget import AccuracyBudget, held_out_set

cli = CliRunner()


def staged_onnx(trained_tiny: dict, folder: Path) -> Path:
    """The tiny model's fp32 ONNX (and sidecar) in a folder of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx = folder / "model_fp32.onnx"
    shutil.copy(trained_tiny["onnx"], onnx)
    shutil.copy(str(trained_tiny["onnx"]) + ".json", str(onnx) + ".json")
    return onnx


def test_the_held_out_images_are_the_training_runs_validation_split(
    trained_tiny: dict, tmp_path: Path
) -> None:
    """The export records the run's split (share, seed); the budget's images are exactly the
    scenes split_by_scene holds out with them, and a calibration set from the same data
    leaves every one of them out."""
    onnx = staged_onnx(trained_tiny, tmp_path)
    meta = read_metadata(onnx)
    assert (meta["training_data"], meta["training_val_split"], meta["training_seed"]) == (
        "synthetic", 0.125, 0)  # fmt: skip
    kwargs = {"height": 64, "width": 64}  # (synthetic's 1000 training scenes, one file each)
    held = held_out_set(onnx, AccuracyBudget(), **kwargs)
    expected = split_by_scene(open_dataset("synthetic", "train", **kwargs), 0.125, 0).val
    assert held.exclude == expected and len(held.dataset) == len(expected) == 125
    calib = load_calibration_set("synthetic", (64, 64), n=300, exclude=held.exclude, **kwargs)
    assert len(calib) == 300 and not set(map(int, calib.names)) & set(expected)
    plain = load_calibration_set("synthetic", (64, 64), n=300, **kwargs)
    assert set(map(int, plain.names)) & set(expected)  # (without the exclusion they overlap)


def test_a_collapsed_int8_misses_its_budget_in_one_line(trained_tiny: dict, tmp_path: Path) -> None:
    """Calibrated on white frames (another distribution: every range far too wide for real
    scenes), the INT8 model loses δ1 and rel on the held-out scenes: build-engine exits 1 with
    what was reached; the file is kept, marked missed; its sidecar's int8 metrics are those
    of an independent evaluate of the written file on the same images."""
    onnx = staged_onnx(trained_tiny, tmp_path / "m")
    white = white_frames(tmp_path / "white")
    args = ["build-engine", str(onnx), "--int8", "--calib", str(white), "--calib-images", "4",
            "--val-images", "8", "--max-rel-rise", "0.05", "--no-fallback"]  # fmt: skip
    result = cli.invoke(app, args)
    assert result.exit_code == 1, result.output
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "INT8 budget missed" in error[0] and "--keep-float" in error[0]
    int8 = tmp_path / "m" / "model_int8.onnx"
    budget = read_sidecar(int8)["int8_budget"]
    assert budget["verdict"] == "missed" and budget["n_images"] == 8
    assert budget["delta1_drop"] > 0.01 or budget["rel_rise"] > 0.05
    held = held_out_set(onnx, AccuracyBudget())
    for name, path in (("int8", int8), ("fp32", onnx)):
        runner = load_runner(path, device="cpu")
        m = evaluate_dataset(runner, held.dataset, (64, 64), limit=8)
        runner.close()
        assert m["delta1"] == pytest.approx(budget[name]["delta1"], abs=1e-12)
        assert m["rel"] == pytest.approx(budget[name]["rel"], rel=1e-9)
    # the same build without the gate writes the same file and says nothing about a budget
    again = cli.invoke(app, [*args, "--no-budget", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert "INT8 budget" not in again.output and "int8_budget" not in read_sidecar(int8)


def white_frames(folder: Path) -> Path:
    """Four white frames: a calibration set from another distribution."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((64, 64, 3), 255, np.uint8))
    return folder


def test_the_fallback_meets_the_budget_with_fewer_than_all_groups_in_float(
    trained_tiny: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The white-calibrated INT8 model misses; the fallback bisects the writer's quantized
    groups and meets the budget with fewer than all of them in float; the file written is
    scored again independently here; its sidecar lists what it kept, and --keep-float-from
    rebuilds the same model (same δ1) without searching. The fp32 model is scored once for
    the whole build: the full INT8, every try and the rebuilt file are judged against it; a
    try's file is gone before the next is written."""
    import export.int8_budget as int8_budget

    scored: list[Path] = []
    held: list[int] = []  # the scratch builds present when each file is scored
    predictor = int8_budget.cpu_predictor

    def scoring(path: Path) -> object:
        scored.append(path)
        held.append(len(list((tmp_path / "m").glob(".dd-tmp-*/*.onnx"))))
        return predictor(path)

    monkeypatch.setattr(int8_budget, "cpu_predictor", scoring)
    onnx = staged_onnx(trained_tiny, tmp_path / "m")
    args = ["build-engine", str(onnx), "--int8", "--calib", str(white_frames(tmp_path / "w")),
            "--calib-images", "4", "--val-images", "8", "--max-rel-rise", "0.05"]  # fmt: skip
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "fallback try 1:" in result.output and "quantized groups in float" in result.output
    budget = read_sidecar(tmp_path / "m" / "model_int8.onnx")["int8_budget"]
    tries = len(budget["fallback"]["tries"])
    assert scored.count(onnx) == 1 and len(scored) == 1 + 1 + tries + 1  # fp32, full, tries, kept
    assert max(held) == 1  # each try removed once judged, not kept until the search ends
    monkeypatch.undo()
    int8 = tmp_path / "m" / "model_int8.onnx"
    fallback = check_fallback_result(onnx, int8, args)
    assert read_sidecar(int8)["keep_float"] == fallback["keep_float"]


def check_fallback_result(onnx: Path, written: Path, args: list[str]) -> dict:
    """What every fallback must show: full INT8 missed, the fallback met the budget with
    fewer than all groups in float, by bisection; an independent evaluate of the written file
    gives the sidecar's δ1; --keep-float-from rebuilds the same δ1 without searching. Returns
    the sidecar's fallback record."""
    budget = read_sidecar(written)["int8_budget"]
    fallback = budget["fallback"]
    assert budget["full_int8"]["delta1_drop"] > 0.01 or budget["full_int8"]["rel_rise"] > 0.05
    assert budget["verdict"] == "met" and 1 <= fallback["count"] < fallback["of"]
    assert budget["delta1_drop"] <= 0.01 and budget["rel_rise"] <= 0.05
    assert budget["worst_range"] is None or budget["worst_range"]["delta1_drop"] <= 0.05
    assert len(fallback["tries"]) <= 2 * fallback["of"].bit_length() + 1  # bisection, not a scan
    runner = load_runner(written, device="cpu")
    m = evaluate_dataset(runner, held_out_set(onnx, AccuracyBudget()).dataset, (64, 64), limit=8)
    runner.close()
    assert m["delta1"] == pytest.approx(budget["int8"]["delta1"], abs=1e-12)
    again = cli.invoke(app, [*args, "--keep-float-from", str(written), "--overwrite"])
    assert again.exit_code == 0 and "fallback try" not in again.output, again.output
    assert read_sidecar(written)["int8_budget"]["int8"]["delta1"] == budget["int8"]["delta1"]
    return fallback


def test_keep_float_from_an_earlier_builds_sidecar(tmp_path: Path) -> None:
    """--keep-float-from takes the list an INT8 build recorded (artifact or sidecar path);
    a sidecar without one, or both options together, is one line."""
    import json

    from densedepth.util.errors import ExportError
    from export.build import keep_float_from
    from export.quantize import DEFAULT_KEEP_FLOAT

    int8 = tmp_path / "model_int8.onnx"
    (tmp_path / "model_int8.onnx.json").write_text(json.dumps({"keep_float": ["a", "b"]}))
    (tmp_path / "model_fp32.onnx.json").write_text(json.dumps({"precision": "fp32"}))
    assert keep_float_from(None, int8) == ("a", "b")
    assert keep_float_from(None, tmp_path / "model_int8.onnx.json") == ("a", "b")
    assert keep_float_from(["first-conv"], None) == ("first-conv",)
    assert keep_float_from(None, None) == DEFAULT_KEEP_FLOAT
    with pytest.raises(ExportError, match="not the sidecar of an INT8 build"):
        keep_float_from(None, tmp_path / "model_fp32.onnx")
    with pytest.raises(ExportError, match="give one of them"):
        keep_float_from(["x"], int8)


def test_calibrating_on_the_held_out_data_is_refused(trained_tiny: dict, tmp_path: Path) -> None:
    """--calib and --val-data naming the same data would judge INT8 on its calibration
    images: one line, before any file is written."""
    from densedepth.util.errors import ExportError
    from export.build import BuildJob, BuildOptions

    onnx = staged_onnx(trained_tiny, tmp_path / "m")
    opts = BuildOptions(calib_source="synthetic", calib_images=4,
                        budget=AccuracyBudget(val_data="synthetic"))  # fmt: skip
    with pytest.raises(ExportError, match="would judge INT8 on its calibration images"):
        BuildJob(onnx, tmp_path / "m", opts).calibration()
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "model_fp32.onnx", "model_fp32.onnx.json"]  # fmt: skip


def fake_quantized_ops(xml: Path) -> list[str]:
    """The ops of an INT8 IR that take a quantized activation (read with OpenVINO here)."""
    import openvino as ov

    ops = []
    for op in ov.Core().read_model(str(xml)).get_ordered_ops():
        source = op.input_value(0).get_node().get_type_name() if op.get_input_size() else ""
        if op.get_type_name() == "FakeQuantize" and source != "Constant":
            ops += [t.get_node().get_friendly_name() for t in op.output(0).get_target_inputs()]
    return ops


def test_openvino_keep_float_reaches_a_biased_conv(trained_tiny: dict, tmp_path: Path) -> None:
    """``--keep-float first-conv`` on OpenVINO: the IR's first Convolution (OpenVINO names a
    biased Conv ``NAME/WithoutBiases``) takes its input unquantized, everything else as
    before. (NNCF ignoring the ONNX node name alone left it quantized.)"""
    pytest.importorskip("nncf", reason="needs the openvino extra (pip install '.[openvino]')")
    from export.build import BuildOptions, build
    from export.formats import get_format

    fmt = get_format("openvino", "int8")
    calib = trained_tiny["calib"]
    conv0 = "/model/encoder/conv0/Conv/WithoutBiases"
    plain = build(fmt, trained_tiny["onnx"], tmp_path / "a", BuildOptions(calib=calib))
    kept = build(fmt, trained_tiny["onnx"], tmp_path / "b",
                 BuildOptions(calib=calib, keep_float=("first-conv",)))  # fmt: skip
    before, after = fake_quantized_ops(Path(plain["path"])), fake_quantized_ops(Path(kept["path"]))
    assert conv0 in before and conv0 not in after
    named = lambda ops: sorted(op for op in ops if op.startswith("/"))  # noqa: E731 (not Multiply_N)
    assert named(before) == named([*after, conv0]) and len(before) == len(after) + 1
    assert conv0 in kept["ignored_openvino_ops"] and kept["keep_float"] == ["first-conv"]


@pytest.mark.slow
def test_the_openvino_fallback_meets_the_budget_through_nncfs_ignored_scope(
    trained_tiny: dict, tmp_path: Path
) -> None:
    """OpenVINO INT8 calibrated on white frames misses the budget; the fallback bisects the
    ONNX nodes whose ops NNCF quantized, leaves the found ones to NNCF's ignored scope, and
    meets it with fewer than all in float; the IR written is scored again here, its ops in
    float are checked in the IR, and --keep-float-from rebuilds it without searching."""
    pytest.importorskip("nncf", reason="needs the openvino extra (pip install '.[openvino]')")
    onnx = staged_onnx(trained_tiny, tmp_path / "m")
    args = ["build-engine", str(onnx), "--target", "openvino", "--int8", "--calib",
            str(white_frames(tmp_path / "w")), "--calib-images", "4", "--val-images", "8",
            "--max-rel-rise", "0.05"]  # fmt: skip
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    xml = tmp_path / "m" / "model_int8.xml"
    quantized = fake_quantized_ops(xml)  # (before the helper's rebuild replaces the IR)
    fallback = check_fallback_result(onnx, xml, args)
    for node in fallback["keep_float"][1:]:  # (the first is the default depth-out group)
        assert not [op for op in quantized if op == node or op.startswith(node + "/")], node


def scene_scores(gt: np.ndarray, pred: np.ndarray) -> dict:
    """The score dict measure_budget keeps, from the toolkit's own metrics of two arrays."""
    from densedepth.metrics import compute_metrics, metrics_by_range

    m = compute_metrics(gt, pred)
    return {"delta1": m["delta1"], "rel": m["rel"], "by_range": metrics_by_range(gt, pred)}


def test_the_per_range_gate_catches_a_near_range_collapse_the_pooled_number_hides() -> None:
    """600 of 10,000 pixels at 1 m (6%: gated), 50 at 7 m (0.5%: reported, not gated), the
    rest at 4 m. An INT8 that is 1.5x off on 90 near pixels and on every far one loses, by
    hand count, 140/10,000 = 0.014 pooled δ1, 90/600 = 0.15 near and 50/50 = 1.0 far: a 0.02
    pooled budget holds, the 0.05 range gate catches 0-2 m (never 5-10 m), and without the
    range gate the build would have met."""
    from export.int8_budget import budget_line, judge_scores

    gt = np.full(10_000, 4.0)
    gt[:600], gt[600:650] = 1.0, 7.0
    int8 = gt.copy()
    int8[:90] *= 1.5
    int8[600:650] *= 1.5
    fp32, q = scene_scores(gt, gt.copy()), scene_scores(gt, int8)
    budget = AccuracyBudget(max_drop=0.02)
    verdict = judge_scores(fp32, q, budget)
    assert verdict["delta1_drop"] == pytest.approx(140 / 10_000, abs=1e-12)
    drops = {tuple(e["range_m"]): e for e in verdict["range_drops"]}
    assert drops[(0.0, 2.0)]["delta1_drop"] == pytest.approx(90 / 600, abs=1e-12)
    assert drops[(2.0, 5.0)]["delta1_drop"] == pytest.approx(0.0, abs=1e-12)
    assert drops[(5.0, 10.0)]["delta1_drop"] == pytest.approx(1.0, abs=1e-12)
    assert [e["gated"] for e in verdict["range_drops"]] == [True, True, False]
    assert drops[(0.0, 2.0)]["share"] == pytest.approx(0.06)
    assert verdict["worst_range"]["range_m"] == [0.0, 2.0] and verdict["verdict"] == "missed"
    line = budget_line({**budget.__dict__, **verdict, "fp32": {**fp32, "rms": 0.0},
                        "int8": {**q, "rms": 0.0}, "n_images": 1, "held_out": "x",
                        "measured": "y"})  # fmt: skip
    assert "worst range 0-2 m drop +0.1500, budget 0.05" in line
    ungated = judge_scores(fp32, q, AccuracyBudget(max_drop=0.02, max_range_drop=None))
    assert ungated["verdict"] == "met" and ungated["worst_range"]["range_m"] == [0.0, 2.0]
    assert judge_scores(fp32, q, AccuracyBudget(max_drop=0.02, max_range_drop=0.16))[
        "verdict"] == "met"  # fmt: skip
    assert judge_scores(fp32, q, AccuracyBudget(max_drop=0.01))["verdict"] == "missed"


@pytest.mark.parametrize(
    ("culprits", "bisection_bound"),
    [({137}, True), ({3, 140, 271}, False), ({0, 1}, False), (set(range(40, 60)), False)],
)
def test_the_fallback_search_narrows_to_exactly_the_groups_that_matter(
    culprits: set[int], bisection_bound: bool
) -> None:
    """With a budget met exactly when every culprit group is in float, the search returns the
    culprits themselves: one culprit in at most 2 log2(275) + 1 tries (a bisection's cost),
    culprits spread over both halves too (where a plain bisection stops at all 275); a try
    budget stops it early with a set that still meets the budget."""
    from export.fallback import reduce_groups

    groups = [f"g{i}" for i in range(275)]
    wanted = {f"g{i}" for i in culprits}
    calls: list[int] = []

    def meets(keep: list[str]) -> bool:
        calls.append(len(keep))
        return wanted <= set(keep)

    found = reduce_groups(list(groups), meets, lambda: False)
    assert set(found) == wanted
    if bisection_bound:
        assert len(calls) <= 2 * len(groups).bit_length() + 1
    calls.clear()
    capped = reduce_groups(list(groups), meets, lambda: len(calls) >= 5)
    assert wanted <= set(capped) and len(calls) <= 5


def test_a_nyu_test_zip_as_val_data_is_judged_on_its_test_split(
    trained_tiny: dict, tmp_path: Path
) -> None:
    """nyu_test.zip holds only the test split: --val-data takes that one (what the README's
    nyu.h5 engine command relies on); any other dataset keeps its train split."""
    from densedepth.data.writers import write_synthetic

    test_zip = write_synthetic(tmp_path / "t", "nyu-test-zip", 1, 3, 0, 64, 64)
    held = held_out_set(trained_tiny["onnx"], AccuracyBudget(val_data=str(test_zip)))
    assert held.label.endswith("(test split)") and len(held.dataset) == 3
    held = held_out_set(trained_tiny["onnx"], AccuracyBudget(val_data="synthetic"),
                        n=4, height=64, width=64)  # fmt: skip
    assert held.label.endswith("(train split)") and len(held.dataset) == 4
