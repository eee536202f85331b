"""A TensorRT-ready INT8 ONNX without TensorRT: both producers, the rule checker, entropy
calibration, and the GPU-free ``build-engine --onnx-only`` / ``check-onnx`` verbs."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy.stats import entropy as scipy_entropy
from typer.testing import CliRunner

from calib.calibration import CalibrationSet
from cli import app
from densedepth.data.readers import open_dataset
from densedepth.evaluation import evaluate_dataset
from densedepth.histogram import entropy_threshold
from densedepth.model import IMAGENET_MEAN, IMAGENET_STD
from densedepth.util.errors import ExportError
from engines import load_runner
from export.onnx_graph import constant_tensors, opset_of
from export.quantize import quantize_int8
from export.trt_check import check_model, check_onnx_file, flavour_note

cli = CliRunner()
HAS_MODELOPT = importlib.util.find_spec("modelopt") is not None


@pytest.fixture(scope="module")
def model(trained_tiny: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny trained model's fp32 ONNX, 8 calibration images and the held-out scenes."""
    root = tmp_path_factory.mktemp("trt-onnx")
    calib = CalibrationSet(trained_tiny["calib"].images[:8].copy(), "trained-calib-8")
    test = open_dataset("synthetic", "test", n=12, height=64, width=64, seed=99)
    fp32 = evaluate_dataset(load_runner(trained_tiny["onnx"], device="cpu"), test, (64, 64))
    return {"onnx": trained_tiny["onnx"], "calib": calib, "root": root, "test": test,
            "fp32": fp32}  # fmt: skip


def qdq(model: dict, name: str, **kwargs) -> dict:
    """The TensorRT flavour written by ONNX Runtime (ranges cached in the module's folder)."""
    out = model["root"] / name
    kwargs.setdefault("producer", "onnxruntime")
    return quantize_int8(model["onnx"], model["calib"], out, "tensorrt", **kwargs)


def scales(path: str) -> dict[str, np.ndarray]:
    """Activation scales (of QuantizeLinear nodes) by the tensor they quantize."""
    m = onnx.load(path)
    consts = constant_tensors(m.graph)
    return {
        n.input[0]: numpy_helper.to_array(consts[n.input[1]]).astype(np.float64)
        for n in m.graph.node
        if n.op_type == "QuantizeLinear"
    }


def test_onnxruntime_writer_follows_tensorrt_rules(model: dict) -> None:
    record = qdq(model, "trt.onnx")
    m = onnx.load(record["path"])
    assert record["int32_dequantize_nodes"] == 0 and record["int8_flavour"] == "tensorrt"
    assert check_model(m) == [] and check_model(m, (8, 6)) == []
    consts = constant_tensors(m.graph)
    qdq_nodes = [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zero_points = [consts[n.input[2]] for n in qdq_nodes if len(n.input) > 2]
    assert zero_points and {z.data_type for z in zero_points} == {TensorProto.INT8}
    assert all(not numpy_helper.to_array(z).any() for z in zero_points)
    # Q/DQ only on the inputs of Conv, pooling and Resize: nothing on BatchNorm, no biases
    produced_by_dq = {n.output[0] for n in m.graph.node if n.op_type == "DequantizeLinear"}
    quantized_inputs = {n.op_type for n in m.graph.node if set(n.input) & produced_by_dq}
    assert quantized_inputs <= {"Conv", "MaxPool", "AveragePool", "Resize", "Concat"}
    for node in m.graph.node:
        if node.op_type == "Conv" and len(node.input) > 2:
            assert node.input[2] not in produced_by_dq  # the bias stays float
    assert record["int8_conv_nodes"] == record["conv_nodes"]
    assert {e.domain for e in m.opset_import} == {""} and opset_of(m) == 17
    metrics = evaluate_dataset(load_runner(record["path"], device="cpu"), model["test"], (64, 64))
    assert abs(metrics["delta1"] - model["fp32"]["delta1"]) < 0.03, (metrics, model["fp32"])


def test_fp16_float_layers(model: dict) -> None:
    record = qdq(model, "trt16.onnx", float_precision="fp16")
    m = onnx.load(record["path"])
    assert opset_of(m) == 19 and record["float_precision"] == "fp16"
    assert check_model(m) == [] and record["int32_dequantize_nodes"] == 0
    floats = [t for t in m.graph.initializer
              if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]  # fmt: skip
    resize_scales = {n.input[2] for n in m.graph.node if n.op_type == "Resize" and len(n.input) > 2}
    assert {t.data_type for t in floats if t.name not in resize_scales} == {TensorProto.FLOAT16}
    io = [*m.graph.input, *m.graph.output]
    assert {v.type.tensor_type.elem_type for v in io} == {TensorProto.FLOAT}  # fp32 I/O
    # the check TensorRT 8.x would fail: FP16 Q/DQ scales need opset 19
    with pytest.raises(ExportError, match="need opset 19"):
        qdq(model, "x.onnx", float_precision="fp16", max_opset=17)
    assert record["fp32_max_abs_m"] < 1.0  # runs on ONNX Runtime CPU, close to fp32
    metrics = evaluate_dataset(load_runner(record["path"], device="cpu"), model["test"], (64, 64))
    assert abs(metrics["delta1"] - model["fp32"]["delta1"]) < 0.03


def test_entropy_is_its_own_calibration(model: dict) -> None:
    minmax = qdq(model, "mm.onnx")
    entropy = qdq(model, "ent.onnx", method="entropy")
    assert entropy["calibration_cache"] != minmax["calibration_cache"]
    a, b = scales(minmax["path"]), scales(entropy["path"])
    assert a.keys() == b.keys()
    clipped = [k for k in a if b[k] < a[k] * (1 - 1e-6)]
    assert clipped, "entropy gave the same scales as minmax"
    assert all(b[k] <= a[k] * (1 + 1e-6) for k in a)  # a threshold never exceeds the max


def reference_entropy_threshold(hist: np.ndarray, edges: np.ndarray) -> float:
    """TensorRT's entropy calibration written plainly (np.digitize + scipy), as a reference."""
    best, arg = np.inf, None
    for i in range(128, len(hist) + 1):
        p = hist[:i].astype(float).copy()
        p[-1] += hist[i:].sum()
        group = np.digitize(np.arange(i), np.linspace(0, i, 129)) - 1
        q = np.zeros(i)
        for g in range(128):
            members = (group == g) & (hist[:i] > 0)
            if members.any():
                q[members] = hist[:i][group == g].sum() / members.sum()
        kl = scipy_entropy(p, q) if q.sum() > 0 else np.inf
        if kl < best:
            best, arg = kl, i
    return float(edges[arg])


@pytest.mark.parametrize("shape", ["normal+outliers", "uniform", "bimodal-sparse"])
def test_entropy_threshold_matches_a_plain_reference(shape: str) -> None:
    rng = np.random.default_rng(3)
    x = {
        "normal+outliers": np.concatenate([rng.normal(0, 1, 50_000), rng.normal(0, 25, 40)]),
        "uniform": rng.uniform(-4, 4, 30_000),
        "bimodal-sparse": np.concatenate([rng.normal(1, 0.05, 9000), rng.normal(6, 0.1, 300)]),
    }[shape]
    hist, edges = np.histogram(np.abs(x), bins=512)
    threshold, divergences = entropy_threshold(hist, edges)
    assert threshold == pytest.approx(reference_entropy_threshold(hist, edges), rel=1e-9)
    assert len(divergences) == 512 - 128 + 1 and np.isfinite(divergences).any()
    if shape == "normal+outliers":
        assert threshold < 0.5 * np.abs(x).max()  # the outliers are clipped
    few, few_edges = np.histogram(np.abs(x), bins=64)
    assert entropy_threshold(few, few_edges)[0] == few_edges[-1]  # too few bins: keep all


def test_cpu_flavour_is_not_for_tensorrt(model: dict, tmp_path: Path) -> None:
    out = model["root"] / "cpu.onnx"
    quantize_int8(model["onnx"], model["calib"], out, "cpu")
    rules = {f.rule for f in check_onnx_file(out)}
    assert {"dq-input", "zero-point", "q-output"} <= rules
    assert "ONNX Runtime CPU INT8 flavour" in flavour_note(out)
    assert flavour_note(model["root"] / "trt.onnx") is None
    result = cli.invoke(app, ["check-onnx", str(out), "--for", "tensorrt"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("not for TensorRT:") and "uint8 activations" in lines[0]
    assert any("(a quantized bias)" in line and "[dq-input]" in line for line in lines)
    result = cli.invoke(app, ["check-onnx", str(model["root"] / "trt.onnx")])
    assert result.exit_code == 0 and "0 violations" in result.stdout


def tiny_graph(nodes, inits, opset=17, x_shape=(1, 4, 8, 8), y_shape=None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def conv_qdq(weight_scale: np.ndarray, axis: int = 0, act_zero: int = 0, act_scale: float = 0.1):
    """x -> Q -> DQ -> Conv(DQ(int8 W)) -> y with the given scales."""
    inits = [
        numpy_helper.from_array(np.array(act_scale, np.float32), "s"),
        numpy_helper.from_array(np.array(act_zero, np.int8), "z"),
        numpy_helper.from_array(np.ones((4, 4, 3, 3), np.int8), "w"),
        numpy_helper.from_array(weight_scale.astype(np.float32), "ws"),
        numpy_helper.from_array(np.zeros(weight_scale.shape, np.int8), "wz"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_x"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="dq_w", axis=axis),
        helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv", pads=[1, 1, 1, 1]),
    ]
    return nodes, inits


def rules_of(model: onnx.ModelProto, version=None) -> list[tuple[str, str]]:
    return [(f.node, f.rule) for f in check_model(model, version)]


def test_checker_names_each_violation() -> None:
    nodes, inits = conv_qdq(np.full(4, 0.01))
    assert rules_of(tiny_graph(nodes, inits)) == []
    nodes, inits = conv_qdq(np.full(4, 0.01), act_zero=5)
    assert rules_of(tiny_graph(nodes, inits)) == [("q_x", "zero-point"), ("dq_x", "zero-point")]
    nodes, inits = conv_qdq(np.array(0.01))
    assert rules_of(tiny_graph(nodes, inits)) == [("dq_w", "per-channel")]
    nodes, inits = conv_qdq(np.full(4, 0.01), axis=1)
    assert rules_of(tiny_graph(nodes, inits)) == [("dq_w", "per-channel")]
    nodes, inits = conv_qdq(np.array([0.01, -0.01, 0.01, np.inf]))
    assert rules_of(tiny_graph(nodes, inits)) == [("dq_w", "scale")]
    nodes, inits = conv_qdq(np.full(4, 0.01), act_scale=0.0)
    assert rules_of(tiny_graph(nodes, inits)) == [("q_x", "scale"), ("dq_x", "scale")]
    # a dequantized activation that reaches no INT8 op: the pair dangles
    nodes, inits = conv_qdq(np.full(4, 0.01))
    nodes[3] = helper.make_node("Relu", ["xd"], ["y"], name="relu")
    assert ("dq_x", "dangling") in rules_of(tiny_graph(nodes, inits))
    # opset, ops and shapes for the TensorRT version asked
    nodes, inits = conv_qdq(np.full(4, 0.01))
    assert rules_of(tiny_graph(nodes, inits, opset=19), (8, 6)) == [("model", "opset")]
    assert rules_of(tiny_graph(nodes, inits, opset=19), (10, 8)) == []
    gelu = [helper.make_node("Gelu", ["x"], ["y"], name="gelu")]
    assert rules_of(tiny_graph(gelu, [], opset=20), (10, 8)) == []
    assert ("gelu", "op") in rules_of(tiny_graph(gelu, [], opset=17), (8, 6))
    custom = [helper.make_node("QLinearConv", ["x"], ["y"], name="ql", domain="com.microsoft")]
    assert rules_of(tiny_graph(custom, [])) == [("ql", "op")]
    nodes, inits = conv_qdq(np.full(4, 0.01))
    assert rules_of(tiny_graph(nodes, inits, x_shape=("n", 4, "h", 8))) == [("x", "static-shape")]
    with pytest.raises(ExportError, match="older than any"):
        check_model(tiny_graph(nodes, inits), (7, 1))


def test_check_onnx_cli_bad_input(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not protobuf \x00\x01")
    cases = [
        ([str(tmp_path / "missing.onnx")], "does not exist"),
        ([str(garbage)], "not a readable ONNX file"),
        ([str(garbage), "--trt-version", "x.y"], "cannot read the TensorRT version"),
        ([str(garbage), "--for", "openvino"], "openvino"),
    ]
    for args, message in cases:
        result = cli.invoke(app, ["check-onnx", *args])
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_build_engine_onnx_only_needs_no_tensorrt(model: dict, tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here; --onnx-only then plans for it")
    src = tmp_path / "model_fp32.onnx"
    src.write_bytes(Path(model["onnx"]).read_bytes())
    (tmp_path / "model_fp32.onnx.json").write_bytes(Path(str(model["onnx"]) + ".json").read_bytes())
    images = tmp_path / "images"
    images.mkdir()
    from densedepth.data.writers import encode_png

    for i in range(4):
        rgb, _ = open_dataset("synthetic", "train", n=4, height=64, width=64, seed=7)[i]
        (images / f"{i}.png").write_bytes(encode_png(rgb))
    base = ["build-engine", str(src), "--target", "tensorrt", "--int8", "--onnx-only",
            "--calib", str(images), "--quantizer", "onnxruntime"]  # fmt: skip
    result = cli.invoke(app, [*base, "--fp16"], terminal_width=200)
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last == str(tmp_path / "model_int8_fp16_trt.onnx")
    assert "10.12+ / 11 (strongly typed): 0 violations" in result.stdout
    assert "calibration ranges saved" in result.stdout and list(tmp_path.glob("calib_minmax_*"))
    assert check_onnx_file(last) == [] and opset_of(onnx.load(last)) == 19
    assert json.loads(Path(last + ".json").read_text())["float_precision"] == "fp16"
    # for TensorRT 8.6 (JetPack 5): FP32 float layers at opset 17; FP16 is a builder flag there
    result = cli.invoke(app, [*base, "--fp16", "--trt-version", "8.6"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "calibration ranges reused" in result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert last.endswith("model_int8_trt.onnx") and opset_of(onnx.load(last)) == 17
    assert check_onnx_file(last, (8, 6)) == []
    bad = [
        (["--target", "onnx", "--int8", "--onnx-only"], "--onnx-only is for --target tensorrt"),
        (["--target", "onnx", "--int8", "--fp16"], "choose one of"),
        (["--target", "tensorrt", "--int8", "--bf16"], "choose one of"),
        (["--target", "tensorrt", "--int8", "--fp16"], "tensorrt-int8: tensorrt not installed"),
        (
            [
                "--target",
                "tensorrt",
                "--onnx-only",
                "--legacy-calibrator",
                "--int8",
                "--trt-version",
                "8.6",
                "--calib",
                str(images),
            ],
            "no --onnx-only",
        ),
        (["--target", "tensorrt", "--onnx-only", "--trt-version", "10.x"], "TensorRT version"),
    ]
    for args, message in bad:
        result = cli.invoke(app, ["build-engine", str(src), *args])
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.skipif(
    not HAS_MODELOPT, reason="needs NVIDIA ModelOpt (pip install '.[tensorrt-quant]')"
)
def test_modelopt_writer(model: dict, tmp_path: Path) -> None:
    src = Path(model["onnx"])
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    # FP32 float layers, lowered to opset 17 for TensorRT 8.x's parser
    record = quantize_int8(src, model["calib"], tmp_path / "mo.onnx", "tensorrt",
                           producer="modelopt", float_precision="fp32", max_opset=17)  # fmt: skip
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before  # it worked on a copy
    # ModelOpt patches ONNX Runtime's quantizer for good (its calibrator factory, QDQ rules
    # for LRN and HardSwish); it ran in a child process, so ours here is untouched
    from onnxruntime.quantization import calibrate
    from onnxruntime.quantization.registry import QDQRegistry

    assert "LRN" not in QDQRegistry and "HardSwish" not in QDQRegistry
    assert calibrate.create_calibrator.__module__ == "onnxruntime.quantization.calibrate"
    m = onnx.load(record["path"])
    assert record["int8_producer"] == "modelopt" and opset_of(m) == 17
    assert check_model(m, (8, 6)) == [] and record["int32_dequantize_nodes"] == 0
    metrics = evaluate_dataset(load_runner(record["path"], device="cpu"), model["test"], (64, 64))
    assert abs(metrics["delta1"] - model["fp32"]["delta1"]) < 0.03
    # FP16 float layers from other (darker) images: calibrated on them, not on a random sample
    dark = CalibrationSet(model["calib"].images * 0.3, "dark")
    fp16 = quantize_int8(src, dark, tmp_path / "mo16.onnx", "tensorrt", producer="modelopt",
                         float_precision="fp16")  # fmt: skip
    assert opset_of(onnx.load(fp16["path"])) == 19 and check_onnx_file(fp16["path"]) == []
    # the first conv's input is the normalised image: its max calibration scale is known
    norm = "/model/Div_output_0"
    for images, path, tol in ((model["calib"].images, record["path"], 1e-5),
                              (dark.images, fp16["path"], 2e-3)):  # fmt: skip
        mean = np.array(IMAGENET_MEAN, np.float32)[None, :, None, None]
        std = np.array(IMAGENET_STD, np.float32)[None, :, None, None]
        expected = np.abs((images - mean) / std).max() / 127
        assert scales(path)[norm] == pytest.approx(expected, rel=tol)
    with pytest.raises(ExportError, match="ModelOpt calibrates with minmax or entropy"):
        quantize_int8(src, dark, tmp_path / "p.onnx", "tensorrt", method="percentile",
                      producer="modelopt")  # fmt: skip
    with pytest.raises(ExportError, match="no calibration images"):
        empty = CalibrationSet(np.zeros((0, 3, 64, 64), np.float32), "empty")
        quantize_int8(src, empty, tmp_path / "e.onnx", "tensorrt", producer="modelopt")


def test_tensorrt_8_5_is_held_to_its_own_parser() -> None:
    """onnx-tensorrt release/8.5-GA: no LayerNormalization / GroupNormalization / IsInf (8.6
    added them to docs/operators.md), and Q/DQ must pass the zero point ("This version of
    TensorRT requires 3 inputs for the DequantizeLinear operator", its importer)."""
    norm = [helper.make_node("LayerNormalization", ["x", "g"], ["y"], name="ln", axis=-1)]
    gamma = [numpy_helper.from_array(np.ones(8, np.float32), "g")]
    assert ("ln", "op") in rules_of(tiny_graph(norm, gamma), (8, 5))
    assert ("ln", "op") not in rules_of(tiny_graph(norm, gamma), (8, 6))
    nodes, inits = conv_qdq(np.full(4, 0.01))
    for node in nodes[:3]:
        del node.input[2]  # scale only: the zero point is implied
    two_input = tiny_graph(nodes, inits)
    needs_zero = [(name, "zero-point-input") for name in ("q_x", "dq_x", "dq_w")]
    assert not set(needs_zero) & set(rules_of(two_input, (8, 6)))
    assert set(needs_zero) <= set(rules_of(two_input, (8, 5)))


def test_check_onnx_compare_reports_the_candidates_error(model: dict, tmp_path: Path) -> None:
    """check-onnx FP32 --compare QDQ: the errors in metres and the δ1 agreement, against the
    same numbers computed here from the two runners; --tolerance turns them into an exit code.
    Then the same on the real NYU frames where ../shared has them."""
    from bench.compare import compare_outputs
    from calib.calibration import load_calibration_set

    record = qdq(model, "model_int8_trt.onnx")
    result = compare_outputs(model["onnx"], record["path"], "synthetic", 4)
    x = load_calibration_set("synthetic", (64, 64), n=4, split="test").images
    a = load_runner(model["onnx"], device="cpu")(x).astype(np.float64)
    b = load_runner(record["path"], device="cpu")(x).astype(np.float64)
    d = np.abs(b - a)
    assert result["images"] == 4 and result["max_abs_m"] == pytest.approx(d.max(), rel=1e-6)
    assert result["median_abs_m"] == pytest.approx(np.median(d), rel=1e-6)
    ratio = np.maximum(a / b, b / a)
    assert result["delta1_agreement"] == pytest.approx(np.mean(ratio < 1.25))
    assert result["max_abs_m"] > 0 and 0.5 < result["delta1_agreement"] <= 1.0  # INT8 differs
    args = ["check-onnx", str(model["onnx"]), "--compare", record["path"], "--limit", "4"]
    ok = CliRunner().invoke(app, [*args, "--tolerance", "100"])
    assert ok.exit_code == 0 and "δ1 agreement" in ok.output and "|Δdepth| max" in ok.output
    tight = CliRunner().invoke(app, [*args, "--tolerance", "0"])
    assert tight.exit_code == 1 and "> 0 m" in tight.output
    same = compare_outputs(model["onnx"], model["onnx"], "synthetic", 2)
    assert same["max_abs_m"] == 0.0 and same["delta1_agreement"] == 1.0
    real = os.environ.get("NYU_SAMPLES_DIR")
    if real and (Path(real) / "rgb").is_dir():
        frames = compare_outputs(model["onnx"], record["path"], str(Path(real) / "rgb"), 4)
        assert frames["images"] == 4 and frames["max_abs_m"] > 0


def test_dla_check_names_what_keeps_the_model_off_dla(model: dict) -> None:
    """The exported DenseDepth: its four align_corners Resizes (given sizes) and the output's
    Reciprocal fall back to the GPU; shape arithmetic is folded; everything else runs on DLA."""
    from export.dla_check import check_dla, dla_summary

    m = onnx.load(model["onnx"])
    found = check_dla(m)
    rules = sorted({(f.rule, f.node.split("/")[-1]) for f in found})
    assert rules == [("dla-layer", "Reciprocal"), ("dla-resize-coords", "Resize"),
                     ("dla-resize-sizes", "Resize")]  # fmt: skip
    assert sum(f.rule == "dla-resize-coords" for f in found) == 4
    assert dla_summary(m, found).startswith("5 of ")
    cli = CliRunner().invoke(app, ["check-onnx", str(model["onnx"]), "--for", "dla"])
    assert cli.exit_code == 1 and "5 of" in cli.output and "cannot run on DLA" in cli.output
    assert "[dla-resize-coords]" in cli.output


def test_dla_rules_one_by_one() -> None:
    from export.dla_check import check_dla

    def rules(nodes, inits=(), x_shape=(1, 4, 8, 8)):
        return sorted(f.rule for f in check_dla(tiny_graph(nodes, list(inits), x_shape=x_shape)))

    w = numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], strides=[1, 1])
    assert rules([conv], [w]) == []
    far = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], strides=[9, 9])
    assert rules([far], [w]) == ["dla-strides"]
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[9, 9])
    assert rules([pool]) == ["dla-kernel_shape"]
    cat = helper.make_node("Concat", ["x", "x"], ["y"], axis=2)
    assert rules([cat]) == ["dla-concat"]
    assert rules([helper.make_node("Concat", ["x", "x"], ["y"], axis=1)]) == []
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")
    half = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear",
                            coordinate_transformation_mode="half_pixel")  # fmt: skip
    assert rules([half], [scales]) == []  # the DLA-friendly form
    corners = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear",
                               coordinate_transformation_mode="align_corners")  # fmt: skip
    assert rules([corners], [scales]) == ["dla-resize-coords"]
    big = numpy_helper.from_array(np.array([1, 1, 8, 8], np.float32), "s")
    assert rules([half], [big]) == ["dla-resize-scales"]
    assert rules([helper.make_node("Gelu", ["x"], ["y"])]) == ["dla-layer"]
    assert rules([conv], [w], x_shape=("n", 4, 8, 8)) == ["dla-static-shape"]
    cli = CliRunner().invoke(app, ["check-onnx", "--help"])
    assert "dla" in cli.output
