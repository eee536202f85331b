"""The DLA variant (``resize="half_pixel"``): recorded like the others, trainable, exportable,
and an ONNX graph Jetson Orin's DLA runs whole (half-pixel x2 Resizes, Div)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from typer.testing import CliRunner

from cli import app
from densedepth.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from densedepth.depth import target_to_depth
from densedepth.model import DenseDepth, upsample_half_pixel
from densedepth.util.errors import ModelError
from densedepth.util.onnx_io import (
    INPUT_NAME,
    OUTPUT_NAME,
    ort_session,
    parity_input,
    read_metadata,
)
from densedepth.variant import DEFAULT, KITTI, PRESETS, ModelVariant, preset, training_variant
from engines.onnx_runner import raw_output_name
from export.dla_check import check_dla
from export.onnx_export import PARITY_TOLERANCE, export_onnx
from export.onnx_graph import constant_tensors
from train.config import TrainConfig

runner = CliRunner()
TINY_TRAIN = ["train", "--backbone", "densenet121", "--weights", "none", "--decoder-width",
              "0.125", "--input-size", "64x64", "--batch-size", "2", "--max-steps", "2",
              "--synthetic-train", "4", "--synthetic-test", "2", "--val-samples", "2",
              "--test-samples", "2", "--device", "cpu", "--precision", "fp32"]  # fmt: skip


def tiny_checkpoint(path: Path, variant: ModelVariant, seed: int = 0) -> Path:
    """A randomly initialised densenet121 (width 0.125, 64x64) of ``variant``, saved."""
    torch.manual_seed(seed)
    model = DenseDepth("densenet121", decoder_width=0.125, variant=variant)
    config = TrainConfig(backbone="densenet121", decoder_width=0.125, input_size=(64, 64),
                         variant=variant.to_dict()).to_dict()  # fmt: skip
    return save_checkpoint(path, {"model": model.state_dict(), "config": config, "step": 0})


def test_the_dla_preset_round_trips_and_older_variants_stay_align_corners() -> None:
    dla = preset("dla")
    assert dla.resize == "half_pixel" and dla.preset == "dla"
    assert dla.normalize_input and dla.leaky_after_conv_a  # otherwise the toolkit's default
    assert PRESETS["default"].resize == DEFAULT.resize == "align_corners"
    assert all(PRESETS[k].resize == "align_corners" for k in ("keras-released", "keras-head"))
    assert ModelVariant.from_dict(dla.to_dict()) == dla
    assert json.loads(json.dumps(dla.to_dict()))["resize"] == "half_pixel"
    kitti = preset("dla", "kitti")
    assert kitti.depth == KITTI and kitti.resize == "half_pixel"
    # a dict written before the field existed is the align_corners network it described
    older = {k: v for k, v in preset("keras-head").to_dict().items() if k != "resize"}
    assert ModelVariant.from_dict(older) == preset("keras-head")
    assert ModelVariant.from_dict(older).resize == "align_corners"
    with pytest.raises(ModelError, match="unknown resize 'nearest'; choose one of"):
        ModelVariant.from_dict({**dla.to_dict(), "resize": "nearest"})


def test_training_variant_resolves_the_data_and_keeps_a_resumed_runs_own() -> None:
    assert training_variant(None) == training_variant("default") == {}  # data conventions
    assert training_variant("dla", "kitti") == preset("dla", "kitti").to_dict()
    with pytest.raises(ModelError, match="cannot be trained; choose one of: default, dla"):
        training_variant("keras-released")
    run = preset("dla").to_dict()
    assert training_variant(None, "nyu", run) == run == training_variant("dla", "nyu", run)
    assert training_variant(None, "nyu", {}) == {}
    kitti_run = preset("default", "kitti").to_dict()  # a default run on KITTI data, resumed
    assert training_variant("default", "nyu", kitti_run) == kitti_run
    with pytest.raises(ModelError, match=r"the run is the dla variant \(half_pixel resize\)"):
        training_variant("default", "nyu", run)


def _half_pixel_bilinear_x2(a: np.ndarray) -> np.ndarray:
    """Bilinear x2 of an (H, W) array, pixel centres at half-integers, edges clamped."""

    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(2 * n) + 0.5) / 2 - 0.5, 0.0)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n - 1), src - lo

    (r0, r1, wr), (c0, c1, wc) = axis(a.shape[0]), axis(a.shape[1])
    rows = a[r0] * (1 - wr)[:, None] + a[r1] * wr[:, None]
    return rows[:, c0] * (1 - wc) + rows[:, c1] * wc


def test_half_pixel_upsampling_is_bilinear_with_half_pixel_centres() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    skip = torch.zeros(2, 1, 8, 10)
    got = upsample_half_pixel(torch.from_numpy(a), skip).numpy()
    assert got.shape == (2, 3, 8, 10)
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(got[n, c], _half_pixel_bilinear_x2(a[n, c]), atol=1e-6)
            via_cv2 = cv2.resize(a[n, c], (10, 8), interpolation=cv2.INTER_LINEAR)
            np.testing.assert_allclose(got[n, c], via_cv2, atol=1e-5)
    corners = F.interpolate(torch.from_numpy(a), size=(8, 10), mode="bilinear", align_corners=True)
    assert not np.allclose(got, corners.numpy(), atol=1e-3)  # a different resampling
    with pytest.raises(ModelError, match="half_pixel resize doubles 4x5, but the skip is 9x10"):
        upsample_half_pixel(torch.from_numpy(a), torch.zeros(2, 1, 9, 10))


def test_the_dla_variant_survives_a_checkpoint_and_divides(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "dla.pt", preset("dla"))
    assert load_checkpoint(ckpt)["config"]["variant"]["resize"] == "half_pixel"
    model = model_from_checkpoint(ckpt).eval()
    assert model.variant == preset("dla")
    assert {b.resize for b in model.decoder.blocks} == {"half_pixel"}
    default = DenseDepth("densenet121", decoder_width=0.125).eval()
    default.load_state_dict(model.state_dict())  # the same weights, the paper's resizes
    assert {b.resize for b in default.decoder.blocks} == {"align_corners"}
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        target = model(x)
        assert target.shape == (1, 1, 32, 32)
        assert not torch.allclose(target, default(x), atol=1e-4)
        depth = model.predict_depth(x)
    torch.testing.assert_close(depth, target_to_depth(target, model.variant.depth))
    assert depth.min() >= 0.1 and depth.max() <= 10.0


def _resizes(proto: onnx.ModelProto) -> list[tuple[str, list[float] | None, bool]]:
    """(coordinate mode, constant scales, given sizes) of each Resize."""
    consts = constant_tensors(proto.graph)
    out = []
    for node in proto.graph.node:
        if node.op_type != "Resize":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        scales = node.input[2] if len(node.input) > 2 else ""
        value = numpy_helper.to_array(consts[scales]).tolist() if scales in consts else None
        sizes = len(node.input) > 3 and bool(node.input[3])
        out.append((attrs["coordinate_transformation_mode"].decode(), value, sizes))
    return out


def test_the_dla_export_is_dla_clean_where_the_default_is_not(tmp_path: Path) -> None:
    protos, records = {}, {}
    for name in ("default", "dla"):
        ckpt = tiny_checkpoint(tmp_path / f"{name}.pt", preset(name))  # the same weights
        records[name] = export_onnx(ckpt, tmp_path / f"{name}.onnx")
        protos[name] = onnx.load(str(tmp_path / f"{name}.onnx"))
        assert records[name]["parity_max_abs_m"] <= PARITY_TOLERANCE
    dla, default = protos["dla"], protos["default"]
    assert _resizes(dla) == [("half_pixel", [1.0, 1.0, 2.0, 2.0], False)] * 4
    assert _resizes(default) == [("align_corners", None, True)] * 4
    ops = {name: [n.op_type for n in p.graph.node] for name, p in protos.items()}
    assert "Reciprocal" not in ops["dla"] and "Reciprocal" in ops["default"]
    assert records["dla"]["variant"] == preset("dla").to_dict()
    assert read_metadata(tmp_path / "dla.onnx")["variant"]["resize"] == "half_pixel"
    assert check_dla(dla) == []
    found = check_dla(default)
    assert len({f.node for f in found}) == 5  # 4 Resizes + the Reciprocal
    assert sorted({f.rule for f in found}) == [
        "dla-layer", "dla-resize-coords", "dla-resize-sizes"]  # fmt: skip
    # the densedepth protocol still finds the raw output before the Clip (Div(const, Clip))
    assert raw_output_name(tmp_path / "dla.onnx") == raw_output_name(tmp_path / "default.onnx")
    assert raw_output_name(tmp_path / "dla.onnx") is not None
    # ONNX Runtime against the torch model, on the export's fixed input and a random one
    model = model_from_checkpoint(tmp_path / "dla.pt").eval()
    session = ort_session(tmp_path / "dla.onnx")
    for x in (parity_input((64, 64)), np.random.default_rng(1).random((1, 3, 64, 64), np.float32)):
        with torch.no_grad():
            expected = model.predict_depth(torch.from_numpy(x)).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        np.testing.assert_allclose(got, expected, atol=PARITY_TOLERANCE, rtol=0)


def test_train_with_variant_dla_records_half_pixel_and_resume_keeps_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, [*TINY_TRAIN, "--variant", "dla", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("best.pt", "last.pt"):
        assert load_checkpoint(out / name)["config"]["variant"] == preset("dla").to_dict()
    assert model_from_checkpoint(out / "best.pt").variant.resize == "half_pixel"
    assert json.loads((out / "config.json").read_text())["variant"]["resize"] == "half_pixel"
    # --resume without --variant continues the run's own; naming another is refused
    result = runner.invoke(app, [*TINY_TRAIN, "--variant", "default", "--out", str(out),
                                 "--resume", "--max-steps", "3"])  # fmt: skip
    assert result.exit_code == 1
    assert "the run is the dla variant (half_pixel resize)" in result.output
    result = runner.invoke(app, [*TINY_TRAIN, "--out", str(out), "--resume", "--max-steps", "3"])
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == 3 and ckpt["config"]["variant"]["resize"] == "half_pixel"


def test_train_variant_dla_on_kitti_data_takes_kittis_depth_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from densedepth.data.writers import write_synthetic
    from train import loop

    root = write_synthetic(tmp_path / "kitti", "kitti", 2, 1, seed=1, height=48, width=160)
    seen = []

    def fake_fit(cfg: TrainConfig, **_: object) -> dict:
        seen.append(cfg)
        return {"steps": 0, "img_per_s": 0.0, "best_path": "-", "last": "-"}

    monkeypatch.setattr(loop, "fit", fake_fit)
    args = ["train", "--data", str(root), "--out", str(tmp_path / "run")]
    for variant, expected in (("dla", preset("dla", "kitti").to_dict()), ("default", {})):
        result = runner.invoke(app, [*args, "--variant", variant])
        assert result.exit_code == 0, result.output
        assert seen[-1].variant == expected  # {}: fit adopts KITTI's range as before
    result = runner.invoke(app, [*args, "--variant", "keras-head"])
    assert result.exit_code == 1 and "cannot be trained" in result.output
