"""Export, calibration, INT8 Q/DQ, runners and the TensorRT version logic."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from bench.latency import measure_latency
from calib.calibration import (
    CalibrationSet,
    CalibrationWarning,
    cache_key,
    load_calibration_set,
    spread_indices,
)
from densedepth.checkpoint import save_checkpoint
from densedepth.data.preprocess import rgb_to_input
from densedepth.data.readers import open_dataset
from densedepth.data.writers import encode_png
from densedepth.evaluation import evaluate_dataset
from densedepth.model import DenseDepth
from densedepth.util.errors import BackendUnavailable, DataError, DenseDepthError, ExportError
from densedepth.util.onnx_io import parity_input, read_metadata
from densedepth.util.outputs import LEDGER
from engines import load_runner
from export.build import BuildOptions, build
from export.formats import DEPLOY_FORMATS, get_format
from export.onnx_export import export_onnx, file_sha256
from export.quantize import quantize_int8, sensitive_nodes
from export.tensorrt import build_plan, check_engine_sidecar, onnx_kind
from export.tensorrt_versions import parse_version
from train.config import TrainConfig


def tiny_checkpoint(path: Path, backbone: str, size: tuple[int, int] = (64, 64)) -> Path:
    """A randomly initialised model saved in our checkpoint layout."""
    torch.manual_seed(0)
    model = DenseDepth(backbone, decoder_width=0.125)
    config = TrainConfig(backbone=backbone, decoder_width=0.125, input_size=size).to_dict()
    return save_checkpoint(path, {"model": model.state_dict(), "config": config, "step": 0})


@pytest.fixture(scope="module")
def trained(trained_tiny: dict) -> dict:
    """The session's tiny trained DenseNet121 (tests/conftest.py)."""
    return trained_tiny


@pytest.mark.parametrize("backbone", ["densenet169", "densenet121"])
def test_export_matches_pytorch_and_records_metadata(tmp_path: Path, backbone: str) -> None:
    ckpt = tiny_checkpoint(tmp_path / "c.pt", backbone)
    out = tmp_path / "m.onnx"
    record = export_onnx(ckpt, out)
    assert record["parity_max_abs_m"] < 1e-4
    onnx.checker.check_model(onnx.load(str(out)))
    meta = read_metadata(out)
    assert meta["backbone"] == backbone and meta["input_size"] == [64, 64]
    assert meta["source_sha256"] == file_sha256(ckpt)
    assert float(meta["min_depth"]) == 0.1 and float(meta["max_depth"]) == 10.0
    assert float(meta["parity_max_abs_m"]) == record["parity_max_abs_m"]
    assert json.loads((tmp_path / "m.onnx.json").read_text())["opset"] == 17
    # the deployable graph: RGB [0,1] in, metres at half resolution out, in the valid range
    runner = load_runner(out, device="cpu")
    x = parity_input((64, 64))
    depth = runner(x)
    assert depth.shape == (1, 1, 32, 32) and depth.dtype == np.float32
    assert depth.min() >= 0.1 - 1e-6 and depth.max() <= 10.0 + 1e-5
    model = DenseDepth(backbone, decoder_width=0.125)
    model.load_state_dict(torch.load(ckpt, weights_only=True)["model"])
    with torch.no_grad():
        expected = model.eval().predict_depth(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(depth, expected, atol=1e-4)


def test_variant_travels_through_checkpoint_and_onnx(tmp_path: Path) -> None:
    from densedepth.variant import preset

    torch.manual_seed(0)
    variant = preset("keras-released", "kitti")
    model = DenseDepth("densenet121", decoder_width=0.125, variant=variant)
    with torch.no_grad():  # a bias that puts depth beyond NYU's 10 m (random init: near 0)
        model.decoder.conv_out.bias.fill_(4.0)  # 80 / 4 = 20 m
    config = TrainConfig(backbone="densenet121", decoder_width=0.125, input_size=(64, 64),
                         variant=variant.to_dict()).to_dict()  # fmt: skip
    ckpt = save_checkpoint(tmp_path / "k.pt", {"model": model.state_dict(), "config": config})
    record = export_onnx(ckpt, tmp_path / "k.onnx")
    meta = read_metadata(tmp_path / "k.onnx")
    assert meta["variant"] == variant.to_dict() and meta["depth_numerator"] == 80.0
    assert (meta["min_depth"], meta["max_depth"]) == (1.0, 80.0)
    x = parity_input((64, 64))
    onnx_runner = load_runner(tmp_path / "k.onnx", device="cpu")
    torch_runner = load_runner(ckpt, device="cpu")
    assert onnx_runner.depth_range == torch_runner.depth_range == (1.0, 80.0)
    got, want = onnx_runner(x), torch_runner(x)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got.min() >= 1.0 and got.max() <= 80.0 and got.max() > 10.0  # not NYU's 10 m cap
    assert record["parity_max_abs_m"] < 1e-3


def test_dynamic_batch_and_other_input_size(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "c.pt", "densenet121")
    out = tmp_path / "dyn.onnx"
    export_onnx(ckpt, out, input_size=(96, 128), dynamic_batch=True)
    runner = load_runner(out, device="cpu")
    assert runner.input_shape == (1, 3, 96, 128) and runner.max_batch is None
    assert measure_latency(runner, 1, 0.0, 0, batch=3)["engine_batch"] == 3  # one call of 3
    x = parity_input((96, 128), batch=3)
    together = runner(x)
    apart = np.concatenate([runner(x[i : i + 1]) for i in range(3)])
    assert together.shape == (3, 1, 48, 64)
    np.testing.assert_allclose(together, apart, atol=1e-5)


def test_export_bad_input(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "c.pt", "densenet121")
    with pytest.raises(ExportError, match="opset 21"):
        export_onnx(ckpt, tmp_path / "m.onnx", opset=21)
    with pytest.raises(DenseDepthError, match="multiple"):
        export_onnx(ckpt, tmp_path / "m.onnx", input_size=(60, 64))
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    with pytest.raises(DenseDepthError, match=r"foreign\.pt"):
        export_onnx(foreign, tmp_path / "m.onnx")
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(DenseDepthError, match="cannot write"):
        export_onnx(ckpt, blocker / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_from_another_model_is_refused(tmp_path: Path) -> None:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 64, 64])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 64, 64])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    other = tmp_path / "other.onnx"
    onnx.save(onnx.helper.make_model(graph), str(other))
    with pytest.raises(DenseDepthError, match="not a DenseDepth export"):
        load_runner(other, device="cpu")
    calib = CalibrationSet(np.zeros((2, 3, 64, 64), np.float32), "zeros")
    with pytest.raises(ExportError, match="not a float DenseDepth export"):
        quantize_int8(other, calib, tmp_path / "q.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 not protobuf")
    with pytest.raises(DenseDepthError, match=r"garbage\.onnx"):
        load_runner(garbage, device="cpu")


def test_fp16_onnx_agrees_with_fp32(trained: dict, tmp_path: Path) -> None:
    fmt = get_format("onnx", "fp16")
    record = build(fmt, trained["onnx"], tmp_path, BuildOptions())
    assert record["fp32_max_abs_m"] < 0.05
    fp16 = onnx.load(record["path"])
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)
    runner = load_runner(record["path"], device="cpu")
    assert runner.precision == "fp16"


def test_int8_keeps_delta1_of_fp32_on_held_out_scenes(
    trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    (tmp_path / "out").mkdir()
    stale = tmp_path / "out" / ".dd-tmp-999999999-q.onnx.killed.tmp"  # no such process
    stale.write_bytes(b"x" * 100)
    record = quantize_int8(trained["onnx"], trained["calib"], tmp_path / "out" / "q.onnx", "cpu")
    # scratch lived beside the output and is gone, with the killed run's leftover
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["q.onnx", "q.onnx.json", Path(record["calibration_cache"]).name, LEDGER]
    )  # the ledger: q.onnx is the toolkit's to replace (densedepth.util.outputs)
    assert not any(system_tmp.iterdir())
    assert record["int8_conv_nodes"] >= record["conv_nodes"] - 1  # last conv may stay float
    assert record["float_nodes"]  # the depth conversion stays in float by default
    test = open_dataset("synthetic", "test", n=12, height=64, width=64, seed=99)
    fp32 = evaluate_dataset(load_runner(trained["onnx"], device="cpu"), test, (64, 64))
    q = tmp_path / "out" / "q.onnx"
    int8 = evaluate_dataset(load_runner(q, device="cpu"), test, (64, 64))
    assert fp32["delta1"] > 0.2, fp32  # the model learned something
    assert abs(int8["delta1"] - fp32["delta1"]) < 0.03, (fp32, int8)
    assert abs(int8["rel"] - fp32["rel"]) < 0.03, (fp32, int8)


def test_one_calibration_two_flavours_and_cache_keys(trained: dict, tmp_path: Path) -> None:
    calib = trained["calib"]
    cpu = quantize_int8(trained["onnx"], calib, tmp_path / "cpu.onnx", "cpu")
    trt = quantize_int8(
        trained["onnx"], calib, tmp_path / "trt.onnx", "tensorrt", producer="onnxruntime"
    )
    assert not cpu["calibration_reused"] and trt["calibration_reused"]
    assert cpu["calibration_cache"] == trt["calibration_cache"]
    zero_points = {}
    for name in ("cpu", "trt"):
        model = onnx.load(str(tmp_path / f"{name}.onnx"))
        inits = {t.name: t for t in model.graph.initializer}
        zps = [
            inits[n.input[2]]
            for n in model.graph.node
            if n.op_type == "QuantizeLinear" and len(n.input) > 2
        ]
        zero_points[name] = {(t.data_type, int(onnx.numpy_helper.to_array(t).max())) for t in zps}
    assert {dt for dt, _ in zero_points["cpu"]} == {onnx.TensorProto.UINT8}
    assert zero_points["trt"] == {(onnx.TensorProto.INT8, 0)}  # symmetric signed activations
    assert onnx_kind(tmp_path / "trt.onnx") == "int8-qdq-fp32"
    with pytest.raises(ExportError, match="CPU INT8 flavour"):
        onnx_kind(tmp_path / "cpu.onnx")
    # another calibration set, another method or another model: another key
    other = CalibrationSet(calib.images[:16].copy(), "half")
    base = cache_key("a" * 64, calib, "minmax")
    assert base == cache_key("a" * 64, calib, "minmax")
    assert base != cache_key("b" * 64, calib, "minmax")
    assert base != cache_key("a" * 64, other, "minmax")
    assert base != cache_key("a" * 64, calib, "entropy")
    again = quantize_int8(trained["onnx"], other, tmp_path / "other.onnx", "cpu")
    assert not again["calibration_reused"]
    assert again["calibration_cache"] != cpu["calibration_cache"]


def test_keep_float_groups_and_bad_names(trained: dict, tmp_path: Path) -> None:
    groups = sensitive_nodes(onnx.load(str(trained["onnx"])))
    assert [len(groups["first-conv"]), len(groups["last-conv"])] == [1, 1]
    assert groups["depth-out"] and groups["input-norm"]
    record = quantize_int8(
        trained["onnx"], trained["calib"], tmp_path / "q.onnx", keep_float=["first-conv"]
    )
    assert record["int8_conv_nodes"] == record["conv_nodes"] - 1
    with pytest.raises(ExportError, match="neither a group"):
        quantize_int8(trained["onnx"], trained["calib"], tmp_path / "q2.onnx", keep_float=["x"])


def test_runners_agree(trained: dict, tmp_path: Path) -> None:
    x = np.concatenate([trained["calib"].images[:2]])
    torch_out = load_runner(trained["ckpt"], device="cpu")(x)
    onnx_out = load_runner(trained["onnx"], device="cpu")(x)
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-4)
    q = quantize_int8(trained["onnx"], trained["calib"], tmp_path / "q.onnx")
    int8_out = load_runner(q["path"], device="cpu")(x)
    assert np.mean(np.abs(int8_out - torch_out)) < 0.15


def test_calibration_from_folder_skips_unreadable_and_refuses_too_few(tmp_path: Path) -> None:
    folder = tmp_path / "rgb"
    folder.mkdir()
    for i in range(3):
        rgb, _ = open_dataset("synthetic", "test", n=3, height=48, width=64)[i]
        (folder / f"{i}.png").write_bytes(encode_png(rgb))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.warns(CalibrationWarning, match="fewer than 300"):
        calib = load_calibration_set(folder, (64, 64), n=10)
    assert len(calib) == 3 and calib.skipped == ["broken.png"]
    assert calib.images.shape == (3, 3, 64, 64) and calib.images.dtype == np.float32
    rgb0, _ = open_dataset("synthetic", "test", n=3, height=48, width=64)[0]
    np.testing.assert_array_equal(calib.images[0], rgb_to_input(rgb0, (64, 64))[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        with pytest.raises(DataError, match="1 unreadable skipped"):
            load_calibration_set(folder, (64, 64), n=10, batch_size=4)


def test_calibration_spreads_over_scenes() -> None:
    groups = ["a"] * 90 + ["b"] * 5 + ["c"] * 5
    chosen = spread_indices(groups, 9)
    picked = [groups[i] for i in chosen]
    assert picked.count("b") == 3 and picked.count("c") == 3 and picked.count("a") == 3
    assert spread_indices(groups, 500) == list(range(100))


def test_tensorrt_build_plans_per_version() -> None:
    assert parse_version("10.3.0.26") == (10, 3) and parse_version("11") == (11, 0)
    # 11: strongly typed always (the flag is deprecated there), no precision flags
    eleven = build_plan((11, 2), "int8")
    assert eleven.onnx_kind == "int8-qdq-fp16" and eleven.flags == () and eleven.strongly_typed
    assert not eleven.typed_flag and build_plan((11, 2), "fp16").onnx_kind == "fp16"
    assert build_plan((11, 2), "int8", int8_float="fp32").onnx_kind == "int8-qdq-fp32"
    # 10.12+: strongly typed, with the flag; the precision flags are deprecated there
    typed = build_plan((10, 12), "int8")
    assert typed.strongly_typed and typed.typed_flag and typed.flags == ()
    assert build_plan((10, 16), "fp16").onnx_kind == "fp16"
    # 10.1 .. 10.11: flags on FP32-float ONNX; INT8 + FP16 for the float layers by default
    assert build_plan((10, 8), "fp16") == build_plan((10, 1), "fp16")
    assert build_plan((10, 8), "fp16").flags == ("FP16",)
    flagged = build_plan((10, 11), "int8")
    assert flagged.onnx_kind == "int8-qdq-fp32" and flagged.flags == ("INT8", "FP16")
    assert build_plan((10, 11), "int8", int8_float="fp32").flags == ("INT8",)
    # < 10.1: the same, or the legacy calibrator; 8.x parses opset <= 17 with EXPLICIT_BATCH
    legacy = build_plan((8, 6), "int8", use_calibrator=True)
    assert legacy.calibrator and legacy.onnx_kind == "fp32" and legacy.explicit_batch_flag
    assert legacy.max_opset == 17 and build_plan((10, 0), "int8").max_opset is None
    assert build_plan((10, 0), "int8", use_calibrator=True).calibrator
    # 10.1 .. 10.x: deprecated, still built (weakly typed, even where strong typing is the
    # default); 11 removed it
    for version in ((10, 1), (10, 16)):
        kept = build_plan(version, "int8", use_calibrator=True)
        assert kept.calibrator and not kept.strongly_typed and "INT8" in kept.flags
    with pytest.raises(ExportError, match="no implicit INT8 calibrator"):
        build_plan((11, 0), "int8", use_calibrator=True)
    with pytest.raises(ExportError, match="fp16 or int8"):
        build_plan((10, 8), "fp32")


def test_engine_sidecar_mismatch_is_refused_naming_both(tmp_path: Path) -> None:
    side = {"tensorrt_version": "10.3.0", "gpu": "NVIDIA Jetson Orin"}
    path = tmp_path / "m.engine"
    check_engine_sidecar(side, "10.3.0", "NVIDIA Jetson Orin", path)
    with pytest.raises(ExportError, match=r"TensorRT 10\.3\.0, this is TensorRT 10\.8\.0"):
        check_engine_sidecar(side, "10.8.0", "NVIDIA Jetson Orin", path)
    with pytest.raises(ExportError, match="built for NVIDIA Jetson Orin, this GPU is NVIDIA H100"):
        check_engine_sidecar(side, "10.3.0", "NVIDIA H100", path)


def test_format_table_drives_availability() -> None:
    keys = [f.key for f in DEPLOY_FORMATS]
    for key in ("torch-fp32", "onnx-fp32", "onnx-int8", "onnx-fp16", "tensorrt-int8"):
        assert key in keys
    assert get_format("onnx", "int8").unavailable_reason() is None
    trt = get_format("tensorrt", "int8")
    assert trt.needs_gpu and trt.suffix == ".engine"
    with pytest.raises(ExportError, match="valid: torch-fp32"):
        get_format("onnx", "int4")


def test_everything_is_derived_from_the_one_format_table() -> None:
    """Builders and runners come from the rows (one build function per row, named for it);
    the CLI's --target choices and load_runner's suffixes are the table's."""
    import cli
    from export.formats import BUILD_TARGETS, format_for_suffix, model_suffixes

    for fmt in DEPLOY_FORMATS:
        if fmt.builder is not None:
            builder = fmt.build_function()
            assert builder.__name__ == "build_" + fmt.key.replace("-", "_"), fmt.key
        if fmt.target != "tensorrt" or importlib.util.find_spec("tensorrt") is not None:
            assert callable(fmt.runner_class())
        assert format_for_suffix(fmt.suffix).runner == fmt.runner
    assert [t.value for t in cli.Target] == ["auto", *BUILD_TARGETS]
    assert list(BUILD_TARGETS) == ["onnx", "openvino", "tensorrt"]
    assert model_suffixes() == [".engine", ".onnx", ".pt", ".pth", ".xml"]
    with pytest.raises(ExportError, match="torch-fp32 is not built from ONNX"):
        get_format("torch", "fp32").build_function()


@pytest.mark.tensorrt
def test_tensorrt_engines_build_and_agree_with_onnx(trained: dict, tmp_path: Path) -> None:
    opts = BuildOptions(calib=trained["calib"], timing_cache=str(tmp_path / "timing.cache"))
    from bench.compare import output_parity

    x = trained["calib"].images[:4]
    reference = load_runner(trained["onnx"], device="cpu")
    # FP16 rounds each value to 2^-11 relative (5 mm at 10 m) and the errors stay small through
    # the network; INT8 moves depths further, but almost every pixel stays within δ1 of FP32
    # (the demo's Δδ1 on CPU INT8 is under 0.01)
    bounds = {"fp16": (0.05, 0.05, 0.999), "int8": (1.0, 0.1, 0.95)}  # max m, median m, δ1
    for precision, (max_m, median_m, agreement) in bounds.items():
        record = build(get_format("tensorrt", precision), trained["onnx"], tmp_path, opts)
        runner = load_runner(record["path"])
        assert runner.precision == precision
        parity = output_parity(reference, runner, x)
        assert parity["max_abs_m"] <= max_m and parity["median_abs_m"] <= median_m, parity
        assert parity["delta1_agreement"] >= agreement, parity


def test_unavailable_backend_is_one_line(trained: dict, tmp_path: Path) -> None:
    fmt = get_format("tensorrt", "fp16")
    reason = fmt.unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT and a GPU are present here")
    with pytest.raises(BackendUnavailable, match=r"tensorrt-fp16: .*(\.\[tensorrt\]|GPU)"):
        build(fmt, trained["onnx"], tmp_path, BuildOptions())


def test_openvino_fp32_bf16_int8(trained: dict, tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="needs the openvino extra (pip install '.[openvino]')")
    pytest.importorskip("nncf", reason="needs the openvino extra (pip install '.[openvino]')")
    opts = BuildOptions(calib=trained["calib"])
    test = open_dataset("synthetic", "test", n=12, height=64, width=64, seed=99)
    fp32 = evaluate_dataset(load_runner(trained["onnx"], device="cpu"), test, (64, 64))
    x = trained["calib"].images[:2]
    reference = load_runner(trained["onnx"], device="cpu")(x)
    for precision in ("fp32", "bf16", "int8"):
        record = build(get_format("openvino", precision), trained["onnx"], tmp_path, opts)
        runner = load_runner(record["path"], threads=2)
        assert runner.precision == precision and runner.input_shape == (1, 3, 64, 64)
        out = runner(x)
        assert out.shape == reference.shape
        if precision == "fp32":
            np.testing.assert_allclose(out, reference, atol=1e-4)
        metrics = evaluate_dataset(runner, test, (64, 64))
        assert abs(metrics["delta1"] - fp32["delta1"]) < 0.03, (precision, metrics, fp32)
    (tmp_path / "model_fp32.xml.json").unlink()
    with pytest.raises(DenseDepthError, match="no DenseDepth sidecar"):
        load_runner(tmp_path / "model_fp32.xml")


def test_cli_export_build_engine_and_evaluate(trained: dict, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli import app

    cli = CliRunner()
    onnx_path = tmp_path / "m_fp32.onnx"
    result = cli.invoke(app, ["export", str(trained["ckpt"]), "--out", str(onnx_path)])
    assert result.exit_code == 0, result.output
    assert "saved" in result.output and "parity" in result.output and onnx_path.is_file()
    images = tmp_path / "calib"
    images.mkdir()
    for i in range(4):
        rgb, _ = open_dataset("synthetic", "train", n=4, height=64, width=64, seed=3)[i]
        (images / f"{i}.png").write_bytes(encode_png(rgb))
    args = ["build-engine", str(onnx_path), "--int8", "--calib", str(images)]
    result = cli.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "calibration: 4 images" in result.output and "fewer than 300" in result.output
    int8 = tmp_path / "m_int8.onnx"
    assert int8.is_file() and read_metadata(int8)["precision"] == "int8"
    out = tmp_path / "metrics.json"
    args = ["evaluate", str(int8), "--limit", "4", "--device", "cpu", "--out", str(out)]
    result = cli.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["n_images"] == 4
    bad = [
        (["build-engine", str(onnx_path), "--int8", "--fp16"], "choose one of"),
        (["build-engine", str(int8), "--fp16"], "not the fp32 ONNX"),
        (["build-engine", str(onnx_path), "--target", "tensorrt"], "tensorrt-fp16"),
        (["build-engine", str(onnx_path), "--bf16"], "no format onnx-bf16"),
        (
            ["export", str(trained["ckpt"]), "--opset", "21", "--out", str(tmp_path / "x.onnx")],
            "21",
        ),
        (["evaluate", str(images / "0.png")], "unknown model file type"),
    ]
    for args, message in bad:
        result = cli.invoke(app, args)
        if "tensorrt" in args and result.exit_code == 0:
            continue  # TensorRT and a GPU are present here
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output and "Traceback" not in result.output, result.output
