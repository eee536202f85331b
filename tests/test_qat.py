"""Quantization-aware fine-tuning: fake INT8 in the TensorRT flavour, trained, exported as a
Q/DQ ONNX that passes TensorRT's rules and runs in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from densedepth.checkpoint import load_checkpoint, model_from_checkpoint
from densedepth.fake_quant import calibrate, fake_quant_layers, insert_fake_quant
from densedepth.util.onnx_io import ort_predictor
from export.onnx_export import default_onnx_path, export_onnx
from export.onnx_graph import constant_tensors
from export.trt_check import check_onnx_file
from train.qat import run_qat


def test_fake_quant_matches_int8_formula() -> None:
    """One conv: the fake-quantized output equals a conv of the int8 values computed here
    from the formula (round half to even, saturate, scale = amax / 127 per tensor / channel)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    net = torch.nn.Sequential(conv)
    assert insert_fake_quant(net) == 1
    x = torch.randn(2, 3, 8, 8)
    assert calibrate(net, [x[:1], x[1:]]) == 2
    layer = fake_quant_layers(net)[0]
    assert float(layer.input_amax) == pytest.approx(float(x.abs().max()))
    s_in = x.abs().max().double() / 127
    w = conv.weight.detach().double()
    s_w = w.abs().amax(dim=(1, 2, 3)) / 127
    xq = torch.clamp(torch.round(x.double() / s_in), -128, 127) * s_in
    s_w4 = s_w[:, None, None, None]
    wq = torch.clamp(torch.round(w / s_w4), -128, 127) * s_w4
    want = torch.nn.functional.conv2d(xq, wq, conv.bias.detach().double(), padding=1)
    with torch.no_grad():
        got = net(x).double()
    step = float(s_in * s_w.max()) * 27  # one level of one product, over the 27 taps
    assert float((got - want).abs().max()) <= step
    float_out = conv(x).detach().double()
    assert float((float_out - want).abs().max()) > 0  # quantization changed something


def test_qat_trains_exports_and_passes_tensorrt_rules(trained_tiny, tmp_path) -> None:
    """``run_qat`` lowers the fake-INT8 model's loss on the data it trains on (gradients pass
    the fake quantization), and the exported file: int8 weights per output channel, per-tensor
    activations, TensorRT's rules, and ONNX Runtime runs it. (ONNX Runtime vs the torch fake
    quantization of the whole model is not bounded: see docs/deployment.md.)"""
    before = insert_and_calibrate(model_from_checkpoint(trained_tiny["ckpt"]))
    out = tmp_path / "qat.pt"
    record = run_qat(trained_tiny["ckpt"], out, steps=12, calib_images=16, lr=1e-3)
    assert record["quantized_convs"] == 130 and record["calibration_images"] == 16
    ckpt = load_checkpoint(out)
    assert ckpt["qat"]["steps"] == 12
    with pytest.raises(Exception, match="already quantization-aware"):
        run_qat(out, tmp_path / "again.pt", steps=1)

    assert default_onnx_path(out) == tmp_path / "export" / "model_qat_int8.onnx"
    assert default_onnx_path(trained_tiny["ckpt"]).name == "model_fp32.onnx"
    onnx_path = tmp_path / "model_qat_int8.onnx"
    meta = export_onnx(out, onnx_path)
    assert meta["precision"] == "int8" and meta["int8_producer"] == "qat"
    assert check_onnx_file(onnx_path) == []
    model = onnx.load(str(onnx_path))
    inits = {t.name: t for t in model.graph.initializer}
    consts = constant_tensors(model.graph)
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    weights = [n for n in dq if n.input[0] in inits]
    acts = [n for n in dq if n.input[0] not in inits]
    assert len(weights) == len(acts) == 130
    for n in weights:
        assert inits[n.input[0]].data_type == onnx.TensorProto.INT8
        assert numpy_helper.to_array(consts[n.input[1]]).ndim == 1
    for n in acts:
        assert numpy_helper.to_array(consts[n.input[1]]).size == 1

    assert training_loss(model_from_checkpoint(ckpt)) < training_loss(before)
    x = trained_tiny["calib"].images[:2]
    got = np.concatenate([ort_predictor(onnx_path)(x[i : i + 1]) for i in range(len(x))])
    lo, hi = meta["min_depth"], meta["max_depth"]
    assert np.isfinite(got).all() and got.min() >= lo and got.max() <= hi
    compare_ptq_and_qat(trained_tiny, onnx_path, tmp_path)


def compare_ptq_and_qat(trained_tiny: dict, qat_onnx, tmp_path) -> None:
    """``compare`` puts the PTQ file (the TensorRT flavour of the float model) and the QAT
    file side by side on the same test images, each labelled with how it was quantized."""
    from bench.compare import compare_models
    from export.quantize import quantize_int8

    ptq = tmp_path / "model_int8.onnx"
    quantize_int8(trained_tiny["onnx"], trained_tiny["calib"], ptq, "tensorrt", "minmax")
    report = compare_models([ptq, qat_onnx, trained_tiny["onnx"]], "synthetic",
                            tmp_path / "compare", n_images=1, device="cpu", published=False,
                            data_kwargs={"n": 4, "seed": 1, "height": 64, "width": 64})  # fmt: skip
    labels = [r["model"] for r in report["measured"]]
    assert labels[0].startswith("densenet121 INT8 PTQ minmax (")
    assert labels[1].startswith("densenet121 INT8 QAT, 12 steps (")
    assert "INT8" not in labels[2]
    assert report["measured"][0]["delta1"] != report["measured"][1]["delta1"]
    table = (tmp_path / "compare" / "report.md").read_text()
    assert all(f"| {label} |" in table for label in labels)


def training_images() -> tuple[torch.Tensor, torch.Tensor]:
    """The first 16 training scenes of the fixture's run, unaugmented, at 64x64."""
    from densedepth.data.readers import open_dataset
    from train.dataset import TorchDepthDataset

    data = open_dataset("synthetic", "train", n=64, seed=0, height=64, width=64)
    view = TorchDepthDataset(data, (64, 64), train=False)
    pairs = [view[i] for i in range(16)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def insert_and_calibrate(model: torch.nn.Module) -> torch.nn.Module:
    """The float model with fake INT8 calibrated on the training images: QAT's step 0."""
    insert_fake_quant(model)
    calibrate(model, [training_images()[0]])
    return model.eval()


@torch.no_grad()
def training_loss(model: torch.nn.Module) -> float:
    """The paper's loss of ``model`` (eval mode) on the training images."""
    from densedepth.depth import depth_to_target
    from densedepth.loss import DepthLoss

    model.eval()
    x, depth = training_images()
    valid = depth > 0
    target = depth_to_target(depth, model.variant.depth)
    loss_fn = DepthLoss(max_val=model.variant.depth.target_range[1])
    return float(loss_fn(model(x), target, valid))


def test_entropy_calibration_clips_to_tensorrts_threshold() -> None:
    """``calibrate(..., "entropy")``: each input's amax is TensorRT's entropy threshold of the
    histogram of |x| over every batch (below the largest magnitude on heavy-tailed data), and
    an unknown method is refused."""
    from densedepth.histogram import AbsHistogram, entropy_threshold

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    insert_fake_quant(net)
    batches = [torch.distributions.StudentT(2.0).sample((2, 3, 16, 16)) for _ in range(3)]
    assert calibrate(net, batches, "entropy") == 6
    hist = AbsHistogram()
    for b in batches:
        hist.add(b.numpy())
    want, _ = entropy_threshold(hist.counts, hist.edges)
    amax = float(fake_quant_layers(net)[0].input_amax)
    assert amax == pytest.approx(want, rel=1e-6)
    assert amax < 0.5 * float(max(b.abs().max() for b in batches))
    with pytest.raises(ValueError, match="unknown calibration method"):
        calibrate(net, batches, "percentile")


@pytest.mark.slow
def test_qat_beats_ptq_at_equal_steps_on_the_same_held_out_scenes(
    trained_tiny: dict, tmp_path
) -> None:
    """TensorRT's entropy ranges (its default calibrator) collapse the tiny model's PTQ; QAT
    with the same ranges, images and steps recovers most of it. Both arms start from the
    same checkpoint and take the same 20 Adam steps (lr 1e-4, seed 0, same batches) on its
    training split: in float, then PTQ (the TensorRT flavour's Q/DQ written by
    ``export.quantize`` through ONNX Runtime's quantizer with TensorRT's entropy ranges,
    ``calib.ranges``, calibrated on the 32 training images QAT calibrates on; ModelOpt's
    "entropy" is another, milder algorithm); or
    with fake INT8 (``train --qat --qat-calib entropy``), then ``export``. Both written files
    are scored by ONNX Runtime on the same 48 held-out test scenes."""
    from calib.calibration import CalibrationSet
    from densedepth.checkpoint import save_checkpoint
    from densedepth.data.readers import open_dataset
    from densedepth.evaluation import evaluate_dataset
    from engines import load_runner
    from export.quantize import quantize_int8
    from train.config import TrainConfig
    from train.data import training_and_validation
    from train.dataset import TorchDepthDataset
    from train.qat import fine_tune

    steps, n_calib, lr = 20, 32, 1e-4
    qat_pt = tmp_path / "qat.pt"
    run_qat(trained_tiny["ckpt"], qat_pt, steps, calib_images=n_calib, lr=lr, method="entropy")
    assert load_checkpoint(qat_pt)["qat"]["calibration_method"] == "entropy"
    qat_onnx = tmp_path / "model_qat_int8.onnx"
    assert export_onnx(qat_pt, qat_onnx)["calibration_method"] == "entropy"

    ckpt = load_checkpoint(trained_tiny["ckpt"])
    cfg = TrainConfig.from_dict(ckpt["config"])
    cfg.lr = lr
    train_data, _, _ = training_and_validation(cfg)
    model = model_from_checkpoint(ckpt)
    fine_tune(model, TorchDepthDataset(train_data, cfg.input_size, train=True, seed=0), steps,
              cfg, 0)  # fmt: skip
    float_pt = tmp_path / "float.pt"
    save_checkpoint(float_pt, {**ckpt, "model": model.state_dict()})
    float_onnx = tmp_path / "model_fp32.onnx"
    export_onnx(float_pt, float_onnx)
    view = TorchDepthDataset(train_data, cfg.input_size, train=False)
    images = np.stack([view[i][0].numpy() for i in range(n_calib)])
    ptq_onnx = tmp_path / "model_int8.onnx"
    quantize_int8(float_onnx, CalibrationSet(images, "QAT's calibration images"), ptq_onnx,
                  "tensorrt", "entropy", producer="onnxruntime")  # fmt: skip

    test = open_dataset("synthetic", "test", n=48, seed=1, height=64, width=64)
    scores = {}
    for name, path in (("float", float_onnx), ("ptq", ptq_onnx), ("qat", qat_onnx)):
        runner = load_runner(path, device="cpu")
        scores[name] = evaluate_dataset(runner, test, (64, 64))
        runner.close()
    fl, ptq, qat = scores["float"], scores["ptq"], scores["qat"]
    assert ptq["delta1"] < fl["delta1"] - 0.05  # PTQ loses: there is something to recover
    assert qat["delta1"] > ptq["delta1"] + 0.05 and qat["rel"] < ptq["rel"], (fl, ptq, qat)
