"""Flicker of live depth and the recorded depth of a live run (bench --camera)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.flicker import BIN_WIDTH, FlickerMeter
from cli import app
from densedepth.data.video import synthetic_frames, write_synthetic_video

cli = CliRunner()
GREY = np.full((1, 3, 64, 64), 0.5, np.float32)


def noisy_run(sigma: float, frames: int = 80, seed: int = 0) -> dict:
    """Depth d (1 + sigma e_t), e_t ~ N(0, 1) per pixel and frame, on a still image."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 9.0, (32, 32))
    meter = FlickerMeter()
    for _ in range(frames):
        meter.update(
            GREY, (depth * (1 + sigma * rng.standard_normal(depth.shape))).astype(np.float32)
        )
    return meter.result()


def test_a_repeated_frame_does_not_flicker() -> None:
    meter = FlickerMeter()
    depth = np.random.default_rng(1).uniform(1, 5, (1, 1, 32, 32)).astype(np.float32)
    for _ in range(6):
        meter.update(GREY, depth)
    assert meter.result() == {"median": 0.0, "p90": 0.0, "still_share": 1.0, "pairs": 5,
                              "threshold": 0.04}  # fmt: skip


@pytest.mark.parametrize("sigma", [0.005, 0.01, 0.03])
def test_flicker_of_injected_noise_follows_the_formula(sigma: float) -> None:
    """|d_t - d_t-1| / d_t-1 = sigma |e_t - e_t-1| (1 + O(sigma)): a half-normal of scale
    sqrt(2) sigma, median 0.67449 sqrt(2) sigma and p90 1.64485 sqrt(2) sigma. Bounds: the
    O(sigma) term (3 sigma relative), the bin width and the sampling error of 80k values."""
    r = noisy_run(sigma)
    for key, z in (("median", 0.674490), ("p90", 1.644854)):
        expected = z * math.sqrt(2) * sigma
        assert r[key] == pytest.approx(expected, rel=3 * sigma + 0.02, abs=BIN_WIDTH)
    assert noisy_run(2 * sigma)["median"] > 1.8 * r["median"]  # rises with the noise


def test_pixels_whose_image_changed_are_not_counted() -> None:
    """Where the image changes (the moving object) the depth may change: left out, and the
    still share says how much was kept."""
    rng = np.random.default_rng(2)
    depth = rng.uniform(1, 5, (32, 32)).astype(np.float32)
    meter = FlickerMeter()
    for t in range(10):
        x = GREY.copy()
        x[..., :, 32:] = 0.1 + 0.08 * t  # the right half brightens frame by frame
        d = depth.copy()
        d[:, 16:] *= 1 + 0.5 * (t % 2)  # and its depth jumps
        meter.update(x, d)
    r = meter.result()
    assert r["median"] == 0.0 and r["p90"] == 0.0 and r["still_share"] == pytest.approx(0.5)


def test_the_object_clip_keeps_the_room_still_and_moves_the_box() -> None:
    """synthetic_frames(motion="object"): frame to frame only the sliding box's pixels (and
    sensor noise) change; the box is somewhere else half a cycle later."""
    frames = [f.astype(np.float64) for f in synthetic_frames(12, 48, 64, seed=4, cycle=12,
                                                             motion="object")]  # fmt: skip
    step = np.abs(frames[1] - frames[0]).mean(axis=2)
    moved = step > 25
    assert 0 < moved.mean() < 0.3  # the box's edges moved, the room did not
    far = np.abs(frames[3] - frames[9]).mean(axis=2) > 25
    assert far.mean() > moved.mean()
    with pytest.raises(ValueError, match="motion must be one of"):
        synthetic_frames(2, 8, 8, motion="zoom")


@pytest.fixture(autouse=True)
def _no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def test_camera_run_records_depth_and_point_clouds_and_reports_flicker(
    trained_tiny: dict, tmp_path: Path
) -> None:
    """bench --camera on the object clip with --record-depth --pointcloud --pointcloud-every
    4: one 16-bit PNG per frame (the first equals the runner's depth of the first frame to
    0.5 mm), a PLY every 4th frame (read by plyfile, intrinsics scaled to the output size),
    camera.json; the report gives the flicker on still pixels."""
    plyfile = pytest.importorskip("plyfile", reason="plyfile (the dev extra) reads the PLYs")
    from densedepth.camera import NYU_KINECT
    from engines import load_runner

    video = write_synthetic_video(tmp_path / "object.mp4", 9, 48, 64, cycle=9, motion="object")
    rec = tmp_path / "depth"
    args = ["bench", "--camera", "--source", str(video), str(trained_tiny["onnx"]), "--out",
            str(tmp_path / "cam"), "--frames", "9", "--record-depth", str(rec), "--pointcloud",
            "--pointcloud-every", "4", "--pointcloud-stride", "2"]  # fmt: skip
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "flicker on still pixels: median" in result.output
    pngs = sorted(rec.glob("frame_*_depth.png"))
    plys = sorted(rec.glob("frame_*.ply"))
    assert len(pngs) == 9 and [p.name for p in plys] == [
        "frame_000000.ply", "frame_000004.ply", "frame_000008.ply"]  # fmt: skip
    first = np.asarray(Image.open(pngs[0]), np.float64)
    assert first.shape == (32, 32)  # the model's output: half its 64x64 input
    cap = cv2.VideoCapture(str(video))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    from bench.camera import preprocess_frame

    with load_runner(trained_tiny["onnx"], device="cpu") as runner:
        expected = runner(preprocess_frame(bgr, (64, 64))).reshape(32, 32) * 1000
    assert np.abs(first - expected).max() <= 0.5 + 1e-3
    record = json.loads((rec / "camera.json").read_text())
    out_cam = record["output"]["intrinsics"]
    want = NYU_KINECT.scaled(64, 64).scaled(32, 32)  # the training camera at the output size
    assert (out_cam["fx"], out_cam["cy"], out_cam["width"]) == pytest.approx((want.fx, want.cy, 32))
    assert record["frames"] == 9 and record["pointclouds"] == 3
    cloud = plyfile.PlyData.read(str(plys[0]))["vertex"]
    assert 0 < len(cloud) <= 16 * 16
    report = json.loads((tmp_path / "cam" / "camera.json").read_text())
    flicker = report["flicker"]
    assert flicker["pairs"] == 8 and 0 < flicker["still_share"] <= 1
    assert flicker["median"] is not None and flicker["p90"] >= flicker["median"] >= 0


def test_recording_depth_needs_a_bounded_run_and_point_clouds_need_the_folder(
    trained_tiny: dict, tmp_path: Path
) -> None:
    video = write_synthetic_video(tmp_path / "v.mp4", 3, 48, 64)
    base = ["bench", "--camera", "--source", str(video), str(trained_tiny["onnx"]), "--out",
            str(tmp_path / "cam")]  # fmt: skip
    for extra, match in ((["--record-depth", str(tmp_path / "d")], "bound the run"),
                         (["--frames", "3", "--pointcloud"], "--record-depth DIR")):  # fmt: skip
        result = cli.invoke(app, [*base, *extra])
        errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
        assert result.exit_code == 1 and len(errors) == 1 and match in errors[0], result.output
        assert not (tmp_path / "d").exists() and not (tmp_path / "cam").exists()
